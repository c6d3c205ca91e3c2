//! One node of a `@socket.io/mongo-adapter` 0.4 cluster: every message is a document
//! inserted in the shared collection, read by every other node. Nodes know each other
//! by their documents (heartbeats when they are quiet); a request waits for the nodes
//! heard from within `heartbeatTimeout`, so a dead node ends no request by hanging it.

use std::collections::HashMap;
use std::time::Instant;

use bson::{Bson, Document};
use rmpv::Value;
use wasio_cluster_protocol::bson::from_bson;
use wasio_cluster_protocol::{Body, EMITTER_UID, Message, Opts, Raw};

use crate::bindings::exports::wasio::adapter::guest::BroadcastOpts;
use crate::bindings::wasio::adapter::requests::{self, Answer};
use crate::bindings::wasio::adapter::types::{BroadcastFlags, Error, SocketInfo};
use crate::bindings::wasio::adapter::{docstore, log, sockets, timers};
use crate::options::{Feed, Options};

/// `SESSION` in the Node.js MongoDB adapter (connection state recovery), where the
/// cluster family has `ADAPTER_CLOSE`: nothing for this node to act on.
const SESSION: i32 = 13;

/// Rooms (targeted and excepted) one operation may name: a document naming more is
/// taken for malformed, rather than spending the call's deadline on it.
const MAX_ROOMS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fetch,
    AllRooms,
    Emit,
    BroadcastAck,
}

/// A request this node started and waits on.
struct Request {
    host: u64,
    kind: Kind,
    /// Answers expected: the other nodes alive when it started.
    expected: usize,
    received: usize,
    timer: u64,
    /// Broadcast with ack: clients the other nodes reported, and their acks so far.
    clients: u64,
    acks: u64,
}

/// An ack this node owes a requester on another node.
struct Owed {
    nsp: String,
    request_id: String,
    emit: bool,
}

/// A namespace open on this node.
struct Namespace {
    /// Other nodes' uids, and when each was last heard from in this namespace.
    nodes: HashMap<String, Instant>,
    /// When this node last inserted a document here (a heartbeat is due after quiet).
    last_insert: Instant,
}

pub struct Node {
    opts: Options,
    /// This node's uid, one for all namespaces (as `createAdapter`'s `uid`).
    uid: String,
    namespaces: HashMap<String, Namespace>,
    watching: bool,
    next: u64,
    requests: HashMap<String, Request>,
    timers: HashMap<u64, String>,
    heartbeats: HashMap<u64, String>,
    owed: HashMap<u64, Owed>,
}

