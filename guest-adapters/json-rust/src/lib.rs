//! A wasio cluster adapter speaking the `wasio-json` protocol: JSON messages over the
//! datasource's publish/subscribe, so that nodes running this adapter (or its Python
//! and JavaScript twins) form one cluster.
//!
//! Every node of namespace `nsp` listens on two channels: `{prefix}#{nsp}#` for what
//! is addressed to all nodes, and `{prefix}#{nsp}#{uid}#` for answers to its own
//! requests. The host owns sockets, connections and timers; this guest only turns
//! operations into messages and messages into calls on the host. Nothing blocks: a
//! request is answered later, through `requests.reply` and `requests.finish`.

wit_bindgen::generate!({ path: "../../wit", world: "pubsub-adapter" });

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use exports::wasio::adapter::guest::{AdapterInfo, BroadcastOpts, Guest, InitArgs};
use wasio::adapter::pubsub::{self, Mode};
use wasio::adapter::requests::{self, Answer};
use wasio::adapter::types::{BroadcastFlags, Error, SocketInfo};
use wasio::adapter::{log, sockets, timers};

/// The protocol version every message carries.
const VERSION: u32 = 1;

// ---------------------------------------------------------------------------------
// Messages, as they travel: one JSON object each.

#[derive(Serialize, Deserialize)]
struct Message {
    v: u32,
    /// The sender's uid.
    uid: String,
    nsp: String,
    #[serde(flatten)]
    body: Body,
}

/// What a message says, by its `type`. `rid` is the requester's request id; the
/// last five are answers, sent to the requester's own channel.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Body {
    Broadcast {
        #[serde(with = "base64_bytes")]
        packet: Vec<u8>,
        opts: Opts,
    },
    Join {
        opts: Opts,
        rooms: Vec<String>,
    },
    Leave {
        opts: Opts,
        rooms: Vec<String>,
    },
    Disconnect {
        opts: Opts,
        close: bool,
    },
    Fetch {
        rid: u64,
        opts: Opts,
    },
    Rooms {
        rid: u64,
        opts: Opts,
    },
    Emit {
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// Set when the sender waits for acks.
        #[serde(skip_serializing_if = "Option::is_none")]
        rid: Option<u64>,
    },
    BroadcastAck {
        rid: u64,
        #[serde(with = "base64_bytes")]
        packet: Vec<u8>,
        opts: Opts,
        timeout: u32,
    },
    Sockets {
        rid: u64,
        sockets: Vec<Socket>,
    },
    RoomsReply {
        rid: u64,
        rooms: Vec<String>,
    },
    EmitAck {
        rid: u64,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    Count {
        rid: u64,
        count: u32,
    },
    Ack {
        rid: u64,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
}

/// `broadcast-opts` on the wire.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Opts {
    rooms: Vec<String>,
    except: Vec<String>,
    flags: Flags,
    sid: Option<String>,
    server_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Flags {
    local: bool,
    broadcast: bool,
    volatile: bool,
}

/// `socket-info` on the wire.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Socket {
    id: String,
    server_id: String,
    rooms: Vec<String>,
    #[serde(with = "base64_bytes")]
    handshake: Vec<u8>,
    #[serde(with = "base64_bytes")]
    data: Vec<u8>,
}

impl From<&BroadcastOpts> for Opts {
    fn from(o: &BroadcastOpts) -> Opts {
        Opts {
            rooms: o.rooms.clone(),
            except: o.except.clone(),
            flags: Flags {
                local: o.flags.contains(BroadcastFlags::LOCAL),
                broadcast: o.flags.contains(BroadcastFlags::BROADCAST),
                volatile: o.flags.contains(BroadcastFlags::VOLATILE),
            },
            sid: o.sid.clone(),
            server_id: o.server_id.clone(),
        }
    }
}

impl From<Opts> for BroadcastOpts {
    fn from(o: Opts) -> BroadcastOpts {
        let mut flags = BroadcastFlags::empty();
        flags.set(BroadcastFlags::LOCAL, o.flags.local);
        flags.set(BroadcastFlags::BROADCAST, o.flags.broadcast);
        flags.set(BroadcastFlags::VOLATILE, o.flags.volatile);
        BroadcastOpts {
            flags,
            rooms: o.rooms,
            except: o.except,
            sid: o.sid,
            server_id: o.server_id,
        }
    }
}

