//! A PostgreSQL server of the test's own (`initdb` + `pg_ctl` on a free port, in a
//! temporary directory), for the tests that stop and restart it; the machine's shared
//! PostgreSQL at 5432 is never stopped. As root, the server runs as `postgres`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::links::free_port;

pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The directory of Debian's PostgreSQL programs (the newest installed version).
fn bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's PostgreSQL under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a PostgreSQL program, as `postgres` when we are root (the server refuses root).
fn run(program: &str, args: &[&str]) {
    let path = bin().join(program);
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&path)
            .args(args)
            .output()
    } else {
        Command::new(&path).args(args).output()
    }
    .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgServer {
    /// A new cluster (trust auth, user `postgres`), started and accepting connections.
    pub fn start() -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("wasio-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        run(
            "initdb",
            &["-D", s(&data), "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let server = PgServer {
            port: free_port(),
            dir,
        };
        server.up();
        server
    }

    /// `postgres://…` of this server.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            s(self.dir.path())
        );
        let log = self.dir.path().join("log");
        run(
            "pg_ctl",
            &[
                "-D",
                s(&self.data()),
                "-o",
                &options,
                "-l",
                s(&log),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: clients are cut, as in a crash).
    pub fn down(&self) {
        run(
            "pg_ctl",
            &["-D", s(&self.data()), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let path = bin().join("pg_ctl");
        let data = self.data();
        let args = ["-D", s(&data), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()
        } else {
            Command::new(&path).args(args).output()
        };
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
