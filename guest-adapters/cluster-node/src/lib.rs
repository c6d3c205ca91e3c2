//! One node of a Socket.IO cluster, written once for the wasio guests that relay
//! through a datasource: what Node.js `socket.io-adapter` calls `ClusterAdapter` and,
//! with heartbeats, `ClusterAdapterWithHeartbeat`.
//!
//! - [`Node`]: the requests this node waits on, the acks it owes other nodes, how the
//!   answers fold into the host's, what a message from another node does to this
//!   node's sockets and, with heartbeats, which other nodes are alive.
//! - [`Backend`]: what a datasource supplies — publish, publish a response, count the
//!   nodes — in the encoding of its own protocol.
//! - [`messages`]: what a node sends and receives, whatever the protocol.
//! - [`options`]: `[adapter.options]` read as every guest reads it.
//! - [`family`]: those messages as the cluster message family of
//!   `wasio-cluster-protocol`, for backends that speak it.
//! - [`convert`]: the contract's broadcast options and sockets as they travel.
//! - [`Slot`], [`with`] and [`forward_to_node!`]: a guest's `impl Guest` around its
//!   node.
//! - [`bindings`]: the host interfaces every guest shares (`types`, `log`, `timers`,
//!   `sockets`, `requests`), generated once; a guest generates its own world with
//!   [`generate!`], which maps these onto them.

/// The `local-adapter` world's imports and types. Its `guest` export is the guest's to
/// generate and export; nothing here exports it.
#[allow(clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "local-adapter" });
}

pub mod convert;
pub mod family;
mod guest;
pub mod messages;
mod node;
pub mod options;

pub use bindings::wasio::adapter::types::{BroadcastOpts, Error, SocketInfo};
pub use guest::{Slot, with, with_quiet};
pub use messages::{Envelope, In, Op, Part, Response, RoomsOp};
pub use node::{Backend, Heartbeat, Node, Settings};