impl From<SocketInfo> for Socket {
    fn from(s: SocketInfo) -> Socket {
        Socket {
            id: s.id,
            server_id: s.server_id,
            rooms: s.rooms,
            handshake: s.handshake,
            data: s.data,
        }
    }
}

impl From<Socket> for SocketInfo {
    fn from(s: Socket) -> SocketInfo {
        SocketInfo {
            id: s.id,
            server_id: s.server_id,
            rooms: s.rooms,
            handshake: s.handshake,
            data: s.data,
        }
    }
}

/// Binary fields travel as standard base64 with padding (JSON has no bytes).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------
// The node's state: what it waits for, and what it owes other nodes.

/// A request of this node, waiting for the other nodes' answers.
struct Request {
    /// How many nodes must answer; unknown until `count-subscribers` says.
    expected: Option<u64>,
    /// Nodes that answered (for a broadcast with acks: nodes that sent their count).
    answered: u64,
    /// Broadcast with acks: clients the other nodes reported, and acks received.
    clients: u64,
    acks: u64,
    timer: u64,
    /// `server-count`: the number of nodes is the whole answer.
    server_count: bool,
}

/// Where to send the acks of a local ack handle: node `to`'s request `rid`.
struct Owed {
    nsp: String,
    to: String,
    rid: u64,
}

#[derive(Default)]
struct Adapter {
    uid: String,
    prefix: String,
    timeout_ms: u32,
    namespaces: HashSet<String>,
    /// By request id, which is also the `count-subscribers` ticket.
    requests: HashMap<u64, Request>,
    /// Timer id -> request id.
    timers: HashMap<u64, u64>,
    /// Local ack handle -> where its acks go.
    owed: HashMap<u64, Owed>,
    last_handle: u64,
}

impl Adapter {
    fn new(args: InitArgs) -> Result<Adapter, Error> {
        let options: serde_json::Map<String, Value> = serde_json::from_str(&args.options)
            .map_err(|e| Error::Invalid(format!("options must be a JSON object: {e}")))?;
        let mut adapter = Adapter {
            uid: args.node_id,
            prefix: "wasio-json".into(),
            timeout_ms: 5000,
            ..Adapter::default()
        };
        for (name, value) in options {
            match name.as_str() {
                "prefix" => {
                    adapter.prefix = value
                        .as_str()
                        .ok_or_else(|| Error::Invalid("option prefix must be a string".into()))?
                        .into()
                }
                "requestsTimeout" => {
                    adapter.timeout_ms = value
                        .as_u64()
                        .and_then(|ms| u32::try_from(ms).ok())
                        .ok_or_else(|| {
                            Error::Invalid("option requestsTimeout must be milliseconds".into())
                        })?
                }
                _ => return Err(Error::Invalid(format!("unknown option {name}"))),
            }
        }
        Ok(adapter)
    }

