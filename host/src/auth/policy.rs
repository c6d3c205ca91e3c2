//! The policy component: a WebAssembly component of the `wasio:policy` world
//! (`wit/policy/policy.wit`), asked on every connect, join and publish, under the
//! adapters' sandbox (deadline, memory cap, compile cache), and hot-swapped like them.
//!
//! One instance answers, one call at a time (calls from many sockets queue on it). A
//! call that traps, runs past the deadline or over the memory cap is a denial
//! (`policy failed: CAUSE`), counted and logged; the instance is dropped and the next
//! call gets a fresh one, `init`ed with the same options. A swap readies the new
//! component (compiled, instantiated, `init`ed) while the old one answers, then
//! switches: a call already queued on the old instance is answered by it.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, RwLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value as Json;
use tokio::sync::Mutex;
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::{AuthConfig, Limits, LimitsConfig, WasmSource};
use crate::runtime::{Guard, Guarded, begin_call, fault_cause};

#[allow(missing_docs)]
mod wit {
    wasmtime::component::bindgen!({
        path: "../wit/policy",
        world: "access-policy",
        imports: { default: trappable },
        exports: { default: async },
    });
}

use wit::exports::wasio::policy::policy as guest;
use wit::wasio::policy::log::Level;
use wit::{AccessPolicy, AccessPolicyPre};

/// What the policy answered (or what a failed call counts as: a denial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refused, with the reason the client is told.
    Deny(String),
}

/// A connecting client, as the policy sees it.
pub struct ConnectRequest<'a> {
    /// The namespace it connects to.
    pub namespace: &'a str,
    /// The handshake's `auth` object.
    pub auth: &'a Json,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The request's query string.
    pub query: &'a str,
    /// The claims of its verified token, when `[auth.jwt]` is on.
    pub claims: Option<&'a Json>,
}

/// A connected socket, as the policy sees it.
pub struct SocketView<'a> {
    /// The socket's id.
    pub id: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The claims of its token, when `[auth.jwt]` is on.
    pub claims: Option<&'a Json>,
}

/// The policy of a node: always present, shared by every socket, with a component
/// inside or none (then every question is allowed: the gate asks only when one runs,
/// see [`Policy::is_active`]). Swapped in place by the admin API, the file watcher and
/// SIGHUP.
pub struct Policy {
    /// What answers now; a call clones the `Arc` and keeps it for its whole answer.
    running: RwLock<Option<Arc<Running>>>,
    limits: Limits,
    /// Swaps one at a time, so counts and `last_error` follow their order.
    swapping: Mutex<()>,
    counts: Counts,
    /// The live instance's linear memory, in bytes.
    memory: Arc<AtomicU64>,
}

/// Counters over the node's life, across swaps.
#[derive(Default)]
struct Counts {
    faults: AtomicU64,
    allowed: AtomicU64,
    denied_connect: AtomicU64,
    denied_join: AtomicU64,
    denied_publish: AtomicU64,
    swaps: AtomicU64,
    failed_swaps: AtomicU64,
    last_error: StdMutex<Option<String>>,
}

/// Denials so far, by question.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Denials {
    /// Connects refused.
    pub connect: u64,
    /// Joins refused.
    pub join: u64,
    /// Publishes refused.
    pub publish: u64,
}

/// What runs, for `/healthz`, `--check` and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyStatus {
    /// Whether a policy component runs (else every question is allowed).
    pub active: bool,
    /// The component's source label (path, `upload:NAME`); empty when none runs.
    pub source: String,
    /// Its sha256.
    pub sha256: String,
    /// The name its `init` gave.
    pub name: String,
    /// The version its `init` gave.
    pub version: String,
    /// Calls that trapped, ran out of time or memory (each counted as a denial).
    pub faults: u64,
    /// Questions allowed.
    pub allowed: u64,
    /// Questions denied (faults included), by kind.
    pub denied: Denials,
    /// Swaps done since start.
    pub swaps: u64,
    /// Swaps refused (the old policy kept answering).
    pub failed_swaps: u64,
    /// Why the last swap was refused, if one was.
    pub last_error: Option<String>,
    /// The live instance's linear memory, in bytes.
    pub memory_bytes: u64,
}

