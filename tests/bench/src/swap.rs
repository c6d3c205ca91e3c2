//! The `swap` workload: hot swaps of the adapter under a steady broadcast stream.
//!
//! Starts `--nodes` `wasio serve` nodes on Redis (a fresh channel prefix), each with an
//! admin listener (`[admin] listen`, `token`), connects `--clients` raw-WebSocket clients
//! (client i to node i % nodes), and has `--senders` clients of node A publish to the
//! whole namespace at a fixed `--rate`, open loop (each publish leaves on time whatever
//! arrives). After readiness (one publish reached every client) and a warm-up: a baseline
//! phase without swaps, then `--swaps` swaps through `POST /admin/adapter`, `--interval`
//! apart, each moving its node between `--from` (`builtin:redis`) and `--to` (the
//! `redis_next.wasm` test guest when built, else a copy of the Redis guest's `.wasm`: a
//! different source, the same bytes). Then the senders stop and the clients drain.
//!
//! What it prints: the largest gap between consecutive deliveries at any client, per
//! window (the baseline cut into windows of `--interval`; a swap's window runs from its
//! request to the next request), against the senders' own largest gap in the same
//! windows; send → receive latency per phase; the swap times the admin API reports
//! (`prepare_ms`, `switch_ms`, `total_ms`) and the HTTP round trip seen here; messages
//! sent, received, lost, duplicated and reordered over the whole run.

use crate::loadgen::{self, DELIVERY_PREFIX, EVENT, Reader, Sink, Ws};
use crate::orchestrate::{self, Node};
use anyhow::{Context, Result, anyhow, bail};
use futures_util::SinkExt;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::{Mutex, watch};
use tokio_tungstenite::tungstenite::Message;

/// Per-publish delivery counters (readiness, drain), indexed by sequence modulo this.
const RING: usize = 1 << 20;
/// The largest delivery gap accepted as "unnoticeable" (the aim of issue 6).
const AIM_GAP_MS: f64 = 5.0;

