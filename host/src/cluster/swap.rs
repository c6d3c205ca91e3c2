//! Hot swap: replacing the running adapter component without a restart, a reconnect or
//! a lost message. The new component is compiled, instantiated, `init`ed, its namespaces
//! opened and its datasource reached while the old one serves; then the dispatcher
//! (`dispatch.rs`) switches at one point of the event queue, so every message from the
//! backend goes to exactly one of them. The old instance drains (finishes the cluster
//! requests it was answering, its socket and backend actions muted) and is dropped; its
//! component is kept for rollback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::adapter::{Adapter, slot_setup};
use super::component::AdapterComponent;
use super::dispatch::Control;
use super::guest::GuestSlot;
use crate::config::AdapterOptions;
use crate::datasource::Links;

/// One component, as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentSummary {
    /// What the guest's `init` said: its name.
    pub name: String,
    /// What the guest's `init` said: its version.
    pub version: String,
    /// Where it came from: `builtin:NAME`, a path, or `upload:FILE`.
    pub source: String,
    /// Hex sha256 of its `.wasm` bytes.
    pub sha256: String,
    /// The datasource it runs on, by name, if any.
    pub datasource: Option<String>,
}

/// What a swap did, and how long it took.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    /// The adapter swapped out.
    pub from: ComponentSummary,
    /// The adapter swapped in.
    pub to: ComponentSummary,
    /// Compile, instantiate, init, open namespaces, reach the datasource (old serving).
    pub prepare_ms: f64,
    /// From the switch being queued to the dispatcher switching.
    pub switch_ms: f64,
    /// From the request to switched.
    pub total_ms: f64,
}

/// The running adapter, for `GET /admin/adapter`.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterStatus {
    /// The running component.
    #[serde(flatten)]
    pub current: ComponentSummary,
    /// When the running component was switched in (Unix milliseconds).
    pub loaded_at_ms: u64,
    /// Swaps done since start (rollbacks included).
    pub swaps: u64,
    /// Swaps refused since start.
    pub failed_swaps: u64,
    /// Why the last refused swap was refused, if any was.
    pub last_error: Option<String>,
    /// The component kept for rollback.
    pub previous: Option<ComponentSummary>,
}

/// Why a swap was refused. The old adapter keeps serving in every case.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The component or its options: not a component, the wrong contract, `init` refused.
    #[error("{0}")]
    Invalid(String),
    /// Its datasource could not be reached.
    #[error("{0}")]
    Datasource(String),
    /// Rollback with nothing to roll back to.
    #[error("no previous adapter to roll back to")]
    NoPrevious,
}

/// What the swap machinery keeps: the gate swaps pass one at a time, the running and
/// the previous adapter's recipes, and the counters.
pub(crate) struct SwapState {
    /// Held for a whole swap, with the drain of the adapter swapped out before it.
    gate: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    book: Mutex<Book>,
}

/// How an adapter was made, to make it again (rollback).
#[derive(Clone)]
struct Recipe {
    opts: AdapterOptions,
    component: Arc<AdapterComponent>,
    summary: Option<ComponentSummary>,
}

struct Book {
    current: Recipe,
    previous: Option<Recipe>,
    loaded_at_ms: u64,
    swaps: u64,
    failed: u64,
    last_error: Option<String>,
}

impl SwapState {
    pub(crate) fn new(opts: AdapterOptions, component: Arc<AdapterComponent>) -> SwapState {
        SwapState {
            gate: tokio::sync::Mutex::new(None),
            book: Mutex::new(Book {
                current: Recipe {
                    opts,
                    component,
                    summary: None,
                },
                previous: None,
                loaded_at_ms: now_ms(),
                swaps: 0,
                failed: 0,
                last_error: None,
            }),
        }
    }

    /// Waits for a swap in progress (and its drain); holding the guard keeps others out.
    pub(crate) async fn close_gate(&self) -> tokio::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        let mut gate = self.gate.lock().await;
        if let Some(drain) = gate.take() {
            let _ = drain.await;
        }
        gate
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(slot: &GuestSlot) -> ComponentSummary {
    let info = slot.info();
    ComponentSummary {
        name: info.name.clone(),
        version: info.version.clone(),
        source: slot.component().source.clone(),
        sha256: slot.component().sha256.clone(),
        datasource: slot.links().name(),
    }
}

impl Adapter {
    /// Replaces the running adapter with the one `opts` describes; returns once
    /// switched. Concurrent swaps run one after the other. On any error the running
    /// adapter keeps serving.
    pub async fn swap(&self, opts: AdapterOptions) -> Result<SwapReport, SwapError> {
        self.swap_to(opts, None).await
    }

    /// Swaps back to the component that ran before the last swap (kept compiled).
    pub async fn rollback(&self) -> Result<SwapReport, SwapError> {
        let previous = self.0.swap.book.lock().unwrap().previous.clone();
        let Some(previous) = previous else {
            return Err(SwapError::NoPrevious);
        };
        self.swap_to(previous.opts, Some(previous.component)).await
    }

    /// The options the running adapter was made from (a rollback swaps to the previous
    /// one's, kept beside them).
    pub(crate) fn running_options(&self) -> AdapterOptions {
        self.0.swap.book.lock().unwrap().current.opts.clone()
    }

