//! What the two protocols of `@socket.io/redis-adapter` have in common, seen from
//! `lib.rs`: each is a cluster-node [`Backend`] (its channels and how it encodes), and
//! reads what arrives on its channels. `init` picks one.

use wasio_cluster_node::{Backend, Envelope};

/// One protocol of `@socket.io/redis-adapter`: [`crate::classic`] or [`crate::sharded`].
pub trait Transport: Backend {
    /// The adapter's name, as `init` reports it.
    fn name(&self) -> &'static str;
    /// Decodes what arrived on `channel`.
    fn decode(&self, channel: &str, payload: &[u8]) -> Result<Envelope, String>;
    /// Called with rooms of `nsp` on this node (`guest.on-rooms`).
    fn on_rooms(&mut self, _nsp: &str, _rooms: Vec<String>) {}
}
