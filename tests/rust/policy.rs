//! The access policy component (`[auth] policy`) against the real compiled test
//! double `tests/guests/policy-test`: its answers, its faults (trap, endless loop,
//! memory blow-up: each a counted denial, the next call on a fresh instance), refused
//! `init`s and swaps, and swaps while calls are in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::guest;
use serde_json::{Value, json};
use wasio::testing::{ConnectRequest, Policy, SocketView, Verdict};
use wasio::{Limits, WasmSource};

fn policy_wasm() -> WasmSource {
    WasmSource::File(guest("policy_test.wasm"))
}

fn limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(100),
        memory_bytes: 32 << 20,
    }
}

async fn load(options: Value) -> Policy {
    Policy::load(policy_wasm(), options, limits())
        .await
        .expect("the test policy loads")
}

const SOCKET: SocketView<'static> = SocketView {
    id: "sock1",
    namespace: "/",
    claims: None,
};

async fn join(p: &Policy, rooms: &[&str]) -> Verdict {
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    p.join(&SOCKET, &rooms).await
}

async fn connect(p: &Policy, namespace: &str, auth: Value) -> Verdict {
    let req = ConnectRequest {
        namespace,
        auth: &auth,
        headers: vec![("user-agent".into(), "test".into())],
        query: "EIO=4",
        claims: None,
    };
    p.connect(&req).await
}

fn deny(reason: &str) -> Verdict {
    Verdict::Deny(reason.into())
}

