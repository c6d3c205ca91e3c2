// Redis behind Sentinel (classic mode): a master, its replica and 3 sentinels of the file's
// own (quorum 2, down-after 1000 ms; lib/redis-cluster.js) under W1 (wasio, datasource
// `redis-sentinel://SENTINEL/0?sentinelServiceName=mymaster&node=SENTINEL2&node=SENTINEL3`,
// fred's form) and N1 (Node.js, @socket.io/redis-adapter 8.3 `createAdapter` on an ioredis 5
// client `{sentinels, name}` and its duplicate).
//
// Broadcasts and requests cross both ways; then the master is SIGKILLed, the sentinels
// promote the replica, both nodes find it through the sentinels, resubscribe there (each
// counts 2 servers: PUBSUB NUMSUB on the new master), a publish made on W1 during the outage
// reaches N1 (or is counted as lost) and broadcasts cross both ways again.
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until, waitServerCount } = require("../lib/cluster");
const { startRedisSentinel } = require("../lib/redis-cluster");

const T = 1000; // requestsTimeout, ms

describe("redis behind sentinel (classic): 1 wasio node + 1 Node.js node", () => {
  let rs;
  let c;
  before(async () => {
    rs = await startRedisSentinel({ sentinels: 3, quorum: 2, downAfterMs: 1000 });
    c = await startCluster({ wasio: 1, node: 1, mode: "classic", requestsTimeout: T, redisUrl: rs.url(), namespaces: ["/"] });
  });
  afterEach(() => {
    if (!c) return;
    c.closeClients();
    c.assertAlive();
  });
  after(async () => {
    if (c) await c.stopChecked();
    if (rs) await rs.stop();
  });

  /** A broadcast from each node reaches a client on every node; a relay publish crosses too. */
  async function crossBothWays(what) {
    const clients = [];
    for (const n of c.nodes) clients.push(await c.connect(n, "/"));
    for (const n of c.nodes) {
      const v = uid("bc");
      assert.deepEqual(await n.op("broadcast", { nsp: "/", event: "bc", data: v }), { ok: true });
      for (const s of clients) await s.inbox.waitFor("bc", (d) => d === v, { what: `${what}: ${n.name}'s broadcast on ${s.node}'s client` });
    }
    for (const s of clients) {
      const v = uid("relay");
      const res = await ack(s, "publish", { event: "relay", data: v, exceptSelf: true });
      assert.equal(res.ok, true, safeJson(res));
      for (const r of clients.filter((x) => x !== s)) {
        await r.inbox.waitFor("relay", (d) => d === v, { what: `${what}: a relay publish from ${s.node}'s client on ${r.node}'s` });
      }
    }
    return clients;
  }

  it("both nodes found the master through the sentinels: broadcasts and requests cross both ways", async () => {
    const h = await c.byName.W1.health();
    assert.equal(h.datasource.connected, true, safeJson(h.datasource));
    if (c.byName.W1.kind === "wasio") assert.match(h.datasource.url, /^redis-sentinel:\/\//);
    const clients = await crossBothWays("before the failover");
    for (const n of c.nodes) {
      const res = await n.op("fetchSockets", { nsp: "/" });
      assert.equal(res.ok, true, `${n.name} fetchSockets: ${safeJson(res)}`);
      assert.deepEqual(res.sockets.map((s) => s.id).sort(), clients.map((s) => s.id).sort());
      const sse = await n.op("serverSideEmit", { nsp: "/", args: ["sse", { u: uid("sse") }], ack: true });
      assert.deepEqual(sse.responses, [n.name === "W1" ? "N1" : "W1"], `${n.name} serverSideEmit ack: ${safeJson(sse)}`);
    }
  });

  it("the master dies: the sentinels promote the replica, both nodes follow, broadcasts cross again", async () => {
    assert.equal(await rs.masterAddr(), rs.masterPort);
    const W1 = c.byName.W1;
    const a = await c.connect(W1, "/");
    const b = await c.connect(c.byName.N1, "/");
    const before = (await W1.health()).datasource;
    const tKill = Date.now();
    await rs.kill(rs.masterPort);
    await until(async () => (await W1.health()).datasource.connected === false, { timeoutMs: 10000, what: "W1 /healthz datasource.connected == false" });
    // A publish during the outage: acked, served on its own node, and held for later.
    const gap = uid("gap");
    assert.deepEqual(await ack(a, "publish", { event: "gap", data: gap }), { ok: true, count: 1 });
    await rs.waitMaster(rs.replicaPort, { timeoutMs: 30000 });
    const tPromoted = Date.now();
    await until(async () => (await W1.health()).datasource.connected === true, {
      timeoutMs: 20000,
      intervalMs: 100,
      what: "W1 /healthz datasource.connected == true again",
    });
    // Both resubscribed on the new master: each counts 2 servers there.
    await waitServerCount(c.nodes, 2, ["/"], 20000);
    const tBack = Date.now();
    const after = (await W1.health()).datasource;
    console.error(
      `# sentinel failover: kill → promotion ${tPromoted - tKill} ms, promotion → both nodes count 2 on the new master ${tBack - tPromoted} ms; W1 datasource ${safeJson(after)}`,
    );
    assert.ok(after.reconnects > before.reconnects, `W1 counted its reconnect: ${safeJson(after)}`);
    // The outage's publish went out once W1 had found the new master: N1's client gets it,
    // or W1 counted it (publish_errors / lost_messages): never silently lost.
    if (W1.kind === "wasio") {
      const lost = (d) => (d.publish_errors || 0) + (d.lost_messages || 0);
      const delivered = await b.inbox
        .waitFor("gap", (d) => d === gap, { timeoutMs: 5000, what: "the outage's publish on N1's client" })
        .then(() => true, () => false);
      const counted = lost((await W1.health()).datasource) > lost(before);
      console.error(`# sentinel failover: the outage's publish from W1 delivered to N1: ${delivered}; counted as lost: ${counted}`);
      assert.ok(delivered || counted, "the outage's publish reached N1 or was counted");
    }
    const subs = (await rs.cli(rs.replicaPort, ["client", "list"])).split("\n").filter((l) => / (p)?sub=[1-9]/.test(l));
    assert.ok(subs.length >= 2, `both nodes' subscribers are on the new master ${rs.replicaPort}: ${subs.length}`);
    await crossBothWays("after the failover");
  });
});
