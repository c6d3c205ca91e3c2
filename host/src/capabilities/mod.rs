//! What the host gives a guest: the implementations of the contract's imports, the
//! store data they act on ([`HostState`]), and the node state that outlives any one
//! instance ([`NodeState`]). What the imports cause later (a timer firing, an ack, a
//! subscriber count) is pushed as an [`Event`] into the sink the node was given.

mod docstore;
mod errors;
mod log;
mod metrics;
mod node;
mod notify;
mod pubsub;
mod requests;
mod sockets;
mod stdio;
mod timers;

pub use metrics::{Histogram, Metrics, Traffic};
pub(crate) use node::{Events, NodeState};
pub use sockets::{
    LocalError, LocalNamespace, ServerSideEvent, ServerSideHandler, SocketInspector,
};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::Limits;
use crate::datasource::{LinkError, LinkEvent, Links, Topic};
use crate::runtime::bindings::{AdapterHost, AdapterHostPre};
use crate::runtime::{Guard, Guarded};

/// Something the host pushes into the guest, in order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A timer of instance `generation` fired.
    Timer { generation: u64, id: u64 },
    /// A local client's ack of a `sockets.broadcast-with-ack`, `None` when done.
    LocalAck {
        generation: u64,
        handle: u64,
        ack: Option<Vec<u8>>,
    },
    /// This node's server-side handler answered a `sockets.server-side-emit`.
    ServerSideAck {
        generation: u64,
        handle: u64,
        data: Vec<u8>,
    },
    /// Subscriber counts for `pubsub.count-subscribers`.
    Counts {
        generation: u64,
        ticket: u64,
        counts: Result<Vec<u64>, LinkError>,
    },
    /// Rooms of a watched namespace that exist on this node, some perhaps new: all of
    /// them for instance `generation` (it asked), or new ones for whoever serves now.
    Rooms {
        generation: Option<u64>,
        nsp: String,
        rooms: Vec<String>,
    },
    /// What a datasource link reported (a message, a document, its connection).
    Link(LinkEvent),
}

impl Event {
    /// The instance an event belongs to, for those that die with it.
    pub(crate) fn generation(&self) -> Option<u64> {
        match self {
            Event::Timer { generation, .. }
            | Event::LocalAck { generation, .. }
            | Event::ServerSideAck { generation, .. }
            | Event::Counts { generation, .. } => Some(*generation),
            Event::Rooms { generation, .. } => *generation,
            Event::Link(_) => None,
        }
    }

    /// The datasource link an event came from, for those that come from one.
    pub(crate) fn link(&self) -> Option<u64> {
        match self {
            Event::Link(e) => Some(e.link()),
            _ => None,
        }
    }
}

/// The data of one instance's `Store`: what its imports act on.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    guard: Guard,
    /// Node state that outlives instances (namespaces, pending requests, timers).
    pub(crate) node: Arc<NodeState>,
    /// Which instantiation this is; events of older ones are ignored.
    pub(crate) generation: u64,
    /// The datasource links this adapter was given.
    pub(crate) links: Links,
    /// Set once the adapter is swapped out: while it drains (finishes the cluster
    /// requests it was answering) its actions on sockets and the backend do nothing,
    /// as the new adapter does them.
    muted: Arc<AtomicBool>,
    /// What this instance subscribed to, so a swap can drop what no one needs.
    pub(crate) topics: BTreeSet<Topic>,
    /// Where this adapter's datasource traffic is counted (set once `init` named it).
    pub(crate) traffic: Arc<Traffic>,
}

impl HostState {
    /// The store data of instance `generation` of an adapter on `links`.
    pub(crate) fn new(
        node: Arc<NodeState>,
        limits: Limits,
        generation: u64,
        links: Links,
        muted: Arc<AtomicBool>,
    ) -> HostState {
        // No preopens, no environment, no arguments, no network: the default context
        // with TCP, UDP and name lookup explicitly off. Output goes to the host's log.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(stdio::GuestOutput::new(node.clone(), "stdout"))
            .stderr(stdio::GuestOutput::new(node.clone(), "stderr"))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            guard: Guard::new(limits, node.metrics.guest_memory_bytes.clone()),
            node,
            generation,
            links,
            muted,
            topics: BTreeSet::new(),
            traffic: Arc::default(),
        }
    }

    /// Whether this adapter was swapped out (its effects are muted).
    fn muted(&self) -> bool {
        self.muted.load(Ordering::Acquire)
    }
}

impl Guarded for HostState {
    fn guard(&self) -> &Guard {
        &self.guard
    }
    fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::runtime::bindings::wasio::adapter::types::Host for HostState {}

/// The linker every adapter is linked with: sandboxed WASI and our imports.
fn linker() -> anyhow::Result<&'static Linker<HostState>> {
    static LINKER: OnceLock<Linker<HostState>> = OnceLock::new();
    if let Some(l) = LINKER.get() {
        return Ok(l);
    }
    let mut linker = Linker::<HostState>::new(crate::runtime::engine()?);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    AdapterHost::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok(LINKER.get_or_init(|| linker))
}

/// `component` linked with this host's imports, ready to instantiate; errors name
/// `source`.
pub(crate) fn link(
    source: &str,
    component: &wasmtime::component::Component,
) -> anyhow::Result<AdapterHostPre<HostState>> {
    let pre = linker()?
        .instantiate_pre(component)
        .map_err(|e| anyhow::anyhow!("{source}: cannot link: {e}"))?;
    AdapterHostPre::new(pre).map_err(|e| anyhow::anyhow!("{source}: {e}"))
}
