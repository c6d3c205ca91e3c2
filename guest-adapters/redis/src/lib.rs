//! wasio's Redis adapter: a node of a `@socket.io/redis-adapter` 8.3 cluster.
//!
//! The node — the requests it waits on, the acks it owes other nodes, what a message
//! does to local sockets — is `wasio-cluster-node`'s. This crate is the two Redis
//! protocols it runs over, behind one [`transport::Transport`], chosen by `init`:
//!
//! - [`classic`]: `createAdapter` (PUBLISH/PSUBSCRIBE, `../shared/protocols.md` §1),
//!   whose messages are in [`wire`].
//! - [`sharded`]: `createShardedAdapter` (SPUBLISH/SSUBSCRIBE, the cluster message
//!   family of `wasio-cluster-protocol`).
//!
//! The host owns the Redis connections; this guest only says what to publish and what
//! to subscribe to, and acts on what arrives.

#[allow(clippy::all)]
mod bindings {
    // One set of types and host imports: wasio-cluster-node's.
    wasio_cluster_node::generate!("pubsub-adapter");
}

mod classic;
mod options;
mod sharded;
mod transport;
mod wire;

use bindings::exports::wasio::adapter::guest::{AdapterInfo, Guest, InitArgs};
use transport::Transport;
use wasio_cluster_node::bindings::wasio::adapter::log;
use wasio_cluster_node::bindings::wasio::adapter::types::Error;
use wasio_cluster_node::{Node, Settings, Slot, with, with_quiet};

thread_local! {
    static NODE: Slot<dyn Transport> = const { Slot::new(None) };
}

struct Redis;

impl Guest for Redis {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        let opts = options::Options::parse(&args.options).map_err(Error::Invalid)?;
        let settings = Settings {
            requests_timeout: opts.requests_timeout,
            // Redis counts the nodes: the subscribers of a channel every node reads.
            heartbeat: None,
        };
        let uid = args.node_id;
        let transport: Box<dyn Transport> = match opts.mode {
            options::Mode::Classic => Box::new(classic::Classic::new(opts, uid.clone())),
            options::Mode::Sharded => Box::new(sharded::Sharded::new(opts, uid.clone())),
        };
        let name = transport.name();
        NODE.set(Some(Node::new(transport, uid, settings)));
        Ok(AdapterInfo {
            name: name.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    wasio_cluster_node::forward_to_node!(NODE);

    /// Malformed messages are errors (the host drops and counts them); foreign ones
    /// are ignored.
    fn on_message(
        channel: String,
        _pattern: Option<String>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        with(&NODE, |n| {
            let env = n
                .backend()
                .decode(&channel, &payload)
                .map_err(|e| Error::Invalid(format!("message on {channel}: {e}")))?;
            n.on_message(env)
        })
    }
    fn on_document(_collection: String, _document: Vec<u8>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the Redis adapter watches no collection".into(),
        ))
    }
    fn on_rooms(nsp: String, rooms: Vec<String>) {
        with_quiet(&NODE, |n| n.backend_mut().on_rooms(&nsp, rooms))
    }
    fn on_connection(up: bool) {
        let state = if up {
            "back; subscriptions replayed"
        } else {
            "lost"
        };
        log::log(log::Level::Info, &format!("Redis connection {state}"));
        with_quiet(&NODE, |n| n.on_connection(up))
    }
}

// Only a wasm build exports (a native build is for the unit tests of the protocol).
#[cfg(target_arch = "wasm32")]
bindings::export!(Redis with_types_in bindings);
