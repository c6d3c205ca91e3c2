//! Hot swap: replacing the running adapter component without a restart, a reconnect or
//! a lost message. The new component is compiled, instantiated, `init`ed, its namespaces
//! opened and its datasource reached while the old one serves; then the dispatcher
//! switches at one point of the event queue, so every message from the backend goes to
//! exactly one of them. The old instance drains (finishes the cluster requests it was
//! answering, its socket and backend actions muted) and is dropped; it is kept for
//! rollback.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adapter::{Adapter, AdapterOptions, compile, connect_links, slot_setup};
use crate::capabilities::{Event, Links};
use crate::runtime::{AdapterComponent, GuestCall, GuestError, GuestSlot};

/// One component, as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentSummary {
    /// What the guest's `init` said: its name and version.
    pub name: String,
    pub version: String,
    /// Where it came from: `builtin:NAME`, a path, or `upload:FILE`.
    pub source: String,
    pub sha256: String,
    /// The datasource it runs on, by name, if any.
    pub datasource: Option<String>,
}

/// What a swap did, and how long it took.
#[derive(Clone, Debug, Serialize)]
pub struct SwapReport {
    pub from: ComponentSummary,
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
            Ok((report, component, drain, old)) => {
                *gate = drain;
                let current = std::mem::replace(
                    &mut book.current,
                    Recipe {
                        opts,
                        component,
                        summary: None,
                    },
                );
                book.previous = Some(Recipe {
                    summary: Some(old),
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
    ) -> Result<
        (
            SwapReport,
            Arc<AdapterComponent>,
            Option<JoinHandle<()>>,
            ComponentSummary,
        ),
        SwapError,
    > {
        let shared = self.shared().clone();
        let component = match compiled {
            Some(c) => c,
            None => Arc::new(
                compile(&opts.source, &opts.granted)
                    .await
                    .map_err(|e| SwapError::Invalid(format!("{e:#}")))?,
            ),
        };
        let current = self.0.slot.load_full();
        let links = connect_links(&shared, opts.datasource.as_ref(), current.links())
            .await
            .map_err(|e| SwapError::Datasource(format!("{e:#}")))?;
        // Events of the new adapter (its links, its timers) wait until it takes over.
        shared.push(Event::Swap(Control::Prepare {
            links: links.ids(),
            after_generation: current.generation(),
        }));
        let refuse = |links: Links, current: &GuestSlot| {
            shared.push(Event::Swap(Control::Abort));
            let own = Links {
                pubsub: links.pubsub.filter(|l| !current.links().has(l.id())),
                docstore: links.docstore.filter(|l| !current.links().has(l.id())),
            };
            tokio::spawn(own.close());
        };
        let setup = match slot_setup(opts, links.clone()) {
            Ok(s) => s,
            Err(e) => {
                refuse(links, &current);
                return Err(SwapError::Invalid(format!("{e:#}")));
            }
        };
        let namespaces = shared.namespace_names();
        let slot =
            match GuestSlot::start(component.clone(), shared.clone(), setup, &namespaces).await {
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
        shared.push(Event::Swap(Control::Switch {
            slot: slot.clone(),
            done,
        }));
        let Ok(switched) = switched.await else {
            return Err(SwapError::Invalid("the node is shutting down".into()));
        };
        let end = Instant::now();
        *shared.adapter_name.write().unwrap() = slot.info().name.clone();
        let drain = {
            let shared = shared.clone();
            let deadline = current.request_timeout() + self.request_grace();
            let (ids, generation) = (switched.drain, switched.old_generation);
            Some(tokio::spawn(async move {
                // The old adapter finishes the requests it was answering, or they fail.
                let until = Instant::now() + deadline;
                while shared.any_open(&ids) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                shared.push(Event::Swap(Control::Retire { generation }));
            }))
        };
        let report = SwapReport {
            from: summary(&current),
            to: summary(&slot),
            prepare_ms: ms(prepared - started),
            switch_ms: ms(end - prepared),
            total_ms: ms(end - started),
        };
        let old = report.from.clone();
        Ok((report, component, drain, old))
    }
}

/// How long a swap waits for the new adapter's subscriptions to be confirmed.
const SETTLE: Duration = Duration::from_secs(5);

/// Swap steps, pushed through the event queue so that they happen between events.
pub enum Control {
    /// A new adapter on `links` is being made; its events wait.
    Prepare {
        links: Vec<u64>,
        after_generation: u64,
    },
    /// `slot` takes over from here.
    Switch {
        slot: Arc<GuestSlot>,
        done: oneshot::Sender<Switched>,
    },
    /// The new adapter was refused: what waited for it is dropped.
    Abort,
    /// The old adapter `generation` is drained: drop it.
    Retire { generation: u64 },
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Prepare { links, .. } => write!(f, "Prepare({links:?})"),
            Control::Switch { slot, .. } => write!(f, "Switch({})", slot.info().name),
            Control::Abort => write!(f, "Abort"),
            Control::Retire { generation } => write!(f, "Retire({generation})"),
        }
    }
}

/// What the dispatcher did at the switch.
pub struct Switched {
    old_generation: u64,
    /// The requests open at the switch, which the old adapter drains.
    drain: Vec<u64>,
}

/// A swap being prepared: events for the new adapter, held until it takes over.
struct Preparing {
    links: Vec<u64>,
    after_generation: u64,
    held: Vec<Event>,
}

/// Pushes host events into the adapter serving now, one at a time, in order; during a
/// swap also into the old adapter while it drains (only what concerns it).
pub(crate) struct Dispatcher {
    slot: Arc<ArcSwap<GuestSlot>>,
    draining: Option<(Arc<GuestSlot>, Vec<u64>)>,
    preparing: Option<Preparing>,
}

impl Dispatcher {
    pub(crate) fn new(slot: Arc<ArcSwap<GuestSlot>>) -> Dispatcher {
        Dispatcher {
            slot,
            draining: None,
            preparing: None,
        }
    }

