//! What the admin page shows (`GET /admin/overview`): this node, its adapter, the
//! nodes seen in the cluster, namespaces, counters, and the connection count over
//! time, sampled here in the background.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::reload::Node;
use crate::cluster::Adapter;

/// Samples kept: an hour at the default 5 s.
const HISTORY_LEN: usize = 720;
/// How long the cluster part may take before the page gets the rest without it.
const CLUSTER_WAIT: Duration = Duration::from_secs(3);

/// Connection counts over time, oldest first.
#[derive(Default)]
pub struct History(Mutex<VecDeque<(u64, usize)>>);

impl History {
    /// Samples `node`'s connections every `every` while the node lives.
    pub fn spawn(node: &Arc<Node>, every: Duration) -> Arc<History> {
        let history = Arc::new(History::default());
        let (weak, h) = (Arc::downgrade(node), history.clone());
        tokio::spawn(async move { h.sample(weak, every).await });
        history
    }

    async fn sample(&self, node: Weak<Node>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(node) = node.upgrade() else { return };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let connections = connections(node.adapter());
            let mut samples = self.0.lock().unwrap();
            if samples.len() == HISTORY_LEN {
                samples.pop_front();
            }
            samples.push_back((now, connections));
        }
    }

    fn to_json(&self) -> Value {
        let samples = self.0.lock().unwrap();
        samples
            .iter()
            .map(|(t, c)| json!({ "t": t, "connections": c }))
            .collect()
    }
}

fn connections(adapter: &Adapter) -> usize {
    adapter.local_stats().iter().map(|(_, s, _)| s).sum()
}

/// The overview of `node`'s state.
pub async fn overview(node: &Node, history: &History) -> Value {
    let adapter = node.adapter();
    let stats = adapter.local_stats();
    let namespaces: Vec<Value> = stats
        .iter()
        .map(|(n, s, r)| json!({ "name": n, "sockets": s, "rooms": r }))
        .collect();
    let cluster = match tokio::time::timeout(CLUSTER_WAIT, cluster(adapter, &stats)).await {
        Ok(c) => c,
        Err(_) => {
            json!({ "server_count": null, "nodes": [], "error": "the cluster did not answer in 3 s" })
        }
    };
    json!({
        "node_id": adapter.node_id(),
        "adapter": adapter.status(),
        "cluster": cluster,
        "connections": stats.iter().map(|(_, s, _)| s).sum::<usize>(),
        "namespaces": namespaces,
        "history": history.to_json(),
        "guest": adapter.metrics().to_json(),
        "datasource": adapter.datasource_status(),
        "pending_requests": adapter.pending_requests(),
    })
}

/// The nodes seen: each node answering a cluster-wide fetchSockets in the first
/// namespace (`/` by default), with its sockets there; and the adapter's server count.
/// A node's id is known when its sockets carry it (the classic Redis protocol's answers
/// carry none: such a node is listed with a null id).
async fn cluster(adapter: &Adapter, stats: &[(String, usize, usize)]) -> Value {
    let Some((nsp, _, _)) = stats.first() else {
        return json!({ "server_count": null, "nodes": [] });
    };
    let me = adapter.node_id();
    let (answers, count) = tokio::join!(
        adapter.sockets_by_node(nsp, &[], &[]),
        adapter.server_count(nsp)
    );
    let mut v = json!({ "namespace": nsp, "server_count": count.ok(), "nodes": [] });
    match answers {
        Ok(nodes) => {
            let nodes: Vec<Value> = nodes
                .iter()
                .enumerate()
                .map(|(i, sockets)| {
                    let id = if i == 0 {
                        Some(me)
                    } else {
                        sockets
                            .first()
                            .map(|s| s.server_id.as_str())
                            .filter(|id| !id.is_empty())
                    };
                    json!({ "node_id": id, "self": i == 0, "sockets": sockets.len() })
                })
                .collect();
            v["nodes"] = nodes.into();
        }
        Err(e) => v["error"] = format!("fetchSockets in {nsp}: {e:#}").into(),
    }
    v
}
