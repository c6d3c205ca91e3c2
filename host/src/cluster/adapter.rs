//! [`Adapter`]: the loaded wasm adapter of this node — the state socketioxide hands to
//! every namespace's [`WasmAdapter`](crate::WasmAdapter), the guest calls, and the
//! dispatcher that pushes host events into the guest in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use socketioxide::SocketIoConfig;
use socketioxide_core::Uid;
use tokio::task::AbortHandle;

use super::answers::{self, Outcome, RequestError};
use super::component::AdapterComponent;
use super::dispatch::{Dispatcher, Queue};
use super::guest::{Attempt, GuestCall, GuestError, GuestSlot, SlotSetup};
use super::swap::SwapState;
use crate::capabilities::{Metrics, NodeState, ServerSideHandler, SocketInspector};
use crate::config::AdapterOptions;
use crate::datasource::Links;
use crate::runtime::SocketInfo;
use crate::runtime::bindings::BroadcastOpts;

/// The wasm adapter of this node. Cheap to clone; pass it as the adapter state.
#[derive(Clone)]
pub struct Adapter(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) node: Arc<NodeState>,
    /// The node's queue: events and swap steps, in order.
    pub(crate) queue: Queue,
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
        let component = Arc::new(AdapterComponent::load(&opts.source, &opts.granted).await?);
        let (queue, items) = Queue::new();
        let node = NodeState::new(Uid::new().to_string(), queue.events());
        let links = Links::connect(
            opts.datasource.as_ref(),
            &Links::default(),
            node.link_sink(),
        )
        .await?;
        let setup = slot_setup(&opts, links.clone())?;
        let slot = match GuestSlot::start(component.clone(), node.clone(), setup, &[]).await {
            Ok(slot) => slot,
            Err(e) => {
                links.close().await;
                return Err(e.into());
            }
        };
        *node.adapter_name.write().unwrap() = slot.info().name.clone();
        let slot = Arc::new(ArcSwap::from_pointee(slot));
        let dispatcher = tokio::spawn(Dispatcher::new(slot.clone()).run(items)).abort_handle();
        Ok(Adapter(Arc::new(Inner {
            node,
            queue,
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
        config.server_id = self.0.node.node_id.parse().unwrap_or_default();
        config
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.0.node.node_id
    }

    /// Guest health counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.node.metrics
    }

    /// What the guest wrote (stderr, stdout, `log` at info and above) just before its
    /// last trap or stop, at most 10 lines: a Python traceback, a Rust panic message.
    pub fn output_before_fault(&self) -> Vec<String> {
        self.0.node.output.at_fault()
    }

    /// Sets what runs here when another node does `serverSideEmit`.
    pub fn on_server_side_emit(&self, handler: ServerSideHandler) {
        self.0.node.hooks.set_server_side_handler(Some(handler));
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
        match self.request("server-side-emit", call).await? {
            Outcome::Done(parts) => answers::server_acks(parts),
            Outcome::Partial { message, parts } => Err(PartialAcks {
                message,
                responses: answers::server_acks(parts)?,
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
        let local = match self.0.node.namespaces.get(nsp) {
            Some(ns) => ns.fetch(&opts),
            None => Vec::new(),
        };
        let mut nodes = vec![local];
        nodes.extend(self.remote_sockets(nsp, opts).await?);
        Ok(nodes)
    }

    /// `allRooms()` across the cluster, sorted. Fails when a node did not answer in time.
    pub async fn all_rooms(&self, nsp: &str) -> anyhow::Result<Vec<String>> {
        let opts = targets(&[], &[]);
        let mut rooms = match self.0.node.namespaces.get(nsp) {
            Some(ns) => ns.rooms(&opts),
            None => Vec::new(),
        };
        rooms.extend(self.remote_rooms(nsp, opts).await?);
        rooms.sort();
        rooms.dedup();
        Ok(rooms)
    }

    /// `serverCount()`: the nodes serving `nsp`, this one included.
    pub async fn server_count(&self, nsp: &str) -> anyhow::Result<u32> {
        Ok(self.remote_server_count(nsp).await?)
    }

    /// Other nodes' sockets matching `opts`, one list per answering node.
    pub(crate) async fn remote_sockets(
        &self,
        nsp: &str,
        opts: BroadcastOpts,
    ) -> Result<Vec<Vec<SocketInfo>>, RequestError> {
        let call = |id| GuestCall::FetchSockets {
            nsp: nsp.into(),
            id,
            opts,
        };
        let parts = self.request("fetch-sockets", call).await?.complete()?;
        Ok(answers::sockets(parts))
    }

    /// Other nodes' rooms of the sockets matching `opts`.
    pub(crate) async fn remote_rooms(
        &self,
        nsp: &str,
        opts: BroadcastOpts,
    ) -> Result<Vec<String>, RequestError> {
        let call = |id| GuestCall::AllRooms {
            nsp: nsp.into(),
            id,
            opts,
        };
        let parts = self.request("all-rooms", call).await?.complete()?;
        Ok(answers::rooms(parts))
    }

    /// The nodes serving `nsp`, this one included, as the guest counts them.
    pub(crate) async fn remote_server_count(&self, nsp: &str) -> Result<u32, RequestError> {
        let call = |id| GuestCall::ServerCount {
            nsp: nsp.into(),
            id,
        };
        let parts = self.request("server-count", call).await?.complete()?;
        Ok(answers::server_count(&parts))
    }

    /// Opens a cluster request, starts it on the guest, and gathers the answers; an
    /// error when the guest refused it. A guest that never finishes is cut off at the
    /// host's deadline with what arrived, and that counts as done.
    pub(crate) async fn request(
        &self,
        op: &'static str,
        start: impl FnOnce(u64) -> GuestCall,
    ) -> Result<Outcome, GuestError> {
        let handle = self.0.node.requests.open();
        self.call(op, start(handle.id)).await?;
        let answers = handle
            .collect(self.request_timeout() + self.request_grace())
            .await;
        Ok(match answers.outcome {
            Ok(()) => Outcome::Done(answers.parts),
            Err(e) if answers.abandoned => {
                self.0
                    .node
                    .metrics
                    .abandoned_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(op, "the adapter never finished a request: {e}");
                Outcome::Done(answers.parts)
            }
            Err(message) => Outcome::Partial {
                message,
                parts: answers.parts,
            },
        })
    }

    /// Tells the adapter that sockets of `nsp` joined `rooms` on this node. socketioxide
    /// has no hook for `socket.join`, so an app calls this after joins when its adapter
    /// subscribes per room (sharded Redis in `dynamic` mode); the standalone server does.
    pub fn rooms_joined(&self, nsp: &str, rooms: &[String]) {
        self.0.node.rooms_joined(nsp, rooms);
    }

    /// Lets fetch-sockets answers carry each socket's handshake and data
    /// (MessagePack), as the Node.js adapters do.
    pub fn set_socket_inspector(&self, inspector: SocketInspector) {
        self.0.node.hooks.set_inspector(Some(inspector));
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
        let namespaces = &self.0.node.namespaces;
        let mut stats: Vec<_> = namespaces
            .names()
            .into_iter()
            .filter_map(|n| {
                let (sockets, rooms) = namespaces.get(&n)?.stats();
                Some((n, sockets, rooms))
            })
            .collect();
        stats.sort();
        stats
    }

    /// Cluster requests of this node still waiting for answers.
    pub fn pending_requests(&self) -> usize {
        self.0.node.requests.open_ids().len()
    }

    /// The datasource link's state and counters, for `/healthz`.
    pub fn datasource_status(&self) -> Option<serde_json::Value> {
        self.0.slot.load().links().status()
    }

    pub(crate) fn node(&self) -> &Arc<NodeState> {
        &self.0.node
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
                Attempt::Ran(res) => break res,
                Attempt::Swapped(back) => call = back,
            }
        };
        if res.is_err() {
            self.0
                .node
                .metrics
                .relay_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        res
    }
}

/// `serverSideEmit` with an ack timed out: the answers of the nodes that replied.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PartialAcks {
    /// Why it ended early.
    pub message: String,
    /// The answers of the nodes that replied.
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

/// How the slot for `opts` makes its instances.
pub(crate) fn slot_setup(opts: &AdapterOptions, links: Links) -> anyhow::Result<SlotSetup> {
    Ok(SlotSetup {
        limits: opts.limits,
        options: serde_json::to_string(&opts.options).context("adapter options")?,
        links,
        request_timeout: opts.request_timeout,
    })
}
