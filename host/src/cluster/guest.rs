//! One live adapter instance: calls into it under a deadline, and a fresh instance
//! (init and namespaces replayed) after it traps, loops or runs out of memory.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Mutex;
use wasmtime::Store;

use super::component::AdapterComponent;
use crate::capabilities::{HostState, NodeState, Traffic};
use crate::config::Limits;
use crate::datasource::{Links, Topic};
use crate::runtime::bindings::{AdapterHost as Host, BroadcastOpts, InitArgs};
use crate::runtime::{AdapterInfo, WitError, backtrace, begin_call, describe, fault_cause};

/// Why a guest call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GuestError {
    /// The guest answered with an error.
    #[error("adapter `{adapter}` refused {op}: {}", describe(.error))]
    Refused {
        /// The adapter's name.
        adapter: String,
        /// The operation.
        op: &'static str,
        /// What it answered.
        error: WitError,
    },
    /// The guest trapped or was stopped; it has been replaced by a fresh instance.
    #[error("adapter `{adapter}` failed in {op} and was restarted: {cause}")]
    Fault {
        /// The adapter's name.
        adapter: String,
        /// The operation.
        op: &'static str,
        /// The trap, or the limit it hit.
        cause: String,
    },
    /// No instance could be made to run (instantiation or init failed).
    #[error("adapter `{adapter}` is unavailable: {cause}")]
    Unavailable {
        /// The adapter's name.
        adapter: String,
        /// Why no instance runs.
        cause: String,
    },
    /// The adapter was swapped out before the call ran: the caller retries on the new one.
    #[error("adapter `{adapter}` was swapped out")]
    Swapped {
        /// The adapter's name.
        adapter: String,
    },
}

/// What became of a call offered to a slot.
pub(crate) enum Attempt {
    /// It ran (or failed) on this slot.
    Ran(Result<(), GuestError>),
    /// This slot was swapped out: the call comes back, to be made on the new one.
    Swapped(GuestCall),
}