    fn all_nodes(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.prefix)
    }

    fn node(&self, nsp: &str, uid: &str) -> String {
        format!("{}#{nsp}#{uid}#", self.prefix)
    }

    fn open(&mut self, nsp: String) -> Result<(), Error> {
        pubsub::subscribe(&self.all_nodes(&nsp), Mode::Classic)?;
        pubsub::subscribe(&self.node(&nsp, &self.uid), Mode::Classic)?;
        self.namespaces.insert(nsp);
        Ok(())
    }

    /// Unsubscribing makes other nodes stop counting (and waiting for) this one.
    fn close(&mut self) -> Result<(), Error> {
        for nsp in &self.namespaces {
            pubsub::unsubscribe(&self.all_nodes(nsp), Mode::Classic)?;
            pubsub::unsubscribe(&self.node(nsp, &self.uid), Mode::Classic)?;
        }
        Ok(())
    }

    fn send(&self, channel: &str, nsp: &str, body: Body) -> Result<(), Error> {
        let message = Message {
            v: VERSION,
            uid: self.uid.clone(),
            nsp: nsp.into(),
            body,
        };
        let payload = serde_json::to_vec(&message).map_err(|e| Error::Other(e.to_string()))?;
        pubsub::publish(channel, &payload, Mode::Classic)
    }

    fn to_all(&self, nsp: &str, body: Body) -> Result<(), Error> {
        self.send(&self.all_nodes(nsp), nsp, body)
    }

    /// Answers node `to`. A lost answer only makes its request time out, so it is
    /// logged rather than failing what we were doing.
    fn answer(&self, nsp: &str, to: &str, body: Body) {
        if let Err(e) = self.send(&self.node(nsp, to), nsp, body) {
            log::log(log::Level::Warn, &format!("answer to {to} not sent: {e:?}"));
        }
    }

    /// Relays a one-way operation, unless it was meant for this node only.
    fn relay(&self, nsp: &str, opts: &BroadcastOpts, body: Body) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        self.to_all(nsp, body)
    }

    /// Starts request `rid`: publishes `body` at once, starts its timer, and asks how
    /// many nodes listen (itself included): the answers to wait for are that minus
    /// one. Without a body (server-count) that number is the answer.
    fn request(
        &mut self,
        nsp: &str,
        rid: u64,
        body: Option<Body>,
        timeout_ms: u32,
    ) -> Result<(), Error> {
        let server_count = body.is_none();
        if let Some(body) = body {
            self.to_all(nsp, body)?;
        }
        pubsub::count_subscribers(&[self.all_nodes(nsp)], Mode::Classic, rid)?;
        let timer = timers::start(timeout_ms);
        self.timers.insert(timer, rid);
        self.requests.insert(
            rid,
            Request {
                expected: None,
                answered: 0,
                clients: 0,
                acks: 0,
                timer,
                server_count,
            },
        );
        Ok(())
    }

    fn on_counts(&mut self, rid: u64, counts: Result<Vec<u64>, Error>) {
        let Some(req) = self.requests.get_mut(&rid) else {
            return;
        };
        let nodes = match counts {
            // This node is subscribed too, whatever the count says.
            Ok(counts) => counts.first().copied().unwrap_or(0).max(1),
            Err(e) => return self.finish(rid, Err(e)),
        };
        if req.server_count {
            let n = u32::try_from(nodes).unwrap_or(u32::MAX);
            requests::reply(rid, &Answer::ServerCount(n));
            return self.finish(rid, Ok(()));
        }
        req.expected = Some(nodes - 1);
        self.finish_if_done(rid);
    }

    fn on_timer(&mut self, timer: u64) {
        let Some(rid) = self.timers.remove(&timer) else {
            return;
        };
        let Some(req) = self.requests.get(&rid) else {
            return;
        };
        let message = match req.expected {
            Some(n) => format!("{} of {n} nodes answered in time", req.answered),
            None => "the number of nodes was not known in time".into(),
        };
        self.finish(rid, Err(Error::Timeout(message)));
    }

    /// One part of the answer to request `rid`, from another node.
    fn on_answer(&mut self, rid: u64, answer: Answer) {
        // Unknown: finished already, or not ours.
        let Some(req) = self.requests.get_mut(&rid) else {
            return;
        };
        match answer {
            Answer::Ack(_) => req.acks += 1,
            Answer::ClientCount(n) => {
                req.answered += 1;
                req.clients += u64::from(n);
            }
            _ => req.answered += 1,
        }
        requests::reply(rid, &answer);
        self.finish_if_done(rid);
    }

    fn finish_if_done(&mut self, rid: u64) {
        let done = self
            .requests
            .get(&rid)
            .is_some_and(|r| r.expected.is_some_and(|n| r.answered >= n) && r.acks >= r.clients);
        if done {
            self.finish(rid, Ok(()));
        }
    }

    fn finish(&mut self, rid: u64, outcome: Result<(), Error>) {
        if let Some(req) = self.requests.remove(&rid) {
            timers::cancel(req.timer);
            self.timers.remove(&req.timer);
            requests::finish(rid, outcome.as_ref().copied());
        }
    }

    fn new_handle(&mut self) -> u64 {
        self.last_handle += 1;
        self.last_handle
    }

    /// A message from another node. Malformed ones are errors (the host counts them
    /// as dropped); our own and those of namespaces we lack are ignored.
    fn on_message(&mut self, payload: &[u8]) -> Result<(), Error> {
        let message: Message =
            serde_json::from_slice(payload).map_err(|e| Error::Invalid(e.to_string()))?;
        if message.v != VERSION {
            return Err(Error::Invalid(format!("protocol version {}", message.v)));
        }
        if message.uid == self.uid || !self.namespaces.contains(&message.nsp) {
            return Ok(());
        }
        let (nsp, from) = (message.nsp, message.uid);
        match message.body {
            Body::Broadcast { packet, opts } => sockets::broadcast(&nsp, &packet, &opts.into())?,
            Body::Join { opts, rooms } => sockets::add_sockets(&nsp, &opts.into(), &rooms),
            Body::Leave { opts, rooms } => sockets::del_sockets(&nsp, &opts.into(), &rooms),
            Body::Disconnect { opts, close } => sockets::disconnect(&nsp, &opts.into(), close)?,
            Body::Fetch { rid, opts } => {
                let found = sockets::fetch(&nsp, &opts.into());
                let sockets = found.into_iter().map(Socket::from).collect();
                self.answer(&nsp, &from, Body::Sockets { rid, sockets });
            }
            Body::Rooms { rid, opts } => {
                let rooms = sockets::rooms(&nsp, &opts.into());
                self.answer(&nsp, &from, Body::RoomsReply { rid, rooms });
            }
            Body::Emit { data, rid: None } => sockets::server_side_emit(&nsp, &data, None)?,
            Body::Emit {
                data,
                rid: Some(rid),
            } => {
                // The host calls `on-server-side-ack(handle, ..)` later, never during this call.
                let handle = self.new_handle();
                sockets::server_side_emit(&nsp, &data, Some(handle))?;
                self.owed.insert(handle, Owed { nsp, to: from, rid });
            }
            Body::BroadcastAck {
                rid,
                packet,
                opts,
                timeout,
            } => {
                let handle = self.new_handle();
                let count = sockets::broadcast_with_ack(
                    &nsp,
                    &packet,
                    &opts.into(),
                    Some(timeout),
                    handle,
                )?;
                // The count goes first: the requester waits for that many acks.
                self.answer(&nsp, &from, Body::Count { rid, count });
                self.owed.insert(handle, Owed { nsp, to: from, rid });
            }
            Body::Sockets { rid, sockets } => {
                let sockets = sockets.into_iter().map(SocketInfo::from).collect();
                self.on_answer(rid, Answer::Sockets(sockets));
            }
            Body::RoomsReply { rid, rooms } => self.on_answer(rid, Answer::Rooms(rooms)),
            Body::EmitAck { rid, data } => self.on_answer(rid, Answer::ServerAck(data)),
            Body::Count { rid, count } => self.on_answer(rid, Answer::ClientCount(count)),
            Body::Ack { rid, data } => self.on_answer(rid, Answer::Ack(data)),
        }
        Ok(())
    }

    fn on_local_ack(&mut self, handle: u64, ack: Option<Vec<u8>>) {
        match ack {
            Some(data) => {
                if let Some(o) = self.owed.get(&handle) {
                    self.answer(&o.nsp, &o.to, Body::Ack { rid: o.rid, data });
                }
            }
            // No more acks will come for this handle.
            None => {
                self.owed.remove(&handle);
            }
        }
    }

    fn on_server_side_ack(&mut self, handle: u64, data: Vec<u8>) {
        if let Some(o) = self.owed.remove(&handle) {
            self.answer(&o.nsp, &o.to, Body::EmitAck { rid: o.rid, data });
        }
    }
}

