//! `[adapter.options]`, named as the Node.js adapter names them.

use wasio_cluster_node::options;

/// Which protocol of `@socket.io/redis-adapter` to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `createAdapter`: PUBLISH / PSUBSCRIBE, requests on their own channels.
    Classic,
    /// `createShardedAdapter`: SPUBLISH / SSUBSCRIBE, the cluster message family.
    Sharded,
}

/// Sharded mode: which rooms get a channel of their own (`subscriptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rooms {
    /// None: everything on the namespace's channel.
    Static,
    /// Rooms whose name does not look like a Node.js socket id (20 characters).
    Dynamic,
    /// Every room.
    DynamicPrivate,
}

impl Rooms {
    /// Whether a single-room broadcast to `room` travels on the room's own channel —
    /// Node.js's rule, which receivers must mirror to subscribe where senders publish.
    pub fn own_channel(self, room: &str) -> bool {
        match self {
            Rooms::Static => false,
            Rooms::Dynamic => room.chars().count() != 20,
            Rooms::DynamicPrivate => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Channel prefix: `key` (classic) or `channelPrefix` (sharded); `socket.io`.
    pub prefix: String,
    /// How long a cluster request waits for the other nodes, in ms (5000).
    pub requests_timeout: u32,
    /// Classic: answer on the requester's own response channel.
    pub specific_response_channel: bool,
    /// Sharded: per-room channels (`dynamic`, Node.js's default).
    pub rooms: Rooms,
}

impl Options {
    /// Parses the JSON the host gives `init`; unknown keys and wrong types are refused.
    pub fn parse(json: &str) -> Result<Options, String> {
        let map = options::object(json)?;
        let mut o = Options {
            mode: Mode::Classic,
            prefix: "socket.io".into(),
            requests_timeout: 5000,
            specific_response_channel: false,
            rooms: Rooms::Dynamic,
        };
        let mut prefix_key: Option<&str> = None;
        for (k, v) in &map {
            let bad = |want: &str| options::must_be(k, v, want);
            match k.as_str() {
                "mode" => {
                    o.mode = match v.as_str() {
                        Some("classic") => Mode::Classic,
                        Some("sharded") => Mode::Sharded,
                        _ => return Err(bad("\"classic\" or \"sharded\"")),
                    }
                }
                "key" | "channelPrefix" => {
                    if let Some(other) = prefix_key {
                        return Err(format!("options `{other}` and `{k}` both set the prefix"));
                    }
                    prefix_key = Some(k);
                    o.prefix = v
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| bad("a non-empty string"))?
                        .into();
                }
                "requestsTimeout" => {
                    o.requests_timeout = v
                        .as_u64()
                        .filter(|t| (1..=600_000).contains(t))
                        .ok_or_else(|| bad("a number of milliseconds (1..600000)"))?
                        as u32
                }
                "publishOnSpecificResponseChannel" => {
                    o.specific_response_channel = v.as_bool().ok_or_else(|| bad("true or false"))?
                }
                "subscriptionMode" => {
                    o.rooms = match v.as_str() {
                        Some("static") => Rooms::Static,
                        Some("dynamic") => Rooms::Dynamic,
                        Some("dynamic-private") => Rooms::DynamicPrivate,
                        _ => return Err(bad("\"static\", \"dynamic\" or \"dynamic-private\"")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown option `{k}` (known: mode, key, channelPrefix, requestsTimeout, publishOnSpecificResponseChannel, subscriptionMode)"
                    ));
                }
            }
        }
        if o.mode == Mode::Classic && prefix_key == Some("channelPrefix") {
            return Err(
                "option `channelPrefix` is for mode = \"sharded\"; classic mode calls it `key`"
                    .into(),
            );
        }
        if o.mode == Mode::Classic && map.contains_key("subscriptionMode") {
            return Err("option `subscriptionMode` is for mode = \"sharded\"".into());
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names_follow_node() {
        let o = Options::parse("{}").unwrap();
        assert_eq!(o.mode, Mode::Classic);
        assert_eq!(o.prefix, "socket.io");
        assert_eq!(o.requests_timeout, 5000);
        let o =
            Options::parse(r#"{"mode":"sharded","channelPrefix":"p","subscriptionMode":"static"}"#)
                .unwrap();
        assert_eq!(
            (o.mode, o.prefix.as_str(), o.rooms),
            (Mode::Sharded, "p", Rooms::Static)
        );
        let o = Options::parse(r#"{"mode":"sharded"}"#).unwrap();
        assert_eq!(o.rooms, Rooms::Dynamic, "Node.js's default");
        assert!(o.rooms.own_channel("lobby"));
        assert!(
            !o.rooms.own_channel("abcdefghijklmnopqrst"),
            "looks like a Node.js socket id"
        );
        assert!(Rooms::DynamicPrivate.own_channel("abcdefghijklmnopqrst"));
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        for (json, needle) in [
            (r#"{"mode":"cluster"}"#, "mode"),
            (r#"{"requestsTimeout":"5s"}"#, "requestsTimeout"),
            (r#"{"kye":"x"}"#, "unknown option `kye`"),
            (
                r#"{"mode":"sharded","subscriptionMode":"lazy"}"#,
                "subscriptionMode",
            ),
            (r#"{"subscriptionMode":"static"}"#, "sharded"),
            (r#"{"key":"a","channelPrefix":"b"}"#, "both"),
        ] {
            let e = Options::parse(json).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }
}
