//! wasio's MongoDB adapter: a node of a `@socket.io/mongo-adapter` 0.4 cluster.
//!
//! - The node — the requests it waits on, the nodes it has heard from (heartbeats),
//!   the acks it owes, what a document from another node does here — is
//!   `wasio-cluster-node`'s, with heartbeats.
//! - [`collection`]: what this node inserts and how a document reads.
//! - [`options`]: `[adapter.options]`, named as the Node.js adapter names them.
//!
//! The documents are the cluster message family of `wasio-cluster-protocol` as BSON.
//! The host owns the MongoDB client; this guest says which collection to read (by
//! change stream or by tailing a capped collection) and what to insert.

#[allow(clippy::all)]
mod bindings {
    // One set of types and host imports: wasio-cluster-node's.
    wasio_cluster_node::generate!("docstore-adapter");
}

mod collection;
mod options;

use bindings::exports::wasio::adapter::guest::{AdapterInfo, Guest, InitArgs};
use collection::Collection;
use wasio_cluster_node::bindings::wasio::adapter::log;
use wasio_cluster_node::bindings::wasio::adapter::types::Error;
use wasio_cluster_node::{Heartbeat, Node, Settings, Slot, with, with_quiet};

thread_local! {
    static NODE: Slot<Collection> = const { Slot::new(None) };
}

struct Mongo;

impl Guest for Mongo {
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
        let collection = Box::new(Collection::new(opts, uid.clone()));
        NODE.set(Some(Node::new(collection, uid, settings)));
        Ok(AdapterInfo {
            name: "mongodb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    wasio_cluster_node::forward_to_node!(NODE);

    fn on_message(
        _channel: String,
        _pattern: Option<String>,
        _payload: Vec<u8>,
    ) -> Result<(), Error> {
        Err(Error::Invalid(
            "the MongoDB adapter subscribes to no channel".into(),
        ))
    }
    /// Malformed documents are errors (the host drops and counts them); those of
    /// namespaces this node lacks, and our own, are ignored.
    fn on_document(_collection: String, document: Vec<u8>) -> Result<(), Error> {
        with(&NODE, |n| match n.backend().decode(&document)? {
            Some(env) => n.on_message(env),
            None => Ok(()),
        })
    }
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
    /// After the feed was lost, other nodes may have forgotten this one: the node says
    /// it is here.
    fn on_connection(up: bool) {
        let state = if up { "reopened" } else { "lost" };
        log::log(log::Level::Info, &format!("MongoDB feed {state}"));
        with_quiet(&NODE, |n| n.on_connection(up))
    }
}

// Only a wasm build exports (a native build is for the unit tests).
#[cfg(target_arch = "wasm32")]
bindings::export!(Mongo with_types_in bindings);
