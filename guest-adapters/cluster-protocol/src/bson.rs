//! Cluster messages as the BSON documents `@socket.io/mongo-adapter` 0.4 inserts:
//! `{type, data, uid, nsp}` (plus `createdAt` when the adapter adds it), binary as BSON
//! binary. Values convert both ways through the MessagePack value model, so a packet
//! relayed between a MongoDB and a Redis cluster reads the same.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};
use rmpv::Value;

use crate::{DecodeError, Message};

/// Nesting deeper than this is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

impl Message {
    /// The document a Node.js node would insert (without `_id` and `createdAt`).
    pub fn to_document(&self) -> Document {
        let bytes = self.encode();
        // Our own encoding always reads back as a map.
        match rmpv::decode::read_value(&mut bytes.as_slice()).map(|v| to_bson(&v)) {
            Ok(Bson::Document(d)) => d,
            _ => Document::new(),
        }
    }

    /// Reads a received document (extra fields such as `_id` and `createdAt` ignored).
    pub fn from_document(bytes: &[u8]) -> Result<Message, DecodeError> {
        Message::from_value(read_document(bytes)?)
    }
}

/// A BSON document's bytes as a MessagePack value.
pub fn read_document(bytes: &[u8]) -> Result<Value, DecodeError> {
    let doc = Document::from_reader(bytes)
        .map_err(|e| DecodeError::NotMessagePack(format!("not BSON: {e}")))?;
    from_bson_doc(&doc, 0)
}

/// A MessagePack value as BSON: integers as `int32` when they fit (as Node.js's driver
/// writes numbers), `int64` otherwise; `bin` as generic binary; non-string map keys as
/// their text.
pub fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Nil | Value::Ext(..) => Bson::Null,
        Value::Boolean(b) => Bson::Boolean(*b),
        Value::Integer(i) => match i.as_i64() {
            Some(n) => match i32::try_from(n) {
                Ok(small) => Bson::Int32(small),
                Err(_) => Bson::Int64(n),
            },
            None => Bson::Double(i.as_f64().unwrap_or(0.0)),
        },
        Value::F32(f) => Bson::Double(f64::from(*f)),
        Value::F64(f) => Bson::Double(*f),
        Value::String(s) => Bson::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b.clone(),
        }),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Map(fields) => {
            let mut d = Document::new();
            for (k, v) in fields {
                let key = match k {
                    Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => other.to_string(),
                };
                d.insert(key, to_bson(v));
            }
            Bson::Document(d)
        }
    }
}

/// A BSON value as MessagePack: integral doubles as integers (Node.js writes numbers
/// beyond 32 bits as doubles), binary of any subtype as `bin`, dates as ISO-8601 text
/// (what a JSON client would see), ObjectIds as hex, other BSON types as their text.
pub fn from_bson(v: &Bson) -> Result<Value, DecodeError> {
    from_bson_at(v, 0)
}

fn from_bson_at(v: &Bson, depth: usize) -> Result<Value, DecodeError> {
    Ok(match v {
        Bson::Null | Bson::Undefined => Value::Nil,
        Bson::Boolean(b) => Value::Boolean(*b),
        Bson::Int32(n) => Value::from(*n),
        Bson::Int64(n) => Value::from(*n),
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => {
            Value::from(*f as i64)
        }
        Bson::Double(f) => Value::F64(*f),
        Bson::String(s) => Value::from(s.as_str()),
        Bson::Binary(b) => Value::Binary(b.bytes.clone()),
        Bson::Array(items) => {
            let depth = deeper(depth)?;
            Value::Array(
                items
                    .iter()
                    .map(|i| from_bson_at(i, depth))
                    .collect::<Result<_, _>>()?,
            )
        }
        Bson::Document(d) => from_bson_doc(d, deeper(depth)?)?,
        Bson::ObjectId(id) => Value::from(id.to_hex()),
        Bson::DateTime(t) => Value::from(
            t.try_to_rfc3339_string()
                .unwrap_or_else(|_| t.timestamp_millis().to_string()),
        ),
        other => Value::from(other.to_string()),
    })
}

fn from_bson_doc(d: &Document, depth: usize) -> Result<Value, DecodeError> {
    Ok(Value::Map(
        d.iter()
            .map(|(k, v)| Ok((Value::from(k.as_str()), from_bson_at(v, depth)?)))
            .collect::<Result<_, DecodeError>>()?,
    ))
}

fn deeper(depth: usize) -> Result<usize, DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::Shape("nested too deep"));
    }
    Ok(depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, Flags, Opts};
    use bson::doc;

    fn packet(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &v).unwrap();
        out
    }

    #[test]
    fn a_broadcast_is_the_document_node_inserts() {
        let p = Value::Map(vec![
            ("type".into(), 2.into()),
            (
                "data".into(),
                Value::Array(vec!["ev".into(), Value::Binary(vec![1, 2, 3])]),
            ),
            ("nsp".into(), "/".into()),
        ]);
        let msg = Message {
            uid: "abc".into(),
            nsp: "/".into(),
            body: Body::Broadcast {
                packet: packet(p),
                request_id: None,
                opts: Opts {
                    rooms: vec!["r1".into()],
                    except: vec![],
                    flags: Flags::default(),
                },
            },
        };
        let d = msg.to_document();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(keys, ["type", "data", "uid", "nsp"]);
        assert_eq!(d.get_i32("type").unwrap(), 3);
        let data = d.get_document("data").unwrap();
        let bin = &data
            .get_document("packet")
            .unwrap()
            .get_array("data")
            .unwrap()[1];
        assert_eq!(
            bin,
            &Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes: vec![1, 2, 3]
            })
        );
        let back = Message::from_document(&bson::to_vec(&d).unwrap()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn node_documents_decode() {
        // As @socket.io/mongo-adapter inserts them: doubles for large numbers, a date.
        let d = doc! {
            "_id": bson::oid::ObjectId::new(),
            "type": 8,
            "data": {"requestId": "r", "sockets": [{"id": "s", "handshake": {"issued": 1.7e12, "time": "x"}, "rooms": ["s"], "data": null}]},
            "uid": "n1",
            "nsp": "/",
            "createdAt": bson::DateTime::from_millis(0),
        };
        let m = Message::from_document(&bson::to_vec(&d).unwrap()).unwrap();
        let Body::FetchSocketsResponse {
            request_id,
            sockets,
        } = m.body
        else {
            panic!("{m:?}")
        };
        assert_eq!(request_id, "r");
        let s = crate::read_any(&sockets[0]).unwrap();
        let issued = &s["handshake"]["issued"];
        assert_eq!(issued.as_u64(), Some(1_700_000_000_000));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Message::from_document(b"\x01\x02").is_err());
        let d = doc! {"type": "x", "uid": 1};
        assert!(Message::from_document(&bson::to_vec(&d).unwrap()).is_err());
        let mut deep = Bson::Null;
        for _ in 0..200 {
            deep = Bson::Array(vec![deep]);
        }
        let d = doc! {"type": 3, "uid": "u", "nsp": "/", "data": deep};
        assert!(Message::from_document(&bson::to_vec(&d).unwrap()).is_err());
    }
}
