//! The policy starting projects (`guest-adapters/policy-*`, what `wasio policy new`
//! writes), compiled: the Rust, Python and JS ones give the same answers, with the same
//! reasons, to the same options; each refuses a wrongly typed option; hostile input is
//! denied, not a fault; `wasio policy new` writes each language's project.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::guest;
use serde_json::{Value, json};
use wasio::testing::{ConnectRequest, Policy, SocketView, Verdict};
use wasio::{Limits, WasmSource};

/// The three builds of the example policy (Python and JS by tests/run's build.sh calls).
const KITS: [&str; 3] = ["policy_rust.wasm", "policy_python.wasm", "policy_js.wasm"];

fn limits() -> Limits {
    // Python's and JS's first calls are slower in a debug host: room for them.
    Limits {
        deadline: Duration::from_millis(1000),
        memory_bytes: 64 << 20,
    }
}

fn options() -> Value {
    json!({"require": "user", "deny_rooms": ["secret*", "ops"], "deny_events": ["forbidden"], "unknown": 1})
}

async fn load(file: &str, options: Value) -> anyhow::Result<Policy> {
    Policy::load(WasmSource::File(guest(file)), options, limits()).await
}

const SOCKET: SocketView<'static> = SocketView {
    id: "sock1",
    namespace: "/",
    claims: None,
};

async fn connect(p: &Policy, auth: Value) -> Verdict {
    let req = ConnectRequest {
        namespace: "/",
        auth: &auth,
        headers: vec![],
        query: "EIO=4",
        claims: None,
    };
    p.connect(&req).await
}

async fn join(p: &Policy, rooms: &[&str]) -> Verdict {
    let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    p.join(&SOCKET, &rooms).await
}

async fn publish(p: &Policy, rooms: Option<&[&str]>, event: &str) -> Verdict {
    let rooms: Option<Vec<String>> = rooms.map(|r| r.iter().map(|r| r.to_string()).collect());
    p.publish(&SOCKET, rooms.as_deref(), event, 10).await
}

fn deny(reason: &str) -> Verdict {
    Verdict::Deny(reason.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_answers_alike() {
    for file in KITS {
        let p = load(file, options())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let status = p.status();
        let lang = file.trim_start_matches("policy_").trim_end_matches(".wasm");
        assert_eq!(status.name, format!("wasio-policy-{lang}"), "{file}");
        assert_eq!(status.version, "0.1.0", "{file}");

        let missing = deny("auth.user is missing");
        assert_eq!(
            connect(&p, json!({"user": "ann"})).await,
            Verdict::Allow,
            "{file}"
        );
        assert_eq!(connect(&p, json!({})).await, missing, "{file}");
        assert_eq!(connect(&p, json!({"user": ""})).await, missing, "{file}");
        assert_eq!(connect(&p, json!({"user": 7})).await, missing, "{file}");
        assert_eq!(connect(&p, json!(["user"])).await, missing, "{file}");
        assert_eq!(connect(&p, Value::Null).await, missing, "{file}");

        assert_eq!(
            join(&p, &["lobby", "secre"]).await,
            Verdict::Allow,
            "{file}"
        );
        assert_eq!(
            join(&p, &["lobby", "secret-1", "ops"]).await,
            deny("room secret-1 is reserved"),
            "{file}"
        );
        assert_eq!(
            join(&p, &["ops"]).await,
            deny("room ops is reserved"),
            "{file}"
        );
        assert_eq!(
            join(&p, &["opsroom"]).await,
            Verdict::Allow,
            "{file}: `ops` is exact"
        );
        assert_eq!(join(&p, &[]).await, Verdict::Allow, "{file}");

        assert_eq!(publish(&p, None, "chat").await, Verdict::Allow, "{file}");
        assert_eq!(
            publish(&p, Some(&["lobby"]), "chat").await,
            Verdict::Allow,
            "{file}"
        );
        assert_eq!(
            publish(&p, None, "forbidden").await,
            deny("event forbidden is not allowed"),
            "{file}"
        );
        assert_eq!(
            publish(&p, Some(&["secret"]), "forbidden").await,
            deny("event forbidden is not allowed"),
            "{file}: the event is checked first"
        );
        assert_eq!(
            publish(&p, Some(&["lobby", "secret"]), "chat").await,
            deny("room secret is reserved"),
            "{file}"
        );
        assert_eq!(p.status().faults, 0, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_options_allow_everything() {
    for file in KITS {
        let p = load(file, json!({}))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(connect(&p, json!({})).await, Verdict::Allow, "{file}");
        assert_eq!(join(&p, &["secret", "ops"]).await, Verdict::Allow, "{file}");
        assert_eq!(
            publish(&p, Some(&["ops"]), "forbidden").await,
            Verdict::Allow,
            "{file}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrongly_typed_option_is_refused_by_name() {
    for file in KITS {
        for (options, message) in [
            (json!({"require": 1}), "options.require must be a string"),
            (
                json!({"deny_rooms": "ops"}),
                "options.deny_rooms must be a list of strings",
            ),
            (
                json!({"deny_events": ["ok", 2]}),
                "options.deny_events must be a list of strings",
            ),
        ] {
            let e = match load(file, options.clone()).await {
                Ok(_) => panic!("{file}: {options} was accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                e.ends_with(&format!("policy init refused: {message}")),
                "{file}: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_auth_is_denied_not_a_fault() {
    let mut deep = json!("user");
    // Deep enough to exhaust a guest JSON parser's stack, shallow enough for a debug host.
    for _ in 0..1000 {
        deep = json!([deep]);
    }
    let huge = json!({ "pad": "x".repeat(1 << 20) });
    for file in KITS {
        let p = load(file, options())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(
            connect(&p, json!({"user": deep.clone()})).await,
            deny("auth.user is missing"),
            "{file}"
        );
        assert_eq!(
            connect(&p, huge.clone()).await,
            deny("auth.user is missing"),
            "{file}"
        );
        assert_eq!(p.status().faults, 0, "{file}");
    }
}

fn wasio_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wasio")
}

#[test]
fn new_writes_a_policy_project_for_each_language() {
    for (lang, entry, named) in [
        ("rust", "src/lib.rs", "Cargo.toml"),
        ("python", "app.py", "app.py"),
        ("js", "policy.js", "package.json"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("my-policy");
        let out = Command::new(wasio_bin())
            .args(["policy", "new", "my-policy", "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .expect("wasio runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("[auth]") && stdout.contains("wasio policy swap"),
            "{stdout}"
        );
        assert!(project.join(entry).is_file(), "{lang}: {entry} written");
        assert!(project.join("wit/policy.wit").is_file(), "{lang}");
        let text = std::fs::read_to_string(project.join(named)).unwrap();
        assert!(text.contains("my-policy"), "{lang}: the name is in {named}");
        let source = std::fs::read_to_string(project.join(entry)).unwrap();
        assert!(
            !source.contains("../../wit"),
            "{lang}: the WIT path is the project's"
        );
        if lang != "rust" {
            let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
            assert!(
                build.contains("/toolchain/") && !build.contains(".."),
                "{build}"
            );
            assert!(
                project.join(format!("toolchain/{lang}.sh")).is_file(),
                "{lang}"
            );
        }
        let again = Command::new(wasio_bin())
            .args(["policy", "new", "my-policy", "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .unwrap();
        assert_eq!(
            again.status.code(),
            Some(2),
            "a non-empty directory is refused"
        );
    }
}
