//! TEST DOUBLE, never shipped: an access policy (`wit/policy/policy.wit`) whose rules come
//! from its options, and that misbehaves on purpose so tests can show the host
//! surviving it. A room (join or publish) or an event named `__trap__` traps,
//! `__loop__` spins forever, `__grow__` allocates until the memory cap stops it, and
//! `__count__` is denied with the number of calls this instance has answered (a fresh
//! instance says 1).
//!
//! Options (all optional):
//! `{"name": "...", "version": "...", "fail_init": true, "deny_namespaces": [...],
//!   "deny_rooms": [...], "token": "...", "max_publish": N}`.
//! With `token`, a connect whose `auth.token` differs is denied.

wit_bindgen::generate!({ path: "../../../wit/policy", world: "access-policy" });

use std::cell::RefCell;

use exports::wasio::policy::policy::{ConnectRequest, Decision, Guest, PolicyInfo, Socket};
use serde_json::Value;
use wasio::policy::log::{Level, log};

/// The rules `init` was given.
#[derive(Default)]
struct Rules {
    deny_namespaces: Vec<String>,
    deny_rooms: Vec<String>,
    token: Option<String>,
    max_publish: Option<u64>,
}

thread_local! {
    static RULES: RefCell<Rules> = RefCell::new(Rules::default());
    static CALLS: RefCell<u64> = const { RefCell::new(0) };
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Counts the call; misbehaves when `name` asks for it.
fn called(names: &[&str]) -> Option<Decision> {
    let n = CALLS.with(|c| {
        *c.borrow_mut() += 1;
        *c.borrow()
    });
    for name in names {
        match *name {
            "__trap__" => panic!("policy-test: trap requested"),
            "__loop__" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "__grow__" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hog);
                }
            }
            "__count__" => return Some(Decision::Deny(format!("calls={n}"))),
            _ => {}
        }
    }
    None
}

fn rooms_decision(rooms: &[String]) -> Decision {
    RULES.with(|r| {
        let r = r.borrow();
        match rooms.iter().find(|room| r.deny_rooms.contains(room)) {
            Some(room) => Decision::Deny(format!("room `{room}` is closed")),
            None => Decision::Allow,
        }
    })
}

struct PolicyTest;

impl Guest for PolicyTest {
    fn init(options: String) -> Result<PolicyInfo, String> {
        let v: Value = serde_json::from_str(&options).map_err(|e| format!("options: {e}"))?;
        if v["fail_init"].as_bool() == Some(true) {
            return Err("policy-test: init refused on purpose".into());
        }
        RULES.with(|r| {
            *r.borrow_mut() = Rules {
                deny_namespaces: strings(&v, "deny_namespaces"),
                deny_rooms: strings(&v, "deny_rooms"),
                token: v["token"].as_str().map(String::from),
                max_publish: v["max_publish"].as_u64(),
            }
        });
        log(Level::Info, "policy-test: ready");
        Ok(PolicyInfo {
            name: v["name"].as_str().unwrap_or("policy-test").into(),
            version: v["version"]
                .as_str()
                .unwrap_or(env!("CARGO_PKG_VERSION"))
                .into(),
        })
    }

    fn authorize_connect(request: ConnectRequest) -> Decision {
        if let Some(d) = called(&[request.namespace.as_str()]) {
            return d;
        }
        RULES.with(|r| {
            let r = r.borrow();
            if r.deny_namespaces.contains(&request.namespace) {
                return Decision::Deny(format!("namespace {} is closed", request.namespace));
            }
            if let Some(token) = &r.token {
                let auth: Value = serde_json::from_str(&request.auth).unwrap_or_default();
                if auth["token"].as_str() != Some(token) {
                    return Decision::Deny("bad or missing token".into());
                }
            }
            Decision::Allow
        })
    }

    fn authorize_join(_socket: Socket, rooms: Vec<String>) -> Decision {
        let names: Vec<&str> = rooms.iter().map(String::as_str).collect();
        if let Some(d) = called(&names) {
            return d;
        }
        rooms_decision(&rooms)
    }

    fn authorize_publish(
        _socket: Socket,
        rooms: Option<Vec<String>>,
        event: String,
        size: u32,
    ) -> Decision {
        let rooms = rooms.unwrap_or_default();
        let mut names: Vec<&str> = rooms.iter().map(String::as_str).collect();
        names.push(&event);
        if let Some(d) = called(&names) {
            return d;
        }
        let too_big = RULES.with(|r| r.borrow().max_publish.is_some_and(|m| u64::from(size) > m));
        if too_big {
            return Decision::Deny(format!("{size} bytes is too big"));
        }
        rooms_decision(&rooms)
    }
}

export!(PolicyTest);
