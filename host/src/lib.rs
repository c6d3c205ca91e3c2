//! wasio: a Socket.IO server whose cluster adapter is a WebAssembly component.
//!
//! As a library it gives a socketioxide app the wasm adapter:
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let adapter = wasio::Adapter::builtin_local().await?;
//! let (layer, io) = socketioxide::SocketIo::builder()
//!     .with_config(adapter.socket_io_config())
//!     .with_adapter::<wasio::WasmAdapter<_>>(adapter.clone())
//!     .build_layer();
//! io.ns("/", async |s: socketioxide::extract::SocketRef<wasio::WasmAdapter<_>>| {
//!     s.join("lobby");
//! })
//! .await?;
//! let app = axum::Router::<()>::new().layer(layer);
//! # Ok(()) }
//! ```
//!
//! The layers, each a folder whose files only import from the layers below it:
//! `config` (plain data) → `runtime` (wasmtime) and `datasource` (backend links) →
//! `capabilities` (what a guest may do) → `cluster` (the adapter) and `auth` (who may
//! connect, join, publish) → `serve` (the standalone server) → `cli` (the command line).

#![warn(missing_docs)]

mod auth;
mod capabilities;
mod cli;
mod cluster;
mod config;
mod datasource;
mod runtime;
mod serve;

pub use capabilities::{
    Histogram, Metrics, ServerSideEvent, ServerSideHandler, SocketInspector, Traffic,
};
pub use cluster::{
    Adapter, AdapterStatus, ComponentSummary, Error, GuestError, PartialAcks, RequestError,
    SwapError, SwapReport, WasmAdapter,
};
pub use config::{
    AdapterOptions, Capability, Config, Connector, DatasourceSpec, Limits, WasmSource,
};
pub use runtime::SocketInfo;

/// Runs the `wasio` command line (the binary's `main`).
pub fn run_cli() -> std::process::ExitCode {
    cli::main()
}

/// What the project's own tests and benchmarks reach beyond the library API: the
/// standalone server's parts, the datasource links, the conformance kit. Not a stable
/// API; on only with the `testing` feature.
#[cfg(feature = "testing")]
#[allow(missing_docs)]
pub mod testing {
    pub use crate::auth::policy::{
        ConnectRequest, Policy, PolicyStatus, SocketView, Verdict, limits_of,
    };
    pub use crate::cli::kit::{CheckOptions, Outcome, Report, run as check};
    pub use crate::cluster::codec::encode_packet;
    pub use crate::datasource::mongo::{Feed, MongoDocStore, Setup};
    pub use crate::datasource::nats::NatsPubSub;
    pub use crate::datasource::postgres::{MAX_PAYLOAD, PostgresLink};
    pub use crate::datasource::redis::RedisPubSub;
    pub use crate::datasource::{LinkError, LinkEvent, Sink, Topic};
    pub use crate::serve::admin::call as http_call;
    pub use crate::serve::handshake::inspector;
    pub use crate::serve::server::{Ns, app, serve};
}
