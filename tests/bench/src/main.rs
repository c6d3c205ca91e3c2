//! `wasio-bench`: cluster benchmarks of wasio against native socketioxide and Node.js
//! socket.io, each system run in turn on the same machine, the same Redis (or MongoDB) and
//! the same load generator, and printed as one table.
//!
//! ```text
//! wasio-bench suite                                           # every workload x system, one table
//! wasio-bench fanout --clients 1000 --nodes 2 --seconds 10   # one workload (also rooms,
//!                                                             # small-rooms, acks, idle)
//! wasio-bench fanout --systems wasio,wasio-mongo,node,node-mongo [--mongodb URL]
//! wasio-bench scaling --node-counts 2,4,8 --rate 1000      # cost by node count, Redis modes
//! wasio-bench swap --swaps 20 --rate 1000                     # hot swaps under a stream
//! wasio-bench languages --calls 20000                         # the same adapter in Rust, Python, JS
//! wasio-bench native-node --port P --redis URL --key K       # a native node (spawned by fanout)
//! ```
//!
//! The MongoDB systems use `--mongodb`, or else a SecantusDB the bench starts for the run
//! (see [`orchestrate`]); `wasio-redis-cluster` uses `--redis-cluster`, or else a
//! three-master Redis Cluster the bench starts ([`redis_cluster`]).
//!
//! A workload is a [`Workload`] (a subcommand) and a system a [`System`] (`--systems`):
//! adding either is adding a variant and its arm. `swap` ([`swap`]) is a workload of
//! its own, on wasio only: it swaps adapters through the admin API while it measures.

mod acks;
mod idle;
mod languages;
mod loadgen;
mod mongo;
mod native;
mod orchestrate;
mod probe;
mod redis_cluster;
mod report;
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
    /// Every workload against every system, printed as one table.
    Suite(SuiteArgs),
    /// How cost grows with nodes: every system at every `--node-counts`, at one fixed
    /// `--rate` (default 1000 publishes/s), printed as one table with the backend
    /// messages per publish. Default systems: the Redis guest classic, sharded, and
    /// sharded on a Redis Cluster.
    #[command(
        mut_arg("systems", |a| a.default_value("wasio,wasio-sharded,wasio-redis-cluster")),
        mut_arg("rate", |a| a.default_value("1000")),
        mut_arg("nodes", |a| a.hide(true))
    )]
    Scaling(ScalingArgs),
    /// Every client receives every broadcast: senders `publish` a small event to the
    /// whole namespace, cluster-wide.
    Fanout(RunArgs),
    /// Clients in rooms of `--room-size` (default 10), each room spread over the nodes;
    /// senders `publish` to a random room.
    Rooms(RunArgs),
    /// The same with many rooms of 2 (`--room-size` 2, one room per pair of clients).
    SmallRooms(RunArgs),
    /// The round trip of an acknowledged `publish`, every client sending at a fixed total
    /// rate, to a room nobody is in: the relay path through the adapter without fan-out.
    Acks(RunArgs),
    /// `--idle-clients` (default 10,000) connections that only answer pings: memory and
    /// CPU per connection.
    Idle(RunArgs),
    /// Hot swaps of the adapter (`POST /admin/adapter`) under a steady broadcast stream:
    /// delivery gaps against a baseline, swap times, messages lost or duplicated.
    Swap(swap::SwapArgs),
    /// The cost of an adapter's language: the `wasio-json` adapter in Rust, Python and
    /// JavaScript, in process, per call and in memory.
    Languages(languages::LangArgs),
    /// Run one native socketioxide + socketioxide-redis node (used by the workloads).
    NativeNode(native::NodeArgs),
}

