//! The classic `@socket.io/redis-adapter` messages (`../shared/protocols.md` §1).
//!
//! Broadcasts are MessagePack `[uid, packet, opts]`. Requests and responses are maps
//! with `requestId` and `type`, JSON or MessagePack; we always send MessagePack (which
//! Node.js decodes as well) so binary survives.

use rmpv::Value;
use wasio_cluster_node::convert::{encode, field};
use wasio_cluster_protocol::{DecodeError, Opts, Raw, read_any};

/// Request types of the classic protocol.
pub mod kind {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

/// A received classic broadcast.
#[derive(Debug, PartialEq)]
pub struct Broadcast {
    pub uid: String,
    /// The packet's own `nsp` (`/` when absent, as Node.js assumes).
    pub nsp: String,
    pub packet: Raw,
    pub opts: Opts,
}

/// `[uid, packet, opts]` as MessagePack.
pub fn encode_broadcast(uid: &str, packet: &[u8], opts: &Opts) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 64);
    rmp::encode::write_array_len(&mut out, 3).expect("vec write");
    rmp::encode::write_str(&mut out, uid).expect("vec write");
    out.extend_from_slice(packet);
    opts.encode(&mut out);
    out
}

/// Reads `[uid, packet, opts]`. The packet is validated and sliced out as it is, not
/// re-encoded: a broadcast's payload crosses this guest with one copy.
pub fn decode_broadcast(bytes: &[u8]) -> Result<Broadcast, DecodeError> {
    let shape = DecodeError::Shape;
    let mut cur = bytes;
    let n = rmp::decode::read_array_len(&mut cur)
        .map_err(|_| shape("a broadcast is an array [uid, packet, opts]"))?;
    if n != 3 {
        return Err(shape("a broadcast has 3 items"));
    }
    let uid = match rmpv::decode::read_value_ref_with_max_depth(&mut cur, MAX_DEPTH) {
        Ok(rmpv::ValueRef::String(s)) => s
            .into_str()
            .ok_or(shape("broadcast uid must be UTF-8"))?
            .to_string(),
        Ok(_) => return Err(shape("broadcast uid must be a string")),
        Err(e) => return Err(DecodeError::NotMessagePack(e.to_string())),
    };
    let start = bytes.len() - cur.len();
    let packet = rmpv::decode::read_value_ref_with_max_depth(&mut cur, MAX_DEPTH)
        .map_err(|e| DecodeError::NotMessagePack(e.to_string()))?;
    let packet_bytes = &bytes[start..bytes.len() - cur.len()];
    let rmpv::ValueRef::Map(fields) = &packet else {
        return Err(shape("a packet is a map"));
    };
    let nsp = match fields
        .iter()
        .find(|(k, _)| matches!(k, rmpv::ValueRef::String(s) if s.as_str() == Some("nsp")))
    {
        None => "/".to_string(),
        Some((_, rmpv::ValueRef::String(s))) => s
            .as_str()
            .ok_or(shape("packet nsp must be UTF-8"))?
            .to_string(),
        Some(_) => return Err(shape("packet nsp must be a string")),
    };
    let opts = read_any(cur)?;
    Ok(Broadcast {
        uid,
        nsp,
        packet: packet_bytes.to_vec(),
        opts: Opts::from_value(&opts)?,
    })
}

/// A request or a response: the decoded map, with typed accessors.
#[derive(Debug)]
pub struct Fields(Value);

impl Fields {
    pub fn decode(bytes: &[u8]) -> Result<Fields, DecodeError> {
        match read_any(bytes)? {
            v @ Value::Map(_) => Ok(Fields(v)),
            _ => Err(DecodeError::Shape("a request is a map")),
        }
    }
    pub fn get(&self, k: &str) -> Option<&Value> {
        field(&self.0, k)
    }
    pub fn str(&self, k: &str) -> Option<&str> {
        self.get(k).and_then(Value::as_str)
    }
    pub fn ty(&self) -> Option<u64> {
        self.get("type").and_then(Value::as_u64)
    }
    /// `requestId`: Node.js makes strings; numbers are taken too.
    pub fn request_id(&self) -> Option<String> {
        match self.get("requestId")? {
            Value::String(s) => s.as_str().map(str::to_string),
            v if v.is_number() => Some(v.to_string()),
            _ => None,
        }
    }
    pub fn strings(&self, k: &str) -> Result<Vec<String>, DecodeError> {
        match self.get(k) {
            None | Some(Value::Nil) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(room_name).collect(),
            Some(_) => Err(DecodeError::Shape("expected an array of rooms")),
        }
    }
    pub fn opts(&self) -> Result<Opts, DecodeError> {
        match self.get("opts") {
            Some(v) => Opts::from_value(v),
            None => Err(DecodeError::Shape("no `opts`")),
        }
    }
}

/// Rooms are strings; Node.js also lets numbers be room names.
fn room_name(v: &Value) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or(DecodeError::Shape("room names must be UTF-8")),
        v if v.is_number() => Ok(v.to_string()),
        _ => Err(DecodeError::Shape("room names must be strings")),
    }
}

/// A MessagePack map from `(key, value)` pairs, in this order.
pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Vec<u8> {
    encode(&Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_round_trip_and_default_nsp() {
        let packet = map([("type", 2.into()), ("data", Value::Array(vec!["e".into()]))]);
        let opts = Opts::for_operation(&["r".into()], &[], Some("sid1"), true, false, None);
        let b = decode_broadcast(&encode_broadcast("u1", &packet, &opts)).unwrap();
        assert_eq!(b.uid, "u1");
        assert_eq!(b.nsp, "/", "Node.js omits nsp for the main namespace");
        assert_eq!(b.opts.except, vec!["sid1".to_string()]);
        assert_eq!(b.packet, packet);
    }

    #[test]
    fn json_requests_as_node_sends_them() {
        let f = Fields::decode(
            br#"{"uid":"abc","requestId":"r1","type":5,"opts":{"rooms":["a",1],"except":[]}}"#,
        )
        .unwrap();
        assert_eq!(f.ty(), Some(kind::REMOTE_FETCH));
        assert_eq!(f.request_id().as_deref(), Some("r1"));
        assert_eq!(f.str("uid"), Some("abc"));
        assert!(f.opts().is_ok());
        let f = Fields::decode(
            br#"{"uid":"x","type":2,"opts":{"rooms":[],"except":[]},"rooms":["a",7]}"#,
        )
        .unwrap();
        assert_eq!(
            f.strings("rooms").unwrap(),
            vec!["a".to_string(), "7".to_string()]
        );
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(decode_broadcast(b"").is_err());
        assert!(decode_broadcast(&[0x93, 0x01, 0x80, 0x80]).is_err());
        assert!(Fields::decode(b"[1,2]").is_err());
        assert!(Fields::decode(b"{nope").is_err());
        // Deep nesting in the packet and trailing bytes: refused, no stack overflow.
        let mut deep = vec![0x93, 0xa1, b'u'];
        deep.extend([0x91; 10_000]);
        assert!(decode_broadcast(&deep).is_err());
        let packet = map([("type", 2.into())]);
        let mut trailing = encode_broadcast("u", &packet, &Opts::default());
        trailing.push(0);
        assert!(decode_broadcast(&trailing).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_broadcast(&bytes);
            let _ = Fields::decode(&bytes);
        }

        #[test]
        fn json_decoder_never_panics(s in "\\{[ -~]{0,64}") {
            let _ = Fields::decode(s.as_bytes());
            let _ = decode_broadcast(s.as_bytes());
        }
    }
}
