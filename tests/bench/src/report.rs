//! The printed report: one table over every workload and system run, ratios against
//! native socketioxide and Node.js, and the aims checked against them.

use crate::loadgen::Outcome;
use crate::orchestrate::{Backends, Row, command_line, machine, ms, ratio};
use crate::{Params, RunArgs, System, Workload};
use std::fmt::Write as _;

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
    /// The nodes' µs per delivery, and the backend's when counted: `1.23 (+ 0.45)`.
    fn per_delivery_text(&self, o: &Outcome) -> String {
        self.per_delivery(o).map_or_else(
            || "-".into(),
            |(all, nodes)| {
                if self.backend > 0.0 {
                    format!("{nodes:.2} (+ {:.2})", all - nodes)
                } else {
                    format!("{nodes:.2}")
                }
            },
        )
    }
    /// The share of the nodes' CPU spent in guest calls (wasio only).
    fn guest_share(&self, system: System, o: &Outcome) -> String {
        if !system.is_wasio() {
            return "-".into();
        }
        match o.guest_seconds {
            Some(g) if self.nodes > 0.0 => format!("{:.1}%", g / self.nodes * 100.0),
            _ => "n/a".into(),
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

/// The native row the ratios are against: with TCP_NODELAY when it ran (`wasio serve`
/// sets it, so that is the like-for-like row), else plain native.
fn native_of(rows: &[Row]) -> Option<(System, &Outcome)> {
    [System::NativeNodelay, System::Native]
        .into_iter()
        .find_map(|s| Some((s, median(rows, s)?)))
}

fn median(rows: &[Row], system: System) -> Option<&Outcome> {
    rows.iter().find_map(|r| match &r.median {
        Ok(o) if r.system == system => Some(o),
        _ => None,
    })
}

/// KiB of node RSS per connection: once connected, and at the end of the window.
fn kib_per_conn(o: &Outcome) -> (f64, f64) {
    let [before, connected, end] = o.rss_kib.map(|k| k as f64);
    let n = o.clients.max(1) as f64;
    ((connected - before) / n, (end - before) / n)
}

/// Pairs of systems compared in the ratio table, when both ran: (system, against).
const PAIRS: &[(System, System)] = &[
    (System::WasioMongo, System::NodeMongo),
    (System::WasioMongo, System::Wasio),
    (System::NodeMongo, System::Node),
    (System::WasioPostgres, System::NodePostgres),
    (System::WasioPostgres, System::Wasio),
    (System::NodePostgres, System::Node),
];

pub(crate) fn report(
    tables: &[(Workload, Params, Vec<Row>)],
    args: &RunArgs,
    load: &str,
    backends: &Backends,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} node(s) per system (wasio + local guest: 1), {}-byte payload, warm-up {} s, measured {} s, {} round(s) (median round by deliveries/s)",
        args.nodes,
        args.payload,
        args.warmup,
        args.seconds,
        args.rounds.max(1)
    );
    header(&mut out, tables, load, backends);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| workload | system | deliveries/s (acks: acks/s) | range | p50 | p99 | max | cross-node p99 | vs native | p99 vs native | vs Node.js | CPU µs/delivery: nodes (+ backend) | CPU cores: nodes / backend / load gen | CPU µs/s per conn | KiB/conn: connected / end | guest share of node CPU | lost |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (w, _, rows) in tables {
        let native = native_of(rows);
        let node = median(rows, System::Node);
        for row in rows {
            let nodes = row.nodes;
            let o = match &row.median {
                Ok(o) => o,
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | failed: {} | | | | | | | | | | | | | | |",
                        w.name(),
                        row.system.name(),
                        format!("{e:#}").replace('|', "/")
                    );
                    continue;
                }
            };
            let idle = *w == Workload::Idle;
            let dash = || "-".to_string();
            let p99 = o.quantile_us(0.99);
            let (vs, p99_vs) = match native {
                Some((_, n)) if !idle => (
                    ratio(o.per_second(), n.per_second()),
                    match (p99, n.quantile_us(0.99)) {
                        (Some(a), Some(b)) => ratio(f64::from(a), f64::from(b)),
                        _ => dash(),
                    },
                ),
                _ => (dash(), dash()),
            };
            let vs_node = match node {
                Some(n) if !idle => ratio(o.per_second(), n.per_second()),
                _ => dash(),
            };
            let range = row
                .range
                .filter(|_| !idle)
                .map_or_else(dash, |(lo, hi)| format!("{lo:.0}–{hi:.0}"));
            let secs = o.measure.as_secs_f64();
            let cpu = Cpu::of(o, nodes);
            let per_delivery = cpu.per_delivery_text(o);
            let per_conn = cpu.nodes * 1e6 / secs / o.clients.max(1) as f64;
            let (kib_conn, kib_end) = kib_per_conn(o);
            let guest = cpu.guest_share(row.system, o);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {:.1} | {:.1} / {:.1} | {} | {} |",
                w.name(),
                row.system.name(),
                if idle {
                    format!("{} conns", o.clients)
                } else {
                    format!("{:.0}", o.per_second())
                },
                range,
                ms(o.quantile_us(0.5)),
                ms(p99),
                ms(o.latencies_us.last().copied()),
                ms(o.cross_quantile_us(0.99)),
                vs,
                p99_vs,
                vs_node,
                per_delivery,
                cpu.nodes / secs,
                cpu.backend / secs,
                cpu.loadgen / secs,
                per_conn,
                kib_conn,
                kib_end,
                guest,
                o.lost
            );
        }
    }
    let _ = writeln!(out);
    aims(&mut out, tables, args);
    pairs(&mut out, tables, args);
    out
}

