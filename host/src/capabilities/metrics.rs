//! The node's counters: guest faults and swaps (on `/healthz`), guest call latency
//! and datasource traffic per adapter (on `/metrics`, rendered by `serve::prometheus`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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
    /// Cluster requests the guest never finished (`requests.finish`): the host's
    /// deadline ended them with what had arrived.
    pub abandoned_requests: AtomicU64,
    /// Linear memory of the instance that last grew (the serving one, in practice).
    pub guest_memory_bytes: Arc<AtomicU64>,
    /// Latency of guest calls, by operation (`broadcast`, `on-message`, ...).
    calls: RwLock<BTreeMap<&'static str, Arc<Histogram>>>,
    /// Datasource traffic, by adapter (`NAME@VERSION`): kept across swaps, so a rate
    /// over a swap stays right.
    traffic: RwLock<BTreeMap<String, Arc<Traffic>>>,
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

    /// Records that a guest call of `op` took `took`.
    pub(crate) fn record_call(&self, op: &'static str, took: Duration) {
        if let Some(h) = self.calls.read().unwrap().get(op) {
            return h.record(took);
        }
        let h = self.calls.write().unwrap().entry(op).or_default().clone();
        h.record(took);
    }

    /// The call latency histograms, by operation.
    pub fn calls(&self) -> Vec<(&'static str, Arc<Histogram>)> {
        let map = self.calls.read().unwrap();
        map.iter().map(|(op, h)| (*op, h.clone())).collect()
    }

    /// The traffic counters of adapter `label`, made on first use.
    pub(crate) fn traffic(&self, label: &str) -> Arc<Traffic> {
        if let Some(t) = self.traffic.read().unwrap().get(label) {
            return t.clone();
        }
        let mut map = self.traffic.write().unwrap();
        map.entry(label.to_string()).or_default().clone()
    }

    /// Every adapter's traffic counters, by `NAME@VERSION`.
    pub fn traffic_by_adapter(&self) -> Vec<(String, Arc<Traffic>)> {
        let map = self.traffic.read().unwrap();
        map.iter().map(|(k, t)| (k.clone(), t.clone())).collect()
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
            "abandoned_requests": get(&self.abandoned_requests),
            "guest_memory_bytes": get(&self.guest_memory_bytes),
        })
    }
}

/// Upper bounds of the guest call latency buckets, in microseconds: a relay call takes
/// about 1-10 µs, a fault or a slow guest runs into the deadline (100 ms by default).
const CALL_BUCKETS_US: [u64; 14] = [
    2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 25_000, 100_000, 1_000_000,
];

/// A latency histogram with fixed buckets, lock-free to record.
#[derive(Default, Debug)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; CALL_BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one call that took `took`.
    pub fn record(&self, took: Duration) {
        let us = took.as_micros() as u64;
        let i = CALL_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Time recorded, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
    }

    /// `(upper bound in seconds, cumulative count)`, `+Inf` last as `f64::INFINITY`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let bounds = CALL_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain([f64::INFINITY]);
        bounds
            .zip(&self.buckets)
            .map(|(le, n)| {
                acc += n.load(Ordering::Relaxed);
                (le, acc)
            })
            .collect()
    }
}

/// Messages one adapter exchanged with its datasource.
#[derive(Default, Debug)]
pub struct Traffic {
    /// Messages (or documents) the backend delivered to the guest.
    pub messages_in: AtomicU64,
    /// Messages (or documents) the guest handed to the datasource.
    pub messages_out: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        for us in [1, 2, 3, 100, 2_000_000] {
            h.record(Duration::from_micros(us));
        }
        let c = h.cumulative();
        assert_eq!(c[0], (2e-6, 2), "1 µs and 2 µs are <= 2 µs");
        assert_eq!(c[1], (5e-6, 3));
        let at_100us = c.iter().find(|(le, _)| *le == 1e-4).unwrap();
        assert_eq!(at_100us.1, 4);
        assert_eq!(c.last().unwrap(), &(f64::INFINITY, 5));
        assert_eq!(h.count(), 5);
        assert!((h.sum_seconds() - 2.000106).abs() < 1e-9);
    }

    #[test]
    fn traffic_is_kept_per_adapter() {
        let m = Metrics::default();
        m.traffic("redis@0.1.0")
            .messages_out
            .fetch_add(2, Ordering::Relaxed);
        m.traffic("redis@0.1.0")
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        m.traffic("local@0.1.0");
        let all = m.traffic_by_adapter();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].0, "redis@0.1.0");
        assert_eq!(all[1].1.messages_out.load(Ordering::Relaxed), 3);
    }
}
