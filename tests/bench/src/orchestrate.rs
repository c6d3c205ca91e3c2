//! Runs a workload against each system in turn: start its nodes on free ports and a fresh
//! Redis key prefix, run the load generator, stop the nodes; then print one table.

use crate::loadgen::{self, Outcome, Plan};
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
            let outcome = rt.block_on(run_system(workload, system, &args, &dir, &key));
            match &outcome {
                Ok(o) => eprintln!(
                    "  {:.0} deliveries/s, {} publishes in window, p50 {}, p99 {}, lost {}, ack errors {}, stalls {}, CPU s {:.1?}",
                    o.per_second(),
                    o.publishes,
                    ms(o.quantile_us(0.5)),
                    ms(o.quantile_us(0.99)),
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
    println!("{}", report(workload, &args, &rows));
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

/// The pid of a local redis-server, for its CPU time.
fn redis_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "redis-server").then_some(pid)
    })
}

async fn run_system(
    workload: Workload,
    system: System,
    args: &RunArgs,
    dir: &Path,
    key: &str,
) -> Result<Outcome> {
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    for i in 0..args.nodes {
        let port = free_port()?;
        let log = dir.join(format!("{system:?}-{i}.log").to_lowercase());
        let child = spawn(system, args, dir, key, port, i, &log)
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
                .chain(redis_pid())
                .collect(),
        };
        match workload {
            Workload::Fanout => loadgen::run(&plan).await,
        }
    }
    .await;
    for node in &mut nodes {
        let _ = node.child.kill().await;
    }
    if result.is_err() {
        for node in &nodes {
            let tail = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<_> = tail.lines().rev().take(15).collect();
            eprintln!("  --- {} (last lines)", node.log.display());
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
    result
}

struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("node exited with {status} (log {})", self.log.display());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if t.elapsed() > limit {
                bail!("node on port {} not listening after {limit:?}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(
    system: System,
    args: &RunArgs,
    dir: &Path,
    key: &str,
    port: u16,
    index: usize,
    log: &Path,
) -> Result<Child> {
    let mut cmd = match system {
        System::Wasio => {
            if !args.wasio_bin.exists() {
                bail!(
                    "{} not found: `cargo build --release -p wasio` first, or --wasio-bin",
                    args.wasio_bin.display()
                );
            }
            let config = dir.join(format!("wasio-{index}.toml"));
            std::fs::write(&config, wasio_config(port, &args.redis, key))?;
            let mut c = Command::new(&args.wasio_bin);
            c.arg("serve").arg("--config").arg(&config);
            c.env("RUST_LOG", "warn");
            c
        }
        System::Native | System::NativeNodelay => {
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("native-node")
                .args(["--port", &port.to_string()])
                .args(["--redis", &args.redis])
                .args(["--key", key]);
            if system == System::NativeNodelay {
                c.arg("--nodelay");
            }
            c
        }
        System::Node => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("node/server.js");
            let mut c = Command::new(&args.node_bin);
            c.arg(script)
                .args(["--port", &port.to_string()])
                .args(["--redis", &args.redis])
                .args(["--key", key]);
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

fn wasio_config(port: u16, redis: &str, key: &str) -> String {
    format!(
        r#"[server]
host = "127.0.0.1"
port = {port}
namespaces = ["/"]

[adapter]
wasm = "builtin:redis"
datasource = "cache"

[adapter.options]
key = "{key}"

[datasources.cache]
connector = "redis"
url = "{redis}"
"#
    )
}

fn ms(us: Option<u32>) -> String {
    us.map_or("-".into(), |us| format!("{:.2} ms", f64::from(us) / 1000.0))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

fn report(workload: Workload, args: &RunArgs, rows: &[Row]) -> String {
    let native = rows.iter().find_map(|r| match (r.system, &r.median) {
        (System::Native, Ok(o)) => Some(o),
        _ => None,
    });
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
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| system | deliveries/s | range | p50 | p99 | max | deliveries vs native | p99 vs native | CPU µs/delivery (nodes + redis) | CPU cores: nodes / redis / load gen | lost |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let o = match &row.median {
            Ok(o) => o,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | failed: {e} | | | | | | | | | |",
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
        let cpu = &o.cpu_seconds;
        let nodes: f64 = cpu.iter().take(args.nodes).sum();
        let redis: f64 = cpu[args.nodes..cpu.len() - 1].iter().sum();
        let loadgen = cpu.last().copied().unwrap_or(0.0);
        let per_delivery = if o.deliveries > 0 {
            format!("{:.2}", (nodes + redis) * 1e6 / o.deliveries as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} |",
            row.system.name(),
            o.per_second(),
            range,
            ms(o.quantile_us(0.5)),
            ms(p99),
            ms(o.latencies_us.last().copied()),
            vs,
            p99_vs,
            per_delivery,
            nodes / secs,
            redis / secs,
            loadgen / secs,
            o.lost
        );
    }
    out
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn machine() -> String {
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
