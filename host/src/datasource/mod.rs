//! Connections the host keeps on the guest's behalf: one per configured datasource,
//! shared by every namespace. Each link pushes what arrives into the [`Sink`] it is
//! given; it knows nothing of guests. A guest reaches links only through its
//! capabilities (`pubsub`, `docstore`, `notify`).

pub(crate) mod glob;
mod links;
pub(crate) mod memory;
pub(crate) mod mongo;
pub(crate) mod nats;
pub(crate) mod postgres;
pub(crate) mod redis;
mod topic;

pub(crate) use links::{Links, PubSubLink};
pub(crate) use topic::CountsReply;
pub use topic::Topic;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// What a link reports, in the order it happened.
#[derive(Clone, Debug)]
pub enum LinkEvent {
    /// A message arrived on a subscribed channel of link `link`.
    Message {
        /// The link's id.
        link: u64,
        /// The channel it was published on.
        channel: String,
        /// The subscribed pattern it matched, for a pattern subscription.
        pattern: Option<String>,
        /// What was published.
        payload: Vec<u8>,
    },
    /// A document was inserted in a watched collection of link `link` (BSON).
    Document {
        /// The link's id.
        link: u64,
        /// The collection.
        collection: String,
        /// The document, BSON.
        document: Vec<u8>,
    },
    /// The connection of link `link` went down or came back.
    Connection {
        /// The link's id.
        link: u64,
        /// Whether it is up now.
        up: bool,
    },
}

impl LinkEvent {
    /// The link it came from.
    pub fn link(&self) -> u64 {
        match self {
            LinkEvent::Message { link, .. }
            | LinkEvent::Document { link, .. }
            | LinkEvent::Connection { link, .. } => *link,
        }
    }
}

/// Where a link pushes what arrives; `false` once no one listens (the node is gone),
/// and the link's tasks stop.
pub type Sink = Arc<dyn Fn(LinkEvent) -> bool + Send + Sync>;

/// A new id for a link's events: unique in the process.
pub(crate) fn next_link_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed) + 1
}

/// Why a link did not take an operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The queue toward the backend is full: it is slow or unreachable.
    #[error("{0}")]
    Full(String),
    /// The link was closed or cut: nothing more goes through it.
    #[error("{0}")]
    Closed(String),
    /// The operation itself is malformed (a document that is not BSON, a bad feed).
    #[error("{0}")]
    Invalid(String),
    /// The backend failed or refused it; retrying later may work.
    #[error("{0}")]
    Backend(String),
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

/// Queues `op` for a link's writer. A full queue (the backend is slow or away: the
/// bound is `publish_buffer`) or a closed one refuses it, counted in `publish_errors`.
pub(crate) fn enqueue<T>(
    ops: &tokio::sync::mpsc::Sender<T>,
    op: T,
    backend: &str,
    spec: &crate::config::DatasourceSpec,
    metrics: &LinkMetrics,
) -> Result<(), LinkError> {
    use tokio::sync::mpsc::error::TrySendError;
    ops.try_send(op).map_err(|e| {
        LinkMetrics::bump(&metrics.publish_errors);
        match e {
            TrySendError::Full(_) => LinkError::Full(format!(
                "{backend} at {} is not keeping up or unreachable: {} operations already wait to be sent",
                spec.redacted_url(),
                spec.publish_buffer
            )),
            TrySendError::Closed(_) => LinkError::Closed(format!("the {backend} link is closed")),
        }
    })
}

/// `/healthz`'s view of a link whose writer reads `ops`: what waits in the queue and
/// what the writer holds, the counters, and which datasource it is.
pub(crate) fn queue_json<T>(
    ops: &tokio::sync::mpsc::Sender<T>,
    metrics: &LinkMetrics,
    spec: &crate::config::DatasourceSpec,
    connector: &str,
) -> serde_json::Value {
    let buffered = ops.max_capacity() - ops.capacity() + metrics.held.load(Ordering::Relaxed);
    let mut v = metrics.to_json(buffered);
    v["name"] = spec.name.clone().into();
    v["connector"] = connector.into();
    v["url"] = spec.redacted_url().into();
    v
}
