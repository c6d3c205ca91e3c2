// Interop matrix row 11 on PostgreSQL: the server restarts under two wasio nodes while their
// clients publish steadily.
//
// The test runs a PostgreSQL cluster of its OWN (initdb + pg_ctl on a free port, in a
// temporary directory: lib/postgres-backend.js startPostgres), never the shared one, and
// starts W1 and W2 (`builtin:postgres`) on it. A client of W1 publishes "tick" and a client of
// W2 "tock" every 20 ms (relay publish, exceptSelf), each received by the other node's client.
//   1. `pg_ctl restart -m fast` while publishing: every connection is cut, the server is back
//      at once on the same port.
//   2. `pg_ctl stop -m fast`, publishing on while both nodes say in /healthz that they are
//      disconnected, then `pg_ctl start` on the same port.
// Each time: every publish is acked; the cluster relays again afterwards in both directions
// (the host LISTENs again, without a restart of either node), and then loses nothing (a batch
// of publishes all delivered, in order); wasio nodes count their reconnect; every publish made
// while the server was down that never reached the other node is counted on its node
// (`publish_errors` + `lost_messages`) or was refused in its ack — never silently lost. The
// numbers (sent, delivered, lost, refused, duplicated; those made while the server was down)
// are printed.
//
// Under WASIO_POSTGRES_REFERENCE (Node's adapter in both nodes) the counters are not checked:
// Node's adapter sends nothing made while the server is away (the query fails, its
// errorHandler is called), and LISTENs again 1 to 3 s after its connection ended (with the
// 'error' listener lib/node-node.js adds; without it, never).
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, fence, safeJson } = require("../lib/client");
const { startCluster, until, waitServerCount } = require("../lib/cluster");
const { createTableSql, freshNames, pgClient, startPostgres } = require("../lib/postgres-backend");

const PERIOD_MS = 20;
const RECOVERY_MS = 30000; // bound on "relays again"
const TIMING = { requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 };

const lossCounters = (d) => (d.publish_errors || 0) + (d.lost_messages || 0);

/**
 * Publishes `event` {seq, phase} from `from` every PERIOD_MS (not waiting for the acks, so
 * that an outage does not slow it), until `stop()`. `marks` records which seqs were sent in
 * which phase ("before", "down", "after"). Resolves `stop()` with the acks:
 *   { sent: [seq], ok: Set, refused: Map seq → error, unacked: [seq] }
 */
function steadyPublisher(from, event) {
  let seq = 0;
  let phase = "before";
  const phases = new Map(); // seq → phase
  const acks = [];
  const ok = new Set();
  const refused = new Map();
  const unacked = new Set();
  const timer = setInterval(() => {
    const n = ++seq;
    phases.set(n, phase);
    unacked.add(n);
    acks.push(
      ack(from, "publish", { event, data: { seq: n }, exceptSelf: true }, { timeoutMs: RECOVERY_MS }).then(
        (res) => {
          unacked.delete(n);
          if (res && res.ok === true) ok.add(n);
          else refused.set(n, safeJson(res));
        },
        () => {},
      ),
    );
  }, PERIOD_MS);
  return {
    setPhase: (p) => (phase = p),
    last: () => seq,
    phases,
    async stop() {
      clearInterval(timer);
      await Promise.all(acks);
      return { sent: [...phases.keys()], ok, refused, unacked: [...unacked] };
    },
  };
}

/** The seqs of `event` that `s` received (in arrival order). */
const receivedSeqs = (s, event) => s.inbox.data(event).map((d) => d.seq);

