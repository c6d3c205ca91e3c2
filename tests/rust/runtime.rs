//! The runtime against real compiled guests: contract checks at load, and a guest that
//! traps, loops, over-allocates or pokes at the sandbox, with the node still serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{guest, io_with};
use wasio::{Adapter, AdapterOptions, Capability, WasmSource};

/// Why loading the component at `path`, granted nothing, was refused.
async fn refusal(path: &std::path::Path) -> String {
    let opts = AdapterOptions {
        source: WasmSource::File(path.to_path_buf()),
        ..Default::default()
    };
    format!("{:#}", Adapter::load(opts).await.err().expect("refused"))
}

fn faulty(options: serde_json::Value) -> AdapterOptions {
    AdapterOptions {
        source: WasmSource::File(guest("faulty.wasm")),
        options,
        ..Default::default()
    }
}

fn count(adapter: &Adapter, name: &str) -> u64 {
    adapter.metrics().to_json()[name].as_u64().unwrap()
}

#[tokio::test]
async fn a_component_of_another_major_version_is_refused_with_both_versions() {
    let path = guest("future_version.wasm");
    let err = refusal(&path).await;
    assert!(
        err.contains(&path.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains("wasio:adapter@2.0.0"),
        "says what it has: {err}"
    );
    assert!(
        err.contains("wasio:adapter@0.1.x"),
        "says what is needed: {err}"
    );
}

#[tokio::test]
async fn a_capability_is_granted_only_by_the_config() {
    let path = guest("pubsub_user.wasm");
    let err = refusal(&path).await;
    assert!(
        err.contains("wasio:adapter/pubsub@0.1.0") && err.contains("does not grant"),
        "{err}"
    );

    // Granted, it loads; with no datasource attached the capability answers `denied`.
    let opts = AdapterOptions {
        source: WasmSource::File(path),
        granted: vec![Capability::PubSub],
        ..Default::default()
    };
    let adapter = Adapter::load(opts).await.expect("loads when granted");
    let io = io_with(&adapter).await;
    let err = io
        .emit("ev", "x")
        .await
        .expect_err("no datasource attached")
        .to_string();
    assert!(
        err.contains("denied: no pub/sub datasource is attached"),
        "{err}"
    );
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm at all").unwrap();
    let err = refusal(&garbage).await;
    assert!(
        err.contains("garbage.wasm") && err.contains("not a valid WebAssembly component"),
        "{err}"
    );

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = refusal(&core).await;
    assert!(
        err.contains("core.wasm") && err.contains("core wasm module"),
        "{err}"
    );

    let missing = dir.path().join("missing.wasm");
    let err = refusal(&missing).await;
    assert!(
        err.contains("missing.wasm") && err.contains("cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn an_init_that_fails_refuses_the_adapter() {
    let err = Adapter::load(faulty(serde_json::json!({ "fail_init": true })))
        .await
        .err()
        .expect("refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("init refused") && err.contains("on purpose"),
        "{err}"
    );
}

#[tokio::test]
async fn the_builtin_local_adapter_loads_and_counts_one_server() {
    let adapter = Adapter::builtin_local().await.unwrap();
    assert_eq!(adapter.status().current.name, "local");
    let io = io_with(&adapter).await;
    assert_eq!(io.of("/").unwrap().fetch_sockets().await.unwrap().len(), 0);
}

/// A looping guest is stopped at its deadline, and while it loops the reactor keeps
/// running other tasks (on a single-threaded runtime, so a blocked thread would show).
#[tokio::test(flavor = "current_thread")]
async fn a_looping_guest_is_stopped_at_the_deadline_without_blocking_the_reactor() {
    let adapter = Adapter::load(faulty(serde_json::json!({}))).await.unwrap();
    let io = io_with(&adapter).await;
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let started = Instant::now();
    let res = io.emit("ev", "__loop__").await;
    let took = started.elapsed();
    ticker.abort();
    let err = res.expect_err("the relay failed").to_string();
    assert!(err.contains("deadline of 100ms"), "{err}");
    assert!(
        took >= Duration::from_millis(100),
        "stopped only at the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_millis(600),
        "stopped near the deadline: {took:?}"
    );
    assert!(
        ticks.load(Ordering::Relaxed) >= 4,
        "the reactor ran other tasks meanwhile: {} ticks",
        ticks.load(Ordering::Relaxed)
    );
    assert_eq!(count(&adapter, "deadline_stops"), 1);
    assert_eq!(count(&adapter, "reinstantiations"), 1);
    // The fresh instance serves.
    io.emit("ev", "fine")
        .await
        .expect("served after the restart");
}

#[tokio::test]
async fn a_guest_over_its_memory_cap_is_stopped_and_replaced() {
    let mut opts = faulty(serde_json::json!({}));
    opts.limits.memory_bytes = 8 << 20;
    let adapter = Adapter::load(opts).await.unwrap();
    let io = io_with(&adapter).await;
    let err = io
        .emit("ev", "__grow__")
        .await
        .expect_err("stopped")
        .to_string();
    assert!(err.contains("over the cap of 8388608 bytes"), "{err}");
    assert_eq!(count(&adapter, "memory_stops"), 1);
    io.emit("ev", "fine")
        .await
        .expect("served after the restart");
}

#[tokio::test]
async fn a_trapping_guest_is_replaced_and_its_namespaces_replayed() {
    let adapter = Adapter::load(faulty(serde_json::json!({}))).await.unwrap();
    let io = io_with(&adapter).await;
    for _ in 0..3 {
        let err = io
            .emit("ev", "__trap__")
            .await
            .expect_err("trapped")
            .to_string();
        assert!(
            err.contains("failed in broadcast and was restarted"),
            "{err}"
        );
    }
    assert_eq!(count(&adapter, "traps"), 3);
    assert_eq!(count(&adapter, "reinstantiations"), 3);
    io.emit("ev", "fine")
        .await
        .expect("served after the restarts");
    assert_eq!(io.of("/").unwrap().fetch_sockets().await.unwrap().len(), 0);
}

/// The guest reports what it could reach: no files, no environment, no network.
#[tokio::test]
async fn the_sandbox_grants_no_filesystem_environment_or_network() {
    let adapter = Adapter::load(faulty(serde_json::json!({}))).await.unwrap();
    let io = io_with(&adapter).await;
    let report = io
        .emit("ev", "__probe__")
        .await
        .expect_err("the probe reports as an error")
        .to_string();
    eprintln!("sandbox probe: {report}");
    assert!(report.contains("fs_root=Err("), "no filesystem: {report}");
    assert!(
        report.contains("fs_cwd=Err("),
        "no working directory: {report}"
    );
    assert!(report.contains("env=0"), "no environment: {report}");
    assert!(report.contains("args=0"), "no arguments: {report}");
    assert!(report.contains("net=Err("), "no network: {report}");
    assert_eq!(count(&adapter, "traps"), 0, "a refusal is not a fault");
}

/// `wasio serve --check` of the json-rust guest with the compile cache in `dir`.
fn check_with_cache(dir: &std::path::Path) -> std::process::Output {
    let config = dir.join("wasio.toml");
    std::fs::write(
        &config,
        format!(
            "[adapter]\nwasm = {:?}\ndatasource = \"bus\"\n[datasources.bus]\nconnector = \"memory\"\nurl = \"memory://cache-test\"\n",
            guest("json_rust.wasm")
        ),
    )
    .unwrap();
    std::process::Command::new(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/wasio"),
    )
    .args(["serve", "--check", "--config"])
    .arg(&config)
    .env("WASIO_COMPILE_CACHE", dir.join("cache"))
    .output()
    .expect("wasio runs")
}

#[test]
fn compiled_components_are_cached_on_disk_and_a_bad_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("cache"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    assert!(check_with_cache(dir.path()).status.success());
    let files = cached();
    assert_eq!(files.len(), 1, "one compiled component: {files:?}");
    let good = std::fs::read(&files[0]).unwrap();
    assert!(files[0].extension().is_some_and(|e| e == "cwasm"));

    // A damaged entry is not trusted: the component is compiled again and stored anew.
    std::fs::write(&files[0], b"garbage").unwrap();
    let out = check_with_cache(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&files[0]).unwrap().len(), good.len());
}
