//! `GET /metrics` on the admin listener: the node's state and counters in the
//! Prometheus text format (version 0.0.4), read at scrape time.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::{Gate, PolicyStatus};
use crate::cluster::Adapter;

/// The Prometheus exposition of the node of `adapter`, its `gate` and its `policy`.
pub fn render(adapter: &Adapter, gate: &Gate, policy: &PolicyStatus, tls_failures: u64) -> String {
    let mut out = Out::default();
    let info = adapter.status().current;

    out.family(
        "wasio_adapter_info",
        "gauge",
        "The adapter serving now (value 1).",
    );
    out.sample(
        "wasio_adapter_info",
        &[
            ("node_id", adapter.node_id()),
            ("adapter", &info.name),
            ("version", &info.version),
            ("source", &info.source),
            ("sha256", &info.sha256),
        ],
        1.0,
    );

    let stats = adapter.local_stats();
    let connections: usize = stats.iter().map(|(_, s, _)| s).sum();
    out.gauge(
        "wasio_connections",
        "Socket.IO sockets connected to this node, all namespaces.",
        connections as f64,
    );
    out.gauge(
        "wasio_namespaces",
        "Namespaces alive on this node.",
        stats.len() as f64,
    );
    out.family(
        "wasio_namespace_sockets",
        "gauge",
        "Sockets connected to this node, by namespace.",
    );
    for (nsp, sockets, _) in &stats {
        out.sample(
            "wasio_namespace_sockets",
            &[("namespace", nsp)],
            *sockets as f64,
        );
    }
    out.family(
        "wasio_namespace_rooms",
        "gauge",
        "Rooms of this node's sockets (each socket's own-id room not counted), by namespace.",
    );
    for (nsp, _, rooms) in &stats {
        out.sample(
            "wasio_namespace_rooms",
            &[("namespace", nsp)],
            *rooms as f64,
        );
    }
    out.gauge(
        "wasio_cluster_requests_pending",
        "Cluster requests of this node (fetchSockets, serverCount, acks...) waiting for answers.",
        adapter.pending_requests() as f64,
    );

    let m = adapter.metrics();
    out.family(
        "wasio_backend_messages_total",
        "counter",
        "Messages (or documents) between an adapter and its datasource; `in`: delivered to the guest, `out`: handed to the datasource.",
    );
    for (label, t) in m.traffic_by_adapter() {
        for (direction, c) in [("in", &t.messages_in), ("out", &t.messages_out)] {
            out.sample(
                "wasio_backend_messages_total",
                &[("adapter", &label), ("direction", direction)],
                get(c),
            );
        }
    }

    out.family(
        "wasio_guest_call_duration_seconds",
        "histogram",
        "Time spent in calls into the guest, by operation.",
    );
    for (op, h) in m.calls() {
        for (le, n) in h.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            out.sample(
                "wasio_guest_call_duration_seconds_bucket",
                &[("op", op), ("le", &le)],
                n as f64,
            );
        }
        out.sample(
            "wasio_guest_call_duration_seconds_sum",
            &[("op", op)],
            h.sum_seconds(),
        );
        out.sample(
            "wasio_guest_call_duration_seconds_count",
            &[("op", op)],
            h.count() as f64,
        );
    }

    let counters: [(&str, &str, &AtomicU64); 8] = [
        (
            "wasio_guest_traps_total",
            "Guest calls that trapped.",
            &m.traps,
        ),
        (
            "wasio_guest_deadline_stops_total",
            "Guest calls stopped at their deadline (epoch).",
            &m.deadline_stops,
        ),
        (
            "wasio_guest_memory_stops_total",
            "Guest calls stopped at the memory cap.",
            &m.memory_stops,
        ),
        (
            "wasio_guest_reinstantiations_total",
            "Fresh guest instances made after a fault.",
            &m.reinstantiations,
        ),
        (
            "wasio_guest_relay_errors_total",
            "Operations the guest failed to relay to the cluster.",
            &m.relay_errors,
        ),
        (
            "wasio_dropped_messages_total",
            "Messages from the backend the guest refused as malformed or foreign, and dropped.",
            &m.dropped_messages,
        ),
        (
            "wasio_swaps_total",
            "Adapters swapped in (rollbacks included).",
            &m.swaps,
        ),
        (
            "wasio_failed_swaps_total",
            "Swaps refused (the running adapter kept serving).",
            &m.failed_swaps,
        ),
    ];
    for (name, help, c) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], get(c));
    }
    out.gauge(
        "wasio_guest_memory_bytes",
        "Linear memory of the guest instance.",
        get(&m.guest_memory_bytes),
    );

    if let Some(ds) = adapter.datasource_status() {
        datasource(&mut out, &ds);
    }
    auth(&mut out, gate, policy);
    out.family(
        "wasio_tls_failed_handshakes_total",
        "counter",
        "TLS handshakes that failed or timed out (client port and admin listener).",
    );
    out.sample(
        "wasio_tls_failed_handshakes_total",
        &[],
        tls_failures as f64,
    );
    out.text
}

