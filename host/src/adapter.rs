//! [`Adapter`]: the loaded wasm adapter of this node — the state socketioxide hands to
//! every namespace's [`WasmAdapter`](crate::WasmAdapter), the guest calls, and the
//! dispatcher that pushes host events into the guest in order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use socketioxide::SocketIoConfig;
use socketioxide_core::Uid;
use tokio::task::AbortHandle;

use crate::capabilities::{Links, ServerSideHandler, Shared, SocketInspector};
use crate::config::Connector;
use crate::datasource::{DatasourceSpec, MemoryPubSub, MongoDocStore, PubSubLink, RedisPubSub};
use crate::dispatch::Dispatcher;
use crate::runtime::bindings::wasio::adapter::requests::Answer;
use crate::runtime::{
    AdapterComponent, AdapterInfo, BroadcastOpts, Capability, GuestCall, GuestError, GuestSlot,
    Limits, SlotSetup, SocketInfo,
};
use crate::swap::SwapState;

/// Where an adapter component comes from.
#[derive(Clone, Debug)]
pub enum WasmSource {
    /// One embedded in this binary (`builtin:local`).
    Builtin(String),
    /// A `.wasm` file.
    File(PathBuf),
    /// A component's bytes (an upload), with a label for messages (`upload:NAME`).
    Bytes { label: String, bytes: Arc<Vec<u8>> },
}

impl WasmSource {
    /// Parses the config form: `builtin:NAME` or a path.
    pub fn parse(s: &str) -> WasmSource {
        match s.strip_prefix("builtin:") {
            Some(name) => WasmSource::Builtin(name.to_string()),
            None => WasmSource::File(PathBuf::from(s)),
        }
    }

    /// Its label for messages (`builtin:NAME`, the path, `upload:NAME`) and its bytes.
    pub fn read(&self) -> anyhow::Result<(String, Arc<Vec<u8>>)> {
        Ok(match self {
            WasmSource::Builtin(name) => {
                let bytes = builtin(name).with_context(|| {
                    format!(
                        "builtin:{name}: no such built-in adapter (built in: {})",
                        BUILTINS.join(", ")
                    )
                })?;
                (format!("builtin:{name}"), Arc::new(bytes.to_vec()))
            }
            WasmSource::File(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("{}: cannot read adapter", path.display()))?;
                (path.display().to_string(), Arc::new(bytes))
            }
            WasmSource::Bytes { label, bytes } => (label.clone(), bytes.clone()),
        })
    }
}

/// How to load an adapter.
#[derive(Clone, Debug)]
pub struct AdapterOptions {
    pub source: WasmSource,
    /// The `[adapter.options]` table, handed to the guest's `init` as JSON.
    pub options: serde_json::Value,
    pub limits: Limits,
    /// How long the guest is given to answer a cluster request (its own timeout);
    /// the host ends the request a grace period after that in any case.
    pub request_timeout: Duration,
    /// Capabilities the config grants beyond the always-granted ones.
    pub granted: Vec<Capability>,
    /// The backend the host connects to for the guest, if any.
    pub datasource: Option<DatasourceSpec>,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        AdapterOptions {
            source: WasmSource::Builtin("local".into()),
            options: serde_json::json!({}),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(5),
            granted: Vec::new(),
            datasource: None,
        }
    }
}

/// The guest components built into this binary, by name.
pub fn builtin(name: &str) -> Option<&'static [u8]> {
    match name {
        "local" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/local.wasm"))),
        "redis" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/redis.wasm"))),
        "mongodb" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/mongodb.wasm"))),
        _ => None,
    }
}

/// Names of the built-in adapters.
pub const BUILTINS: &[&str] = &["local", "redis", "mongodb"];

