//! The node state every instance and every swapped-in adapter shares, in parts that
//! each do one thing: the namespaces the guest may act on, the cluster requests it
//! answers, its timers, the app's hooks, the counters, and the sink its events go to.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use super::requests::Requests;
use super::sockets::{LocalNamespace, ServerSideHandler, SocketInspector};
use super::timers::Timers;
use super::{Event, Metrics};
use crate::datasource::Sink;

/// Where the node's events go (the cluster layer's queue, in order).
pub(crate) type Events = Arc<dyn Fn(Event) + Send + Sync>;

/// What outlives any one guest instance.
pub(crate) struct NodeState {
    /// This node's id, given to the guest's `init`.
    pub node_id: String,
    /// The serving adapter's name, for log lines.
    pub adapter_name: RwLock<String>,
    /// The namespaces of this node, as the guest acts on them.
    pub namespaces: Namespaces,
    /// Cluster requests waiting for the guest's answers.
    pub requests: Requests,
    /// Timers the guest started.
    pub timers: Timers,
    /// What the app hooked in (server-side handler, socket inspector).
    pub hooks: Hooks,
    /// The node's counters.
    pub metrics: Metrics,
    /// The guest's last output lines, for explaining a fault.
    pub output: RecentOutput,
    events: Events,
    generations: AtomicU64,
}

impl NodeState {
    /// The node state; its events go to `events`.
    pub(crate) fn new(node_id: String, events: Events) -> Arc<NodeState> {
        Arc::new(NodeState {
            node_id,
            adapter_name: RwLock::new(String::new()),
            namespaces: Namespaces::default(),
            requests: Requests::default(),
            timers: Timers::default(),
            hooks: Hooks::default(),
            metrics: Metrics::default(),
            output: RecentOutput::default(),
            events,
            generations: AtomicU64::new(0),
        })
    }

    /// Queues an event for the guest.
    pub(crate) fn push(&self, event: Event) {
        (self.events)(event)
    }

    /// Where a datasource link of this node pushes what arrives; it stops once the node
    /// is gone.
    pub(crate) fn link_sink(self: &Arc<Self>) -> Sink {
        let node = Arc::downgrade(self);
        Arc::new(move |event| match node.upgrade() {
            Some(node) => {
                node.push(Event::Link(event));
                true
            }
            None => false,
        })
    }

    /// A new instance generation (events of older ones are stale).
    pub(crate) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The guest's name for log lines.
    pub(crate) fn adapter_name(&self) -> String {
        self.adapter_name.read().unwrap().clone()
    }

    /// Tells the guest, if it watches `nsp`, that sockets joined `rooms` here.
    pub(crate) fn rooms_joined(&self, nsp: &str, rooms: &[String]) {
        if self.namespaces.watches(nsp) && !rooms.is_empty() {
            self.push(Event::Rooms {
                generation: None,
                nsp: nsp.to_string(),
                rooms: rooms.to_vec(),
            });
        }
    }

    /// Instance `generation` is gone (a fault, or the node closing): its timers die
    /// with it, and the requests being answered fail now instead of hanging.
    pub(crate) fn instance_gone(&self, generation: u64, reason: &str) {
        self.timers.cancel_generation(generation);
        self.requests.fail_all(reason);
    }

    /// Instance `generation` was swapped out: its timers die with it; requests are
    /// left to whoever drains it.
    pub(crate) fn instance_retired(&self, generation: u64) {
        self.timers.cancel_generation(generation);
    }
}

/// How many of the guest's last output lines are kept to explain a fault.
const RECENT_LINES: usize = 10;
/// Longest line kept (in bytes); the rest is cut.
const RECENT_LINE_BYTES: usize = 500;

/// The guest's last lines on stderr, stdout and `log` (a Python traceback ends up
/// here line by line), and a copy taken at its last fault: what the host logged at
/// WARN is then also at hand for whoever reports the fault (the conformance kit).
#[derive(Default)]
pub(crate) struct RecentOutput {
    lines: std::sync::Mutex<std::collections::VecDeque<String>>,
    at_fault: std::sync::Mutex<Vec<String>>,
}

impl RecentOutput {
    /// Keeps `line`, dropping the oldest beyond the bound.
    pub(crate) fn push(&self, line: &str) {
        let mut line = line.trim_end().to_string();
        if line.len() > RECENT_LINE_BYTES {
            let mut cut = RECENT_LINE_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        let mut lines = self.lines.lock().unwrap();
        if lines.len() == RECENT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// A fault happened: what the guest wrote before it becomes the fault's output,
    /// and the next fault starts from nothing.
    pub(crate) fn fault(&self) {
        let lines: Vec<String> = self.lines.lock().unwrap().drain(..).collect();
        *self.at_fault.lock().unwrap() = lines;
    }

    /// What the guest wrote before its last fault (at most 10 lines).
    pub(crate) fn at_fault(&self) -> Vec<String> {
        self.at_fault.lock().unwrap().clone()
    }
}

/// This node's namespaces, by name, as the guest may act on them; and those whose
/// guest asked to hear of new rooms.
#[derive(Default)]
pub(crate) struct Namespaces {
    map: RwLock<HashMap<String, Weak<dyn LocalNamespace>>>,
    /// Namespaces whose guest asked to hear of rooms (`sockets.watch-rooms`).
    watched: RwLock<HashSet<String>>,
}

impl Namespaces {
    /// Registers a namespace's local side so guest actions can reach its sockets.
    pub(crate) fn add(&self, nsp: &str, ns: Weak<dyn LocalNamespace>) {
        self.map.write().unwrap().insert(nsp.to_string(), ns);
    }

    /// Forgets a namespace (it was deleted or closed).
    pub(crate) fn remove(&self, nsp: &str) {
        self.map.write().unwrap().remove(nsp);
    }

    /// The namespace `nsp` on this node, if it exists.
    pub(crate) fn get(&self, nsp: &str) -> Option<Arc<dyn LocalNamespace>> {
        self.map.read().unwrap().get(nsp).and_then(Weak::upgrade)
    }

    /// Names of the namespaces alive on this node (replayed into new instances).
    pub(crate) fn names(&self) -> Vec<String> {
        let map = self.map.read().unwrap();
        map.iter()
            .filter(|(_, ns)| ns.strong_count() > 0)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether the guest asked to hear of `nsp`'s rooms.
    pub(crate) fn watches(&self, nsp: &str) -> bool {
        self.watched.read().unwrap().contains(nsp)
    }

    pub(super) fn watch(&self, nsp: &str) {
        self.watched.write().unwrap().insert(nsp.to_string());
    }
}

/// What the app hooks into the node.
#[derive(Default)]
pub(crate) struct Hooks {
    server_side: RwLock<Option<ServerSideHandler>>,
    inspector: RwLock<Option<SocketInspector>>,
}

impl Hooks {
    /// Sets the handler run when another node does `serverSideEmit`.
    pub(crate) fn set_server_side_handler(&self, handler: Option<ServerSideHandler>) {
        *self.server_side.write().unwrap() = handler;
    }

    /// The handler run when another node does `serverSideEmit`, if any.
    pub(crate) fn server_side_handler(&self) -> Option<ServerSideHandler> {
        self.server_side.read().unwrap().clone()
    }

    /// Sets how local sockets are described in fetch-sockets answers.
    pub(crate) fn set_inspector(&self, inspector: Option<SocketInspector>) {
        *self.inspector.write().unwrap() = inspector;
    }

    /// How local sockets are described, if anyone said.
    pub(crate) fn inspector(&self) -> Option<SocketInspector> {
        self.inspector.read().unwrap().clone()
    }
}