/// The workloads; each is a subcommand taking [`RunArgs`], and `suite` runs them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    Fanout,
    Rooms,
    SmallRooms,
    Acks,
    Idle,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
            Workload::Rooms => "rooms",
            Workload::SmallRooms => "small-rooms",
            Workload::Acks => "acks",
            Workload::Idle => "idle",
        }
    }

    /// The shape of the load, from the flags given and this workload's defaults (chosen
    /// so that each keeps both cores busy without the client side alone saturating).
    pub fn params(self, a: &RunArgs) -> Params {
        let (senders, window, rate, room) = match self {
            Workload::Fanout => (2, 8, 0.0, None),
            Workload::Rooms => (20, 64, 0.0, Some(10)),
            Workload::SmallRooms => (50, 128, 0.0, Some(2)),
            // Every client sends, one publish in flight each, 2,000/s in all.
            Workload::Acks => (usize::MAX, usize::MAX, 2000.0, None),
            Workload::Idle => (0, 0, 0.0, None),
        };
        let clients = match self {
            Workload::Idle => a.idle_clients,
            _ => a.clients,
        };
        Params {
            clients,
            senders: a.senders.unwrap_or(senders).min(clients),
            window: a.window.unwrap_or(window),
            rate: a.rate.unwrap_or(rate),
            room_size: room.map(|r| a.room_size.unwrap_or(r).max(1)),
        }
    }
}

/// A workload's load shape, resolved from [`RunArgs`].
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub clients: usize,
    pub senders: usize,
    pub window: usize,
    pub rate: f64,
    /// Members per room (room workloads), else every publish goes to the namespace.
    pub room_size: Option<usize>,
}

