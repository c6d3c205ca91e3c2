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

use crate::runtime::bindings::{BroadcastFlags as WitFlags, BroadcastOpts};

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
            let mut de = serde_json::Deserializer::from_str(json.as_str());
            let start = out.len();
            let res = serde::de::DeserializeSeed::deserialize(
                Transcode {
                    out: &mut *out,
                    bins: bins.as_ref(),
                },
                &mut de,
            )
            .and_then(|()| de.end());
            if let Err(e) = res {
                out.truncate(start);
                return Err(CodecError::Json(e.to_string()));
            }
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

/// Streams JSON (with socket.io's binary placeholders) into MessagePack (with `bin`),
/// with no intermediate tree: the hot path of every relayed broadcast.
struct Transcode<'o, 'b> {
    out: &'o mut Vec<u8>,
    bins: Option<&'b VecDeque<Bytes>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Transcode<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// A container header written as 5 bytes, then shrunk to the smallest form once the
/// count is known (the form notepack writes).
fn open_container(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, 0]);
    at
}

fn close_container(out: &mut Vec<u8>, at: usize, n: u32, map: bool) {
    let mut header = Vec::with_capacity(5);
    if map {
        rmp::encode::write_map_len(&mut header, n).expect("vec write");
    } else {
        rmp::encode::write_array_len(&mut header, n).expect("vec write");
    }
    out[at..at + header.len()].copy_from_slice(&header);
    out.drain(at + header.len()..at + 5);
}

impl<'de> serde::de::Visitor<'de> for Transcode<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        rmp::encode::write_nil(self.out).expect("vec write");
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        rmp::encode::write_bool(self.out, v).expect("vec write");
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        rmp::encode::write_sint(self.out, v).expect("vec write");
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        rmp::encode::write_uint(self.out, v).expect("vec write");
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        rmp::encode::write_f64(self.out, v).expect("vec write");
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        write_str(self.out, v);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = open_container(self.out);
        let mut n = 0u32;
        while seq
            .next_element_seed(Transcode {
                out: &mut *self.out,
                bins: self.bins,
            })?
            .is_some()
        {
            n += 1;
        }
        close_container(self.out, at, n, false);
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = open_container(self.out);
        let mut n = 0u32;
        // socket.io's `{"_placeholder": true, "num": i}` stands for attachment i.
        let (mut flag, mut num) = (false, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            write_str(self.out, &key);
            let value_at = self.out.len();
            map.next_value_seed(Transcode {
                out: &mut *self.out,
                bins: self.bins,
            })?;
            let value = &self.out[value_at..];
            match &*key {
                "_placeholder" => flag = value == [0xc3],
                "num" => num = rmp::decode::read_int::<u64, _>(&mut &value[..]).ok(),
                _ => {}
            }
            n += 1;
        }
        if n == 2
            && flag
            && let Some(bin) = num.and_then(|i| self.bins?.get(usize::try_from(i).ok()?))
        {
            self.out.truncate(at);
            rmp::encode::write_bin(self.out, bin).expect("vec write");
            return Ok(());
        }
        close_container(self.out, at, n, true);
        Ok(())
    }
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
    // The contract: no rooms means every socket. socketioxide reads that only with its
    // broadcast flag (which excludes `sid`, and there is none to exclude here).
    if opts.sid.is_none() {
        out.add_flag(BroadcastFlags::Broadcast);
    }
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
    fn headers_are_minimal_and_odd_json_survives() {
        // Minimal headers, as notepack writes them: fixarray, fixstr.
        let bytes = encode_value(&Value::Str(Str::from(r#"["a"]"#.to_string()), None)).unwrap();
        assert_eq!(bytes, [0x91, 0xa1, b'a']);
        let long: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let json = format!(
            r#"["ev","esc\"aped \u00e9\n",[{}],{{"_placeholder":true,"num":0,"x":1}},{{"_placeholder":true,"num":7}},1.5,-3,null]"#,
            long.join(",")
        );
        let p = event(&json, vec![b"bin"]);
        let bytes = encode_packet(&p).unwrap();
        let mp = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        assert_eq!(mp["data"][1], Mp::from("esc\"aped \u{e9}\n"));
        assert_eq!(
            mp["data"][2].as_array().unwrap().len(),
            40,
            "array16 header"
        );
        // Three keys, or an index with no attachment: plain maps, not binaries.
        assert!(mp["data"][3].is_map() && mp["data"][4].is_map());
        assert_eq!(mp["data"][5], Mp::F64(1.5));
        let back = decode_packet(&bytes, "/chat").unwrap();
        let (PacketData::BinaryEvent(Value::Str(text, _), _)
        | PacketData::Event(Value::Str(text, _), _)) = &back.inner
        else {
            panic!("not an event: {back:?}")
        };
        let again: serde_json::Value = serde_json::from_str(text).unwrap();
        let orig: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(again, orig);
    }

    #[test]
    fn invalid_json_is_an_error_and_writes_nothing() {
        let mut out = vec![1, 2];
        assert!(write_value(&mut out, &Value::Str(Str::from("[1,".to_string()), None)).is_err());
        assert!(write_value(&mut out, &Value::Str(Str::from("[1] x".to_string()), None)).is_err());
        assert_eq!(out, [1, 2]);
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
