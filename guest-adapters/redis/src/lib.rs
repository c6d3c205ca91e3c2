//! wasio's Redis adapter: a node of a `@socket.io/redis-adapter` 8.3 cluster.
//!
//! - [`classic`]: `createAdapter` (PUBLISH/PSUBSCRIBE, `../shared/protocols.md` §1).
//! - [`sharded`]: `createShardedAdapter` (SPUBLISH/SSUBSCRIBE, the cluster message
//!   family of `wasio-cluster-protocol`).
//! - [`node`]: what both share — the requests this node waits on, the acks it owes
//!   other nodes, and what an incoming message does to local sockets.
//!
//! The host owns the Redis connections; this guest only says what to publish and what
//! to subscribe to, and acts on what arrives.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "pubsub-adapter" });
}

mod classic;
mod node;
mod options;
mod sharded;
mod wire;

use std::cell::RefCell;

use bindings::exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use bindings::wasio::adapter::types::Error;
use node::Node;

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

struct Redis;

impl Guest for Redis {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        let opts = options::Options::parse(&args.options).map_err(Error::Invalid)?;
        let name = match opts.mode {
            options::Mode::Classic => "redis",
            options::Mode::Sharded => "redis-sharded",
        };
        NODE.set(Some(Node::new(opts, args.node_id)));
        Ok(AdapterInfo {
            name: name.into(),
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
        with(|n| n.rooms_op(&nsp, node::RoomsOp::Join(rooms), &opts))
    }
    fn del_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        with(|n| n.rooms_op(&nsp, node::RoomsOp::Leave(rooms), &opts))
    }
    fn disconnect_sockets(nsp: String, opts: BroadcastOpts, close: bool) -> Result<(), Error> {
        with(|n| n.rooms_op(&nsp, node::RoomsOp::Disconnect(close), &opts))
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
        channel: String,
        _pattern: Option<String>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        with(|n| n.on_message(&channel, &payload))
    }
    fn on_document(_collection: String, _document: Vec<u8>) -> Result<(), Error> {
        Err(Error::Invalid(
            "the Redis adapter watches no collection".into(),
        ))
    }
    fn on_timer(id: u64) {
        with_quiet(|n| n.on_timer(id))
    }
    fn on_counts(ticket: u64, counts: Result<Vec<u64>, Error>) {
        with_quiet(|n| n.on_counts(ticket, counts))
    }
    fn on_local_ack(handle: u64, ack: Option<Vec<u8>>) {
        with_quiet(|n| n.on_local_ack(handle, ack))
    }
    fn on_server_side_ack(handle: u64, data: Vec<u8>) {
        with_quiet(|n| n.on_server_side_ack(handle, data))
    }
    fn on_rooms(nsp: String, rooms: Vec<String>) {
        with_quiet(|n| n.on_rooms(&nsp, rooms))
    }
    fn on_connection(up: bool) {
        with_quiet(|n| n.on_connection(up))
    }
}

// Only a wasm build exports (a native build is for the unit tests of the protocol).
#[cfg(target_arch = "wasm32")]
bindings::export!(Redis with_types_in bindings);