    pub(crate) async fn run(mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.recv().await {
            match event {
                Event::Swap(control) => self.control(control).await,
                event => self.route(event).await,
            }
        }
    }

    async fn control(&mut self, control: Control) {
        match control {
            Control::Prepare {
                links,
                after_generation,
            } => {
                self.preparing = Some(Preparing {
                    links,
                    after_generation,
                    held: Vec::new(),
                });
            }
            Control::Abort => self.preparing = None,
            Control::Switch { slot, done } => {
                let old = self.slot.load_full();
                let shared = old.shared().clone();
                // Calls in progress on the old adapter end first; later ones go to the new.
                old.mute_then(|| self.slot.store(slot.clone())).await;
                // The old adapter drains the requests open now, then is retired (in queue
                // order, before any later swap).
                let open = shared.open_requests();
                self.draining = Some((old.clone(), open.clone()));
                let _ = done.send(Switched {
                    old_generation: old.generation(),
                    drain: open,
                });
                // What came for the new adapter while it was being made, in order.
                if let Some(p) = self.preparing.take() {
                    for event in p.held {
                        self.route(event).await;
                    }
                }
            }
            Control::Retire { generation } => {
                if let Some((old, ids)) = self
                    .draining
                    .take_if(|(old, _)| old.generation() == generation)
                {
                    retire(old, self.slot.load_full(), ids).await;
                }
            }
        }
    }

