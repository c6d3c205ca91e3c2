//! Reading `[adapter.options]` as every cluster guest does: one JSON object, keyed by
//! the Node.js adapter's option names, each wrong value refused with a sentence naming
//! the option.

use serde_json::{Map, Value};

/// The options object the host gives `init` (JSON).
pub fn object(json: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(json).map_err(|e| format!("options: {e}"))? {
        Value::Object(map) => Ok(map),
        _ => Err("options must be a table".into()),
    }
}

/// Why option `key`'s value `v` is refused: it must be `want`.
pub fn must_be(key: &str, v: &Value, want: &str) -> String {
    format!("option `{key}` must be {want}, got {v}")
}

/// Option `key` as a positive number of milliseconds.
pub fn millis(key: &str, v: &Value) -> Result<u32, String> {
    v.as_u64()
        .filter(|n| (1..=u64::from(u32::MAX)).contains(n))
        .map(|n| n as u32)
        .ok_or_else(|| must_be(key, v, "a positive number of milliseconds"))
}

/// `heartbeatTimeout` must outlast `heartbeatInterval`, or every node seems dead.
pub fn heartbeat(interval: u32, timeout: u32) -> Result<(), String> {
    if timeout <= interval {
        return Err(format!(
            "option `heartbeatTimeout` ({timeout}) must be longer than `heartbeatInterval` ({interval})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_option() {
        assert_eq!(object("[1]").unwrap_err(), "options must be a table");
        assert!(object("{").unwrap_err().starts_with("options: "));
        let e = millis("requestsTimeout", &Value::from(0)).unwrap_err();
        assert_eq!(
            e,
            "option `requestsTimeout` must be a positive number of milliseconds, got 0"
        );
        assert_eq!(millis("x", &Value::from(5)), Ok(5));
        assert!(
            heartbeat(5000, 5000)
                .unwrap_err()
                .contains("heartbeatTimeout")
        );
        assert!(heartbeat(5000, 10_000).is_ok());
    }
}
