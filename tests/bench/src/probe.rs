//! What the bench reads of the server processes: CPU time and resident memory from
//! /proc, and the time spent in guest calls from a wasio node's `GET /metrics`.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `USER_HZ`, the unit of /proc/PID/stat's CPU times (100 on Linux for x86 and arm).
const CLOCK_TICKS: f64 = 100.0;

/// The histogram of time spent in guest calls that wasio exports (seconds).
const GUEST_SUM: &str = "wasio_guest_call_duration_seconds_sum";

/// User + system CPU time of a process so far, in seconds (0 if it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, and ends with ')').
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime (fields 14 and 15 of the line) are 11 and 12 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11) + field(12)) as f64 / CLOCK_TICKS
}

/// Resident set size of a process, KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The summed RSS of `pids`, KiB.
pub fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| rss_kib(p)).sum()
}

/// Seconds spent in guest calls so far, summed over the wasio nodes whose admin
/// listeners are `admins`; `None` if any node has no such metric (a wasio built before
/// `/metrics`) or cannot be reached.
pub async fn guest_seconds(admins: &[String]) -> Option<f64> {
    if admins.is_empty() {
        return None;
    }
    let mut total = 0.0;
    for admin in admins {
        let body = get(admin, "/metrics").await?;
        // Every series of the histogram's `_sum` (labelled by call, perhaps) adds up.
        let sums: Vec<f64> = body
            .lines()
            .filter(|l| l.starts_with(GUEST_SUM))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        if sums.is_empty() {
            return None;
        }
        total += sums.iter().sum::<f64>();
    }
    Some(total)
}

/// The body of a `GET` answered 200, over one HTTP/1.0 connection (no chunking).
async fn get(addr: &str, path: &str) -> Option<String> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head.split_whitespace().nth(1) == Some("200");
        ok.then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// CPU and guest time of a measured window: sampled at its start, read at its end.
pub struct Window {
    pids: Vec<u32>,
    admins: Vec<String>,
    cpu: Vec<f64>,
    guest: Option<f64>,
}

impl Window {
    /// Starts a window over `pids` (their CPU) and the wasio nodes at `admins`.
    pub async fn start(pids: &[u32], admins: &[String]) -> Window {
        // The guest time first: its HTTP round trip then falls outside the CPU window
        // rather than inside it.
        let guest = guest_seconds(admins).await;
        Window {
            pids: pids.to_vec(),
            admins: admins.to_vec(),
            cpu: pids.iter().map(|&p| cpu_seconds(p)).collect(),
            guest,
        }
    }

    /// CPU seconds of each pid over the window, and guest seconds (all nodes together).
    pub async fn end(self) -> (Vec<f64>, Option<f64>) {
        let cpu = self
            .pids
            .iter()
            .zip(&self.cpu)
            .map(|(&p, before)| (cpu_seconds(p) - before).max(0.0))
            .collect();
        let guest = match (self.guest, guest_seconds(&self.admins).await) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        (cpu, guest)
    }
}
