//! Hot swap at the library level, on the Redis at 127.0.0.1:6379: two nodes exchange
//! numbered `serverSideEmit`s both ways while one of them swaps its adapter back and
//! forth between two builds of the Redis guest. Every message is counted on arrival:
//! none lost, none twice. Cluster requests made during the swaps all end (answered, or
//! failed with a clear error), and refused swaps leave the old adapter serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{guest, io_with};
use wasio::{
    Adapter, AdapterOptions, Capability, Connector, DatasourceSpec, ServerSideEvent, SwapError,
    WasmSource,
};

fn redis(source: WasmSource, key: &str, url: &str) -> AdapterOptions {
    AdapterOptions {
        source,
        options: serde_json::json!({ "key": key }),
        request_timeout: Duration::from_secs(2),
        granted: vec![Capability::PubSub],
        datasource: Some(DatasourceSpec {
            name: "redis".into(),
            connector: Connector::Redis,
            url: url.into(),
            publish_buffer: 10_000,
        }),
        ..Default::default()
    }
}

fn key(test: &str) -> String {
    format!("wasio-swap-{test}-{}", std::process::id())
}

/// Counts the numbered server-side emits a node receives, by number.
fn counter(adapter: &Adapter) -> Arc<Mutex<HashMap<u64, u32>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let s = seen.clone();
    adapter.on_server_side_emit(Arc::new(move |ev: ServerSideEvent| {
        if let rmpv::Value::Array(items) = &ev.data
            && let Some(n) = items.get(1).and_then(rmpv::Value::as_u64)
        {
            *s.lock().unwrap().entry(n).or_insert(0) += 1;
        }
    }));
    seen
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Emits `n` numbered events from `from`, one per millisecond.
async fn emit(from: Adapter, n: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..n {
        tick.tick().await;
        from.server_side_emit("/", vec!["n".into(), i.into()])
            .await
            .expect("emit accepted");
    }
}

