//! JSON messages as MessagePack values: Node.js nodes publish requests and responses as
//! JSON text when they carry no binary, and receivers must take both forms.

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
