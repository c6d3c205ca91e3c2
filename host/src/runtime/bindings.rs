//! Rust bindings of `wit/adapter.wit`, generated at compile time.
//!
//! The host implements every import of the `host` world; a guest may target any of
//! the narrower worlds (`local-adapter`, `pubsub-adapter`, `docstore-adapter`).
//! Exports are async so a guest call yields to tokio at each epoch tick instead of
//! holding a worker thread.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "adapter-host",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::exports::wasio::adapter::guest::{AdapterInfo, InitArgs};
pub use self::wasio::adapter::types::{
    BroadcastFlags, BroadcastOpts, Error as WitError, SocketInfo,
};

/// The package this host implements; a component must export `GUEST_INTERFACE`.
pub const PACKAGE: &str = "wasio:adapter";
/// The version of the package this host implements.
pub const VERSION: &str = "0.1.0";

/// A human line for a WIT error.
pub fn describe(e: &WitError) -> String {
    match e {
        WitError::Invalid(m) => format!("invalid: {m}"),
        WitError::Unavailable(m) => format!("unavailable: {m}"),
        WitError::Denied(m) => format!("denied: {m}"),
        WitError::Timeout(m) => format!("timeout: {m}"),
        WitError::Other(m) => m.clone(),
    }
}
