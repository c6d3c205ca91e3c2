//! Runs a workload against each system in turn: start its nodes on free ports and a fresh
//! Redis key prefix (MongoDB: collection), run the load generator, stop the nodes; then
//! print one table. A MongoDB system in `--systems` without `--mongodb` starts a
//! SecantusDB for the whole run first ([`crate::mongo`]), and `wasio-redis-cluster`
//! without `--redis-cluster` a Redis Cluster ([`crate::redis_cluster`]). `scaling` is the
//! same loop over node counts too, printed as its own table.

use crate::loadgen::{self, Outcome, Plan};
use crate::mongo::Mongo;
use crate::redis_cluster::RedisCluster;
use crate::{Params, RunArgs, System, Workload, acks, idle, report};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};

/// Every workload against every system at `--nodes`, printed as the suite's table.
pub fn run(workloads: &[Workload], args: RunArgs) -> Result<()> {
    let counts = [args.nodes];
    run_at(workloads, &counts, &args, Print::Suite)
}

/// Every workload against every system at every node count, printed as the scaling table.
pub fn scaling(workloads: &[Workload], counts: &[usize], args: RunArgs) -> Result<()> {
    run_at(workloads, counts, &args, Print::Scaling)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Print {
    Suite,
    Scaling,
}

fn run_at(workloads: &[Workload], counts: &[usize], args: &RunArgs, print: Print) -> Result<()> {
    if counts.is_empty() || counts.contains(&0) {
        bail!("node counts must be at least 1");
    }
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wasio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let load_before = load_average();
    let own = match rt.block_on(Own::start(args, &dir)) {
        Ok(own) => own,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    // The rows of each table: every system at every count (system by system), once.
    let mut cases: Vec<(System, usize)> = Vec::new();
    for &system in &args.systems {
        for &n in counts {
            if !cases.contains(&(system, system.nodes(n))) {
                cases.push((system, system.nodes(n)));
            }
        }
    }
    let mut tables = Vec::new();
    for &workload in workloads {
        let params = workload.params(args);
        let mut runs: Vec<Vec<Result<Outcome>>> = cases.iter().map(|_| Vec::new()).collect();
        for round in 0..args.rounds.max(1) {
            for (c, &(system, nodes)) in cases.iter().enumerate() {
                eprintln!(
                    "== {}: {} ({nodes} nodes), round {}/{}",
                    workload.name(),
                    system.name(),
                    round + 1,
                    args.rounds.max(1)
                );
                let key = format!(
                    "bench-{stamp}-{}-{}-{system:?}-{nodes}-{round}",
                    std::process::id(),
                    workload.name()
                )
                .to_lowercase();
                let at = RunArgs {
                    nodes,
                    ..args.clone()
                };
                let outcome =
                    rt.block_on(run_system(workload, &params, system, &at, &own, &dir, &key));
                match &outcome {
                    Ok(o) => eprintln!(
                        "  {:.0} deliveries/s, {} publishes in window, p50 {}, p99 {} (cross-node {} / {}), lost {}, ack errors {}, stalls {}, CPU s {:.1?}, RSS KiB {:?}, guest s {:?}, backend messages per publish (out, in) {:.2?}",
                        o.per_second(),
                        o.publishes,
                        ms(o.quantile_us(0.5)),
                        ms(o.quantile_us(0.99)),
                        ms(o.cross_quantile_us(0.5)),
                        ms(o.cross_quantile_us(0.99)),
                        o.lost,
                        o.ack_errors,
                        o.stalls,
                        o.cpu_seconds,
                        o.rss_kib,
                        o.guest_seconds,
                        o.messages_per_publish(),
                    ),
                    Err(e) => eprintln!("  failed: {e:#}"),
                }
                runs[c].push(outcome);
            }
        }
        let rows: Vec<Row> = cases
            .iter()
            .zip(runs)
            .map(|(&(system, nodes), outcomes)| {
                // At a fixed rate every round delivers the same: the scaling table's
                // median round is the median by CPU per delivery instead.
                let by_cpu = print == Print::Scaling && params.rate > 0.0;
                Row::of(system, nodes, outcomes, by_cpu)
            })
            .collect();
        tables.push((workload, params, rows));
    }
    let failed = tables
        .iter()
        .flat_map(|(_, _, rows)| rows)
        .any(|r| r.median.is_err());
    let load = format!("{load_before} at the start, {} at the end", load_average());
    let backends = Backends {
        redis: args
            .systems
            .iter()
            .any(|s| s.on_redis())
            .then(|| format!("Redis at {}", args.redis)),
        redis_cluster: own.cluster.as_ref().map(|c| c.label.clone()),
        nats: args
            .systems
            .contains(&System::WasioNats)
            .then(|| format!("NATS at {}", args.nats)),
        postgres: args.systems.iter().any(|s| s.on_postgres()).then(|| {
            format!(
                "PostgreSQL at {} (its CPU: every `postgres` process, other clients' sessions included)",
                args.postgres
            )
        }),
        mongodb: own.mongo.as_ref().map(|m| m.label.clone()),
    };
    rt.block_on(own.stop());
    let table = match print {
        Print::Suite => report::report(&tables, args, &load, &backends),
        Print::Scaling => report::scaling(&tables, counts, args, &load, &backends),
    };
    println!("{table}");
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        bail!("some runs failed (see above)");
    }
    Ok(())
}

/// The backends the bench starts for a run when a system needs one no flag gives.
pub(crate) struct Own {
    mongo: Option<Mongo>,
    cluster: Option<RedisCluster>,
}

impl Own {
    async fn start(args: &RunArgs, dir: &Path) -> Result<Own> {
        let cluster = if args.systems.contains(&System::WasioRedisCluster) {
            let c = RedisCluster::start(args.redis_cluster.as_deref(), dir)
                .context("starting the Redis Cluster of wasio-redis-cluster")?;
            Some(c)
        } else {
            None
        };
        let mongo = if args.systems.iter().any(|s| s.on_mongodb()) {
            let m = Mongo::start(args.mongodb.as_deref(), dir)
                .await
                .context("starting the MongoDB of the MongoDB systems")?;
            Some(m)
        } else {
            None
        };
        Ok(Own { mongo, cluster })
    }

    async fn stop(self) {
        if let Some(m) = self.mongo {
            m.stop().await;
        }
        // The Redis Cluster stops when dropped.
    }
}

/// A system's line in the table: its median run, and the range over the rounds.
pub(crate) struct Row {
    pub(crate) system: System,
    /// Its node count.
    pub(crate) nodes: usize,
    pub(crate) median: Result<Outcome>,
    pub(crate) range: Option<(f64, f64)>,
}

impl Row {
    /// The median of `outcomes` by deliveries/s, or by CPU (all but the load generator's)
    /// per delivery if `by_cpu`; the range is of deliveries/s.
    fn of(system: System, nodes: usize, outcomes: Vec<Result<Outcome>>, by_cpu: bool) -> Row {
        let mut ok: Vec<Outcome> = Vec::new();
        let mut err = None;
        for o in outcomes {
            match o {
                Ok(o) => ok.push(o),
                Err(e) => err = Some(e),
            }
        }
        if ok.is_empty() {
            let e = err.unwrap_or_else(|| anyhow::anyhow!("no run"));
            return Row {
                system,
                nodes,
                median: Err(e),
                range: None,
            };
        }
        ok.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        let range = (ok.len() > 1).then(|| (ok[0].per_second(), ok[ok.len() - 1].per_second()));
        if by_cpu {
            let per_delivery = |o: &Outcome| {
                let cpu = &o.cpu_seconds[..o.cpu_seconds.len().saturating_sub(1)];
                cpu.iter().sum::<f64>() / o.deliveries.max(1) as f64
            };
            ok.sort_by(|a, b| per_delivery(a).total_cmp(&per_delivery(b)));
        }
        let median = ok.swap_remove(ok.len() / 2);
        Row {
            system,
            nodes,
            median: Ok(median),
            range,
        }
    }
}

/// What the systems ran on, for the table's header.
pub(crate) struct Backends {
    pub(crate) redis: Option<String>,
    pub(crate) redis_cluster: Option<String>,
    pub(crate) nats: Option<String>,
    pub(crate) postgres: Option<String>,
    pub(crate) mongodb: Option<String>,
}

/// The pid of a local process named `comm` (e.g. `redis-server`), for its CPU time.
pub(crate) fn pid_named(comm: &str) -> Option<u32> {
    pids_named(comm).into_iter().next()
}

/// Every local process named `comm` (PostgreSQL runs one per session).
pub(crate) fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (name.trim() == comm).then_some(pid)
        })
        .collect()
}