/// The three questions.
#[derive(Clone, Copy)]
enum Kind {
    Connect,
    Join,
    Publish,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Connect => "authorize-connect",
            Kind::Join => "authorize-join",
            Kind::Publish => "authorize-publish",
        }
    }
}

/// A question, as the component is asked it.
enum Question {
    Connect(guest::ConnectRequest),
    Join(guest::Socket, Vec<String>),
    Publish(guest::Socket, Option<Vec<String>>, String, u32),
}

impl Question {
    fn kind(&self) -> Kind {
        match self {
            Question::Connect(_) => Kind::Connect,
            Question::Join(..) => Kind::Join,
            Question::Publish(..) => Kind::Publish,
        }
    }
}

fn json_text(v: &Json) -> String {
    v.to_string()
}

fn socket(s: &SocketView<'_>) -> guest::Socket {
    guest::Socket {
        id: s.id.to_string(),
        namespace: s.namespace.to_string(),
        claims: s.claims.map(json_text),
    }
}

/// The limits of `[limits]`, as every guest store is given them.
pub fn limits_of(config: &LimitsConfig) -> Limits {
    Limits {
        deadline: Duration::from_millis(config.deadline_ms),
        memory_bytes: (config.memory_mib as usize) << 20,
    }
}

impl Policy {
    /// A holder with no component: every question is allowed until a swap sets one.
    pub fn none(limits: Limits) -> Policy {
        Policy {
            running: RwLock::new(None),
            limits,
            swapping: Mutex::new(()),
            counts: Counts::default(),
            memory: Arc::default(),
        }
    }

    /// The policy `[auth]` names (`policy`, `policy_options`) under `[limits]`, or none
    /// when it names none. An error names the file and the cause.
    pub async fn from_config(auth: &AuthConfig, limits: &LimitsConfig) -> anyhow::Result<Policy> {
        let limits = limits_of(limits);
        match &auth.policy {
            None => Ok(Policy::none(limits)),
            Some(p) => Policy::load(WasmSource::parse(p), options_of(auth), limits).await,
        }
    }

    /// Compiles and instantiates `source`, calls its `init` with `options`.
    pub async fn load(source: WasmSource, options: Json, limits: Limits) -> anyhow::Result<Policy> {
        let policy = Policy::none(limits);
        let running = Running::start(source, &options, limits, &policy.memory).await?;
        *policy.running.write().unwrap() = Some(Arc::new(running));
        Ok(policy)
    }

    /// Whether a component runs (else every question is allowed).
    pub fn is_active(&self) -> bool {
        self.running.read().unwrap().is_some()
    }

    /// The `.wasm` file the running policy was read from (none for an upload).
    pub fn file(&self) -> Option<PathBuf> {
        self.current().and_then(|r| r.file.clone())
    }

    /// The options the running policy's `init` was given.
    pub fn options(&self) -> Option<Json> {
        self.current()
            .and_then(|r| serde_json::from_str(&r.options).ok())
    }

    fn current(&self) -> Option<Arc<Running>> {
        self.running.read().unwrap().clone()
    }

    /// Asked once per connecting socket (after the token check).
    pub async fn connect(&self, req: &ConnectRequest<'_>) -> Verdict {
        let q = Question::Connect(guest::ConnectRequest {
            namespace: req.namespace.to_string(),
            auth: json_text(req.auth),
            headers: req.headers.clone(),
            query: req.query.to_string(),
            claims: req.claims.map(json_text),
        });
        self.ask(q).await
    }

    /// Asked once per `join`, with all its rooms: all or none are joined.
    pub async fn join(&self, socket_view: &SocketView<'_>, rooms: &[String]) -> Verdict {
        self.ask(Question::Join(socket(socket_view), rooms.to_vec()))
            .await
    }

    /// Asked once per `publish`: `rooms` `None` is the whole namespace; `bytes` its size.
    pub async fn publish(
        &self,
        socket_view: &SocketView<'_>,
        rooms: Option<&[String]>,
        event: &str,
        bytes: usize,
    ) -> Verdict {
        let q = Question::Publish(
            socket(socket_view),
            rooms.map(<[String]>::to_vec),
            event.to_string(),
            u32::try_from(bytes).unwrap_or(u32::MAX),
        );
        self.ask(q).await
    }