// ---------------------------------------------------------------------------------
// The exports: each call runs on the one adapter instance `init` made.

thread_local! {
    static ADAPTER: RefCell<Option<Adapter>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut Adapter) -> Result<T, Error>) -> Result<T, Error> {
    ADAPTER.with_borrow_mut(|a| match a {
        Some(adapter) => f(adapter),
        None => Err(Error::Other("called before init".into())),
    })
}

/// For the entry points that cannot report an error.
fn with_quiet(f: impl FnOnce(&mut Adapter)) {
    ADAPTER.with_borrow_mut(|a| a.as_mut().map(f));
}

struct JsonAdapter;

impl Guest for JsonAdapter {
    fn init(args: InitArgs) -> Result<AdapterInfo, Error> {
        ADAPTER.set(Some(Adapter::new(args)?));
        Ok(AdapterInfo {
            name: "json-rust".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }
    fn open(nsp: String) -> Result<(), Error> {
        with(|a| a.open(nsp))
    }
    fn close() -> Result<(), Error> {
        with(|a| a.close())
    }
    fn broadcast(nsp: String, packet: Vec<u8>, opts: BroadcastOpts) -> Result<(), Error> {
        let body = Body::Broadcast {
            packet,
            opts: (&opts).into(),
        };
        with(|a| a.relay(&nsp, &opts, body))
    }
    fn broadcast_with_ack(
        nsp: String,
        id: u64,
        packet: Vec<u8>,
        opts: BroadcastOpts,
        timeout_ms: u32,
    ) -> Result<(), Error> {
        let body = Body::BroadcastAck {
            rid: id,
            packet,
            opts: (&opts).into(),
            timeout: timeout_ms,
        };
        with(|a| a.request(&nsp, id, Some(body), timeout_ms))
    }
    fn add_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        let body = Body::Join {
            opts: (&opts).into(),
            rooms,
        };
        with(|a| a.relay(&nsp, &opts, body))
    }
    fn del_sockets(nsp: String, opts: BroadcastOpts, rooms: Vec<String>) -> Result<(), Error> {
        let body = Body::Leave {
            opts: (&opts).into(),
            rooms,
        };
        with(|a| a.relay(&nsp, &opts, body))
    }
    fn disconnect_sockets(nsp: String, opts: BroadcastOpts, close: bool) -> Result<(), Error> {
        let body = Body::Disconnect {
            opts: (&opts).into(),
            close,
        };
        with(|a| a.relay(&nsp, &opts, body))
    }
    fn fetch_sockets(nsp: String, id: u64, opts: BroadcastOpts) -> Result<(), Error> {
        let body = Body::Fetch {
            rid: id,
            opts: (&opts).into(),
        };
        with(|a| a.request(&nsp, id, Some(body), a.timeout_ms))
    }
    fn all_rooms(nsp: String, id: u64, opts: BroadcastOpts) -> Result<(), Error> {
        let body = Body::Rooms {
            rid: id,
            opts: (&opts).into(),
        };
        with(|a| a.request(&nsp, id, Some(body), a.timeout_ms))
    }
    fn server_count(nsp: String, id: u64) -> Result<(), Error> {
        with(|a| a.request(&nsp, id, None, a.timeout_ms))
    }
    fn server_side_emit(nsp: String, id: Option<u64>, data: Vec<u8>) -> Result<(), Error> {
        let body = Body::Emit { data, rid: id };
        match id {
            Some(id) => with(|a| a.request(&nsp, id, Some(body), a.timeout_ms)),
            None => with(|a| a.to_all(&nsp, body)),
        }
    }
    fn on_message(
        _channel: String,
        _pattern: Option<String>,
        payload: Vec<u8>,
    ) -> Result<(), Error> {
        with(|a| a.on_message(&payload))
    }
    fn on_document(_collection: String, _document: Vec<u8>) -> Result<(), Error> {
        Err(Error::Invalid("this adapter watches no collection".into()))
    }
    fn on_timer(id: u64) {
        with_quiet(|a| a.on_timer(id))
    }
    fn on_counts(ticket: u64, counts: Result<Vec<u64>, Error>) {
        with_quiet(|a| a.on_counts(ticket, counts))
    }
    fn on_local_ack(handle: u64, ack: Option<Vec<u8>>) {
        with_quiet(|a| a.on_local_ack(handle, ack))
    }
    fn on_server_side_ack(handle: u64, data: Vec<u8>) {
        with_quiet(|a| a.on_server_side_ack(handle, data))
    }
    fn on_rooms(_nsp: String, _rooms: Vec<String>) {}
    fn on_connection(up: bool) {
        let state = if up { "back" } else { "lost" };
        log::log(log::Level::Info, &format!("datasource connection {state}"));
    }
}

export!(JsonAdapter);
