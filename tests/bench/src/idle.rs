//! The `idle` workload: `--idle-clients` connections that do nothing but answer pings,
//! for the memory and CPU a connection costs a node when it is quiet. RSS is read before
//! the clients connect and after (plus a second for the nodes to settle), CPU over the
//! measured window.

use crate::loadgen::{self, Outcome, Plan, Reader};
use crate::probe;
use anyhow::Result;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub async fn run(plan: &Plan) -> Result<Outcome> {
    let rss_before = probe::rss_sum(plan.node_pids());
    let conns = loadgen::connect_many(&plan.nodes, plan.clients).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|ws| {
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut reader = Reader::Whole(Box::new(ws));
                // Pings are answered inside `next_text`; nothing else is expected.
                while let Ok(Some(_)) = reader.next_text(&mut stop).await {}
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = probe::rss_sum(plan.node_pids());
    tokio::time::sleep(plan.warmup).await;
    let mut watched = plan.pids.clone();
    watched.push(std::process::id());
    let window = probe::Window::start(&watched, &plan.admins).await;
    let t = Instant::now();
    tokio::time::sleep(plan.measure).await;
    let rss_end = probe::rss_sum(plan.node_pids());
    let spent = window.end().await;
    let measure = t.elapsed();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(Outcome {
        deliveries: 0,
        publishes: 0,
        measure,
        latencies_us: Vec::new(),
        cross_latencies_us: Vec::new(),
        lost: 0,
        ack_errors: 0,
        stalls: 0,
        cpu_seconds: spent.cpu_seconds,
        clients: plan.clients,
        rss_kib: [rss_before, rss_connected, rss_end],
        guest_seconds: spent.guest_seconds,
        backend_messages: spent.backend_messages,
    })
}
