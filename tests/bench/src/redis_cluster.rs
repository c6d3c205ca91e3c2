//! The Redis Cluster of the `wasio-redis-cluster` system: `--redis-cluster URL`, or else
//! three masters the bench starts for the run on free loopback ports (`redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`, no replicas, as
//! `tests/rust/common/redis_cluster.rs` does) and stops at its end.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Masters of a cluster of our own.
const MASTERS: usize = 3;

pub struct RedisCluster {
    /// The `redis-cluster://` URL the nodes connect to (one master as the seed).
    pub url: String,
    /// What it is, for the table.
    pub label: String,
    /// Its redis-server processes, for their CPU time (none for `--redis-cluster`).
    pub pids: Vec<u32>,
    children: Vec<Child>,
    dir: Option<PathBuf>,
}

impl RedisCluster {
    /// `url` if given, else three masters of our own, their files under `dir`.
    pub fn start(url: Option<&str>, dir: &Path) -> Result<RedisCluster> {
        if let Some(url) = url {
            return Ok(RedisCluster {
                url: url.to_string(),
                label: format!("{url} (--redis-cluster; its CPU not counted)"),
                pids: Vec::new(),
                children: Vec::new(),
                dir: None,
            });
        }
        let t = Instant::now();
        let dir = dir.join("redis-cluster");
        std::fs::create_dir_all(&dir)?;
        let mut cluster = RedisCluster {
            url: String::new(),
            label: String::new(),
            pids: Vec::new(),
            children: Vec::new(),
            dir: Some(dir.clone()),
        };
        let mut ports = Vec::new();
        for _ in 0..MASTERS {
            let port = crate::orchestrate::free_port()?;
            let log = std::fs::File::create(dir.join(format!("redis-{port}.log")))?;
            let child = Command::new("redis-server")
                .current_dir(&dir)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(format!("nodes-{port}.conf"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting redis-server (is it installed?)")?;
            cluster.pids.push(child.id());
            cluster.children.push(child);
            wait_listening(port)?;
            ports.push(port);
        }
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("running redis-cli --cluster create")?;
        if !made.success() {
            bail!("redis-cli --cluster create failed: {made}");
        }
        for &port in &ports {
            wait_cluster_ok(port)?;
        }
        cluster.url = format!("redis-cluster://127.0.0.1:{}", ports[0]);
        cluster.label = format!(
            "{} ({MASTERS} masters on ports {ports:?}, no replicas; started by the bench)",
            cluster.url
        );
        eprintln!(
            "== Redis Cluster: {MASTERS} masters (pids {:?}) at {}, up in {:.1} s",
            cluster.pids,
            cluster.url,
            t.elapsed().as_secs_f64()
        );
        Ok(cluster)
    }
}

impl Drop for RedisCluster {
    /// Stops a cluster of our own and removes its files.
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn wait_listening(port: u16) -> Result<()> {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("redis-server not listening on port {port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits until the master on `port` says the cluster is up (every slot served).
fn wait_cluster_ok(port: u16) -> Result<()> {
    let t = Instant::now();
    loop {
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "info"])
            .stdin(Stdio::null())
            .output()?;
        if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(10) {
            bail!("the Redis Cluster is not up on port {port} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}
