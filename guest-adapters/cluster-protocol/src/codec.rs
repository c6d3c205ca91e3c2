//! MessagePack in the key order `socket.io-adapter` builds its objects with, so what
//! we publish is byte for byte what a Node.js node would; decoding accepts any order.

use rmpv::Value;

use crate::{Body, Flags, Message, MessageType, Opts, Raw};

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// Why received bytes are not a cluster message (the caller drops and counts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not MessagePack, or trailing bytes after the value.
    NotMessagePack(String),
    /// MessagePack, but not a `{type, uid, nsp, data}` message.
    Shape(&'static str),
    /// A `type` this protocol does not define.
    UnknownType(u64),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::NotMessagePack(e) => write!(f, "not MessagePack: {e}"),
            DecodeError::Shape(what) => write!(f, "not a cluster message: {what}"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("vec write");
}

fn map(out: &mut Vec<u8>, n: u32) {
    rmp::encode::write_map_len(out, n).expect("vec write");
}

fn strings(out: &mut Vec<u8>, items: &[String]) {
    rmp::encode::write_array_len(out, items.len() as u32).expect("vec write");
    for s in items {
        str(out, s);
    }
}

fn opts(out: &mut Vec<u8>, o: &Opts) {
    map(out, 3);
    str(out, "rooms");
    strings(out, &o.rooms);
    str(out, "except");
    strings(out, &o.except);
    str(out, "flags");
    let f = &o.flags;
    let bools = [
        ("volatile", f.volatile),
        ("compress", f.compress),
        ("local", f.local),
        ("broadcast", f.broadcast),
    ];
    let n = bools.iter().filter(|(_, v)| v.is_some()).count() + usize::from(f.timeout.is_some());
    map(out, n as u32);
    for (k, v) in bools {
        if let Some(v) = v {
            str(out, k);
            rmp::encode::write_bool(out, v).expect("vec write");
        }
    }
    if let Some(t) = f.timeout {
        str(out, "timeout");
        rmp::encode::write_uint(out, t).expect("vec write");
    }
}

impl Message {
    /// The message as a Node.js node would publish it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let has_data = !matches!(
            self.body,
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose
        );
        map(&mut out, if has_data { 4 } else { 3 });
        str(&mut out, "type");
        rmp::encode::write_uint(&mut out, self.body.message_type() as u64).expect("vec write");
        if has_data {
            str(&mut out, "data");
            self.encode_data(&mut out);
        }
        str(&mut out, "uid");
        str(&mut out, &self.uid);
        str(&mut out, "nsp");
        str(&mut out, &self.nsp);
        out
    }

    fn encode_data(&self, out: &mut Vec<u8>) {
        let raw = |out: &mut Vec<u8>, r: &Raw| out.extend_from_slice(r);
        match &self.body {
            Body::InitialHeartbeat | Body::Heartbeat | Body::AdapterClose => {}
            Body::Broadcast {
                packet,
                request_id,
                opts: o,
            } => {
                map(out, if request_id.is_some() { 3 } else { 2 });
                str(out, "packet");
                raw(out, packet);
                if let Some(id) = request_id {
                    str(out, "requestId");
                    str(out, id);
                }
                str(out, "opts");
                opts(out, o);
            }
            Body::SocketsJoin { opts: o, rooms } | Body::SocketsLeave { opts: o, rooms } => {
                map(out, 2);
                str(out, "opts");
                opts(out, o);
                str(out, "rooms");
                strings(out, rooms);
            }
            Body::DisconnectSockets { opts: o, close } => {
                map(out, 2);
                str(out, "opts");
                opts(out, o);
                str(out, "close");
                rmp::encode::write_bool(out, *close).expect("vec write");
            }
            Body::FetchSockets {
                opts: o,
                request_id,
            } => {
                map(out, 2);
                str(out, "opts");
                opts(out, o);
                str(out, "requestId");
                str(out, request_id);
            }
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            } => {
                map(out, 2);
                str(out, "requestId");
                str(out, request_id);
                str(out, "sockets");
                rmp::encode::write_array_len(out, sockets.len() as u32).expect("vec write");
                for s in sockets {
                    raw(out, s);
                }
            }
            Body::ServerSideEmit { request_id, packet } => {
                map(out, if request_id.is_some() { 2 } else { 1 });
                if let Some(id) = request_id {
                    str(out, "requestId");
                    str(out, id);
                }
                str(out, "packet");
                raw(out, packet);
            }
            Body::ServerSideEmitResponse { request_id, packet }
            | Body::BroadcastAck { request_id, packet } => {
                map(out, 2);
                str(out, "requestId");
                str(out, request_id);
                str(out, "packet");
                raw(out, packet);
            }
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => {
                map(out, 2);
                str(out, "requestId");
                str(out, request_id);
                str(out, "clientCount");
                rmp::encode::write_uint(out, *client_count).expect("vec write");
            }
        }
    }

    /// Parses received bytes: MessagePack, or JSON when the first byte is `{` (Node.js
    /// nodes send JSON when a message holds no binary). Anything else is an error to
    /// drop and count.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        Message::from_value(read_any(bytes)?)
    }

    /// Reads a message from a decoded value (MessagePack, JSON or BSON alike).
    pub fn from_value(value: Value) -> Result<Message, DecodeError> {
        let Value::Map(fields) = value else {
            return Err(DecodeError::Shape("not a map"));
        };
        let field = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key.as_str() == Some(k))
                .map(|(_, v)| v)
        };
        let uid = field("uid")
            .and_then(Value::as_str)
            .ok_or(DecodeError::Shape("no string `uid`"))?;
        let nsp = field("nsp")
            .and_then(Value::as_str)
            .ok_or(DecodeError::Shape("no string `nsp`"))?;
        let ty = field("type")
            .and_then(Value::as_u64)
            .ok_or(DecodeError::Shape("no integer `type`"))?;
        let data = field("data");
        let body = body(ty, data)?;
        Ok(Message {
            uid: uid.to_string(),
            nsp: nsp.to_string(),
            body,
        })
    }
}

