//! The NATS link behind `wasio:adapter/pubsub` (on `async-nats`): one connection per
//! datasource, whatever the number of namespaces.
//!
//! - Channels are subjects. A glob pattern (`psubscribe`) is subscribed as the
//!   narrowest NATS wildcard that covers it (`a.b*` as `a.>`) and matched here, so
//!   it means what it means on Redis.
//! - Publishes and subscriptions go through one bounded queue, applied in order by
//!   one writer; while NATS is away the client holds them and replays subscriptions
//!   when it returns, and the queue bounds what waits (`publish_buffer`).
//! - NATS cannot count a subject's subscribers: every wasio link answers a census on
//!   [`CENSUS`] with its own subscriptions, and a count is the sum of the answers that
//!   arrive until [`CENSUS_QUIET`] passes without one.
//! - Sharded channels are Redis 7's: refused with an error that says so.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::{Client, Event, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::{CountsReply, LinkError, LinkEvent, LinkMetrics, Sink, Topic, glob};
use crate::config::DatasourceSpec;

/// The subject every wasio link answers subscriber counts on.
pub const CENSUS: &str = "_WASIO.census";
/// A count ends when no answer came for this long after the last one.
pub const CENSUS_QUIET: Duration = Duration::from_millis(50);
/// How long a count waits for the first answer (its own link's) before failing.
const CENSUS_FIRST: Duration = Duration::from_secs(2);
/// How long the first connection may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

