//! Connections the host keeps on the guest's behalf: one per configured datasource,
//! shared by every namespace. A guest reaches them only through its capabilities
//! (`pubsub`, `docstore`); what arrives is pushed into the guest as events.

mod glob;
pub mod memory;
pub mod mongo;
pub mod redis;

pub use memory::MemoryPubSub;
pub use mongo::MongoDocStore;
pub use redis::RedisPubSub;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use redis::{CountsReply, Topic};

use crate::config::Connector;

/// A configured backend, as the adapter is given it.
#[derive(Clone, Debug)]
pub struct DatasourceSpec {
    /// The key of `[datasources.NAME]`, for messages.
    pub name: String,
    pub connector: Connector,
    pub url: String,
    /// How many publishes may wait while the backend is unreachable.
    pub publish_buffer: usize,
}

impl DatasourceSpec {
    /// The URL without its password, for logs and `/healthz`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// A publish/subscribe link: Redis, or the in-process bus (`memory://`).
pub enum PubSubLink {
    Redis(RedisPubSub),
    Memory(MemoryPubSub),
}

impl PubSubLink {
    /// The id this link's events carry.
    pub fn id(&self) -> u64 {
        match self {
            PubSubLink::Redis(l) => l.id(),
            PubSubLink::Memory(l) => l.id(),
        }
    }

    /// The datasource this link was made for.
    pub fn spec(&self) -> &DatasourceSpec {
        match self {
            PubSubLink::Redis(l) => l.spec(),
            PubSubLink::Memory(l) => l.spec(),
        }
    }

    /// Publishes `payload` on `channel` (queued for Redis); fails when it cannot be.
    pub fn publish(&self, channel: String, payload: Vec<u8>, sharded: bool) -> Result<(), String> {
        match self {
            PubSubLink::Redis(l) => l.publish(channel, payload, sharded),
            PubSubLink::Memory(l) => l.publish(channel, payload, sharded),
        }
    }

    /// Starts receiving `topic`.
    pub fn subscribe(&self, topic: Topic) -> Result<(), String> {
        match self {
            PubSubLink::Redis(l) => l.subscribe(topic),
            PubSubLink::Memory(l) => l.subscribe(topic),
        }
    }

    /// Stops receiving `topic`.
    pub fn unsubscribe(&self, topic: Topic) -> Result<(), String> {
        match self {
            PubSubLink::Redis(l) => l.unsubscribe(topic),
            PubSubLink::Memory(l) => l.unsubscribe(topic),
        }
    }

    /// Asks how many subscribers each channel has; `reply` gets the answer.
    pub fn count(
        &self,
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    ) -> Result<(), String> {
        match self {
            PubSubLink::Redis(l) => l.count(channels, sharded, reply),
            PubSubLink::Memory(l) => l.count(channels, sharded, reply),
        }
    }

    /// Subscriptions to inject into: every node's on the in-memory bus, this link's own
    /// on Redis.
    pub fn topics(&self) -> std::collections::BTreeSet<Topic> {
        match self {
            PubSubLink::Redis(l) => l.topics(),
            PubSubLink::Memory(l) => l.bus_topics(),
        }
    }

    /// Waits until what was queued before is done, `wait` at most; false when it was not.
    pub async fn settled(&self, wait: Duration) -> bool {
        match self {
            PubSubLink::Redis(l) => l.settled(wait).await,
            PubSubLink::Memory(_) => true,
        }
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            PubSubLink::Redis(l) => l.to_json(),
            PubSubLink::Memory(l) => l.to_json(),
        }
    }

    /// Cuts the link at once, as a node that crashed would: its subscriptions vanish
    /// from the backend and nothing more is sent (for the conformance kit).
    pub async fn sever(&self) {
        match self {
            PubSubLink::Redis(l) => l.sever().await,
            PubSubLink::Memory(l) => l.cut(),
        }
    }

    /// Closes the link once what is queued has been sent.
    pub async fn close(self) {
        match self {
            PubSubLink::Redis(l) => l.close().await,
            PubSubLink::Memory(l) => l.cut(),
        }
    }
}

/// Counters and state of one datasource link, shown on `/healthz`.
#[derive(Default, Debug)]
pub struct LinkMetrics {
    /// Whether the receiving side is connected and subscribed.
    pub connected: AtomicBool,
    /// Times the link came back after being lost.
    pub reconnects: AtomicU64,
    /// Publishes refused because the buffer was full (the guest got an error).
    pub publish_errors: AtomicU64,
    /// Publish attempts that failed and were retried.
    pub publish_retries: AtomicU64,
    /// Messages the backend delivered that were lost before reaching the guest
    /// (the receive queue overflowed).
    pub lost_messages: AtomicU64,
    /// Messages whose payload was not a byte string.
    pub malformed: AtomicU64,
    /// Operations the writer took from the queue and has not sent yet.
    pub held: AtomicUsize,
}

impl LinkMetrics {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as JSON, with the buffered count the caller knows.
    pub fn to_json(&self, buffered: usize) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "reconnects": get(&self.reconnects),
            "buffered": buffered,
            "publish_errors": get(&self.publish_errors),
            "publish_retries": get(&self.publish_retries),
            "lost_messages": get(&self.lost_messages),
            "malformed": get(&self.malformed),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("redis://user:secret@h:6379/2"),
            "redis://user:***@h:6379/2"
        );
        assert_eq!(super::redact("rediss://:pw@h"), "rediss://:***@h");
        assert_eq!(super::redact("redis://h:6379"), "redis://h:6379");
    }
}
