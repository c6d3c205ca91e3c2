//! The hot-swap operations surface against a real `wasio serve` process: the admin API
//! (auth, status, swap by name and by upload, refusals, rollback), the `wasio adapter`
//! command, the `.wasm` file watcher and SIGHUP.
//!
//! Needs the `wasio` binary (`cargo build -p wasio`; `WASIO_BIN` names another) and,
//! for the Redis swap, a Redis at 127.0.0.1:6379.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "test-token-Zq9";

fn wasio_bin() -> PathBuf {
    std::env::var_os("WASIO_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wasio"),
        PathBuf::from,
    )
}

/// Where the test guests are (`WASIO_TEST_GUESTS` overrides).
fn guest(file: &str) -> PathBuf {
    match std::env::var_os("WASIO_TEST_GUESTS") {
        Some(dir) => PathBuf::from(dir).join(file),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/guests/wasm32-wasip2/release")
            .join(file),
    }
}

/// A `wasio serve` process on free ports, its log kept for assertions.
struct Node {
    child: Child,
    admin: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node whose config file (in a temp dir of its own) is `config` plus
    /// the `[admin]` section; `files` are written next to it first.
    fn start(config: &str, files: &[(&str, &[u8])]) -> Node {
        Node::start_in(".", "wasio.toml", config, files)
    }