    async fn ask(&self, q: Question) -> Verdict {
        let Some(running) = self.current() else {
            return Verdict::Allow;
        };
        let kind = q.kind();
        let verdict = match running.ask(q, self.limits, &self.memory).await {
            Ok(guest::Decision::Allow) => Verdict::Allow,
            Ok(guest::Decision::Deny(reason)) => Verdict::Deny(reason),
            Err(cause) => {
                self.counts.faults.fetch_add(1, Ordering::Relaxed);
                Verdict::Deny(format!("policy failed: {cause}"))
            }
        };
        let c = &self.counts;
        let counter = match (&verdict, kind) {
            (Verdict::Allow, _) => &c.allowed,
            (Verdict::Deny(_), Kind::Connect) => &c.denied_connect,
            (Verdict::Deny(_), Kind::Join) => &c.denied_join,
            (Verdict::Deny(_), Kind::Publish) => &c.denied_publish,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict
    }

    /// Replaces the running component; on error the old one keeps answering.
    pub async fn swap(&self, source: WasmSource, options: Json) -> anyhow::Result<PolicyStatus> {
        let _one = self.swapping.lock().await;
        let label = source.label();
        match Running::start(source, &options, self.limits, &self.memory).await {
            Ok(running) => {
                tracing::info!(target: "wasio::policy", policy = %running.name, version = %running.version, source = %running.source, "policy swapped in");
                *self.running.write().unwrap() = Some(Arc::new(running));
                self.counts.swaps.fetch_add(1, Ordering::Relaxed);
                Ok(self.status())
            }
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(target: "wasio::policy", source = %label, "policy swap refused, the old one keeps answering: {msg}");
                self.counts.failed_swaps.fetch_add(1, Ordering::Relaxed);
                *self.counts.last_error.lock().unwrap() = Some(msg);
                Err(e)
            }
        }
    }

    /// Stops asking a component: every question is allowed from now on (the config
    /// no longer names a policy).
    pub async fn clear(&self) {
        let _one = self.swapping.lock().await;
        if self.running.write().unwrap().take().is_some() {
            tracing::info!(target: "wasio::policy", "policy removed: questions are no longer asked");
            self.memory.store(0, Ordering::Relaxed);
        }
    }

    /// What runs now.
    pub fn status(&self) -> PolicyStatus {
        let running = self.current();
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let field =
            |f: fn(&Running) -> &String| running.as_deref().map(f).cloned().unwrap_or_default();
        PolicyStatus {
            active: running.is_some(),
            source: field(|r| &r.source),
            sha256: field(|r| &r.sha256),
            name: field(|r| &r.name),
            version: field(|r| &r.version),
            faults: n(&c.faults),
            allowed: n(&c.allowed),
            denied: Denials {
                connect: n(&c.denied_connect),
                join: n(&c.denied_join),
                publish: n(&c.denied_publish),
            },
            swaps: n(&c.swaps),
            failed_swaps: n(&c.failed_swaps),
            last_error: c.last_error.lock().unwrap().clone(),
            memory_bytes: n(&self.memory),
        }
    }
}

/// `[auth] policy_options` as the JSON `init` is given.
pub fn options_of(auth: &AuthConfig) -> Json {
    serde_json::to_value(&auth.policy_options).unwrap_or_else(|_| Json::Object(Default::default()))
}

/// One loaded policy component and its instance.
struct Running {
    source: String,
    /// The `.wasm` file it was read from, when it was one (not an upload).
    file: Option<PathBuf>,
    sha256: String,
    name: String,
    version: String,
    options: String,
    pre: AccessPolicyPre<PolicyState>,
    /// The instance calls queue on; `None` after a fault, until the next call.
    live: Mutex<Option<Live>>,
}

struct Live {
    store: Store<PolicyState>,
    policy: AccessPolicy,
}

