//! The cluster message family of Node.js `socket.io-adapter`'s `ClusterAdapter` (used by
//! `@socket.io/redis-adapter`'s sharded mode, `@socket.io/mongo-adapter`,
//! `@socket.io/postgres-adapter`, `@socket.io/redis-streams-adapter`), as MessagePack
//! bytes the way notepack.io writes them. Transport-free: a guest publishes the bytes
//! on its backend and feeds received bytes to [`Message::decode`].
//!
//! Packets and socket descriptions are kept as raw MessagePack ([`Raw`]): the host hands
//! packets over already encoded, and a relay never needs to look inside them.

#[cfg(feature = "bson")]
pub mod bson;
mod codec;
pub mod json;

pub use codec::{DecodeError, read_any};

/// The uid the Node.js emitters publish with.
pub const EMITTER_UID: &str = "emitter";

/// One MessagePack value, kept encoded.
pub type Raw = Vec<u8>;

/// `MessageType` of `socket.io-adapter`'s cluster adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    InitialHeartbeat = 1,
    Heartbeat = 2,
    Broadcast = 3,
    SocketsJoin = 4,
    SocketsLeave = 5,
    DisconnectSockets = 6,
    FetchSockets = 7,
    FetchSocketsResponse = 8,
    ServerSideEmit = 9,
    ServerSideEmitResponse = 10,
    BroadcastClientCount = 11,
    BroadcastAck = 12,
    AdapterClose = 13,
}

/// socket.io's broadcast flags as they travel (`opts.flags`); absent keys stay absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub volatile: Option<bool>,
    pub compress: Option<bool>,
    pub local: Option<bool>,
    pub broadcast: Option<bool>,
    /// Milliseconds, for broadcasts with acks.
    pub timeout: Option<u64>,
}

/// Which sockets an operation targets (`opts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opts {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub flags: Flags,
}

impl Opts {
    /// The options of an operation the host asks for: `sid` joins `except` when the
    /// operation excludes its sender (`socket.broadcast`), or names the one socket
    /// targeted (a remote socket's join, say) by the room of its id, as socket.io does.
    pub fn for_operation(
        rooms: &[String],
        except: &[String],
        sid: Option<&str>,
        broadcast: bool,
        volatile: bool,
        timeout: Option<u64>,
    ) -> Opts {
        let mut except = except.to_vec();
        let mut rooms = rooms.to_vec();
        match sid {
            Some(sid) if broadcast => except.push(sid.to_string()),
            Some(sid) if rooms.is_empty() => rooms.push(sid.to_string()),
            _ => {}
        }
        except.dedup();
        Opts {
            rooms,
            except,
            flags: Flags {
                volatile: volatile.then_some(true),
                timeout,
                ..Flags::default()
            },
        }
    }
}

/// What a message carries, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    InitialHeartbeat,
    Heartbeat,
    AdapterClose,
    /// With `request_id`, each receiving node answers with its client count and acks.
    Broadcast {
        packet: Raw,
        request_id: Option<String>,
        opts: Opts,
    },
    SocketsJoin {
        opts: Opts,
        rooms: Vec<String>,
    },
    SocketsLeave {
        opts: Opts,
        rooms: Vec<String>,
    },
    DisconnectSockets {
        opts: Opts,
        close: bool,
    },
    FetchSockets {
        opts: Opts,
        request_id: String,
    },
    /// Each socket is `{id, handshake, rooms, data}`.
    FetchSocketsResponse {
        request_id: String,
        sockets: Vec<Raw>,
    },
    /// `packet` is the array `[event, ...args]`.
    ServerSideEmit {
        request_id: Option<String>,
        packet: Raw,
    },
    ServerSideEmitResponse {
        request_id: String,
        packet: Raw,
    },
    BroadcastClientCount {
        request_id: String,
        client_count: u64,
    },
    BroadcastAck {
        request_id: String,
        packet: Raw,
    },
}

impl Body {
    /// The wire type of this body.
    pub fn message_type(&self) -> MessageType {
        match self {
            Body::InitialHeartbeat => MessageType::InitialHeartbeat,
            Body::Heartbeat => MessageType::Heartbeat,
            Body::AdapterClose => MessageType::AdapterClose,
            Body::Broadcast { .. } => MessageType::Broadcast,
            Body::SocketsJoin { .. } => MessageType::SocketsJoin,
            Body::SocketsLeave { .. } => MessageType::SocketsLeave,
            Body::DisconnectSockets { .. } => MessageType::DisconnectSockets,
            Body::FetchSockets { .. } => MessageType::FetchSockets,
            Body::FetchSocketsResponse { .. } => MessageType::FetchSocketsResponse,
            Body::ServerSideEmit { .. } => MessageType::ServerSideEmit,
            Body::ServerSideEmitResponse { .. } => MessageType::ServerSideEmitResponse,
            Body::BroadcastClientCount { .. } => MessageType::BroadcastClientCount,
            Body::BroadcastAck { .. } => MessageType::BroadcastAck,
        }
    }

    /// Whether this answers a request (and so goes to the requester alone).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Body::FetchSocketsResponse { .. }
                | Body::ServerSideEmitResponse { .. }
                | Body::BroadcastClientCount { .. }
                | Body::BroadcastAck { .. }
        )
    }
}

/// One cluster message: `{type, data?, uid, nsp}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sending adapter instance (one per namespace per node), or [`EMITTER_UID`].
    pub uid: String,
    pub nsp: String,
    pub body: Body,
}
