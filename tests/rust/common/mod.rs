//! What the Rust integration tests share: where the test guests are, and a socketioxide
//! instance on a loaded adapter.

pub mod links;
pub mod postgres;
pub mod redis_cluster;

use std::path::PathBuf;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter as SioAdapter;
use socketioxide::extract::SocketRef;
use wasio::{Adapter, WasmAdapter};

/// Where `host/build.rs` puts the guests it builds.
#[allow(dead_code)]
pub fn guest(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests/wasm32-wasip2/release")
        .join(file)
}

// Not every test binary uses every helper.
#[allow(dead_code)]
async fn noop<A: SioAdapter>(_s: SocketRef<A>) {}

/// A socketioxide instance on `adapter` with the `/` namespace opened on the guest.
#[allow(dead_code)]
pub async fn io_with(adapter: &Adapter) -> SocketIo<WasmAdapter<socketioxide::adapter::Emitter>> {
    let (_svc, io) = SocketIo::builder()
        .with_config(adapter.socket_io_config())
        .with_adapter::<WasmAdapter<_>>(adapter.clone())
        .build_svc();
    io.ns("/", noop)
        .await
        .expect("namespace opened on the guest");
    io
}
