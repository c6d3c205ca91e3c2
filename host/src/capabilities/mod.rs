//! What the host gives a guest: the implementations of the contract's imports, and the
//! node state they act on, which outlives any one guest instance.

mod docstore;
mod log;
mod pubsub;
mod requests;
pub(crate) mod sockets;
mod stdio;
mod timers;

pub use requests::{Answers, RequestHandle};
pub use sockets::{LocalNamespace, ServerSideEvent, ServerSideHandler};
pub use stdio::GuestOutput;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use tokio::sync::mpsc;

use crate::datasource::{MongoDocStore, RedisPubSub};
use crate::metrics::Metrics;

/// Something the host pushes into the guest, in order, through the dispatcher.
#[derive(Debug)]
pub enum Event {
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
    /// A message arrived on a subscribed channel.
    Message {
        channel: String,
        pattern: Option<String>,
        payload: Vec<u8>,
    },
    /// Subscriber counts for `pubsub.count-subscribers`.
    Counts {
        generation: u64,
        ticket: u64,
        counts: Result<Vec<u64>, String>,
    },
    /// The datasource connection went down or came back.
    Connection { up: bool },
    /// Rooms of a watched namespace that exist on this node, some perhaps new.
    Rooms { nsp: String, rooms: Vec<String> },
    /// A document was inserted in a watched collection (BSON).
    Document {
        collection: String,
        document: Vec<u8>,
    },
}

impl Event {
    /// The instance an event belongs to, for those that die with it.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Event::Timer { generation, .. }
            | Event::LocalAck { generation, .. }
            | Event::ServerSideAck { generation, .. }
            | Event::Counts { generation, .. } => Some(*generation),
            Event::Message { .. }
            | Event::Connection { .. }
            | Event::Rooms { .. }
            | Event::Document { .. } => None,
        }
    }
}

/// Node state shared by every instance (and, later, every swapped-in adapter).
pub struct Shared {
    /// This node's id, given to the guest's `init`.
    pub node_id: String,
    /// The adapter's name, for logs.
    pub adapter_name: RwLock<String>,
    namespaces: RwLock<HashMap<String, Weak<dyn LocalNamespace>>>,
    requests: requests::Pending,
    timers: timers::Timers,
    events: mpsc::UnboundedSender<Event>,
    generation: AtomicU64,
    server_side: RwLock<Option<ServerSideHandler>>,
    inspector: RwLock<Option<SocketInspector>>,
    pubsub: RwLock<Option<Arc<RedisPubSub>>>,
    docstore: RwLock<Option<Arc<MongoDocStore>>>,
    /// Namespaces whose guest asked to hear of rooms (`sockets.watch-rooms`).
    watched: RwLock<HashSet<String>>,
    pub metrics: Metrics,
}

/// Describes a local socket for fetch-sockets answers: (handshake, data), both
/// MessagePack; `None` when the socket is gone.
pub type SocketInspector =
    Arc<dyn Fn(&str, socketioxide_core::Sid) -> Option<(Vec<u8>, Vec<u8>)> + Send + Sync>;

impl Shared {
    /// The node state and the receiving end of its event queue.
    pub fn new(node_id: String) -> (Arc<Shared>, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            node_id,
            adapter_name: RwLock::new(String::new()),
            namespaces: RwLock::new(HashMap::new()),
            requests: requests::Pending::default(),
            timers: timers::Timers::default(),
            events,
            generation: AtomicU64::new(0),
            server_side: RwLock::new(None),
            inspector: RwLock::new(None),
            pubsub: RwLock::new(None),
            docstore: RwLock::new(None),
            watched: RwLock::new(HashSet::new()),
            metrics: Metrics::default(),
        };
        (Arc::new(shared), rx)
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Queues an event for the guest.
    pub fn push(&self, event: Event) {
        // Closed only when the node shuts down, when nothing is left to deliver to.
        let _ = self.events.send(event);
    }

