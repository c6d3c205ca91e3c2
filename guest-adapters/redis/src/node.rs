//! What both modes share: the requests this node waits on, the acks it owes other
//! nodes, and what a message from another node does to this node's sockets. The modes
//! ([`crate::classic`], [`crate::sharded`]) only say where things travel and how.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

use rmpv::Value;
use wasio_cluster_protocol::{Opts, Raw};

use crate::bindings::exports::wasio::adapter::guest::BroadcastOpts;
use crate::bindings::wasio::adapter::requests::{self, Answer};
use crate::bindings::wasio::adapter::types::{BroadcastFlags, Error, SocketInfo};
use crate::bindings::wasio::adapter::{log, pubsub, sockets, timers};
use crate::options::{Mode, Options, Rooms};

/// How often the dynamic sharded mode drops the channels of rooms that are gone (and
/// picks up rooms joined where the host could not see it).
const ROOM_SYNC_MS: u32 = 5000;
use crate::{classic, sharded, wire};

/// A room operation relayed to the other nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomsOp {
    Join(Vec<String>),
    Leave(Vec<String>),
    Disconnect(bool),
}

/// What this node publishes, whatever the mode.
#[derive(Debug)]
pub enum Out {
    /// `request_id` set: each node answers with its client count and client acks.
    Broadcast {
        packet: Raw,
        opts: Opts,
        request_id: Option<String>,
    },
    Rooms {
        op: RoomsOp,
        opts: Opts,
    },
    Fetch {
        request_id: String,
        opts: Opts,
    },
    AllRooms {
        request_id: String,
    },
    /// `data` is the MessagePack array `[event, ...args]`.
    Emit {
        request_id: Option<String>,
        data: Raw,
    },
}

/// One node's part of an answer, whatever the mode.
#[derive(Debug)]
pub enum Part {
    /// `{id, handshake, rooms, data}` maps.
    Sockets(Vec<Value>),
    /// Socket ids only (the classic SOCKETS request).
    SocketIds(Vec<String>),
    Rooms(Vec<String>),
    EmitAck(Value),
    ClientCount(u64),
    Ack(Value),
}

/// A message from another node (or an emitter), decoded.
#[derive(Debug)]
pub enum In {
    Broadcast {
        packet: Raw,
        opts: Opts,
        ack: Option<String>,
    },
    Rooms {
        op: RoomsOp,
        opts: Opts,
    },
    Fetch {
        request_id: String,
        opts: Opts,
        ids_only: bool,
    },
    AllRooms {
        request_id: String,
    },
    Emit {
        request_id: Option<String>,
        data: Raw,
    },
    /// An answer to one of our requests.
    Part {
        request_id: String,
        part: Part,
    },
    /// Valid, but nothing for us (heartbeats, legacy replies).
    Ignore,
}

/// A decoded message with its sender.
#[derive(Debug)]
pub struct Envelope {
    /// The sender's adapter uid (empty when the protocol does not say).
    pub uid: String,
    /// The namespace (empty for answers, which are matched by request id).
    pub nsp: String,
    pub body: In,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fetch,
    AllRooms,
    Emit,
    Count,
    BroadcastAck,
}

/// A request this node started and waits on.
struct Request {
    host: u64,
    nsp: String,
    kind: Kind,
    /// Answers expected from the other nodes; known once Redis said how many there are.
    expected: Option<u64>,
    received: u64,
    timer: u64,
    /// Published once the node count is known (nothing to send to a lone node).
    deferred: Option<Out>,
    /// Broadcast with ack: clients the other nodes reported, and their acks so far.
    clients: u64,
    acks: u64,
}

/// An ack this node owes a requester on another node.
struct Owed {
    nsp: String,
    requester: String,
    request_id: String,
    emit: bool,
}

pub struct Node {
    pub opts: Options,
    /// This node's adapter uid per open namespace.
    uids: HashMap<String, String>,
    /// This node's uid on the wire: the host's node id, the same in every namespace and
    /// kept across hot swaps, so a swapped-in adapter knows the echo of what the one
    /// before it published (and other nodes see the same node).
    node_id: String,
    seed: String,
    next: u64,
    requests: HashMap<String, Request>,
    tickets: HashMap<u64, String>,
    timers: HashMap<u64, String>,
    owed: HashMap<u64, Owed>,
    /// Dynamic sharded mode: per namespace, the rooms whose channel we subscribed.
    room_channels: HashMap<String, HashSet<String>>,
    /// Timers of the periodic room sync, by namespace.
    syncs: HashMap<u64, String>,
}

