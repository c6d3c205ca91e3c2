//! The `wasio` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::adapter::Adapter;
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
    },
}

/// Exit code for a config or adapter refused before serving.
const EXIT_CONFIG: u8 = 2;

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
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
    match cli.command {
        Command::Serve {
            config,
            port,
            check,
        } => runtime.block_on(serve(config, port, check)),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
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
    let info = adapter.info();
    let (source, sha256) = adapter.component();
    if check {
        println!(
            "ok: {label}: adapter `{}` {} from {source} (sha256 {sha256})",
            info.name, info.version
        );
        adapter.close().await;
        return ExitCode::SUCCESS;
    }
    let (router, _io) = match crate::server::app(adapter.clone(), &config.server).await {
        Ok(app) => app,
        Err(e) => return refuse(format!("{label}: {e:#}")),
    };
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let bound = |addr: SocketAddr| {
        tracing::info!(adapter = %info.name, version = %info.version, %source, "wasio listening on http://{addr}");
    };
    let result = crate::server::serve(router, addr, bound, shutdown_signal()).await;
    adapter.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