/// One MessagePack value from `bytes`, or a JSON document when they start with `{`
/// (the convention of the Node.js adapters), with nothing left over.
pub fn read_any(mut bytes: &[u8]) -> Result<Value, DecodeError> {
    if bytes.first() == Some(&b'{') {
        return crate::json::to_value(bytes);
    }
    let value = rmpv::decode::read_value_with_max_depth(&mut bytes, MAX_DEPTH)
        .map_err(|e| DecodeError::NotMessagePack(e.to_string()))?;
    if !bytes.is_empty() {
        return Err(DecodeError::NotMessagePack(format!(
            "{} trailing bytes",
            bytes.len()
        )));
    }
    Ok(value)
}

impl Opts {
    /// Reads `opts` (`{rooms, except, flags}`) from a decoded value.
    pub fn from_value(v: &Value) -> Result<Opts, DecodeError> {
        decode_opts(v)
    }

    /// Appends `opts` as MessagePack, in Node.js key order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        opts(out, self)
    }
}

fn body(ty: u64, data: Option<&Value>) -> Result<Body, DecodeError> {
    use MessageType as T;
    let ty = match ty {
        1 => T::InitialHeartbeat,
        2 => T::Heartbeat,
        3 => T::Broadcast,
        4 => T::SocketsJoin,
        5 => T::SocketsLeave,
        6 => T::DisconnectSockets,
        7 => T::FetchSockets,
        8 => T::FetchSocketsResponse,
        9 => T::ServerSideEmit,
        10 => T::ServerSideEmitResponse,
        11 => T::BroadcastClientCount,
        12 => T::BroadcastAck,
        13 => T::AdapterClose,
        other => return Err(DecodeError::UnknownType(other)),
    };
    let empty = Vec::new();
    let d = match data {
        Some(Value::Map(m)) => m,
        None if matches!(ty, T::InitialHeartbeat | T::Heartbeat | T::AdapterClose) => &empty,
        _ => return Err(DecodeError::Shape("no `data` map")),
    };
    let get = |k: &str| {
        d.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v)
    };
    let req = |k: &'static str| -> Result<String, DecodeError> {
        get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or(DecodeError::Shape(k))
    };
    let opt_id = || get("requestId").and_then(Value::as_str).map(str::to_string);
    let raw = |k: &'static str| -> Result<Raw, DecodeError> {
        get(k).map(encode_raw).ok_or(DecodeError::Shape(k))
    };
    let opts = || {
        get("opts")
            .map(decode_opts)
            .ok_or(DecodeError::Shape("opts"))?
    };
    let rooms = || {
        get("rooms")
            .map(string_list)
            .ok_or(DecodeError::Shape("rooms"))?
    };
    Ok(match ty {
        T::InitialHeartbeat => Body::InitialHeartbeat,
        T::Heartbeat => Body::Heartbeat,
        T::AdapterClose => Body::AdapterClose,
        T::Broadcast => Body::Broadcast {
            packet: raw("packet")?,
            request_id: opt_id(),
            opts: opts()?,
        },
        T::SocketsJoin => Body::SocketsJoin {
            opts: opts()?,
            rooms: rooms()?,
        },
        T::SocketsLeave => Body::SocketsLeave {
            opts: opts()?,
            rooms: rooms()?,
        },
        T::DisconnectSockets => Body::DisconnectSockets {
            opts: opts()?,
            close: get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        T::FetchSockets => Body::FetchSockets {
            opts: opts()?,
            request_id: req("requestId")?,
        },
        T::FetchSocketsResponse => Body::FetchSocketsResponse {
            request_id: req("requestId")?,
            sockets: match get("sockets") {
                Some(Value::Array(items)) => items.iter().map(encode_raw).collect(),
                _ => return Err(DecodeError::Shape("sockets")),
            },
        },
        T::ServerSideEmit => match get("packet") {
            Some(p @ Value::Array(_)) => Body::ServerSideEmit {
                request_id: opt_id(),
                packet: encode_raw(p),
            },
            _ => return Err(DecodeError::Shape("packet must be an array")),
        },
        T::ServerSideEmitResponse => Body::ServerSideEmitResponse {
            request_id: req("requestId")?,
            packet: raw("packet")?,
        },
        T::BroadcastClientCount => Body::BroadcastClientCount {
            request_id: req("requestId")?,
            client_count: get("clientCount")
                .and_then(Value::as_u64)
                .ok_or(DecodeError::Shape("clientCount"))?,
        },
        T::BroadcastAck => Body::BroadcastAck {
            request_id: req("requestId")?,
            packet: raw("packet")?,
        },
    })
}

