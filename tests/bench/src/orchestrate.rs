//! Runs a workload against each system in turn: start its nodes on free ports and a fresh
//! Redis key prefix (MongoDB: collection), run the load generator, stop the nodes; then
//! print one table. A MongoDB system in `--systems` without `--mongodb` starts a
//! SecantusDB for the whole run first ([`crate::mongo`]).

use crate::loadgen::{self, Outcome, Plan};
use crate::mongo::Mongo;
use crate::{RunArgs, System, Workload};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::process::{Child, Command};

pub fn run(workload: Workload, args: RunArgs) -> Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wasio-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let load_before = load_average();
    let mongo = if args.systems.iter().any(|s| s.on_mongodb()) {
        match rt.block_on(Mongo::start(args.mongodb.as_deref(), &dir)) {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.context("starting the MongoDB of the MongoDB systems"));
            }
        }
    } else {
        None
    };
    let mut runs: Vec<Vec<Result<Outcome>>> = args.systems.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds.max(1) {
        for (s, &system) in args.systems.iter().enumerate() {
            eprintln!(
                "== {} ({} nodes), round {}/{}",
                system.name(),
                args.nodes,
                round + 1,
                args.rounds.max(1)
            );
            let key =
                format!("bench-{stamp}-{}-{system:?}-{round}", std::process::id()).to_lowercase();
            let outcome = rt.block_on(run_system(
                workload,
                system,
                &args,
                mongo.as_ref(),
                &dir,
                &key,
            ));
            match &outcome {
                Ok(o) => eprintln!(
                    "  {:.0} deliveries/s, {} publishes in window, p50 {}, p99 {} (cross-node {} / {}), lost {}, ack errors {}, stalls {}, CPU s {:.1?}",
                    o.per_second(),
                    o.publishes,
                    ms(o.quantile_us(0.5)),
                    ms(o.quantile_us(0.99)),
                    ms(o.cross_quantile_us(0.5)),
                    ms(o.cross_quantile_us(0.99)),
                    o.lost,
                    o.ack_errors,
                    o.stalls,
                    o.cpu_seconds
                ),
                Err(e) => eprintln!("  failed: {e:#}"),
            }
            runs[s].push(outcome);
        }
    }
    let failed = runs.iter().flatten().any(|o| o.is_err());
    let rows: Vec<Row> = args
        .systems
        .iter()
        .zip(runs)
        .map(|(&system, outcomes)| Row::of(system, outcomes))
        .collect();
    let load = format!("{load_before} at the start, {} at the end", load_average());
    let backends = Backends {
        redis: args
            .systems
            .iter()
            .any(|s| !s.on_mongodb())
            .then(|| format!("Redis at {}", args.redis)),
        mongodb: mongo.as_ref().map(|m| m.label.clone()),
    };
    if let Some(m) = mongo {
        rt.block_on(m.stop());
    }
    println!("{}", report(workload, &args, &load, &backends, &rows));
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        bail!("some runs failed (see above)");
    }
    Ok(())
}

/// A system's line in the table: its median run, and the range over the rounds.
struct Row {
    system: System,
    median: Result<Outcome>,
    range: Option<(f64, f64)>,
}

impl Row {
    fn of(system: System, outcomes: Vec<Result<Outcome>>) -> Row {
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
                median: Err(e),
                range: None,
            };
        }
        ok.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
        let range = (ok.len() > 1).then(|| (ok[0].per_second(), ok[ok.len() - 1].per_second()));
        let median = ok.swap_remove(ok.len() / 2);
        Row {
            system,
            median: Ok(median),
            range,
        }
    }
}

/// What the systems ran on, for the table's header.
struct Backends {
    redis: Option<String>,
    mongodb: Option<String>,
}

/// The pid of a local process named `comm` (e.g. `redis-server`), for its CPU time.
pub(crate) fn pid_named(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let name = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (name.trim() == comm).then_some(pid)
    })
}

