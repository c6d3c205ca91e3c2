//! An adapter component ready to instantiate: read, compiled and checked by the
//! runtime, linked with this host's capabilities.

use anyhow::Context;

use crate::capabilities::{HostState, link};
use crate::config::{Capability, WasmSource};
use crate::runtime::bindings::AdapterHostPre;

/// A compiled adapter component, checked and pre-linked.
pub(crate) struct AdapterComponent {
    /// Where it came from (a path, `builtin:NAME`, `upload:NAME`), for messages.
    pub source: String,
    /// Hex sha256 of the `.wasm` bytes.
    pub sha256: String,
    pub(crate) pre: AdapterHostPre<HostState>,
}

impl AdapterComponent {
    /// Reads the component (from disk, the binary or an upload) and compiles, checks
    /// and links it off the reactor. Errors name the component and the cause.
    pub(crate) async fn load(
        source: &WasmSource,
        granted: &[Capability],
    ) -> anyhow::Result<AdapterComponent> {
        let granted = granted.to_vec();
        let source = source.clone();
        tokio::task::spawn_blocking(move || {
            let label = source.label();
            let bytes = source.read()?;
            let compiled = crate::runtime::compile(&label, &bytes, &granted)?;
            Ok(AdapterComponent {
                pre: link(&label, &compiled.component)?,
                source: compiled.source,
                sha256: compiled.sha256,
            })
        })
        .await
        .context("adapter compilation task")?
    }
}
