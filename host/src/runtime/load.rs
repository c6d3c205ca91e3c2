//! Compiling a `.wasm` into a ready-to-instantiate adapter, and refusing one that does
//! not fit the contract (wrong package version, capabilities the config does not grant).

use std::path::Path;

use anyhow::{Context, bail};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::{HostPre, PACKAGE, Runtime, VERSION};

/// A host capability a guest may import beyond the always-granted ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// `wasio:adapter/pubsub`: a Redis datasource.
    PubSub,
    /// `wasio:adapter/docstore`: a MongoDB datasource.
    DocStore,
}

impl Capability {
    fn interface(self) -> &'static str {
        match self {
            Capability::PubSub => "pubsub",
            Capability::DocStore => "docstore",
        }
    }
}

/// A compiled adapter component, checked and pre-linked.
pub struct AdapterComponent {
    /// Where it came from (a path or `builtin:NAME`), for messages.
    pub source: String,
    /// Hex sha256 of the `.wasm` bytes.
    pub sha256: String,
    pub(crate) pre: HostPre<super::HostState>,
}

impl AdapterComponent {
    /// Reads and compiles `path`. Errors name the file and the cause.
    pub fn from_file(path: &Path, granted: &[Capability]) -> anyhow::Result<AdapterComponent> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("{}: cannot read adapter", path.display()))?;
        Self::from_bytes(&path.display().to_string(), &bytes, granted)
    }

    /// Compiles `bytes`; `source` names them in messages.
    pub fn from_bytes(
        source: &str,
        bytes: &[u8],
        granted: &[Capability],
    ) -> anyhow::Result<AdapterComponent> {
        let rt = Runtime::global()?;
        let sha256 = sha256_hex(bytes);
        let component = compiled(&sha256, || {
            on_disk(rt.engine(), &sha256, || Component::new(rt.engine(), bytes))
        })
        .map_err(|e| {
            let cause = if bytes.starts_with(b"\0asm\x01\0\0\0") {
                format!("a core wasm module, not a component (build for wasm32-wasip2, or run `wasm-tools component new`): {e}")
            } else {
                format!("not a valid WebAssembly component: {e}")
            };
            anyhow::anyhow!("{source}: {cause}")
        })?;
        check_contract(source, &component, rt, granted)?;
        let pre = rt
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{source}: cannot link: {e}"))?;
        let pre = HostPre::new(pre).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        Ok(AdapterComponent {
            source: source.to_string(),
            sha256,
            pre,
        })
    }
}

/// Compiled components by sha256: compiling is most of a hot swap's time, and swaps go
/// back and forth between few components. A handful are kept.
fn compiled(
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

/// Checks the component exports our `guest` interface at a compatible version and
/// imports only capabilities the config grants.
fn check_contract(
    source: &str,
    component: &Component,
    rt: &Runtime,
    granted: &[Capability],
) -> anyhow::Result<()> {
    let ty = component.component_type();
    let engine = rt.engine();
    let wanted = format!("{PACKAGE}/guest@");
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let Some(export) = exports.iter().find(|n| n.starts_with(&wanted)) else {
        let ours = exports
            .iter()
            .find(|n| n.starts_with(&format!("{PACKAGE}/")));
        bail!(
            "{source}: does not export `{PACKAGE}/guest` (it exports: {}){}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            },
            if ours.is_none() {
                " — is it a wasio adapter? build it against wit/ of this repository"
            } else {
                ""
            }
        );
    };
    let version = &export[wanted.len()..];
    if !compatible(version, VERSION) {
        bail!(
            "{source}: built against {PACKAGE}@{version}, but this host needs {PACKAGE}@{} (a compatible version of {VERSION}); rebuild it against this host's wit/",
            compat_range(VERSION)
        );
    }
    for (name, item) in ty.imports(engine) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            continue;
        }
        for cap in [Capability::PubSub, Capability::DocStore] {
            if name.starts_with(&format!("{PACKAGE}/{}@", cap.interface()))
                && !granted.contains(&cap)
            {
                bail!(
                    "{source}: imports `{name}`, a capability the config does not grant (set [adapter] datasource to a {} datasource)",
                    match cap {
                        Capability::PubSub => "`redis`",
                        Capability::DocStore => "`mongodb`",
                    }
                );
            }
        }
    }
    Ok(())
}

/// Semver compatibility as cargo reads it: same major, or same minor under 1.0.
pub(crate) fn compatible(have: &str, need: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['.', '-', '+']);
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parse(have), parse(need)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

fn compat_range(v: &str) -> String {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.first() == Some(&"0") {
        format!("0.{}.x", parts[1])
    } else {
        format!("{}.x", parts[0])
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::compatible;

    #[test]
    fn semver_compatibility() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("garbage", "0.1.0"));
    }
}
