//! The `wasio` command line: `serve`, the admin client (`adapter status|swap|rollback`,
//! `policy status|swap`),
//! the conformance kit (`adapter check`) and the templates (`adapter new`, `policy new`).

pub(crate) mod kit;
mod template;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::cluster::Adapter;
use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "wasio",
    version,
    about = "A Socket.IO server whose cluster adapter is a WebAssembly component"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Socket.IO (WebSocket and long-polling) with the configured adapter.
    Serve {
        /// The config file (TOML); without one, defaults and WASIO_* variables apply.
        #[arg(long, short, env = "WASIO_CONFIG")]
        config: Option<PathBuf>,
        /// Port to listen on, over the config's `server.port`.
        #[arg(long, short)]
        port: Option<u16>,
        /// Validate the config and the adapter (load it, run its init), then exit.
        #[arg(long)]
        check: bool,
        /// Log lines on stderr: `text`, or `json` (one object per line).
        #[arg(long, env = "WASIO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Look at or change the adapter of a running node, through its admin API.
    Adapter {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: AdapterCommand,
    },
    /// Look at or change the access policy of a running node, through its admin API.
    Policy {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The running policy, its answers and faults so far.
    Status,
    /// Hot swap to another policy component; the old one answers until the new one is ready.
    Swap {
        /// A `.wasm` (uploaded, so it need not be on the node's machine).
        file: String,
        /// Send FILE as a path on the node's machine instead of uploading it.
        #[arg(long)]
        path: bool,
        /// The policy's `init` options, as JSON (default: keep the running ones).
        #[arg(long)]
        options: Option<String>,
    },
    /// Write a starting project for a policy of your own (an example to edit).
    New(NewArgs),
}

/// What `adapter new` and `policy new` write.
#[derive(Args)]
struct NewArgs {
    /// The project's name (also its directory, unless --dir).
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: template::Lang,
    /// Where to write it (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// For people: `TIME LEVEL target: message key=value`.
    Text,
    /// For log collectors: one JSON object a line, with `timestamp`, `level`, `target`
    /// and `fields` (`message` among them).
    Json,
}

/// Where the admin API is and how to get in.
#[derive(Args)]
struct AdminArgs {
    /// The node's config file, for `[admin]` listen and token.
    #[arg(long, short, env = "WASIO_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The admin API, over the config's `admin.listen` (default http://127.0.0.1:3001;
    /// https:// when the config has `[admin.tls]`).
    #[arg(long, global = true)]
    admin: Option<String>,
    /// A PEM certificate to trust for an https admin API (a self-signed one, or its CA);
    /// by default the config's `admin.tls.cert` and the public roots.
    #[arg(long, env = "WASIO_ADMIN_CACERT", global = true)]
    cacert: Option<PathBuf>,
    /// The bearer token, over the config's `admin.token`.
    #[arg(long, env = "WASIO_ADMIN_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON answer as it is.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum AdapterCommand {
    /// The running adapter, the swaps so far and the one kept for rollback.
    Status,
    /// Hot swap to another component; the old one serves until the new one is ready.
    Swap {
        /// A `.wasm` (uploaded, so it need not be on the node's machine) or builtin:NAME.
        file: String,
        /// Send FILE as a path on the node's machine instead of uploading it.
        #[arg(long)]
        path: bool,
        /// A `[datasources.NAME]` of the node's config (default: keep the running one).
        #[arg(long, conflicts_with = "no_datasource")]
        datasource: Option<String>,
        /// Run the new component without a datasource.
        #[arg(long)]
        no_datasource: bool,
    },
    /// Swap back to the component that ran before the last swap.
    Rollback,
    /// Check a component against the contract, then run the conformance scenarios on
    /// three in-process nodes; exits 1 when any fails.
    Check {
        /// The component: a `.wasm` path or builtin:NAME.
        file: String,
        /// What joins the nodes: memory:// (in-process), redis://HOST:PORT or mongodb://….
        #[arg(long, default_value = "memory://")]
        datasource: String,
        /// The adapter's options, as JSON (its `[adapter.options]`).
        #[arg(long, default_value = "{}")]
        options: String,
        /// Milliseconds an expected delivery or state change may take.
        #[arg(long, default_value_t = 10_000)]
        wait_ms: u64,
    },
    /// Write a starting project for an adapter of your own, which passes the check.
    New(NewArgs),
}

/// Exit code for a config or adapter refused before serving, or a usage error.
const EXIT_CONFIG: u8 = 2;
/// Exit code for an admin request refused (or the node unreachable).
const EXIT_REFUSED: u8 = 1;

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The kit's nodes log what the scenarios provoke; its table is the output.
    let quiet = matches!(
        cli.command,
        Command::Adapter {
            command: AdapterCommand::Check { .. },
            ..
        }
    );
    let format = match cli.command {
        Command::Serve { log_format, .. } => log_format,
        _ => LogFormat::Text,
    };
    init_logging(if quiet { "error" } else { "info" }, format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match cli.command {
        Command::Serve {
            config,
            port,
            check,
            ..
        } => runtime.block_on(serve(config, port, check)),
        Command::Adapter {
            command:
                AdapterCommand::Check {
                    file,
                    datasource,
                    options,
                    wait_ms,
                },
            ..
        } => runtime.block_on(check(file, datasource, options, wait_ms)),
        Command::Adapter {
            command: AdapterCommand::New(NewArgs { name, lang, dir }),
            ..
        } => new_project(template::Kit::Adapter, &name, lang, dir),
        Command::Policy {
            command: PolicyCommand::New(NewArgs { name, lang, dir }),
            ..
        } => new_project(template::Kit::Policy, &name, lang, dir),
        Command::Adapter { admin, command } => runtime.block_on(adapter_command(admin, command)),
        Command::Policy { admin, command } => runtime.block_on(policy_command(admin, command)),
    };
    // Tasks left behind (a file watcher, a stuck blocking call) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

fn refuse(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_CONFIG)
}

async fn serve(config_path: Option<PathBuf>, port: Option<u16>, check: bool) -> ExitCode {
    let mut config = match Config::load(config_path.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    if let Some(port) = port {
        config.server.port = port;
    }
    let label = config_path
        .as_ref()
        .map_or_else(|| "(no config file)".into(), |p| p.display().to_string());
    let adapter = match Adapter::load(config.adapter_options()).await {
        Ok(a) => a,
        Err(e) => return refuse(format!("{label}: {e:#}")),
    };
    let info = adapter.status().current;
    let policy = match crate::auth::Policy::from_config(&config.auth, &config.limits).await {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            adapter.close().await;
            return refuse(format!("{label}: key `auth.policy`: {e:#}"));
        }
    };
    // A certificate that does not load refuses the start (and `--check`).
    let mut tls = [None, None];
    for (slot, key, files) in [
        (0, "server.tls", &config.server.tls),
        (1, "admin.tls", &config.admin.tls),
    ] {
        match files.as_ref().map(crate::serve::tls::Tls::load).transpose() {
            Ok(t) => tls[slot] = t.map(std::sync::Arc::new),
            Err(e) => {
                adapter.close().await;
                return refuse(format!("{label}: key `{key}`: {e:#}"));
            }
        }
    }
    let [server_tls, admin_tls] = tls;
    let gate =
        match crate::auth::Gate::new(&config.auth, config.server.limits.clone(), policy.clone()) {
            Ok(g) => std::sync::Arc::new(g),
            Err(e) => {
                adapter.close().await;
                return refuse(format!("{label}: {e:#}"));
            }
        };
    if check {
        println!(
            "ok: {label}: adapter `{}` {} from {} (sha256 {})",
            info.name, info.version, info.source, info.sha256
        );
        println!("ok: {label}: auth {}", config.auth.mode());
        let p = policy.status();
        if p.active {
            println!(
                "ok: {label}: policy `{}` {} from {} (sha256 {})",
                p.name, p.version, p.source, p.sha256
            );
        }
        adapter.close().await;
        return ExitCode::SUCCESS;
    }
    if gate.is_open() {
        tracing::warn!(
            "auth is off: the relay is open, any client may connect, join any room and publish to anyone (set [auth.jwt] or [auth] policy)"
        );
    } else {
        tracing::info!(mode = config.auth.mode(), "auth on");
    }
    let served = crate::serve::server::app_gated(adapter.clone(), &config.server, gate.clone());
    let (router, io) = match served.await {
        Ok(app) => app,
        Err(e) => return refuse(format!("{label}: {e:#}")),
    };
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let shutdown_timeout = std::time::Duration::from_millis(config.server.shutdown_timeout_ms);
    // Listening from here on: a signal during start-up is not lost.
    let signals = match crate::serve::shutdown::Signals::new() {
        Ok(s) => s,
        Err(e) => return refuse(format!("cannot listen for signals: {e}")),
    };
    // One stop signal for the server, the admin API and the reloader.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let admin = config
        .admin
        .token
        .clone()
        .map(|token| (config.admin.listen, token));
    let node = crate::serve::reload::Node::new(adapter.clone(), policy, gate, config, config_path);
    node.set_tls(server_tls.clone(), admin_tls.clone());
    if let Err(e) = crate::serve::reload::spawn(node.clone(), stop.clone()) {
        return refuse(format!("{e:#}"));
    }
    tokio::spawn(crate::serve::memory::trimmer());
    match admin {
        Some((listen, token)) => {
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    return refuse(format!(
                        "{label}: key `admin.listen`: cannot listen on {listen}: {e}"
                    ));
                }
            };
            if let Ok(a) = listener.local_addr() {
                let scheme = scheme(admin_tls.is_some());
                tracing::info!("admin API listening on {scheme}://{a}");
            }
            let router = crate::serve::admin::router(node, &token);
            let stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::serve::admin::serve(listener, router, admin_tls, stop).await
                {
                    tracing::error!("admin API: {e:#}");
                }
            });
        }
        None => tracing::info!("admin API off (no admin.token configured)"),
    }
    let scheme = scheme(server_tls.is_some());
    let bound = move |addr: SocketAddr| {
        tracing::info!(adapter = %info.name, version = %info.version, source = %info.source, "wasio listening on {scheme}://{addr}");
    };
    let mut server_stop = stop;
    let stopped = async move {
        let _ = server_stop.wait_for(|s| *s).await;
    };
    let draining = crate::serve::shutdown::Draining::default();
    let router = router.layer(axum::Extension(draining.clone()));
    let server = tokio::spawn(crate::serve::server::serve(
        router, addr, server_tls, bound, stopped,
    ));
    let node = crate::serve::shutdown::Node {
        draining,
        stop: stop_tx,
        io,
        adapter,
        timeout: shutdown_timeout,
    };
    crate::serve::shutdown::run(server, node, signals).await
}

