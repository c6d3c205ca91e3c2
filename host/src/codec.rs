//! The boundary encoding: socketioxide packets and options to and from the contract's
//! forms. A packet crosses as MessagePack of `{type, nsp, data, id?}` — what the
//! Node.js adapters put on the wire — with binary attachments as `bin`, so a guest can
//! embed it in its messages as is.

use std::collections::VecDeque;
use std::str::FromStr;

use bytes::Bytes;
use rmpv::Value as Mp;
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, Room};
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::{Sid, Str, Uid, Value};

use crate::runtime::{BroadcastFlags as WitFlags, BroadcastOpts};

/// Why a packet could not cross the boundary.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("packet is not valid MessagePack: {0}")]
    Decode(String),
    #[error("packet is not a socket.io packet map: {0}")]
    Shape(&'static str),
    #[error("packet data is not valid JSON: {0}")]
    Json(String),
    #[error("binary-parser packets (msgpack parser) are not supported across the adapter boundary")]
    BinaryParser,
}

/// Encodes a socketioxide packet (common parser) as contract MessagePack.
pub fn encode_packet(packet: &Packet) -> Result<Vec<u8>, CodecError> {
    let (ty, data, id) = match &packet.inner {
        PacketData::Event(v, id) | PacketData::BinaryEvent(v, id) => (2u8, Some(v), *id),
        PacketData::EventAck(v, id) | PacketData::BinaryAck(v, id) => (3u8, Some(v), Some(*id)),
        PacketData::Connect(v) => (0u8, v.as_ref(), None),
        PacketData::Disconnect => (1u8, None, None),
        PacketData::ConnectError(_) => (4u8, None, None),
    };
    let mut out = Vec::with_capacity(32 + data.map_or(0, Value::len));
    write_map_len(&mut out, if id.is_some() { 4 } else { 3 });
    write_str(&mut out, "type");
    rmp::encode::write_uint(&mut out, ty.into()).expect("vec write");
    write_str(&mut out, "nsp");
    write_str(&mut out, &packet.ns);
    write_str(&mut out, "data");
    match data {
        None => rmp::encode::write_nil(&mut out).expect("vec write"),
        Some(v) => write_value(&mut out, v)?,
    }
    if let Some(id) = id {
        write_str(&mut out, "id");
        rmp::encode::write_sint(&mut out, id).expect("vec write");
    }
    Ok(out)
}

/// The MessagePack array of an ack's arguments (the ack packet's `data`).
pub fn encode_value(value: &Value) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(16 + value.len());
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CodecError> {
    match value {
        Value::Str(json, bins) => {
            let tree: serde_json::Value =
                serde_json::from_str(json.as_str()).map_err(|e| CodecError::Json(e.to_string()))?;
            json_to_mp(out, &tree, bins.as_ref());
            Ok(())
        }
        Value::Bytes(_) => Err(CodecError::BinaryParser),
    }
}

fn write_map_len(out: &mut Vec<u8>, n: u32) {
    rmp::encode::write_map_len(out, n).expect("vec write");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(out, s).expect("vec write");
}

/// JSON (with socket.io binary placeholders) to MessagePack (with `bin`).
fn json_to_mp(out: &mut Vec<u8>, v: &serde_json::Value, bins: Option<&VecDeque<Bytes>>) {
    use serde_json::Value as J;
    match v {
        J::Null => rmp::encode::write_nil(out).expect("vec write"),
        J::Bool(b) => rmp::encode::write_bool(out, *b).expect("vec write"),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmp::encode::write_sint(out, i).expect("vec write");
            } else if let Some(u) = n.as_u64() {
                rmp::encode::write_uint(out, u).expect("vec write");
            } else {
                rmp::encode::write_f64(out, n.as_f64().unwrap_or(0.0)).expect("vec write");
            }
        }
        J::String(s) => write_str(out, s),
        J::Array(items) => {
            rmp::encode::write_array_len(out, items.len() as u32).expect("vec write");
            for item in items {
                json_to_mp(out, item, bins);
            }
        }
        J::Object(map) => {
            if let Some(bin) = placeholder(map, bins) {
                rmp::encode::write_bin(out, bin).expect("vec write");
                return;
            }
            write_map_len(out, map.len() as u32);
            for (k, item) in map {
                write_str(out, k);
                json_to_mp(out, item, bins);
            }
        }
    }
}