enum Op {
    Publish {
        subject: String,
        payload: Bytes,
    },
    Subscribe(Topic),
    Unsubscribe(Topic),
    /// Answered once the server has read everything queued before it.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// The subscriptions of one link: what each topic's task is.
type Subscriptions = Arc<Mutex<BTreeMap<Topic, AbortHandle>>>;

/// One NATS datasource, shared by every namespace of the node.
pub struct NatsPubSub {
    spec: DatasourceSpec,
    id: u64,
    client: Client,
    ops: mpsc::Sender<Op>,
    metrics: Arc<LinkMetrics>,
    subscriptions: Subscriptions,
    writer: tokio::task::JoinHandle<()>,
    /// The task answering the census.
    census: AbortHandle,
}

impl NatsPubSub {
    /// Connects (failing after a few seconds, naming the datasource), answers the
    /// census, and starts pushing what arrives into `sink`.
    pub async fn connect(spec: &DatasourceSpec, sink: Sink) -> anyhow::Result<Self> {
        let label = spec.label();
        let id = super::next_link_id();
        let metrics = Arc::new(LinkMetrics::default());
        let events = {
            let (metrics, sink, label) = (metrics.clone(), sink.clone(), label.clone());
            move |event: Event| {
                let (metrics, sink, label) = (metrics.clone(), sink.clone(), label.clone());
                async move { on_event(id, event, &metrics, &sink, &label) }
            }
        };
        let options = async_nats::ConnectOptions::new()
            .name("wasio")
            .connection_timeout(Duration::from_secs(2))
            // Reconnect forever, up to 2 s apart.
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((50u64 << attempt.min(6)).min(2000))
            })
            .event_callback(events);
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(spec.url.as_str()))
            .await
            .map_err(|_| anyhow::anyhow!("{label}: no connection after {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{label}: cannot connect"))?;
        metrics.connected.store(true, Relaxed);

        let subscriptions: Subscriptions = Arc::default();
        let census = client
            .subscribe(CENSUS)
            .await
            .with_context(|| format!("{label}: subscribing {CENSUS}"))?;
        let census = tokio::spawn(answer_census(client.clone(), census, subscriptions.clone()))
            .abort_handle();
        let (ops, rx) = mpsc::channel(spec.publish_buffer.max(1));
        let writer = tokio::spawn(write(
            Receiving {
                link: id,
                client: client.clone(),
                subscriptions: subscriptions.clone(),
                sink,
                metrics: metrics.clone(),
            },
            rx,
        ));
        Ok(NatsPubSub {
            spec: spec.clone(),
            id,
            client,
            ops,
            metrics,
            subscriptions,
            writer,
            census,
        })
    }

    /// The id this link's events carry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The datasource this link was made for.
    pub fn spec(&self) -> &DatasourceSpec {
        &self.spec
    }

    /// Queues `payload` for the subject `channel`; fails when the buffer is full, the
    /// channel is no NATS subject, or `sharded` is asked.
    pub fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
        sharded: bool,
    ) -> Result<(), LinkError> {
        no_shards(sharded)?;
        subject(&channel)?;
        self.enqueue(Op::Publish {
            subject: channel,
            payload: payload.into(),
        })
    }

    /// Starts receiving `topic` (replayed by the client after a reconnect).
    pub fn subscribe(&self, topic: Topic) -> Result<(), LinkError> {
        match &topic {
            Topic::Shard(_) => no_shards(true)?,
            Topic::Channel(c) => subject(c)?,
            Topic::Pattern(_) => {}
        }
        self.enqueue(Op::Subscribe(topic))
    }

    /// Stops receiving `topic` (a pattern is stopped by its name, as a `Channel`).
    pub fn unsubscribe(&self, topic: Topic) -> Result<(), LinkError> {
        self.enqueue(Op::Unsubscribe(topic))
    }

    /// Counts the wasio links subscribed to each channel (the census); `reply` gets it.
    pub fn count(
        &self,
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    ) -> Result<(), LinkError> {
        no_shards(sharded)?;
        let client = self.client.clone();
        tokio::spawn(async move { reply(census(&client, &channels).await) });
        Ok(())
    }

    /// What this link is subscribed to now.
    pub fn topics(&self) -> BTreeSet<Topic> {
        self.subscriptions.lock().unwrap().keys().cloned().collect()
    }

    /// Waits until the server has read what was queued before, `wait` at most.
    pub async fn settled(&self, wait: Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.enqueue(Op::Barrier(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(())))
    }

    fn enqueue(&self, op: Op) -> Result<(), LinkError> {
        super::enqueue(&self.ops, op, "NATS", &self.spec, &self.metrics)
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        super::queue_json(&self.ops, &self.metrics, &self.spec, "nats")
    }

    /// Drops the queue and every subscription at once, as a node that crashed would
    /// (for the conformance kit): the server forgets them, the census stops counting
    /// this link.
    pub async fn sever(&self) {
        self.writer.abort();
        stop_receiving(&self.census, &self.subscriptions);
        let _ = self.client.flush().await;
    }

    /// Sends what is queued (waiting 2 s at most), then closes the connection.
    pub async fn close(self) {
        let NatsPubSub {
            client,
            ops,
            writer,
            census,
            subscriptions,
            ..
        } = self;
        // The writer drains the queue and ends once the last sender is gone.
        drop(ops);
        let abort = writer.abort_handle();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        abort.abort();
        stop_receiving(&census, &subscriptions);
        let _ = tokio::time::timeout(Duration::from_secs(2), client.drain()).await;
    }
}

/// Ends the census and every subscription's task (their subscribers unsubscribe).
fn stop_receiving(census: &AbortHandle, subscriptions: &Subscriptions) {
    census.abort();
    for (_, task) in std::mem::take(&mut *subscriptions.lock().unwrap()) {
        task.abort();
    }
}

fn no_shards(sharded: bool) -> Result<(), LinkError> {
    if sharded {
        return Err(LinkError::Invalid(
            "NATS has no sharded channels (mode `sharded` is Redis 7's SPUBLISH)".into(),
        ));
    }
    Ok(())
}

/// Refuses a channel that is no literal NATS subject.
fn subject(channel: &str) -> Result<(), LinkError> {
    let bad_token = channel
        .split('.')
        .any(|t| t.is_empty() || t == "*" || t == ">");
    if channel.is_empty() || channel.contains(char::is_whitespace) || bad_token {
        return Err(LinkError::Invalid(format!(
            "`{channel}` is no NATS subject (no spaces, empty `.`-separated parts, `*` or `>` parts)"
        )));
    }
    Ok(())
}