/// A listener's URL scheme.
fn scheme(tls: bool) -> &'static str {
    if tls { "https" } else { "http" }
}

/// Where the admin API is, its token and, over https, the certificates to trust.
struct AdminTarget {
    base: String,
    token: String,
    trust: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Where the admin API is and how to get in, from the arguments and the config.
fn admin_target(args: &AdminArgs) -> Result<AdminTarget, ExitCode> {
    let config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => return Err(refuse(e)),
    };
    let base = args.admin.clone().unwrap_or_else(|| {
        let mut listen = config.admin.listen;
        // A node listening on every address is reached on this machine's loopback.
        if listen.ip().is_unspecified() {
            listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("{}://{listen}", scheme(config.admin.tls.is_some()))
    });
    let Some(token) = args.token.clone().or(config.admin.token) else {
        return Err(refuse(
            "no admin token: pass --token, set WASIO_ADMIN_TOKEN or admin.token",
        ));
    };
    let trust = if base.starts_with("https://") {
        // The node's own certificate file: a self-signed one is then trusted as it is.
        let anchor = args
            .cacert
            .clone()
            .or_else(|| config.admin.tls.as_ref().map(|t| t.cert.clone()));
        let anchors: Vec<&std::path::Path> = anchor.iter().map(PathBuf::as_path).collect();
        match crate::serve::tls::client_config(&anchors) {
            Ok(c) => Some(std::sync::Arc::new(c)),
            Err(e) => return Err(refuse(format!("{e:#}"))),
        }
    } else {
        None
    };
    Ok(AdminTarget { base, token, trust })
}

/// One admin API request: its JSON answer when it succeeded, else the exit code (the
/// error printed).
async fn admin_call(
    target: &AdminTarget,
    method: &str,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Value, ExitCode> {
    let AdminTarget { base, token, trust } = target;
    let answer = crate::serve::admin::call_over(base, trust.clone(), token, method, path, body);
    let (status, answer) = match answer.await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Err(ExitCode::from(EXIT_REFUSED));
        }
    };
    if !(200..300).contains(&status) {
        let msg = answer["error"]
            .as_str()
            .map_or_else(|| answer.to_string(), str::to_string);
        eprintln!("error: HTTP {status}: {msg}");
        return Err(ExitCode::from(EXIT_REFUSED));
    }
    Ok(answer)
}

