//! The Redis link behind `wasio:adapter/pubsub` (on `fred`): one publishing and one
//! subscribing connection per datasource, whatever the number of namespaces.
//!
//! - Publishes, subscriptions and counts go through one bounded queue, applied in
//!   order by one writer: a publish never overtakes the subscribe before it, and
//!   publishes are pipelined in batches. While Redis is away the queue holds them (up
//!   to `publish_buffer`, then the guest's `publish` fails with `unavailable`) and the
//!   writer retries until they are sent.
//! - Subscriptions are tracked here, not by the client library, so the ones asked for
//!   while Redis was away are replayed too when it returns.
//! - Messages reach the guest through the node's event queue in the order Redis sent
//!   them; a receive-queue overflow is counted, never silent.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fred::clients::{Client, Pipeline, SubscriberClient};
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::types::config::{Config, Options, ReconnectPolicy};
use fred::types::{Builder, ClusterHash, MessageKind, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

use super::{CountsReply, LinkError, LinkEvent, LinkMetrics, Sink, Topic, glob};
use crate::config::DatasourceSpec;

/// Publishes pipelined into one write.
const BATCH: usize = 256;
/// How long the first connection may take before start-up fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages the client library may hold for us before it drops (and we count) them.
const RECEIVE_QUEUE: usize = 1 << 16;
/// The longest reconnect delay: after Redis returns, publishes that waited are held
/// this long more, so that other nodes (same policy) have resubscribed and receive them.
const MAX_RECONNECT_DELAY_MS: u32 = 2000;

enum Op {
    Publish {
        channel: String,
        payload: Bytes,
        sharded: bool,
    },
    Subscribe(Topic),
    Unsubscribe(Topic),
    /// Answered once everything queued before it is done (subscriptions confirmed).
    Barrier(tokio::sync::oneshot::Sender<()>),
    Count {
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    },
}

/// One Redis datasource, shared by every namespace of the node.
pub struct RedisPubSub {
    spec: DatasourceSpec,
    /// Tags this link's events, so they reach the adapters that use it.
    id: u64,
    ops: mpsc::Sender<Op>,
    metrics: Arc<LinkMetrics>,
    writer: tokio::task::JoinHandle<()>,
    tasks: JoinSet<()>,
    publisher: Client,
    subscriber: SubscriberClient,
    topics: Arc<Mutex<BTreeSet<Topic>>>,
}

impl RedisPubSub {
    /// Connects both connections (failing after a few seconds, naming the datasource)
    /// and starts pushing what arrives into `sink`.
    pub async fn connect(spec: &DatasourceSpec, sink: Sink) -> anyhow::Result<Self> {
        let label = spec.label();
        let id = super::next_link_id();
        let config = Config::from_url(&spec.url).with_context(|| format!("{label}: bad URL"))?;
        let mut builder = Builder::from_config(config);
        builder
            // Reconnect forever: 50 ms doubling up to 2 s.
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                50,
                MAX_RECONNECT_DELAY_MS,
                2,
            ))
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                // Retries are ours (see `flush`), so that a full queue is visible.
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.broadcast_channel_capacity = RECEIVE_QUEUE;
                p.default_command_timeout = Duration::from_secs(5);
            });
        let publisher = builder.build().with_context(|| label.clone())?;
        let subscriber = builder
            .build_subscriber_client()
            .with_context(|| label.clone())?;
        let messages = subscriber.message_rx();
        let reconnects = subscriber.reconnect_rx();
        let errors = subscriber.error_rx();
        // `init` listens before it connects (`connect` + `wait_for_connect` can miss a
        // connection made in between, seen under load), and fails on a first refusal.
        let both = async { tokio::try_join!(publisher.init(), subscriber.init()) };
        tokio::time::timeout(CONNECT_TIMEOUT, both)
            .await
            .map_err(|_| anyhow::anyhow!("{label}: no connection after {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{label}: cannot connect"))?;

        let metrics = Arc::new(LinkMetrics::default());
        metrics
            .connected
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let topics = Arc::new(Mutex::new(BTreeSet::new()));
        let (writable, writable_rx) = watch::channel(true);
        let (ops, rx) = mpsc::channel(spec.publish_buffer.max(1));
        let writer = tokio::spawn(write(
            publisher.clone(),
            subscriber.clone(),
            topics.clone(),
            rx,
            writable_rx,
            metrics.clone(),
        ));
        let mut tasks = JoinSet::new();
        tasks.spawn(receive(
            id,
            messages,
            topics.clone(),
            sink.clone(),
            metrics.clone(),
        ));
        let subscribed = topics.clone();
        let watch = LinkWatch {
            id,
            subscriber: subscriber.clone(),
            topics,
            writable,
            sink,
            metrics: metrics.clone(),
            label,
        };
        tasks.spawn(watch.run(reconnects, errors));
        Ok(RedisPubSub {
            spec: spec.clone(),
            id,
            ops,
            metrics,
            writer,
            tasks,
            publisher,
            subscriber,
            topics: subscribed,
        })
    }

    /// Drops both connections at once, queue and all, as a node that crashed (for the
    /// conformance kit): Redis forgets its subscriptions.
    pub async fn sever(&self) {
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }

    /// What this link is subscribed to now.
    pub fn topics(&self) -> BTreeSet<Topic> {
        self.topics.lock().unwrap().clone()
    }

    /// The id this link's events carry.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The datasource this link was made for.
    pub fn spec(&self) -> &DatasourceSpec {
        &self.spec
    }

    /// Queues `payload` for `channel`; fails only when the buffer is full.
    pub fn publish(
        &self,
        channel: String,
        payload: Vec<u8>,
        sharded: bool,
    ) -> Result<(), LinkError> {
        self.enqueue(Op::Publish {
            channel,
            payload: payload.into(),
            sharded,
        })
    }

    /// Starts receiving `topic` (also after every reconnect).
    pub fn subscribe(&self, topic: Topic) -> Result<(), LinkError> {
        self.enqueue(Op::Subscribe(topic))
    }

    /// Stops receiving `topic` (a pattern given to psubscribe is stopped by its name,
    /// as a `Channel`).
    pub fn unsubscribe(&self, topic: Topic) -> Result<(), LinkError> {
        self.enqueue(Op::Unsubscribe(topic))
    }

    /// Waits until what was queued before (subscriptions above all) is done in Redis,
    /// `wait` at most; false when it was not.
    pub async fn settled(&self, wait: Duration) -> bool {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.enqueue(Op::Barrier(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(())))
    }

    /// Asks Redis how many subscribers each channel has; `reply` gets the answer.
    pub fn count(
        &self,
        channels: Vec<String>,
        sharded: bool,
        reply: CountsReply,
    ) -> Result<(), LinkError> {
        self.enqueue(Op::Count {
            channels,
            sharded,
            reply,
        })
    }

    fn enqueue(&self, op: Op) -> Result<(), LinkError> {
        super::enqueue(&self.ops, op, "Redis", &self.spec, &self.metrics)
    }

    /// State and counters for `/healthz`.
    pub fn to_json(&self) -> serde_json::Value {
        super::queue_json(&self.ops, &self.metrics, &self.spec, "redis")
    }

    /// Closes both connections once what is queued has been sent (waiting 2 s at most).
    pub async fn close(self) {
        let RedisPubSub {
            ops,
            writer,
            mut tasks,
            publisher,
            subscriber,
            ..
        } = self;
        // The writer drains the queue and ends once the last sender is gone.
        drop(ops);
        let abort = writer.abort_handle();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        abort.abort();
        tasks.abort_all();
        let _ = subscriber.quit().await;
        let _ = publisher.quit().await;
    }
}

