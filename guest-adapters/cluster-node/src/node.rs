//! The node: `ClusterAdapter`'s bookkeeping over a [`Backend`] that only moves bytes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use wasio_cluster_protocol::{EMITTER_UID, Opts, Raw};

use crate::bindings::wasio::adapter::requests::{self, Answer};
use crate::bindings::wasio::adapter::types::{BroadcastFlags, BroadcastOpts, Error, SocketInfo};
use crate::bindings::wasio::adapter::{log, sockets, timers};
use crate::convert::{
    as_args, first_arg, host_opts, socket_from_wire, socket_id_only, socket_to_wire, wire_opts,
};
use crate::messages::{Envelope, In, Op, Part, Response, RoomsOp};

/// What a datasource does for a [`Node`]: the methods `ClusterAdapter` leaves to its
/// subclasses, in the backend's own encoding. A backend knows this node's uid from its
/// construction.
pub trait Backend {
    /// Starts receiving what the other nodes send in `nsp`.
    fn open(&mut self, nsp: &str) -> Result<(), Error>;
    /// Sends this node's `op` to the other nodes of `nsp` (`doPublish`; where an offset would come back, for connection-state recovery).
    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error>;
    /// Sends this node's part of an answer in `nsp` to its requester (`doPublishResponse`).
    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error>;
    /// Asks how many nodes listen in `nsp`, this one included, answered through [`Node::on_counts`] with `ticket` (`serverCount`; never asked with heartbeats).
    fn count_nodes(&mut self, nsp: &str, ticket: u64) -> Result<(), Error> {
        let _ = (nsp, ticket);
        Err(Error::Other(
            "this backend counts nodes by heartbeat".into(),
        ))
    }
    /// Called after another node made this node's sockets join `rooms` in `nsp`.
    fn joined(&mut self, _nsp: &str, _rooms: &[String]) {}
    /// Called when a timer fired that the backend started itself.
    fn on_timer(&mut self, _timer: u64) {}
}

/// How a node waits on the others.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a cluster request waits for the other nodes, in ms (`requestsTimeout`).
    pub requests_timeout: u32,
    /// With heartbeats (`ClusterAdapterWithHeartbeat`) the nodes are those heard from;
    /// without, the backend counts them.
    pub heartbeat: Option<Heartbeat>,
}

/// The liveness of `ClusterAdapterWithHeartbeat`.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// Quiet time after which this node says it is alive, in ms (`heartbeatInterval`).
    pub interval_ms: u32,
    /// Silence after which another node is taken for dead, in ms (`heartbeatTimeout`).
    pub timeout_ms: u32,
    /// The node reads the clock only through here, so that a guest without heartbeats
    /// links no clock (and its component imports none).
    clock: fn() -> Instant,
}

