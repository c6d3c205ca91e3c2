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

use crate::datasource::{MongoDocStore, PubSubLink};
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
    /// A message arrived on a subscribed channel of datasource link `link`.
    Message {
        link: u64,
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
    /// The connection of datasource link `link` went down or came back.
    Connection { link: u64, up: bool },
    /// Rooms of a watched namespace that exist on this node, some perhaps new: all of
    /// them for instance `generation` (it asked), or new ones for whoever serves now.
    Rooms {
        generation: Option<u64>,
        nsp: String,
        rooms: Vec<String>,
    },
    /// A document was inserted in a watched collection of link `link` (BSON).
    Document {
        link: u64,
        collection: String,
        document: Vec<u8>,
    },
    /// Hot swap, in queue order: an adapter is being prepared (its events wait), or
    /// takes over here, or was refused; a drained old adapter may be retired.
    Swap(crate::dispatch::Control),
}

impl Event {
    /// The instance an event belongs to, for those that die with it.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Event::Timer { generation, .. }
            | Event::LocalAck { generation, .. }
            | Event::ServerSideAck { generation, .. }
            | Event::Counts { generation, .. } => Some(*generation),
            Event::Rooms { generation, .. } => *generation,
            Event::Message { .. }
            | Event::Connection { .. }
            | Event::Document { .. }
            | Event::Swap(_) => None,
        }
    }

    /// The datasource link an event came from, for those that come from one.
    pub fn link(&self) -> Option<u64> {
        match self {
            Event::Message { link, .. }
            | Event::Connection { link, .. }
            | Event::Document { link, .. } => Some(*link),
            _ => None,
        }
    }
}

/// The datasource links one adapter uses (the host's side of `pubsub` / `docstore`).
#[derive(Clone, Default)]
pub struct Links {
    pub pubsub: Option<Arc<PubSubLink>>,
    pub docstore: Option<Arc<MongoDocStore>>,
}

impl Links {
    /// Whether an event of link `id` is for this adapter.
    pub fn has(&self, id: u64) -> bool {
        self.pubsub.as_ref().is_some_and(|l| l.id() == id)
            || self.docstore.as_ref().is_some_and(|l| l.id() == id)
    }

    /// These links, less those `other` also uses (what closing would not disturb).
    pub fn not_in(&self, other: &Links) -> Links {
        Links {
            pubsub: self.pubsub.clone().filter(|l| !other.has(l.id())),
            docstore: self.docstore.clone().filter(|l| !other.has(l.id())),
        }
    }

    /// Ids of the links.
    pub fn ids(&self) -> Vec<u64> {
        let p = self.pubsub.as_ref().map(|l| l.id());
        let d = self.docstore.as_ref().map(|l| l.id());
        p.into_iter().chain(d).collect()
    }

    /// The datasource's name, if there is one.
    pub fn name(&self) -> Option<String> {
        let p = self.pubsub.as_ref().map(|l| l.spec().name.clone());
        p.or_else(|| self.docstore.as_ref().map(|l| l.spec().name.clone()))
    }

    /// The link's state and counters, for `/healthz`.
    pub fn status(&self) -> Option<serde_json::Value> {
        let p = self.pubsub.as_ref().map(|l| l.to_json());
        p.or_else(|| self.docstore.as_ref().map(|l| l.to_json()))
    }

    /// At the node's end: sends what is queued (waiting `wait` at most per link), then
    /// drops the connections, whoever else still holds the links, so that other nodes
    /// stop counting this one at once.
    pub async fn finish(&self, wait: std::time::Duration) {
        if let Some(link) = &self.pubsub {
            if !link.settled(wait).await {
                tracing::warn!("datasource: queued publishes not all sent before closing");
            }
            link.sever().await;
        }
        if let Some(link) = &self.docstore {
            if !link.settled(wait).await {
                tracing::warn!("datasource: queued inserts not all sent before closing");
            }
            link.sever();
        }
    }

    /// Closes each link nobody else holds (what is queued is sent first).
    pub async fn close(self) {
        if let Some(link) = self.pubsub {
            match Arc::try_unwrap(link) {
                Ok(link) => link.close().await,
                Err(_) => tracing::debug!("datasource still in use; closed when dropped"),
            }
        }
        if let Some(link) = self.docstore {
            match Arc::try_unwrap(link) {
                Ok(link) => link.close().await,
                Err(_) => tracing::debug!("datasource still in use; closed when dropped"),
            }
        }
    }
}

/// Node state shared by every instance and every swapped-in adapter.
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
    links: AtomicU64,
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
            links: AtomicU64::new(0),
            watched: RwLock::new(HashSet::new()),
            metrics: Metrics::default(),
        };
        (Arc::new(shared), rx)
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A new id for a datasource link's events.
    pub(crate) fn next_link_id(&self) -> u64 {
        self.links.fetch_add(1, Ordering::Relaxed) + 1
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
                generation: None,
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

    /// Ids of the cluster requests open now.
    pub(crate) fn open_requests(&self) -> Vec<u64> {
        self.requests.open_ids()
    }

    /// Whether any of `ids` is still open.
    pub(crate) fn any_open(&self, ids: &[u64]) -> bool {
        self.requests.any_open(ids)
    }

    /// Ends the requests of `ids` still open with `reason`.
    pub(crate) fn fail_requests(&self, ids: &[u64], reason: &str) {
        self.requests.fail(ids, reason);
    }
}

/// The guest's name for log lines.
pub(crate) fn adapter_name(shared: &Shared) -> String {
    shared.adapter_name.read().unwrap().clone()
}

/// Handles a clone of `Arc<Shared>` inside the store data to the import impls.
impl crate::runtime::bindings::wasio::adapter::types::Host for crate::runtime::HostState {}
