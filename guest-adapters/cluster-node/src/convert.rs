//! The contract's types as they travel: broadcast options, sockets, ack arguments, and
//! the MessagePack helpers they are built with.

use rmpv::Value;
use wasio_cluster_protocol::Opts;

use crate::bindings::wasio::adapter::types::{BroadcastFlags, BroadcastOpts, SocketInfo};

/// The host's options as they travel.
pub fn wire_opts(o: &BroadcastOpts, timeout: Option<u64>) -> Opts {
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
pub fn host_opts(o: &Opts) -> BroadcastOpts {
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

/// A socket as `fetchSockets()` answers travel: `{id, handshake, rooms, data}`.
pub fn socket_to_wire(s: &SocketInfo) -> Value {
    Value::Map(vec![
        ("id".into(), s.id.as_str().into()),
        ("handshake".into(), decode(&s.handshake)),
        ("rooms".into(), strings(&s.rooms)),
        ("data".into(), decode(&s.data)),
    ])
}

/// A socket of another node's answer; `None` without a string `id`.
pub fn socket_from_wire(v: &Value) -> Option<SocketInfo> {
    let id = field(v, "id")?.as_str()?.to_string();
    let rooms = match field(v, "rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    let handshake = field(v, "handshake").cloned().unwrap_or(Value::Map(vec![]));
    let data = field(v, "data").cloned().unwrap_or(Value::Nil);
    Some(socket_info(id, rooms, &handshake, &data))
}

/// A socket known by its id alone (the classic Redis SOCKETS answer).
pub fn socket_id_only(id: String) -> SocketInfo {
    socket_info(id, Vec::new(), &Value::Nil, &Value::Nil)
}

fn socket_info(id: String, rooms: Vec<String>, handshake: &Value, data: &Value) -> SocketInfo {
    SocketInfo {
        id,
        // Node.js answers do not say which node a socket is on.
        server_id: String::new(),
        rooms,
        handshake: encode(handshake),
        data: encode(data),
    }
}

/// The first argument of an ack (Node.js answers with one value), from the host's
/// MessagePack array of arguments.
pub fn first_arg(args: &[u8]) -> Value {
    match decode(args) {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        _ => Value::Nil,
    }
}

/// One value as the host's array of arguments.
pub fn as_args(v: Value) -> Vec<u8> {
    encode(&Value::Array(vec![v]))
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("vec write");
    out
}

/// Decodes MessagePack the host or our own codec produced (packets, handshakes, raw
/// values of a decoded message); nil when malformed.
pub fn decode(bytes: &[u8]) -> Value {
    rmpv::decode::read_value(&mut &bytes[..]).unwrap_or(Value::Nil)
}

pub fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

/// The value of key `k` in a MessagePack map.
pub fn field<'a>(map: &'a Value, k: &str) -> Option<&'a Value> {
    match map {
        Value::Map(m) => m
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_travel_as_socket_io_builds_them() {
        let host = BroadcastOpts {
            flags: BroadcastFlags::BROADCAST | BroadcastFlags::VOLATILE,
            rooms: vec!["r".into()],
            except: vec!["x".into()],
            sid: Some("me".into()),
            server_id: None,
        };
        let wire = wire_opts(&host, Some(500));
        assert_eq!(wire.except, vec!["x".to_string(), "me".to_string()]);
        assert_eq!(
            (wire.flags.volatile, wire.flags.timeout),
            (Some(true), Some(500))
        );
        let back = host_opts(&wire);
        assert_eq!(back.flags, BroadcastFlags::VOLATILE);
        assert_eq!((back.rooms, back.except), (wire.rooms, wire.except));
        assert_eq!(back.sid, None, "the sender is already excepted");
    }

    #[test]
    fn sockets_round_trip() {
        let s = SocketInfo {
            id: "a".into(),
            server_id: "node-1".into(),
            rooms: vec!["a".into(), "red".into()],
            handshake: encode(&Value::Map(vec![("url".into(), "/".into())])),
            data: encode(&Value::from(123)),
        };
        let back = socket_from_wire(&decode(&encode(&socket_to_wire(&s)))).unwrap();
        assert_eq!((&back.id, &back.rooms), (&s.id, &s.rooms));
        assert_eq!((&back.handshake, &back.data), (&s.handshake, &s.data));
        assert_eq!(back.server_id, "", "answers do not say the node");
        assert!(socket_from_wire(&Value::from("a")).is_none());
        assert_eq!(socket_id_only("b".into()).data, encode(&Value::Nil));
    }

    #[test]
    fn ack_arguments() {
        assert_eq!(first_arg(&as_args(Value::from(7))), Value::from(7));
        assert_eq!(first_arg(&encode(&Value::Array(vec![]))), Value::Nil);
        assert_eq!(first_arg(b"\xc1"), Value::Nil);
    }
}
