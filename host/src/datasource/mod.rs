//! Connections the host keeps on the guest's behalf: one per configured datasource,
//! shared by every namespace. A guest reaches them only through its capabilities
//! (`pubsub`, `docstore`); what arrives is pushed into the guest as events.

mod glob;
pub mod mongo;
pub mod redis;

pub use mongo::MongoDocStore;
pub use redis::RedisPubSub;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

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
