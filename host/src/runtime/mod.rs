//! The one place that builds wasmtime's `Engine` and `Store`s: the engine and its epoch
//! ticker, compiled components (cached), the contract check, and the limits every store
//! is given. It knows nothing of what the host gives a guest (`capabilities`).

pub(crate) mod bindings;
mod builtin;
mod compile;
mod contract;

pub use bindings::SocketInfo;
pub(crate) use bindings::{AdapterInfo, PACKAGE, VERSION, WitError, describe};
pub(crate) use builtin::{builtin, sha256_hex};
pub(crate) use compile::{compile, compile_unchecked};
pub use contract::Finding;
pub(crate) use contract::inspect;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};

use crate::config::Limits;

/// How often the epoch ticker advances; a looping guest is checked this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Epoch ticks since start, kept beside the engine's epoch so that starting a call
/// costs an atomic load rather than a clock read.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// The process-wide engine (compiled code is tied to it).
pub(crate) fn engine() -> anyhow::Result<&'static Engine> {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    if let Some(e) = ENGINE.get() {
        return Ok(e);
    }
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Only guests built for the component-model async ABI need this, and it doubles
    // the cost of every call (measured: 300 -> 640 ns).
    config.concurrency_support(false);
    let engine = Engine::new(&config)?;
    let engine = ENGINE.get_or_init(|| engine);
    static TICKER: std::sync::Once = std::sync::Once::new();
    TICKER.call_once(|| spawn_epoch_ticker(engine));
    Ok(engine)
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
pub(crate) enum Stop {
    #[error("call exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error("instance tried to grow its memory to {wanted} bytes, over the cap of {cap} bytes")]
    Memory { wanted: usize, cap: usize },
}

/// The limits of one store, and what they measured: the deadline of the call running
/// now and the instance's memory.
pub(crate) struct Guard {
    limits: Limits,
    /// `TICKS` when the current call began.
    call_started: u64,
    /// Linear memory of this instance, all memories together, in bytes.
    memory: usize,
    /// Where the memory is shown (`/healthz`, `/metrics`).
    gauge: Arc<AtomicU64>,
}

impl Guard {
    pub(crate) fn new(limits: Limits, gauge: Arc<AtomicU64>) -> Guard {
        Guard {
            limits,
            call_started: TICKS.load(Ordering::Relaxed),
            memory: 0,
            gauge,
        }
    }

    /// Starts the deadline of a call.
    pub(crate) fn begin_call(&mut self) {
        self.call_started = TICKS.load(Ordering::Relaxed);
    }
}

/// Store data that carries a [`Guard`].
pub(crate) trait Guarded: Send + 'static {
    fn guard(&self) -> &Guard;
    fn guard_mut(&mut self) -> &mut Guard;
}

/// A fresh store for one instance, its limits and deadline hook set.
pub(crate) fn store<T: Guarded>(engine: &Engine, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|s| s.guard_mut() as &mut dyn ResourceLimiter);
    store.epoch_deadline_callback(|ctx| {
        let guard = ctx.data().guard();
        // More whole ticks than the deadline holds: stopped between the deadline and
        // one tick after it, never before.
        let elapsed = EPOCH_TICK * (TICKS.load(Ordering::Relaxed) - guard.call_started) as u32;
        if elapsed > guard.limits.deadline {
            Err(wasmtime::Error::new(Stop::Deadline(guard.limits.deadline)))
        } else {
            // Give the tokio worker back between ticks: a slow guest call never
            // holds a reactor thread for more than one tick.
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Starts a call on `store` under its deadline.
pub(crate) fn begin_call<T: Guarded>(store: &mut Store<T>) {
    store.data_mut().guard_mut().begin_call();
    store.set_epoch_deadline(1);
}

impl ResourceLimiter for Guard {
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
        self.gauge.store(self.memory as u64, Ordering::Relaxed);
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

/// One line saying why a call failed: our own stop reasons first, then the trap.
pub(crate) fn fault_cause(e: &wasmtime::Error) -> String {
    if let Some(stop) = e.downcast_ref::<Stop>() {
        return stop.to_string();
    }
    e.root_cause().to_string()
}

/// The guest's wasm backtrace, on one line, for the log.
pub(crate) fn backtrace(e: &wasmtime::Error) -> String {
    format!("{e:?}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(24)
        .collect::<Vec<_>>()
        .join(" | ")
}