/// The writer: applies queued operations in order.
async fn write(
    publisher: Client,
    subscriber: SubscriberClient,
    topics: Arc<Mutex<BTreeSet<Topic>>>,
    mut rx: mpsc::Receiver<Op>,
    mut writable: watch::Receiver<bool>,
    metrics: Arc<LinkMetrics>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut pending = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        metrics
            .held
            .store(batch.len(), std::sync::atomic::Ordering::Relaxed);
        // While Redis is away, everything waits here, in order (the queue is the bound).
        if writable.wait_for(|up| *up).await.is_err() {
            return;
        }
        for op in batch.drain(..) {
            match op {
                Op::Publish {
                    channel,
                    payload,
                    sharded,
                } => pending.push((channel, payload, sharded)),
                Op::Subscribe(topic) => {
                    flush(&publisher, &mut pending, &metrics).await;
                    // Tracked first: if Redis is away now, the reconnect replays it.
                    let added = topics.lock().unwrap().insert(topic.clone());
                    if added && let Err(e) = send_subscribe(&subscriber, &topic).await {
                        tracing::warn!("subscribe {topic:?} failed (replayed on reconnect): {e}");
                    }
                }
                Op::Barrier(done) => {
                    flush(&publisher, &mut pending, &metrics).await;
                    let _ = done.send(());
                }
                Op::Unsubscribe(topic) => {
                    flush(&publisher, &mut pending, &metrics).await;
                    let removed = forget(&topics, topic);
                    if let Some(topic) = removed
                        && let Err(e) = send_unsubscribe(&subscriber, &topic).await
                    {
                        tracing::warn!("unsubscribe {topic:?} failed: {e}");
                    }
                }
                Op::Count {
                    channels,
                    sharded,
                    reply,
                } => {
                    flush(&publisher, &mut pending, &metrics).await;
                    // Answered off the writer: publishes need not wait for it.
                    let publisher = publisher.clone();
                    tokio::spawn(async move {
                        reply(count(&publisher, &channels, sharded).await);
                    });
                }
            }
        }
        flush(&publisher, &mut pending, &metrics).await;
        metrics.held.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Removes `topic` from the tracked set (a channel name may name a pattern); returns
/// what was removed.
fn forget(topics: &Mutex<BTreeSet<Topic>>, topic: Topic) -> Option<Topic> {
    let mut set = topics.lock().unwrap();
    let topic = topic.stopped_by_unsubscribe(|t| set.contains(t));
    set.remove(&topic).then_some(topic)
}

/// Sends `pending` as pipelines, one per run of classic or sharded publishes; retries
/// what failed, in order, until it is sent.
///
/// On a Redis Cluster a classic PUBLISH may go to any node (the cluster bus relays it
/// to all), and fred picks the node by the channel's slot: messages on two channels
/// then travel by two nodes and can arrive out of the order they were sent. They all
/// go by the node of one slot instead, which keeps this node's order (a broadcast, then
/// the answer to a request, as on one Redis). A sharded one must go to its channel's slot.
async fn flush(
    publisher: &Client,
    pending: &mut Vec<(String, Bytes, bool)>,
    metrics: &LinkMetrics,
) {
    let one_node = Options {
        cluster_hash: Some(ClusterHash::Custom(0)),
        ..Default::default()
    };
    let mut backoff = Duration::from_millis(50);
    while !pending.is_empty() {
        let mut sent = vec![false; pending.len()];
        let mut start = 0;
        while start < pending.len() {
            let sharded = pending[start].2;
            let len = pending[start..]
                .iter()
                .take_while(|p| p.2 == sharded)
                .count();
            let run = &pending[start..start + len];
            let results = if sharded {
                send(publisher.pipeline(), run).await
            } else {
                send(Pipeline::from(publisher.with_options(&one_node)), run).await
            };
            for (k, ok) in results.into_iter().enumerate() {
                sent[start + k] = ok;
            }
            start += len;
        }
        let mut i = 0;
        pending.retain(|_| {
            i += 1;
            !sent[i - 1]
        });
        if !pending.is_empty() {
            metrics
                .publish_retries
                .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

/// One pipeline of `run`'s publishes: which of them Redis took.
async fn send<C: PubsubInterface>(pipe: Pipeline<C>, run: &[(String, Bytes, bool)]) -> Vec<bool> {
    for (channel, payload, sharded) in run {
        // Queuing into a pipeline only fails on bad arguments, which these are not.
        let _: Result<(), _> = if *sharded {
            pipe.spublish(channel.clone(), payload.clone()).await
        } else {
            pipe.publish(channel.clone(), payload.clone()).await
        };
    }
    let results = pipe.try_all::<Value>().await;
    (0..run.len())
        .map(|k| results.get(k).is_some_and(Result::is_ok))
        .collect()
}

async fn send_subscribe(sub: &SubscriberClient, topic: &Topic) -> Result<(), fred::error::Error> {
    match topic {
        Topic::Channel(c) => sub.subscribe(c.as_str()).await,
        Topic::Pattern(p) => sub.psubscribe(p.as_str()).await,
        Topic::Shard(c) => sub.ssubscribe(c.as_str()).await,
    }
}

async fn send_unsubscribe(sub: &SubscriberClient, topic: &Topic) -> Result<(), fred::error::Error> {
    match topic {
        Topic::Channel(c) => sub.unsubscribe(c.as_str()).await,
        Topic::Pattern(p) => sub.punsubscribe(p.as_str()).await,
        Topic::Shard(c) => sub.sunsubscribe(c.as_str()).await,
    }
}

/// PUBSUB NUMSUB / SHARDNUMSUB, as counts in channel order. On a Redis Cluster a
/// classic subscriber is counted only by the node it is connected to: NUMSUB is asked
/// of every primary and summed (as the Node.js adapter does with an ioredis cluster);
/// a shard channel's subscribers are all on its slot's node, where fred sends it.
async fn count(
    publisher: &Client,
    channels: &[String],
    sharded: bool,
) -> Result<Vec<u64>, LinkError> {
    if sharded {
        return numsub(publisher, channels, true).await;
    }
    let Some(cluster) = publisher.cached_cluster_state() else {
        return numsub(publisher, channels, false).await;
    };
    // Every master at once, each bounded: a master that died (its replica not yet
    // promoted) holds no live subscriber, and must not fail every request meanwhile.
    let asks = cluster.unique_primary_nodes().into_iter().map(|server| {
        let node = publisher.with_cluster_node(server);
        async move {
            tokio::time::timeout(MASTER_COUNT_TIMEOUT, numsub(&node, channels, false))
                .await
                .unwrap_or_else(|_| Err(LinkError::Backend("PUBSUB NUMSUB: no answer".into())))
        }
    });
    let mut sums = vec![0; channels.len()];
    let mut last_error = None;
    let mut answered = 0;
    for answer in futures_util::future::join_all(asks).await {
        match answer {
            Ok(counts) => {
                answered += 1;
                for (sum, n) in sums.iter_mut().zip(counts) {
                    *sum += n;
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) if answered == 0 => Err(e),
        Some(e) => {
            tracing::debug!(
                "counting subscribers: a master did not answer ({e}); counted without it"
            );
            Ok(sums)
        }
        None => Ok(sums),
    }
}

/// How long a count waits for one master of a Redis Cluster.
const MASTER_COUNT_TIMEOUT: Duration = Duration::from_millis(500);

/// One PUBSUB NUMSUB / SHARDNUMSUB, on the node `client` sends it to.
async fn numsub(
    client: &(impl PubsubInterface + Sync),
    channels: &[String],
    sharded: bool,
) -> Result<Vec<u64>, LinkError> {
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let reply: Value = if sharded {
        client.pubsub_shardnumsub(names).await
    } else {
        client.pubsub_numsub(names).await
    }
    .map_err(|e| LinkError::Backend(format!("PUBSUB NUMSUB: {e}")))?;
    // RESP2 answers [channel, n, ...]; RESP3 a map.
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(items) => {
            let mut it = items.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(map) => map
            .inner()
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
        other => {
            return Err(LinkError::Backend(format!(
                "PUBSUB NUMSUB: unexpected reply {other:?}"
            )));
        }
    };
    Ok(channels
        .iter()
        .map(|c| {
            pairs
                .iter()
                .find(|(k, _)| k.as_str().as_deref() == Some(c.as_str()))
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(0)
        })
        .collect())
}

/// Forwards messages into the sink, in order.
async fn receive(
    link: u64,
    mut messages: broadcast::Receiver<fred::types::Message>,
    topics: Arc<Mutex<BTreeSet<Topic>>>,
    sink: Sink,
    metrics: Arc<LinkMetrics>,
) {
    loop {
        let msg = match messages.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                metrics
                    .lost_messages
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("{n} Redis messages lost: the guest did not keep up");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let payload = match msg.value {
            Value::Bytes(b) => b.to_vec(),
            Value::String(s) => s.into_inner().to_vec(),
            _ => {
                LinkMetrics::bump(&metrics.malformed);
                continue;
            }
        };
        let channel = msg.channel.to_string();
        let pattern = (msg.kind == MessageKind::PMessage)
            .then(|| matching_pattern(&topics, &channel))
            .flatten();
        let event = LinkEvent::Message {
            link,
            channel,
            pattern,
            payload,
        };
        if !sink(event) {
            return;
        }
    }
}

fn matching_pattern(topics: &Mutex<BTreeSet<Topic>>, channel: &str) -> Option<String> {
    topics.lock().unwrap().iter().find_map(|t| match t {
        Topic::Pattern(p) if glob::matches(p.as_bytes(), channel.as_bytes()) => Some(p.clone()),
        _ => None,
    })
}

/// Tells the guest when the link goes down and, after replaying every subscription,
/// when it is back; holds publishes while it is down.
struct LinkWatch {
    id: u64,
    subscriber: SubscriberClient,
    topics: Arc<Mutex<BTreeSet<Topic>>>,
    writable: watch::Sender<bool>,
    sink: Sink,
    metrics: Arc<LinkMetrics>,
    label: String,
}

impl LinkWatch {
    async fn run(
        self,
        mut reconnects: broadcast::Receiver<fred::types::config::Server>,
        mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    ) {
        let LinkWatch {
            id,
            subscriber,
            topics,
            writable,
            sink,
            metrics,
            label,
        } = self;
        use std::sync::atomic::Ordering::Relaxed;
        let push = |up: bool| {
            sink(LinkEvent::Connection { link: id, up });
        };
        loop {
            tokio::select! {
                err = errors.recv() => match err {
                    Ok((e, _)) => {
                        writable.send_replace(false);
                        if metrics.connected.swap(false, Relaxed) {
                            tracing::warn!("{label}: connection lost: {e}; reconnecting");
                            push(false);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                up = reconnects.recv() => match up {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        let all: Vec<Topic> = topics.lock().unwrap().iter().cloned().collect();
                        // Retried a few times; a link that stays up but refuses them is
                        // reported and not left holding every publish.
                        let mut pending = all.clone();
                        for attempt in 1..=5u32 {
                            let mut failed = Vec::new();
                            for topic in pending {
                                if send_subscribe(&subscriber, &topic).await.is_err() {
                                    failed.push(topic);
                                }
                            }
                            pending = failed;
                            if pending.is_empty() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                        }
                        if !pending.is_empty() {
                            tracing::error!("{label}: {} subscriptions could not be replayed (retried at the next reconnect): {pending:?}", pending.len());
                        }
                        if !metrics.connected.swap(true, Relaxed) {
                            metrics.reconnects.fetch_add(1, Relaxed);
                            tracing::info!("{label}: reconnected, {} subscriptions replayed", all.len());
                            push(true);
                            tokio::time::sleep(Duration::from_millis(MAX_RECONNECT_DELAY_MS.into())).await;
                        }
                        writable.send_replace(true);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}