describe("postgres: the server restarts under two wasio nodes while their clients publish", () => {
  let server;
  let c;
  before(async () => {
    server = await startPostgres();
    const { channelPrefix, tableName } = freshNames("rs");
    const admin = await pgClient(server.url);
    try {
      await admin.query(createTableSql(tableName));
    } finally {
      await admin.end();
    }
    c = await startCluster({ backend: "postgres", postgresUrl: server.url, channelPrefix, tableName, wasio: 2, node: 0, namespaces: ["/"], ...TIMING });
  });
  after(async () => {
    try {
      if (c) await c.stop();
    } finally {
      if (server) await server.destroy();
    }
  });

  /**
   * Runs one outage (`outage()` does it, with the publishers running) and checks and reports
   * what became of the publishes. `label` names it in the output.
   */
  async function publishThrough(label, outage) {
    const [W1, W2] = [c.byName.W1, c.byName.W2];
    const a = await c.connect(W1, "/");
    const b = await c.connect(W2, "/");
    try {
      const h0 = { W1: await W1.health(), W2: await W2.health() };
      for (const n of [W1, W2]) assert.equal(h0[n.name].datasource.connected, true, `${n.name} connected at first: ${safeJson(h0[n.name].datasource)}`);
      const pubs = [
        { from: a, to: b, event: "tick", node: W1, p: steadyPublisher(a, "tick") },
        { from: b, to: a, event: "tock", node: W2, p: steadyPublisher(b, "tock") },
      ];
      // Crossing before.
      for (const x of pubs) await x.to.inbox.waitFor(x.event, (d) => d.seq >= 3, { what: `${x.event} ${x.node.name} → the other node before the outage` });

      for (const x of pubs) x.p.setPhase("down");
      const gapHealth = await outage(pubs);
      const firstAfter = {};
      for (const x of pubs) {
        x.p.setPhase("after");
        firstAfter[x.event] = x.p.last() + 1;
      }
      // Relays again: a publish made after the server is back reaches the other node.
      const backAt = Date.now();
      for (const x of pubs) {
        await x.to.inbox.waitFor(x.event, (d) => d.seq >= firstAfter[x.event], {
          timeoutMs: RECOVERY_MS,
          what: `${label}: a ${x.event} from ${x.node.name} sent after the server was back reaches the other node`,
        });
      }
      const recoveredMs = Date.now() - backAt;
      const results = {};
      for (const x of pubs) results[x.event] = await x.p.stop();

      // Steady again: a batch of acked publishes, every one delivered, in order.
      for (const x of pubs) {
        const base = 1e6;
        for (let i = 0; i < 20; i++) {
          const r = await ack(x.from, "publish", { event: x.event, data: { seq: base + i }, exceptSelf: true });
          assert.equal(r.ok, true, `${label}: steady publish acked: ${safeJson(r)}`);
        }
        await until(() => receivedSeqs(x.to, x.event).filter((s) => s >= base).length >= 20, { what: `${label}: the steady batch ${x.node.name} → the other node` });
        await fence(x.from, [x.to]);
        // wasio keeps a node's order (one connection for its NOTIFYs); Node's adapter sends
        // each message on whichever pooled connection is free, in parallel: any order.
        let batch = receivedSeqs(x.to, x.event).filter((s) => s >= base);
        if (x.node.kind !== "wasio") batch = batch.sort((p, q) => p - q);
        assert.deepEqual(batch, Array.from({ length: 20 }, (_, i) => base + i), `${label}: after the recovery ${x.node.name}'s batch arrived whole, once${x.node.kind === "wasio" ? ", in order" : ""}`);
      }

      const h1 = { W1: await W1.health(), W2: await W2.health() };
      for (const x of pubs) {
        const n = x.node;
        const r = results[x.event];
        const got = receivedSeqs(x.to, x.event).filter((s) => s < 1e6);
        const delivered = new Set(got);
        const duplicates = got.length - delivered.size;
        const lost = [...r.ok].filter((s) => !delivered.has(s));
        const down = r.sent.filter((s) => x.p.phases.get(s) === "down");
        const downDelivered = down.filter((s) => delivered.has(s)).length;
        const downRefused = down.filter((s) => r.refused.has(s)).length;
        const downLost = down.filter((s) => r.ok.has(s) && !delivered.has(s)).length;
        const counted = lossCounters(h1[n.name].datasource) - lossCounters(h0[n.name].datasource);
        console.error(
          `# ${label}, ${x.event} ${n.name} → ${x.to.node}: sent ${r.sent.length}, acked ok ${r.ok.size}, refused ${r.refused.size}, unacked ${r.unacked.length}, ` +
            `delivered ${delivered.size}, lost ${lost.length}, duplicated ${duplicates}; while the server was down: sent ${down.length}, ` +
            `delivered ${downDelivered}, refused ${downRefused}, lost ${downLost}; relaying again ${recoveredMs} ms after the server was back; ` +
            `${n.name} counted ${counted} lost (publish_errors + lost_messages)`,
        );
        if (n.kind === "wasio") {
          const during = gapHealth[n.name] ? `during the outage: ${safeJson(gapHealth[n.name].datasource)}; ` : "";
          console.error(`#   ${n.name} ${during}after: ${safeJson(h1[n.name].datasource)}`);
        }
        if (r.refused.size) console.error(`#   refusals: ${safeJson([...r.refused.values()].slice(0, 3))}`);
        if (lost.length) console.error(`#   lost seqs: ${safeJson(lost.slice(0, 40))}`);
        assert.deepEqual(r.unacked, [], `${label}: every ${x.event} publish of ${n.name} was acked`);
        assert.ok(down.length > 0, `(test) ${x.event}s were published while the server was down`);
        if (n.kind === "wasio") {
          assert.ok(h1[n.name].datasource.reconnects > h0[n.name].datasource.reconnects, `${label}: ${n.name} counted its reconnect: ${safeJson(h1[n.name].datasource)}`);
          assert.equal(h1[n.name].datasource.connected, true, `${label}: ${n.name} connected again`);
          // The publishes made while the server was down: delivered later, refused, or counted.
          // (One made once this node is back but before the other node LISTENs again is
          // dropped by PostgreSQL, which keeps no notification for an absent listener: such
          // losses are only printed.)
          assert.ok(downLost <= counted, `${label}: ${downLost} ${x.event}s published by ${n.name} while the server was down never reached ${x.to.node}, ${counted} counted lost by ${n.name}`);
        }
      }
      await waitServerCount([W1, W2], 2, ["/"], 10000);
    } finally {
      c.closeClients();
    }
  }

  /** /healthz of both nodes, once each says it is disconnected (null under the reference). */
  async function disconnectedHealth() {
    const out = {};
    for (const n of c.nodes) {
      out[n.name] = await until(
        async () => {
          const h = await n.health();
          return h.datasource.connected === false ? h : null;
        },
        { timeoutMs: 10000, what: `${n.name} /healthz datasource.connected == false` },
      );
    }
    return out;
  }

  it("pg_ctl restart -m fast while publishing: relaying resumes, every publish delivered or counted", async () => {
    await publishThrough("restart", async (pubs) => {
      const marks = pubs.map((x) => x.p.last());
      await server.restart();
      // Some publishes were made while the restart cut the connections (the down phase
      // covers the restart: from just before pg_ctl to its return).
      for (const [i, x] of pubs.entries()) {
        if (x.p.last() === marks[i]) await until(() => x.p.last() > marks[i], { what: "a publish during the restart" });
      }
      return {};
    });
  });

  it("pg_ctl stop, publishing while both nodes are disconnected, pg_ctl start: relaying resumes, every publish delivered or counted", async () => {
    await publishThrough("stop/start", async (pubs) => {
      await server.stop();
      const gap = await disconnectedHealth();
      // At least 20 publishes from each client while the server is known to be down.
      const marks = pubs.map((x) => x.p.last());
      for (const [i, x] of pubs.entries()) await until(() => x.p.last() >= marks[i] + 20, { what: "20 publishes while the server is down" });
      await server.start();
      return gap;
    });
  });
});