/// A call into the guest: an operation the host hands over, or an event it pushes.
pub(crate) enum GuestCall {
    Open {
        nsp: String,
    },
    Broadcast {
        nsp: String,
        packet: Vec<u8>,
        opts: BroadcastOpts,
    },
    BroadcastWithAck {
        nsp: String,
        id: u64,
        packet: Vec<u8>,
        opts: BroadcastOpts,
        timeout_ms: u32,
    },
    AddSockets {
        nsp: String,
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    DelSockets {
        nsp: String,
        opts: BroadcastOpts,
        rooms: Vec<String>,
    },
    DisconnectSockets {
        nsp: String,
        opts: BroadcastOpts,
        close: bool,
    },
    FetchSockets {
        nsp: String,
        id: u64,
        opts: BroadcastOpts,
    },
    AllRooms {
        nsp: String,
        id: u64,
        opts: BroadcastOpts,
    },
    ServerCount {
        nsp: String,
        id: u64,
    },
    ServerSideEmit {
        nsp: String,
        id: Option<u64>,
        data: Vec<u8>,
    },
    OnTimer {
        id: u64,
    },
    OnLocalAck {
        handle: u64,
        ack: Option<Vec<u8>>,
    },
    OnServerSideAck {
        handle: u64,
        data: Vec<u8>,
    },
    OnCounts {
        ticket: u64,
        counts: Result<Vec<u64>, WitError>,
    },
    OnConnection {
        up: bool,
    },
    OnRooms {
        nsp: String,
        rooms: Vec<String>,
    },
    OnMessage {
        channel: String,
        pattern: Option<String>,
        payload: Vec<u8>,
    },
    OnDocument {
        collection: String,
        document: Vec<u8>,
    },
}

/// Runs `call` on `live` under the deadline. One `match`, no boxed future: this is the
/// hot path of every relayed broadcast.
async fn invoke(live: &mut Live, call: GuestCall) -> wasmtime::Result<Result<(), WitError>> {
    begin_call(&mut live.store);
    let g = live.guest.wasio_adapter_guest();
    let s = &mut live.store;
    match call {
        GuestCall::Open { nsp } => g.call_open(s, &nsp).await,
        GuestCall::Broadcast { nsp, packet, opts } => {
            g.call_broadcast(s, &nsp, &packet, &opts).await
        }
        GuestCall::BroadcastWithAck {
            nsp,
            id,
            packet,
            opts,
            timeout_ms,
        } => {
            g.call_broadcast_with_ack(s, &nsp, id, &packet, &opts, timeout_ms)
                .await
        }
        GuestCall::AddSockets { nsp, opts, rooms } => {
            g.call_add_sockets(s, &nsp, &opts, &rooms).await
        }
        GuestCall::DelSockets { nsp, opts, rooms } => {
            g.call_del_sockets(s, &nsp, &opts, &rooms).await
        }
        GuestCall::DisconnectSockets { nsp, opts, close } => {
            g.call_disconnect_sockets(s, &nsp, &opts, close).await
        }
        GuestCall::FetchSockets { nsp, id, opts } => g.call_fetch_sockets(s, &nsp, id, &opts).await,
        GuestCall::AllRooms { nsp, id, opts } => g.call_all_rooms(s, &nsp, id, &opts).await,
        GuestCall::ServerCount { nsp, id } => g.call_server_count(s, &nsp, id).await,
        GuestCall::ServerSideEmit { nsp, id, data } => {
            g.call_server_side_emit(s, &nsp, id, &data).await
        }
        GuestCall::OnTimer { id } => g.call_on_timer(s, id).await.map(Ok),
        GuestCall::OnLocalAck { handle, ack } => {
            g.call_on_local_ack(s, handle, ack.as_deref()).await.map(Ok)
        }
        GuestCall::OnServerSideAck { handle, data } => {
            g.call_on_server_side_ack(s, handle, &data).await.map(Ok)
        }
        GuestCall::OnCounts { ticket, counts } => g
            .call_on_counts(s, ticket, counts.as_ref().map(Vec::as_slice))
            .await
            .map(Ok),
        GuestCall::OnConnection { up } => g.call_on_connection(s, up).await.map(Ok),
        GuestCall::OnRooms { nsp, rooms } => g.call_on_rooms(s, &nsp, &rooms).await.map(Ok),
        GuestCall::OnMessage {
            channel,
            pattern,
            payload,
        } => {
            g.call_on_message(s, &channel, pattern.as_deref(), &payload)
                .await
        }
        GuestCall::OnDocument {
            collection,
            document,
        } => g.call_on_document(s, &collection, &document).await,
    }
}

struct Live {
    store: Store<HostState>,
    guest: Host,
}

/// The adapter instance serving this node; calls are serialized on it.
pub(crate) struct GuestSlot {
    component: Arc<AdapterComponent>,
    node: Arc<NodeState>,
    limits: Limits,
    options: String,
    links: Links,
    request_timeout: Duration,
    /// Set when swapped out (see `HostState::muted`).
    muted: Arc<AtomicBool>,
    info: AdapterInfo,
    /// This adapter's datasource traffic counters.
    traffic: Arc<Traffic>,
    generation: AtomicU64,
    /// Set by `close`: a closed slot is never brought back.
    closed: AtomicBool,
    live: Mutex<Option<Live>>,
}

impl GuestSlot {
    /// Instantiates `component`, runs its `init` and opens `namespaces` (those alive,
    /// when swapped in); an error refuses the adapter.
    pub(crate) async fn start(
        component: Arc<AdapterComponent>,
        node: Arc<NodeState>,
        setup: SlotSetup,
        namespaces: &[String],
    ) -> Result<GuestSlot, GuestError> {
        let SlotSetup {
            limits,
            options,
            links,
            request_timeout,
        } = setup;
        let generation = node.next_generation();
        let muted = Arc::new(AtomicBool::new(false));
        let made = Made {
            component: &component,
            node: &node,
            limits,
            options: &options,
            links: &links,
            muted: &muted,
        };
        let started = instantiate(&made, generation, namespaces).await;
        let (live, info) = match started {
            Ok(ok) => ok,
            Err(e) => {
                // Timers it may have started die with it.
                node.instance_retired(generation);
                return Err(e);
            }
        };
        let traffic = node.metrics.traffic(&traffic_label(&info));
        Ok(GuestSlot {
            component,
            node,
            limits,
            options,
            links,
            request_timeout,
            muted,
            traffic,
            info,
            generation: AtomicU64::new(generation),
            closed: AtomicBool::new(false),
            live: Mutex::new(Some(live)),
        })
    }

