//! `createShardedAdapter` of `@socket.io/redis-adapter` 8.3 (Redis >= 7): messages of
//! a namespace on `prefix#nsp#`, answers on the requester's `prefix#nsp#uid#`, and, in
//! the `dynamic` subscription modes, a broadcast to one room on that room's
//! `prefix#nsp#room#` (subscribed while the room exists here); all through
//! SPUBLISH/SSUBSCRIBE, as the cluster message family of `socket.io-adapter`.

use std::collections::{HashMap, HashSet};

use wasio_cluster_node::bindings::wasio::adapter::{log, sockets, timers};
use wasio_cluster_node::convert::host_opts;
use wasio_cluster_node::{Backend, Envelope, Op, Response, family};
use wasio_cluster_protocol::{Message, Opts};

use crate::bindings::wasio::adapter::pubsub::{self, Mode};
use crate::options::{Options, Rooms};
use crate::transport::Transport;
use wasio_cluster_node::bindings::wasio::adapter::types::Error;

/// How often the dynamic modes drop the channels of rooms that are gone (and pick up
/// rooms joined where the host could not see it).
const ROOM_SYNC_MS: u32 = 5000;

/// The sharded protocol, for the node whose uid is `uid`.
pub struct Sharded {
    opts: Options,
    uid: String,
    /// Dynamic modes: per open namespace, the rooms whose channel we subscribed.
    room_channels: HashMap<String, HashSet<String>>,
    /// Timers of the periodic room sync, by namespace.
    syncs: HashMap<u64, String>,
}

impl Sharded {
    pub fn new(opts: Options, uid: String) -> Sharded {
        Sharded {
            opts,
            uid,
            room_channels: HashMap::new(),
            syncs: HashMap::new(),
        }
    }

    fn per_room(&self) -> bool {
        self.opts.rooms != Rooms::Static
    }

    fn message(&self, nsp: &str, body: wasio_cluster_protocol::Body) -> Vec<u8> {
        Message {
            uid: self.uid.clone(),
            nsp: nsp.to_string(),
            body,
        }
        .encode()
    }

    /// Drops the channels of rooms gone from this node and asks the host for the
    /// current rooms again (arriving as `on-rooms`).
    fn sync_rooms(&mut self, nsp: String) {
        let all = host_opts(&Opts::default());
        let current: HashSet<String> = sockets::rooms(&nsp, &all).into_iter().collect();
        if let Some(set) = self.room_channels.get_mut(&nsp) {
            let gone: Vec<String> = set.difference(&current).cloned().collect();
            for room in gone {
                let ch = room_channel(&self.opts, &nsp, &room);
                if pubsub::unsubscribe(&ch, Mode::Sharded).is_ok() {
                    set.remove(&room);
                }
            }
        }
        sockets::watch_rooms(&nsp);
        self.syncs.insert(timers::start(ROOM_SYNC_MS), nsp);
    }
}

impl Backend for Sharded {
    fn open(&mut self, nsp: &str) -> Result<(), Error> {
        let ch = channel(&self.opts, nsp);
        pubsub::subscribe(&ch, Mode::Sharded)?;
        pubsub::subscribe(&format!("{ch}{}#", self.uid), Mode::Sharded)?;
        if self.per_room() {
            self.room_channels.insert(nsp.to_string(), HashSet::new());
            // The current rooms arrive at once as `on-rooms`, then each new one.
            sockets::watch_rooms(nsp);
            self.syncs
                .insert(timers::start(ROOM_SYNC_MS), nsp.to_string());
        }
        Ok(())
    }

    fn publish(&mut self, nsp: &str, op: Op) -> Result<(), Error> {
        // Node.js's rule: a plain broadcast to one room goes on that room's channel (with
        // acks it cannot: every node must answer).
        let channel = match &op {
            Op::Broadcast {
                request_id: None,
                opts,
                ..
            } => match opts.rooms.as_slice() {
                [room] if self.opts.rooms.own_channel(room) => room_channel(&self.opts, nsp, room),
                _ => channel(&self.opts, nsp),
            },
            _ => channel(&self.opts, nsp),
        };
        let bytes = self.message(nsp, family::body(op));
        pubsub::publish(&channel, &bytes, Mode::Sharded)
    }

    fn publish_response(&mut self, nsp: &str, response: Response) -> Result<(), Error> {
        let requester = response.requester;
        let Some(body) = family::response(response) else {
            return Ok(());
        };
        pubsub::publish(
            &format!("{}{requester}#", channel(&self.opts, nsp)),
            &self.message(nsp, body),
            Mode::Sharded,
        )
    }

    /// The namespace's channel: its shard subscriber count is the node count.
    fn count_nodes(&mut self, nsp: &str, ticket: u64) -> Result<(), Error> {
        pubsub::count_subscribers(&[channel(&self.opts, nsp)], Mode::Sharded, ticket)
    }

    /// A join may have created rooms here: their channels are subscribed at once.
    fn joined(&mut self, nsp: &str, rooms: &[String]) {
        self.on_rooms(nsp, rooms.to_vec());
    }

    fn on_timer(&mut self, timer: u64) {
        if let Some(nsp) = self.syncs.remove(&timer) {
            self.sync_rooms(nsp);
        }
    }
}

impl Transport for Sharded {
    fn name(&self) -> &'static str {
        "redis-sharded"
    }

    fn decode(&self, _channel: &str, payload: &[u8]) -> Result<Envelope, String> {
        let m = Message::decode(payload).map_err(|e| e.to_string())?;
        Ok(family::envelope(m))
    }

    /// Subscribes the channels of `rooms` not subscribed yet.
    fn on_rooms(&mut self, nsp: &str, rooms: Vec<String>) {
        let Some(set) = self.room_channels.get_mut(nsp) else {
            return;
        };
        for room in rooms {
            if self.opts.rooms.own_channel(&room) && !set.contains(&room) {
                let ch = room_channel(&self.opts, nsp, &room);
                match pubsub::subscribe(&ch, Mode::Sharded) {
                    Ok(()) => {
                        set.insert(room);
                    }
                    Err(e) => log::log(
                        log::Level::Warn,
                        &format!("cannot subscribe {ch}: {e:?}; retried at the next sync"),
                    ),
                }
            }
        }
    }
}

/// The namespace's channel.
fn channel(o: &Options, nsp: &str) -> String {
    format!("{}#{nsp}#", o.prefix)
}

/// The channel of one room, in the dynamic modes.
fn room_channel(o: &Options, nsp: &str, room: &str) -> String {
    format!("{}#{nsp}#{room}#", o.prefix)
}