impl Node {
    pub fn new(opts: Options, uid: String) -> Node {
        Node {
            opts,
            uid,
            namespaces: HashMap::new(),
            watching: false,
            next: 0,
            requests: HashMap::new(),
            timers: HashMap::new(),
            heartbeats: HashMap::new(),
            owed: HashMap::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Starts reading the collection (once), then says this node is here.
    pub fn open(&mut self, nsp: String) -> Result<(), Error> {
        if self.namespaces.contains_key(&nsp) {
            return Ok(());
        }
        if !self.watching {
            let feed = match self.opts.feed {
                // Everything but our own documents (the Node.js adapter's filter).
                Feed::ChangeStream => docstore::Feed::ChangeStream(bson_bytes(
                    &bson::doc! {"fullDocument.uid": {"$ne": &self.uid}},
                )),
                Feed::Capped => docstore::Feed::Tail,
            };
            let setup = match self.opts.ttl_seconds {
                Some(seconds) => docstore::Setup::Ttl(seconds),
                None => docstore::Setup::Capped(self.opts.capped_size),
            };
            docstore::watch(&self.opts.collection, &feed, setup)?;
            self.watching = true;
        }
        self.namespaces.insert(
            nsp.clone(),
            Namespace {
                nodes: HashMap::new(),
                last_insert: Instant::now(),
            },
        );
        self.insert(&nsp, Body::InitialHeartbeat)?;
        let timer = timers::start(self.opts.heartbeat_interval);
        self.heartbeats.insert(timer, nsp);
        Ok(())
    }

    /// Requests still open end now.
    pub fn close(&mut self) -> Result<(), Error> {
        let ids: Vec<String> = self.requests.keys().cloned().collect();
        for id in ids {
            self.finish(&id, Err(Error::Other("the adapter is closing".into())));
        }
        Ok(())
    }

    /// Inserts one message of this node in `nsp`.
    fn insert(&mut self, nsp: &str, body: Body) -> Result<(), Error> {
        let ns = self
            .namespaces
            .get_mut(nsp)
            .ok_or_else(|| Error::Invalid(format!("namespace {nsp} was not opened")))?;
        ns.last_insert = Instant::now();
        let mut doc = Message {
            uid: self.uid.clone(),
            nsp: nsp.to_string(),
            body,
        }
        .to_document();
        if self.opts.created_at {
            doc.insert("createdAt", bson::DateTime::now());
        }
        docstore::insert(&self.opts.collection, &bson_bytes(&doc))
    }

    /// An answer to another node's request; a failure is logged (the requester times out).
    fn answer(&mut self, nsp: &str, body: Body) {
        if let Err(e) = self.insert(nsp, body) {
            warn(&format!("answer in {nsp} not inserted: {e:?}"));
        }
    }

    /// The other nodes heard from within `heartbeatTimeout`; the others are forgotten.
    fn live(&mut self, nsp: &str) -> usize {
        let timeout = u128::from(self.opts.heartbeat_timeout);
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return 0;
        };
        ns.nodes.retain(|uid, seen| {
            let alive = seen.elapsed().as_millis() <= timeout;
            if !alive {
                log::log(
                    log::Level::Info,
                    &format!("node {uid} seems down (no document in {nsp} for {timeout} ms)"),
                );
            }
            alive
        });
        ns.nodes.len()
    }

    pub fn broadcast(&mut self, nsp: &str, packet: Raw, opts: &BroadcastOpts) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        let opts = wire_opts(opts, None);
        self.insert(
            nsp,
            Body::Broadcast {
                packet,
                request_id: None,
                opts,
            },
        )
    }