    /// Hands `event` to the adapter(s) it concerns.
    async fn route(&mut self, event: Event) {
        let current = self.slot.load_full();
        let draining = self.draining.as_ref().map(|(d, _)| d.clone());
        let (to_current, to_draining) = match (event.generation(), event.link()) {
            (Some(g), _) => (
                g == current.generation(),
                draining.as_ref().is_some_and(|d| d.generation() == g),
            ),
            (None, Some(link)) => (
                current.links().has(link),
                draining.as_ref().is_some_and(|d| d.links().has(link)),
            ),
            (None, None) => (true, false),
        };
        if !to_current && !to_draining {
            if let Some(p) = &mut self.preparing {
                let theirs = match (event.generation(), event.link()) {
                    (Some(g), _) => g > p.after_generation,
                    (None, Some(link)) => p.links.contains(&link),
                    _ => false,
                };
                if theirs {
                    p.held.push(event);
                }
            }
            return;
        }
        let is_message = matches!(event, Event::Message { .. } | Event::Document { .. });
        if to_draining && let Some(old) = draining {
            // Muted: only its answers to the requests it was serving take effect.
            if !to_current {
                let (op, call) = guest_call(event);
                let _ = old.try_call(op, call, true).await;
                return;
            }
            if let Some(copy) = copy_of(&event) {
                let (op, call) = guest_call(copy);
                let _ = old.try_call(op, call, true).await;
            }
        }
        let (op, call) = guest_call(event);
        let res = current.call(op, call).await;
        if is_message && matches!(res, Err(GuestError::Refused { .. })) {
            // Malformed or foreign: dropped, and counted.
            current
                .shared()
                .metrics
                .dropped_messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = res {
            tracing::debug!("event not handled: {e}");
        }
    }
}

/// A copy of a backend event for the draining adapter (others are not shared).
fn copy_of(event: &Event) -> Option<Event> {
    match event {
        Event::Message {
            link,
            channel,
            pattern,
            payload,
        } => Some(Event::Message {
            link: *link,
            channel: channel.clone(),
            pattern: pattern.clone(),
            payload: payload.clone(),
        }),
        Event::Document {
            link,
            collection,
            document,
        } => Some(Event::Document {
            link: *link,
            collection: collection.clone(),
            document: document.clone(),
        }),
        _ => None,
    }
}

/// The guest call an event becomes.
fn guest_call(event: Event) -> (&'static str, GuestCall) {
    match event {
        Event::Timer { id, .. } => ("on-timer", GuestCall::OnTimer { id }),
        Event::LocalAck { handle, ack, .. } => {
            ("on-local-ack", GuestCall::OnLocalAck { handle, ack })
        }
        Event::ServerSideAck { handle, data, .. } => (
            "on-server-side-ack",
            GuestCall::OnServerSideAck { handle, data },
        ),
        Event::Counts { ticket, counts, .. } => (
            "on-counts",
            GuestCall::OnCounts {
                ticket,
                counts: counts.map_err(crate::runtime::WitError::Unavailable),
            },
        ),
        Event::Connection { up, .. } => ("on-connection", GuestCall::OnConnection { up }),
        Event::Rooms { nsp, rooms, .. } => ("on-rooms", GuestCall::OnRooms { nsp, rooms }),
        Event::Message {
            channel,
            pattern,
            payload,
            ..
        } => (
            "on-message",
            GuestCall::OnMessage {
                channel,
                pattern,
                payload,
            },
        ),
        Event::Document {
            collection,
            document,
            ..
        } => (
            "on-document",
            GuestCall::OnDocument {
                collection,
                document,
            },
        ),
        // Handled by the dispatcher itself; never a guest call.
        Event::Swap(_) => unreachable!("swap control is not routed to a guest"),
    }
}

/// Drops a swapped-out adapter: requests it still had fail with a clear error, its
/// subscriptions no one else needs are dropped, and links no one uses are closed.
async fn retire(old: Arc<GuestSlot>, current: Arc<GuestSlot>, ids: Vec<u64>) {
    let shared = old.shared().clone();
    shared.fail_requests(
        &ids,
        "the adapter was swapped out while this request was in flight; retry it",
    );
    let old_topics = old.topics().await;
    old.retire().await;
    if let (Some(a), Some(b)) = (&old.links().pubsub, &current.links().pubsub)
        && Arc::ptr_eq(a, b)
    {
        let kept: BTreeSet<_> = current.topics().await;
        for t in old_topics.difference(&kept) {
            let _ = a.unsubscribe(t.clone());
        }
    }
    let unused = Links {
        pubsub: old
            .links()
            .pubsub
            .clone()
            .filter(|l| !current.links().has(l.id())),
        docstore: old
            .links()
            .docstore
            .clone()
            .filter(|l| !current.links().has(l.id())),
    };
    drop(old);
    drop(current);
    // Closing waits for what is queued to be sent: not in the dispatcher's way.
    tokio::spawn(unused.close());
}