/// The narrowest NATS subscription that receives every channel the glob `pattern`
/// matches: its literal leading parts, then `>`.
pub fn covering_subject(pattern: &str) -> String {
    let mut literal = Vec::new();
    let mut parts = pattern.split('.').peekable();
    while let Some(part) = parts.next() {
        // The last part can end the channel, so it is never taken as literal: `a.b`
        // with `b` a glob-free final part is a channel, subscribed as one by the caller.
        if glob::is_glob(part) || part.is_empty() || parts.peek().is_none() {
            break;
        }
        literal.push(part);
    }
    literal.push(">");
    literal.join(".")
}

/// The link's half of the receiving side: where the writer starts a topic's task.
struct Receiving {
    link: u64,
    client: Client,
    subscriptions: Subscriptions,
    sink: Sink,
    metrics: Arc<LinkMetrics>,
}

impl Receiving {
    async fn subscribe(&self, topic: Topic) {
        if self.subscriptions.lock().unwrap().contains_key(&topic) {
            return;
        }
        // A glob-free pattern matches only itself: its subject needs no filter.
        let (nats_subject, filter) = match &topic {
            Topic::Channel(c) => (c.clone(), None),
            Topic::Pattern(p) if !glob::is_glob(p) => (p.clone(), None),
            Topic::Pattern(p) => (covering_subject(p), Some(p.clone())),
            Topic::Shard(_) => return,
        };
        let subscriber = match self.client.subscribe(nats_subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("NATS subscribe {nats_subject} failed: {e}");
                return;
            }
        };
        let pattern = match &topic {
            Topic::Pattern(p) => Some(p.clone()),
            _ => None,
        };
        let task = forward(self.link, subscriber, filter, pattern, self.sink.clone());
        let handle = tokio::spawn(task).abort_handle();
        self.subscriptions.lock().unwrap().insert(topic, handle);
    }

    fn unsubscribe(&self, topic: Topic) {
        let mut subs = self.subscriptions.lock().unwrap();
        let topic = topic.stopped_by_unsubscribe(|t| subs.contains_key(t));
        // Aborting the task drops its subscriber, which unsubscribes.
        if let Some(h) = subs.remove(&topic) {
            h.abort();
        }
    }
}

/// The writer: applies queued operations in order.
async fn write(rx_side: Receiving, mut rx: mpsc::Receiver<Op>) {
    while let Some(op) = rx.recv().await {
        rx_side.metrics.held.store(1, Relaxed);
        match op {
            Op::Publish { subject, payload } => {
                // Waits only while the client's own buffer is full.
                if let Err(e) = rx_side.client.publish(subject, payload).await {
                    LinkMetrics::bump(&rx_side.metrics.publish_errors);
                    tracing::warn!("NATS publish failed: {e}");
                }
            }
            Op::Subscribe(topic) => {
                rx_side.subscribe(topic).await;
                // Subscribed at the server before anything queued after it, as on Redis.
                if let Err(e) = round_trip(&rx_side.client).await {
                    tracing::warn!("NATS subscribe not confirmed: {e}");
                }
            }
            Op::Unsubscribe(topic) => rx_side.unsubscribe(topic),
            Op::Barrier(done) => {
                if round_trip(&rx_side.client).await.is_ok() {
                    let _ = done.send(());
                }
            }
        }
        rx_side.metrics.held.store(0, Relaxed);
    }
}

/// Returns once the server has read everything this client sent before: a message to
/// itself comes back only after (`flush` alone only empties the client's buffer).
async fn round_trip(client: &Client) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), echo.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err("no echo from the server within 10 s".into()),
    }
}

