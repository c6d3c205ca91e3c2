//! `wasio-bench`: cluster benchmarks of wasio against native socketioxide and Node.js
//! socket.io, each system run in turn on the same machine, the same Redis (or MongoDB) and
//! the same load generator, and printed as one table.
//!
//! ```text
//! wasio-bench fanout --clients 1000 --nodes 2 --seconds 10   # the workloads
//! wasio-bench fanout --systems wasio,wasio-mongo,node,node-mongo [--mongodb URL]
//! wasio-bench swap --swaps 20 --rate 1000                     # hot swaps under a stream
//! wasio-bench languages --calls 20000                         # the same adapter in Rust, Python, JS
//! wasio-bench native-node --port P --redis URL --key K       # a native node (spawned by fanout)
//! ```
//!
//! The MongoDB systems use `--mongodb`, or else a SecantusDB the bench starts for the run
//! (see [`orchestrate`]).
//!
//! A workload is a [`Workload`] (a subcommand) and a system a [`System`] (`--systems`):
//! adding either is adding a variant and its arm. `swap` ([`swap`]) is a workload of
//! its own, on wasio only: it swaps adapters through the admin API while it measures.

mod languages;
mod loadgen;
mod mongo;
mod native;
mod orchestrate;
mod swap;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "wasio-bench", about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every client receives every broadcast: senders `publish` a small event to the
    /// whole namespace, cluster-wide.
    Fanout(RunArgs),
    /// Hot swaps of the adapter (`POST /admin/adapter`) under a steady broadcast stream:
    /// delivery gaps against a baseline, swap times, messages lost or duplicated.
    Swap(swap::SwapArgs),
    /// The cost of an adapter's language: the `wasio-json` adapter in Rust, Python and
    /// JavaScript, in process, per call and in memory.
    Languages(languages::LangArgs),
    /// Run one native socketioxide + socketioxide-redis node (used by the workloads).
    NativeNode(native::NodeArgs),
}

/// The workloads; each is a subcommand taking [`RunArgs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Fanout,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
        }
    }
}

/// The systems compared, in the order they run and appear in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// `wasio serve` with the builtin Redis guest (`target/release/wasio`).
    Wasio,
    /// socketioxide 0.18.9 + socketioxide-redis (fred driver), this binary's `native-node`.
    Native,
    /// The same with TCP_NODELAY on accepted connections (a diagnostic row: `wasio serve`
    /// and `native` leave Nagle on, as `axum::serve` does by default).
    NativeNodelay,
    /// Node.js socket.io 4.8 + @socket.io/redis-adapter 8.3 (`tests/bench/node/server.js`).
    Node,
    /// `wasio serve` with the builtin MongoDB guest (change streams on one collection).
    WasioMongo,
    /// Node.js socket.io 4.8 + @socket.io/mongo-adapter 0.4 on a capped collection
    /// (`tests/bench/node/server.js --mongodb`).
    NodeMongo,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Wasio => "wasio + Redis guest",
            System::Native => "native socketioxide-redis",
            System::NativeNodelay => "native, TCP_NODELAY",
            System::Node => "Node.js redis-adapter",
            System::WasioMongo => "wasio + MongoDB guest",
            System::NodeMongo => "Node.js mongo-adapter",
        }
    }

    /// Whether it runs on MongoDB (else on Redis).
    pub fn on_mongodb(self) -> bool {
        matches!(self, System::WasioMongo | System::NodeMongo)
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Socket.IO clients in all, spread evenly over the nodes (round robin).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Server processes per system, one cluster on a fresh Redis key prefix (MongoDB:
    /// collection).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up before the measured window, seconds.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Clients that publish (the first ones, so spread over the nodes too).
    #[arg(long, default_value_t = 2)]
    pub senders: usize,
    /// Publishes in flight at most, all senders together: a publish is in flight until
    /// every client has received it (or 1 s has passed).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Publishes per second, all senders together; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Bytes of the published `data` string (it embeds a sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Runs of every system, interleaved (system by system, round after round); the
    /// table shows each system's median run by deliveries/s, and the range.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Systems to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "wasio,native,node")]
    pub systems: Vec<System>,
    /// The Redis the Redis systems use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// The MongoDB the MongoDB systems use (the database is the URL's path, e.g.
    /// `mongodb://127.0.0.1:27017/wasio_bench?replicaSet=rs0`: change streams need a
    /// replica set). Without it, the bench starts a SecantusDB of its own for the run:
    /// `$WASIO_SECANTUSD`, or `tests/py/.venv/bin/secantusd-py` (installed there if missing).
    #[arg(long)]
    pub mongodb: Option<String>,
    /// The wasio binary (`cargo build --release -p wasio` first).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/wasio"))]
    pub wasio_bin: PathBuf,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node_bin: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Fanout(args) => orchestrate::run(Workload::Fanout, args),
        Cmd::Swap(args) => swap::run(args),
        Cmd::Languages(args) => languages::run(args),
        Cmd::NativeNode(args) => native::serve(args),
    }
}