    /// What the guest's `init` said about itself.
    pub(crate) fn info(&self) -> &AdapterInfo {
        &self.info
    }

    pub(crate) fn node(&self) -> &Arc<NodeState> {
        &self.node
    }

    /// This adapter's datasource traffic counters.
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The component this slot runs.
    pub(crate) fn component(&self) -> &AdapterComponent {
        &self.component
    }

    /// The datasource links this adapter uses.
    pub(crate) fn links(&self) -> &Links {
        &self.links
    }

    /// How long the guest is given to answer a cluster request.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The instantiation currently live; events of older ones are stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Runs `call` on the live instance under the deadline. A fault replaces the
    /// instance. A swapped-out adapter refuses with `Swapped`.
    pub(crate) async fn call(&self, op: &'static str, call: GuestCall) -> Result<(), GuestError> {
        match self.try_call(op, call, false).await {
            Attempt::Ran(res) => res,
            Attempt::Swapped(_) => Err(GuestError::Swapped {
                adapter: self.info.name.clone(),
            }),
        }
    }

    /// `call`, but a swapped-out adapter hands the call back (to be made on the new
    /// one) unless `draining` says it is meant for the old one, muted.
    pub(crate) async fn try_call(
        &self,
        op: &'static str,
        call: GuestCall,
        draining: bool,
    ) -> Attempt {
        let mut guard = self.live.lock().await;
        if !draining && self.muted.load(Ordering::Acquire) {
            return Attempt::Swapped(call);
        }
        Attempt::Ran(self.run_call(&mut guard, op, call).await)
    }

    async fn run_call(
        &self,
        guard: &mut Option<Live>,
        op: &'static str,
        call: GuestCall,
    ) -> Result<(), GuestError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(GuestError::Unavailable {
                adapter: self.info.name.clone(),
                cause: "adapter closed".into(),
            });
        }
        if guard.is_none() {
            *guard = Some(self.reinstantiate().await?);
        }
        let live = guard.as_mut().expect("instance present");
        let began = std::time::Instant::now();
        let outcome = invoke(live, call).await;
        self.node.metrics.record_call(op, began.elapsed());
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(GuestError::Refused {
                adapter: self.info.name.clone(),
                op,
                error,
            }),
            Err(e) => {
                let cause = fault_cause(&e);
                self.node.metrics.record_fault(&e);
                self.node.output.fault();
                tracing::error!(adapter = %self.info.name, op, %cause, trace = %backtrace(&e), "guest stopped; re-instantiating");
                *guard = None;
                self.node.instance_gone(
                    self.generation(),
                    "adapter instance was restarted after a fault",
                );
                match self.reinstantiate().await {
                    Ok(live) => *guard = Some(live),
                    Err(e) => {
                        tracing::error!(adapter = %self.info.name, "re-instantiation failed: {e}")
                    }
                }
                Err(GuestError::Fault {
                    adapter: self.info.name.clone(),
                    op,
                    cause,
                })
            }
        }
    }

    /// Calls `close` and drops the instance; the slot serves nothing afterwards.
    pub(crate) async fn close(&self) {
        let mut guard = self.live.lock().await;
        self.closed.store(true, Ordering::Release);
        if let Some(live) = guard.as_mut() {
            match run(live, |g, s| Box::pin(g.wasio_adapter_guest().call_close(s))).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(adapter = %self.info.name, "close: {}", describe(&e)),
                Err(e) => {
                    tracing::warn!(adapter = %self.info.name, "close trapped: {}", fault_cause(&e))
                }
            }
        }
        *guard = None;
        self.node.instance_gone(self.generation(), "adapter closed");
    }

    /// Swaps this adapter out: waits for the call in progress, mutes it (a caller that
    /// reaches it later retries on the new one) and runs `switch`, before any other call
    /// can start on it, so calls on the old adapter all finish before the new one's begin.
    pub(crate) async fn mute_then(&self, switch: impl FnOnce()) {
        let _guard = self.live.lock().await;
        self.muted.store(true, Ordering::Release);
        switch();
    }

    /// Drops a swapped-out adapter without its `close`: the node stays in the cluster,
    /// under the same id, with the new adapter.
    pub(crate) async fn retire(&self) {
        let mut guard = self.live.lock().await;
        self.closed.store(true, Ordering::Release);
        *guard = None;
        self.node.instance_retired(self.generation());
    }

    /// What the live instance subscribed to.
    pub(crate) async fn topics(&self) -> BTreeSet<Topic> {
        let guard = self.live.lock().await;
        guard
            .as_ref()
            .map(|l| l.store.data().topics.clone())
            .unwrap_or_default()
    }

    async fn reinstantiate(&self) -> Result<Live, GuestError> {
        let generation = self.node.next_generation();
        self.generation.store(generation, Ordering::Release);
        self.node
            .metrics
            .reinstantiations
            .fetch_add(1, Ordering::Relaxed);
        let namespaces = self.node.namespaces.names();
        let made = Made {
            component: &self.component,
            node: &self.node,
            limits: self.limits,
            options: &self.options,
            links: &self.links,
            muted: &self.muted,
        };
        let (live, _) = instantiate(&made, generation, &namespaces).await?;
        tracing::info!(adapter = %self.info.name, namespaces = namespaces.len(), "guest re-instantiated");
        Ok(live)
    }
}

