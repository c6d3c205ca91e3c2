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

impl Topic {
    /// What `unsubscribe(self)` stops, given what is `subscribed`: the topic itself, or,
    /// for a channel name only a pattern has, that pattern (the contract's `unsubscribe`
    /// names a pattern given to `psubscribe` as a channel).
    pub(crate) fn stopped_by_unsubscribe(self, subscribed: impl Fn(&Topic) -> bool) -> Topic {
        match self {
            Topic::Channel(name) if !subscribed(&Topic::Channel(name.clone())) => {
                Topic::Pattern(name)
            }
            other => other,
        }
    }
}

/// Where a link answers a subscriber count: counts in channel order.
pub type CountsReply = Box<dyn FnOnce(Result<Vec<u64>, LinkError>) + Send>;