/// The lines under a report's first: each workload's shape, the command, the machine,
/// its load, the backends.
fn header(
    out: &mut String,
    tables: &[(Workload, Params, Vec<Row>)],
    load: &str,
    backends: &Backends,
) {
    for (w, p, _) in tables {
        let shape = match w {
            Workload::Idle => format!("{} idle connections", p.clients),
            Workload::Acks => format!(
                "{} clients, {} sending, one publish in flight each, {}, to a room with no members; latency = emit → ack",
                p.clients,
                p.senders,
                rate(p.rate)
            ),
            _ => format!(
                "{} clients, {}, {} sender(s), window {}, rate {}",
                p.clients,
                p.room_size
                    .map_or("broadcast to all".into(), |r| format!("rooms of {r}")),
                p.senders,
                p.window,
                rate(p.rate)
            ),
        };
        let _ = writeln!(out, "workload {}: {shape}", w.name());
    }
    let _ = writeln!(out, "command: {}", command_line());
    let _ = writeln!(out, "machine: {}", machine());
    let _ = writeln!(out, "load average (1, 5, 15 min): {load}");
    backend_lines(out, backends);
}

/// The backends the systems ran on, one line each.
fn backend_lines(out: &mut String, backends: &Backends) {
    let lines = [
        ("redis", &backends.redis),
        ("redis cluster", &backends.redis_cluster),
        ("nats", &backends.nats),
        ("postgres", &backends.postgres),
        ("mongodb", &backends.mongodb),
    ];
    for (what, line) in lines {
        if let Some(line) = line {
            let _ = writeln!(out, "{what}: {line}");
        }
    }
}

fn rate(r: f64) -> String {
    if r > 0.0 {
        format!("{r}/s")
    } else {
        "max".into()
    }
}

/// The aims for wasio + Redis, per workload: ≥ 0.9× native and ≥ 3× Node.js
/// deliveries/s, p99 ≤ 1.2× native; ≤ 40 KiB per idle connection.
fn aims(out: &mut String, tables: &[(Workload, Params, Vec<Row>)], args: &RunArgs) {
    let check = |ok: bool| if ok { "met" } else { "NOT met" };
    for (w, p, rows) in tables {
        let Some(wasio) = median(rows, System::Wasio) else {
            continue;
        };
        if *w == Workload::Idle {
            let (kib, _) = kib_per_conn(wasio);
            let _ = writeln!(
                out,
                "aim idle: wasio + Redis {kib:.1} KiB per idle connection (≤ 40: {})",
                check(kib <= 40.0)
            );
            continue;
        }
        let mut parts = Vec::new();
        // At a fixed rate every system delivers the same: compare the nodes' CPU per
        // delivery (ack) instead, as "how much more could it carry".
        let fixed = p.rate > 0.0;
        let cpu = |o: &Outcome, s: System| {
            Cpu::of(o, s.nodes(args.nodes))
                .per_delivery(o)
                .map_or(0.0, |c| c.1)
        };
        let score = |o: &Outcome, s: System| {
            if fixed {
                1.0 / cpu(o, s).max(1e-9)
            } else {
                o.per_second()
            }
        };
        let what = if fixed { " by CPU per delivery" } else { "" };
        let mine = score(wasio, System::Wasio);
        if let Some((s, n)) = native_of(rows) {
            let r = mine / score(n, s);
            parts.push(format!(
                "{r:.2}× {}{what} (≥ 0.9: {})",
                s.name(),
                check(r >= 0.9)
            ));
            if let (Some(a), Some(b)) = (wasio.quantile_us(0.99), n.quantile_us(0.99)) {
                let r = f64::from(a) / f64::from(b);
                parts.push(format!("p99 {r:.2}× (≤ 1.2: {})", check(r <= 1.2)));
            }
        }
        if let Some(n) = median(rows, System::Node) {
            let r = mine / score(n, System::Node);
            parts.push(format!("{r:.2}× Node.js{what} (≥ 3: {})", check(r >= 3.0)));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "aim {}: wasio + Redis {}", w.name(), parts.join(", "));
        }
    }
}

