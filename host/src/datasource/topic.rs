//! What a pub/sub subscription listens to, for every pub/sub backend.

use super::LinkError;

/// What a subscription listens to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    /// One channel (`SUBSCRIBE`).
    Channel(String),
    /// A glob pattern of channels (`PSUBSCRIBE`).
    Pattern(String),
    /// One sharded channel (`SSUBSCRIBE`).
    Shard(String),
}

/// Where a link answers a subscriber count: counts in channel order.
pub type CountsReply = Box<dyn FnOnce(Result<Vec<u64>, LinkError>) + Send>;
