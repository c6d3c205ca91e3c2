//! The kit's cluster: three wasio nodes in this process, each a real Socket.IO server on
//! a loopback port with the candidate adapter, two WebSocket clients of `/` on each and
//! one of a second namespace, [`OTHER`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use socketioxide::SocketIo;
use tokio::sync::oneshot;

use super::CheckOptions;
use super::client::{Client, Incoming};
use crate::capabilities::ServerSideEvent;
use crate::cluster::Adapter;
use crate::config::AdapterOptions;
use crate::config::DatasourceSpec;
use crate::config::{Connector, ServerConfig};
use crate::datasource::PubSubLink;
use crate::serve::server::{self, Ns};

pub const NODES: usize = 3;
pub const CLIENTS_PER_NODE: usize = 2;
/// The second namespace: an adapter must keep its rooms and broadcasts apart from `/`.
pub const OTHER: &str = "/other";
/// The host's cap on a cluster request (guests default to 5 s of their own).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);

pub struct Node {
    pub adapter: Adapter,
    pub io: SocketIo<Ns>,
    pub addr: SocketAddr,
    /// `[event, ...args]` of every server-side emit this node's handler ran.
    pub server_side: Arc<Mutex<Vec<rmpv::Value>>>,
    stop: oneshot::Sender<()>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// `clients[node][i]`.
    pub clients: Vec<Vec<tokio::sync::Mutex<Client>>>,
    /// `others[node]`: the client of [`OTHER`] on each node.
    pub others: Vec<tokio::sync::Mutex<Client>>,
    /// How long an expected delivery or state change may take.
    pub patience: Duration,
}

impl Cluster {
    pub async fn start(opts: &CheckOptions, connector: Connector) -> anyhow::Result<Cluster> {
        // One bus per check, so that checks running side by side do not meet.
        let url = if connector == Connector::Memory {
            format!("memory://check-{}-{}", std::process::id(), unique())
        } else {
            opts.datasource.clone()
        };
        let granted = vec![connector.capability()];
        let mut nodes = Vec::new();
        for _ in 0..NODES {
            let adapter = Adapter::load(AdapterOptions {
                source: opts.wasm.clone(),
                options: opts.options.clone(),
                request_timeout: REQUEST_TIMEOUT,
                granted: granted.clone(),
                datasource: Some(DatasourceSpec {
                    name: "check".into(),
                    connector,
                    url: url.clone(),
                    publish_buffer: 10_000,
                }),
                ..Default::default()
            })
            .await?;
            nodes.push(Node::start(adapter).await?);
        }
        let mut clients = Vec::new();
        let mut others = Vec::new();
        for node in &nodes {
            let mut on_node = Vec::new();
            for _ in 0..CLIENTS_PER_NODE {
                on_node.push(tokio::sync::Mutex::new(Client::connect(node.addr).await?));
            }
            clients.push(on_node);
            let other = Client::connect_to(node.addr, OTHER).await?;
            others.push(tokio::sync::Mutex::new(other));
        }
        Ok(Cluster {
            nodes,
            clients,
            others,
            patience: opts.patience,
        })
    }

    /// The adapter's `init` answer: (name, version).
    pub fn adapter_info(&self) -> (String, String) {
        let info = self.nodes[0].adapter.status().current;
        (info.name, info.version)
    }

    /// The socket id of client `i` of node `n`.
    pub async fn sid(&self, n: usize, i: usize) -> String {
        self.clients[n][i].lock().await.sid.clone()
    }