/// The systems compared, in the order they run and appear in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// `wasio serve` with the builtin `local` guest: a single-node adapter, so it runs on
    /// one node with all the clients (not a cluster: every delivery is same-node).
    WasioLocal,
    /// `wasio serve` with the builtin Redis guest (`target/release/wasio`).
    Wasio,
    /// The same in sharded mode (`mode = "sharded"`: SPUBLISH, and a room's own channel
    /// subscribed by the nodes that have the room) on the same Redis.
    WasioSharded,
    /// The same, sharded, on a Redis Cluster (`--redis-cluster`, or three masters the
    /// bench starts for the run).
    WasioRedisCluster,
    /// socketioxide 0.18.9 + socketioxide-redis (fred driver), this binary's `native-node`.
    Native,
    /// The same with TCP_NODELAY on accepted connections (a diagnostic row: `wasio serve`
    /// and `native` leave Nagle on, as `axum::serve` does by default).
    NativeNodelay,
    /// Node.js socket.io 4.8 + @socket.io/redis-adapter 8.3 (`tests/bench/node/server.js`).
    Node,
    /// `wasio serve` with the builtin MongoDB guest (change streams on one collection).
    WasioMongo,
    /// `wasio serve` with the builtin Redis guest (classic protocol) on NATS
    /// (`connector = "nats"`: subjects, patterns matched on the host, counts by census).
    WasioNats,
    /// Node.js socket.io 4.8 + @socket.io/mongo-adapter 0.4 on a capped collection
    /// (`tests/bench/node/server.js --mongodb`).
    NodeMongo,
    /// `wasio serve` with the builtin PostgreSQL guest (LISTEN/NOTIFY).
    WasioPostgres,
    /// Node.js socket.io 4.8 + @socket.io/postgres-adapter 0.5
    /// (`tests/bench/node/server.js --postgres`).
    NodePostgres,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::WasioLocal => "wasio + local guest (1 node)",
            System::Wasio => "wasio + Redis guest",
            System::WasioSharded => "wasio + Redis guest, sharded",
            System::WasioRedisCluster => "wasio + Redis guest, sharded, Redis Cluster",
            System::Native => "native socketioxide-redis",
            System::NativeNodelay => "native, TCP_NODELAY",
            System::Node => "Node.js redis-adapter",
            System::WasioMongo => "wasio + MongoDB guest",
            System::WasioNats => "wasio + Redis guest on NATS",
            System::NodeMongo => "Node.js mongo-adapter",
            System::WasioPostgres => "wasio + PostgreSQL guest",
            System::NodePostgres => "Node.js postgres-adapter",
        }
    }

    /// Whether it runs on MongoDB.
    pub fn on_mongodb(self) -> bool {
        matches!(self, System::WasioMongo | System::NodeMongo)
    }

    /// Whether it runs on PostgreSQL.
    pub fn on_postgres(self) -> bool {
        matches!(self, System::WasioPostgres | System::NodePostgres)
    }

    /// Whether it runs on the one Redis of `--redis` (else on a Redis Cluster, MongoDB,
    /// PostgreSQL or NATS).
    pub fn on_redis(self) -> bool {
        !self.on_mongodb()
            && !self.on_postgres()
            && !matches!(self, System::WasioNats | System::WasioRedisCluster)
    }

    /// Whether it is a `wasio serve` (so has a guest, and `/metrics`).
    pub fn is_wasio(self) -> bool {
        matches!(
            self,
            System::WasioLocal
                | System::Wasio
                | System::WasioSharded
                | System::WasioRedisCluster
                | System::WasioMongo
                | System::WasioNats
                | System::WasioPostgres
        )
    }

    /// Its node count: the `local` guest cannot relay, so it always runs one node.
    pub fn nodes(self, asked: usize) -> usize {
        if self == System::WasioLocal { 1 } else { asked }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct SuiteArgs {
    /// Workloads to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fanout,rooms,small-rooms,acks,idle"
    )]
    pub workloads: Vec<Workload>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct ScalingArgs {
    /// Node counts, each system run at each (round robin placement, as everywhere).
    #[arg(long, value_delimiter = ',', default_value = "2,4,8")]
    pub node_counts: Vec<usize>,
    /// Workloads to run, in order (`rooms`: rooms of 10, so a room spans up to 10 nodes;
    /// `small-rooms`: rooms of 2).
    #[arg(long, value_delimiter = ',', default_value = "rooms,small-rooms")]
    pub workloads: Vec<Workload>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RunArgs {
    /// Socket.IO clients in all, spread evenly over the nodes (round robin).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Connections of the `idle` workload.
    #[arg(long, default_value_t = 10_000)]
    pub idle_clients: usize,
    /// Members per room (`rooms`: default 10, `small-rooms`: 2).
    #[arg(long)]
    pub room_size: Option<usize>,
    /// Server processes per system, one cluster on a fresh Redis key prefix (MongoDB:
    /// collection).
    #[arg(long, default_value_t = 2)]
    pub nodes: usize,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Warm-up before the measured window, seconds.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Clients that publish (the first ones, so spread over the nodes too). Default per
    /// workload: fanout 2, rooms 20, small-rooms 50, acks every client.
    #[arg(long)]
    pub senders: Option<usize>,
    /// Publishes in flight at most, all senders together: a publish is in flight until
    /// every addressed client has received it (or 1 s has passed). Default: fanout 8,
    /// rooms 64, small-rooms 128; acks: one per sender.
    #[arg(long)]
    pub window: Option<usize>,
    /// Publishes per second, all senders together; 0 = as fast as the window allows.
    /// Default 0, acks 2000.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Bytes of the published `data` string (it embeds a sequence number and send time).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Runs of every system, interleaved (system by system, round after round); the
    /// table shows each system's median run by deliveries/s, and the range.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Systems to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "wasio-local,wasio,native-nodelay,node"
    )]
    pub systems: Vec<System>,
    /// The Redis the Redis systems use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// The Redis Cluster `wasio-redis-cluster` uses (`redis-cluster://host:port`, any
    /// node as the seed). Without it, the bench starts three masters of its own for the
    /// run on free loopback ports (`redis-server` and `redis-cli` must be installed).
    #[arg(long)]
    pub redis_cluster: Option<String>,
    /// The NATS the NATS system uses.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// The PostgreSQL the PostgreSQL systems use (each run on a channel prefix of its own).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
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
        Cmd::Suite(args) => orchestrate::run(&args.workloads, args.run),
        Cmd::Scaling(args) => orchestrate::scaling(&args.workloads, &args.node_counts, args.run),
        Cmd::Fanout(args) => orchestrate::run(&[Workload::Fanout], args),
        Cmd::Rooms(args) => orchestrate::run(&[Workload::Rooms], args),
        Cmd::SmallRooms(args) => orchestrate::run(&[Workload::SmallRooms], args),
        Cmd::Acks(args) => orchestrate::run(&[Workload::Acks], args),
        Cmd::Idle(args) => orchestrate::run(&[Workload::Idle], args),
        Cmd::Swap(args) => swap::run(args),
        Cmd::Languages(args) => languages::run(args),
        Cmd::NativeNode(args) => native::serve(args),
    }
}
