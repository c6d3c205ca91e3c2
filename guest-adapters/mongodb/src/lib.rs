//! wasio's MongoDB adapter: a node of a `@socket.io/mongo-adapter` 0.4 cluster.
//!
//! - [`node`]: the adapter — what this node inserts, the requests it waits on, the
//!   nodes it has heard from, and what a document from another node does here.
//! - [`options`]: `[adapter.options]`, named as the Node.js adapter names them.
//!
//! The documents are the cluster message family of `wasio-cluster-protocol` as BSON.
//! The host owns the MongoDB client; this guest says which collection to read (by
//! change stream or by tailing a capped collection) and what to insert.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "docstore-adapter" });
}

mod node;
mod options;

use std::cell::RefCell;

use bindings::exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use bindings::wasio::adapter::types::Error;
use node::Node;
use wasio_cluster_protocol::Body;

thread_local! {
    static NODE: RefCell<Option<Node>> = const { RefCell::new(None) };
}

/// Runs `f` on the initialised node; a call before `init` is refused.
fn with<T>(f: impl FnOnce(&mut Node) -> Result<T, Error>) -> Result<T, Error> {
    NODE.with_borrow_mut(|n| match n {
        Some(node) => f(node),
        None => Err(Error::Other("called before init".into())),
    })
}

/// Like [`with`], for entry points that cannot report errors.
fn with_quiet(f: impl FnOnce(&mut Node)) {
    NODE.with_borrow_mut(|n| {
        if let Some(node) = n {
            f(node)
        }
    })
}

struct Mongo;

impl Guest for Mongo {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        let opts = options::Options::parse(&args.options).map_err(Error::Invalid)?;
        // The host's node id is kept across hot swaps: other nodes see one node.
        NODE.set(Some(Node::new(opts, args.node_id)));
        Ok(AdapterInfo {
            name: "mongodb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    fn open(nsp: String) -> Result<(), Error> {
        with(|n| n.open(nsp))
    }
    fn close() -> Result<(), Error> {
        with(|n| n.close())
    }
    fn broadcast(nsp: String, packet: Vec<u8>, opts: BroadcastOpts) -> Result<(), Error> {
        with(|n| n.broadcast(&nsp, packet, &opts))
    }
    fn broadcast_with_ack(
        nsp: String,
        id: u64,
        packet: Vec<u8>,
        opts: BroadcastOpts,
        timeout_ms: u32,
    ) -> Result<(), Error> {
        with(|n| n.broadcast_with_ack(&nsp, id, packet, &opts, timeout_ms))
    }
    fn add_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        with(|n| n.rooms_op(&nsp, |opts| Body::SocketsJoin { opts, rooms }, &opts))
    }
    fn del_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        with(|n| n.rooms_op(&nsp, |opts| Body::SocketsLeave { opts, rooms }, &opts))
    }
    fn disconnect_sockets(nsp: String, opts: BroadcastOpts, close: bool) -> Result<(), Error> {
        with(|n| n.rooms_op(&nsp, |opts| Body::DisconnectSockets { opts, close }, &opts))
    }
    fn fetch_sockets(nsp: String, id: u64, opts: BroadcastOpts) -> Result<(), Error> {
        with(|n| n.fetch_sockets(&nsp, id, &opts))
    }
    fn all_rooms(nsp: String, id: u64, _opts: BroadcastOpts) -> Result<(), Error> {
        with(|n| n.all_rooms(&nsp, id))
    }
    fn server_count(nsp: String, id: u64) -> Result<(), Error> {
        with(|n| n.server_count(&nsp, id))
    }
    fn server_side_emit(nsp: String, id: Option<u64>, data: Vec<u8>) -> Result<(), Error> {
        with(|n| n.server_side_emit(&nsp, id, data))
    }
    fn on_message(
        _channel: String,
        _pattern: Option<String>,
        _payload: Vec<u8>,
    ) -> Result<(), Error> {
        Err(Error::Invalid(
            "the MongoDB adapter subscribes to no channel".into(),
        ))
    }
    fn on_document(_collection: String, document: Vec<u8>) -> Result<(), Error> {
        with(|n| n.on_document(&document))
    }
    fn on_timer(id: u64) {
        with_quiet(|n| n.on_timer(id))
    }
    fn on_counts(_ticket: u64, _counts: Result<Vec<u64>, Error>) {}
    fn on_local_ack(handle: u64, ack: Option<Vec<u8>>) {
        with_quiet(|n| n.on_local_ack(handle, ack))
    }
    fn on_server_side_ack(handle: u64, data: Vec<u8>) {
        with_quiet(|n| n.on_server_side_ack(handle, data))
    }
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
    fn on_connection(up: bool) {
        with_quiet(|n| n.on_connection(up))
    }
}

// Only a wasm build exports (a native build is for the unit tests).
#[cfg(target_arch = "wasm32")]
bindings::export!(Mongo with_types_in bindings);