/// The MongoDB systems' ratio table (issue 5), when both systems of a pair ran.
fn pairs(out: &mut String, tables: &[(Workload, Params, Vec<Row>)], args: &RunArgs) {
    for (w, _, rows) in tables {
        let found: Vec<_> = PAIRS
            .iter()
            .filter_map(|&(a, b)| Some((a, b, median(rows, a)?, median(rows, b)?)))
            .collect();
        if found.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| {} ratio (median runs) | deliveries/s | p50 | p99 | cross-node p99 | CPU/delivery: nodes + backend | CPU/delivery: nodes |",
            w.name()
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (a, b, oa, ob) in found {
            let lat = |q: fn(&Outcome, f64) -> Option<u32>, at| match (q(oa, at), q(ob, at)) {
                (Some(x), Some(y)) => ratio(f64::from(x), f64::from(y)),
                _ => "-".into(),
            };
            let (ca, cb) = (
                Cpu::of(oa, a.nodes(args.nodes)).per_delivery(oa),
                Cpu::of(ob, b.nodes(args.nodes)).per_delivery(ob),
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
}

/// The `scaling` table: one row per workload × system × node count, all at one fixed
/// rate, with the backend messages each publish cost.
pub(crate) fn scaling(
    tables: &[(Workload, Params, Vec<Row>)],
    counts: &[usize],
    args: &RunArgs,
    load: &str,
    backends: &Backends,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "how cost grows with nodes: {counts:?} node(s) per system, {}-byte payload, warm-up {} s, measured {} s, {} round(s) (median round by {})",
        args.payload,
        args.warmup,
        args.seconds,
        args.rounds.max(1),
        if args.rate.unwrap_or(0.0) > 0.0 {
            "CPU per delivery, nodes + backend"
        } else {
            "deliveries/s"
        }
    );
    header(&mut out, tables, load, backends);
    let _ = writeln!(
        out,
        "every row at the same fixed rate: deliveries/s shows in brackets the share of what that rate asks (publishes/s × members per publish); a row well short of 100%, or with a p99 far above the others', saturated"
    );
    let _ = writeln!(
        out,
        "backend messages per publish: wasio_backend_messages_total of every node's /metrics over the window, out (handed to the backend) and in (delivered from it to a guest), over the publishes sent in the window"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| workload | system | nodes | deliveries/s | p50 | p99 | CPU µs/delivery: nodes (+ backend) | CPU cores: nodes / backend / load gen | backend messages per publish: out / in | guest share of node CPU | lost |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (w, p, rows) in tables {
        // Members per publish on average (the last room may be short).
        let members = p.room_size.map_or(p.clients as f64, |r| {
            p.clients as f64 / p.clients.div_ceil(r.max(1)).max(1) as f64
        });
        let asked = p.rate * members;
        for row in rows {
            let o = match &row.median {
                Ok(o) => o,
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | failed: {} | | | | | | | |",
                        w.name(),
                        row.system.name(),
                        row.nodes,
                        format!("{e:#}").replace('|', "/")
                    );
                    continue;
                }
            };
            let cpu = Cpu::of(o, row.nodes);
            let secs = o.measure.as_secs_f64();
            let messages = o
                .messages_per_publish()
                .map_or("-".into(), |(sent, received)| {
                    format!("{sent:.2} / {received:.2}")
                });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0}{} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {} | {} | {} |",
                w.name(),
                row.system.name(),
                row.nodes,
                o.per_second(),
                if asked > 0.0 {
                    format!(" ({:.0}%)", o.per_second() / asked * 100.0)
                } else {
                    String::new()
                },
                ms(o.quantile_us(0.5)),
                ms(o.quantile_us(0.99)),
                cpu.per_delivery_text(o),
                cpu.nodes / secs,
                cpu.backend / secs,
                cpu.loadgen / secs,
                messages,
                cpu.guest_share(row.system, o),
                o.lost
            );
        }
    }
    out
}