    pub fn rooms_op(
        &mut self,
        nsp: &str,
        body: impl FnOnce(Opts) -> Body,
        opts: &BroadcastOpts,
    ) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        self.insert(nsp, body(wire_opts(opts, None)))
    }

    pub fn broadcast_with_ack(
        &mut self,
        nsp: &str,
        host: u64,
        packet: Raw,
        opts: &BroadcastOpts,
        timeout_ms: u32,
    ) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            requests::finish(host, Ok(()));
            return Ok(());
        }
        let opts = wire_opts(opts, Some(timeout_ms.into()));
        self.request(nsp, host, Kind::BroadcastAck, timeout_ms, |request_id| {
            Body::Broadcast {
                packet,
                request_id: Some(request_id),
                opts,
            }
        })
    }

    pub fn fetch_sockets(
        &mut self,
        nsp: &str,
        host: u64,
        opts: &BroadcastOpts,
    ) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            requests::finish(host, Ok(()));
            return Ok(());
        }
        let opts = wire_opts(opts, None);
        let timeout = self.opts.requests_timeout;
        self.request(nsp, host, Kind::Fetch, timeout, |request_id| {
            Body::FetchSockets { opts, request_id }
        })
    }

    /// The Node.js MongoDB adapter answers `allRooms` with its own rooms only; this node
    /// asks every node for its sockets (which Node.js nodes answer) and unites their rooms.
    pub fn all_rooms(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        let timeout = self.opts.requests_timeout;
        self.request(nsp, host, Kind::AllRooms, timeout, |request_id| {
            Body::FetchSockets {
                opts: Opts::default(),
                request_id,
            }
        })
    }

    pub fn server_count(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        let n = 1 + self.live(nsp);
        requests::reply(host, &Answer::ServerCount(n.min(u32::MAX as usize) as u32));
        requests::finish(host, Ok(()));
        Ok(())
    }

    pub fn server_side_emit(
        &mut self,
        nsp: &str,
        host: Option<u64>,
        data: Raw,
    ) -> Result<(), Error> {
        match host {
            None => self.insert(
                nsp,
                Body::ServerSideEmit {
                    request_id: None,
                    packet: data,
                },
            ),
            Some(host) => {
                let timeout = self.opts.requests_timeout;
                self.request(nsp, host, Kind::Emit, timeout, |request_id| {
                    Body::ServerSideEmit {
                        request_id: Some(request_id),
                        packet: data,
                    }
                })
            }
        }
    }

    /// Opens a request to the nodes alive now and inserts it; with none, it is done.
    fn request(
        &mut self,
        nsp: &str,
        host: u64,
        kind: Kind,
        timeout_ms: u32,
        body: impl FnOnce(String) -> Body,
    ) -> Result<(), Error> {
        let expected = self.live(nsp);
        if expected == 0 {
            requests::finish(host, Ok(()));
            return Ok(());
        }
        let n = self.next();
        let id = format!("{}{n:x}", self.uid);
        let timer = timers::start(timeout_ms);
        self.timers.insert(timer, id.clone());
        self.requests.insert(
            id.clone(),
            Request {
                host,
                kind,
                expected,
                received: 0,
                timer,
                clients: 0,
                acks: 0,
            },
        );
        if let Err(e) = self.insert(nsp, body(id.clone())) {
            self.finish(&id, Err(e.clone()));
            return Err(e);
        }
        Ok(())
    }

    pub fn on_timer(&mut self, timer: u64) {
        if let Some(nsp) = self.heartbeats.remove(&timer) {
            return self.heartbeat(nsp);
        }
        let Some(id) = self.timers.remove(&timer) else {
            return;
        };
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        let msg = format!(
            "timeout reached: only {} responses received out of {}",
            req.received, req.expected
        );
        self.finish(&id, Err(Error::Timeout(msg)));
    }

    /// Says this node is alive when it has inserted nothing for `heartbeatInterval`.
    fn heartbeat(&mut self, nsp: String) {
        let interval = self.opts.heartbeat_interval;
        let Some(ns) = self.namespaces.get(&nsp) else {
            return;
        };
        let quiet = ns.last_insert.elapsed().as_millis();
        let next = if quiet >= u128::from(interval) {
            if let Err(e) = self.insert(&nsp, Body::Heartbeat) {
                warn(&format!("heartbeat in {nsp} not inserted: {e:?}"));
            }
            interval
        } else {
            interval - quiet as u32
        };
        self.heartbeats.insert(timers::start(next.max(1)), nsp);
    }

    fn finish_if_done(&mut self, id: &str) {
        let Some(req) = self.requests.get(id) else {
            return;
        };
        let done = req.received >= req.expected
            && (req.kind != Kind::BroadcastAck || req.acks >= req.clients);
        if done {
            self.finish(id, Ok(()));
        }
    }

    fn finish(&mut self, id: &str, outcome: Result<(), Error>) {
        if let Some(req) = self.requests.remove(id) {
            timers::cancel(req.timer);
            self.timers.remove(&req.timer);
            requests::finish(req.host, outcome.as_ref().map(|_| ()));
        }
    }

    pub fn on_local_ack(&mut self, handle: u64, ack: Option<Vec<u8>>) {
        match ack {
            Some(args) => {
                if let Some(o) = self.owed.get(&handle) {
                    let (nsp, request_id) = (o.nsp.clone(), o.request_id.clone());
                    self.answer(
                        &nsp,
                        Body::BroadcastAck {
                            request_id,
                            packet: encode(&first_arg(&args)),
                        },
                    );
                }
            }
            None => {
                self.owed.remove(&handle);
            }
        }
    }

    pub fn on_server_side_ack(&mut self, handle: u64, data: Vec<u8>) {
        if let Some(o) = self.owed.remove(&handle).filter(|o| o.emit) {
            self.answer(
                &o.nsp,
                Body::ServerSideEmitResponse {
                    request_id: o.request_id,
                    packet: encode(&first_arg(&data)),
                },
            );
        }
    }

    /// After the feed was lost, other nodes may have forgotten this one: say it is here.
    pub fn on_connection(&mut self, up: bool) {
        let state = if up { "reopened" } else { "lost" };
        log::log(log::Level::Info, &format!("MongoDB feed {state}"));
        if up {
            let names: Vec<String> = self.namespaces.keys().cloned().collect();
            for nsp in names {
                self.answer(&nsp, Body::InitialHeartbeat);
            }
        }
    }

    /// A document from the collection. Malformed ones are errors (the host drops and
    /// counts them); those of namespaces this node lacks, and our own, are ignored.
    pub fn on_document(&mut self, document: &[u8]) -> Result<(), Error> {
        let named = rooms_named(document)?;
        if named > MAX_ROOMS {
            return Err(Error::Invalid(format!(
                "document names {named} rooms, more than {MAX_ROOMS}"
            )));
        }
        let raw = Document::from_reader(document)
            .map_err(|e| Error::Invalid(format!("document is not BSON: {e}")))?;
        if raw.get_i32("type") == Ok(SESSION) {
            return Ok(());
        }
        let msg = Message::from_value(
            from_bson(&Bson::Document(raw)).map_err(|e| Error::Invalid(e.to_string()))?,
        )
        .map_err(|e| Error::Invalid(format!("document: {e}")))?;
        if msg.uid == self.uid {
            return Ok(()); // ours (a capped collection holds everyone's)
        }

        let nsp = msg.nsp;
        let Some(ns) = self.namespaces.get_mut(&nsp) else {
            return Ok(());
        };
        if msg.uid != EMITTER_UID {
            ns.nodes.insert(msg.uid.clone(), Instant::now());
        }
        match msg.body {
            Body::InitialHeartbeat => self.answer(&nsp, Body::Heartbeat),
            Body::Heartbeat | Body::AdapterClose => {}
            Body::Broadcast {
                packet,
                request_id: None,
                opts,
            } => sockets::broadcast(&nsp, &packet, &host_opts(&opts))?,
            Body::Broadcast {
                packet,
                request_id: Some(request_id),
                opts,
            } => {
                let handle = self.next();
                let timeout = opts.flags.timeout.map(|t| t.min(u32::MAX as u64) as u32);
                let count =
                    sockets::broadcast_with_ack(&nsp, &packet, &host_opts(&opts), timeout, handle)?;
                self.owed.insert(
                    handle,
                    Owed {
                        nsp: nsp.clone(),
                        request_id: request_id.clone(),
                        emit: false,
                    },
                );
                self.answer(
                    &nsp,
                    Body::BroadcastClientCount {
                        request_id,
                        client_count: count.into(),
                    },
                );
            }
            Body::SocketsJoin { opts, rooms } => {
                sockets::add_sockets(&nsp, &host_opts(&opts), &rooms)
            }
            Body::SocketsLeave { opts, rooms } => {
                sockets::del_sockets(&nsp, &host_opts(&opts), &rooms)
            }
            Body::DisconnectSockets { opts, close } => {
                sockets::disconnect(&nsp, &host_opts(&opts), close)?
            }
            Body::FetchSockets { opts, request_id } => {
                let found = sockets::fetch(&nsp, &host_opts(&opts));
                let sockets = found.iter().map(socket_to_wire).collect();
                self.answer(
                    &nsp,
                    Body::FetchSocketsResponse {
                        request_id,
                        sockets,
                    },
                );
            }
            Body::ServerSideEmit { request_id, packet } => {
                let handle = request_id.map(|request_id| {
                    let handle = self.next();
                    self.owed.insert(
                        handle,
                        Owed {
                            nsp: nsp.clone(),
                            request_id,
                            emit: true,
                        },
                    );
                    handle
                });
                sockets::server_side_emit(&nsp, &packet, handle)?;
            }
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            } => self.on_answer(&request_id, |req| {
                req.received += 1;
                let found: Vec<SocketInfo> =
                    sockets.iter().filter_map(|s| socket_from_wire(s)).collect();
                Some(match req.kind {
                    Kind::AllRooms => {
                        let mut rooms: Vec<String> = Vec::new();
                        for s in found {
                            rooms.extend(s.rooms);
                        }
                        rooms.sort();
                        rooms.dedup();
                        Answer::Rooms(rooms)
                    }
                    _ => Answer::Sockets(found),
                })
            }),
            Body::ServerSideEmitResponse { request_id, packet } => {
                self.on_answer(&request_id, |req| {
                    req.received += 1;
                    Some(Answer::ServerAck(encode(&Value::Array(vec![decode(
                        &packet,
                    )]))))
                })
            }
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => self.on_answer(&request_id, |req| {
                req.received += 1;
                req.clients += client_count;
                Some(Answer::ClientCount(client_count.min(u32::MAX as u64) as u32))
            }),
            Body::BroadcastAck { request_id, packet } => self.on_answer(&request_id, |req| {
                req.acks += 1;
                Some(Answer::Ack(encode(&Value::Array(vec![decode(&packet)]))))
            }),
        }
        Ok(())
    }

    /// Applies an answer to one of our requests (answers to other nodes' requests are
    /// read by everyone, and ignored here).
    fn on_answer(&mut self, request_id: &str, apply: impl FnOnce(&mut Request) -> Option<Answer>) {
        let Some(req) = self.requests.get_mut(request_id) else {
            return;
        };
        if let Some(answer) = apply(req) {
            requests::reply(req.host, &answer);
        }
        self.finish_if_done(request_id);
    }
}