impl Heartbeat {
    pub fn new(interval_ms: u32, timeout_ms: u32) -> Heartbeat {
        Heartbeat {
            interval_ms,
            timeout_ms,
            clock: Instant::now,
        }
    }
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
    /// Answers expected from the other nodes: known at once with heartbeats, else once
    /// the backend counted the nodes.
    expected: Option<u64>,
    received: u64,
    timer: u64,
    /// Published once the node count is known (nothing to send to a lone node).
    deferred: Option<Op>,
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

/// A namespace open on this node.
struct Namespace {
    /// With heartbeats: the other nodes' uids, and when each was last heard from here.
    peers: HashMap<String, Instant>,
    /// With heartbeats: when this node last published here (a heartbeat is due after
    /// `heartbeatInterval` of quiet).
    last_publish: Option<Instant>,
}

/// One node of the cluster, over a backend `B`.
pub struct Node<B: ?Sized> {
    /// This node's uid on the wire: the host's node id, the same in every namespace and
    /// kept across hot swaps, so a swapped-in adapter knows the echo of what the one
    /// before it published (and other nodes see the same node).
    uid: String,
    settings: Settings,
    /// Starts this instance's request ids: random, so that a late answer to a replaced
    /// instance's request matches none of ours.
    seed: String,
    next: u64,
    namespaces: HashMap<String, Namespace>,
    requests: HashMap<String, Request>,
    tickets: HashMap<u64, String>,
    timers: HashMap<u64, String>,
    heartbeats: HashMap<u64, String>,
    owed: HashMap<u64, Owed>,
    backend: Box<B>,
}

impl<B: Backend + ?Sized> Node<B> {
    /// A node whose uid is `uid` (use the host's `node-id`).
    pub fn new(backend: Box<B>, uid: String, settings: Settings) -> Node<B> {
        Node {
            uid,
            settings,
            seed: random_id(),
            next: 0,
            namespaces: HashMap::new(),
            requests: HashMap::new(),
            tickets: HashMap::new(),
            timers: HashMap::new(),
            heartbeats: HashMap::new(),
            owed: HashMap::new(),
            backend,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Has the backend receive `nsp`; with heartbeats, says this node is here.
    pub fn open(&mut self, nsp: String) -> Result<(), Error> {
        if self.namespaces.contains_key(&nsp) {
            return Ok(());
        }
        self.backend.open(&nsp)?;
        self.namespaces.insert(
            nsp.clone(),
            Namespace {
                peers: HashMap::new(),
                last_publish: None,
            },
        );
        if let Some(hb) = self.settings.heartbeat {
            self.publish(&nsp, Op::InitialHeartbeat)?;
            self.heartbeats.insert(timers::start(hb.interval_ms), nsp);
        }
        Ok(())
    }

    /// Requests still open end now; the host drops the datasource's subscriptions or
    /// feeds right after.
    pub fn close(&mut self) -> Result<(), Error> {
        let ids: Vec<String> = self.requests.keys().cloned().collect();
        for id in ids {
            self.finish(&id, Err(Error::Other("the adapter is closing".into())));
        }
        Ok(())
    }

    /// Publishes one message of this node in `nsp`, which must be open.
    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        let now = self.settings.heartbeat.map(|hb| (hb.clock)());
        let ns = self
            .namespaces
            .get_mut(nsp)
            .ok_or_else(|| Error::Invalid(format!("namespace {nsp} was not opened")))?;
        if now.is_some() {
            ns.last_publish = now;
        }
        self.backend.publish(nsp, op)
    }

    /// Publishes a heartbeat, which no caller waits on; a failure is logged.
    fn publish_quietly(&mut self, nsp: &str, op: Op, what: &str) {
        if let Err(e) = self.publish(nsp, op) {
            warn(&format!("{what} in {nsp} not sent: {e:?}"));
        }
    }

    /// An answer to another node's request; a failure is logged (the requester times out).
    fn respond(&mut self, nsp: &str, requester: &str, request_id: &str, part: Part) {
        let now = self.settings.heartbeat.map(|hb| (hb.clock)());
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return;
        };
        if now.is_some() {
            ns.last_publish = now;
        }
        let response = Response {
            requester,
            request_id,
            part,
        };
        if let Err(e) = self.backend.publish_response(nsp, response) {
            warn(&format!("answer to {requester} in {nsp} not sent: {e:?}"));
        }
    }

    /// Relays what the host did to its own sockets, unless only they were meant.
    fn relay(
        &mut self,
        nsp: &str,
        opts: &BroadcastOpts,
        op: impl FnOnce(Opts) -> Op,
    ) -> Result<(), Error> {
        if opts.flags.contains(BroadcastFlags::LOCAL) {
            return Ok(());
        }
        let op = op(wire_opts(opts, None));
        self.publish(nsp, op)
    }

    pub fn broadcast(&mut self, nsp: &str, packet: Raw, opts: &BroadcastOpts) -> Result<(), Error> {
        self.relay(nsp, opts, |opts| Op::Broadcast {
            packet,
            opts,
            request_id: None,
        })
    }