/// Forwards what one subscription receives into the sink, in order; a covering
/// subscription passes only what its glob `filter` matches.
async fn forward(
    link: u64,
    mut subscriber: Subscriber,
    filter: Option<String>,
    pattern: Option<String>,
    sink: Sink,
) {
    while let Some(msg) = subscriber.next().await {
        let channel = msg.subject.to_string();
        if let Some(f) = &filter
            && !glob::matches(f.as_bytes(), channel.as_bytes())
        {
            continue;
        }
        let event = LinkEvent::Message {
            link,
            channel,
            pattern: pattern.clone(),
            payload: msg.payload.to_vec(),
        };
        if !sink(event) {
            return;
        }
    }
}

/// Answers every census with this link's subscriber count of each asked channel.
async fn answer_census(client: Client, mut census: Subscriber, subscriptions: Subscriptions) {
    while let Some(msg) = census.next().await {
        let Some(reply) = msg.reply else { continue };
        let Ok(channels) = serde_json::from_slice::<Vec<String>>(&msg.payload) else {
            continue;
        };
        let counts: Vec<u64> = {
            let subs = subscriptions.lock().unwrap();
            channels
                .into_iter()
                .map(|c| u64::from(subs.contains_key(&Topic::Channel(c))))
                .collect()
        };
        let body = serde_json::to_vec(&counts).unwrap_or_default();
        let _ = client.publish(reply, body.into()).await;
    }
}

/// Asks every wasio link how many of `channels` it subscribes, and sums the answers.
async fn census(client: &Client, channels: &[String]) -> Result<Vec<u64>, LinkError> {
    let backend = |e: &dyn std::fmt::Display| LinkError::Backend(format!("NATS census: {e}"));
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| backend(&e))?;
    let ask = serde_json::to_vec(channels).unwrap_or_default();
    client
        .publish_with_reply(CENSUS, inbox, ask.into())
        .await
        .map_err(|e| backend(&e))?;
    let mut sums = vec![0u64; channels.len()];
    let mut wait = CENSUS_FIRST;
    let mut heard = 0;
    while let Ok(Some(msg)) = tokio::time::timeout(wait, answers.next()).await {
        if let Ok(counts) = serde_json::from_slice::<Vec<u64>>(&msg.payload) {
            for (sum, n) in sums.iter_mut().zip(counts) {
                *sum += n;
            }
            heard += 1;
        }
        wait = CENSUS_QUIET;
    }
    if heard == 0 {
        return Err(backend(&format_args!(
            "no answer within {CENSUS_FIRST:?}, not even this node's (is NATS reachable?)"
        )));
    }
    Ok(sums)
}

/// The client's connection events: up and down reach the guest, slow consumers are
/// counted as lost messages.
fn on_event(link: u64, event: Event, metrics: &LinkMetrics, sink: &Sink, label: &str) {
    match event {
        Event::Disconnected => {
            if metrics.connected.swap(false, Relaxed) {
                tracing::warn!("{label}: connection lost; reconnecting");
                sink(LinkEvent::Connection { link, up: false });
            }
        }
        Event::Connected => {
            if !metrics.connected.swap(true, Relaxed) {
                metrics.reconnects.fetch_add(1, Relaxed);
                tracing::info!("{label}: reconnected, subscriptions replayed by the client");
                sink(LinkEvent::Connection { link, up: true });
            }
        }
        Event::SlowConsumer(_) => {
            metrics.lost_messages.fetch_add(1, Relaxed);
            tracing::error!("{label}: NATS messages lost: the guest did not keep up");
        }
        Event::ServerError(e) => tracing::warn!("{label}: server error: {e}"),
        Event::ClientError(e) => tracing::warn!("{label}: client error: {e}"),
        Event::LameDuckMode | Event::Draining | Event::Closed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::covering_subject;

    #[test]
    fn a_glob_is_covered_by_its_literal_leading_parts() {
        assert_eq!(covering_subject("socket.io#*"), "socket.>");
        assert_eq!(covering_subject("a.b.c*"), "a.b.>");
        assert_eq!(covering_subject("a*"), ">");
        assert_eq!(covering_subject("a.?.c"), "a.>");
    }
}
