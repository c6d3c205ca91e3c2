//! `wasio:adapter/timers`: one-shot tokio timers whose firing becomes `guest.on-timer`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{Event, HostState};
use crate::runtime::bindings::wasio::adapter::timers::Host;

/// Pending timers, with the instance (generation) that started each.
#[derive(Default)]
pub(crate) struct Timers {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, (u64, AbortHandle)>>,
}

impl Timers {
    /// Cancels the timers of instance `generation` (others keep running: a swapped-in
    /// adapter's, while the old one is retired).
    pub(super) fn cancel_generation(&self, generation: u64) {
        self.pending.lock().unwrap().retain(|_, (g, t)| {
            if *g == generation {
                t.abort();
            }
            *g != generation
        });
    }
}

impl Host for HostState {
    fn start(&mut self, after_ms: u32) -> wasmtime::Result<u64> {
        let timers = &self.node.timers;
        let id = timers.next.fetch_add(1, Ordering::Relaxed) + 1;
        let node = self.node.clone();
        let generation = self.generation;
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_ms.into())).await;
            if node.timers.pending.lock().unwrap().remove(&id).is_some() {
                node.push(Event::Timer { generation, id });
            }
        });
        timers
            .pending
            .lock()
            .unwrap()
            .insert(id, (generation, task.abort_handle()));
        Ok(id)
    }

    fn cancel(&mut self, id: u64) -> wasmtime::Result<()> {
        if let Some((_, t)) = self.node.timers.pending.lock().unwrap().remove(&id) {
            t.abort();
        }
        Ok(())
    }
}
