//! The guest components built into this binary, and reading a component from where
//! the config says it is.

use std::sync::Arc;

use anyhow::Context;

use crate::config::WasmSource;

/// Names of the built-in adapters.
pub(crate) const BUILTINS: &[&str] = &["local", "redis", "mongodb", "postgres"];

/// The built-in component `name`, if there is one.
pub(crate) fn builtin(name: &str) -> Option<&'static [u8]> {
    match name {
        "local" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/local.wasm"))),
        "redis" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/redis.wasm"))),
        "mongodb" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/mongodb.wasm"))),
        "postgres" => Some(include_bytes!(concat!(env!("OUT_DIR"), "/postgres.wasm"))),
        _ => None,
    }
}

impl WasmSource {
    /// Its bytes: embedded, read from disk, or the upload's. Errors name it.
    pub fn read(&self) -> anyhow::Result<Arc<Vec<u8>>> {
        Ok(match self {
            WasmSource::Builtin(name) => {
                let bytes = builtin(name).with_context(|| {
                    format!(
                        "builtin:{name}: no such built-in adapter (built in: {})",
                        BUILTINS.join(", ")
                    )
                })?;
                Arc::new(bytes.to_vec())
            }
            WasmSource::File(path) => Arc::new(
                std::fs::read(path)
                    .with_context(|| format!("{}: cannot read adapter", path.display()))?,
            ),
            WasmSource::Bytes { bytes, .. } => bytes.clone(),
        })
    }
}

/// Hex sha256 of a component's bytes: how swaps, the caches and the admin API know it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
