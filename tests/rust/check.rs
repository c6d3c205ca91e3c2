//! The conformance kit (`wasio adapter check`) on real compiled guests: every adapter we
//! ship passes it, on the in-memory bus, the Redis at 127.0.0.1:6379, NATS and PostgreSQL; adapters
//! that break the contract or the cluster semantics fail it, on the right row; the CLI
//! prints the table and exits non-zero; `wasio adapter new` writes a project.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::guest;
use wasio::WasmSource;
use wasio::testing::{CheckOptions, Outcome, Report, check as run};

/// One test at a time: the kit runs guests under the default 100 ms call deadline, and
/// a project build beside it would eat the 2 cores those calls need.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn wasio_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wasio")
}

async fn check(wasm: WasmSource, datasource: &str, options: serde_json::Value) -> Report {
    run(CheckOptions {
        wasm,
        datasource: datasource.into(),
        options,
        ..Default::default()
    })
    .await
    .expect("the check ran")
}

fn assert_passed(report: &Report) {
    assert!(report.passed(), "{}", report.table());
    // Every scenario ran; none was skipped.
    assert_eq!(report.rows.len(), 18, "{}", report.table());
    assert!(
        report.rows.iter().all(|r| r.outcome == Outcome::Pass),
        "{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_guest_passes_on_the_memory_bus() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = check(
        WasmSource::Builtin("redis".into()),
        "memory://",
        serde_json::json!({}),
    )
    .await;
    assert_passed(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_guest_passes_sharded_on_the_memory_bus() {
    let _one = ONE_AT_A_TIME.lock().await;
    let options = serde_json::json!({ "mode": "sharded" });
    assert_passed(&check(WasmSource::Builtin("redis".into()), "memory://", options).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_guest_passes_on_real_redis() {
    let _one = ONE_AT_A_TIME.lock().await;
    let key = format!("wasio-check-{}", std::process::id());
    let report = check(
        WasmSource::Builtin("redis".into()),
        "redis://127.0.0.1:6379",
        serde_json::json!({ "key": key }),
    )
    .await;
    assert_passed(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_adapters_pass_in_every_language() {
    let _one = ONE_AT_A_TIME.lock().await;
    for file in ["json_rust.wasm", "json_python.wasm", "json_js.wasm"] {
        let report = check(
            WasmSource::File(guest(file)),
            "memory://",
            serde_json::json!({}),
        )
        .await;
        assert_passed(&report);
    }
}

/// A Redis Cluster of three masters (`redis-cluster://`): the Redis guest in both
/// protocols; classic counts are summed over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_guest_passes_on_a_redis_cluster() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = common::redis_cluster::RedisCluster::start();
    for mode in ["classic", "sharded"] {
        let options = serde_json::json!({ "mode": mode });
        let report = check(WasmSource::Builtin("redis".into()), &cluster.url(), options).await;
        assert_passed(&report);
    }
}

/// The machine's NATS (`connector = "nats"`): the JSON adapters in every language and
/// the Redis guest's classic protocol (channels and a PSUBSCRIBE pattern) run on it
/// unchanged; counts come from the link's census.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_adapters_pass_on_nats() {
    let _one = ONE_AT_A_TIME.lock().await;
    let prefix = format!("kit-{}", std::process::id());
    for file in ["json_rust.wasm", "json_python.wasm", "json_js.wasm"] {
        let report = check(
            WasmSource::File(guest(file)),
            "nats://127.0.0.1:4222",
            serde_json::json!({ "prefix": prefix }),
        )
        .await;
        assert_passed(&report);
    }
    let report = check(
        WasmSource::Builtin("redis".into()),
        "nats://127.0.0.1:4222",
        serde_json::json!({ "key": prefix }),
    )
    .await;
    assert_passed(&report);
}

/// The machine's PostgreSQL (`connector = "postgres"`): the PostgreSQL guest, on a
/// channel prefix and attachments table of its own; nodes are counted by heartbeat, so
/// a short `heartbeatTimeout` lets the crash row see the count drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_guest_passes_on_postgresql() {
    let _one = ONE_AT_A_TIME.lock().await;
    let run = format!("kit_{}", std::process::id());
    let report = check(
        WasmSource::Builtin("postgres".into()),
        "postgres://postgres@127.0.0.1:5432/test",
        serde_json::json!({
            "channelPrefix": run,
            "tableName": format!("{run}_attachments"),
            "heartbeatInterval": 500,
            "heartbeatTimeout": 2000,
        }),
    )
    .await;
    assert_passed(&report);
}

/// TEST DOUBLE `broken` with one bug at a time: each fails the row written for it, and
/// without a bug it passes them all (so the rows, not the double, are what fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bug_fails_the_row_for_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    // A short patience: the bugs make rows wait for what never comes.
    let broken = |bug: &str| {
        run(CheckOptions {
            wasm: WasmSource::File(guest("broken.wasm")),
            options: serde_json::json!({ "bug": bug }),
            patience: std::time::Duration::from_secs(3),
            ..Default::default()
        })
    };
    assert_passed(&broken("none").await.unwrap());
    let failed = |report: &Report| -> Vec<&'static str> {
        report
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .map(|r| r.scenario)
            .collect()
    };
    let why = |report: &Report, row: &str| -> String {
        match &report
            .rows
            .iter()
            .find(|r| r.scenario.starts_with(row))
            .unwrap()
            .outcome
        {
            Outcome::Fail(why) => why.clone(),
            other => panic!("{row}: {other:?}\n{}", report.table()),
        }
    };

    let mixed = broken("one-namespace").await.unwrap();
    assert_eq!(
        failed(&mixed),
        ["a second namespace: its rooms and broadcasts apart"],
        "{}",
        mixed.table()
    );
    let apart = why(&mixed, "a second namespace");
    assert!(
        apart.contains("(in `/`) got the `/other` broadcast"),
        "{apart}"
    );

    let miscount = broken("miscount").await.unwrap();
    for row in [
        "fetchSockets: every socket",
        "allRooms",
        "serverSideEmit with ack",
    ] {
        assert!(
            why(&miscount, row).contains("never called `requests.finish`"),
            "{row}:\n{}",
            miscount.table()
        );
    }

    let fragile = broken("fragile").await.unwrap();
    assert_eq!(
        failed(&fragile),
        ["malformed messages: dropped, counted"],
        "{}",
        fragile.table()
    );
    let trapped = why(&fragile, "malformed messages");
    assert!(trapped.contains("trapped"), "{trapped}");
    assert!(
        trapped.contains("cannot lower this value"),
        "the guest's last words: {trapped}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_does_not_deliver_fails_the_cluster_rows() {
    let _one = ONE_AT_A_TIME.lock().await;
    // TEST DOUBLE pubsub-user publishes broadcasts but never delivers what arrives.
    // Every row waits in vain: a short patience keeps the test short.
    let report = run(CheckOptions {
        wasm: WasmSource::File(guest("pubsub_user.wasm")),
        patience: std::time::Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!report.passed());
    let row = |name: &str| {
        report
            .rows
            .iter()
            .find(|r| r.scenario.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{}", report.table()))
    };
    assert!(
        matches!(&row("broadcast to all").outcome, Outcome::Fail(why) if why.contains("B0 did not get")),
        "{}",
        report.table()
    );
    assert!(
        matches!(row("fetchSockets: every").outcome, Outcome::Fail(_)),
        "{}",
        report.table()
    );
    assert!(report.table().contains("FAIL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_problems_are_explained() {
    let _one = ONE_AT_A_TIME.lock().await;
    let future = check(
        WasmSource::File(guest("future_version.wasm")),
        "memory://",
        serde_json::json!({}),
    )
    .await;
    let finding = future
        .contract
        .iter()
        .find(|f| !f.ok)
        .expect("a failed finding");
    assert!(finding.text.contains("regenerate"), "{}", future.table());
    assert!(
        future.rows.is_empty(),
        "no scenario runs on a broken contract"
    );

    let garbage = check(
        WasmSource::Bytes {
            label: "garbage.wasm".into(),
            bytes: std::sync::Arc::new(b"not wasm at all".to_vec()),
        },
        "memory://",
        serde_json::json!({}),
    )
    .await;
    assert!(!garbage.passed());
    assert!(
        garbage
            .table()
            .contains("garbage.wasm: not a valid WebAssembly component"),
        "{}",
        garbage.table()
    );
}

#[test]
fn the_cli_prints_the_table_and_exits_by_the_result() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let ok = Command::new(wasio_bin())
        .args(["adapter", "check", "builtin:redis"])
        .output()
        .expect("wasio runs");
    let table = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        table.contains("pass  broadcast to all") && table.contains("PASS:"),
        "{table}"
    );

    let bad = Command::new(wasio_bin())
        .args(["adapter", "check", "--wait-ms", "300"])
        .arg(guest("pubsub_user.wasm"))
        .output()
        .expect("wasio runs");
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    assert!(String::from_utf8_lossy(&bad.stdout).contains("FAIL:"));
}

#[test]
fn new_writes_a_project_for_each_language() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    for (lang, entry) in [
        ("rust", "src/lib.rs"),
        ("python", "app.py"),
        ("js", "adapter.js"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("my-adapter");
        let out = Command::new(wasio_bin())
            .args(["adapter", "new", "my-adapter", "--lang", lang, "--dir"])
            .arg(&project)
            .output()
            .expect("wasio runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(project.join(entry).is_file(), "{lang}: {entry} written");
        assert!(project.join("wit/adapter.wit").is_file());
        let again = Command::new(wasio_bin())
            .args(["adapter", "new", "my-adapter", "--lang", lang, "--dir"])
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

/// Runs `cmd` in `dir`, failing the test with its output when it fails.
fn run_in(dir: &std::path::Path, cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn new_projects_build_and_pass_the_check() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let root = tempfile::tempdir().unwrap();
    let bin = wasio_bin();
    let bin = bin.to_str().unwrap();
    for lang in ["python", "js", "rust"] {
        let dir = root.path().join(format!("starter-{lang}"));
        run_in(
            root.path(),
            &[
                bin,
                "adapter",
                "new",
                &format!("starter-{lang}"),
                "--lang",
                lang,
            ],
        );
        let wasm = format!("starter_{lang}.wasm");
        match lang {
            // Offline: the workspace build fetched every crate the template uses.
            "rust" => {
                run_in(
                    &dir,
                    &[
                        "cargo",
                        "build",
                        "--offline",
                        "--release",
                        "--target",
                        "wasm32-wasip2",
                    ],
                );
                std::fs::copy(
                    dir.join("target/wasm32-wasip2/release").join(&wasm),
                    dir.join(&wasm),
                )
                .unwrap();
            }
            _ => run_in(&dir, &["bash", "build.sh", &wasm]),
        }
        run_in(&dir, &[bin, "adapter", "check", &wasm]);
    }
}
