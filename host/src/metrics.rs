//! Counters of what went wrong with guests, shown on `/healthz`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Stop;

/// Guest health counters for this node.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Guest calls that trapped (panics, unreachable, bad memory access).
    pub traps: AtomicU64,
    /// Guest calls stopped at their deadline.
    pub deadline_stops: AtomicU64,
    /// Guest calls stopped at the memory cap.
    pub memory_stops: AtomicU64,
    /// Fresh instances made after a fault.
    pub reinstantiations: AtomicU64,
    /// Operations the guest failed to relay to the cluster.
    pub relay_errors: AtomicU64,
    /// Incoming messages the guest refused (malformed or foreign).
    pub dropped_messages: AtomicU64,
    /// Adapters swapped in (rollbacks included).
    pub swaps: AtomicU64,
    /// Swaps refused (the running adapter kept serving).
    pub failed_swaps: AtomicU64,
    /// Linear memory of the instance that last grew (the serving one, in practice).
    pub guest_memory_bytes: AtomicU64,
}

impl Metrics {
    pub(crate) fn record_fault(&self, e: &wasmtime::Error) {
        let counter = match e.downcast_ref::<Stop>() {
            Some(Stop::Deadline(_)) => &self.deadline_stops,
            Some(Stop::Memory { .. }) => &self.memory_stops,
            None => &self.traps,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "traps": get(&self.traps),
            "deadline_stops": get(&self.deadline_stops),
            "memory_stops": get(&self.memory_stops),
            "reinstantiations": get(&self.reinstantiations),
            "relay_errors": get(&self.relay_errors),
            "dropped_messages": get(&self.dropped_messages),
            "swaps": get(&self.swaps),
            "failed_swaps": get(&self.failed_swaps),
            "guest_memory_bytes": get(&self.guest_memory_bytes),
        })
    }
}
