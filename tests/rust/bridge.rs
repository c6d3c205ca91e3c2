//! The socketioxide bridge's cluster requests through real guests: answered at once by
//! the single-node guest, and ended by the host's own deadline when a guest never
//! answers — no request can hang.

use std::time::{Duration, Instant};

mod common;

use common::{guest, io_with};
use wasio::{Adapter, AdapterOptions, WasmSource};

#[tokio::test]
async fn the_local_guest_answers_cluster_requests_at_once() {
    let adapter = Adapter::builtin_local().await.unwrap();
    let io = io_with(&adapter).await;
    let started = Instant::now();
    assert!(io.of("/").unwrap().rooms().await.unwrap().is_empty());
    assert!(
        io.of("/")
            .unwrap()
            .fetch_sockets()
            .await
            .unwrap()
            .is_empty()
    );
    let acks = io
        .timeout(Duration::from_secs(5))
        .emit_with_ack::<_, String>("ev", "x")
        .await
        .unwrap();
    use futures_util::StreamExt;
    assert_eq!(acks.count().await, 0, "no clients, no acks");
    // Each would take the full 5 s request timeout if the guest did not finish them.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_guest_that_never_answers_is_ended_at_the_hosts_deadline() {
    let opts = AdapterOptions {
        source: WasmSource::File(guest("faulty.wasm")),
        options: serde_json::json!({ "mute": true }),
        request_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let adapter = Adapter::load(opts).await.unwrap();
    let io = io_with(&adapter).await;
    let started = Instant::now();
    let rooms = io
        .of("/")
        .unwrap()
        .rooms()
        .await
        .expect("ends with this node's answer");
    let took = started.elapsed();
    assert!(rooms.is_empty());
    // The request timeout (200 ms) plus the host's one-second grace.
    assert!(
        took >= Duration::from_millis(1200),
        "not before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(4), "at the deadline: {took:?}");
}
