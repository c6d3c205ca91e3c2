//! The MongoDB of the MongoDB systems: `--mongodb URL`, or else a SecantusDB the bench
//! starts for the run and stops at its end.
//!
//! SecantusDB (<https://pypi.org/project/SecantusDB/>) is a MongoDB-wire-compatible server
//! written in Python on WiredTiger, which presents itself as the primary of a one-node
//! replica set (so change streams work). It is GPL and only ever run here as a separate
//! process. It is the backend the tests run on (`tests/js/lib/mongo-backend.js`), not a
//! production server: expect it, not the nodes, to bound the MongoDB rows.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The SecantusDB version installed when `tests/py/.venv` has none (as `tests/run` does,
/// from `tests/js/requirements-mongo.txt`).
const SECANTUS_PIN: &str = "SecantusDB==0.7.0b3";
/// The database of a SecantusDB of our own.
const DATABASE: &str = "wasio_bench";

pub struct Mongo {
    /// The URL the nodes connect to (the database is its path).
    pub url: String,
    /// What it is, for the table.
    pub label: String,
    own: Option<Secantus>,
}

struct Secantus {
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Mongo {
    /// `url` if given, else a SecantusDB of our own on a free port, storing under `dir`.
    pub async fn start(url: Option<&str>, dir: &Path) -> Result<Mongo> {
        if let Some(url) = url {
            return Ok(Mongo {
                url: url.to_string(),
                label: format!("{url} (--mongodb)"),
                own: None,
            });
        }
        let bin = secantusd().await?;
        let version = secantus_version(&bin).await;
        let port = crate::orchestrate::free_port()?;
        let storage = dir.join("secantus-data");
        std::fs::create_dir_all(&storage)?;
        let log = dir.join("secantusd.log");
        let out = std::fs::File::create(&log)?;
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(&storage)
            .args(["--log-level", "WARNING"])
            // Not the repository's directory: it would read a ./secantusd.toml there.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("secantusd-py has no pid")?;
        let t = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "secantusd-py exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill().await;
                bail!(
                    "secantusd-py not listening on port {port} after 30 s (log {})",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("mongodb://127.0.0.1:{port}/{DATABASE}?directConnection=true");
        eprintln!(
            "== MongoDB: SecantusDB {version} (pid {pid}) at {url}, started in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(Mongo {
            label: format!(
                "SecantusDB {version} (Python, MongoDB-wire-compatible test server; started by the bench) at {url}"
            ),
            url,
            own: Some(Secantus { child, pid, log }),
        })
    }

    /// The server's pid, for its CPU time: ours, or a local `mongod`.
    pub fn pid(&self) -> Option<u32> {
        match &self.own {
            Some(s) => Some(s.pid),
            None => crate::orchestrate::pid_named("mongod"),
        }
    }

    /// Stops a SecantusDB of our own (SIGTERM, SIGKILL after 10 s).
    pub async fn stop(self) {
        let Some(mut s) = self.own else { return };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &s.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), s.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "secantusd-py did not stop after SIGTERM, killing it (log {})",
                s.log.display()
            );
            let _ = s.child.kill().await;
        }
    }
}

/// `$WASIO_SECANTUSD`, or `tests/py/.venv/bin/secantusd-py`, installed there if missing.
async fn secantusd() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WASIO_SECANTUSD") {
        let bin = PathBuf::from(bin);
        if !bin.exists() {
            bail!("WASIO_SECANTUSD={} does not exist", bin.display());
        }
        return Ok(bin);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../py/.venv");
    let bin = venv.join("bin/secantusd-py");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "== {} missing: installing {SECANTUS_PIN} into {} (or pass --mongodb URL, or set WASIO_SECANTUSD)",
        bin.display(),
        venv.display()
    );
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv)).await?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SECANTUS_PIN,
    ]))
    .await?;
    if !bin.exists() {
        bail!(
            "{} still missing after installing {SECANTUS_PIN}",
            bin.display()
        );
    }
    Ok(bin)
}

async fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The installed SecantusDB version, from the Python next to `secantusd-py`.
async fn secantus_version(bin: &Path) -> String {
    let python = bin.with_file_name("python");
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('SecantusDB'))",
        ])
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "(version unknown)".into(),
    }
}