/// `wasio policy ...`: one admin API request, its answer printed.
async fn policy_command(args: AdminArgs, command: PolicyCommand) -> ExitCode {
    let target = match admin_target(&args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (method, path, body) = match &command {
        PolicyCommand::Status => ("GET", "/admin/policy".to_string(), None),
        // Handled in `main`: it needs no node.
        PolicyCommand::New(_) => return ExitCode::FAILURE,
        PolicyCommand::Swap {
            file,
            path,
            options,
        } => match policy_swap_request(file, *path, options.as_deref()) {
            Ok((path, body)) => ("POST", path, Some(body)),
            Err(e) => return refuse(format!("{e:#}")),
        },
    };
    let answer = match admin_call(&target, method, &path, body).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.json {
        println!("{answer:#}");
    } else {
        if matches!(command, PolicyCommand::Swap { .. }) {
            print!("swapped: ");
        }
        print_policy(&answer);
    }
    ExitCode::SUCCESS
}

/// The request path and body of `wasio policy swap`.
fn policy_swap_request(
    file: &str,
    as_path: bool,
    options: Option<&str>,
) -> anyhow::Result<(String, (&'static str, Vec<u8>))> {
    use anyhow::Context;
    let options = options
        .map(|o| match serde_json::from_str::<Value>(o) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => anyhow::bail!("--options: expected a JSON object"),
            Err(e) => anyhow::bail!("--options: not JSON: {e}"),
        })
        .transpose()?;
    if as_path || options.is_some() {
        let wasm = std::path::absolute(file)
            .with_context(|| format!("{file}: cannot make the path absolute"))?;
        let mut body = serde_json::json!({ "wasm": wasm.display().to_string() });
        if let Some(o) = options {
            body["options"] = o;
        }
        let body = serde_json::to_vec(&body).context("encoding the request")?;
        return Ok(("/admin/policy".into(), ("application/json", body)));
    }
    let bytes = std::fs::read(file).with_context(|| format!("{file}: cannot read"))?;
    let name = std::path::Path::new(file)
        .file_name()
        .map_or_else(|| file.into(), |n| n.to_string_lossy());
    let path = format!("/admin/policy?name={}", query_escape(&name));
    Ok((path, ("application/wasm", bytes)))
}

/// `NAME VERSION SHA256[..12] SOURCE`, then the counts.
fn print_policy(p: &Value) {
    if p["active"] != Value::Bool(true) {
        println!("no policy (every connect, join and publish is allowed by it)");
        return;
    }
    println!("{}", component_line(p));
    let d = &p["denied"];
    println!(
        "allowed: {}, denied: connect {} join {} publish {}, faults: {}",
        p["allowed"], d["connect"], d["join"], d["publish"], p["faults"]
    );
    println!("swaps: {}, refused: {}", p["swaps"], p["failed_swaps"]);
    if let Some(e) = p["last_error"].as_str() {
        println!("last refusal: {e}");
    }
}

/// `wasio adapter ...`: one admin API request, its answer printed.
async fn adapter_command(args: AdminArgs, command: AdapterCommand) -> ExitCode {
    let target = match admin_target(&args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (method, path, body) = match &command {
        AdapterCommand::Status => ("GET", "/admin/adapter".to_string(), None),
        AdapterCommand::Rollback => ("POST", "/admin/adapter/rollback".to_string(), None),
        AdapterCommand::Swap {
            file,
            path,
            datasource,
            no_datasource,
        } => match swap_request(file, *path, datasource.as_deref(), *no_datasource) {
            Ok((path, body)) => ("POST", path, Some(body)),
            Err(e) => return refuse(format!("{e:#}")),
        },
        // Handled in `main`: they need no node.
        AdapterCommand::Check { .. } | AdapterCommand::New(_) => return ExitCode::FAILURE,
    };
    let answer = match admin_call(&target, method, &path, body).await {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.json {
        println!("{answer:#}");
    } else if matches!(command, AdapterCommand::Status) {
        print_status(&answer);
    } else {
        print_report(&answer);
    }
    ExitCode::SUCCESS
}

/// `wasio adapter check`: prints the table; exits 1 when anything failed.
async fn check(file: String, datasource: String, options: String, wait_ms: u64) -> ExitCode {
    let options = match serde_json::from_str::<Value>(&options) {
        Ok(o) if o.is_object() => o,
        Ok(_) => return refuse("--options: expected a JSON object"),
        Err(e) => return refuse(format!("--options: not JSON: {e}")),
    };
    let opts = kit::CheckOptions {
        wasm: crate::config::WasmSource::parse(&file),
        datasource,
        options,
        patience: std::time::Duration::from_millis(wait_ms),
    };
    match kit::run(opts).await {
        Ok(report) => {
            print!("{}", report.table());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_REFUSED)
            }
        }
        Err(e) => refuse(format!("{e:#}")),
    }
}

/// `wasio adapter new`, `wasio policy new`: writes the project and says how to build
/// and use it.
fn new_project(
    kit: template::Kit,
    name: &str,
    lang: template::Lang,
    dir: Option<PathBuf>,
) -> ExitCode {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    match template::write(kit, name, lang, &dir) {
        Ok(next) => {
            println!("wrote {}\n\n{next}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => refuse(format!("{e:#}")),
    }
}

/// The request path and body of `wasio adapter swap`.
fn swap_request(
    file: &str,
    as_path: bool,
    datasource: Option<&str>,
    no_datasource: bool,
) -> anyhow::Result<(String, (&'static str, Vec<u8>))> {
    use anyhow::Context;
    let datasource = if no_datasource { Some("") } else { datasource };
    if as_path || file.starts_with("builtin:") {
        let wasm = if file.starts_with("builtin:") {
            file.to_string()
        } else {
            std::path::absolute(file)
                .with_context(|| format!("{file}: cannot make the path absolute"))?
                .display()
                .to_string()
        };
        let mut body = serde_json::json!({ "wasm": wasm });
        match datasource {
            Some("") => body["datasource"] = Value::Null,
            Some(d) => body["datasource"] = d.into(),
            None => {}
        }
        let body = serde_json::to_vec(&body).context("encoding the request")?;
        return Ok(("/admin/adapter".into(), ("application/json", body)));
    }
    let bytes = std::fs::read(file).with_context(|| format!("{file}: cannot read"))?;
    let name = std::path::Path::new(file)
        .file_name()
        .map_or_else(|| file.into(), |n| n.to_string_lossy());
    let mut path = format!("/admin/adapter?name={}", query_escape(&name));
    if let Some(d) = datasource {
        path.push_str(&format!("&datasource={}", query_escape(d)));
    }
    Ok((path, ("application/wasm", bytes)))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `NAME VERSION SHA256[..12] SOURCE`, and the datasource if any.
fn component_line(c: &Value) -> String {
    let s = |k: &str| c[k].as_str().unwrap_or("?").to_string();
    let sha = s("sha256");
    let mut line = format!(
        "{} {} {} {}",
        s("name"),
        s("version"),
        &sha[..sha.len().min(12)],
        s("source")
    );
    if let Some(ds) = c["datasource"].as_str() {
        line.push_str(&format!(" (datasource {ds})"));
    }
    line
}

fn print_status(status: &Value) {
    println!("{}", component_line(status));
    println!(
        "swaps: {}, refused: {}",
        status["swaps"], status["failed_swaps"]
    );
    if let Some(e) = status["last_error"].as_str() {
        println!("last refusal: {e}");
    }
    if status["previous"].is_object() {
        println!("previous: {}", component_line(&status["previous"]));
    }
}

fn print_report(r: &Value) {
    let (from, to) = (&r["from"], &r["to"]);
    let s = |c: &Value, k: &str| c[k].as_str().unwrap_or("?").to_string();
    println!(
        "swapped {} v{} -> {} v{} in {:.1} ms",
        s(from, "name"),
        s(from, "version"),
        s(to, "name"),
        s(to, "version"),
        r["total_ms"].as_f64().unwrap_or(0.0)
    );
    println!("now: {}", component_line(to));
}
