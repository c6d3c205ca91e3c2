//! The load generator of the broadcast workloads (`fanout`, `rooms`, `small-rooms`):
//! Socket.IO clients over raw WebSocket (engine.io v4 / socket.io v5, just what the
//! workloads need), senders that `publish`, receivers that time deliveries.
//!
//! With rooms (`Plan::room_size`), client `i` joins room `r<i / size>` before the run:
//! consecutive clients, so with round-robin placement each room spans the nodes. A
//! sender publishes to a random room, and that publish is complete once all its members
//! have it.
//!
//! Wire, as sent and read here: the server opens with `0{...}`, the client connects the
//! main namespace with `40` (answered `40{"sid":...}`), pings `2` are answered `3`, a
//! publish is `42<id>["publish",{"event":"bench","data":"<payload>"}]` (ack `43<id>[{...}]`)
//! and a delivery `42["bench","<payload>"]`. The payload string is `<seq:16 hex><send time,
//! ns since the run's base instant: 16 hex>` padded with `x` to `--payload` bytes; senders
//! and receivers share one process and so one clock. The node a publish was sent to is
//! noted by sequence number, so that deliveries through the cluster's backend (a client on
//! another node) are timed apart as well.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::SinkExt;
use futures_util::stream::{self, SplitSink, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicU8, AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Notify, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The event every delivery carries.
pub(crate) const EVENT: &str = "bench";
pub(crate) const DELIVERY_PREFIX: &str = "42[\"bench\",\"";
/// Per-publish delivery counters, indexed by sequence number modulo their number.
const RING: usize = 1 << 20;
/// A publish not fully delivered after this no longer holds its place in the window.
const STALL: Duration = Duration::from_secs(1);

/// What to run against an already started cluster.
#[derive(Clone, Debug)]
pub struct Plan {
    /// One Socket.IO URL base per node (`ws://127.0.0.1:PORT`).
    pub nodes: Vec<String>,
    pub clients: usize,
    pub senders: usize,
    pub window: usize,
    pub rate: f64,
    pub payload: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Members per room; `None`: every publish goes to the whole namespace.
    pub room_size: Option<usize>,
    /// Processes whose CPU time is sampled over the measured window: the nodes, then
    /// Redis if found.
    pub pids: Vec<u32>,
    /// How many of `pids` are the nodes (their RSS is sampled too).
    pub node_pids: usize,
    /// Admin listeners of wasio nodes (`host:port`), for guest time from `/metrics`.
    pub admins: Vec<String>,
}

impl Plan {
    pub fn node_pids(&self) -> &[u32] {
        &self.pids[..self.node_pids.min(self.pids.len())]
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Deliveries received during the measured window.
    pub deliveries: u64,
    /// Publishes sent during the measured window.
    pub publishes: u64,
    pub measure: Duration,
    /// Latencies of the deliveries received in the window, µs, sorted.
    pub latencies_us: Vec<u32>,
    /// Those of them to clients on another node than the sender's (through the backend).
    pub cross_latencies_us: Vec<u32>,
    /// Deliveries of workload publishes that never arrived (after a drain).
    pub lost: u64,
    /// Publishes whose ack carried an error.
    pub ack_errors: u64,
    /// Times a sender gave up waiting for a full delivery (see [`STALL`]).
    pub stalls: u64,
    /// CPU seconds over the measured window of each of [`Plan::pids`], then of this
    /// process (the load generator).
    pub cpu_seconds: Vec<f64>,
    /// Connections held during the window.
    pub clients: usize,
    /// The nodes' RSS (summed, KiB) before the clients connected, once they were
    /// connected (and in their rooms), and at the end of the measured window.
    pub rss_kib: [u64; 3],
    /// Seconds the wasio nodes spent in guest calls during the window (`None`: not wasio,
    /// or no `/metrics`).
    pub guest_seconds: Option<f64>,
    /// Messages the wasio nodes sent to and received from the backend during the window
    /// (`None`: not wasio, or no such metric).
    pub backend_messages: Option<crate::probe::Messages>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.deliveries as f64 / self.measure.as_secs_f64()
    }
    pub fn quantile_us(&self, q: f64) -> Option<u32> {
        quantile(&self.latencies_us, q)
    }
    /// The same over the cross-node deliveries.
    pub fn cross_quantile_us(&self, q: f64) -> Option<u32> {
        quantile(&self.cross_latencies_us, q)
    }
    /// Backend messages per publish of the window: sent, received (all nodes together).
    pub fn messages_per_publish(&self) -> Option<(f64, f64)> {
        let m = self.backend_messages?;
        let p = self.publishes as f64;
        (self.publishes > 0).then(|| (m.sent / p, m.received / p))
    }
}

fn quantile(sorted: &[u32], q: f64) -> Option<u32> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    Some(sorted[i])
}