impl Node {
    pub fn new(opts: Options, node_id: String) -> Node {
        Node {
            opts,
            uids: HashMap::new(),
            node_id,
            seed: random_id(),
            next: 0,
            requests: HashMap::new(),
            tickets: HashMap::new(),
            timers: HashMap::new(),
            owed: HashMap::new(),
            room_channels: HashMap::new(),
            syncs: HashMap::new(),
        }
    }

    fn per_room(&self) -> bool {
        self.opts.mode == Mode::Sharded && self.opts.rooms != Rooms::Static
    }

    /// Subscribes the channels of `rooms` not subscribed yet.
    pub fn on_rooms(&mut self, nsp: &str, rooms: Vec<String>) {
        if !self.per_room() || !self.uids.contains_key(nsp) {
            return;
        }
        let set = self.room_channels.entry(nsp.to_string()).or_default();
        for room in rooms {
            if self.opts.rooms.own_channel(&room) && !set.contains(&room) {
                let ch = sharded::room_channel(&self.opts, nsp, &room);
                match pubsub::subscribe(&ch, pubsub::Mode::Sharded) {
                    Ok(()) => {
                        set.insert(room);
                    }
                    Err(e) => warn(&format!(
                        "cannot subscribe {ch}: {e:?}; retried at the next sync"
                    )),
                }
            }
        }
    }

    /// Drops the channels of rooms gone from this node and asks the host for the
    /// current rooms again (arriving as `on-rooms`).
    fn sync_rooms(&mut self, nsp: String) {
        let all = host_opts(&Opts::default());
        let current: HashSet<String> = sockets::rooms(&nsp, &all).into_iter().collect();
        if let Some(set) = self.room_channels.get_mut(&nsp) {
            let gone: Vec<String> = set.difference(&current).cloned().collect();
            for room in gone {
                let ch = sharded::room_channel(&self.opts, &nsp, &room);
                if pubsub::unsubscribe(&ch, pubsub::Mode::Sharded).is_ok() {
                    set.remove(&room);
                }
            }
        }
        sockets::watch_rooms(&nsp);
        self.syncs.insert(timers::start(ROOM_SYNC_MS), nsp);
    }

    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn uid(&self, nsp: &str) -> Result<&str, Error> {
        self.uids
            .get(nsp)
            .map(String::as_str)
            .ok_or_else(|| Error::Invalid(format!("namespace {nsp} was not opened")))
    }

    pub fn open(&mut self, nsp: String) -> Result<(), Error> {
        if self.uids.contains_key(&nsp) {
            return Ok(());
        }
        let uid = self.node_id.clone();
        match self.opts.mode {
            Mode::Classic => classic::subscribe(&self.opts, &nsp, &uid)?,
            Mode::Sharded => sharded::subscribe(&self.opts, &nsp, &uid)?,
        }
        self.uids.insert(nsp.clone(), uid);
        if self.per_room() {
            // The current rooms arrive at once as `on-rooms`, then each new one.
            sockets::watch_rooms(&nsp);
            self.syncs.insert(timers::start(ROOM_SYNC_MS), nsp);
        }
        Ok(())
    }

    /// Requests still open end now; the host drops the connections (and with them our
    /// subscriptions, so other nodes stop counting us) right after.
    pub fn close(&mut self) -> Result<(), Error> {
        let ids: Vec<String> = self.requests.keys().cloned().collect();
        for id in ids {
            self.finish(&id, Err(Error::Other("the adapter is closing".into())));
        }
        Ok(())
    }

    fn publish(&self, nsp: &str, out: &Out) -> Result<(), Error> {
        let uid = self.uid(nsp)?;
        match self.opts.mode {
            Mode::Classic => classic::publish(&self.opts, nsp, uid, out),
            Mode::Sharded => sharded::publish(&self.opts, nsp, uid, out),
        }
    }

    fn reply_to(&self, nsp: &str, requester: &str, request_id: &str, part: Part) {
        let Ok(uid) = self.uid(nsp) else { return };
        let res = match self.opts.mode {
            Mode::Classic => classic::reply(&self.opts, nsp, requester, request_id, part),
            Mode::Sharded => sharded::reply(&self.opts, nsp, uid, requester, request_id, part),
        };
        if let Err(e) = res {
            warn(&format!("answer to {requester} not sent: {e:?}"));
        }
    }

