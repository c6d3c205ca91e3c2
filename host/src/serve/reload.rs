//! Changing the running adapter and policy from outside the process: [`Node`] holds
//! the node's config and runs every swap one at a time (admin API, file watcher, SIGHUP
//! alike); [`spawn`] starts the watchers of the adapter's and the policy's `.wasm`
//! files and the SIGHUP handler that re-reads the config file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Mutex, mpsc, watch};

use crate::auth::{Gate, Policy, PolicyStatus};
use crate::cluster::{Adapter, SwapError, SwapReport};
use crate::config::{AdapterOptions, Config, WasmSource, resolve_wasm};
use crate::runtime::sha256_hex;
use crate::serve::tls::Tls;

/// Quiet time after the last change to the `.wasm` before swapping: editors and
/// `cp` write a file in several steps.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The `.wasm` file an adapter runs from, when it is one (not a built-in or an upload).
fn file_of(opts: &AdapterOptions) -> Option<PathBuf> {
    match &opts.source {
        WasmSource::File(p) => Some(p.clone()),
        WasmSource::Builtin(_) | WasmSource::Bytes { .. } => None,
    }
}

/// Which component to swap to.
pub enum Wasm {
    /// A path (relative to the config file's directory) or `builtin:NAME`.
    Path(String),
    /// A path already resolved (the file watcher's), taken as it is.
    File(PathBuf),
    /// Uploaded bytes, with their label (`upload:NAME`).
    Upload { label: String, bytes: Arc<Vec<u8>> },
}

/// A swap as asked for; `None` fields keep the running adapter's.
pub struct SwapRequest {
    pub wasm: Wasm,
    /// `Some(None)`: no datasource.
    pub datasource: Option<Option<String>>,
    pub options: Option<serde_json::Value>,
}

/// Why a swap did not happen.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The request names something this node does not have (a datasource).
    #[error("{0}")]
    BadRequest(String),
    /// The adapter refused the swap; the old one keeps serving.
    #[error(transparent)]
    Swap(#[from] SwapError),
    /// The policy refused the swap (it does not load, or its `init` refused); the old
    /// one keeps answering.
    #[error("{0}")]
    Policy(String),
}

/// This node's adapter and config, and the one lock all swaps take. What runs now and
/// what a rollback returns to are the adapter's own record (`Adapter::running_options`).
pub struct Node {
    adapter: Adapter,
    config_path: Option<PathBuf>,
    /// The config as last loaded (datasources, limits, timeouts); held for a whole swap.
    config: Mutex<Config>,
    /// The `.wasm` file the adapter's watcher follows.
    watched: watch::Sender<Option<PathBuf>>,
    /// The access policy (the same the server's gate asks).
    policy: Arc<Policy>,
    /// The server's checks: token keys re-read on SIGHUP, refusals for `/metrics`.
    gate: Arc<Gate>,
    /// The `.wasm` file the policy's watcher follows.
    policy_watched: watch::Sender<Option<PathBuf>>,
    /// How often the admin page's connection history is sampled.
    history_interval: std::time::Duration,
    /// The client port's and the admin listener's TLS, re-read on SIGHUP.
    tls: std::sync::OnceLock<Listeners>,
}

/// The TLS of each listener that has it.
struct Listeners {
    server: Option<Arc<Tls>>,
    admin: Option<Arc<Tls>>,
}