    /// `add-sockets`, `del-sockets` and `disconnect-sockets`.
    pub fn rooms_op(&mut self, nsp: &str, op: RoomsOp, opts: &BroadcastOpts) -> Result<(), Error> {
        self.relay(nsp, opts, |opts| Op::Rooms { op, opts })
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
        let wire = wire_opts(opts, Some(timeout_ms.into()));
        self.request(nsp, host, Kind::BroadcastAck, timeout_ms, |id| {
            Some(Op::Broadcast {
                packet,
                opts: wire,
                request_id: Some(id),
            })
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
        let wire = wire_opts(opts, None);
        let timeout = self.settings.requests_timeout;
        self.request(nsp, host, Kind::Fetch, timeout, |request_id| {
            Some(Op::Fetch {
                request_id,
                opts: wire,
                ids_only: false,
            })
        })
    }

    /// Asks every node for its rooms (the Node.js MongoDB adapter answers `allRooms`
    /// with its own only; a protocol without the request unites the nodes' sockets').
    pub fn all_rooms(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        let timeout = self.settings.requests_timeout;
        self.request(nsp, host, Kind::AllRooms, timeout, |request_id| {
            Some(Op::AllRooms { request_id })
        })
    }

    /// Answered by the live nodes with heartbeats, else by the backend's count.
    pub fn server_count(&mut self, nsp: &str, host: u64) -> Result<(), Error> {
        let timeout = self.settings.requests_timeout;
        self.request(nsp, host, Kind::Count, timeout, |_| None)
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
                Op::Emit {
                    request_id: None,
                    data,
                },
            ),
            Some(host) => {
                let timeout = self.settings.requests_timeout;
                self.request(nsp, host, Kind::Emit, timeout, |id| {
                    Some(Op::Emit {
                        request_id: Some(id),
                        data,
                    })
                })
            }
        }
    }

    /// Opens a request; its timer runs from now. With heartbeats the other nodes are
    /// those alive now: none ends it at once, else `out` (built with the request id) is
    /// published. Without, the backend is asked how many nodes there are, and `out` goes
    /// once that is known (at once for a broadcast with acks: the count only tells when
    /// everyone answered).
    fn request(
        &mut self,
        nsp: &str,
        host: u64,
        kind: Kind,
        timeout_ms: u32,
        out: impl FnOnce(String) -> Option<Op>,
    ) -> Result<(), Error> {
        let expected = match self.settings.heartbeat {
            Some(_) => {
                let others = self.live(nsp) as u64;
                if kind == Kind::Count {
                    requests::reply(host, &Answer::ServerCount(clamp(others + 1)));
                    requests::finish(host, Ok(()));
                    return Ok(());
                }
                if others == 0 {
                    requests::finish(host, Ok(()));
                    return Ok(());
                }
                Some(others)
            }
            None => {
                if !self.namespaces.contains_key(nsp) {
                    return Err(Error::Invalid(format!("namespace {nsp} was not opened")));
                }
                None
            }
        };
        let n = self.next();
        let id = format!("{}{n}", self.seed);
        if expected.is_none() {
            let ticket = self.next();
            self.backend.count_nodes(nsp, ticket)?;
            self.tickets.insert(ticket, id.clone());
        }
        let timer = timers::start(timeout_ms);
        self.timers.insert(timer, id.clone());
        let mut out = out(id.clone());
        let now = expected.is_some() || kind == Kind::BroadcastAck;
        self.requests.insert(
            id.clone(),
            Request {
                host,
                nsp: nsp.to_string(),
                kind,
                expected,
                received: 0,
                timer,
                deferred: if now { None } else { out.take() },
                clients: 0,
                acks: 0,
            },
        );
        if let Some(out) = out
            && let Err(e) = self.publish(nsp, out)
        {
            self.finish(&id, Err(e.clone()));
            return Err(e);
        }
        Ok(())
    }