/// How a slot's instances are made, besides the component.
pub(crate) struct SlotSetup {
    pub limits: Limits,
    /// The guest's options (JSON) for `init`.
    pub options: String,
    pub links: Links,
    pub request_timeout: Duration,
}

/// What every instance of one slot is made from.
struct Made<'a> {
    component: &'a AdapterComponent,
    node: &'a Arc<NodeState>,
    limits: Limits,
    options: &'a str,
    links: &'a Links,
    muted: &'a Arc<AtomicBool>,
}

/// A new instance with `init` run and `open` replayed for each of `namespaces`.
async fn instantiate(
    made: &Made<'_>,
    generation: u64,
    namespaces: &[String],
) -> Result<(Live, AdapterInfo), GuestError> {
    let Made {
        component,
        node,
        limits,
        options,
        links,
        muted,
    } = *made;
    let unavailable = |cause: String| GuestError::Unavailable {
        adapter: component.source.clone(),
        cause,
    };
    let engine = crate::runtime::engine().map_err(|e| unavailable(e.to_string()))?;
    let state = HostState::new(
        node.clone(),
        limits,
        generation,
        links.clone(),
        muted.clone(),
    );
    let mut store = crate::runtime::store(engine, state);
    begin_call(&mut store);
    let guest = component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| unavailable(format!("instantiation failed: {}", fault_cause(&e))))?;
    let mut live = Live { store, guest };
    let args = InitArgs {
        node_id: node.node_id.clone(),
        options: options.to_string(),
    };
    let init = run(&mut live, move |g, s| {
        Box::pin(async move { g.wasio_adapter_guest().call_init(s, &args).await })
    });
    let info = match init.await {
        Ok(Ok(info)) => info,
        Ok(Err(e)) => return Err(unavailable(format!("init refused: {}", describe(&e)))),
        Err(e) => return Err(unavailable(format!("init failed: {}", fault_cause(&e)))),
    };
    live.store.data_mut().traffic = node.metrics.traffic(&traffic_label(&info));
    for nsp in namespaces {
        match invoke(&mut live, GuestCall::Open { nsp: nsp.clone() }).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(unavailable(format!(
                    "open({nsp}) refused: {}",
                    describe(&e)
                )));
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "open({nsp}) failed: {}",
                    fault_cause(&e)
                )));
            }
        }
    }
    Ok((live, info))
}

async fn run<R>(
    live: &mut Live,
    f: impl for<'a> FnOnce(&'a Host, &'a mut Store<HostState>) -> BoxFuture<'a, wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    begin_call(&mut live.store);
    f(&live.guest, &mut live.store).await
}

/// How an adapter is named in the traffic counters.
pub(crate) fn traffic_label(info: &AdapterInfo) -> String {
    format!("{}@{}", info.name, info.version)
}
