//! The relay protocol's requests, read once for both ways of asking: a socket's `join`,
//! `leave` and `publish` events (MessagePack values), and `POST /api/publish` (JSON,
//! read as the same values).

use rmpv::Value as Mp;

/// Events the relay protocol reserves: socket.io's own.
pub(crate) const RESERVED: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Who asks for a publish, which decides the fields it may have.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asker {
    /// A socket's `publish` event: `{room?, event, data?, exceptSelf?}`.
    Socket,
    /// `POST /api/publish`: `{namespace?, room?, except?, event, data?}`.
    Api,
}

/// A validated publish.
pub(crate) struct Publish {
    /// The namespace (API only; a socket publishes in its own).
    pub namespace: Option<String>,
    /// Its members receive it; `None`: every socket of the namespace.
    pub rooms: Option<Vec<String>>,
    /// Members of these rooms are left out (API only).
    pub except: Option<Vec<String>>,
    /// The event name.
    pub event: String,
    /// Its one argument; `None`: none.
    pub data: Option<Mp>,
    /// The sender is left out (socket only).
    pub except_self: bool,
}

impl Publish {
    /// Reads and checks a publish request of `asker`.
    pub(crate) fn parse(arg: Mp, asker: Asker) -> Result<Publish, String> {
        let Mp::Map(fields) = arg else {
            return Err(match asker {
                Asker::Socket => "expected an object {room?, event, data?, exceptSelf?}",
                Asker::Api => "expected an object {namespace?, room?, except?, event, data?}",
            }
            .into());
        };
        let mut p = Publish {
            namespace: None,
            rooms: None,
            except: None,
            event: String::new(),
            data: None,
            except_self: false,
        };
        let mut event = None;
        for (k, v) in fields {
            let api = asker == Asker::Api;
            match k.as_str() {
                Some("room") => p.rooms = rooms_field("room", &v)?,
                Some("event") => {
                    event = Some(v.as_str().ok_or("`event` must be a string")?.to_string())
                }
                // Over the API, `null` is no argument, as an absent field.
                Some("data") => p.data = (!(api && v.is_nil())).then_some(v),
                Some("exceptSelf") if !api => {
                    p.except_self = v.as_bool().ok_or("`exceptSelf` must be a boolean")?
                }
                Some("except") if api => p.except = rooms_field("except", &v)?,
                Some("namespace") if api => {
                    p.namespace = match v {
                        Mp::Nil => None,
                        v => Some(
                            v.as_str()
                                .ok_or("`namespace` must be a string")?
                                .to_string(),
                        ),
                    }
                }
                Some(other) => return Err(format!("unknown field `{other}`")),
                None => return Err("field names must be strings".into()),
            }
        }
        p.event = event.ok_or("`event` is required")?;
        if p.event.is_empty() || RESERVED.contains(&p.event.as_str()) {
            return Err(format!(
                "`event` `{}` cannot be published (empty or reserved by socket.io)",
                p.event
            ));
        }
        Ok(p)
    }
}

/// A room field: absent or null, or a room name or a non-empty list of them.
fn rooms_field(field: &str, v: &Mp) -> Result<Option<Vec<String>>, String> {
    if v.is_nil() {
        return Ok(None);
    }
    room_list(v)
        .map(Some)
        .map_err(|e| format!("`{field}` must be a non-empty room name or list of them ({e})"))
}

/// A room name or a non-empty list of them (`join`, `leave`, and the room fields).
pub(crate) fn room_list(v: &Mp) -> Result<Vec<String>, String> {
    let one = |v: &Mp| match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err("a room must be a non-empty string".to_string()),
    };
    match v {
        Mp::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Mp::Array(_) => Err("the room list is empty".into()),
        other => one(other).map(|r| vec![r]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(json: serde_json::Value) -> Mp {
        rmpv::ext::to_value(json).unwrap()
    }

    #[test]
    fn each_asker_has_its_fields() {
        let p = Publish::parse(
            mp(serde_json::json!({"room": ["a", "b"], "event": "e", "exceptSelf": true})),
            Asker::Socket,
        )
        .unwrap();
        assert_eq!(p.rooms.unwrap(), ["a", "b"]);
        assert!(p.except_self && p.data.is_none());
        let api =
            mp(serde_json::json!({"namespace": "/x", "except": "c", "event": "e", "data": 1}));
        let p = Publish::parse(api.clone(), Asker::Api).unwrap();
        assert_eq!(
            (p.namespace.as_deref(), p.except.unwrap()),
            (Some("/x"), vec!["c".to_string()])
        );
        let e = Publish::parse(api, Asker::Socket).err().unwrap();
        assert!(e.contains("unknown field `namespace`"), "{e}");
        let e = Publish::parse(
            mp(serde_json::json!({"room": [], "event": "e"})),
            Asker::Api,
        )
        .err()
        .unwrap();
        assert!(e.contains("`room` must be a non-empty"), "{e}");
        let e = Publish::parse(mp(serde_json::json!({"event": "connect"})), Asker::Api)
            .err()
            .unwrap();
        assert!(e.contains("reserved"), "{e}");
    }
}
