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

pub mod adapter;
pub mod admin;
pub mod bridge;
pub mod capabilities;
pub mod check;
pub mod cli;
pub mod codec;
pub mod config;
pub mod datasource;
pub mod dispatch;
pub mod handshake;
pub mod metrics;
pub mod overview;
pub mod prometheus;
pub mod publish;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod shutdown;
pub mod swap;
pub mod template;

pub use adapter::{Adapter, AdapterOptions, PartialAcks, WasmSource};
pub use bridge::WasmAdapter;
pub use config::Config;
pub use runtime::Limits;
pub use runtime::SocketInfo;
pub use swap::{AdapterStatus, ComponentSummary, SwapError, SwapReport};
