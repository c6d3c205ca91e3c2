//! `createShardedAdapter` of `@socket.io/redis-adapter` 8.3 (Redis >= 7): messages of
//! a namespace on `prefix#nsp#`, answers on the requester's `prefix#nsp#uid#`, and, in
//! the `dynamic` subscription modes, a broadcast to one room on that room's
//! `prefix#nsp#room#` (subscribed while the room exists here); all through
//! SPUBLISH/SSUBSCRIBE, as the cluster message family of `socket.io-adapter`.

use wasio_cluster_protocol::{Body, Message};

use crate::bindings::wasio::adapter::pubsub::{self, Mode};
use crate::bindings::wasio::adapter::types::Error;
use crate::node::{Envelope, In, Out, Part, RoomsOp};
use crate::options::Options;
use crate::wire;

/// The namespace's channel; its shard subscriber count is the node count.
pub fn channel(o: &Options, nsp: &str) -> String {
    format!("{}#{nsp}#", o.prefix)
}

/// The channel of one room, in the dynamic modes.
pub fn room_channel(o: &Options, nsp: &str, room: &str) -> String {
    format!("{}#{nsp}#{room}#", o.prefix)
}

pub fn subscribe(o: &Options, nsp: &str, uid: &str) -> Result<(), Error> {
    let ch = channel(o, nsp);
    pubsub::subscribe(&ch, Mode::Sharded)?;
    pubsub::subscribe(&format!("{ch}{uid}#"), Mode::Sharded)
}

pub fn publish(o: &Options, nsp: &str, uid: &str, out: &Out) -> Result<(), Error> {
    let body = match out {
        Out::Broadcast {
            packet,
            opts,
            request_id,
        } => Body::Broadcast {
            packet: packet.clone(),
            request_id: request_id.clone(),
            opts: opts.clone(),
        },
        Out::Rooms { op, opts } => match op {
            RoomsOp::Join(rooms) => Body::SocketsJoin {
                opts: opts.clone(),
                rooms: rooms.clone(),
            },
            RoomsOp::Leave(rooms) => Body::SocketsLeave {
                opts: opts.clone(),
                rooms: rooms.clone(),
            },
            RoomsOp::Disconnect(close) => Body::DisconnectSockets {
                opts: opts.clone(),
                close: *close,
            },
        },
        Out::Fetch { request_id, opts } => Body::FetchSockets {
            opts: opts.clone(),
            request_id: request_id.clone(),
        },
        // Not in this protocol: `Node::all_rooms` fetches every node's sockets instead.
        Out::AllRooms { .. } => return Ok(()),
        Out::Emit { request_id, data } => Body::ServerSideEmit {
            request_id: request_id.clone(),
            packet: data.clone(),
        },
    };
    // Node.js's rule: a plain broadcast to one room goes on that room's channel (with
    // acks it cannot: every node must answer).
    let channel = match &body {
        Body::Broadcast {
            request_id: None,
            opts,
            ..
        } => match opts.rooms.as_slice() {
            [room] if o.rooms.own_channel(room) => room_channel(o, nsp, room),
            _ => channel(o, nsp),
        },
        _ => channel(o, nsp),
    };
    let msg = Message {
        uid: uid.to_string(),
        nsp: nsp.to_string(),
        body,
    };
    pubsub::publish(&channel, &msg.encode(), Mode::Sharded)
}

pub fn reply(
    o: &Options,
    nsp: &str,
    uid: &str,
    requester: &str,
    request_id: &str,
    part: Part,
) -> Result<(), Error> {
    let request_id = request_id.to_string();
    let body = match part {
        Part::Sockets(list) => Body::FetchSocketsResponse {
            request_id,
            sockets: list.iter().map(wire::encode).collect(),
        },
        Part::EmitAck(v) => Body::ServerSideEmitResponse {
            request_id,
            packet: wire::encode(&v),
        },
        Part::ClientCount(n) => Body::BroadcastClientCount {
            request_id,
            client_count: n,
        },
        Part::Ack(v) => Body::BroadcastAck {
            request_id,
            packet: wire::encode(&v),
        },
        // Classic-only answers.
        Part::SocketIds(_) | Part::Rooms(_) => return Ok(()),
    };
    let msg = Message {
        uid: uid.to_string(),
        nsp: nsp.to_string(),
        body,
    };
    pubsub::publish(
        &format!("{}{requester}#", channel(o, nsp)),
        &msg.encode(),
        Mode::Sharded,
    )
}

pub fn decode(payload: &[u8]) -> Result<Envelope, String> {
    let m = Message::decode(payload).map_err(|e| e.to_string())?;
    let part = |request_id: String, part| In::Part { request_id, part };
    let body = match m.body {
        Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => In::Ignore,
        Body::Broadcast {
            packet,
            request_id,
            opts,
        } => In::Broadcast {
            packet,
            opts,
            ack: request_id,
        },
        Body::SocketsJoin { opts, rooms } => In::Rooms {
            op: RoomsOp::Join(rooms),
            opts,
        },
        Body::SocketsLeave { opts, rooms } => In::Rooms {
            op: RoomsOp::Leave(rooms),
            opts,
        },
        Body::DisconnectSockets { opts, close } => In::Rooms {
            op: RoomsOp::Disconnect(close),
            opts,
        },
        Body::FetchSockets { opts, request_id } => In::Fetch {
            request_id,
            opts,
            ids_only: false,
        },
        Body::ServerSideEmit { request_id, packet } => In::Emit {
            request_id,
            data: packet,
        },
        Body::FetchSocketsResponse {
            request_id,
            sockets,
        } => part(
            request_id,
            Part::Sockets(sockets.iter().map(|s| wire::decode(s)).collect()),
        ),
        Body::ServerSideEmitResponse { request_id, packet } => {
            part(request_id, Part::EmitAck(wire::decode(&packet)))
        }
        Body::BroadcastClientCount {
            request_id,
            client_count,
        } => part(request_id, Part::ClientCount(client_count)),
        Body::BroadcastAck { request_id, packet } => {
            part(request_id, Part::Ack(wire::decode(&packet)))
        }
    };
    Ok(Envelope {
        uid: m.uid,
        nsp: m.nsp,
        body,
    })
}
