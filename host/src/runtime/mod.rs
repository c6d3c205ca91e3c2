//! The one place that builds wasmtime's `Engine`, `Linker` and `Store`s, compiles
//! adapter components, checks them against the contract and sets the limits.

pub(crate) mod bindings;
mod guest;
mod load;

pub(crate) use bindings::{
    AdapterHost as Host, AdapterHostPre as HostPre, InitArgs, PACKAGE, VERSION,
};
pub use bindings::{AdapterInfo, BroadcastFlags, BroadcastOpts, SocketInfo, WitError};
pub(crate) use guest::GuestCall;
pub use guest::{GuestError, GuestSlot, SlotSetup, describe};
pub(crate) use load::compatible;
pub use load::{AdapterComponent, Capability};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::{GuestOutput, Links, Shared};
use crate::datasource::redis::Topic;

/// How often the epoch ticker advances; a looping guest is checked this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Epoch ticks since start, kept beside the engine's epoch so that starting a call
/// costs an atomic load rather than a clock read.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Per-instance limits, set on every store.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock budget of one guest call; a guest still running then is stopped.
    pub deadline: Duration,
    /// Linear-memory cap per instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
        }
    }
}

/// The engine and linker, shared by every adapter this process loads.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
}

impl Runtime {
    /// The process-wide runtime (compiled code is tied to its engine).
    pub fn global() -> anyhow::Result<&'static Runtime> {
        static RUNTIME: OnceLock<Runtime> = OnceLock::new();
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let rt = Runtime::new()?;
        Ok(RUNTIME.get_or_init(|| rt))
    }

    fn new() -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Only guests built for the component-model async ABI need this, and it doubles
        // the cost of every call (measured: 300 -> 640 ns).
        config.concurrency_support(false);
        let engine = Engine::new(&config)?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        Ok(Runtime { engine, linker })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// A fresh store for one instance: sandboxed WASI, the limits, the deadline hook.
    pub(crate) fn store(
        &self,
        shared: Arc<Shared>,
        limits: Limits,
        generation: u64,
        links: Links,
        muted: Arc<AtomicBool>,
    ) -> Store<HostState> {
        // No preopens, no environment, no arguments, no network: the default context
        // with TCP, UDP and name lookup explicitly off. Output goes to the host's log.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(GuestOutput::new(shared.clone(), "stdout"))
            .stderr(GuestOutput::new(shared.clone(), "stderr"))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            shared,
            limits,
            generation,
            links,
            muted,
            topics: BTreeSet::new(),
            call_started: TICKS.load(Ordering::Relaxed),
            memory: 0,
            traffic: Arc::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            // More whole ticks than the deadline holds: stopped between the deadline and
            // one tick after it, never before.
            let elapsed = EPOCH_TICK * (TICKS.load(Ordering::Relaxed) - state.call_started) as u32;
            if elapsed > state.limits.deadline {
                Err(wasmtime::Error::new(Stop::Deadline(state.limits.deadline)))
            } else {
                // Give the tokio worker back between ticks: a slow guest call never
                // holds a reactor thread for more than one tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasio-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                TICKS.fetch_add(1, Ordering::Relaxed);
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker thread");
}

/// Why the host stopped a guest call.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error("call exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error("instance tried to grow its memory to {wanted} bytes, over the cap of {cap} bytes")]
    Memory { wanted: usize, cap: usize },
}

/// The data of one instance's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Node state that outlives instances (namespaces, pending requests, timers).
    pub(crate) shared: Arc<Shared>,
    limits: Limits,
    /// Which instantiation this is; events of older ones are ignored.
    pub(crate) generation: u64,
    /// The datasource links this adapter was given.
    pub(crate) links: Links,
    /// Set once the adapter is swapped out: while it drains (finishes the cluster
    /// requests it was answering) its actions on sockets and the backend do nothing,
    /// as the new adapter does them.
    pub(crate) muted: Arc<AtomicBool>,
    /// What this instance subscribed to, so a swap can drop what no one needs.
    pub(crate) topics: BTreeSet<Topic>,
    /// `TICKS` when the current call began.
    call_started: u64,
    /// Linear memory of this instance, all memories together, in bytes.
    memory: usize,
    /// Where this adapter's datasource traffic is counted (set once `init` named it).
    pub(crate) traffic: Arc<crate::metrics::Traffic>,
}

impl HostState {
    /// Whether this adapter was swapped out (its effects are muted).
    pub(crate) fn muted(&self) -> bool {
        self.muted.load(Ordering::Acquire)
    }

    pub(crate) fn begin_call(&mut self) {
        self.call_started = TICKS.load(Ordering::Relaxed);
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

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            // An error (not `Ok(false)`) traps at once: the guest gets no chance to
            // limp on in an out-of-memory path.
            return Err(wasmtime::Error::new(Stop::Memory {
                wanted: desired,
                cap: self.limits.memory_bytes,
            }));
        }
        // Also called for a memory's initial size, so the sum is the whole footprint.
        self.memory += desired.saturating_sub(current);
        self.shared
            .metrics
            .guest_memory_bytes
            .store(self.memory as u64, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