fn failed(v: &Verdict) -> &str {
    match v {
        Verdict::Deny(r) if r.starts_with("policy failed: ") => r,
        other => panic!("expected a failed call's denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allows_and_denies_by_its_rules_with_reasons() {
    let p = load(json!({
        "deny_namespaces": ["/admin"],
        "deny_rooms": ["vault"],
        "token": "t0k",
        "max_publish": 100,
    }))
    .await;
    assert!(p.is_active());
    assert_eq!(
        connect(&p, "/", json!({"token": "t0k"})).await,
        Verdict::Allow
    );
    assert_eq!(
        connect(&p, "/", json!({"token": "nope"})).await,
        deny("bad or missing token")
    );
    assert_eq!(
        connect(&p, "/admin", json!({"token": "t0k"})).await,
        deny("namespace /admin is closed")
    );
    assert_eq!(join(&p, &["lobby"]).await, Verdict::Allow);
    assert_eq!(
        join(&p, &["lobby", "vault"]).await,
        deny("room `vault` is closed")
    );
    let rooms = vec!["lobby".to_string()];
    assert_eq!(
        p.publish(&SOCKET, Some(&rooms), "chat", 10).await,
        Verdict::Allow
    );
    assert_eq!(p.publish(&SOCKET, None, "chat", 10).await, Verdict::Allow);
    assert_eq!(
        p.publish(&SOCKET, None, "chat", 1000).await,
        deny("1000 bytes is too big")
    );
    let s = p.status();
    assert_eq!(
        (s.name.as_str(), s.faults, s.allowed),
        ("policy-test", 0, 4)
    );
    assert_eq!(
        (s.denied.connect, s.denied.join, s.denied.publish),
        (2, 1, 1)
    );
    assert_eq!(s.source, guest("policy_test.wasm").display().to_string());
    assert_eq!(s.sha256.len(), 64);
    assert!(s.memory_bytes > 0, "the instance's memory is measured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_a_counted_denial_and_the_next_call_gets_a_fresh_instance() {
    let p = load(json!({})).await;
    assert_eq!(join(&p, &["__count__"]).await, deny("calls=1"));
    assert_eq!(join(&p, &["__count__"]).await, deny("calls=2"));
    let v = join(&p, &["__trap__"]).await;
    assert!(failed(&v).contains("unreachable"), "{v:?}");
    assert_eq!(p.status().faults, 1);
    assert_eq!(p.status().denied.join, 3);
    // A new instance: its count starts again.
    assert_eq!(join(&p, &["__count__"]).await, deny("calls=1"));
    assert_eq!(join(&p, &["lobby"]).await, Verdict::Allow);
    assert_eq!(p.status().faults, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_at_the_deadline() {
    let p = load(json!({})).await;
    let began = Instant::now();
    let v = p.publish(&SOCKET, None, "__loop__", 1).await;
    let took = began.elapsed();
    assert!(failed(&v).contains("deadline"), "{v:?}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(5),
        "stopped after {took:?}"
    );
    assert_eq!(p.status().faults, 1);
    assert_eq!(p.status().denied.publish, 1);
    assert_eq!(join(&p, &["lobby"]).await, Verdict::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_blowup_is_capped() {
    let p = load(json!({})).await;
    let v = join(&p, &["__grow__"]).await;
    assert!(
        failed(&v).contains("over the cap of 33554432 bytes"),
        "{v:?}"
    );
    assert_eq!(p.status().faults, 1);
    assert!(p.status().memory_bytes <= 32 << 20);
    assert_eq!(join(&p, &["lobby"]).await, Verdict::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_error_refuses_the_policy_naming_the_file() {
    let err = Policy::load(policy_wasm(), json!({"fail_init": true}), limits())
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("policy_test.wasm"), "{msg}");
    assert!(msg.contains("init refused on purpose"), "{msg}");

    let missing = Policy::load(
        WasmSource::File("/nonexistent/p.wasm".into()),
        json!({}),
        limits(),
    )
    .await
    .err()
    .expect("refused");
    assert!(
        format!("{missing:#}").contains("/nonexistent/p.wasm: cannot read policy"),
        "{missing:#}"
    );
    // An adapter is not a policy.
    let adapter = Policy::load(WasmSource::File(guest("faulty.wasm")), json!({}), limits())
        .await
        .err()
        .expect("refused");
    assert!(format!("{adapter:#}").contains("policy"), "{adapter:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_swap_keeps_the_old_policy() {
    let p = load(json!({"deny_rooms": ["vault"]})).await;
    let before = p.status();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").unwrap();

    let err = p
        .swap(WasmSource::File(junk.clone()), json!({}))
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("junk.wasm"), "{err:#}");
    let err = p
        .swap(policy_wasm(), json!({"fail_init": true}))
        .await
        .expect_err("refused");
    assert!(format!("{err:#}").contains("init refused"), "{err:#}");

    let after = p.status();
    assert_eq!((after.source, after.sha256), (before.source, before.sha256));
    assert_eq!((after.swaps, after.failed_swaps), (0, 2));
    assert!(after.last_error.unwrap().contains("init refused"));
    // Still the old rules.
    assert_eq!(join(&p, &["vault"]).await, deny("room `vault` is closed"));

    let ok = p
        .swap(policy_wasm(), json!({"name": "other", "version": "2"}))
        .await
        .expect("swapped");
    assert_eq!(
        (ok.name.as_str(), ok.version.as_str(), ok.swaps),
        ("other", "2", 1)
    );
    assert_eq!(join(&p, &["vault"]).await, Verdict::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_policy_allows_until_one_is_swapped_in() {
    let p = Policy::none(limits());
    assert!(!p.is_active());
    assert_eq!(join(&p, &["vault"]).await, Verdict::Allow);
    p.swap(policy_wasm(), json!({"deny_rooms": ["vault"]}))
        .await
        .expect("swapped in");
    assert!(p.is_active());
    assert_eq!(join(&p, &["vault"]).await, deny("room `vault` is closed"));
    p.clear().await;
    assert!(!p.is_active());
    assert_eq!(join(&p, &["vault"]).await, Verdict::Allow);
    let builtin = p
        .swap(WasmSource::Builtin("allow".into()), json!({}))
        .await
        .expect_err("no built-in policies");
    assert!(format!("{builtin:#}").contains("no built-in policies"));
}

/// Sockets keep asking while the policy is swapped back and forth between two rule
/// sets: every call is answered, by one or the other, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_concurrent_calls_lose_no_answer() {
    let closed = json!({"deny_rooms": ["x"], "name": "closed"});
    let open = json!({"name": "open"});
    let p = Arc::new(load(closed.clone()).await);
    const TASKS: usize = 8;
    const CALLS: usize = 300;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let (mut allowed, mut denied) = (0, 0);
            for _ in 0..CALLS {
                match join(&p, &["x"]).await {
                    Verdict::Allow => allowed += 1,
                    Verdict::Deny(r) if r == "room `x` is closed" => denied += 1,
                    other => panic!("an answer of neither policy: {other:?}"),
                }
            }
            (allowed, denied)
        }));
    }
    let mut swaps = 0;
    while !tasks.iter().all(|t| t.is_finished()) && swaps < 40 {
        let options = if swaps % 2 == 0 { &open } else { &closed };
        p.swap(policy_wasm(), options.clone()).await.expect("swap");
        swaps += 1;
    }
    let (mut allowed, mut denied) = (0, 0);
    for t in tasks {
        let (a, d) = t.await.unwrap();
        allowed += a;
        denied += d;
    }
    assert_eq!(allowed + denied, TASKS * CALLS);
    assert!(
        swaps >= 2,
        "the calls outlasted at least two swaps ({swaps})"
    );
    let s = p.status();
    assert_eq!(s.faults, 0);
    assert_eq!(s.swaps, swaps as u64);
    assert_eq!(s.allowed as usize, allowed);
    assert_eq!(s.denied.join as usize, denied);
    // The last swap's rules answer now.
    let expected = if swaps % 2 == 1 {
        Verdict::Allow
    } else {
        deny("room `x` is closed")
    };
    assert_eq!(join(&p, &["x"]).await, expected);
}
