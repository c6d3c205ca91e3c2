//! Compiling a `.wasm` into a component the host can link, and refusing one that does
//! not fit the contract (the first failing finding of [`super::inspect`]).

use wasmtime::component::Component;

use super::contract::{self, Finding};
use super::sha256_hex;
use crate::config::Capability;

/// A compiled component that fits the contract and the config's grants.
pub(crate) struct Compiled {
    /// Where it came from (a path, `builtin:NAME`, `upload:NAME`), for messages.
    pub source: String,
    /// Hex sha256 of the `.wasm` bytes.
    pub sha256: String,
    pub component: Component,
}

/// Compiles `bytes` (named `source` in messages) and checks it against the contract
/// and the capabilities `granted`. The error is the first finding that failed.
pub(crate) fn compile(
    source: &str,
    bytes: &[u8],
    granted: &[Capability],
) -> anyhow::Result<Compiled> {
    let sha256 = sha256_hex(bytes);
    let component = match component(source, &sha256, bytes) {
        Ok(c) => c,
        Err(finding) => anyhow::bail!("{}", finding.text),
    };
    let findings = contract::check(source, &component, Some(granted))?;
    if let Some(refused) = findings.into_iter().find(|f| !f.ok) {
        anyhow::bail!("{}", refused.text);
    }
    Ok(Compiled {
        source: source.to_string(),
        sha256,
        component,
    })
}

/// The component of `bytes`, from the caches or compiled; a failure is the finding
/// that says why.
pub(super) fn component(source: &str, sha256: &str, bytes: &[u8]) -> Result<Component, Finding> {
    let engine = super::engine().map_err(|e| Finding::fail("runtime", format!("{e:#}")))?;
    compiled(sha256, || {
        on_disk(engine, sha256, || Component::new(engine, bytes))
    })
    .map_err(|e| {
        let text = if bytes.starts_with(b"\0asm\x01\0\0\0") {
            format!(
                "{source}: a core wasm module, not a component: build for wasm32-wasip2 (Rust), use componentize-py / componentize-js, or run `wasm-tools component new` ({e})"
            )
        } else {
            format!("{source}: not a valid WebAssembly component: {e}")
        };
        Finding::fail("component", text)
    })
}

/// Compiled components by sha256: compiling is most of a hot swap's time, and swaps go
/// back and forth between few components. A handful are kept.
pub(super) fn compiled(
    sha256: &str,
    compile: impl FnOnce() -> wasmtime::Result<Component>,
) -> wasmtime::Result<Component> {
    static CACHE: std::sync::Mutex<Vec<(String, Component)>> = std::sync::Mutex::new(Vec::new());
    const KEEP: usize = 8;
    if let Some((_, c)) = CACHE.lock().unwrap().iter().find(|(s, _)| s == sha256) {
        return Ok(c.clone());
    }
    let component = compile()?;
    let mut cache = CACHE.lock().unwrap();
    if cache.len() >= KEEP {
        cache.remove(0);
    }
    cache.push((sha256.to_string(), component.clone()));
    Ok(component)
}

/// Compiled components on disk, by sha256 and engine: a Python guest takes 5-30 s to
/// compile and 20 ms to load compiled, and every node start, re-instantiation in another
/// process, and `wasio adapter check` would compile it again. The directory is
/// `$WASIO_COMPILE_CACHE`, else `$XDG_CACHE_HOME/wasio` or `~/.cache/wasio`; `off`
/// disables it. Only this user may write there: loading compiled code trusts it.
fn on_disk(
    engine: &wasmtime::Engine,
    sha256: &str,
    compile: impl FnOnce() -> wasmtime::Result<Component>,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir() else {
        return compile();
    };
    let engine_hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    };
    let path = dir.join(format!("{sha256}-{engine_hash:016x}.cwasm"));
    // SAFETY: the file was written by `serialize` below into a directory only this
    // user can write, and wasmtime checks it was made by a compatible engine.
    if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
        return Ok(c);
    }
    let component = compile()?;
    let stored = (|| -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        // Written aside, then renamed: a reader never sees half a file.
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = stored {
        tracing::debug!("compiled component not cached in {}: {e}", dir.display());
    }
    Ok(component)
}

fn cache_dir() -> Option<std::path::PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match env("WASIO_COMPILE_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) => Some(v.into()),
        None => env("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
            .map(|d| d.join("wasio")),
    }
}

/// Compiles `bytes` (named `source` in messages) with no adapter-contract check, for
/// components of the host's other worlds (the access policy): the caller's linking
/// says whether it fits. Returns its sha256 and the component.
pub(crate) fn compile_unchecked(source: &str, bytes: &[u8]) -> anyhow::Result<(String, Component)> {
    let sha256 = sha256_hex(bytes);
    match component(source, &sha256, bytes) {
        Ok(c) => Ok((sha256, c)),
        Err(finding) => anyhow::bail!("{}", finding.text),
    }
}