impl Running {
    /// Reads, compiles, links and instantiates `source` and runs its `init`. Errors
    /// name the component.
    async fn start(
        source: WasmSource,
        options: &Json,
        limits: Limits,
        memory: &Arc<AtomicU64>,
    ) -> anyhow::Result<Running> {
        if !options.is_object() {
            anyhow::bail!("{}: policy options must be a JSON object", source.label());
        }
        let options = options.to_string();
        let source_label = source.label();
        let file = match &source {
            WasmSource::File(p) => Some(p.clone()),
            WasmSource::Builtin(_) | WasmSource::Bytes { .. } => None,
        };
        let label = source_label.clone();
        let (sha256, pre) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let bytes = read(&source)?;
            let (sha256, component) = crate::runtime::compile_unchecked(&label, &bytes)?;
            Ok((sha256, link(&label, &component)?))
        })
        .await
        .context("policy compilation task")??;
        let (live, info) = instantiate(&pre, &source_label, &options, limits, memory).await?;
        Ok(Running {
            source: source_label,
            file,
            sha256,
            name: info.name,
            version: info.version,
            options,
            pre,
            live: Mutex::new(Some(live)),
        })
    }

    /// One question on the instance (a fresh one if the last call faulted). `Err` is
    /// the cause of a fault, already logged.
    async fn ask(
        &self,
        q: Question,
        limits: Limits,
        memory: &Arc<AtomicU64>,
    ) -> Result<guest::Decision, String> {
        let mut live = self.live.lock().await;
        if live.is_none() {
            match instantiate(&self.pre, &self.source, &self.options, limits, memory).await {
                Ok((l, _)) => *live = Some(l),
                Err(e) => {
                    let cause = format!("{e:#}");
                    tracing::error!(target: "wasio::policy", policy = %self.name, %cause, "policy cannot be restarted");
                    return Err(cause);
                }
            }
        }
        let l = live.as_mut().expect("instance present");
        let kind = q.kind();
        match invoke(l, &q).await {
            Ok(d) => Ok(d),
            Err(e) => {
                let cause = fault_cause(&e);
                tracing::error!(target: "wasio::policy", policy = %self.name, call = kind.name(), %cause, "policy call failed (denied); the next call gets a fresh instance");
                // A trapped instance cannot be entered again.
                *live = None;
                Err(cause)
            }
        }
    }
}

async fn invoke(live: &mut Live, q: &Question) -> wasmtime::Result<guest::Decision> {
    begin_call(&mut live.store);
    let g = live.policy.wasio_policy_policy();
    let store = &mut live.store;
    match q {
        Question::Connect(r) => g.call_authorize_connect(store, r).await,
        Question::Join(s, rooms) => g.call_authorize_join(store, s, rooms).await,
        Question::Publish(s, rooms, event, size) => {
            g.call_authorize_publish(store, s, rooms.as_deref(), event, *size)
                .await
        }
    }
}

/// A fresh instance of `pre` with its `init` run.
async fn instantiate(
    pre: &AccessPolicyPre<PolicyState>,
    source: &str,
    options: &str,
    limits: Limits,
    memory: &Arc<AtomicU64>,
) -> anyhow::Result<(Live, guest::PolicyInfo)> {
    let engine = crate::runtime::engine()?;
    let state = PolicyState::new(source, limits, memory.clone());
    let mut store = crate::runtime::store(engine, state);
    begin_call(&mut store);
    let policy = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| anyhow::anyhow!("{source}: instantiation failed: {}", fault_cause(&e)))?;
    begin_call(&mut store);
    let info = match policy
        .wasio_policy_policy()
        .call_init(&mut store, options)
        .await
    {
        Ok(Ok(info)) => info,
        Ok(Err(msg)) => anyhow::bail!("{source}: policy init refused: {msg}"),
        Err(e) => anyhow::bail!("{source}: policy init failed: {}", fault_cause(&e)),
    };
    store.data_mut().name = info.name.clone();
    Ok((Live { store, policy }, info))
}

