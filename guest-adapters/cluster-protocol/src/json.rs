//! JSON messages as MessagePack values: Node.js nodes publish requests and responses as
//! JSON text when they carry no binary, and receivers must take both forms; and the
//! way back, for backends that send JSON when they can (PostgreSQL's NOTIFY).

use rmpv::Value;

use crate::DecodeError;

/// Parses JSON text into the value a MessagePack decoder would have produced.
pub fn to_value(bytes: &[u8]) -> Result<Value, DecodeError> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::NotMessagePack(format!("JSON: {e}")))?;
    Ok(convert(json))
}

fn convert(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            _ => Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::from(s),
        J::Array(items) => Value::Array(items.into_iter().map(convert).collect()),
        J::Object(fields) => Value::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Value::from(k), convert(v)))
                .collect(),
        ),
    }
}

/// JSON text of `bytes` (one MessagePack value), or `None` when JSON cannot say it
/// exactly: binary, extension types, non-string map keys, non-finite numbers.
pub fn from_msgpack(bytes: &[u8]) -> Option<String> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    to_json(&value).map(|j| j.to_string())
}

fn to_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => J::from(u),
            (None, Some(n)) => J::from(n),
            _ => return None,
        },
        Value::F32(f) => J::from(serde_json::Number::from_f64(f64::from(*f))?),
        Value::F64(f) => J::from(serde_json::Number::from_f64(*f)?),
        Value::String(s) => J::String(s.as_str()?.to_string()),
        Value::Array(items) => J::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        Value::Map(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| Some((k.as_str()?.to_string(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
        Value::Binary(_) | Value::Ext(..) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_what_it_can_say() {
        let text = r#"{"type":3,"data":{"opts":{"rooms":["r"],"except":[],"flags":{}},"packet":{"type":2,"data":["ev",1.5,-2,null,"é"],"nsp":"/"}},"uid":"u1","nsp":"/"}"#;
        let value = to_value(text.as_bytes()).unwrap();
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        let back: serde_json::Value = serde_json::from_str(&from_msgpack(&bytes).unwrap()).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(text).unwrap()
        );
    }

    #[test]
    fn binary_and_odd_keys_have_no_json() {
        for v in [
            Value::Array(vec![Value::Binary(vec![1, 2])]),
            Value::Map(vec![(Value::from(1), Value::Nil)]),
            Value::F64(f64::NAN),
            Value::Ext(1, vec![0]),
        ] {
            let mut bytes = Vec::new();
            rmpv::encode::write_value(&mut bytes, &v).unwrap();
            assert_eq!(from_msgpack(&bytes), None, "{v:?}");
        }
    }
}
