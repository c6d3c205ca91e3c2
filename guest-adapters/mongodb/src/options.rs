//! `[adapter.options]`, named as `@socket.io/mongo-adapter` names them, plus how the
//! collection is read and set up.

use wasio_cluster_node::options;

/// How this node reads other nodes' documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// A change stream (what the Node.js adapter does; needs a replica set).
    ChangeStream,
    /// A tailable await-data cursor on a capped collection (no replica set needed).
    Capped,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `socket.io-adapter-events`.
    pub collection: String,
    pub feed: Feed,
    /// How long a cluster request waits for the other nodes, in ms (5000).
    pub requests_timeout: u32,
    /// Quiet time after which this node says it is alive, in ms (5000).
    pub heartbeat_interval: u32,
    /// Silence after which another node is taken for dead, in ms (10000).
    pub heartbeat_timeout: u32,
    /// Add `createdAt` to each document (for a TTL index).
    pub created_at: bool,
    /// Size in bytes of the capped collection created when missing (1 MB).
    pub capped_size: u64,
    /// Instead of a capped collection: a TTL index on `createdAt` of this many seconds.
    pub ttl_seconds: Option<u32>,
}

impl Options {
    /// Parses the JSON the host gives `init`; unknown keys and wrong types are refused.
    pub fn parse(json: &str) -> Result<Options, String> {
        let map = options::object(json)?;
        let mut o = Options {
            collection: "socket.io-adapter-events".into(),
            feed: Feed::ChangeStream,
            requests_timeout: 5000,
            heartbeat_interval: 5000,
            heartbeat_timeout: 10000,
            created_at: false,
            capped_size: 1_000_000,
            ttl_seconds: None,
        };
        for (k, v) in &map {
            let bad = |want: &str| options::must_be(k, v, want);
            let ms = || options::millis(k, v);
            match k.as_str() {
                "collection" => {
                    o.collection = v
                        .as_str()
                        .filter(|s| !s.is_empty() && !s.contains('\0') && !s.starts_with('$'))
                        .ok_or_else(|| bad("a collection name"))?
                        .to_string()
                }
                "mode" => {
                    o.feed = match v.as_str() {
                        Some("change-stream") => Feed::ChangeStream,
                        Some("capped") => Feed::Capped,
                        _ => return Err(bad("\"change-stream\" or \"capped\"")),
                    }
                }
                "requestsTimeout" => o.requests_timeout = ms()?,
                "heartbeatInterval" => o.heartbeat_interval = ms()?,
                "heartbeatTimeout" => o.heartbeat_timeout = ms()?,
                "addCreatedAtField" => {
                    o.created_at = v.as_bool().ok_or_else(|| bad("true or false"))?
                }
                "cappedSize" => {
                    o.capped_size = v
                        .as_u64()
                        .filter(|n| *n >= 4096)
                        .ok_or_else(|| bad("a size in bytes of at least 4096"))?
                }
                "ttlSeconds" => {
                    o.ttl_seconds = Some(
                        v.as_u64()
                            .filter(|n| (1..=u32::MAX as u64).contains(n))
                            .ok_or_else(|| bad("a positive number of seconds"))?
                            as u32,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown option `{k}` (known: collection, mode, requestsTimeout, heartbeatInterval, heartbeatTimeout, addCreatedAtField, cappedSize, ttlSeconds)"
                    ));
                }
            }
        }
        if o.ttl_seconds.is_some() {
            if o.feed == Feed::Capped {
                return Err("options `ttlSeconds` and mode \"capped\" exclude each other: a capped collection cannot have a TTL index".into());
            }
            // A TTL index expires documents by `createdAt`.
            o.created_at = true;
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
        assert_eq!(o.collection, "socket.io-adapter-events");
        assert_eq!(o.feed, Feed::ChangeStream);
        assert_eq!(
            (
                o.requests_timeout,
                o.heartbeat_interval,
                o.heartbeat_timeout
            ),
            (5000, 5000, 10000)
        );
        assert!(!o.created_at);
    }

    #[test]
    fn ttl_adds_created_at_and_excludes_capped() {
        let o = Options::parse(r#"{"ttlSeconds": 60}"#).unwrap();
        assert!(o.created_at);
        let e = Options::parse(r#"{"ttlSeconds": 60, "mode": "capped"}"#).unwrap_err();
        assert!(e.contains("ttlSeconds"), "{e}");
    }

    #[test]
    fn bad_options_are_named() {
        for (json, word) in [
            (r#"{"mode": "oplog"}"#, "mode"),
            (r#"{"requestsTimeout": -1}"#, "requestsTimeout"),
            (r#"{"collection": ""}"#, "collection"),
            (r#"{"colection": "x"}"#, "colection"),
            (r#"{"heartbeatTimeout": 100}"#, "heartbeatTimeout"),
        ] {
            let e = Options::parse(json).unwrap_err();
            assert!(e.contains(word), "{json}: {e}");
        }
    }
}
