//! The event dispatcher: pushes host events (backend messages, timers, acks, room
//! news) into the adapter they concern, one at a time, in queue order. Hot swap steps
//! travel through the same queue, so a switch happens between two events: everything
//! before it goes to the old adapter, everything after to the new one; while the old one
//! drains (finishes its open requests, muted) it also gets the backend's messages.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::guest::{GuestCall, GuestError, GuestSlot};
use crate::capabilities::{Event, Events};
use crate::datasource::LinkEvent;

/// What travels through the node's queue: the node's events, and the swap steps
/// between them.
pub(crate) enum Item {
    Event(Event),
    Control(Control),
}

/// The sending end of the node's queue.
#[derive(Clone)]
pub(crate) struct Queue(mpsc::UnboundedSender<Item>);

impl Queue {
    /// The queue, and its receiving end for the dispatcher.
    pub(crate) fn new() -> (Queue, mpsc::UnboundedReceiver<Item>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue(tx), rx)
    }

    /// Where the node's events go.
    pub(crate) fn events(&self) -> Events {
        let tx = self.0.clone();
        // Closed only when the node shuts down, when nothing is left to deliver to.
        std::sync::Arc::new(move |event| {
            let _ = tx.send(Item::Event(event));
        })
    }

    /// Queues a swap step after the events queued so far.
    pub(crate) fn control(&self, control: Control) {
        let _ = self.0.send(Item::Control(control));
    }
}

/// Swap steps, pushed through the event queue so that they happen between events.
pub(crate) enum Control {
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
pub(crate) struct Switched {
    pub(crate) old_generation: u64,
    /// The requests open at the switch, which the old adapter drains.
    pub(crate) drain: Vec<u64>,
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

    pub(crate) async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Item>) {
        while let Some(item) = queue.recv().await {
            match item {
                Item::Control(control) => self.control(control).await,
                Item::Event(event) => self.route(event).await,
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
                let node = old.node().clone();
                // Calls in progress on the old adapter end first; later ones go to the new.
                old.mute_then(|| self.slot.store(slot.clone())).await;
                // The old adapter drains the requests open now, then is retired (in queue
                // order, before any later swap).
                let open = node.requests.open_ids();
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
        let is_message = matches!(
            event,
            Event::Link(LinkEvent::Message { .. } | LinkEvent::Document { .. })
        );
        if to_draining && let Some(old) = draining {
            // Muted: only its answers to the requests it was serving take effect.
            if !to_current {
                let (op, call) = guest_call(event);
                let _ = old.try_call(op, call, true).await;
                return;
            }
            // A backend message goes to both; others are one adapter's.
            if let Event::Link(link @ (LinkEvent::Message { .. } | LinkEvent::Document { .. })) =
                &event
            {
                let (op, call) = guest_call(Event::Link(link.clone()));
                let _ = old.try_call(op, call, true).await;
            }
        }
        if is_message {
            let counter = &current.traffic().messages_in;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (op, call) = guest_call(event);
        let res = current.call(op, call).await;
        if is_message && matches!(res, Err(GuestError::Refused { .. })) {
            // Malformed or foreign: dropped, and counted.
            current
                .node()
                .metrics
                .dropped_messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = res {
            tracing::debug!("event not handled: {e}");
        }
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
                counts: counts.map_err(crate::runtime::WitError::from),
            },
        ),
        Event::Link(LinkEvent::Connection { up, .. }) => {
            ("on-connection", GuestCall::OnConnection { up })
        }
        Event::Rooms { nsp, rooms, .. } => ("on-rooms", GuestCall::OnRooms { nsp, rooms }),
        Event::Link(LinkEvent::Message {
            channel,
            pattern,
            payload,
            ..
        }) => (
            "on-message",
            GuestCall::OnMessage {
                channel,
                pattern,
                payload,
            },
        ),
        Event::Link(LinkEvent::Document {
            collection,
            document,
            ..
        }) => (
            "on-document",
            GuestCall::OnDocument {
                collection,
                document,
            },
        ),
    }
}

/// Drops a swapped-out adapter: requests it still had fail with a clear error, its
/// subscriptions no one else needs are dropped, and links no one uses are closed.
async fn retire(old: Arc<GuestSlot>, current: Arc<GuestSlot>, ids: Vec<u64>) {
    old.node().requests.fail(
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
    let unused = old.links().not_in(current.links());
    drop(old);
    drop(current);
    // Closing waits for what is queued to be sent: not in the dispatcher's way.
    tokio::spawn(unused.close());
}