fn encode_raw(v: &Value) -> Raw {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("vec write");
    out
}

fn string_list(v: &Value) -> Result<Vec<String>, DecodeError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                // Node.js also takes numbers as room names.
                Value::Integer(n) => Ok(n.to_string()),
                _ => i
                    .as_str()
                    .map(str::to_string)
                    .ok_or(DecodeError::Shape("room names must be strings")),
            })
            .collect(),
        _ => Err(DecodeError::Shape("rooms must be an array")),
    }
}

fn decode_opts(v: &Value) -> Result<Opts, DecodeError> {
    let Value::Map(m) = v else {
        return Err(DecodeError::Shape("opts must be a map"));
    };
    let get = |k: &str| {
        m.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v)
    };
    let list = |k| {
        get(k)
            .map(string_list)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let mut flags = Flags::default();
    if let Some(Value::Map(f)) = get("flags") {
        for (k, v) in f {
            match (k.as_str(), v) {
                (Some("volatile"), Value::Boolean(b)) => flags.volatile = Some(*b),
                (Some("compress"), Value::Boolean(b)) => flags.compress = Some(*b),
                (Some("local"), Value::Boolean(b)) => flags.local = Some(*b),
                (Some("broadcast"), Value::Boolean(b)) => flags.broadcast = Some(*b),
                (Some("timeout"), t) => flags.timeout = t.as_u64(),
                _ => {}
            }
        }
    }
    Ok(Opts {
        rooms: list("rooms")?,
        except: list("except")?,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn packet(json_like: Value) -> Raw {
        encode_raw(&json_like)
    }

    // Reference bytes: notepack.io 3 (what @socket.io/* adapters use) encoding the objects
    // socket.io-adapter 2.5 builds, e.g. `{type: 2, uid: "abc", nsp: "/"}`.
    const HEARTBEAT: &str = "83a47479706502a3756964a3616263a36e7370a12f";
    const BROADCAST: &str = "84a47479706503a46461746182a67061636b657483a47479706502a46461746192a26576c4020102a36e7370a12fa46f70747383a5726f6f6d7391a172a665786365707490a5666c61677380a3756964a3616263a36e7370a12f";
    const BROADCAST_WITH_ACK: &str = "84a47479706503a46461746183a46f70747383a5726f6f6d7390a665786365707491a178a5666c61677381a774696d656f7574cd1388a9726571756573744964a27231a67061636b657483a47479706502a46461746191a26576a36e7370a52f63686174a3756964a3616263a36e7370a52f63686174";
    const CLIENT_COUNT: &str = "84a4747970650ba46461746182a9726571756573744964a27831ab636c69656e74436f756e7403a3756964a3616263a36e7370a12f";
    const JOIN: &str = "84a47479706504a46461746182a46f70747383a5726f6f6d7391a161a665786365707490a5666c61677380a5726f6f6d7392a162a163a3756964a3616263a36e7370a12f";

    fn msg(nsp: &str, body: Body) -> Message {
        Message {
            uid: "abc".into(),
            nsp: nsp.into(),
            body,
        }
    }

    fn event_packet(nsp: &str, data: Vec<Value>) -> Raw {
        packet(Value::Map(vec![
            ("type".into(), 2.into()),
            ("data".into(), Value::Array(data)),
            ("nsp".into(), nsp.into()),
        ]))
    }

    #[test]
    fn encodes_byte_for_byte_like_nodejs() {
        assert_eq!(msg("/", Body::Heartbeat).encode(), unhex(HEARTBEAT));
        let bc = msg(
            "/",
            Body::Broadcast {
                packet: event_packet("/", vec!["ev".into(), Value::Binary(vec![1, 2])]),
                request_id: None,
                opts: Opts {
                    rooms: vec!["r".into()],
                    ..Default::default()
                },
            },
        );
        assert_eq!(bc.encode(), unhex(BROADCAST));
        let cc = msg(
            "/",
            Body::BroadcastClientCount {
                request_id: "x1".into(),
                client_count: 3,
            },
        );
        assert_eq!(cc.encode(), unhex(CLIENT_COUNT));
        let join = msg(
            "/",
            Body::SocketsJoin {
                opts: Opts {
                    rooms: vec!["a".into()],
                    ..Default::default()
                },
                rooms: vec!["b".into(), "c".into()],
            },
        );
        assert_eq!(join.encode(), unhex(JOIN));
    }

    #[test]
    fn decodes_what_nodejs_sends_in_any_key_order() {
        for (hex, nsp) in [
            (HEARTBEAT, "/"),
            (BROADCAST, "/"),
            (CLIENT_COUNT, "/"),
            (JOIN, "/"),
            (BROADCAST_WITH_ACK, "/chat"),
        ] {
            let m = Message::decode(&unhex(hex)).unwrap();
            assert_eq!((m.uid.as_str(), m.nsp.as_str()), ("abc", nsp));
        }
        // Node puts `opts` before `requestId` here; we decode it all the same.
        let m = Message::decode(&unhex(BROADCAST_WITH_ACK)).unwrap();
        let Body::Broadcast {
            request_id,
            opts,
            packet,
        } = m.body
        else {
            panic!("{m:?}")
        };
        assert_eq!(request_id.as_deref(), Some("r1"));
        assert_eq!(opts.except, vec!["x".to_string()]);
        assert_eq!(opts.flags.timeout, Some(5000));
        assert_eq!(packet, event_packet("/chat", vec!["ev".into()]));
    }

    #[test]
    fn every_body_round_trips() {
        let o = Opts {
            rooms: vec!["a".into()],
            except: vec!["b".into()],
            flags: Flags {
                volatile: Some(true),
                local: Some(false),
                timeout: Some(10),
                ..Default::default()
            },
        };
        let p = event_packet("/", vec!["e".into(), 1.into()]);
        let bodies = vec![
            Body::InitialHeartbeat,
            Body::Heartbeat,
            Body::AdapterClose,
            Body::Broadcast {
                packet: p.clone(),
                request_id: Some("q".into()),
                opts: o.clone(),
            },
            Body::SocketsJoin {
                opts: o.clone(),
                rooms: vec!["x".into()],
            },
            Body::SocketsLeave {
                opts: o.clone(),
                rooms: vec![],
            },
            Body::DisconnectSockets {
                opts: o.clone(),
                close: true,
            },
            Body::FetchSockets {
                opts: o.clone(),
                request_id: "q".into(),
            },
            Body::FetchSocketsResponse {
                request_id: "q".into(),
                sockets: vec![p.clone(), p.clone()],
            },
            Body::ServerSideEmit {
                request_id: None,
                packet: packet(Value::Array(vec!["hi".into()])),
            },
            Body::ServerSideEmitResponse {
                request_id: "q".into(),
                packet: p.clone(),
            },
            Body::BroadcastClientCount {
                request_id: "q".into(),
                client_count: 7,
            },
            Body::BroadcastAck {
                request_id: "q".into(),
                packet: p,
            },
        ];
        for body in bodies {
            let m = msg("/n", body);
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn foreign_and_malformed_bytes_are_errors() {
        assert!(matches!(
            Message::decode(b""),
            Err(DecodeError::NotMessagePack(_))
        ));
        assert!(Message::decode(&[0xc1]).is_err(), "the reserved byte");
        // JSON (Node.js sends it when no binary is inside) is parsed, then checked.
        assert!(matches!(
            Message::decode(b"{\"uid\":1}"),
            Err(DecodeError::Shape(_))
        ));
        assert!(matches!(
            Message::decode(b"{\"uid\""),
            Err(DecodeError::NotMessagePack(_))
        ));
        // A classic redis-adapter broadcast ([uid, packet, opts]) is not a cluster message.
        assert_eq!(
            Message::decode(&[0x93, 0xa1, b'u', 0x80, 0x80]),
            Err(DecodeError::Shape("not a map"))
        );
        let mut unknown = msg("/", Body::Heartbeat).encode();
        unknown[6] = 42; // the `type` value
        assert_eq!(Message::decode(&unknown), Err(DecodeError::UnknownType(42)));
        // An array header claiming 4 billion items, and deep nesting: refused, no allocation.
        assert!(Message::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Message::decode(&[0x91; 10_000]).is_err());
    }

    #[test]
    fn json_messages_from_node_decode_like_msgpack() {
        let json = br#"{"type":7,"data":{"opts":{"rooms":["r"],"except":[],"flags":{}},"requestId":"abc"},"uid":"u1","nsp":"/chat"}"#;
        let m = Message::decode(json).unwrap();
        assert_eq!(m.uid, "u1");
        assert_eq!(m.nsp, "/chat");
        assert_eq!(
            m.body,
            Body::FetchSockets {
                opts: Opts {
                    rooms: vec!["r".into()],
                    ..Opts::default()
                },
                request_id: "abc".into(),
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(pos in 0usize..200, byte in proptest::num::u8::ANY) {
            let mut m = Message::decode(&unhex(BROADCAST_WITH_ACK)).unwrap().encode();
            let i = pos % m.len();
            m[i] = byte;
            let _ = Message::decode(&m);
        }
    }
}