struct Shared {
    base: Instant,
    /// Deliveries expected per publish, indexed as `counts`.
    expected: Box<[AtomicU32]>,
    counts: Box<[AtomicU32]>,
    /// The node each publish was sent to, indexed as `counts`.
    origin: Box<[AtomicU8]>,
    issued: AtomicU64,
    completed: AtomicU64,
    /// Publishes that no longer count as in flight (probes before the cluster was
    /// ready, stalls).
    forgiven: AtomicU64,
    done: Notify,
    window_start: AtomicU64,
    window_end: AtomicU64,
    published_in_window: AtomicU64,
    ack_errors: AtomicU64,
    stalls: AtomicU64,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
    fn in_flight(&self) -> u64 {
        let settled = self.completed.load(Relaxed) + self.forgiven.load(Relaxed);
        self.issued.load(Relaxed).saturating_sub(settled)
    }
    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start.load(Relaxed) && t < self.window_end.load(Relaxed)
    }
}

/// One client's results, handed back when it stops.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    cross_latencies_us: Vec<u32>,
    in_window: u64,
}

pub async fn run(plan: &Plan) -> Result<Outcome> {
    if plan.senders == 0 || plan.senders > plan.clients {
        bail!("--senders must be between 1 and --clients");
    }
    if plan.nodes.len() > usize::from(u8::MAX) {
        bail!("at most 255 nodes");
    }
    if plan.payload < 32 {
        bail!("--payload must be at least 32 bytes (sequence + send time)");
    }
    let rooms = rooms_of(plan);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        expected: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        counts: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        origin: (0..RING).map(|_| AtomicU8::new(0)).collect(),
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        forgiven: AtomicU64::new(0),
        done: Notify::new(),
        window_start: AtomicU64::new(u64::MAX),
        window_end: AtomicU64::new(u64::MAX),
        published_in_window: AtomicU64::new(0),
        ack_errors: AtomicU64::new(0),
        stalls: AtomicU64::new(0),
    });

    let rss_before = crate::probe::rss_sum(plan.node_pids());
    // Connect everyone, a bounded number at a time; client i goes to node i % nodes.
    let t = Instant::now();
    let conns: Vec<(usize, Ws)> = stream::iter(0..plan.clients)
        .map(|i| {
            let url = format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                plan.nodes[i % plan.nodes.len()]
            );
            let room = plan.room_size.map(|size| i / size);
            async move {
                let mut ws = tokio::time::timeout(Duration::from_secs(20), connect(&url))
                    .await
                    .map_err(|_| anyhow!("client {i}: connecting to {url} timed out"))??;
                if let Some(r) = room {
                    tokio::time::timeout(Duration::from_secs(20), join(&mut ws, r))
                        .await
                        .map_err(|_| anyhow!("client {i}: joining room {r} timed out"))??;
                }
                Ok::<_, anyhow::Error>((i, ws))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    eprintln!(
        "  {} clients connected{} in {:.1} s",
        conns.len(),
        if rooms.is_empty() {
            ""
        } else {
            " and in their rooms"
        },
        t.elapsed().as_secs_f64()
    );
    let rss_connected = crate::probe::rss_sum(plan.node_pids());

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::new();
    let mut sinks = Vec::new();
    let node_of = |i: usize| (i % plan.nodes.len()) as u8;
    for (i, ws) in conns {
        if i < plan.senders {
            let (sink, rx) = ws.split();
            let sink = Arc::new(Mutex::new(sink));
            sinks.push((i, sink.clone()));
            clients.push(tokio::spawn(receive(
                shared.clone(),
                Reader::Split(rx, sink),
                node_of(i),
                stop_rx.clone(),
            )));
        } else {
            clients.push(tokio::spawn(receive(
                shared.clone(),
                Reader::Whole(Box::new(ws)),
                node_of(i),
                stop_rx.clone(),
            )));
        }
    }
    sinks.sort_by_key(|(i, _)| *i);

    // Ready when one publish reaches every client (the nodes' Redis subscriptions are up).
    let probe_sink = &sinks[0].1;
    let mut ready = false;
    for attempt in 0..20 {
        let before = shared.completed.load(Relaxed);
        let to_all = Target {
            room: None,
            members: plan.clients as u32,
        };
        publish(
            &shared,
            probe_sink,
            node_of(sinks[0].0),
            attempt,
            plan.payload,
            to_all,
        )
        .await?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if shared.completed.load(Relaxed) > before {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if ready {
            break;
        }
    }
    if !ready {
        bail!(
            "no publish reached all {} clients within 10 s",
            plan.clients
        );
    }
    // Probes still missing deliveries are not in flight.
    shared.forgiven.store(shared.in_flight(), Relaxed);
    let first_seq = shared.issued.load(Relaxed);

    let start = shared.now_ns();
    let window_start = start + plan.warmup.as_nanos() as u64;
    let window_end = window_start + plan.measure.as_nanos() as u64;
    shared.window_start.store(window_start, Relaxed);
    shared.window_end.store(window_end, Relaxed);
    let senders: Vec<_> = sinks
        .iter()
        .map(|(i, sink)| {
            let (shared, sink, plan) = (shared.clone(), sink.clone(), plan.clone());
            let first_ack = 1000 + *i as u64 * 1_000_000_000;
            let node = node_of(*i);
            let rooms = rooms.clone();
            // A fixed seed per sender: the same room sequence for every system.
            let seed = 0x9e37_79b9_7f4a_7c15 ^ (*i as u64 + 1);
            tokio::spawn(async move {
                let s = Sender {
                    node,
                    end: window_end,
                    first_ack,
                    rooms: &rooms,
                    seed,
                };
                send_loop(&shared, &sink, &plan, s).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_nanos(
        window_start.saturating_sub(shared.now_ns()),
    ))
    .await;
    let mut watched = plan.pids.clone();
    watched.push(std::process::id());
    let window = crate::probe::Window::start(&watched, &plan.admins).await;
    tokio::time::sleep(Duration::from_nanos(
        window_end.saturating_sub(shared.now_ns()),
    ))
    .await;
    let rss_end = crate::probe::rss_sum(plan.node_pids());
    let spent = window.end().await;
    for s in senders {
        s.await??;
    }

    // Drain: wait for what is still on its way.
    let drain_until = Instant::now() + Duration::from_secs(3);
    while shared.in_flight() > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last_seq = shared.issued.load(Relaxed);
    let lost = (first_seq..last_seq)
        .map(|s| {
            let i = s as usize % RING;
            u64::from(
                shared.expected[i]
                    .load(Relaxed)
                    .saturating_sub(shared.counts[i].load(Relaxed)),
            )
        })
        .sum();

    let _ = stop_tx.send(true);
    let mut deliveries = 0;
    let mut latencies_us = Vec::new();
    let mut cross_latencies_us = Vec::new();
    for c in clients {
        let tally = c.await??;
        deliveries += tally.in_window;
        latencies_us.extend(tally.latencies_us);
        cross_latencies_us.extend(tally.cross_latencies_us);
    }
    latencies_us.sort_unstable();
    cross_latencies_us.sort_unstable();
    Ok(Outcome {
        deliveries,
        publishes: shared.published_in_window.load(Relaxed),
        measure: plan.measure,
        latencies_us,
        cross_latencies_us,
        lost,
        ack_errors: shared.ack_errors.load(Relaxed),
        stalls: shared.stalls.load(Relaxed),
        cpu_seconds: spent.cpu_seconds,
        clients: plan.clients,
        rss_kib: [rss_before, rss_connected, rss_end],
        guest_seconds: spent.guest_seconds,
        backend_messages: spent.backend_messages,
    })
}

/// The member count of each room (the last one may be short).
fn rooms_of(plan: &Plan) -> Arc<[u32]> {
    let Some(size) = plan.room_size else {
        return Arc::from([]);
    };
    (0..plan.clients.div_ceil(size))
        .map(|r| (plan.clients - r * size).min(size) as u32)
        .collect()
}

/// Join room `r<room>` through the relay's `join` and wait for its ack.
async fn join(ws: &mut Ws, room: usize) -> Result<()> {
    ws.send(Message::text(format!("421[\"join\",\"r{room}\"]")))
        .await?;
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg? else { continue };
        let t = t.as_str();
        if t == "2" {
            ws.send(Message::text("3")).await?;
        } else if let Some(ack) = t.strip_prefix("431") {
            if ack.contains("\"error\"") {
                bail!("join refused: {ack}");
            }
            return Ok(());
        }
    }
    bail!("closed before the join's ack")
}

/// Where a publish goes: `room` (or the namespace), with `members` clients in it.
#[derive(Clone, Copy)]
struct Target {
    room: Option<usize>,
    members: u32,
}
/// Open the WebSocket and connect the main namespace.
pub(crate) async fn connect(url: &str) -> Result<Ws> {
    let (mut ws, _) = connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("connecting {url}"))?;
    let mut sent_connect = false;
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg? else { continue };
        let t = t.as_str();
        if t.starts_with('0') && !sent_connect {
            ws.send(Message::text("40")).await?;
            sent_connect = true;
        } else if t.starts_with("40") {
            return Ok(ws);
        } else if t == "2" {
            ws.send(Message::text("3")).await?;
        } else if t.starts_with("44") {
            bail!("connect refused: {t}");
        }
    }
    bail!("{url} closed during the handshake")
}

pub(crate) type Sink = Arc<Mutex<SplitSink<Ws, Message>>>;

pub(crate) enum Reader {
    /// A client that only receives: one task owns its socket.
    Whole(Box<Ws>),
    /// A sender: the sending task shares the write half.
    Split(stream::SplitStream<Ws>, Sink),
}

impl Reader {
    /// The next text frame other than a ping (answered here), or `None` once `stop`
    /// fires or the connection closes or fails (a client's tally then stands).
    pub(crate) async fn next_text(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<String>> {
        loop {
            let msg = tokio::select! {
                biased;
                m = async {
                    match self {
                        Reader::Whole(ws) => ws.next().await,
                        Reader::Split(rx, _) => rx.next().await,
                    }
                } => m,
                _ = stop.changed() => return Ok(None),
            };
            let Some(Ok(msg)) = msg else { return Ok(None) };
            let Message::Text(text) = msg else { continue };
            if text.as_str() == "2" {
                let pong = Message::text("3");
                match self {
                    Reader::Whole(ws) => ws.send(pong).await?,
                    Reader::Split(_, sink) => sink.lock().await.send(pong).await?,
                }
                continue;
            }
            return Ok(Some(text.as_str().to_string()));
        }
    }
}

async fn receive(
    shared: Arc<Shared>,
    mut reader: Reader,
    node: u8,
    mut stop: watch::Receiver<bool>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    while let Some(text) = reader.next_text(&mut stop).await? {
        if let Some(p) = text.strip_prefix(DELIVERY_PREFIX) {
            deliver(&shared, p, node, &mut tally);
        } else if text.starts_with("43") && text.contains("\"error\"") {
            shared.ack_errors.fetch_add(1, Relaxed);
        }
    }
    Ok(tally)
}

fn deliver(shared: &Shared, payload: &str, node: u8, tally: &mut Tally) {
    let now = shared.now_ns();
    let (Some(seq), Some(sent)) = (
        payload
            .get(..16)
            .and_then(|s| u64::from_str_radix(s, 16).ok()),
        payload
            .get(16..32)
            .and_then(|s| u64::from_str_radix(s, 16).ok()),
    ) else {
        return;
    };
    let i = seq as usize % RING;
    let n = shared.counts[i].fetch_add(1, Relaxed) + 1;
    if n == shared.expected[i].load(Acquire) {
        shared.completed.fetch_add(1, Relaxed);
        shared.done.notify_waiters();
    }
    if shared.in_window(now) {
        tally.in_window += 1;
        let us = (now.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32;
        tally.latencies_us.push(us);
        if shared.origin[seq as usize % RING].load(Acquire) != node {
            tally.cross_latencies_us.push(us);
        }
    }
}

/// Publish through `sink`, a client of node `node`.
async fn publish(
    shared: &Shared,
    sink: &Sink,
    node: u8,
    ack: u64,
    payload: usize,
    to: Target,
) -> Result<()> {
    let seq = shared.issued.fetch_add(1, Relaxed);
    let i = seq as usize % RING;
    shared.counts[i].store(0, Relaxed);
    shared.expected[i].store(to.members, Release);
    shared.origin[i].store(node, Release);
    let sent = shared.now_ns();
    let data = format!("{seq:016x}{sent:016x}{:x<pad$}", "", pad = payload - 32);
    let room = to
        .room
        .map_or(String::new(), |r| format!("\"room\":\"r{r}\","));
    let msg = format!("42{ack}[\"publish\",{{{room}\"event\":\"{EVENT}\",\"data\":\"{data}\"}}]");
    sink.lock().await.send(Message::text(msg)).await?;
    if shared.in_window(sent) {
        shared.published_in_window.fetch_add(1, Relaxed);
    }
    Ok(())
}

/// One sender's part of the run.
struct Sender<'a> {
    node: u8,
    end: u64,
    first_ack: u64,
    /// Member counts of the rooms (empty: publish to the namespace).
    rooms: &'a [u32],
    seed: u64,
}

async fn send_loop(shared: &Shared, sink: &Sink, plan: &Plan, s: Sender<'_>) -> Result<()> {
    let Sender {
        node,
        end,
        first_ack,
        rooms,
        mut seed,
    } = s;
    let mut ticker = (plan.rate > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(plan.senders as f64 / plan.rate));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut ack = first_ack;
    while shared.now_ns() < end {
        // Wait for room in the window.
        loop {
            let notified = shared.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shared.in_flight() < plan.window as u64 {
                break;
            }
            if tokio::time::timeout(STALL, notified).await.is_err() {
                shared.stalls.fetch_add(1, Relaxed);
                shared.forgiven.fetch_add(1, Relaxed);
            }
        }
        if let Some(t) = &mut ticker {
            t.tick().await;
        }
        let to = if rooms.is_empty() {
            Target {
                room: None,
                members: plan.clients as u32,
            }
        } else {
            // xorshift64: cheap, and no dependency for a uniform-enough room pick.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let r = (seed % rooms.len() as u64) as usize;
            Target {
                room: Some(r),
                members: rooms[r],
            }
        };
        publish(shared, sink, node, ack, plan.payload, to).await?;
        ack += 1;
    }
    Ok(())
}

/// Connect `clients` clients (client `i` to node `i % nodes`), a bounded number at a
/// time, in client order.
pub(crate) async fn connect_many(nodes: &[String], clients: usize) -> Result<Vec<Ws>> {
    let t = Instant::now();
    let conns: Vec<Ws> = stream::iter(0..clients)
        .map(|i| {
            let url = format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                nodes[i % nodes.len()]
            );
            async move {
                tokio::time::timeout(Duration::from_secs(30), connect(&url))
                    .await
                    .map_err(|_| anyhow!("client {i}: connecting to {url} timed out"))?
            }
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    eprintln!(
        "  {} clients connected in {:.1} s",
        conns.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(conns)
}
