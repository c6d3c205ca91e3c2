//! `wasio:adapter/log`: guest log lines into the host's `tracing`, tagged with the adapter.

use super::HostState;
use crate::runtime::bindings::wasio::adapter::log::{Host, Level};

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let adapter = self.node.adapter_name();
        // Debug and trace lines are too many to say what led to a fault.
        if !matches!(level, Level::Trace | Level::Debug) {
            self.node.output.push(&message);
        }
        match level {
            Level::Trace => tracing::trace!(target: "wasio::guest", %adapter, "{message}"),
            Level::Debug => tracing::debug!(target: "wasio::guest", %adapter, "{message}"),
            Level::Info => tracing::info!(target: "wasio::guest", %adapter, "{message}"),
            Level::Warn => tracing::warn!(target: "wasio::guest", %adapter, "{message}"),
            Level::Error => tracing::error!(target: "wasio::guest", %adapter, "{message}"),
        }
        Ok(())
    }
}