#[derive(clap::Args, Clone, Debug)]
pub struct SwapArgs {
    /// Hot swaps in the swap phase.
    #[arg(long, default_value_t = 20)]
    pub swaps: usize,
    /// Publishes per second, all senders together (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds between swap requests (a swap's window: from its request to the next);
    /// also the length of the baseline's windows.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// The nodes whose adapter is swapped: `a` (the senders' node), `b`, or `both`
    /// (alternately A, B, A, ...).
    #[arg(long, value_enum, default_value = "both")]
    pub swap_on: SwapOn,
    /// Socket.IO clients in all, client i on node i % nodes; every client receives every
    /// publish.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// wasio nodes (at least 2 to swap on B).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Clients of node A that publish.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Seconds of stream after readiness before the baseline (not measured).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seconds of the baseline phase (no swaps).
    #[arg(long, default_value_t = 10)]
    pub baseline: u64,
    /// The adapter the nodes start with (config `adapter.wasm`).
    #[arg(long, default_value = "builtin:redis")]
    pub from: String,
    /// The adapter swapped to, and back from: `builtin:NAME` or a `.wasm` path. Default:
    /// target/guests/wasm32-wasip2/release/redis_next.wasm when built, else a copy of
    /// wasio_guest_redis.wasm in the run's directory.
    #[arg(long)]
    pub to: Option<String>,
    /// Bytes of the published `data` string (it embeds a sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// The Redis the nodes use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// The wasio binary (`cargo build --release -p wasio` first).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/wasio"))]
    pub wasio_bin: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SwapOn {
    A,
    B,
    Both,
}

pub fn run(args: SwapArgs) -> Result<()> {
    if args.nodes == 0 || (args.swap_on != SwapOn::A && args.nodes < 2) {
        bail!("--nodes must be at least 1, and at least 2 to swap on node B");
    }
    if args.senders == 0 || args.senders > args.clients.div_ceil(args.nodes) {
        bail!("--senders must be between 1 and the clients of node A");
    }
    if args.payload < 32 {
        bail!("--payload must be at least 32 bytes (sequence + send time)");
    }
    if !(args.rate > 0.0 && args.interval > 0.0) {
        bail!("--rate and --interval must be positive");
    }
    if !args.wasio_bin.exists() {
        bail!(
            "{} not found: `cargo build --release -p wasio` first, or --wasio-bin",
            args.wasio_bin.display()
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wasio-bench-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let load_before = orchestrate::load_average();
    let result = (|| {
        let to = target_adapter(&args, &dir)?;
        eprintln!(
            "== swap: {} ↔ {} ({}), {} swaps on {:?}",
            args.from, to.source, to.label, args.swaps, args.swap_on
        );
        rt.block_on(run_cluster(&args, &to, &dir))
            .map(|outcome| (to, outcome))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let (to, outcome) = result?;
    let load = format!(
        "{load_before} at the start, {} at the end",
        orchestrate::load_average()
    );
    println!("{}", report(&args, &to, &load, &outcome));
    let failed = outcome.swaps.iter().filter(|s| s.error.is_some()).count();
    let c = &outcome.counts;
    if failed > 0 || c.lost > 0 || c.duplicated > 0 {
        bail!(
            "{failed} swap(s) failed, {} deliveries lost, {} duplicated",
            c.lost,
            c.duplicated
        );
    }
    Ok(())
}

/// The adapter swapped to: what the admin API is sent, and how the report names it.
struct Target {
    source: String,
    label: String,
}

fn target_adapter(args: &SwapArgs, dir: &Path) -> Result<Target> {
    if let Some(to) = &args.to {
        let source = match to.strip_prefix("builtin:") {
            Some(_) => to.clone(),
            None => std::fs::canonicalize(to)
                .with_context(|| format!("--to {to}"))?
                .display()
                .to_string(),
        };
        return Ok(Target {
            source,
            label: "--to".into(),
        });
    }
    let guests = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/guests/wasm32-wasip2/release")
        .canonicalize()
        .context("target/guests/wasm32-wasip2/release: build wasio first")?;
    let next = guests.join("redis_next.wasm");
    if next.exists() {
        return Ok(Target {
            source: next.display().to_string(),
            label: "the redis_next test guest (tests/redis-next)".into(),
        });
    }
    let redis = guests.join("wasio_guest_redis.wasm");
    let copy = dir.join("redis-copy.wasm");
    std::fs::copy(&redis, &copy).with_context(|| format!("copying {}", redis.display()))?;
    Ok(Target {
        source: copy.display().to_string(),
        label: "a copy of wasio_guest_redis.wasm: redis_next.wasm not built".into(),
    })
}

/// One swap request and its answer; times in ns since the run's base instant.
struct SwapRecord {
    node: usize,
    to: String,
    requested: u64,
    answered: u64,
    status: u16,
    prepare_ms: Option<f64>,
    switch_ms: Option<f64>,
    total_ms: Option<f64>,
    /// `to.sha256` of the answer.
    sha256: Option<String>,
    error: Option<String>,
}

impl SwapRecord {
    fn http_ms(&self) -> f64 {
        (self.answered - self.requested) as f64 / 1e6
    }
}

/// One delivery at one client.
#[derive(Clone, Copy)]
struct Arrival {
    at: u64,
    seq: u64,
    sent: u64,
}

struct Counts {
    sent: u64,
    expected: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    /// Deliveries at a client older than one it already had from the same sender.
    reordered: u64,
    ack_errors: u64,
}

struct Outcome {
    /// Per client, its deliveries in arrival order.
    arrivals: Vec<Vec<Arrival>>,
    /// Every publish's send time, sorted.
    sends: Vec<u64>,
    /// When each duplicate arrived, and when each lost delivery's publish was sent.
    duplicate_at: Vec<u64>,
    lost_sent_at: Vec<u64>,
    baseline: (u64, u64),
    swaps: Vec<SwapRecord>,
    /// Each swap's window: from its request to the next one (the last: `--interval`, or
    /// its answer if later).
    windows: Vec<(u64, u64)>,
    counts: Counts,
    /// `GET /admin/adapter` of every node before and after.
    status_before: Vec<Value>,
    status_after: Vec<Value>,
}

struct Shared {
    base: Instant,
    clients: u32,
    counts: Box<[AtomicU32]>,
    /// The sender of each publish, indexed as `counts`.
    origin: Box<[AtomicU8]>,
    issued: AtomicU64,
    /// The first sequence number every client received (u64::MAX until then).
    first_complete: AtomicU64,
    ack_errors: AtomicU64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

async fn run_cluster(args: &SwapArgs, to: &Target, dir: &Path) -> Result<Outcome> {
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = format!("bench-swap-{stamp}-{}", std::process::id());
    let token = format!("bench-{stamp}-{}", std::process::id());
    let mut nodes = Vec::new();
    let mut admins = Vec::new();
    for i in 0..args.nodes {
        let (port, admin) = (orchestrate::free_port()?, orchestrate::free_port()?);
        let config = dir.join(format!("wasio-{i}.toml"));
        let text = format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"{token}\"\n",
            orchestrate::wasio_config(port, &args.from, ("redis", &args.redis), &key)
        );
        std::fs::write(&config, text)?;
        let log = dir.join(format!("wasio-{i}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&args.wasio_bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting wasio node {i}"))?;
        nodes.push(Node { child, port, log });
        admins.push(format!("127.0.0.1:{admin}"));
    }
    let result = async {
        for (node, admin) in nodes.iter_mut().zip(&admins) {
            node.wait_ready(Duration::from_secs(60)).await?;
            let port = admin.rsplit(':').next().unwrap_or_default().parse()?;
            node.wait_listening(port, Duration::from_secs(10)).await?;
        }
        let urls: Vec<_> = nodes
            .iter()
            .map(|n| format!("ws://127.0.0.1:{}", n.port))
            .collect();
        drive(args, to, &urls, &admins, &token, &key).await
    }
    .await;
    orchestrate::stop(&mut nodes, result.is_err()).await;
    result
}

/// `GET /admin/adapter` of every node; fails unless each answers 200 with JSON.
async fn statuses(admins: &[String], token: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for admin in admins {
        let (status, body) = http(admin, "GET", "/admin/adapter", token, None).await?;
        if status != 200 {
            bail!("GET http://{admin}/admin/adapter: {status} {body}");
        }
        out.push(serde_json::from_str(&body).with_context(|| format!("status body {body}"))?);
    }
    Ok(out)
}

async fn drive(
    args: &SwapArgs,
    to: &Target,
    urls: &[String],
    admins: &[String],
    token: &str,
    key: &str,
) -> Result<Outcome> {
    let status_before = statuses(admins, token).await?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        clients: args.clients as u32,
        counts: (0..RING).map(|_| AtomicU32::new(0)).collect(),
        origin: (0..RING).map(|_| AtomicU8::new(0)).collect(),
        issued: AtomicU64::new(0),
        first_complete: AtomicU64::new(u64::MAX),
        ack_errors: AtomicU64::new(0),
    });
    let conns: Vec<(usize, Ws)> = stream::iter(0..args.clients)
        .map(|i| {
            let url = format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                urls[i % urls.len()]
            );
            async move {
                let ws = tokio::time::timeout(Duration::from_secs(20), loadgen::connect(&url))
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
    let (stop_receiving, stop_rx) = watch::channel(false);
    let (stop_sending, stop_tx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let mut conns = conns;
    conns.sort_by_key(|(i, _)| *i);
    for (i, ws) in conns {
        // The senders: the first clients of node A (0, nodes, 2 nodes, ...).
        let sender = i % urls.len() == 0 && i / urls.len() < args.senders;
        let reader = if sender {
            let (sink, rx) = ws.split();
            let sink = Arc::new(Mutex::new(sink));
            let index = (i / urls.len()) as u8;
            let period = Duration::from_secs_f64(args.senders as f64 / args.rate);
            senders.push(tokio::spawn(send_loop(
                shared.clone(),
                sink.clone(),
                index,
                period,
                args.payload,
                stop_tx.clone(),
            )));
            Reader::Split(rx, sink)
        } else {
            Reader::Whole(Box::new(ws))
        };
        receivers.push(tokio::spawn(receive(
            shared.clone(),
            reader,
            stop_rx.clone(),
        )));
    }

    // Ready when one publish has reached every client.
    let t = Instant::now();
    while shared.first_complete.load(Relaxed) == u64::MAX {
        if t.elapsed() > Duration::from_secs(10) {
            bail!(
                "no publish reached all {} clients within 10 s",
                args.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "  {} clients connected, ready after {:.2} s; warm-up {} s, baseline {} s",
        args.clients,
        t.elapsed().as_secs_f64(),
        args.warmup,
        args.baseline
    );
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let baseline_start = shared.now();
    tokio::time::sleep(Duration::from_secs(args.baseline)).await;
    let baseline = (baseline_start, shared.now());

    // The swaps, one at a time, `interval` apart (later if one takes longer).
    let interval = Duration::from_secs_f64(args.interval);
    let mut current: Vec<bool> = vec![false; urls.len()]; // true: on `to`
    let mut swaps = Vec::new();
    let swaps_start = Instant::now();
    for k in 0..args.swaps {
        tokio::time::sleep_until((swaps_start + interval * k as u32).into()).await;
        let node = match args.swap_on {
            SwapOn::A => 0,
            SwapOn::B => 1,
            SwapOn::Both => k % 2,
        };
        let target = if current[node] {
            &args.from
        } else {
            &to.source
        };
        let body = json!({"wasm": target, "datasource": "cache", "options": {"key": key}});
        let requested = shared.now();
        let answer = http(
            &admins[node],
            "POST",
            "/admin/adapter",
            token,
            Some(&body.to_string()),
        )
        .await;
        let answered = shared.now();
        let mut rec = SwapRecord {
            node,
            to: short_name(target),
            requested,
            answered,
            status: 0,
            prepare_ms: None,
            switch_ms: None,
            total_ms: None,
            sha256: None,
            error: None,
        };
        match answer {
            Err(e) => rec.error = Some(format!("{e:#}")),
            Ok((status, body)) => {
                rec.status = status;
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if status == 200 {
                    rec.prepare_ms = v["prepare_ms"].as_f64();
                    rec.switch_ms = v["switch_ms"].as_f64();
                    rec.total_ms = v["total_ms"].as_f64();
                    rec.sha256 = v["to"]["sha256"].as_str().map(str::to_string);
                    current[node] = !current[node];
                } else {
                    rec.error = Some(format!(
                        "{status} {}",
                        v["error"].as_str().unwrap_or(body.trim())
                    ));
                }
            }
        }
        eprintln!(
            "  swap {:>2} on {} → {}: {} in {:.1} ms (admin: prepare {}, switch {}, total {})",
            k + 1,
            node_name(node),
            rec.to,
            rec.error.as_deref().unwrap_or("ok"),
            rec.http_ms(),
            opt_ms(rec.prepare_ms),
            opt_ms(rec.switch_ms),
            opt_ms(rec.total_ms),
        );
        swaps.push(rec);
    }
    let mut windows: Vec<(u64, u64)> = Vec::new();
    for (k, s) in swaps.iter().enumerate() {
        let end = match swaps.get(k + 1) {
            Some(next) => next.requested,
            None => (s.requested + interval.as_nanos() as u64).max(s.answered),
        };
        windows.push((s.requested, end));
    }
    if let Some(&(_, end)) = windows.last() {
        tokio::time::sleep(Duration::from_nanos(end.saturating_sub(shared.now()))).await;
    }

    // Stop sending, let what is on its way arrive, stop receiving.
    let _ = stop_sending.send(true);
    let mut sent_at = std::collections::HashMap::new();
    for s in senders {
        sent_at.extend(s.await??);
    }
    let mut sends: Vec<u64> = sent_at.values().copied().collect();
    sends.sort_unstable();
    let first = shared.first_complete.load(Relaxed);
    let issued = shared.issued.load(Relaxed);
    let drain_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < drain_until
        && (first..issued).any(|s| shared.counts[s as usize % RING].load(Relaxed) < shared.clients)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_receiving.send(true);
    let mut arrivals = Vec::new();
    for r in receivers {
        arrivals.push(r.await??);
    }
    let status_after = statuses(admins, token).await?;
    if issued as usize > RING {
        bail!("{issued} publishes: more than the {RING} this tool can follow");
    }

    // Lost, duplicated, reordered: over the publishes from the first complete one on.
    let span = (issued - first) as usize;
    let mut counts = Counts {
        sent: issued - first,
        expected: (issued - first) * u64::from(shared.clients),
        received: 0,
        lost: 0,
        duplicated: 0,
        reordered: 0,
        ack_errors: shared.ack_errors.load(Relaxed),
    };
    let (mut duplicate_at, mut lost_sent_at) = (Vec::new(), Vec::new());
    for client in &arrivals {
        let mut seen = vec![false; span];
        let mut last_of_sender = vec![None::<u64>; args.senders];
        for a in client.iter().filter(|a| a.seq >= first && a.seq < issued) {
            counts.received += 1;
            let slot = &mut seen[(a.seq - first) as usize];
            if *slot {
                counts.duplicated += 1;
                duplicate_at.push(a.at);
                continue;
            }
            *slot = true;
            let sender = usize::from(shared.origin[a.seq as usize % RING].load(Relaxed));
            if let Some(last) = last_of_sender.get_mut(sender) {
                if last.is_some_and(|l| a.seq < l) {
                    counts.reordered += 1;
                }
                *last = Some(last.map_or(a.seq, |l| l.max(a.seq)));
            }
        }
        for (i, _) in seen.iter().enumerate().filter(|(_, s)| !**s) {
            counts.lost += 1;
            lost_sent_at.extend(sent_at.get(&(first + i as u64)));
        }
    }
    Ok(Outcome {
        arrivals,
        sends,
        duplicate_at,
        lost_sent_at,
        baseline,
        swaps,
        windows,
        counts,
        status_before,
        status_after,
    })
}

fn node_name(i: usize) -> String {
    match u8::try_from(i) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("#{i}"),
    }
}

/// `builtin:redis`, or a path's file name.
fn short_name(source: &str) -> String {
    if source.starts_with("builtin:") {
        return source.to_string();
    }
    Path::new(source)
        .file_name()
        .map_or(source.to_string(), |f| f.to_string_lossy().into_owned())
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} ms"))
}

async fn receive(
    shared: Arc<Shared>,
    mut reader: Reader,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<Arrival>> {
    let mut arrivals = Vec::new();
    while let Some(text) = reader.next_text(&mut stop).await? {
        if let Some(p) = text.strip_prefix(DELIVERY_PREFIX) {
            let at = shared.now();
            let (Some(seq), Some(sent)) = (
                p.get(..16).and_then(|s| u64::from_str_radix(s, 16).ok()),
                p.get(16..32).and_then(|s| u64::from_str_radix(s, 16).ok()),
            ) else {
                continue;
            };
            arrivals.push(Arrival { at, seq, sent });
            let n = shared.counts[seq as usize % RING].fetch_add(1, Relaxed) + 1;
            if n == shared.clients {
                shared.first_complete.fetch_min(seq, Relaxed);
            }
        } else if text.starts_with("43") && text.contains("\"error\"") {
            shared.ack_errors.fetch_add(1, Relaxed);
        }
    }
    Ok(arrivals)
}

/// Publish every `period` until stopped, open loop (late ticks are caught up at once);
/// returns the send times.
async fn send_loop(
    shared: Arc<Shared>,
    sink: Sink,
    index: u8,
    period: Duration,
    payload: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<(u64, u64)>> {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::new();
    let mut ack = 1000u64;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {}
        }
        let seq = shared.issued.fetch_add(1, Relaxed);
        shared.counts[seq as usize % RING].store(0, Relaxed);
        shared.origin[seq as usize % RING].store(index, Relaxed);
        let sent = shared.now();
        let data = format!("{seq:016x}{sent:016x}{:x<pad$}", "", pad = payload - 32);
        let msg = format!("42{ack}[\"publish\",{{\"event\":\"{EVENT}\",\"data\":\"{data}\"}}]");
        sink.lock().await.send(Message::text(msg)).await?;
        sends.push((seq, sent));
        ack += 1;
    }
    Ok(sends)
}

/// A minimal HTTP/1.1 exchange (one connection per request, `Connection: close`).
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf);
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("malformed HTTP answer: {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("malformed status line: {head:?}"))?;
        let chunked = head.lines().any(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("transfer-encoding:") && l.contains("chunked")
        });
        let body = if chunked {
            dechunk(rest)?
        } else {
            rest.to_string()
        };
        Ok::<_, anyhow::Error>((status, body))
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| anyhow!("{method} http://{addr}{path}: no answer within 60 s"))?
        .with_context(|| format!("{method} http://{addr}{path}"))
}

fn dechunk(mut s: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("malformed chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        s = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    (n > 0).then(|| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
}

/// The largest gap between consecutive events overlapping each window (sorted,
/// disjoint), ns, 0 when none does.
fn max_gaps(times: &[u64], windows: &[(u64, u64)], out: &mut [u64]) {
    for pair in times.windows(2) {
        let (p, c) = (pair[0], pair[1]);
        let mut w = windows.partition_point(|&(_, end)| end <= p);
        while w < windows.len() && windows[w].0 < c {
            out[w] = out[w].max(c - p);
            w += 1;
        }
    }
}

/// Per window: the largest delivery gap at any client and the senders' largest gap, ms.
fn window_gaps(o: &Outcome, windows: &[(u64, u64)]) -> (Vec<f64>, Vec<f64>) {
    let mut clients = vec![0u64; windows.len()];
    let mut times = Vec::new();
    for client in &o.arrivals {
        times.clear();
        times.extend(client.iter().map(|a| a.at));
        max_gaps(&times, windows, &mut clients);
    }
    let mut senders = vec![0u64; windows.len()];
    max_gaps(&o.sends, windows, &mut senders);
    let ms = |v: Vec<u64>| v.into_iter().map(|g| g as f64 / 1e6).collect();
    (ms(clients), ms(senders))
}

/// Send → receive latencies (ms, sorted) of the deliveries arriving in the windows.
fn latencies(o: &Outcome, windows: &[(u64, u64)]) -> Vec<f64> {
    let mut out: Vec<f64> = o
        .arrivals
        .iter()
        .flatten()
        .filter(|a| windows.iter().any(|&(s, e)| a.at >= s && a.at < e))
        .map(|a| a.at.saturating_sub(a.sent) as f64 / 1e6)
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn report(args: &SwapArgs, to: &Target, load: &str, o: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "workload: swap | {} clients over {} nodes, {} sender(s) on node A, {} publishes/s open loop, {}-byte payload, warm-up {} s, baseline {} s, {} swaps on {} every {} s",
        args.clients,
        args.nodes,
        args.senders,
        args.rate,
        args.payload,
        args.warmup,
        args.baseline,
        args.swaps,
        match args.swap_on {
            SwapOn::A => "node A",
            SwapOn::B => "node B",
            SwapOn::Both => "nodes A and B alternately",
        },
        args.interval
    );
    let _ = writeln!(
        out,
        "adapters: {} ↔ {} ({})",
        args.from, to.source, to.label
    );
    let mut shas: Vec<&str> = o.swaps.iter().filter_map(|s| s.sha256.as_deref()).collect();
    shas.sort_unstable();
    shas.dedup();
    let before: Vec<String> = o
        .status_before
        .iter()
        .map(|s| {
            format!(
                "{} {} sha256 {}",
                s["name"].as_str().unwrap_or("?"),
                s["version"].as_str().unwrap_or("?"),
                s["sha256"].as_str().map_or("?", |h| &h[..h.len().min(12)])
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "started on: {} | swapped-to sha256: {}",
        before.join("; "),
        if shas.is_empty() {
            "-".into()
        } else {
            shas.iter()
                .map(|h| &h[..h.len().min(12)])
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(out, "command: {}", orchestrate::command_line());
    let _ = writeln!(out, "machine: {}", orchestrate::machine());
    let _ = writeln!(out, "load average (1, 5, 15 min): {load}");
    let _ = writeln!(out, "redis: {}", args.redis);
    let _ = writeln!(out);

    // Gaps and latency, per phase.
    let step = (args.interval * 1e9) as u64;
    let (b0, b1) = o.baseline;
    let base_windows: Vec<(u64, u64)> = (0..((b1 - b0) / step).max(1))
        .map(|i| (b0 + i * step, (b0 + (i + 1) * step).min(b1)))
        .collect();
    let (base_gap, base_send) = window_gaps(o, &base_windows);
    let (swap_gap, swap_send) = window_gaps(o, &o.windows);
    let base_worst = base_gap.iter().copied().fold(0.0, f64::max);
    let base_median = quantile(&sorted(base_gap.clone()), 0.5).unwrap_or(0.0);
    let nominal = 1e3 / args.rate;
    let _ = writeln!(
        out,
        "Largest gap between consecutive deliveries at any client, per window of {} s (publishes every {:.2} ms); the senders' own largest gap in the same windows; send → receive latency of the deliveries in the phase.",
        args.interval, nominal
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| phase | windows | max gap: median window | max gap: worst window | worst vs baseline worst | median vs baseline median | senders' max gap: worst window | latency p50 | p99 | max | lost / duplicated |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut row = |name: &str, windows: &[(u64, u64)], gaps: &[f64], sends: &[f64]| {
        let g = sorted(gaps.to_vec());
        let worst = g.last().copied().unwrap_or(0.0);
        let median = quantile(&g, 0.5).unwrap_or(0.0);
        let lat = latencies(o, windows);
        let within = |times: &[u64]| {
            times
                .iter()
                .filter(|&&t| windows.iter().any(|&(s, e)| t >= s && t < e))
                .count()
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            windows.len(),
            fmt_ms(median),
            fmt_ms(worst),
            orchestrate::ratio(worst, base_worst),
            orchestrate::ratio(median, base_median),
            fmt_ms(sends.iter().copied().fold(0.0, f64::max)),
            opt_ms(quantile(&lat, 0.5)),
            opt_ms(quantile(&lat, 0.99)),
            opt_ms(lat.last().copied()),
            within(&o.lost_sent_at),
            within(&o.duplicate_at),
        );
    };
    row("baseline (no swap)", &base_windows, &base_gap, &base_send);
    if !o.windows.is_empty() {
        row("swaps: all", &o.windows, &swap_gap, &swap_send);
        let nodes: Vec<usize> = {
            let mut n: Vec<usize> = o.swaps.iter().map(|s| s.node).collect();
            n.sort_unstable();
            n.dedup();
            n
        };
        let targets: Vec<String> = {
            let mut t: Vec<String> = o.swaps.iter().map(|s| s.to.clone()).collect();
            t.sort();
            t.dedup();
            t
        };
        let mut subset = |name: String, keep: &dyn Fn(&SwapRecord) -> bool| {
            let idx: Vec<usize> = (0..o.swaps.len()).filter(|&k| keep(&o.swaps[k])).collect();
            if idx.is_empty() || idx.len() == o.swaps.len() {
                return;
            }
            let w: Vec<_> = idx.iter().map(|&k| o.windows[k]).collect();
            let g: Vec<_> = idx.iter().map(|&k| swap_gap[k]).collect();
            let s: Vec<_> = idx.iter().map(|&k| swap_send[k]).collect();
            row(&name, &w, &g, &s);
        };
        for &n in &nodes {
            subset(format!("swaps on node {}", node_name(n)), &|s| s.node == n);
        }
        for t in &targets {
            subset(format!("swaps to {t}"), &|s| &s.to == t);
        }
    }
    let worst_swap = swap_gap.iter().copied().fold(0.0, f64::max);
    let _ = writeln!(out);

    // Swap times.
    let _ = writeln!(
        out,
        "| swaps (ms) | ok / asked | prepare p50 / max | switch p50 / max | total p50 / max | HTTP round trip p50 / max |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let mut groups: Vec<(String, Vec<&SwapRecord>)> =
        vec![("all".into(), o.swaps.iter().collect())];
    let mut targets: Vec<&str> = o.swaps.iter().map(|s| s.to.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    for t in targets {
        groups.push((
            format!("to {t}"),
            o.swaps.iter().filter(|s| s.to == t).collect(),
        ));
    }
    for (name, recs) in &groups {
        let ok: Vec<&&SwapRecord> = recs.iter().filter(|s| s.error.is_none()).collect();
        let pick = |f: fn(&SwapRecord) -> Option<f64>| {
            let v = sorted(ok.iter().filter_map(|s| f(s)).collect());
            match (quantile(&v, 0.5), v.last()) {
                (Some(p), Some(m)) => format!("{p:.2} / {m:.2}"),
                _ => "-".into(),
            }
        };
        let _ = writeln!(
            out,
            "| {name} | {} / {} | {} | {} | {} | {} |",
            ok.len(),
            recs.len(),
            pick(|s| s.prepare_ms),
            pick(|s| s.switch_ms),
            pick(|s| s.total_ms),
            pick(|s| Some(s.http_ms())),
        );
    }
    let _ = writeln!(out);

    // Messages.
    let c = &o.counts;
    let swaps_reported: Vec<String> = o
        .status_before
        .iter()
        .zip(&o.status_after)
        .enumerate()
        .map(|(i, (b, a))| {
            let n = |v: &Value| v["swaps"].as_u64().map_or("?".into(), |n| n.to_string());
            format!("{} {} → {}", node_name(i), n(b), n(a))
        })
        .collect();
    let _ = writeln!(
        out,
        "| publishes sent | deliveries expected | received | lost | duplicated | reordered | publish ack errors | admin `swaps` before → after |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        c.sent,
        c.expected,
        c.received,
        c.lost,
        c.duplicated,
        c.reordered,
        c.ack_errors,
        swaps_reported.join(", ")
    );
    let _ = writeln!(out);
    let failed: Vec<&SwapRecord> = o.swaps.iter().filter(|s| s.error.is_some()).collect();
    if let Some(first) = failed.first() {
        let _ = writeln!(
            out,
            "{} of {} swaps failed; the first: {}",
            failed.len(),
            o.swaps.len(),
            first.error.as_deref().unwrap_or("")
        );
    }
    if !o.swaps.is_empty() {
        let _ = writeln!(
            out,
            "aim: largest delivery gap in a swap window < {AIM_GAP_MS} ms: {} ({} worst; baseline worst {}); lost and duplicated 0: {}",
            if worst_swap < AIM_GAP_MS {
                "met"
            } else {
                "not met"
            },
            fmt_ms(worst_swap),
            fmt_ms(base_worst),
            if c.lost == 0 && c.duplicated == 0 {
                "met"
            } else {
                "not met"
            }
        );
    }
    out
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.2} ms")
}
