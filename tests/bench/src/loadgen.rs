//! The load generator: Socket.IO clients over raw WebSocket (engine.io v4 / socket.io v5,
//! just what the workloads need), senders that `publish`, receivers that time deliveries.
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
    /// Processes whose CPU time is sampled over the measured window: the nodes, then
    /// Redis if found.
    pub pids: Vec<u32>,
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
    /// Deliveries expected per publish: every client gets every broadcast.
    expected: u32,
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
    let shared = Arc::new(Shared {
        base: Instant::now(),
        expected: plan.clients as u32,
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

    // Connect everyone, a bounded number at a time; client i goes to node i % nodes.
    let t = Instant::now();
    let conns: Vec<(usize, Ws)> = stream::iter(0..plan.clients)
        .map(|i| {
            let url = format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                plan.nodes[i % plan.nodes.len()]
            );
            async move {
                let ws = tokio::time::timeout(Duration::from_secs(20), connect(&url))
                    .await
                    .map_err(|_| anyhow!("client {i}: connecting to {url} timed out"))??;
                Ok::<_, anyhow::Error>((i, ws))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    eprintln!(
        "  {} clients connected in {:.1} s",
        conns.len(),
        t.elapsed().as_secs_f64()
    );

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
        publish(
            &shared,
            probe_sink,
            node_of(sinks[0].0),
            attempt,
            plan.payload,
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
            tokio::spawn(async move {
                send_loop(&shared, &sink, node, &plan, window_end, first_ack).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_nanos(
        window_start.saturating_sub(shared.now_ns()),
    ))
    .await;
    let mut watched = plan.pids.clone();
    watched.push(std::process::id());
    let cpu_before: Vec<_> = watched.iter().map(|&p| cpu_ticks(p)).collect();
    tokio::time::sleep(Duration::from_nanos(
        window_end.saturating_sub(shared.now_ns()),
    ))
    .await;
    let cpu_seconds = watched
        .iter()
        .zip(cpu_before)
        .map(|(&p, before)| (cpu_ticks(p).saturating_sub(before)) as f64 / CLOCK_TICKS)
        .collect();
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
            u64::from(
                shared
                    .expected
                    .saturating_sub(shared.counts[s as usize % RING].load(Relaxed)),
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
        cpu_seconds,
    })
}

/// `USER_HZ`, the unit of /proc/PID/stat's CPU times (100 on Linux for x86 and arm).
const CLOCK_TICKS: f64 = 100.0;

/// User + system CPU time of a process so far, in ticks (0 if it cannot be read).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces, and ends with ')').
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime (fields 14 and 15 of the line) are 11 and 12 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
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
    let n = shared.counts[seq as usize % RING].fetch_add(1, Relaxed) + 1;
    if n == shared.expected {
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
async fn publish(shared: &Shared, sink: &Sink, node: u8, ack: u64, payload: usize) -> Result<()> {
    let seq = shared.issued.fetch_add(1, Relaxed);
    shared.counts[seq as usize % RING].store(0, Relaxed);
    shared.origin[seq as usize % RING].store(node, Release);
    let sent = shared.now_ns();
    let data = format!("{seq:016x}{sent:016x}{:x<pad$}", "", pad = payload - 32);
    let msg = format!("42{ack}[\"publish\",{{\"event\":\"{EVENT}\",\"data\":\"{data}\"}}]");
    sink.lock().await.send(Message::text(msg)).await?;
    if shared.in_window(sent) {
        shared.published_in_window.fetch_add(1, Relaxed);
    }
    Ok(())
}

async fn send_loop(
    shared: &Shared,
    sink: &Sink,
    node: u8,
    plan: &Plan,
    end: u64,
    first_ack: u64,
) -> Result<()> {
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
        publish(shared, sink, node, ack, plan.payload).await?;
        ack += 1;
    }
    Ok(())
}