    pub fn broadcast(&mut self, nsp: &str, packet: Raw, opts: &BroadcastOpts) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        let out = Out::Broadcast {
            packet,
            opts: wire_opts(opts, None),
            request_id: None,
        };
        self.publish(nsp, &out)
    }

    pub fn rooms_op(&mut self, nsp: &str, op: RoomsOp, opts: &BroadcastOpts) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        let out = Out::Rooms {
            op,
            opts: wire_opts(opts, None),
        };
        self.publish(nsp, &out)
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
        let wire = wire_opts(opts, Some(timeout_ms as u64));
        // Published at once (the count only tells when everyone answered).
        let request_id = self.start(nsp, host, Kind::BroadcastAck, timeout_ms, |id| {
            Some(Out::Broadcast {
                packet,
                opts: wire,
                request_id: Some(id),
            })
        })?;
        let out = self
            .requests
            .get_mut(&request_id)
            .and_then(|r| r.deferred.take());
        if let Some(out) = out
            && let Err(e) = self.publish(nsp, &out)
        {
            self.finish(&request_id, Err(e.clone()));
            return Err(e);
        }
        Ok(())
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
        let wire = wire_opts(opts, None);
        self.start(nsp, host, Kind::Fetch, self.opts.requests_timeout, |id| {
            Some(Out::Fetch {
                request_id: id,
                opts: wire,
            })
        })?;
        Ok(())
    }

    pub fn all_rooms(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        let sharded = self.opts.mode == Mode::Sharded;
        self.start(
            nsp,
            host,
            Kind::AllRooms,
            self.opts.requests_timeout,
            |id| {
                Some(if sharded {
                    // The cluster message family has no all-rooms request: the rooms of
                    // every node's sockets answer it (Node.js's sharded adapter has none).
                    Out::Fetch {
                        request_id: id,
                        opts: Opts::default(),
                    }
                } else {
                    Out::AllRooms { request_id: id }
                })
            },
        )?;
        Ok(())
    }

    pub fn server_count(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        // Nothing to publish: Redis's subscriber count is the answer.
        self.start(nsp, host, Kind::Count, self.opts.requests_timeout, |_| None)?;
        Ok(())
    }

    pub fn server_side_emit(
        &mut self,
        nsp: &str,
        host: Option<u64>,
        data: Raw,
    ) -> Result<(), Error> {
        match host {
            None => self.publish(
                nsp,
                &Out::Emit {
                    request_id: None,
                    data,
                },
            ),
            Some(host) => {
                self.start(nsp, host, Kind::Emit, self.opts.requests_timeout, |id| {
                    Some(Out::Emit {
                        request_id: Some(id),
                        data,
                    })
                })?;
                Ok(())
            }
        }
    }

    /// Opens a request: its timer runs from now, and Redis is asked how many nodes
    /// there are; `out` (built with the request id) goes out once that is known.
    fn start(
        &mut self,
        nsp: &str,
        host: u64,
        kind: Kind,
        timeout_ms: u32,
        out: impl FnOnce(String) -> Option<Out>,
    ) -> Result<String, Error> {
        self.uid(nsp)?;
        let n = self.next();
        let id = format!("{}{n}", self.seed);
        let (channel, mode) = match self.opts.mode {
            Mode::Classic => (
                classic::count_channel(&self.opts, nsp),
                pubsub::Mode::Classic,
            ),
            Mode::Sharded => (sharded::channel(&self.opts, nsp), pubsub::Mode::Sharded),
        };
        let ticket = self.next();
        pubsub::count_subscribers(&[channel], mode, ticket)?;
        let timer = timers::start(timeout_ms);
        self.tickets.insert(ticket, id.clone());
        self.timers.insert(timer, id.clone());
        self.requests.insert(
            id.clone(),
            Request {
                host,
                nsp: nsp.to_string(),
                kind,
                expected: None,
                received: 0,
                timer,
                deferred: out(id.clone()),
                clients: 0,
                acks: 0,
            },
        );
        Ok(id)
    }

    pub fn on_counts(&mut self, ticket: u64, counts: Result<Vec<u64>, Error>) {
        let Some(id) = self.tickets.remove(&ticket) else {
            return;
        };
        let nodes = match counts {
            Ok(c) => c.first().copied().unwrap_or(0).max(1),
            Err(e) => return self.finish(&id, Err(e)),
        };
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.expected = Some(nodes - 1);
        if req.kind == Kind::Count {
            requests::reply(
                req.host,
                &Answer::ServerCount(nodes.min(u32::MAX as u64) as u32),
            );
            return self.finish(&id, Ok(()));
        }
        if let Some(out) = req.deferred.take().filter(|_| nodes > 1) {
            let nsp = req.nsp.clone();
            if let Err(e) = self.publish(&nsp, &out) {
                return self.finish(&id, Err(e));
            }
        }
        self.finish_if_done(&id);
    }

    pub fn on_timer(&mut self, timer: u64) {
        if let Some(nsp) = self.syncs.remove(&timer) {
            return self.sync_rooms(nsp);
        }
        let Some(id) = self.timers.remove(&timer) else {
            return;
        };
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        let msg = match req.expected {
            Some(n) => format!(
                "timeout reached: only {} responses received out of {n}",
                req.received
            ),
            None => "timeout reached: Redis did not say how many nodes there are".to_string(),
        };
        self.finish(&id, Err(Error::Timeout(msg)));
    }

    fn finish_if_done(&mut self, id: &str) {
        let Some(req) = self.requests.get(id) else {
            return;
        };
        let Some(expected) = req.expected else { return };
        let done =
            req.received >= expected && (req.kind != Kind::BroadcastAck || req.acks >= req.clients);
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
                    let (nsp, requester, id) =
                        (o.nsp.clone(), o.requester.clone(), o.request_id.clone());
                    self.reply_to(&nsp, &requester, &id, Part::Ack(wire::first_arg(&args)));
                }
            }
            None => {
                self.owed.remove(&handle);
            }
        }
    }

    pub fn on_server_side_ack(&mut self, handle: u64, data: Vec<u8>) {
        if let Some(o) = self.owed.remove(&handle).filter(|o| o.emit) {
            self.reply_to(
                &o.nsp,
                &o.requester,
                &o.request_id,
                Part::EmitAck(wire::first_arg(&data)),
            );
        }
    }

    pub fn on_connection(&mut self, up: bool) {
        let state = if up {
            "back; subscriptions replayed"
        } else {
            "lost"
        };
        log::log(log::Level::Info, &format!("Redis connection {state}"));
    }

    /// A message from Redis: decoded by the mode, then acted on. Malformed messages
    /// are errors (the host drops and counts them); foreign ones are ignored.
    pub fn on_message(&mut self, channel: &str, payload: &[u8]) -> Result<(), Error> {
        let env = match self.opts.mode {
            Mode::Classic => classic::decode(&self.opts, channel, payload),
            Mode::Sharded => sharded::decode(payload),
        }
        .map_err(|e| Error::Invalid(format!("message on {channel}: {e}")))?;
        if let In::Part { request_id, part } = env.body {
            return self.on_part(&request_id, part);
        }
        match self.uids.get(&env.nsp) {
            None => return Ok(()),                         // a namespace this node lacks
            Some(uid) if *uid == env.uid => return Ok(()), // our own message
            Some(_) => {}
        }
        let nsp = env.nsp;
        match env.body {
            In::Broadcast {
                packet,
                opts,
                ack: None,
            } => {
                sockets::broadcast(&nsp, &packet, &host_opts(&opts))?;
            }
            In::Broadcast {
                packet,
                opts,
                ack: Some(request_id),
            } => {
                let handle = self.next();
                let timeout = opts.flags.timeout.map(|t| t.min(u32::MAX as u64) as u32);
                let count =
                    sockets::broadcast_with_ack(&nsp, &packet, &host_opts(&opts), timeout, handle)?;
                self.owed.insert(
                    handle,
                    Owed {
                        nsp: nsp.clone(),
                        requester: env.uid.clone(),
                        request_id: request_id.clone(),
                        emit: false,
                    },
                );
                self.reply_to(&nsp, &env.uid, &request_id, Part::ClientCount(count as u64));
            }
            In::Rooms { op, opts } => {
                let opts = host_opts(&opts);
                match op {
                    RoomsOp::Join(rooms) => {
                        sockets::add_sockets(&nsp, &opts, &rooms);
                        self.on_rooms(&nsp, rooms);
                    }
                    RoomsOp::Leave(rooms) => sockets::del_sockets(&nsp, &opts, &rooms),
                    RoomsOp::Disconnect(close) => sockets::disconnect(&nsp, &opts, close)?,
                }
            }
            In::Fetch {
                request_id,
                opts,
                ids_only,
            } => {
                let found = sockets::fetch(&nsp, &host_opts(&opts));
                let part = if ids_only {
                    Part::SocketIds(found.into_iter().map(|s| s.id).collect())
                } else {
                    Part::Sockets(found.iter().map(socket_to_wire).collect())
                };
                self.reply_to(&nsp, &env.uid, &request_id, part);
            }
            In::AllRooms { request_id } => {
                let rooms = sockets::rooms(&nsp, &host_opts(&Opts::default()));
                self.reply_to(&nsp, &env.uid, &request_id, Part::Rooms(rooms));
            }
            In::Emit { request_id, data } => {
                let handle = request_id.as_ref().map(|request_id| {
                    let handle = self.next();
                    self.owed.insert(
                        handle,
                        Owed {
                            nsp: nsp.clone(),
                            requester: env.uid.clone(),
                            request_id: request_id.clone(),
                            emit: true,
                        },
                    );
                    handle
                });
                sockets::server_side_emit(&nsp, &data, handle)?;
            }
            In::Part { .. } | In::Ignore => {}
        }
        Ok(())
    }

    fn on_part(&mut self, request_id: &str, part: Part) -> Result<(), Error> {
        // Answers to other nodes' requests travel on shared channels: not ours, ignored.
        let Some(req) = self.requests.get_mut(request_id) else {
            return Ok(());
        };
        let answer = match part {
            Part::Sockets(list) if req.kind == Kind::AllRooms => {
                req.received += 1;
                let mut rooms: Vec<String> = list
                    .iter()
                    .filter_map(socket_from_wire)
                    .flat_map(|s| s.rooms)
                    .collect();
                rooms.sort();
                rooms.dedup();
                Answer::Rooms(rooms)
            }
            Part::Sockets(list) => {
                req.received += 1;
                Answer::Sockets(list.iter().filter_map(socket_from_wire).collect())
            }
            Part::SocketIds(ids) => {
                req.received += 1;
                Answer::Sockets(
                    ids.into_iter()
                        .map(|id| socket_info(id, Vec::new(), &Value::Nil, &Value::Nil))
                        .collect(),
                )
            }
            Part::Rooms(rooms) => {
                req.received += 1;
                Answer::Rooms(rooms)
            }
            Part::EmitAck(v) => {
                req.received += 1;
                Answer::ServerAck(wire::as_args(v))
            }
            Part::ClientCount(n) => {
                req.received += 1;
                req.clients += n;
                Answer::ClientCount(n.min(u32::MAX as u64) as u32)
            }
            Part::Ack(v) => {
                req.acks += 1;
                Answer::Ack(wire::as_args(v))
            }
        };
        requests::reply(req.host, &answer);
        self.finish_if_done(request_id);
        Ok(())
    }
}