    /// As [`Node::start`], with the process started in the temp dir's `cwd` and given
    /// `--config CONFIG` as it is (a relative path, from `cwd`); `files` are written at
    /// their paths under the temp dir.
    fn start_in(cwd: &str, config_arg: &str, config: &str, files: &[(&str, &[u8])]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().join(cwd);
        std::fs::create_dir_all(&cwd).unwrap();
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        std::fs::write(cwd.join(config_arg), with_admin(config)).unwrap();
        let bin = wasio_bin();
        let mut child = Command::new(&bin)
            .args(["serve", "--port", "0", "--config"])
            .arg(config_arg)
            .current_dir(&cwd)
            .env("RUST_LOG", "info")
            .env_remove("WASIO_ADMIN__TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (cargo build -p wasio): {e}", bin.display()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut node = Node {
            child,
            admin: String::new(),
            http: String::new(),
            log,
            dir,
        };
        node.admin = node.wait_log("admin API listening on http://", Duration::from_secs(60));
        node.http = node.wait_log("wasio listening on http://", Duration::from_secs(60));
        node
    }

    /// Waits for a log line containing `needle`; returns `http://` and what follows it
    /// on that line, up to a space.
    fn wait_log(&mut self, needle: &str, within: Duration) -> String {
        self.wait_log_nth(needle, 1, within)
    }

    /// Like [`Node::wait_log`], for the `nth` line with `needle` (1 is the first).
    fn wait_log_nth(&mut self, needle: &str, nth: usize, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let found = {
                let log = self.log.lock().unwrap();
                log.iter()
                    .filter(|l| l.contains(needle))
                    .nth(nth - 1)
                    .cloned()
            };
            if let Some(line) = found {
                let rest = &line[line.find(needle).unwrap() + needle.len()..];
                let addr = rest.split_whitespace().next().unwrap_or("");
                let scheme = if needle.ends_with("http://") {
                    "http://"
                } else {
                    ""
                };
                return format!("{scheme}{}", addr.replace("0.0.0.0", "127.0.0.1"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("wasio exited ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < end,
                "no log line with `{needle}`:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn get(&self) -> Value {
        let (code, body) = self.call("GET", "/admin/adapter", None).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    async fn call(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> (u16, Value) {
        wasio::testing::http_call(&self.admin, TOKEN, method, path, body)
            .await
            .unwrap()
    }

    async fn swap_json(&self, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            "/admin/adapter",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// Polls the status until `done` holds for it.
    async fn await_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.get().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; status {status:#}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sighup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    }

    /// `wasio adapter ARGS` against this node: exit code, stdout, stderr.
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_of("adapter", args)
    }

    /// `wasio COMMAND ARGS` against this node: exit code, stdout, stderr.
    fn cli_of(&self, command: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(wasio_bin())
            .arg(command)
            .args(args)
            .args(["--admin", &self.admin])
            .env("WASIO_ADMIN_TOKEN", TOKEN)
            .env_remove("WASIO_CONFIG")
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn with_admin(config: &str) -> String {
    format!("{config}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

/// A Redis datasource on the Redis the suite expects.
const REDIS: &str =
    "[datasources.cache]\nconnector = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n";

/// The local guest with a custom section appended: the same adapter, other bytes.
fn local_variant(tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(guest("wasio_guest_local.wasm")).unwrap();
    let name = b"wasio-test";
    let payload = tag.as_bytes();
    let size = 1 + name.len() + payload.len();
    assert!(size < 128 && name.len() < 128, "one-byte LEB128 sizes");
    bytes.push(0); // custom section
    bytes.push(size as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// Replaces `path` the way deployments do: write elsewhere, rename over.
fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn every_request_needs_the_token() {
    let node = Node::start("", &[]);
    for token in ["", "wrong", "test-token-Zq"] {
        let (code, body) =
            wasio::testing::http_call(&node.admin, token, "GET", "/admin/adapter", None)
                .await
                .unwrap();
        assert_eq!(code, 401, "token `{token}`: {body}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    let (code, _) = wasio::testing::http_call(
        &node.admin,
        "wrong",
        "POST",
        "/admin/adapter/rollback",
        None,
    )
    .await
    .unwrap();
    assert_eq!(code, 401);
    let (code, _) = node.call("GET", "/admin/adapter", None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn status_describes_the_running_adapter() {
    let node = Node::start("", &[]);
    let s = node.get().await;
    assert_eq!(s["name"], "local", "{s:#}");
    assert!(
        s["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{s:#}"
    );
    assert_eq!(s["source"], "builtin:local", "{s:#}");
    assert_eq!(s["sha256"].as_str().unwrap().len(), 64, "{s:#}");
    assert!(s["datasource"].is_null(), "{s:#}");
    assert!(s["loaded_at_ms"].is_u64(), "{s:#}");
    assert_eq!(s["swaps"], 0, "{s:#}");
    assert_eq!(s["failed_swaps"], 0, "{s:#}");
    assert!(s["last_error"].is_null(), "{s:#}");
    assert!(s["previous"].is_null(), "{s:#}");
}

#[tokio::test]
async fn swap_to_redis_and_roll_back() {
    let node = Node::start(REDIS, &[]);
    let before = node.get().await;
    let (code, r) = node
        .swap_json(json!({
            "wasm": "builtin:redis",
            "datasource": "cache",
            "options": { "key": format!("wasio-admin-test-{}", std::process::id()) },
        }))
        .await;
    assert_eq!(code, 200, "{r:#}\n{}", node.log_text());
    assert_eq!(r["from"]["name"], "local", "{r:#}");
    assert_eq!(r["to"]["name"], "redis", "{r:#}");
    assert!(r["total_ms"].as_f64().unwrap() >= 0.0, "{r:#}");
    let s = node.get().await;
    assert_eq!(s["name"], "redis", "{s:#}");
    assert_eq!(s["source"], "builtin:redis", "{s:#}");
    assert_eq!(s["datasource"], "cache", "{s:#}");
    assert_eq!(s["swaps"], 1, "{s:#}");
    assert_eq!(s["previous"]["name"], "local", "{s:#}");
    // The node still serves clients.
    let (code, _) = wasio::testing::http_call(&node.http, "", "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!(code, 200);

    let (code, r) = node.call("POST", "/admin/adapter/rollback", None).await;
    assert_eq!(code, 200, "{r:#}");
    assert_eq!(r["to"]["name"], "local", "{r:#}");
    let s = node.get().await;
    assert_eq!(s["name"], "local", "{s:#}");
    assert_eq!(s["sha256"], before["sha256"], "{s:#}");
    assert_eq!(s["swaps"], 2, "{s:#}");
}

#[tokio::test]
async fn rollback_with_nothing_before_is_409() {
    let node = Node::start("", &[]);
    let (code, r) = node.call("POST", "/admin/adapter/rollback", None).await;
    assert_eq!(code, 409, "{r:#}");
    assert!(r["error"].as_str().unwrap().contains("roll back"), "{r:#}");
}

#[tokio::test]
async fn refused_uploads_change_nothing() {
    let node = Node::start("", &[]);
    let before = node.get().await;

    let (code, r) = node
        .call(
            "POST",
            "/admin/adapter?name=garbage.wasm",
            Some(("application/wasm", b"not wasm".to_vec())),
        )
        .await;
    assert_eq!(code, 422, "{r:#}");
    let msg = r["error"].as_str().unwrap();
    assert!(
        msg.contains("upload:garbage.wasm") && msg.contains("not a valid WebAssembly component"),
        "{msg}"
    );
    let s = node.get().await;
    assert_eq!(s["sha256"], before["sha256"], "{s:#}");
    assert_eq!(s["swaps"], 0, "{s:#}");
    assert_eq!(s["failed_swaps"], 1, "{s:#}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("upload:garbage.wasm"),
        "{s:#}"
    );

    // Built against another version of the contract: refused with both versions.
    let bytes = std::fs::read(guest("future_version.wasm")).unwrap();
    let (code, r) = node
        .call(
            "POST",
            "/admin/adapter",
            Some(("application/octet-stream", bytes)),
        )
        .await;
    assert_eq!(code, 422, "{r:#}");
    let msg = r["error"].as_str().unwrap();
    assert!(
        msg.contains("upload:") && msg.contains("wasio:adapter@"),
        "{msg}"
    );

    // A component that imports pubsub, with no datasource to grant it.
    let (code, r) = node
        .swap_json(json!({ "wasm": guest("pubsub_user.wasm").display().to_string() }))
        .await;
    assert_eq!(code, 422, "{r:#}");
    assert!(
        r["error"].as_str().unwrap().contains("pubsub_user.wasm"),
        "{r:#}"
    );

    let s = node.get().await;
    assert_eq!(s["sha256"], before["sha256"], "{s:#}");
    assert_eq!(s["failed_swaps"], 3, "{s:#}");
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let node = Node::start(REDIS, &[]);
    let (code, r) = node
        .swap_json(json!({ "wasm": "builtin:redis", "datasource": "nope" }))
        .await;
    assert_eq!(code, 400, "{r:#}");
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("nope") && msg.contains("cache"), "{msg}");

    let (code, r) = node
        .call(
            "POST",
            "/admin/adapter",
            Some(("application/json", b"{\"wasm\": ".to_vec())),
        )
        .await;
    assert_eq!(code, 400, "{r:#}");
    let (code, r) = node.swap_json(json!({ "wsam": "builtin:local" })).await;
    assert_eq!(code, 400, "{r:#}");
    assert!(r["error"].as_str().unwrap().contains("wsam"), "{r:#}");
    let (code, r) = node
        .call(
            "POST",
            "/admin/adapter",
            Some(("text/plain", b"x".to_vec())),
        )
        .await;
    assert_eq!(code, 415, "{r:#}");
    let s = node.get().await;
    assert_eq!(s["swaps"], 0, "{s:#}");
    assert_eq!(
        s["failed_swaps"], 0,
        "malformed requests are not swap attempts: {s:#}"
    );
}

#[tokio::test]
async fn the_adapter_command() {
    let node = Node::start("", &[("garbage.wasm", b"not wasm")]);
    let (code, out, err) = node.cli(&["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("local "), "{out}");
    assert!(out.contains("builtin:local"), "{out}");

    let (code, out, err) = node.cli(&["swap", "garbage.wasm"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("422") && err.contains("garbage.wasm"), "{err}");

    let (code, out, err) = node.cli(&["swap", "missing.wasm"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("missing.wasm"), "{err}");

    let faulty = guest("faulty.wasm").display().to_string();
    let (code, out, err) = node.cli(&["swap", &faulty]);
    assert_eq!(code, 0, "{out}{err}\n{}", node.log_text());
    assert!(
        out.starts_with("swapped local v") && out.contains("-> faulty v"),
        "{out}"
    );
    let (code, out, err) = node.cli(&["rollback"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("swapped faulty v") && out.contains("-> local v"),
        "{out}"
    );

    let out = Command::new(wasio_bin())
        .args([
            "adapter",
            "status",
            "--admin",
            &node.admin,
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn a_new_wasm_file_is_swapped_in() {
    let first = local_variant("one");
    let mut node = Node::start(
        "[adapter]\nwasm = \"adapter.wasm\"\n",
        &[("adapter.wasm", &first)],
    );
    node.wait_log("watching ", Duration::from_secs(10));
    let before = node.get().await;
    assert_eq!(before["name"], "local");

    // Another component, by rename over the file.
    let faulty = std::fs::read(guest("faulty.wasm")).unwrap();
    replace_file(&node.path("adapter.wasm"), &faulty);
    let s = node
        .await_status("the watcher's swap to faulty.wasm", |s| {
            s["name"] == "faulty"
        })
        .await;
    assert_eq!(s["swaps"], 1, "{s:#}");
    assert!(
        s["source"].as_str().unwrap().ends_with("adapter.wasm"),
        "{s:#}"
    );

    // A broken file is refused and the running adapter stays.
    replace_file(&node.path("adapter.wasm"), b"not wasm");
    let s = node
        .await_status("the refusal of a broken file", |s| s["failed_swaps"] == 1)
        .await;
    assert_eq!(s["name"], "faulty", "{s:#}");
    assert!(
        s["last_error"].as_str().unwrap().contains("adapter.wasm"),
        "{s:#}"
    );

    // A later change is tried again; written in place this time.
    std::fs::write(node.path("adapter.wasm"), local_variant("two")).unwrap();
    let s = node
        .await_status("the swap back to local", |s| s["name"] == "local")
        .await;
    assert_ne!(s["sha256"], before["sha256"], "{s:#}");
    assert_eq!(s["swaps"], 2, "{s:#}");
}

#[tokio::test]
async fn sighup_reloads_the_config() {
    let mut node = Node::start("", &[("local2.wasm", &local_variant("hup"))]);
    let before = node.get().await;

    // A malformed config: refused, nothing changes, the node serves on.
    std::fs::write(node.path("wasio.toml"), "[adapter\nwasm = 1\n").unwrap();
    node.sighup();
    node.wait_log("SIGHUP: config refused", Duration::from_secs(10));
    assert!(
        node.log_text().contains("wasio.toml"),
        "{}",
        node.log_text()
    );
    let s = node.get().await;
    assert_eq!(s["sha256"], before["sha256"], "{s:#}");
    let (code, _) = wasio::testing::http_call(&node.http, "", "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!(code, 200);

    // A changed config: swapped to its adapter, and its file watched.
    std::fs::write(
        node.path("wasio.toml"),
        with_admin("[adapter]\nwasm = \"local2.wasm\"\n"),
    )
    .unwrap();
    node.sighup();
    let s = node
        .await_status("the swap to local2.wasm", |s| {
            s["source"].as_str().unwrap().ends_with("local2.wasm")
        })
        .await;
    assert_eq!(s["swaps"], 1, "{s:#}");
    assert_eq!(s["name"], "local", "{s:#}");
    replace_file(
        &node.path("local2.wasm"),
        &std::fs::read(guest("faulty.wasm")).unwrap(),
    );
    node.await_status("the watcher following the new file", |s| {
        s["name"] == "faulty"
    })
    .await;
}

/// `--config ../run/wasio.toml` from another directory, with `wasm = "../mine/a.wasm"`:
/// the watcher swaps to the file it watches (once resolved `../run/../mine/a.wasm`),
/// not to that path resolved a second time (`../run/../run/../mine/a.wasm`).
#[tokio::test]
async fn the_watcher_follows_a_relative_path_from_a_relative_config() {
    let mut node = Node::start_in(
        "cwd",
        "../run/wasio.toml",
        "[adapter]\nwasm = \"../mine/a.wasm\"\n",
        &[("run/.keep", b""), ("mine/a.wasm", &local_variant("rel"))],
    );
    node.wait_log("watching ", Duration::from_secs(10));
    let faulty = std::fs::read(guest("faulty.wasm")).unwrap();
    replace_file(&node.path("mine/a.wasm"), &faulty);
    let s = node
        .await_status("the watcher's swap to faulty.wasm", |s| {
            s["name"] == "faulty" || s["failed_swaps"] != 0
        })
        .await;
    assert_eq!(s["name"], "faulty", "{s:#}\n{}", node.log_text());
    assert_eq!(s["source"], "../run/../mine/a.wasm", "{s:#}");
}

/// The policy test double with a custom section appended: the same policy, other bytes.
fn policy_variant(tag: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(guest("policy_test.wasm")).unwrap();
    let name = b"wasio-test";
    let size = 1 + name.len() + tag.len();
    assert!(size < 128, "one-byte LEB128 sizes");
    bytes.extend_from_slice(&[0, size as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(tag.as_bytes());
    bytes
}

impl Node {
    async fn policy(&self) -> Value {
        let (code, body) = self.call("GET", "/admin/policy", None).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    async fn await_policy(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.policy().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; policy {status:#}\nlog:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const POLICY: &str = "[auth]\npolicy = \"policy.wasm\"\n[auth.policy_options]\nname = \"one\"\n";

#[tokio::test]
async fn the_policy_is_swapped_by_the_admin_api_the_cli_the_watcher_and_sighup() {
    let mut node = Node::start(POLICY, &[("policy.wasm", &policy_variant("a"))]);
    let (code, _) = wasio::testing::http_call(&node.admin, "wrong", "GET", "/admin/policy", None)
        .await
        .unwrap();
    assert_eq!(code, 401);
    let s = node.policy().await;
    assert_eq!(
        (s["active"].clone(), s["name"].clone()),
        (json!(true), json!("one"))
    );
    assert!(
        s["source"].as_str().unwrap().ends_with("policy.wasm"),
        "{s:#}"
    );
    let first_sha = s["sha256"].clone();

    // By path, with new options.
    let body = json!({"wasm": "policy.wasm", "options": {"name": "two"}});
    let (code, s) = node
        .call(
            "POST",
            "/admin/policy",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
    assert_eq!(code, 200, "{s}");
    assert_eq!(
        (s["name"].clone(), s["swaps"].clone()),
        (json!("two"), json!(1))
    );

    // Refused: junk, and an init error; the running one stays.
    let (code, e) = node
        .call(
            "POST",
            "/admin/policy?name=junk",
            Some(("application/wasm", b"junk".to_vec())),
        )
        .await;
    assert_eq!(code, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("upload:junk"), "{e}");
    let body = json!({"wasm": "policy.wasm", "options": {"fail_init": true}});
    let (code, e) = node
        .call(
            "POST",
            "/admin/policy",
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("init refused on purpose"),
        "{e}"
    );
    let s = node.policy().await;
    assert_eq!(
        (s["name"].clone(), s["failed_swaps"].clone()),
        (json!("two"), json!(2))
    );

    // The CLI: an upload (options kept), then the status.
    let other = node.path("other.wasm");
    std::fs::write(&other, policy_variant("b")).unwrap();
    let (code, out, err) = node.cli_of("policy", &["swap", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("upload:other.wasm"), "{out}");
    let (code, out, err) = node.cli_of("policy", &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("two") && out.contains("refused: 2"), "{out}");

    // SIGHUP: back to the config's policy and options, its file watched again.
    std::fs::write(
        node.path("wasio.toml"),
        with_admin(&POLICY.replace("\"one\"", "\"three\"")),
    )
    .unwrap();
    node.sighup();
    let s = node
        .await_policy("SIGHUP's swap", |s| s["name"] == "three")
        .await;
    assert_eq!(s["sha256"], first_sha, "{s:#}");
    // The file watched anew (the first such line was the start's).
    node.wait_log_nth("for a new policy", 2, Duration::from_secs(10));

    // The watcher: new bytes in the file are swapped in, with the running options.
    replace_file(&node.path("policy.wasm"), &policy_variant("c"));
    let s = node
        .await_policy("the watcher's swap", |s| s["sha256"] != first_sha)
        .await;
    assert_eq!(s["name"], "three", "{s:#}");
    assert!(
        s["source"].as_str().unwrap().ends_with("policy.wasm"),
        "{s:#}"
    );
}

#[test]
fn check_names_the_policy_and_refuses_one_whose_init_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.wasm"), policy_variant("chk")).unwrap();
    let run = |config: &str| {
        std::fs::write(dir.path().join("wasio.toml"), config).unwrap();
        Command::new(wasio_bin())
            .args(["serve", "--check", "--config"])
            .arg(dir.path().join("wasio.toml"))
            .output()
            .unwrap()
    };
    let out = run(POLICY);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("policy `one`"), "{stdout}");
    assert!(stdout.contains("policy.wasm (sha256 "), "{stdout}");

    let out = run(&format!("{POLICY}fail_init = true\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("policy.wasm") && stderr.contains("init refused on purpose"),
        "{stderr}"
    );
}
