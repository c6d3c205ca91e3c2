//! `[adapter.options]`, named as `@socket.io/postgres-adapter` names them.

use wasio_cluster_node::options;

#[derive(Debug, Clone)]
pub struct Options {
    /// The prefix of the channels, `socket.io`: a namespace's is `prefix#nsp`.
    pub channel_prefix: String,
    /// `socket_io_attachments`: where payloads too long or binary for a notification go.
    pub table_name: String,
    /// Notifications of this many bytes or more go by attachment (8000, PostgreSQL's limit).
    pub payload_threshold: usize,
    /// How often, and past which age, attachments are deleted, in ms (30000).
    pub cleanup_interval: u32,
    /// How long a cluster request waits for the other nodes, in ms (5000).
    pub requests_timeout: u32,
    /// Quiet time after which this node says it is alive, in ms (5000).
    pub heartbeat_interval: u32,
    /// Silence after which another node is taken for dead, in ms (10000).
    pub heartbeat_timeout: u32,
}

const KNOWN: &str = "channelPrefix, tableName, payloadThreshold, cleanupInterval, requestsTimeout, heartbeatInterval, heartbeatTimeout";

impl Options {
    /// Parses the JSON the host gives `init`; unknown keys and wrong types are refused.
    pub fn parse(json: &str) -> Result<Options, String> {
        let map = options::object(json)?;
        let mut o = Options {
            channel_prefix: "socket.io".into(),
            table_name: "socket_io_attachments".into(),
            payload_threshold: 8000,
            cleanup_interval: 30_000,
            requests_timeout: 5000,
            heartbeat_interval: 5000,
            heartbeat_timeout: 10_000,
        };
        for (k, v) in &map {
            let bad = |want: &str| options::must_be(k, v, want);
            let ms = || options::millis(k, v);
            match k.as_str() {
                "channelPrefix" => {
                    o.channel_prefix = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| bad("a non-empty string"))?
                        .to_string()
                }
                "tableName" => {
                    o.table_name = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| bad("a table name"))?
                        .to_string()
                }
                "payloadThreshold" => {
                    o.payload_threshold =
                        v.as_u64()
                            .filter(|n| (1..=8000).contains(n))
                            .ok_or_else(|| {
                                bad("a number of bytes from 1 to 8000 (PostgreSQL's limit)")
                            })? as usize
                }
                "cleanupInterval" => o.cleanup_interval = ms()?,
                "requestsTimeout" => o.requests_timeout = ms()?,
                "heartbeatInterval" => o.heartbeat_interval = ms()?,
                "heartbeatTimeout" => o.heartbeat_timeout = ms()?,
                _ => return Err(format!("unknown option `{k}` (known: {KNOWN})")),
            }
        }
        options::heartbeat(o.heartbeat_interval, o.heartbeat_timeout)?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_node_s() {
        let o = Options::parse("{}").unwrap();
        assert_eq!(o.channel_prefix, "socket.io");
        assert_eq!(o.table_name, "socket_io_attachments");
        assert_eq!((o.payload_threshold, o.cleanup_interval), (8000, 30_000));
        assert_eq!(
            (
                o.requests_timeout,
                o.heartbeat_interval,
                o.heartbeat_timeout
            ),
            (5000, 5000, 10_000)
        );
    }

    #[test]
    fn bad_options_are_named() {
        for (json, word) in [
            (r#"{"payloadThreshold": 9000}"#, "payloadThreshold"),
            (r#"{"channelPrefix": ""}"#, "channelPrefix"),
            (r#"{"cleanupInterval": 0}"#, "cleanupInterval"),
            (r#"{"chanelPrefix": "x"}"#, "chanelPrefix"),
            (r#"{"heartbeatTimeout": 100}"#, "heartbeatTimeout"),
        ] {
            let e = Options::parse(json).unwrap_err();
            assert!(e.contains(word), "{json}: {e}");
        }
    }
}
