//! wasio's PostgreSQL adapter: a node of a `@socket.io/postgres-adapter` 0.5 cluster.
//!
//! - The node — the requests it waits on, the nodes it has heard from (heartbeats),
//!   the acks it owes, what a message from another node does here — is
//!   `wasio-cluster-node`'s, with heartbeats.
//! - [`channels`]: what this node notifies on which channel, and how a notification reads.
//! - [`options`]: `[adapter.options]`, named as the Node.js adapter names them.
//!
//! Messages are the cluster message family of `wasio-cluster-protocol`: JSON text in
//! the notification when it fits, else MessagePack in the attachments table. The host
//! owns the connections and reads attachments back; this guest says which channels to
//! listen to and what to send.

#[allow(clippy::all)]
mod bindings {
    // One set of types and host imports: wasio-cluster-node's.
    wasio_cluster_node::generate!("notify-adapter");
}

mod channels;
mod options;

use bindings::exports::wasio::adapter::guest::{AdapterInfo, Guest, InitArgs};
use channels::Channels;
use wasio_cluster_node::bindings::wasio::adapter::log;
use wasio_cluster_node::bindings::wasio::adapter::types::Error;
use wasio_cluster_node::{Heartbeat, Node, Settings, Slot, with, with_quiet};

thread_local! {
    static NODE: Slot<Channels> = const { Slot::new(None) };
}

struct Postgres;

impl Guest for Postgres {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        let opts = options::Options::parse(&args.options).map_err(Error::Invalid)?;
        let settings = Settings {
            requests_timeout: opts.requests_timeout,
            // A request waits for the nodes heard from within `heartbeatTimeout`, so a
            // dead node ends no request by hanging it.
            heartbeat: Some(Heartbeat::new(
                opts.heartbeat_interval,
                opts.heartbeat_timeout,
            )),
        };
        // The host's node id is kept across hot swaps: other nodes see one node.
        let uid = args.node_id;
        let channels = Box::new(Channels::new(opts, uid.clone()));
        NODE.set(Some(Node::new(channels, uid, settings)));
        Ok(AdapterInfo {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    wasio_cluster_node::forward_to_node!(NODE);

    /// Malformed notifications are errors (the host drops and counts them); our own,
    /// and those of namespaces this node lacks, are ignored.
    fn on_message(
        channel: String,
        _pattern: Option<String>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        with(&NODE, |n| {
            let env = n.backend().decode(&channel, &payload)?;
            n.on_message(env)
        })
    }
    fn on_document(_collection: String, _document: Vec<u8>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the PostgreSQL adapter watches no collection".into(),
        ))
    }
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
    /// After the listening connection was lost, other nodes may have forgotten this
    /// one: the node says it is here.
    fn on_connection(up: bool) {
        let state = if up { "back; LISTENs replayed" } else { "lost" };
        log::log(
            log::Level::Info,
            &format!("PostgreSQL listening connection {state}"),
        );
        with_quiet(&NODE, |n| n.on_connection(up))
    }
}

// Only a wasm build exports (a native build is for the unit tests).
#[cfg(target_arch = "wasm32")]
bindings::export!(Postgres with_types_in bindings);
