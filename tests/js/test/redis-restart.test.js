// Interop matrix row 11 on Redis: the backend restarts under two wasio nodes.
//
// The test runs its OWN redis-server on a free port (never the shared one), starts W1 and
// W2 on it, kills Redis (SIGKILL), and checks: /healthz `datasource.connected` goes false;
// a relay publish made during the gap is still acked and delivered locally, and waits
// (`datasource.buffered`) — the host holds publishes, up to `publish_buffer`, while the
// backend is away, and sends them 2 s after it is back; Redis comes back on the same port; both nodes reconnect
// (`connected` true, `reconnects` grew) and resubscribe without a restart, and broadcasts
// cross again; the gap's publish was sent on reconnect and reached the other node, or,
// when it could not be, is counted (`publish_errors` or `lost_messages`) — never silently lost.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const { ack, uid, safeJson, withTimeout } = require("../lib/client");
const { startCluster, until, waitServerCount } = require("../lib/cluster");
const { freePort } = require("../lib/server");

/** Starts `redis-server` on `port` and resolves once it accepts connections. */
function startRedis(port) {
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    child.stdout.setEncoding("utf8").on("data", (d) => {
      out += d;
      if (out.includes("Ready to accept connections")) resolve();
    });
    child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
    child.on("error", reject);
    exited.then(() => reject(new Error(`redis-server exited early:\n${out}`)));
  });
  return withTimeout(ready, 10000, `redis-server on port ${port}`).then(() => ({
    port,
    async kill() {
      child.kill("SIGKILL");
      await withTimeout(exited, 5000, "redis-server to exit");
    },
    output: () => out,
  }));
}

describe("redis classic: the backend restarts", () => {
  let port;
  let redis;
  let c;

  before(async () => {
    port = await freePort();
    redis = await startRedis(port);
    c = await startCluster({ wasio: 2, node: 0, mode: "classic", redisUrl: `redis://127.0.0.1:${port}`, namespaces: ["/"] });
  });
  after(async () => {
    if (c) await c.stop();
    if (redis) await redis.kill().catch(() => {});
  });

  it("nodes see the outage, reconnect and resubscribe, serve again; the gap's publish is delivered or counted", async () => {
    const [W1, W2] = [c.byName.W1, c.byName.W2];
    const a = await c.connect(W1, "/");
    const b = await c.connect(W2, "/");
    const u = uid("rs");

    // Crossing before.
    let res = await ack(a, "publish", { event: "before", data: u, exceptSelf: true });
    assert.equal(res.ok, true);
    await b.inbox.waitFor("before", (d) => d === u);
    const h0 = {};
    for (const n of [W1, W2]) {
      h0[n.name] = await n.health();
      assert.equal(h0[n.name].datasource.connected, true, `${n.name} connected at first: ${safeJson(h0[n.name].datasource)}`);
    }

    await redis.kill();
    for (const n of [W1, W2]) {
      await until(async () => (await n.health()).datasource.connected === false, {
        timeoutMs: 10000,
        what: `${n.name} /healthz datasource.connected == false`,
      });
    }

    // During the gap: the publish is acked and delivered on its own node.
    res = await ack(a, "publish", { event: "gap", data: u });
    assert.deepEqual(res, { ok: true, count: 1 }, "a publish during the outage still serves this node's clients");
    await a.inbox.waitFor("gap", (d) => d === u);
    const gapHealth = await W1.health();
    console.error(`# W1 during the outage: ${safeJson(gapHealth.datasource)}`);

    redis = await startRedis(port);
    for (const n of [W1, W2]) {
      await until(async () => (await n.health()).datasource.connected === true, {
        timeoutMs: 20000,
        intervalMs: 100,
        what: `${n.name} /healthz datasource.connected == true again`,
      });
    }
    await waitServerCount([W1, W2], 2, ["/"], 10000);

    // Broadcasts cross again, both ways, without restarting anything.
    const v = uid("again");
    await ack(a, "publish", { event: "again", data: v, exceptSelf: true });
    await b.inbox.waitFor("again", (d) => d === v, { timeoutMs: 5000, what: "W1 → W2 after the restart" });
    await ack(b, "publish", { event: "again", data: v, exceptSelf: true });
    await a.inbox.waitFor("again", (d) => d === v, { timeoutMs: 5000, what: "W2 → W1 after the restart" });

    const h1 = {};
    for (const n of [W1, W2]) {
      h1[n.name] = await n.health();
      console.error(`# ${n.name} after the restart: ${safeJson(h1[n.name].datasource)}`);
      if (n.kind === "wasio") {
        assert.ok(h1[n.name].datasource.reconnects > h0[n.name].datasource.reconnects, `${n.name} counted its reconnect`);
      }
    }
    // The gap's publish: delivered to W2 (sent on reconnect, before "again" on the same
    // connection), or counted as a publish error. Not silently lost.
    const delivered = b.inbox.data("gap").includes(u);
    if (W1.kind === "wasio") {
      // Counted: as a publish error, or as lost (`lost_messages`), on the publishing node.
      const lost = (d) => (d.publish_errors || 0) + (d.lost_messages || 0);
      const counted = lost(h1.W1.datasource) > lost(h0.W1.datasource);
      console.error(`# the gap's publish: delivered to W2: ${delivered}; counted: ${counted}; buffered during the outage: ${gapHealth.datasource.buffered}`);
      assert.ok(delivered || counted, `the gap's publish reached W2 (${delivered}) or was counted (${safeJson(h1.W1.datasource)})`);
      // And /healthz showed it waiting (README: publishes made meanwhile wait, `buffered`).
      if (!counted) {
        assert.ok(gapHealth.datasource.buffered >= 1, `/healthz datasource.buffered counts the publish waiting during the outage: ${safeJson(gapHealth.datasource)}`);
      }
    } else {
      console.error(`# reference: the gap's publish ${delivered ? "was" : "was NOT"} delivered after the restart`);
    }
  });
});