async fn run_system(
    workload: Workload,
    system: System,
    args: &RunArgs,
    mongo: Option<&Mongo>,
    dir: &Path,
    key: &str,
) -> Result<Outcome> {
    let (backend_url, backend_pid) = if system.on_mongodb() {
        let m = mongo.context("no MongoDB")?;
        (m.url.as_str(), m.pid())
    } else {
        (args.redis.as_str(), pid_named("redis-server"))
    };
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    for i in 0..args.nodes {
        let port = free_port()?;
        let log = dir.join(format!("{system:?}-{i}.log").to_lowercase());
        let child = spawn(system, args, backend_url, dir, key, port, i, &log)
            .with_context(|| format!("starting {} node {i}", system.name()))?;
        nodes.push(Node { child, port, log });
        urls.push(format!("ws://127.0.0.1:{port}"));
    }
    let result = async {
        for node in &mut nodes {
            node.wait_ready(Duration::from_secs(60)).await?;
        }
        let plan = Plan {
            nodes: urls,
            clients: args.clients,
            senders: args.senders,
            window: args.window,
            rate: args.rate,
            payload: args.payload,
            warmup: Duration::from_secs(args.warmup),
            measure: Duration::from_secs(args.seconds),
            pids: nodes
                .iter()
                .filter_map(|n| n.child.id())
                .chain(backend_pid)
                .collect(),
        };
        match workload {
            Workload::Fanout => loadgen::run(&plan).await,
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
    index: usize,
    log: &Path,
) -> Result<Child> {
    let mut cmd = match system {
        System::Wasio | System::WasioMongo => {
            if !args.wasio_bin.exists() {
                bail!(
                    "{} not found: `cargo build --release -p wasio` first, or --wasio-bin",
                    args.wasio_bin.display()
                );
            }
            let config = dir.join(format!("wasio-{index}.toml"));
            let config_text = if system == System::WasioMongo {
                wasio_mongo_config(port, backend_url, key)
            } else {
                wasio_config(port, "builtin:redis", backend_url, key)
            };
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
        System::Node | System::NodeMongo => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/server.js");
            let mut c = Command::new(&args.node_bin);
            c.arg(script).args(["--port", &port.to_string()]);
            if system == System::NodeMongo {
                c.args(["--mongodb", backend_url]);
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

/// The config of a wasio node on Redis: adapter `wasm` (`builtin:redis` or a path to a
/// Redis guest), channel prefix `key`.
pub(crate) fn wasio_config(port: u16, wasm: &str, redis: &str, key: &str) -> String {
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
connector = "redis"
url = "{redis}"
"#
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
"#
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

/// CPU over a run's measured window, seconds: the nodes, the backend (Redis or MongoDB,
/// when found), the load generator.
struct Cpu {
    nodes: f64,
    backend: f64,
    loadgen: f64,
}

impl Cpu {
    fn of(o: &Outcome, nodes: usize) -> Cpu {
        let cpu = &o.cpu_seconds;
        Cpu {
            nodes: cpu.iter().take(nodes).sum(),
            backend: cpu[nodes.min(cpu.len())..cpu.len().saturating_sub(1)]
                .iter()
                .sum(),
            loadgen: cpu.last().copied().unwrap_or(0.0),
        }
    }
    /// µs of nodes + backend CPU per delivery, and of the nodes alone.
    fn per_delivery(&self, o: &Outcome) -> Option<(f64, f64)> {
        (o.deliveries > 0).then(|| {
            let d = o.deliveries as f64;
            ((self.nodes + self.backend) * 1e6 / d, self.nodes * 1e6 / d)
        })
    }
}

/// Pairs of systems compared in the ratio table, when both ran: (system, against).
const PAIRS: &[(System, System)] = &[
    (System::WasioMongo, System::NodeMongo),
    (System::WasioMongo, System::Wasio),
    (System::NodeMongo, System::Node),
    (System::Wasio, System::Node),
];

fn report(
    workload: Workload,
    args: &RunArgs,
    load: &str,
    backends: &Backends,
    rows: &[Row],
) -> String {
    let median = |system: System| {
        rows.iter().find_map(|r| match &r.median {
            Ok(o) if r.system == system => Some(o),
            _ => None,
        })
    };
    let native = median(System::Native);
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "workload: {} | {} clients over {} nodes, {} sender(s), window {}, rate {}, {}-byte payload, warm-up {} s, measured {} s, {} round(s)",
        workload.name(),
        args.clients,
        args.nodes,
        args.senders,
        args.window,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "max".into()
        },
        args.payload,
        args.warmup,
        args.seconds,
        args.rounds.max(1)
    );
    let _ = writeln!(out, "command: {}", command_line());
    let _ = writeln!(out, "machine: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min): {load}");
    if let Some(redis) = &backends.redis {
        let _ = writeln!(out, "redis: {redis}");
    }
    if let Some(mongodb) = &backends.mongodb {
        let _ = writeln!(out, "mongodb: {mongodb}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| system | deliveries/s | range | p50 | p99 | max | cross-node p50 / p99 | deliveries vs native | p99 vs native | CPU µs/delivery: nodes + backend (nodes) | CPU cores: nodes / backend / load gen | lost |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let o = match &row.median {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | failed: {e} | | | | | | | | | | |",
                    row.system.name()
                );
                continue;
            }
        };
        let p99 = o.quantile_us(0.99);
        let (vs, p99_vs) = match native {
            Some(n) => (
                ratio(o.per_second(), n.per_second()),
                match (p99, n.quantile_us(0.99)) {
                    (Some(a), Some(b)) => ratio(f64::from(a), f64::from(b)),
                    _ => "-".into(),
                },
            ),
            None => ("-".into(), "-".into()),
        };
        let range = row
            .range
            .map_or("-".into(), |(lo, hi)| format!("{lo:.0}–{hi:.0}"));
        let secs = o.measure.as_secs_f64();
        let cpu = Cpu::of(o, args.nodes);
        let per_delivery = cpu
            .per_delivery(o)
            .map_or("-".into(), |(all, nodes)| format!("{all:.2} ({nodes:.2})"));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} |",
            row.system.name(),
            o.per_second(),
            range,
            ms(o.quantile_us(0.5)),
            ms(p99),
            ms(o.latencies_us.last().copied()),
            ms(o.cross_quantile_us(0.5)),
            ms(o.cross_quantile_us(0.99)),
            vs,
            p99_vs,
            per_delivery,
            cpu.nodes / secs,
            cpu.backend / secs,
            cpu.loadgen / secs,
            o.lost
        );
    }
    let pairs: Vec<_> = PAIRS
        .iter()
        .filter_map(|&(a, b)| Some((a, b, median(a)?, median(b)?)))
        .collect();
    if !pairs.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| ratio (median runs) | deliveries/s | p50 | p99 | cross-node p99 | CPU/delivery: nodes + backend | CPU/delivery: nodes |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (a, b, oa, ob) in pairs {
            let lat = |q: fn(&Outcome, f64) -> Option<u32>, at| match (q(oa, at), q(ob, at)) {
                (Some(x), Some(y)) => ratio(f64::from(x), f64::from(y)),
                _ => "-".into(),
            };
            let (ca, cb) = (
                Cpu::of(oa, args.nodes).per_delivery(oa),
                Cpu::of(ob, args.nodes).per_delivery(ob),
            );
            let (all, nodes) = match (ca, cb) {
                (Some(x), Some(y)) => (ratio(x.0, y.0), ratio(x.1, y.1)),
                _ => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "| {} / {} | {} | {} | {} | {} | {} | {} |",
                a.name(),
                b.name(),
                ratio(oa.per_second(), ob.per_second()),
                lat(Outcome::quantile_us, 0.5),
                lat(Outcome::quantile_us, 0.99),
                lat(Outcome::cross_quantile_us, 0.99),
                all,
                nodes
            );
        }
    }
    out
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