/// The wasm adapter of this node. Cheap to clone; pass it as the adapter state.
#[derive(Clone)]
pub struct Adapter(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    /// The adapter serving now; replaced by a swap, at one point of the event queue.
    pub(crate) slot: Arc<ArcSwap<GuestSlot>>,
    pub(crate) swap: SwapState,
    dispatcher: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl Adapter {
    /// Compiles, checks and instantiates the adapter, and runs its `init`. Errors name
    /// the `.wasm` and the cause.
    pub async fn load(opts: AdapterOptions) -> anyhow::Result<Adapter> {
        let component = Arc::new(compile(&opts.source, &opts.granted).await?);
        let node_id = Uid::new().to_string();
        let (shared, events) = Shared::new(node_id);
        let links = connect_links(&shared, opts.datasource.as_ref(), &Links::default()).await?;
        let setup = slot_setup(&opts, links.clone())?;
        let slot = match GuestSlot::start(component.clone(), shared.clone(), setup, &[]).await {
            Ok(slot) => slot,
            Err(e) => {
                links.close().await;
                return Err(e.into());
            }
        };
        *shared.adapter_name.write().unwrap() = slot.info().name.clone();
        let slot = Arc::new(ArcSwap::from_pointee(slot));
        let dispatcher = tokio::spawn(Dispatcher::new(slot.clone()).run(events)).abort_handle();
        Ok(Adapter(Arc::new(Inner {
            shared,
            slot,
            swap: SwapState::new(opts, component),
            dispatcher,
        })))
    }

    /// The embedded single-node adapter with default limits.
    pub async fn builtin_local() -> anyhow::Result<Adapter> {
        Adapter::load(AdapterOptions::default()).await
    }

    /// A socketioxide config whose server id is this node's id, so both agree on it.
    pub fn socket_io_config(&self) -> SocketIoConfig {
        let mut config = SocketIoConfig::default();
        config.server_id = self.0.shared.node_id.parse().unwrap_or_default();
        config
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.0.shared.node_id
    }

    /// What the running guest said about itself.
    pub fn info(&self) -> AdapterInfo {
        self.0.slot.load().info().clone()
    }

    /// Where the running component came from, and its sha256.
    pub fn component(&self) -> (String, String) {
        let slot = self.0.slot.load();
        (
            slot.component().source.clone(),
            slot.component().sha256.clone(),
        )
    }

    /// Guest health counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.shared.metrics
    }

    /// Sets what runs here when another node does `serverSideEmit`.
    pub fn on_server_side_emit(&self, handler: ServerSideHandler) {
        self.0.shared.set_server_side_handler(Some(handler));
    }

    /// `serverSideEmit`: runs the other nodes' server-side handlers of namespace `nsp`
    /// with `[event, ...args]`; returns at once.
    pub async fn server_side_emit(&self, nsp: &str, data: Vec<rmpv::Value>) -> anyhow::Result<()> {
        let data = encode_array(data);
        self.call(
            "server-side-emit",
            GuestCall::ServerSideEmit {
                nsp: nsp.into(),
                id: None,
                data,
            },
        )
        .await?;
        Ok(())
    }

    /// `serverSideEmit` with an ack: each other node's answer (its ack arguments). When
    /// the request times out, the error is a [`PartialAcks`] with the answers that came,
    /// as socket.io's callback gets `(err, responses)`.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        data: Vec<rmpv::Value>,
    ) -> anyhow::Result<Vec<rmpv::Value>> {
        let call = |id| GuestCall::ServerSideEmit {
            nsp: nsp.into(),
            id: Some(id),
            data: encode_array(data),
        };
        let decode = |parts: Vec<Answer>| -> anyhow::Result<Vec<rmpv::Value>> {
            let mut acks = Vec::new();
            for part in parts {
                if let Answer::ServerAck(bytes) = part {
                    acks.push(rmpv::decode::read_value(&mut &bytes[..])?);
                }
            }
            Ok(acks)
        };
        match self.request("server-side-emit", call).await? {
            Ok(parts) => decode(parts),
            Err(failed) => Err(PartialAcks {
                message: failed.message,
                responses: decode(failed.parts)?,
            }
            .into()),
        }
    }

    /// `fetchSockets()` across the cluster: this node's sockets in `rooms` (all when
    /// empty) but not in `except`, then every other node's, with handshake and data
    /// (MessagePack) as their nodes describe them — Node.js nodes' sockets included.
    /// Fails when a node did not answer in time, as socket.io does.
    pub async fn fetch_sockets(
        &self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
    ) -> anyhow::Result<Vec<SocketInfo>> {
        let by_node = self.sockets_by_node(nsp, rooms, except).await?;
        Ok(by_node.into_iter().flatten().collect())
    }

    /// [`Adapter::fetch_sockets`], one list per node that answered, this node's first
    /// (a node without matching sockets answers an empty list).
    pub async fn sockets_by_node(
        &self,
        nsp: &str,
        rooms: &[String],
        except: &[String],
    ) -> anyhow::Result<Vec<Vec<SocketInfo>>> {
        let opts = targets(rooms, except);
        let local = match self.0.shared.namespace(nsp) {
            Some(ns) => ns.fetch(&opts),
            None => Vec::new(),
        };
        let call = |id| GuestCall::FetchSockets {
            nsp: nsp.into(),
            id,
            opts: opts.clone(),
        };
        let mut nodes = vec![local];
        for part in self
            .request("fetch-sockets", call)
            .await?
            .map_err(|f| f.into_error())?
        {
            if let Answer::Sockets(list) = part {
                nodes.push(list);
            }
        }
        Ok(nodes)
    }

    /// `allRooms()` across the cluster, sorted. Fails when a node did not answer in time.
    pub async fn all_rooms(&self, nsp: &str) -> anyhow::Result<Vec<String>> {
        let opts = targets(&[], &[]);
        let mut rooms = match self.0.shared.namespace(nsp) {
            Some(ns) => ns.rooms(&opts),
            None => Vec::new(),
        };
        let call = |id| GuestCall::AllRooms {
            nsp: nsp.into(),
            id,
            opts: opts.clone(),
        };
        for part in self
            .request("all-rooms", call)
            .await?
            .map_err(|f| f.into_error())?
        {
            if let Answer::Rooms(list) = part {
                rooms.extend(list);
            }
        }
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// `serverCount()`: the nodes serving `nsp`, this one included.
    pub async fn server_count(&self, nsp: &str) -> anyhow::Result<u32> {
        let call = |id| GuestCall::ServerCount {
            nsp: nsp.into(),
            id,
        };
        let parts = self
            .request("server-count", call)
            .await?
            .map_err(|f| f.into_error())?;
        let count = parts.iter().rev().find_map(|a| match a {
            Answer::ServerCount(n) => Some(*n),
            _ => None,
        });
        Ok(count.unwrap_or(1))
    }

    /// Opens a cluster request, starts it on the guest, and gathers the answers: the
    /// outer `Err` when the guest refused it, the inner one when the guest ended it
    /// early (a node did not answer in time). A guest that never finishes is cut off at
    /// the host's deadline with what arrived, and that counts as done.
    pub(crate) async fn request(
        &self,
        op: &'static str,
        start: impl FnOnce(u64) -> GuestCall,
    ) -> Result<Result<Vec<Answer>, Failed>, GuestError> {
        let handle = self.0.shared.open_request();
        self.call(op, start(handle.id)).await?;
        let answers = handle
            .collect(self.request_timeout() + self.request_grace())
            .await;
        Ok(match answers.outcome {
            Ok(()) => Ok(answers.parts),
            Err(e) if answers.abandoned => {
                tracing::warn!(op, "the adapter never finished a request: {e}");
                Ok(answers.parts)
            }
            Err(message) => Err(Failed {
                message,
                parts: answers.parts,
            }),
        })
    }

    /// Tells the adapter that sockets of `nsp` joined `rooms` on this node. socketioxide
    /// has no hook for `socket.join`, so an app calls this after joins when its adapter
    /// subscribes per room (sharded Redis in `dynamic` mode); the standalone server does.
    pub fn rooms_joined(&self, nsp: &str, rooms: &[String]) {
        self.0.shared.rooms_joined(nsp, rooms);
    }

    /// Lets fetch-sockets answers carry each socket's handshake and data
    /// (MessagePack), as the Node.js adapters do.
    pub fn set_socket_inspector(&self, inspector: SocketInspector) {
        self.0.shared.set_inspector(Some(inspector));
    }

    /// Calls the guest's `close` (it leaves the cluster), then closes the datasource
    /// once what the guest queued is sent; the adapter serves nothing after.
    pub async fn close(&self) {
        // A swap in progress finishes (or is refused) first; then no other starts.
        let _gate = self.0.swap.close_gate().await;
        let slot = self.0.slot.load_full();
        slot.close().await;
        // The slot stays in place (nothing replaces it), so the links are still shared:
        // finished through a reference rather than closed by their last owner.
        slot.links().finish(Duration::from_secs(2)).await;
    }

    /// This node's namespaces, sorted by name: `(name, sockets, rooms)`, rooms not
    /// counting each socket's own-id room.
    pub fn local_stats(&self) -> Vec<(String, usize, usize)> {
        let shared = &self.0.shared;
        let mut stats: Vec<_> = shared
            .namespace_names()
            .into_iter()
            .filter_map(|n| {
                let (sockets, rooms) = shared.namespace(&n)?.stats();
                Some((n, sockets, rooms))
            })
            .collect();
        stats.sort();
        stats
    }

    /// Cluster requests of this node still waiting for answers.
    pub fn pending_requests(&self) -> usize {
        self.0.shared.open_requests().len()
    }

    /// The datasource link's state and counters, for `/healthz`.
    pub fn datasource_status(&self) -> Option<serde_json::Value> {
        self.0.slot.load().links().status()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0.shared
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.0.slot.load().request_timeout()
    }

    /// How long after its own timeout the host still waits for a guest to finish a request.
    pub(crate) fn request_grace(&self) -> Duration {
        Duration::from_secs(1)
    }

    pub(crate) async fn call(&self, op: &'static str, call: GuestCall) -> Result<(), GuestError> {
        let mut call = call;
        // A call that reaches an adapter just swapped out is made on the new one.
        let res = loop {
            match self.0.slot.load_full().try_call(op, call, false).await {
                Ok(res) => break res,
                Err(back) => call = back,
            }
        };
        if res.is_err() {
            self.0
                .shared
                .metrics
                .relay_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        res
    }
}

/// A cluster request the guest ended early, with the answers that came.
pub(crate) struct Failed {
    pub message: String,
    pub parts: Vec<Answer>,
}

impl Failed {
    fn into_error(self) -> anyhow::Error {
        anyhow::anyhow!("{}", self.message)
    }
}

/// `serverSideEmit` with an ack timed out: the answers of the nodes that replied.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PartialAcks {
    pub message: String,
    pub responses: Vec<rmpv::Value>,
}