/// Who was refused what, limits hit, and the policy component's answers.
fn auth(out: &mut Out, gate: &Gate, policy: &PolicyStatus) {
    out.gauge(
        "wasio_auth_enabled",
        "Whether connects, joins and publishes are checked (1) or the relay is open (0).",
        f64::from(u8::from(!gate.is_open())),
    );
    let name = "wasio_auth_denied_total";
    out.family(
        name,
        "counter",
        "Requests refused, by stage (connect, join, publish) and by what refused them (token, claims, policy).",
    );
    for (stage, by, n) in gate.counters.denied() {
        out.sample(name, &[("stage", stage), ("by", by)], n as f64);
    }
    let name = "wasio_limit_hits_total";
    out.family(
        name,
        "counter",
        "Requests over a per-connection limit, answered with an error ack, by limit.",
    );
    for (limit, n) in gate.counters.limits() {
        out.sample(name, &[("limit", limit)], n as f64);
    }
    if !policy.active {
        return;
    }
    out.family(
        "wasio_policy_info",
        "gauge",
        "The policy component answering now (value 1).",
    );
    out.sample(
        "wasio_policy_info",
        &[
            ("policy", &policy.name),
            ("version", &policy.version),
            ("source", &policy.source),
            ("sha256", &policy.sha256),
        ],
        1.0,
    );
    let name = "wasio_policy_answers_total";
    out.family(name, "counter", "The policy's answers, by verdict.");
    out.sample(name, &[("verdict", "allow")], policy.allowed as f64);
    let d = &policy.denied;
    out.sample(
        name,
        &[("verdict", "deny")],
        (d.connect + d.join + d.publish) as f64,
    );
    let counters = [
        (
            "wasio_policy_faults_total",
            "Policy calls that trapped, ran out of time or memory (each a denial).",
            policy.faults,
        ),
        (
            "wasio_policy_swaps_total",
            "Policies swapped in.",
            policy.swaps,
        ),
        (
            "wasio_policy_failed_swaps_total",
            "Policy swaps refused (the running policy kept answering).",
            policy.failed_swaps,
        ),
    ];
    for (name, help, n) in counters {
        out.family(name, "counter", help);
        out.sample(name, &[], n as f64);
    }
}

/// The datasource link's counters, labelled with its name and connector.
fn datasource(out: &mut Out, ds: &serde_json::Value) {
    let name = ds["name"].as_str().unwrap_or("");
    let connector = ds["connector"].as_str().unwrap_or("");
    let labels = [("datasource", name), ("connector", connector)];
    let fields = [
        (
            "connected",
            "gauge",
            "Whether the datasource link is up (1) or down (0).",
        ),
        (
            "reconnects",
            "counter",
            "Times the datasource link came back after being lost.",
        ),
        (
            "buffered",
            "gauge",
            "Messages waiting to be sent to the datasource.",
        ),
        (
            "publish_errors",
            "counter",
            "Messages refused because the send buffer was full.",
        ),
        (
            "publish_retries",
            "counter",
            "Sends that failed and were retried.",
        ),
        (
            "lost_messages",
            "counter",
            "Messages the backend delivered that overflowed the receive queue.",
        ),
        (
            "malformed",
            "counter",
            "Messages from the backend dropped before the guest (not bytes, not BSON).",
        ),
    ];
    for (field, kind, help) in fields {
        let v = &ds[field];
        let Some(value) = v
            .as_f64()
            .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
        else {
            continue;
        };
        let suffix = if kind == "counter" { "_total" } else { "" };
        let metric = format!("wasio_datasource_{field}{suffix}");
        out.family(&metric, kind, help);
        out.sample(&metric, &labels, value);
    }
}

fn get(c: &AtomicU64) -> f64 {
    c.load(Ordering::Relaxed) as f64
}

#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
