//! What a guest's `impl Guest` is made of: the node kept between calls, and the
//! `guest` functions every cluster guest forwards to it alike.

use std::cell::RefCell;
use std::thread::LocalKey;

use crate::bindings::wasio::adapter::types::Error;
use crate::node::Node;

/// Where a guest keeps its node between calls (in a `thread_local!`).
pub type Slot<B> = RefCell<Option<Node<B>>>;

/// Runs `f` on the initialised node in `slot`; a call before `init` is refused.
pub fn with<B: ?Sized + 'static, T>(
    slot: &'static LocalKey<Slot<B>>,
    f: impl FnOnce(&mut Node<B>) -> Result<T, Error>,
) -> Result<T, Error> {
    slot.with_borrow_mut(|n| match n {
        Some(node) => f(node),
        None => Err(Error::Other("called before init".into())),
    })
}

/// Like [`with`], for entry points that cannot report errors.
pub fn with_quiet<B: ?Sized + 'static>(
    slot: &'static LocalKey<Slot<B>>,
    f: impl FnOnce(&mut Node<B>),
) {
    slot.with_borrow_mut(|n| {
        if let Some(node) = n {
            f(node)
        }
    })
}

/// Writes, inside a guest's `impl Guest`, the functions every cluster guest forwards
/// to the node in `$slot` (a [`Slot`]) alike: `open`, `close`, the operations, and
/// `on-timer`, `on-counts`, `on-local-ack`, `on-server-side-ack`. The guest writes
/// `init`, `on-message`, `on-document`, `on-rooms` and `on-connection` itself.
#[macro_export]
#[rustfmt::skip]
macro_rules! forward_to_node {
    ($slot:ident) => {
        fn open(nsp: String) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.open(nsp))
        }
        fn close() -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.close())
        }
        fn broadcast(nsp: String, packet: Vec<u8>, opts: $crate::BroadcastOpts) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.broadcast(&nsp, packet, &opts))
        }
        fn broadcast_with_ack(nsp: String, id: u64, packet: Vec<u8>, opts: $crate::BroadcastOpts, timeout_ms: u32) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.broadcast_with_ack(&nsp, id, packet, &opts, timeout_ms))
        }
        fn add_sockets(nsp: String, opts: $crate::BroadcastOpts, rooms: Vec<String>) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.rooms_op(&nsp, $crate::RoomsOp::Join(rooms), &opts))
        }
        fn del_sockets(nsp: String, opts: $crate::BroadcastOpts, rooms: Vec<String>) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.rooms_op(&nsp, $crate::RoomsOp::Leave(rooms), &opts))
        }
        fn disconnect_sockets(nsp: String, opts: $crate::BroadcastOpts, close: bool) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.rooms_op(&nsp, $crate::RoomsOp::Disconnect(close), &opts))
        }
        fn fetch_sockets(nsp: String, id: u64, opts: $crate::BroadcastOpts) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.fetch_sockets(&nsp, id, &opts))
        }
        fn all_rooms(nsp: String, id: u64, _opts: $crate::BroadcastOpts) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.all_rooms(&nsp, id))
        }
        fn server_count(nsp: String, id: u64) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.server_count(&nsp, id))
        }
        fn server_side_emit(nsp: String, id: Option<u64>, data: Vec<u8>) -> Result<(), $crate::Error> {
            $crate::with(&$slot, |n| n.server_side_emit(&nsp, id, data))
        }
        fn on_timer(id: u64) {
            $crate::with_quiet(&$slot, |n| n.on_timer(id))
        }
        fn on_counts(ticket: u64, counts: Result<Vec<u64>, $crate::Error>) {
            $crate::with_quiet(&$slot, |n| n.on_counts(ticket, counts))
        }
        fn on_local_ack(handle: u64, ack: Option<Vec<u8>>) {
            $crate::with_quiet(&$slot, |n| n.on_local_ack(handle, ack))
        }
        fn on_server_side_ack(handle: u64, data: Vec<u8>) {
            $crate::with_quiet(&$slot, |n| n.on_server_side_ack(handle, data))
        }
    };
}

/// Generates a guest's bindings for `world` of `wit/adapter.wit` (two directories up,
/// as every guest crate sits, or the path given second), with the interfaces every guest shares mapped onto
/// [`crate::bindings`] (wit-bindgen's `with`): one set of types and host imports. What
/// the world adds (its datasource capability, the `guest` export and `export!`) is
/// generated in the guest. Write it inside a module: `mod bindings { wasio_cluster_node::generate!("pubsub-adapter"); }`.
#[macro_export]
macro_rules! generate {
    ($world:tt) => {
        $crate::generate!($world, "../../wit");
    };
    // A guest elsewhere in the tree names its path to `wit/`.
    ($world:tt, $wit:literal) => {
        wit_bindgen::generate!({
            path: $wit,
            world: $world,
            with: {
                "wasio:adapter/types@0.1.0": wasio_cluster_node::bindings::wasio::adapter::types,
                "wasio:adapter/log@0.1.0": wasio_cluster_node::bindings::wasio::adapter::log,
                "wasio:adapter/timers@0.1.0": wasio_cluster_node::bindings::wasio::adapter::timers,
                "wasio:adapter/sockets@0.1.0": wasio_cluster_node::bindings::wasio::adapter::sockets,
                "wasio:adapter/requests@0.1.0": wasio_cluster_node::bindings::wasio::adapter::requests,
            },
        });
    };
}