    /// The backend's answer to [`Backend::count_nodes`] (`guest.on-counts`).
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
            requests::reply(req.host, &Answer::ServerCount(clamp(nodes)));
            return self.finish(&id, Ok(()));
        }
        if let Some(out) = req.deferred.take().filter(|_| nodes > 1) {
            let nsp = req.nsp.clone();
            if let Err(e) = self.publish(&nsp, out) {
                return self.finish(&id, Err(e));
            }
        }
        self.finish_if_done(&id);
    }

    /// A timer fired: a heartbeat, a request's timeout, or one of the backend's.
    pub fn on_timer(&mut self, timer: u64) {
        if let Some(nsp) = self.heartbeats.remove(&timer) {
            return self.heartbeat(nsp);
        }
        let Some(id) = self.timers.remove(&timer) else {
            return self.backend.on_timer(timer);
        };
        let Some(req) = self.requests.get(&id) else {
            return;
        };
        let msg = match req.expected {
            Some(n) => format!(
                "timeout reached: only {} responses received out of {n}",
                req.received
            ),
            None => {
                "timeout reached: the datasource did not say how many nodes there are".to_string()
            }
        };
        self.finish(&id, Err(Error::Timeout(msg)));
    }

    /// Says this node is alive when it has published nothing for `heartbeatInterval`.
    fn heartbeat(&mut self, nsp: String) {
        let Some(hb) = self.settings.heartbeat else {
            return;
        };
        let Some(ns) = self.namespaces.get(&nsp) else {
            return;
        };
        let now = (hb.clock)();
        let quiet = ns
            .last_publish
            .map_or(u128::MAX, |t| now.saturating_duration_since(t).as_millis());
        let next = if quiet >= u128::from(hb.interval_ms) {
            self.publish_quietly(&nsp, Op::Heartbeat, "heartbeat");
            hb.interval_ms
        } else {
            hb.interval_ms - quiet as u32
        };
        self.heartbeats.insert(timers::start(next.max(1)), nsp);
    }

    /// The other nodes heard from in `nsp` within `heartbeatTimeout`; the others are
    /// forgotten.
    fn live(&mut self, nsp: &str) -> usize {
        let Some(hb) = self.settings.heartbeat else {
            return 0;
        };
        let timeout = u128::from(hb.timeout_ms);
        let Some(ns) = self.namespaces.get_mut(nsp) else {
            return 0;
        };
        let now = (hb.clock)();
        ns.peers.retain(|uid, seen| {
            let alive = now.saturating_duration_since(*seen).as_millis() <= timeout;
            if !alive {
                log::log(
                    log::Level::Info,
                    &format!("node {uid} seems down (no message in {nsp} for {timeout} ms)"),
                );
            }
            alive
        });
        ns.peers.len()
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

    /// One local client's ack of another node's broadcast, passed on to the requester.
    pub fn on_local_ack(&mut self, handle: u64, ack: Option<Vec<u8>>) {
        match ack {
            Some(args) => {
                if let Some(o) = self.owed.get(&handle) {
                    let (nsp, requester, id) =
                        (o.nsp.clone(), o.requester.clone(), o.request_id.clone());
                    self.respond(&nsp, &requester, &id, Part::Ack(first_arg(&args)));
                }
            }
            None => {
                self.owed.remove(&handle);
            }
        }
    }

    /// This node's answer to another node's server-side emit, passed on to the requester.
    pub fn on_server_side_ack(&mut self, handle: u64, data: Vec<u8>) {
        if let Some(o) = self.owed.remove(&handle).filter(|o| o.emit) {
            let part = Part::EmitAck(first_arg(&data));
            self.respond(&o.nsp, &o.requester, &o.request_id, part);
        }
    }

    /// With heartbeats, after the datasource came back: other nodes may have forgotten
    /// this one, so it says it is here.
    pub fn on_connection(&mut self, up: bool) {
        if !up || self.settings.heartbeat.is_none() {
            return;
        }
        let names: Vec<String> = self.namespaces.keys().cloned().collect();
        for nsp in names {
            self.publish_quietly(&nsp, Op::InitialHeartbeat, "initial heartbeat");
        }
    }

    /// A message from another node, decoded by the backend. Our own (the backend may
    /// deliver them) and those of namespaces this node lacks are ignored; answers are
    /// matched by request id.
    pub fn on_message(&mut self, env: Envelope) -> Result<(), Error> {
        let Envelope { uid, nsp, body } = env;
        if uid == self.uid {
            return Ok(());
        }
        if let Some(hb) = self.settings.heartbeat
            && !uid.is_empty()
            && uid != EMITTER_UID
            && let Some(ns) = self.namespaces.get_mut(&nsp)
        {
            ns.peers.insert(uid.clone(), (hb.clock)());
        }
        let op = match body {
            In::Op(op) => op,
            In::Part { request_id, part } => {
                self.on_part(&request_id, part);
                return Ok(());
            }
            In::Ignore => return Ok(()),
        };
        if !self.namespaces.contains_key(&nsp) {
            return Ok(());
        }
        match op {
            Op::InitialHeartbeat => {
                if self.settings.heartbeat.is_some() {
                    self.publish_quietly(&nsp, Op::Heartbeat, "heartbeat");
                }
            }
            Op::Heartbeat => {}
            Op::Broadcast {
                packet,
                opts,
                request_id: None,
            } => {
                sockets::broadcast(&nsp, &packet, &host_opts(&opts))?;
            }
            Op::Broadcast {
                packet,
                opts,
                request_id: Some(request_id),
            } => {
                let handle = self.next();
                let timeout = opts.flags.timeout.map(|t| t.min(u32::MAX as u64) as u32);
                let count =
                    sockets::broadcast_with_ack(&nsp, &packet, &host_opts(&opts), timeout, handle)?;
                self.owed.insert(
                    handle,
                    Owed {
                        nsp: nsp.clone(),
                        requester: uid.clone(),
                        request_id: request_id.clone(),
                        emit: false,
                    },
                );
                self.respond(&nsp, &uid, &request_id, Part::ClientCount(count.into()));
            }
            Op::Rooms { op, opts } => {
                let opts = host_opts(&opts);
                match op {
                    RoomsOp::Join(rooms) => {
                        sockets::add_sockets(&nsp, &opts, &rooms);
                        self.backend.joined(&nsp, &rooms);
                    }
                    RoomsOp::Leave(rooms) => sockets::del_sockets(&nsp, &opts, &rooms),
                    RoomsOp::Disconnect(close) => sockets::disconnect(&nsp, &opts, close)?,
                }
            }
            Op::Fetch {
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
                self.respond(&nsp, &uid, &request_id, part);
            }
            Op::AllRooms { request_id } => {
                let rooms = sockets::rooms(&nsp, &host_opts(&Opts::default()));
                self.respond(&nsp, &uid, &request_id, Part::Rooms(rooms));
            }
            Op::Emit { request_id, data } => {
                let handle = request_id.map(|request_id| {
                    let handle = self.next();
                    self.owed.insert(
                        handle,
                        Owed {
                            nsp: nsp.clone(),
                            requester: uid.clone(),
                            request_id,
                            emit: true,
                        },
                    );
                    handle
                });
                sockets::server_side_emit(&nsp, &data, handle)?;
            }
        }
        Ok(())
    }

    /// Folds one node's answer into the host's request. Answers to other nodes'
    /// requests may travel where this node reads: not ours, ignored.
    fn on_part(&mut self, request_id: &str, part: Part) {
        let Some(req) = self.requests.get_mut(request_id) else {
            return;
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
                let found: Vec<SocketInfo> = list.iter().filter_map(socket_from_wire).collect();
                Answer::Sockets(found)
            }
            Part::SocketIds(ids) => {
                req.received += 1;
                Answer::Sockets(ids.into_iter().map(socket_id_only).collect())
            }
            Part::Rooms(rooms) => {
                req.received += 1;
                Answer::Rooms(rooms)
            }
            Part::EmitAck(v) => {
                req.received += 1;
                Answer::ServerAck(as_args(v))
            }
            Part::ClientCount(n) => {
                req.received += 1;
                req.clients += n;
                Answer::ClientCount(clamp(n))
            }
            Part::Ack(v) => {
                req.acks += 1;
                Answer::Ack(as_args(v))
            }
        };
        requests::reply(req.host, &answer);
        self.finish_if_done(request_id);
    }
}

fn clamp(n: u64) -> u32 {
    n.min(u32::MAX as u64) as u32
}

fn warn(msg: &str) {
    log::log(log::Level::Warn, msg);
}

/// 12 random hex digits (WASI's random source seeds `RandomState`).
fn random_id() -> String {
    let n = RandomState::new().hash_one(0u8);
    format!("{:012x}", n & 0xffff_ffff_ffff)
}