impl Node {
    /// `config` as loaded from `config_path`; `adapter`, `policy` and `gate` are the
    /// ones it describes.
    pub fn new(
        adapter: Adapter,
        policy: Arc<Policy>,
        gate: Arc<Gate>,
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Arc<Node> {
        let (watched, _) = watch::channel(file_of(&adapter.running_options()));
        let (policy_watched, _) = watch::channel(policy.file());
        let history_interval = std::time::Duration::from_millis(config.admin.history_interval_ms);
        Arc::new(Node {
            adapter,
            config_path,
            history_interval,
            config: Mutex::new(config),
            watched,
            policy,
            gate,
            policy_watched,
            tls: std::sync::OnceLock::new(),
        })
    }

    /// The TLS the client port and the admin listener serve with, for SIGHUP to
    /// re-read; set once, before serving.
    pub fn set_tls(&self, server: Option<Arc<Tls>>, admin: Option<Arc<Tls>>) {
        let _ = self.tls.set(Listeners { server, admin });
    }

    /// TLS handshakes that failed or timed out, both listeners together.
    pub fn failed_handshakes(&self) -> u64 {
        self.tls.get().map_or(0, |l| {
            [&l.server, &l.admin]
                .into_iter()
                .flatten()
                .map(|t| t.failed_handshakes())
                .sum()
        })
    }

    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// The access policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The server's checks.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// How often the admin page's connection history is sampled.
    pub fn history_interval(&self) -> std::time::Duration {
        self.history_interval
    }

    /// Swaps to `req` (`why` says who asked, for the log).
    pub async fn swap(&self, req: SwapRequest, why: &str) -> Result<SwapReport, NodeError> {
        let config = self.config.lock().await;
        let current = self.adapter.running_options();
        let datasource = req
            .datasource
            .unwrap_or_else(|| current.datasource.map(|d| d.name));
        let options = req.options.unwrap_or(current.options);
        let (wasm, upload) = source_of(self.config_path.as_deref(), req.wasm);
        let mut opts = config
            .adapter_options_for(&wasm, datasource.as_deref(), Some(options))
            .map_err(|e| NodeError::BadRequest(e.0))?;
        if let Some(source) = upload {
            opts.source = source;
        }
        // The adapter logs the swap's outcome; this says who asked for it.
        tracing::info!("{why}: swapping to {}", opts.source.label());
        let report = self.adapter.swap(opts).await?;
        self.watch_running();
        Ok(report)
    }

    /// Swaps the policy to `wasm` with `options` (`None` keeps the running policy's,
    /// else `[auth] policy_options`); a refused one leaves the old one answering.
    pub async fn swap_policy(
        &self,
        wasm: Wasm,
        options: Option<serde_json::Value>,
        why: &str,
    ) -> Result<PolicyStatus, NodeError> {
        let config = self.config.lock().await;
        let options = match options {
            Some(o) if o.is_object() => o,
            Some(_) => {
                return Err(NodeError::BadRequest(
                    "policy options must be a JSON object".into(),
                ));
            }
            None => self
                .policy
                .options()
                .unwrap_or_else(|| crate::auth::policy::options_of(&config.auth)),
        };
        let (wasm, upload) = source_of(self.config_path.as_deref(), wasm);
        let source = upload.unwrap_or_else(|| WasmSource::parse(&wasm));
        tracing::info!("{why}: swapping the policy to {}", source.label());
        let status = self
            .policy
            .swap(source, options)
            .await
            .map_err(|e| NodeError::Policy(format!("{e:#}")))?;
        self.watch_policy();
        Ok(status)
    }

    /// Swaps back to the adapter that ran before the last swap.
    pub async fn rollback(&self, why: &str) -> Result<SwapReport, NodeError> {
        let _config = self.config.lock().await;
        tracing::info!("{why}: rolling back");
        let report = self.adapter.rollback().await?;
        self.watch_running();
        Ok(report)
    }

    /// SIGHUP: re-reads the config file, swaps to its `[adapter]` and `[auth] policy`,
    /// re-reads the token keys and takes its `[server.limits]`. A config that does not load changes nothing; each
    /// part refused keeps its old self.
    pub async fn reload(&self) {
        let Some(path) = &self.config_path else {
            tracing::warn!("SIGHUP: no config file to re-read (started without --config)");
            return;
        };
        let loaded = match Config::load(Some(path), std::env::vars()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("SIGHUP: config refused, nothing changed: {e}");
                return;
            }
        };
        self.reload_tls(&loaded);
        let mut config = self.config.lock().await;
        tracing::info!(
            "SIGHUP: swapping to the [adapter] of {}: {}",
            path.display(),
            loaded.adapter.wasm
        );
        let adapter_ok = self.adapter.swap(loaded.adapter_options()).await.is_ok();
        self.reload_policy(&loaded).await;
        // Keys rotate (a JWKS file rewritten): read them again; a bad file keeps the old.
        if let Err(e) = self.gate.reload(&loaded.auth) {
            tracing::warn!("SIGHUP: token keys refused, keeping the old ones: {e:#}");
        }
        self.gate.set_limits(loaded.server.limits.clone());
        if adapter_ok {
            *config = loaded;
            self.watch_running();
        }
    }