/// The contract's options naming sockets in `rooms` (all when empty) minus `except`.
fn targets(rooms: &[String], except: &[String]) -> BroadcastOpts {
    BroadcastOpts {
        flags: Default::default(),
        rooms: rooms.to_vec(),
        except: except.to_vec(),
        sid: None,
        server_id: None,
    }
}

fn encode_array(items: Vec<rmpv::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &rmpv::Value::Array(items));
    out
}

/// The links an adapter on `spec` uses: `current`'s when it is the same datasource
/// (a swap keeps the connection and its subscriptions), else a new connection.
pub(crate) async fn connect_links(
    shared: &Arc<Shared>,
    spec: Option<&DatasourceSpec>,
    current: &Links,
) -> anyhow::Result<Links> {
    let Some(spec) = spec else {
        return Ok(Links::default());
    };
    let same = |s: &DatasourceSpec| s.name == spec.name && s.url == spec.url;
    Ok(match spec.connector {
        Connector::Redis => Links {
            pubsub: Some(match &current.pubsub {
                Some(l) if same(l.spec()) => l.clone(),
                _ => Arc::new(PubSubLink::Redis(
                    RedisPubSub::connect(spec, Arc::downgrade(shared)).await?,
                )),
            }),
            docstore: None,
        },
        Connector::Memory => Links {
            pubsub: Some(match &current.pubsub {
                Some(l) if same(l.spec()) => l.clone(),
                _ => Arc::new(PubSubLink::Memory(MemoryPubSub::connect(
                    spec,
                    Arc::downgrade(shared),
                ))),
            }),
            docstore: None,
        },
        Connector::Mongodb => Links {
            pubsub: None,
            docstore: Some(match &current.docstore {
                Some(l) if same(l.spec()) => l.clone(),
                _ => Arc::new(MongoDocStore::connect(spec, Arc::downgrade(shared)).await?),
            }),
        },
    })
}

/// How the slot for `opts` makes its instances.
pub(crate) fn slot_setup(opts: &AdapterOptions, links: Links) -> anyhow::Result<SlotSetup> {
    Ok(SlotSetup {
        limits: opts.limits,
        options: serde_json::to_string(&opts.options).context("adapter options")?,
        links,
        request_timeout: opts.request_timeout,
    })
}

/// Reads the component (from disk or the binary) and compiles it off the reactor.
pub(crate) async fn compile(
    source: &WasmSource,
    granted: &[Capability],
) -> anyhow::Result<AdapterComponent> {
    let granted = granted.to_vec();
    let source = source.clone();
    tokio::task::spawn_blocking(move || {
        let (label, bytes) = source.read()?;
        AdapterComponent::from_bytes(&label, &bytes, &granted)
    })
    .await
    .context("adapter compilation task")?
}