fn warn(msg: &str) {
    log::log(log::Level::Warn, msg);
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

fn socket_to_wire(s: &SocketInfo) -> Value {
    Value::Map(vec![
        ("id".into(), s.id.as_str().into()),
        ("handshake".into(), wire::decode(&s.handshake)),
        ("rooms".into(), wire::strings(&s.rooms)),
        ("data".into(), wire::decode(&s.data)),
    ])
}

fn socket_from_wire(v: &Value) -> Option<SocketInfo> {
    let id = wire::field(v, "id")?.as_str()?.to_string();
    let rooms = match wire::field(v, "rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let handshake = wire::field(v, "handshake")
        .cloned()
        .unwrap_or(Value::Map(vec![]));
    let data = wire::field(v, "data").cloned().unwrap_or(Value::Nil);
    Some(socket_info(id, rooms, &handshake, &data))
}

fn socket_info(id: String, rooms: Vec<String>, handshake: &Value, data: &Value) -> SocketInfo {
    SocketInfo {
        id,
        // Node.js answers do not say which node a socket is on.
        server_id: String::new(),
        rooms,
        handshake: wire::encode(handshake),
        data: wire::encode(data),
    }
}

/// 12 random hex digits (WASI's random source seeds `RandomState`).
fn random_id() -> String {
    let n = RandomState::new().hash_one(0u8);
    format!("{:012x}", n & 0xffff_ffff_ffff)
}