    /// SIGHUP's part for TLS: re-reads each listener's certificate and key from the
    /// paths of `loaded`; one that does not load keeps the old one.
    fn reload_tls(&self, loaded: &Config) {
        let Some(tls) = self.tls.get() else { return };
        let listeners = [
            ("server.tls", &tls.server, &loaded.server.tls),
            ("admin.tls", &tls.admin, &loaded.admin.tls),
        ];
        for (key, running, files) in listeners {
            match (running, files) {
                (Some(tls), Some(files)) => match tls.reload(files) {
                    Ok(()) => tracing::info!(
                        "tls: certificate re-read for `{key}` from {}",
                        files.cert.display()
                    ),
                    Err(e) => {
                        tracing::warn!("tls: key `{key}`: {e:#}; keeping the old certificate")
                    }
                },
                (None, None) => {}
                // A listener cannot switch between http and https while it listens.
                _ => tracing::warn!("SIGHUP: key `{key}` added or removed: takes a restart"),
            }
        }
    }

    /// SIGHUP's part for the policy: swaps to the `[auth] policy` of `loaded` when it
    /// is not what runs (another file, other bytes, other options), removes it when
    /// the config names none. A refusal keeps the old one (and is logged).
    async fn reload_policy(&self, loaded: &Config) {
        let Some(wanted) = &loaded.auth.policy else {
            self.policy.clear().await;
            self.watch_policy();
            return;
        };
        let source = WasmSource::parse(wanted);
        let options = crate::auth::policy::options_of(&loaded.auth);
        let status = self.policy.status();
        let same_bytes = match &source {
            WasmSource::File(p) => tokio::fs::read(p)
                .await
                .is_ok_and(|b| sha256_hex(&b) == status.sha256),
            WasmSource::Builtin(_) | WasmSource::Bytes { .. } => false,
        };
        if status.active
            && status.source == source.label()
            && same_bytes
            && self.policy.options().as_ref() == Some(&options)
        {
            tracing::debug!("SIGHUP: the policy is unchanged");
            return;
        }
        tracing::info!("SIGHUP: swapping the policy to {}", source.label());
        // `Policy::swap` logs a refusal.
        let _ = self.policy.swap(source, options).await;
        self.watch_policy();
    }

    /// Points the policy's watcher at the running policy's file.
    fn watch_policy(&self) {
        let file = self.policy.file();
        self.policy_watched.send_if_modified(|w| {
            let changed = *w != file;
            *w = file;
            changed
        });
    }

    /// Points the watcher at the running adapter's file; the same file keeps its watch.
    fn watch_running(&self) {
        let file = file_of(&self.adapter.running_options());
        self.watched.send_if_modified(|w| {
            let changed = *w != file;
            *w = file;
            changed
        });
    }

    /// The watched `.wasm` changed: swaps to it again, unless the running component
    /// already is these bytes (or the adapter moved to another file meanwhile).
    async fn file_changed(&self, path: &Path) {
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    "{}: changed but cannot be read, keeping the running adapter: {e}",
                    path.display()
                );
                return;
            }
        };
        {
            let _config = self.config.lock().await;
            if file_of(&self.adapter.running_options()).as_deref() != Some(path) {
                return;
            }
            if sha256_hex(&bytes) == self.adapter.status().current.sha256 {
                tracing::debug!("{}: changed, same component; no swap", path.display());
                return;
            }
        }
        let req = SwapRequest {
            wasm: watched_file(path),
            datasource: None,
            options: None,
        };
        // The adapter logs a refusal; a later change tries again.
        let _ = self.swap(req, "file watcher").await;
    }

    /// The watched policy `.wasm` changed: swaps to it again, unless the running policy
    /// already is these bytes (or it moved to another file meanwhile).
    async fn policy_file_changed(&self, path: &Path) {
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(
                    "{}: changed but cannot be read, keeping the running policy: {e}",
                    path.display()
                );
                return;
            }
        };
        if self.policy.file().as_deref() != Some(path) {
            return;
        }
        if sha256_hex(&bytes) == self.policy.status().sha256 {
            tracing::debug!("{}: changed, same policy; no swap", path.display());
            return;
        }
        // `Policy::swap` logs a refusal; a later change tries again.
        let _ = self
            .swap_policy(watched_file(path), None, "file watcher")
            .await;
    }
}