/// Waits until `seen` holds `0..n`, then checks each arrived exactly once.
async fn exactly_once(seen: &Mutex<HashMap<u64, u32>>, n: u64, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().len() < n as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().unwrap();
    let lost: Vec<u64> = (0..n).filter(|i| !seen.contains_key(i)).collect();
    let twice: Vec<(&u64, &u32)> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        lost.is_empty(),
        "{who}: {} of {n} lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(twice.is_empty(), "{who}: delivered twice: {twice:?}");
    assert_eq!(seen.len() as u64, n, "{who}: nothing else arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_back_and_forth_lose_and_duplicate_nothing_and_no_request_hangs() {
    let url = "redis://127.0.0.1:6379";
    let k = key("load");
    let builds = [
        WasmSource::Builtin("redis".into()),
        WasmSource::File(guest("redis_next.wasm")),
    ];
    let a = Adapter::load(redis(builds[0].clone(), &k, url))
        .await
        .unwrap();
    let b = Adapter::load(redis(builds[0].clone(), &k, url))
        .await
        .unwrap();
    let _io_a = io_with(&a).await;
    let _io_b = io_with(&b).await;
    let on_a = counter(&a);
    let on_b = counter(&b);
    until("both nodes to count each other", async || {
        a.server_count("/").await.ok() == Some(2) && b.server_count("/").await.ok() == Some(2)
    })
    .await;

    const N: u64 = 3000;
    const SWAPS: usize = 40;
    let a_to_b = tokio::spawn(emit(a.clone(), N));
    let b_to_a = tokio::spawn(emit(b.clone(), N));
    // Cluster requests from the swapping node, all through the swaps.
    let requests = {
        let b = b.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            for _ in 0..60 {
                let started = Instant::now();
                match b.fetch_sockets("/", &[], &[]).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                // The request timeout (2 s) plus the host's grace: nothing waits longer.
                assert!(
                    started.elapsed() < Duration::from_millis(3500),
                    "a request hung"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (ok, failed)
        })
    };
    let mut versions = Vec::new();
    for i in 0..SWAPS {
        let to = builds[(i + 1) % 2].clone();
        let report = b
            .swap(redis(to, &k, url))
            .await
            .unwrap_or_else(|e| panic!("swap {i} refused: {e}"));
        versions.push(report.to.version);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a_to_b.await.unwrap();
    b_to_a.await.unwrap();
    let (ok, failed) = requests.await.unwrap();

    eprintln!(
        "A: {:?}\nB: {:?}",
        a.datasource_status(),
        b.datasource_status()
    );
    exactly_once(&on_b, N, "A -> B (B swapping)").await;
    exactly_once(&on_a, N, "B -> A (emitted by the swapping node)").await;
    assert!(
        versions.contains(&"0.1.1-next".to_string()) && versions.contains(&"0.1.0".to_string()),
        "both builds ran: {versions:?}"
    );
    let status = b.status();
    assert_eq!(status.swaps, SWAPS as u64);
    assert_eq!(status.failed_swaps, 0);
    assert!(status.previous.is_some(), "the previous adapter is kept");
    assert!(ok > 0, "requests were answered during the swaps");
    for e in &failed {
        assert!(
            e.contains("swapped out"),
            "a request failed for another reason than the swap: {e}"
        );
    }
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_swaps_leave_the_old_adapter_serving_and_rollback_returns() {
    let url = "redis://127.0.0.1:6379";
    let k = key("refused");
    let a = Adapter::load(redis(WasmSource::Builtin("redis".into()), &k, url))
        .await
        .unwrap();
    let b = Adapter::load(redis(WasmSource::Builtin("redis".into()), &k, url))
        .await
        .unwrap();
    let _io_a = io_with(&a).await;
    let _io_b = io_with(&b).await;
    let on_a = counter(&a);
    until("both nodes to count each other", async || {
        b.server_count("/").await.ok() == Some(2)
    })
    .await;
    let before = b.status();

    let garbage = WasmSource::Bytes {
        label: "upload:garbage".into(),
        bytes: Arc::new(b"not a component".to_vec()),
    };
    let refusals = [
        (redis(garbage, &k, url), "upload:garbage"),
        (
            redis(WasmSource::File(guest("future_version.wasm")), &k, url),
            "future_version.wasm",
        ),
        (
            AdapterOptions {
                options: serde_json::json!({ "fail_init": true }),
                ..redis(WasmSource::File(guest("faulty.wasm")), &k, url)
            },
            "faulty.wasm",
        ),
        (
            redis(
                WasmSource::Builtin("redis".into()),
                &k,
                "redis://127.0.0.1:1",
            ),
            "127.0.0.1:1",
        ),
    ];
    for (i, (opts, names)) in refusals.into_iter().enumerate() {
        let unreachable = i == 3;
        let e = b.swap(opts).await.expect_err("refused");
        let msg = e.to_string();
        assert!(msg.contains(names), "the message names {names}: {msg}");
        assert_eq!(
            matches!(e, SwapError::Datasource(_)),
            unreachable,
            "the kind of refusal: {e:?}"
        );
        // Still serving: an emit from B reaches A.
        b.server_side_emit("/", vec!["n".into(), (i as u64).into()])
            .await
            .unwrap();
        until("the old adapter to relay after the refusal", async || {
            on_a.lock().unwrap().len() == i + 1
        })
        .await;
    }
    let after = b.status();
    assert_eq!(after.current.sha256, before.current.sha256);
    assert_eq!(after.swaps, 0);
    assert_eq!(after.failed_swaps, 4);
    assert!(after.last_error.unwrap().contains("127.0.0.1:1"));
    assert!(matches!(b.rollback().await, Err(SwapError::NoPrevious)));

    // local -> redis -> rollback to local, with the namespace open throughout.
    let c = Adapter::builtin_local().await.unwrap();
    let _io_c = io_with(&c).await;
    assert_eq!(c.server_count("/").await.unwrap(), 1);
    let report = c
        .swap(redis(WasmSource::Builtin("redis".into()), &k, url))
        .await
        .unwrap();
    assert_eq!(report.from.name, "local");
    assert_eq!(report.to.datasource.as_deref(), Some("redis"));
    until("the swapped-in node to join the cluster", async || {
        c.server_count("/").await.ok() == Some(3)
    })
    .await;
    let back = c.rollback().await.unwrap();
    assert_eq!(back.to.name, "local");
    assert_eq!(c.server_count("/").await.unwrap(), 1);
    assert_eq!(c.status().swaps, 2);
    for n in [a, b, c] {
        n.close().await;
    }
}
