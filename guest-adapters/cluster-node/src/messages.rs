//! What nodes send each other, whatever the protocol: a [`crate::Backend`] encodes an
//! [`Op`] or a [`Response`] its own way, and decodes what arrives into an [`Envelope`].

use rmpv::Value;
use wasio_cluster_protocol::{Opts, Raw};

/// A room operation relayed to the other nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomsOp {
    Join(Vec<String>),
    Leave(Vec<String>),
    Disconnect(bool),
}

/// What one node asks of the others: this node publishes it, or another node's arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// With heartbeats, on opening a namespace: the other nodes answer with a heartbeat.
    InitialHeartbeat,
    /// With heartbeats, after `heartbeatInterval` of quiet.
    Heartbeat,
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
    /// `ids_only`: answered with socket ids alone (the classic Redis SOCKETS request,
    /// which only emitters and old nodes send).
    Fetch {
        request_id: String,
        opts: Opts,
        ids_only: bool,
    },
    /// Answered with rooms, or with sockets whose rooms the node unites (a protocol
    /// without an all-rooms request fetches every node's sockets instead).
    AllRooms {
        request_id: String,
    },
    /// `data` is the MessagePack array `[event, ...args]`.
    Emit {
        request_id: Option<String>,
        data: Raw,
    },
}

/// One node's part of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// `{id, handshake, rooms, data}` maps.
    Sockets(Vec<Value>),
    /// Socket ids only (the classic Redis SOCKETS request).
    SocketIds(Vec<String>),
    Rooms(Vec<String>),
    EmitAck(Value),
    ClientCount(u64),
    Ack(Value),
}

/// This node's part of the answer to another node's request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response<'a> {
    /// The requesting node's uid.
    pub requester: &'a str,
    pub request_id: &'a str,
    pub part: Part,
}

/// A message from another node (or an emitter), decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    Op(Op),
    /// An answer to one of our requests.
    Part {
        request_id: String,
        part: Part,
    },
    /// Valid, but nothing to do (legacy replies, a node leaving); the sender still
    /// counts as alive.
    Ignore,
}

/// A decoded message with its sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The sender's adapter uid (empty when the protocol does not say).
    pub uid: String,
    /// The namespace (empty for answers, which are matched by request id).
    pub nsp: String,
    pub body: In,
}
