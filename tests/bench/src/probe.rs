//! What the bench reads of the server processes: CPU time and resident memory from
//! /proc, and the time spent in guest calls and the messages to and from the backend
//! from a wasio node's `GET /metrics`.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `USER_HZ`, the unit of /proc/PID/stat's CPU times (100 on Linux for x86 and arm).
const CLOCK_TICKS: f64 = 100.0;

/// The histogram of time spent in guest calls that wasio exports (seconds).
const GUEST_SUM: &str = "wasio_guest_call_duration_seconds_sum";

/// The counter of messages between an adapter and its datasource, by `direction`.
const BACKEND_MESSAGES: &str = "wasio_backend_messages_total{";

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

/// The counters of a wasio node's `/metrics` the bench reads, summed over nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Seconds spent in guest calls (`None`: a node has no such metric, a wasio built
    /// before `/metrics`).
    pub guest_seconds: Option<f64>,
    /// Messages between the adapter and its datasource (`None`: a node has no such
    /// metric).
    pub backend_messages: Option<Messages>,
}

/// Backend messages (`wasio_backend_messages_total`): `direction="out"`, handed to the
/// datasource, and `"in"`, delivered from it to the guest.
#[derive(Clone, Copy, Debug, Default)]
pub struct Messages {
    pub sent: f64,
    pub received: f64,
}

/// The counters so far, summed over the wasio nodes whose admin listeners are `admins`;
/// `None` if there are none or one cannot be reached.
pub async fn counters(admins: &[String]) -> Option<Counters> {
    if admins.is_empty() {
        return None;
    }
    let mut guest = Some(0.0);
    let mut messages = Some(Messages::default());
    for admin in admins {
        let body = get(admin, "/metrics").await?;
        // Every series (labelled by call, or by adapter and direction) adds up.
        let values = |name: &str, label: &str| -> Vec<f64> {
            body.lines()
                .filter(|l| l.starts_with(name) && l.contains(label))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect()
        };
        let sums = values(GUEST_SUM, "");
        guest = guest
            .filter(|_| !sums.is_empty())
            .map(|g| g + sums.iter().sum::<f64>());
        let (sent, received) = (
            values(BACKEND_MESSAGES, "direction=\"out\""),
            values(BACKEND_MESSAGES, "direction=\"in\""),
        );
        messages = messages.filter(|_| !sent.is_empty()).map(|m| Messages {
            sent: m.sent + sent.iter().sum::<f64>(),
            received: m.received + received.iter().sum::<f64>(),
        });
    }
    Some(Counters {
        guest_seconds: guest,
        backend_messages: messages,
    })
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

/// CPU time and the `/metrics` counters of a measured window: sampled at its start,
/// read at its end.
pub struct Window {
    pids: Vec<u32>,
    admins: Vec<String>,
    cpu: Vec<f64>,
    counters: Option<Counters>,
}

/// What a window measured.
pub struct Spent {
    /// CPU seconds of each pid.
    pub cpu_seconds: Vec<f64>,
    /// Seconds in guest calls, all nodes together.
    pub guest_seconds: Option<f64>,
    /// Backend messages, all nodes together.
    pub backend_messages: Option<Messages>,
}

impl Window {
    /// Starts a window over `pids` (their CPU) and the wasio nodes at `admins`.
    pub async fn start(pids: &[u32], admins: &[String]) -> Window {
        // The counters first: their HTTP round trips then fall outside the CPU window
        // rather than inside it.
        let counters = counters(admins).await;
        Window {
            pids: pids.to_vec(),
            admins: admins.to_vec(),
            cpu: pids.iter().map(|&p| cpu_seconds(p)).collect(),
            counters,
        }
    }

    /// What the window measured: CPU per pid, and the counters' growth over it.
    pub async fn end(self) -> Spent {
        let cpu_seconds = self
            .pids
            .iter()
            .zip(&self.cpu)
            .map(|(&p, before)| (cpu_seconds(p) - before).max(0.0))
            .collect();
        let (a, b) = match (self.counters, counters(&self.admins).await) {
            (Some(a), Some(b)) => (a, b),
            _ => Default::default(),
        };
        let growth = |a: f64, b: f64| (b - a).max(0.0);
        Spent {
            cpu_seconds,
            guest_seconds: a
                .guest_seconds
                .zip(b.guest_seconds)
                .map(|(a, b)| growth(a, b)),
            backend_messages: a
                .backend_messages
                .zip(b.backend_messages)
                .map(|(a, b)| Messages {
                    sent: growth(a.sent, b.sent),
                    received: growth(a.received, b.received),
                }),
        }
    }
}