    /// Registers a namespace's local side so guest actions can reach its sockets.
    pub fn add_namespace(&self, nsp: &str, ns: Weak<dyn LocalNamespace>) {
        self.namespaces.write().unwrap().insert(nsp.to_string(), ns);
    }

    /// Forgets a namespace (it was deleted or closed).
    pub fn remove_namespace(&self, nsp: &str) {
        self.namespaces.write().unwrap().remove(nsp);
    }

    /// The namespace `nsp` on this node, if it exists.
    pub fn namespace(&self, nsp: &str) -> Option<Arc<dyn LocalNamespace>> {
        self.namespaces
            .read()
            .unwrap()
            .get(nsp)
            .and_then(Weak::upgrade)
    }

    /// Names of the namespaces alive on this node (replayed into new instances).
    pub fn namespace_names(&self) -> Vec<String> {
        let map = self.namespaces.read().unwrap();
        map.iter()
            .filter(|(_, ns)| ns.strong_count() > 0)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Opens a cluster request the guest will answer through `requests`.
    pub fn open_request(self: &Arc<Self>) -> RequestHandle {
        self.requests.open(self)
    }

    /// Sets the handler run when another node does `serverSideEmit`.
    pub fn set_server_side_handler(&self, handler: Option<ServerSideHandler>) {
        *self.server_side.write().unwrap() = handler;
    }

    /// Sets how local sockets are described in fetch-sockets answers.
    pub fn set_inspector(&self, inspector: Option<SocketInspector>) {
        *self.inspector.write().unwrap() = inspector;
    }

    /// How local sockets are described, if anyone said.
    pub fn inspector(&self) -> Option<SocketInspector> {
        self.inspector.read().unwrap().clone()
    }

    /// Tells the guest, if it watches `nsp`, that sockets joined `rooms` here.
    pub fn rooms_joined(&self, nsp: &str, rooms: &[String]) {
        if self.watches(nsp) && !rooms.is_empty() {
            self.push(Event::Rooms {
                nsp: nsp.to_string(),
                rooms: rooms.to_vec(),
            });
        }
    }

    /// Whether the guest asked to hear of `nsp`'s rooms.
    pub fn watches(&self, nsp: &str) -> bool {
        self.watched.read().unwrap().contains(nsp)
    }

    pub(crate) fn watch_rooms(&self, nsp: &str) {
        self.watched.write().unwrap().insert(nsp.to_string());
    }

    /// Attaches (or detaches) the Redis link behind `pubsub`; returns the previous one.
    pub fn set_pubsub(&self, link: Option<Arc<RedisPubSub>>) -> Option<Arc<RedisPubSub>> {
        std::mem::replace(&mut *self.pubsub.write().unwrap(), link)
    }

    /// The Redis link behind `pubsub`, if one is attached.
    pub fn pubsub(&self) -> Option<Arc<RedisPubSub>> {
        self.pubsub.read().unwrap().clone()
    }

    /// Attaches (or detaches) the MongoDB link behind `docstore`; returns the previous one.
    pub fn set_docstore(&self, link: Option<Arc<MongoDocStore>>) -> Option<Arc<MongoDocStore>> {
        std::mem::replace(&mut *self.docstore.write().unwrap(), link)
    }

    /// The MongoDB link behind `docstore`, if one is attached.
    pub fn docstore(&self) -> Option<Arc<MongoDocStore>> {
        self.docstore.read().unwrap().clone()
    }

    /// The instance serving this node is gone: its timers die with it, and requests
    /// it was answering fail now instead of hanging.
    pub(crate) fn instance_gone(&self, reason: &str) {
        self.timers.cancel_all();
        self.requests.fail_all(reason);
    }
}

/// The guest's name for log lines.
pub(crate) fn adapter_name(shared: &Shared) -> String {
    shared.adapter_name.read().unwrap().clone()
}

/// Handles a clone of `Arc<Shared>` inside the store data to the import impls.
impl crate::runtime::bindings::wasio::adapter::types::Host for crate::runtime::HostState {}