/// Where a swap's component is, by the name `adapter_options_for` takes (a relative
/// path resolved against the directory of the config file `config_path`), and the
/// upload's bytes if it is one.
fn source_of(config_path: Option<&Path>, wasm: Wasm) -> (String, Option<WasmSource>) {
    match wasm {
        Wasm::Path(p) => (resolve_wasm(config_path, &p), None),
        Wasm::File(p) => (p.display().to_string(), None),
        Wasm::Upload { label, bytes } => (label.clone(), Some(WasmSource::Bytes { label, bytes })),
    }
}

/// The swap the file watcher asks for: `path` is already resolved against the config
/// file's directory (it is the running component's), so it is not resolved again.
fn watched_file(path: &Path) -> Wasm {
    Wasm::File(path.to_path_buf())
}

/// Starts the `.wasm` watchers and the SIGHUP handler; all end when `stop` turns true.
/// The SIGHUP handler is in place when this returns, so SIGHUP no longer ends the
/// process.
pub fn spawn(node: Arc<Node>, stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let (node, mut stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => node.reload().await,
                    () = stopped(&mut stop) => return,
                }
            }
        });
    }
    tokio::spawn(watch_wasm(node.clone(), Which::Adapter, stop.clone()));
    tokio::spawn(watch_wasm(node, Which::Policy, stop));
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not in a `select!`.
    let _ = stop.wait_for(|s| *s).await;
}

/// Which component a watcher follows.
#[derive(Clone, Copy)]
enum Which {
    Adapter,
    Policy,
}

/// Follows the adapter's or the policy's `.wasm` file (whichever it is now) and swaps
/// when it changes.
async fn watch_wasm(node: Arc<Node>, which: Which, mut stop: watch::Receiver<bool>) {
    let (mut targets, what) = match which {
        Which::Adapter => (node.watched.subscribe(), "adapter"),
        Which::Policy => (node.policy_watched.subscribe(), "policy"),
    };
    loop {
        let target = targets.borrow_and_update().clone();
        let (tx, mut changes) = mpsc::unbounded_channel();
        // Kept alive while this target is watched; dropping it stops the watch.
        let _watcher = match &target {
            Some(path) => match watch_file(path, tx) {
                Ok(w) => {
                    tracing::info!("watching {} for a new {what}", path.display());
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!("{}: cannot watch: {e:#}", path.display());
                    None
                }
            },
            None => None,
        };
        loop {
            tokio::select! {
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                Some(()) = changes.recv() => {
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                    match (&target, which) {
                        (Some(path), Which::Adapter) => node.file_changed(path).await,
                        (Some(path), Which::Policy) => node.policy_file_changed(path).await,
                        (None, _) => {}
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// Watches the directory of `path`, not the file: replacing it by a rename (how
/// deployments write files atomically) ends a watch on the file itself.
fn watch_file(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    use notify::event::{AccessKind, AccessMode, EventKind};
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?
        .to_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Our own reads of the file show up as access events: not changes.
        let writes = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Modify(_)
                | EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if writes && event.paths.iter().any(|p| p.file_name() == Some(&name)) {
            let _ = tx.send(());
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watcher's swap names the file it watches: resolved once, at load. With
    /// `--config run/wasio.toml` and `wasm = "../mine/my.wasm"` the file is
    /// `run/../mine/my.wasm`, which resolved again would be `run/run/../mine/my.wasm`.
    #[test]
    fn the_watchers_swap_is_not_resolved_twice() {
        let config = Path::new("run/wasio.toml");
        let loaded = resolve_wasm(Some(config), "../mine/my.wasm");
        assert_eq!(loaded, "run/../mine/my.wasm");
        let (target, _) = source_of(Some(config), watched_file(Path::new(&loaded)));
        assert_eq!(target, loaded);
        // The admin API's and SIGHUP's paths are the config's own: resolved here.
        let (admin, _) = source_of(Some(config), Wasm::Path("../mine/my.wasm".into()));
        assert_eq!(admin, loaded);
    }
}