/// How many rooms `data.opts` names (targeted and excepted), read without decoding the
/// document, so that an oversized one costs little.
fn rooms_named(document: &[u8]) -> Result<usize, Error> {
    let raw = bson::RawDocument::from_bytes(document)
        .map_err(|e| Error::Invalid(format!("document is not BSON: {e}")))?;
    let Ok(opts) = raw
        .get_document("data")
        .and_then(|data| data.get_document("opts"))
    else {
        return Ok(0);
    };
    let count = |key: &str| opts.get_array(key).map_or(0, |a| a.into_iter().count());
    Ok(count("rooms") + count("except"))
}

fn warn(msg: &str) {
    log::log(log::Level::Warn, msg);
}

fn bson_bytes(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a document into a Vec fails only past BSON's nesting limits, which the
    // host's MessagePack values cannot reach; an empty result is refused by the host.
    let _ = doc.to_writer(&mut out);
    out
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

fn decode(bytes: &[u8]) -> Value {
    wasio_cluster_protocol::read_any(bytes).unwrap_or(Value::Nil)
}

/// The first of a MessagePack array of ack arguments (acks carry one argument).
fn first_arg(args: &[u8]) -> Value {
    match decode(args) {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        _ => Value::Nil,
    }
}

/// The host's options as they travel.
fn wire_opts(o: &BroadcastOpts, timeout: Option<u64>) -> Opts {
    Opts::for_operation(
        &o.rooms,
        &o.except,
        o.sid.as_deref(),
        o.flags.contains(BroadcastFlags::BROADCAST),
        o.flags.contains(BroadcastFlags::VOLATILE),
        timeout,
    )
}

/// Received options as the host takes them (the sender is already in `except`).
fn host_opts(o: &Opts) -> BroadcastOpts {
    let mut flags = BroadcastFlags::empty();
    if o.flags.volatile == Some(true) {
        flags |= BroadcastFlags::VOLATILE;
    }
    BroadcastOpts {
        flags,
        rooms: o.rooms.clone(),
        except: o.except.clone(),
        sid: None,
        server_id: None,
    }
}

fn socket_to_wire(s: &SocketInfo) -> Raw {
    encode(&Value::Map(vec![
        ("id".into(), s.id.as_str().into()),
        ("handshake".into(), decode(&s.handshake)),
        (
            "rooms".into(),
            Value::Array(s.rooms.iter().map(|r| r.as_str().into()).collect()),
        ),
        ("data".into(), decode(&s.data)),
    ]))
}

fn socket_from_wire(raw: &[u8]) -> Option<SocketInfo> {
    let v = decode(raw);
    let field = |k: &str| {
        v.as_map()?
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v)
    };
    let id = field("id")?.as_str()?.to_string();
    let rooms = match field("rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let handshake = field("handshake").cloned().unwrap_or(Value::Map(vec![]));
    let data = field("data").cloned().unwrap_or(Value::Nil);
    Some(SocketInfo {
        id,
        // Node.js answers do not say which node a socket is on.
        server_id: String::new(),
        rooms,
        handshake: encode(&handshake),
        data: encode(&data),
    })
}