async fn run_system(
    workload: Workload,
    params: &Params,
    system: System,
    args: &RunArgs,
    own: &Own,
    dir: &Path,
    key: &str,
) -> Result<Outcome> {
    let (backend_url, backend_pids) = if system.on_mongodb() {
        let m = own.mongo.as_ref().context("no MongoDB")?;
        (m.url.as_str(), Vec::from_iter(m.pid()))
    } else if system == System::WasioNats {
        (args.nats.as_str(), Vec::from_iter(pid_named("nats-server")))
    } else if system.on_postgres() {
        // PostgreSQL's sessions (the nodes' among them) are found once the nodes are up.
        (args.postgres.as_str(), Vec::new())
    } else if system == System::WasioRedisCluster {
        let c = own.cluster.as_ref().context("no Redis Cluster")?;
        (c.url.as_str(), c.pids.clone())
    } else {
        // A local redis-server, not one of the Redis Cluster's.
        let cluster = own.cluster.as_ref().map_or(&[][..], |c| &c.pids[..]);
        let pid = pids_named("redis-server")
            .into_iter()
            .find(|p| !cluster.contains(p));
        (args.redis.as_str(), Vec::from_iter(pid))
    };
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    let mut admins = Vec::new();
    for i in 0..system.nodes(args.nodes) {
        let port = free_port()?;
        // wasio nodes get an admin listener, for `/metrics` (guest time).
        let admin = if system.is_wasio() {
            Some(free_port()?)
        } else {
            None
        };
        let log = dir.join(format!("{system:?}-{i}.log").to_lowercase());
        let child = spawn(system, args, backend_url, dir, key, port, admin, i, &log)
            .with_context(|| format!("starting {} node {i}", system.name()))?;
        nodes.push(Node { child, port, log });
        urls.push(format!("ws://127.0.0.1:{port}"));
        admins.extend(admin.map(|a| format!("127.0.0.1:{a}")));
    }
    let result = async {
        for node in &mut nodes {
            node.wait_ready(Duration::from_secs(60)).await?;
        }
        let plan = Plan {
            nodes: urls,
            clients: params.clients,
            senders: params.senders,
            window: params.window,
            rate: params.rate,
            payload: args.payload,
            warmup: Duration::from_secs(args.warmup),
            measure: Duration::from_secs(args.seconds),
            room_size: params.room_size,
            node_pids: nodes.len(),
            pids: nodes
                .iter()
                .filter_map(|n| n.child.id())
                .chain(backend_pids)
                .chain(if system.on_postgres() {
                    pids_named("postgres")
                } else {
                    Vec::new()
                })
                .collect(),
            admins,
        };
        match workload {
            Workload::Fanout | Workload::Rooms | Workload::SmallRooms => loadgen::run(&plan).await,
            Workload::Acks => acks::run(&plan).await,
            Workload::Idle => idle::run(&plan).await,
        }
    }
    .await;
    stop(&mut nodes, result.is_err()).await;
    result
}

pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) log: PathBuf,
}

impl Node {
    pub(crate) async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        self.wait_listening(self.port, limit).await
    }

    /// Wait until the node listens on `port` (one of its listeners), or fail if it exits.
    pub(crate) async fn wait_listening(&mut self, port: u16, limit: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("node exited with {status} (log {})", self.log.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if t.elapsed() > limit {
                bail!("node on port {port} not listening after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Print the last lines of the node's log (after a failed run).
    pub(crate) fn print_log_tail(&self, lines: usize) {
        let tail = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<_> = tail.lines().rev().take(lines).collect();
        eprintln!("  --- {} (last lines)", self.log.display());
        for l in tail.iter().rev() {
            eprintln!("  {l}");
        }
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    system: System,
    args: &RunArgs,
    backend_url: &str,
    dir: &Path,
    key: &str,
    port: u16,
    admin: Option<u16>,
    index: usize,
    log: &Path,
) -> Result<Child> {
    let mut cmd = match system {
        System::Wasio
        | System::WasioSharded
        | System::WasioRedisCluster
        | System::WasioMongo
        | System::WasioLocal
        | System::WasioNats
        | System::WasioPostgres => {
            if !args.wasio_bin.exists() {
                bail!(
                    "{} not found: `cargo build --release -p wasio` first, or --wasio-bin",
                    args.wasio_bin.display()
                );
            }
            let config = dir.join(format!("wasio-{index}.toml"));
            let mut config_text = match system {
                System::WasioMongo => wasio_mongo_config(port, backend_url, key),
                System::WasioLocal => wasio_local_config(port),
                System::WasioNats => {
                    wasio_config(port, "builtin:redis", ("nats", backend_url), key)
                }
                System::WasioPostgres => wasio_postgres_config(port, backend_url, key),
                System::WasioSharded | System::WasioRedisCluster => sharded(wasio_config(
                    port,
                    "builtin:redis",
                    ("redis", backend_url),
                    key,
                )),
                _ => wasio_config(port, "builtin:redis", ("redis", backend_url), key),
            };
            if let Some(admin) = admin {
                // `/metrics` needs no token, but the admin API is off without one.
                let _ = write!(
                    config_text,
                    "\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"bench-{key}\"\n"
                );
            }
            std::fs::write(&config, config_text)?;
            let mut c = Command::new(&args.wasio_bin);
            c.arg("serve").arg("--config").arg(&config);
            c.env("RUST_LOG", "warn");
            c
        }
        System::Native | System::NativeNodelay => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("native-node")
                .args(["--port", &port.to_string()])
                .args(["--redis", backend_url])
                .args(["--key", key]);
            if system == System::NativeNodelay {
                c.arg("--nodelay");
            }
            c
        }
        System::Node | System::NodeMongo | System::NodePostgres => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/server.js");
            let mut c = Command::new(&args.node_bin);
            c.arg(script).args(["--port", &port.to_string()]);
            if system == System::NodeMongo {
                c.args(["--mongodb", backend_url]);
            } else if system == System::NodePostgres {
                c.args(["--postgres", backend_url]);
            } else {
                c.args(["--redis", backend_url]);
            }
            c.args(["--key", key]);
            c
        }
    };
    let out = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

/// The bench measures delivery at saturation, which one publisher socket may drive past
/// the default 100 publishes/s: no per-socket rate limit (native and Node.js have none).
const UNLIMITED: &str = "\n[server.limits]\npublishes_per_second = 0\n";

/// The config of a wasio node on a pub/sub backend, `(connector, url)`: adapter `wasm`
/// (`builtin:redis` or a path to a Redis guest), channel prefix `key`.
pub(crate) fn wasio_config(
    port: u16,
    wasm: &str,
    (connector, url): (&str, &str),
    key: &str,
) -> String {
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
namespaces = ["/"]

[adapter]
wasm = "{wasm}"
datasource = "cache"

[adapter.options]
key = "{key}"

[datasources.cache]
connector = "{connector}"
url = "{url}"
{UNLIMITED}"#
    )
}

/// `config` (a [`wasio_config`] of the Redis guest) in sharded mode.
fn sharded(config: String) -> String {
    config.replacen(
        "[adapter.options]\n",
        "[adapter.options]\nmode = \"sharded\"\n",
        1,
    )
}

/// The config of a single wasio node on the built-in `local` guest (no datasource).
fn wasio_local_config(port: u16) -> String {
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
namespaces = ["/"]

[adapter]
wasm = "builtin:local"
{UNLIMITED}"#
    )
}

/// The config of a wasio node on MongoDB: `key` is the collection (capped, 1e6 bytes, made
/// by the first node), read through a change stream (the guest's default mode).
fn wasio_mongo_config(port: u16, mongodb: &str, key: &str) -> String {
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
namespaces = ["/"]

[adapter]
wasm = "builtin:mongodb"
datasource = "db"

[adapter.options]
collection = "{key}"

[datasources.db]
connector = "mongodb"
url = "{mongodb}"
{UNLIMITED}"#
    )
}

/// The config of a wasio node on PostgreSQL: `key` is the channel prefix (the attachments
/// table is the Node.js adapter's default, made when missing).
fn wasio_postgres_config(port: u16, postgres: &str, key: &str) -> String {
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
namespaces = ["/"]

[adapter]
wasm = "builtin:postgres"
datasource = "pg"

[adapter.options]
channelPrefix = "{key}"

[datasources.pg]
connector = "postgres"
url = "{postgres}"
{UNLIMITED}"#
    )
}

pub(crate) fn ms(us: Option<u32>) -> String {
    us.map_or("-".into(), |us| format!("{:.2} ms", f64::from(us) / 1000.0))
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

/// The machine's load averages, from /proc/loadavg (other work on a shared machine).
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB", kb / 1024.0 / 1024.0)
        });
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("nproc {nproc}, {model}{mem_gib}, commit {git}, {date}")
}

/// Kills `nodes`; after a failed run, shows the end of each node's log.
pub(crate) async fn stop(nodes: &mut [Node], failed: bool) {
    for node in nodes.iter_mut() {
        let _ = node.child.kill().await;
    }
    if failed {
        for node in nodes.iter() {
            node.print_log_tail(15);
        }
    }
}