    /// The running adapter, the swaps so far and the one kept for rollback.
    pub fn status(&self) -> AdapterStatus {
        let current = summary(&self.0.slot.load());
        let book = self.0.swap.book.lock().unwrap();
        AdapterStatus {
            current,
            loaded_at_ms: book.loaded_at_ms,
            swaps: book.swaps,
            failed_swaps: book.failed,
            last_error: book.last_error.clone(),
            previous: book.previous.as_ref().and_then(|p| p.summary.clone()),
        }
    }

    async fn swap_to(
        &self,
        opts: AdapterOptions,
        compiled: Option<Arc<AdapterComponent>>,
    ) -> Result<SwapReport, SwapError> {
        let started = Instant::now();
        let mut gate = self.0.swap.close_gate().await;
        let res = self.prepare_and_switch(&opts, compiled, started).await;
        let mut book = self.0.swap.book.lock().unwrap();
        match res {
            Ok((report, component, drain)) => {
                *gate = Some(drain);
                let current = std::mem::replace(
                    &mut book.current,
                    Recipe {
                        opts,
                        component,
                        summary: None,
                    },
                );
                book.previous = Some(Recipe {
                    summary: Some(report.from.clone()),
                    ..current
                });
                book.loaded_at_ms = now_ms();
                book.swaps += 1;
                self.metrics()
                    .swaps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    from = %format!("{} {}", report.from.name, report.from.version),
                    to = %format!("{} {} ({})", report.to.name, report.to.version, report.to.source),
                    total_ms = report.total_ms,
                    "adapter swapped"
                );
                Ok(report)
            }
            Err(e) => {
                book.failed += 1;
                book.last_error = Some(e.to_string());
                self.metrics()
                    .failed_swaps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("swap refused, the running adapter keeps serving: {e}");
                Err(e)
            }
        }
    }

    /// Makes the new adapter ready while the old one serves, then switches.
    async fn prepare_and_switch(
        &self,
        opts: &AdapterOptions,
        compiled: Option<Arc<AdapterComponent>>,
        started: Instant,
    ) -> Result<(SwapReport, Arc<AdapterComponent>, JoinHandle<()>), SwapError> {
        let node = self.node().clone();
        let queue = &self.0.queue;
        let component = match compiled {
            Some(c) => c,
            None => Arc::new(
                AdapterComponent::load(&opts.source, &opts.granted)
                    .await
                    .map_err(|e| SwapError::Invalid(format!("{e:#}")))?,
            ),
        };
        let current = self.0.slot.load_full();
        let links = Links::connect(opts.datasource.as_ref(), current.links(), node.link_sink())
            .await
            .map_err(|e| SwapError::Datasource(format!("{e:#}")))?;
        // Events of the new adapter (its links, its timers) wait until it takes over.
        queue.control(Control::Prepare {
            links: links.ids(),
            after_generation: current.generation(),
        });
        let refuse = |links: Links, current: &GuestSlot| {
            queue.control(Control::Abort);
            tokio::spawn(links.not_in(current.links()).close());
        };
        let setup = match slot_setup(opts, links.clone()) {
            Ok(s) => s,
            Err(e) => {
                refuse(links, &current);
                return Err(SwapError::Invalid(format!("{e:#}")));
            }
        };
        let namespaces = node.namespaces.names();
        let slot = match GuestSlot::start(component.clone(), node.clone(), setup, &namespaces).await
        {
            Ok(slot) => Arc::new(slot),
            Err(e) => {
                refuse(links, &current);
                return Err(SwapError::Invalid(e.to_string()));
            }
        };
        // Its subscriptions are in place before it serves: a message published after the
        // swap returns reaches it.
        if let Some(link) = &links.pubsub
            && !link.settled(SETTLE).await
        {
            tracing::warn!(
                "the new adapter's subscriptions are not confirmed after {SETTLE:?}; switching anyway"
            );
        }
        let prepared = Instant::now();
        let (done, switched) = oneshot::channel();
        queue.control(Control::Switch {
            slot: slot.clone(),
            done,
        });
        let Ok(switched) = switched.await else {
            return Err(SwapError::Invalid("the node is shutting down".into()));
        };
        let end = Instant::now();
        *node.adapter_name.write().unwrap() = slot.info().name.clone();
        let drain = {
            let (node, queue) = (node.clone(), queue.clone());
            let deadline = current.request_timeout() + self.request_grace();
            let (ids, generation) = (switched.drain, switched.old_generation);
            tokio::spawn(async move {
                // The old adapter finishes the requests it was answering, or they fail.
                let until = Instant::now() + deadline;
                while node.requests.any_open(&ids) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                queue.control(Control::Retire { generation });
            })
        };
        let report = SwapReport {
            from: summary(&current),
            to: summary(&slot),
            prepare_ms: ms(prepared - started),
            switch_ms: ms(end - prepared),
            total_ms: ms(end - started),
        };
        Ok((report, component, drain))
    }
}

/// How long a swap waits for the new adapter's subscriptions to be confirmed.
const SETTLE: Duration = Duration::from_secs(5);