/// The component's bytes. There are no built-in policies.
fn read(source: &WasmSource) -> anyhow::Result<Arc<Vec<u8>>> {
    match source {
        WasmSource::Builtin(name) => {
            anyhow::bail!("builtin:{name}: there are no built-in policies: name a .wasm file")
        }
        WasmSource::File(path) => {
            Ok(Arc::new(std::fs::read(path).with_context(|| {
                format!("{}: cannot read policy", path.display())
            })?))
        }
        WasmSource::Bytes { bytes, .. } => Ok(bytes.clone()),
    }
}

/// The data of a policy instance's store.
struct PolicyState {
    wasi: WasiCtx,
    table: ResourceTable,
    guard: Guard,
    /// How log lines name the policy: its source until `init` names it.
    name: String,
}

impl PolicyState {
    fn new(source: &str, limits: Limits, memory: Arc<AtomicU64>) -> PolicyState {
        // As for adapters: no preopens, environment, arguments or network; output to the log.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(Output::new(source, "stdout"))
            .stderr(Output::new(source, "stderr"))
            .build();
        PolicyState {
            wasi,
            table: ResourceTable::new(),
            guard: Guard::new(limits, memory),
            name: source.to_string(),
        }
    }
}

impl Guarded for PolicyState {
    fn guard(&self) -> &Guard {
        &self.guard
    }
    fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

impl WasiView for PolicyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::wasio::policy::log::Host for PolicyState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let policy = &self.name;
        match level {
            Level::Trace => tracing::trace!(target: "wasio::policy", %policy, "{message}"),
            Level::Debug => tracing::debug!(target: "wasio::policy", %policy, "{message}"),
            Level::Info => tracing::info!(target: "wasio::policy", %policy, "{message}"),
            Level::Warn => tracing::warn!(target: "wasio::policy", %policy, "{message}"),
            Level::Error => tracing::error!(target: "wasio::policy", %policy, "{message}"),
        }
        Ok(())
    }
}

/// The linker every policy is linked with: sandboxed WASI and the `log` import.
fn linker() -> anyhow::Result<&'static Linker<PolicyState>> {
    static LINKER: OnceLock<Linker<PolicyState>> = OnceLock::new();
    if let Some(l) = LINKER.get() {
        return Ok(l);
    }
    let mut linker = Linker::<PolicyState>::new(crate::runtime::engine()?);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    AccessPolicy::add_to_linker::<PolicyState, HasSelf<PolicyState>>(&mut linker, |s| s)?;
    Ok(LINKER.get_or_init(|| linker))
}

/// `component` linked, ready to instantiate; an error says what does not fit.
fn link(
    source: &str,
    component: &wasmtime::component::Component,
) -> anyhow::Result<AccessPolicyPre<PolicyState>> {
    let pre = linker()?.instantiate_pre(component).map_err(|e| {
        anyhow::anyhow!(
            "{source}: cannot link as a policy (wasio:policy/access-policy@0.1.0, wit/policy/policy.wit): {e}"
        )
    })?;
    AccessPolicyPre::new(pre).map_err(|e| {
        anyhow::anyhow!(
            "{source}: not a wasio policy: export `wasio:policy/policy@0.1.0` (wit/policy/policy.wit): {e}"
        )
    })
}

/// A policy's stdout or stderr (a panic message, a traceback), into the log a line at
/// a time, never onto the host's own streams.
#[derive(Clone)]
struct Output {
    source: Arc<str>,
    stream: &'static str,
    pending: Arc<StdMutex<Vec<u8>>>,
}

impl Output {
    fn new(source: &str, stream: &'static str) -> Output {
        Output {
            source: source.into(),
            stream,
            pending: Arc::default(),
        }
    }

    fn log(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            tracing::warn!(target: "wasio::policy", policy = %self.source, stream = self.stream, "{}", text.trim_end());
        }
    }
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut pending = self.pending.lock().unwrap();
        pending.extend_from_slice(buf);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            self.log(&line);
        }
        // A line this long is logged as it is.
        if pending.len() > 16 * 1024 {
            let line = std::mem::take(&mut *pending);
            self.log(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let line = std::mem::take(&mut *self.pending.lock().unwrap());
        if !line.is_empty() {
            self.log(&line);
        }
        Poll::Ready(Ok(()))
    }
}
