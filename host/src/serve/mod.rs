//! `wasio serve`: the HTTP server (Socket.IO, the relay protocol, the chat page,
//! `/healthz`), the handshake record, the publish API, graceful shutdown, the admin API
//! and page, the overview, Prometheus metrics, and reloads (file watcher, SIGHUP).

pub(crate) mod admin;
pub(crate) mod handshake;
pub(crate) mod memory;
mod overview;
mod prometheus;
mod publish;
pub(crate) mod reload;
mod request;
pub(crate) mod server;
pub(crate) mod shutdown;
pub mod tls;