    /// Every client as (node, index, sid).
    pub async fn all(&self) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        for (n, on_node) in self.clients.iter().enumerate() {
            for (i, c) in on_node.iter().enumerate() {
                out.push((n, i, c.lock().await.sid.clone()));
            }
        }
        out
    }

    /// Sends `fence` (a unique token) to all from node `from`, then reads every
    /// listed client's events up to it: how many times each got `event` with `token`.
    /// What a node relays after a broadcast arrives after it, so a duplicate would
    /// show up before the fence. A client among `members` that has not got it by the
    /// fence is read on, the cluster's patience at most: sharded channels on a Redis
    /// Cluster keep no order between two channels (a room's and the namespace's).
    pub async fn deliveries(
        &self,
        from: usize,
        event: &str,
        token: &Value,
        clients: &[(usize, usize)],
        members: &[(usize, usize)],
    ) -> anyhow::Result<HashMap<(usize, usize), usize>> {
        let fence = Value::from(format!("fence-{}", unique()));
        self.nodes[from]
            .io
            .emit("fence", &fence)
            .await
            .map_err(|e| anyhow::anyhow!("fence broadcast: {e}"))?;
        let mut counts = HashMap::new();
        for &(n, i) in clients {
            let mut c = self.clients[n][i].lock().await;
            let who = format!("{}{i}", label(n));
            let want = usize::from(members.contains(&(n, i)));
            let got = self
                .count_to_fence(&mut c, &who, &fence, (event, token), want)
                .await?;
            counts.insert((n, i), got);
        }
        Ok(counts)
    }

    /// Reads `client`'s events up to `fence`, and on until it has `want` of them: how
    /// many times it got `event` with `token`.
    pub async fn count_to_fence(
        &self,
        client: &mut Client,
        who: &str,
        fence: &Value,
        (event, token): (&str, &Value),
        want: usize,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + self.patience;
        let mut count = 0;
        let mut fenced = false;
        loop {
            if fenced && count >= want {
                return Ok(count);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match client.next(left).await {
                Some(Incoming::Event(e, v)) if e == "fence" && v == *fence => fenced = true,
                Some(Incoming::Event(e, v)) if e == event && v == *token => count += 1,
                Some(Incoming::Disconnected) => bail!("{who} was disconnected"),
                Some(_) => {}
                None if fenced => return Ok(count),
                None => bail!(
                    "{who} did not get the fence (a broadcast to all sent after it) within {:?}",
                    self.patience
                ),
            }
        }
    }

    /// The link of node `n` to the pub/sub datasource, if it has one.
    pub fn pubsub(&self, n: usize) -> Option<Arc<PubSubLink>> {
        self.nodes[n].adapter.0.slot.load().links().pubsub.clone()
    }

    /// The link of node `n` to the MongoDB datasource, if it has one.
    pub fn docstore(&self, n: usize) -> Option<Arc<crate::datasource::mongo::MongoDocStore>> {
        self.nodes[n].adapter.0.slot.load().links().docstore.clone()
    }

    /// The link of node `n` to the PostgreSQL datasource, if it has one.
    pub fn notify(&self, n: usize) -> Option<Arc<crate::datasource::postgres::PostgresLink>> {
        self.nodes[n].adapter.0.slot.load().links().notify.clone()
    }

    pub async fn stop(self) {
        for node in self.nodes {
            let _ = node.stop.send(());
            node.adapter.close().await;
        }
    }
}

impl Node {
    async fn start(adapter: Adapter) -> anyhow::Result<Node> {
        let config = ServerConfig {
            host: [127, 0, 0, 1].into(),
            port: 0,
            namespaces: vec!["/".into(), OTHER.into()],
            ..Default::default()
        };
        let (router, io) = server::app(adapter.clone(), &config).await?;
        let server_side = Arc::new(Mutex::new(Vec::new()));
        let seen = server_side.clone();
        let me = adapter.node_id().to_string();
        adapter.on_server_side_emit(Arc::new(move |ev: ServerSideEvent| {
            seen.lock().unwrap().push(ev.data);
            if let Some(ack) = ev.ack {
                ack(vec![me.clone().into()]);
            }
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound_tx, bound) = oneshot::channel();
        tokio::spawn(server::serve(
            router,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            None,
            move |a| {
                let _ = bound_tx.send(a);
            },
            async move {
                let _ = stopped.await;
            },
        ));
        let addr = bound.await.context("the node's listener did not start")?;
        Ok(Node {
            adapter,
            io,
            addr,
            server_side,
            stop,
        })
    }
}

/// "A", "B", "C": nodes as the table names them.
pub fn label(n: usize) -> char {
    (b'A' + n as u8) as char
}

/// A process-wide unique number, for tokens and names.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
