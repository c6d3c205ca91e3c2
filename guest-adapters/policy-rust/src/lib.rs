//! A wasio access policy in Rust (`wit/policy/policy.wit`, world `access-policy`).
//!
//! The host asks it before a client connects, joins rooms or publishes; each answer is
//! allow or deny with a reason the client is told. A panic here is a denial too (the
//! host starts a fresh instance), so inputs are checked rather than trusted.
//!
//! The rules come from `[auth] policy_options`, every key optional:
//! `{"require": "user", "deny_rooms": ["secret*", "ops"], "deny_events": ["forbidden"]}`.
//! Edit `authorize_connect`, `authorize_join` and `authorize_publish` to make it yours.
//!
//! Build: `cargo build --release --target wasm32-wasip2` (gives a component directly).

wit_bindgen::generate!({ path: "../../wit/policy", world: "access-policy" });

use std::cell::RefCell;

use exports::wasio::policy::policy::{ConnectRequest, Decision, Guest, PolicyInfo, Socket};
use serde_json::Value;
use wasio::policy::log::{Level, log};

/// The options `init` was given.
#[derive(Default)]
struct Rules {
    /// A key the handshake's `auth` object must hold as a non-empty string.
    require: Option<String>,
    /// Rooms no one may join or publish to: `name` exactly, or `prefix*`.
    deny_rooms: Vec<String>,
    /// Events no one may publish.
    deny_events: Vec<String>,
}

thread_local! {
    // One instance answers one call at a time: the rules live for the instance.
    static RULES: RefCell<Rules> = RefCell::new(Rules::default());
}

/// `options[key]` as a string; absent or null is `None`, another type an error.
fn string_option(options: &Value, key: &str) -> Result<Option<String>, String> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("options.{key} must be a string")),
    }
}

/// `options[key]` as a list of strings; absent or null is empty, another type an error.
fn list_option(options: &Value, key: &str) -> Result<Vec<String>, String> {
    let bad = || format!("options.{key} must be a list of strings");
    match options.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The first of `rooms` a `deny_rooms` entry matches (`prefix*`, else exact).
fn reserved<'a>(rules: &Rules, rooms: &'a [String]) -> Option<&'a String> {
    rooms.iter().find(|room| {
        rules.deny_rooms.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => *room == p,
        })
    })
}

struct Policy;

impl Guest for Policy {
    fn init(options: String) -> Result<PolicyInfo, String> {
        let options: Value =
            serde_json::from_str(&options).map_err(|e| format!("options: not JSON: {e}"))?;
        // Unknown keys are ignored; a known key of the wrong type is refused.
        let rules = Rules {
            require: string_option(&options, "require")?,
            deny_rooms: list_option(&options, "deny_rooms")?,
            deny_events: list_option(&options, "deny_events")?,
        };
        log(
            Level::Info,
            &format!(
                "require auth.{}, {} reserved room patterns, {} denied events",
                rules.require.as_deref().unwrap_or("(nothing)"),
                rules.deny_rooms.len(),
                rules.deny_events.len()
            ),
        );
        RULES.with(|r| *r.borrow_mut() = rules);
        Ok(PolicyInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    fn authorize_connect(request: ConnectRequest) -> Decision {
        RULES.with(|r| {
            let Some(key) = &r.borrow().require else {
                return Decision::Allow;
            };
            // Unparsable or not an object: the key is missing, not a trap.
            let auth: Value = serde_json::from_str(&request.auth).unwrap_or_default();
            match auth.get(key).and_then(Value::as_str) {
                Some(v) if !v.is_empty() => Decision::Allow,
                _ => Decision::Deny(format!("auth.{key} is missing")),
            }
        })
    }

    fn authorize_join(_socket: Socket, rooms: Vec<String>) -> Decision {
        RULES.with(|r| match reserved(&r.borrow(), &rooms) {
            Some(room) => Decision::Deny(format!("room {room} is reserved")),
            None => Decision::Allow,
        })
    }

    fn authorize_publish(
        _socket: Socket,
        rooms: Option<Vec<String>>,
        event: String,
        _size: u32,
    ) -> Decision {
        RULES.with(|r| {
            let r = r.borrow();
            if r.deny_events.contains(&event) {
                return Decision::Deny(format!("event {event} is not allowed"));
            }
            // `None` is the whole namespace: no room to check.
            match reserved(&r, rooms.as_deref().unwrap_or_default()) {
                Some(room) => Decision::Deny(format!("room {room} is reserved")),
                None => Decision::Allow,
            }
        })
    }
}

export!(Policy);