fn placeholder<'a>(
    map: &serde_json::Map<String, serde_json::Value>,
    bins: Option<&'a VecDeque<Bytes>>,
) -> Option<&'a [u8]> {
    if map.len() != 2 || map.get("_placeholder") != Some(&serde_json::Value::Bool(true)) {
        return None;
    }
    let num = map.get("num")?.as_u64()? as usize;
    bins?.get(num).map(|b| b.as_ref())
}

/// A decoded contract packet, ready for local delivery with the common parser.
pub fn decode_packet(bytes: &[u8], nsp: &str) -> Result<Packet, CodecError> {
    let mp =
        rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| CodecError::Decode(e.to_string()))?;
    let Mp::Map(fields) = mp else {
        return Err(CodecError::Shape("not a map"));
    };
    let mut ty = None;
    let mut data = None;
    let mut id = None;
    for (k, v) in fields {
        match k.as_str() {
            Some("type") => ty = v.as_u64(),
            Some("data") => data = Some(v),
            Some("id") => id = v.as_i64(),
            _ => {}
        }
    }
    let data = data.ok_or(CodecError::Shape("no `data`"))?;
    let value = mp_to_value(&data);
    let inner = match ty {
        Some(2) | Some(5) => {
            if !matches!(data, Mp::Array(ref a) if !a.is_empty()) {
                return Err(CodecError::Shape("event `data` must be a non-empty array"));
            }
            return Ok(with_id(Packet::event(nsp.to_string(), value), id));
        }
        Some(3) | Some(6) => match id {
            Some(id) => return Ok(Packet::ack(nsp.to_string(), value, id)),
            None => return Err(CodecError::Shape("ack without `id`")),
        },
        Some(1) => PacketData::Disconnect,
        _ => return Err(CodecError::Shape("unsupported `type`")),
    };
    Ok(Packet {
        inner,
        ns: Str::from(nsp.to_string()),
    })
}

fn with_id(mut packet: Packet, id: Option<i64>) -> Packet {
    if let Some(id) = id {
        packet.inner.set_ack_id(id);
    }
    packet
}

/// MessagePack (an ack's arguments, a packet's data) to a common-parser value.
pub fn mp_to_value(mp: &Mp) -> Value {
    let mut bins = VecDeque::new();
    let json = mp_to_json(mp, &mut bins);
    let text = serde_json::to_string(&json).expect("json values always serialize");
    Value::Str(
        Str::from(text),
        if bins.is_empty() { None } else { Some(bins) },
    )
}

/// Decodes MessagePack bytes into a common-parser value.
pub fn decode_value(bytes: &[u8]) -> Result<Value, CodecError> {
    let mp =
        rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| CodecError::Decode(e.to_string()))?;
    Ok(mp_to_value(&mp))
}

