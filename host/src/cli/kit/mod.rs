//! `wasio adapter check`: the conformance kit. It reads a component against the
//! contract, then runs it as the adapter of three in-process nodes (real Socket.IO
//! servers, real WebSocket clients) joined by a datasource — the in-memory bus, or a
//! real Redis or MongoDB — and plays the scenarios a production cluster depends on.
//! One row per scenario; any failure makes the command exit non-zero.

mod client;
mod cluster;
mod scenarios;

use std::time::{Duration, Instant};

use crate::config::Connector;
use crate::config::WasmSource;

pub use crate::runtime::Finding;

/// What to check, and on what.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The component under check.
    pub wasm: WasmSource,
    /// `memory://` (default), `redis://…`, `nats://…`, `mongodb://…` or `postgres://…`.
    pub datasource: String,
    /// The adapter's `[adapter.options]`.
    pub options: serde_json::Value,
    /// How long an expected delivery or state change may take before its row fails.
    pub patience: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            wasm: WasmSource::Builtin("local".into()),
            datasource: "memory://".into(),
            options: serde_json::json!({}),
            patience: Duration::from_secs(10),
        }
    }
}

/// How a scenario went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It did what the scenario expects.
    Pass,
    /// It did not: what went wrong.
    Fail(String),
    /// It could not run here: why.
    Skip(String),
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was tried.
    pub scenario: &'static str,
    /// How it went.
    pub outcome: Outcome,
    /// How long it took.
    pub elapsed: Duration,
}

/// The whole check: contract findings, then scenario rows.
pub struct Report {
    /// The component, as messages name it.
    pub source: String,
    /// What its `init` said: (name, version), once it started.
    pub adapter: Option<(String, String)>,
    /// The datasource the nodes were joined by.
    pub datasource: String,
    /// The contract findings.
    pub contract: Vec<Finding>,
    /// The scenario rows.
    pub rows: Vec<Row>,
}

impl Report {
    /// True when nothing failed.
    pub fn passed(&self) -> bool {
        self.contract.iter().all(|f| f.ok)
            && self
                .rows
                .iter()
                .all(|r| !matches!(r.outcome, Outcome::Fail(_)))
    }

    /// The table printed by `wasio adapter check`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let name = match &self.adapter {
            Some((n, v)) => format!(" ({n} {v})"),
            None => String::new(),
        };
        out += &format!(
            "wasio adapter check: {}{name}, {} nodes on {}\n\n",
            self.source,
            cluster::NODES,
            self.datasource
        );
        for f in &self.contract {
            let mark = if f.ok { "ok  " } else { "FAIL" };
            out += &format!("  {mark}  {:<12} {}\n", f.what, f.text);
        }
        out += "\n";
        let width = self
            .rows
            .iter()
            .map(|r| r.scenario.len())
            .max()
            .unwrap_or(8);
        for r in &self.rows {
            let (mark, detail) = match &r.outcome {
                Outcome::Pass => ("pass", String::new()),
                Outcome::Fail(why) => ("FAIL", why.clone()),
                Outcome::Skip(why) => ("skip", why.clone()),
            };
            out += &format!(
                "  {mark}  {:<width$}  {:>6} ms  {detail}\n",
                r.scenario,
                r.elapsed.as_millis()
            );
        }
        let failed = self
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
            .count()
            + self.contract.iter().filter(|f| !f.ok).count();
        let passed = self
            .rows
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count();
        out += &format!(
            "\n{}: {passed} scenarios passed, {failed} failed\n",
            if failed == 0 { "PASS" } else { "FAIL" }
        );
        out
    }
}

/// Runs the check. Errors only for what stops it before any scenario (unreadable
/// file, unreachable datasource); everything else is a row.
pub async fn run(opts: CheckOptions) -> anyhow::Result<Report> {
    let source = opts.wasm.label();
    let bytes = opts.wasm.read()?;
    let contract = crate::runtime::inspect(&source, &bytes);
    let mut report = Report {
        source,
        adapter: None,
        datasource: opts.datasource.clone(),
        contract,
        rows: Vec::new(),
    };
    if !report.contract.iter().all(|f| f.ok) {
        return Ok(report);
    }
    let connector = match opts.datasource.split("://").next() {
        Some("memory") => Connector::Memory,
        Some("redis" | "rediss" | "redis-cluster") => Connector::Redis,
        Some("mongodb" | "mongodb+srv") => Connector::Mongodb,
        Some("nats" | "tls") => Connector::Nats,
        Some("postgres" | "postgresql") => Connector::Postgres,
        _ => anyhow::bail!(
            "--datasource {}: expected memory://, redis://…, redis-cluster://…, nats://…, mongodb://… or postgres://…",
            opts.datasource
        ),
    };
    let started = Instant::now();
    let cluster = match cluster::Cluster::start(&opts, connector).await {
        Ok(c) => c,
        Err(e) => {
            report.rows.push(Row {
                scenario: "start 3 nodes (init, open `/` and `/other`)",
                outcome: Outcome::Fail(format!("{e:#}")),
                elapsed: started.elapsed(),
            });
            return Ok(report);
        }
    };
    report.adapter = Some(cluster.adapter_info());
    report.rows.push(Row {
        scenario: "start 3 nodes (init, open `/` and `/other`)",
        outcome: Outcome::Pass,
        elapsed: started.elapsed(),
    });
    report.rows.extend(scenarios::run_all(&cluster).await);
    cluster.stop().await;
    Ok(report)
}
