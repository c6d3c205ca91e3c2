//! The `acks` workload: the round trip of an acknowledged `publish`.
//!
//! The relay protocol has no server-to-client broadcast with acks, so this times what a
//! client sees of an acknowledged emit through the cluster: `--senders` clients (default
//! every client) each keep one `publish` in flight, together at `--rate` publishes/s
//! (default 2,000/s, a fixed load every system carries), addressed to a room nobody is
//! in. The node runs its `publish` handler, the adapter broadcasts (on Redis: one
//! PUBLISH; no socket receives it) and the ack comes back: latency is emit → ack, and
//! "deliveries" are acks.

use crate::loadgen::{self, EVENT, Outcome, Plan, Ws};
use crate::probe;
use anyhow::{Result, bail};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// An ack not back after this counts as a stall, and the sender goes on.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One sender's tally over the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    acks: u64,
    publishes: u64,
    errors: u64,
    stalls: u64,
}

pub async fn run(plan: &Plan) -> Result<Outcome> {
    if plan.senders == 0 {
        bail!("--senders must be at least 1");
    }
    let rss_before = probe::rss_sum(plan.node_pids());
    let conns = loadgen::connect_many(&plan.nodes, plan.clients).await?;
    let rss_connected = probe::rss_sum(plan.node_pids());
    let base = Instant::now();
    let start = base + plan.warmup;
    let end = start + plan.measure;
    let data = format!("{:x<n$}", "", n = plan.payload);
    let msg_tail: Arc<str> =
        format!("[\"publish\",{{\"room\":\"nobody\",\"event\":\"{EVENT}\",\"data\":\"{data}\"}}]")
            .into();
    // Each sender's interval between publishes; staggered starts spread them evenly.
    let period =
        (plan.rate > 0.0).then(|| Duration::from_secs_f64(plan.senders as f64 / plan.rate));
    let mut idle = Vec::new();
    let mut tasks = Vec::new();
    for (i, ws) in conns.into_iter().enumerate() {
        if i >= plan.senders {
            idle.push(ws);
            continue;
        }
        let offset = period.map_or(Duration::ZERO, |p| {
            p.mul_f64(i as f64 / plan.senders as f64)
        });
        let tail = msg_tail.clone();
        tasks.push(tokio::spawn(sender(
            ws,
            tail,
            base + offset,
            period,
            start,
            end,
        )));
    }
    // Clients that do not send still hold their connection; their pings go unanswered
    // for a run shorter than the ping interval plus timeout (45 s by default).
    tokio::time::sleep_until(start.into()).await;
    let mut watched = plan.pids.clone();
    watched.push(std::process::id());
    let window = probe::Window::start(&watched, &plan.admins).await;
    tokio::time::sleep_until(end.into()).await;
    let rss_end = probe::rss_sum(plan.node_pids());
    let spent = window.end().await;
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await??;
        all.latencies_us.extend(t.latencies_us);
        all.acks += t.acks;
        all.publishes += t.publishes;
        all.errors += t.errors;
        all.stalls += t.stalls;
    }
    drop(idle);
    all.latencies_us.sort_unstable();
    Ok(Outcome {
        deliveries: all.acks,
        publishes: all.publishes,
        measure: plan.measure,
        latencies_us: all.latencies_us,
        cross_latencies_us: Vec::new(),
        // A publish sent in the window whose ack never came.
        lost: all.publishes.saturating_sub(all.acks),
        ack_errors: all.errors,
        stalls: all.stalls,
        cpu_seconds: spent.cpu_seconds,
        clients: plan.clients,
        rss_kib: [rss_before, rss_connected, rss_end],
        guest_seconds: spent.guest_seconds,
        backend_messages: spent.backend_messages,
    })
}

async fn sender(
    mut ws: Ws,
    tail: Arc<str>,
    first: Instant,
    period: Option<Duration>,
    start: Instant,
    end: Instant,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut ticker = period.map(|p| {
        let mut t = tokio::time::interval_at(first.into(), p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut id: u64 = 0;
    loop {
        if let Some(t) = &mut ticker {
            t.tick().await;
        }
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        id += 1;
        let in_window = sent >= start;
        ws.send(Message::text(format!("42{id}{tail}"))).await?;
        tally.publishes += u64::from(in_window);
        let prefix = format!("43{id}[");
        match tokio::time::timeout(ACK_TIMEOUT, await_ack(&mut ws, &prefix)).await {
            Ok(Ok(error)) => {
                if in_window {
                    tally.acks += 1;
                    tally.errors += u64::from(error);
                    let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    tally.latencies_us.push(us);
                }
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => tally.stalls += 1,
        }
    }
    Ok(tally)
}

/// Read until the ack starting with `prefix`; whether it carried an error.
async fn await_ack(ws: &mut Ws, prefix: &str) -> Result<bool> {
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg? else { continue };
        let t = t.as_str();
        if t == "2" {
            ws.send(Message::text("3")).await?;
        } else if let Some(body) = t.strip_prefix(prefix) {
            return Ok(body.contains("\"error\""));
        }
    }
    bail!("connection closed while waiting for an ack")
}