fn mp_to_json(mp: &Mp, bins: &mut VecDeque<Bytes>) -> serde_json::Value {
    use serde_json::Value as J;
    match mp {
        Mp::Nil => J::Null,
        Mp::Boolean(b) => J::Bool(*b),
        Mp::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        Mp::F32(f) => serde_json::Number::from_f64((*f).into()).map_or(J::Null, J::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Mp::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Mp::Binary(b) => {
            bins.push_back(Bytes::copy_from_slice(b));
            serde_json::json!({ "_placeholder": true, "num": bins.len() - 1 })
        }
        Mp::Array(items) => J::Array(items.iter().map(|i| mp_to_json(i, bins)).collect()),
        Mp::Map(entries) => {
            let mut map = serde_json::Map::with_capacity(entries.len());
            for (k, v) in entries {
                let key = match k {
                    Mp::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => other.to_string(),
                };
                map.insert(key, mp_to_json(v, bins));
            }
            J::Object(map)
        }
        // notepack encodes `Date` (and `undefined`) as extensions; JSON has neither.
        Mp::Ext(..) => J::Null,
    }
}

/// socketioxide options to the contract's.
pub fn opts_to_wit(opts: &BroadcastOptions) -> BroadcastOpts {
    let mut flags = WitFlags::empty();
    if opts.has_flag(BroadcastFlags::Local) {
        flags |= WitFlags::LOCAL;
    }
    if opts.has_flag(BroadcastFlags::Broadcast) {
        flags |= WitFlags::BROADCAST;
    }
    if opts.has_flag(BroadcastFlags::Volatile) {
        flags |= WitFlags::VOLATILE;
    }
    BroadcastOpts {
        flags,
        rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
        except: opts.except.iter().map(|r| r.to_string()).collect(),
        sid: opts.sid.map(|s| s.to_string()),
        server_id: opts.server_id.map(|s| s.to_string()),
    }
}

/// The contract's options to socketioxide's. Ids that are not socketioxide ids (a
/// Node.js socket's, say) cannot name a local socket and are dropped.
pub fn opts_from_wit(opts: &BroadcastOpts) -> BroadcastOptions {
    let mut out = BroadcastOptions::default();
    if opts.flags.contains(WitFlags::LOCAL) {
        out.add_flag(BroadcastFlags::Local);
    }
    if opts.flags.contains(WitFlags::BROADCAST) {
        out.add_flag(BroadcastFlags::Broadcast);
    }
    if opts.flags.contains(WitFlags::VOLATILE) {
        out.add_flag(BroadcastFlags::Volatile);
    }
    out.rooms = opts.rooms.iter().map(|r| Room::Owned(r.clone())).collect();
    out.except = opts.except.iter().map(|r| Room::Owned(r.clone())).collect();
    out.sid = opts.sid.as_deref().and_then(|s| Sid::from_str(s).ok());
    out.server_id = opts
        .server_id
        .as_deref()
        .and_then(|s| Uid::from_str(s).ok());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str, bins: Vec<&'static [u8]>) -> Packet {
        let bins: VecDeque<Bytes> = bins.into_iter().map(Bytes::from_static).collect();
        Packet::event(
            "/chat",
            Value::Str(
                Str::from(json.to_string()),
                (!bins.is_empty()).then_some(bins),
            ),
        )
    }

    #[test]
    fn event_round_trips_with_binary_intact() {
        let p = event(
            r#"["msg",{"a":1,"b":[true,null,"x",{"_placeholder":true,"num":0}]},2.5]"#,
            vec![b"\x00\xff\x10"],
        );
        let bytes = encode_packet(&p).unwrap();
        let mp = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        // The binary is a MessagePack `bin`, as notepack puts it on the wire.
        let data = &mp["data"];
        assert_eq!(data[1]["b"][3], Mp::Binary(vec![0, 0xff, 0x10]));
        assert_eq!(mp["type"], Mp::from(2));
        assert_eq!(mp["nsp"], Mp::from("/chat"));
        let back = decode_packet(&bytes, "/chat").unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn packet_without_binary_is_a_plain_event() {
        let p = event(r#"["hello","world",42,-7,18446744073709551615]"#, vec![]);
        let back = decode_packet(&encode_packet(&p).unwrap(), "/chat").unwrap();
        assert!(matches!(back.inner, PacketData::Event(_, None)));
        assert_eq!(back, p);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(decode_packet(&[0xc1], "/").is_err());
        assert!(decode_packet(&[0x93, 1, 2, 3], "/").is_err());
        // {type: 2, data: []}: an event needs a name.
        assert!(
            decode_packet(
                &[
                    0x82, 0xa4, b't', b'y', b'p', b'e', 2, 0xa4, b'd', b'a', b't', b'a', 0x90
                ],
                "/"
            )
            .is_err()
        );
    }

    #[test]
    fn options_round_trip() {
        let mut o = BroadcastOptions::new(Sid::new());
        o.add_flag(BroadcastFlags::Broadcast);
        o.add_flag(BroadcastFlags::Volatile);
        o.rooms.push("a".into());
        o.except.push("b".into());
        assert_eq!(opts_from_wit(&opts_to_wit(&o)), o);
    }
}
