// Interop on PostgreSQL: mixed clusters of wasio nodes (`builtin:postgres`) and Node.js
// socket.io 4.8 nodes with `@socket.io/postgres-adapter` 0.5, on the shared PostgreSQL
// (lib/postgres-backend.js), each cluster with a channel prefix and an attachments table of
// its own.
//   - lib/postgres-suite.js: rows 1–8 both ways, the notifications' format, payloads of 8000
//     bytes and more and binary through the attachments table, @socket.io/postgres-emitter,
//     malformed notifications;
//   - here: a node dies (row 10), and the attachments' cleanup.
//
// Row 10: W2 (wasio) is SIGKILLed; right away (well within heartbeatTimeout of its last
// heartbeat, so every node still counts it) requests start from W1 and from N1. Node's
// postgres adapter (socket.io-adapter's ClusterAdapterWithHeartbeat): fetchSockets rejects at
// its timeout (`timeoutMs` = T here); allRooms (derived from fetchSockets by the Node test
// node) the same; serverSideEmit with ack waits a fixed 5 s, or until the dead node is
// forgotten (its pending requests then complete with what came); a broadcast with ack ends at
// its own timeout, incomplete. wasio: everything at `requestsTimeout` (T < heartbeatTimeout).
// Nothing hangs, the live nodes' answers are there, and after heartbeatTimeout the survivors
// count 2 servers and requests complete at once.
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until } = require("../lib/cluster");
const { postgresBackend } = require("../lib/postgres-backend");
const { definePostgresSuite, attachmentRows } = require("../lib/postgres-suite");

definePostgresSuite();

const T = 800; // wasio's requestsTimeout, and the timeout of N1's fetchSockets / broadcast with ack
const NODE_SSE_TIMEOUT = 5000; // socket.io-adapter's DEFAULT_TIMEOUT: not configurable
const HEARTBEAT_INTERVAL = 300;
const HEARTBEAT_TIMEOUT = 2000;

describe("postgres: a wasio node dies mid-request (W1, W2 wasio + N1 Node.js)", () => {
  let backend;
  let c;
  before(async () => {
    backend = await postgresBackend();
    const { channelPrefix, tableName } = await backend.fresh("dies");
    c = await startCluster({
      backend: "postgres",
      postgresUrl: backend.url,
      channelPrefix,
      tableName,
      wasio: 2,
      node: 1,
      requestsTimeout: T,
      heartbeatInterval: HEARTBEAT_INTERVAL,
      heartbeatTimeout: HEARTBEAT_TIMEOUT,
      namespaces: ["/", "/chat"],
    });
  });
  afterEach(() => c && c.assertAlive(["W2"]));
  after(async () => {
    try {
      if (c) await c.stop();
    } finally {
      if (backend) await backend.stop();
    }
  });

  let results; // {W1: {serverCount, fetchSockets, allRooms, serverSideEmit, broadcastWithAck}, N1: {...}}: each with tookMs
  let clients;
  let u;
  let killedAt;
  const ACK_EVENT = "dies-ack";
  const timed = async (node, opName, arg) => {
    const started = Date.now();
    const res = await node.op(opName, arg, { timeoutMs: NODE_SSE_TIMEOUT + 8000 });
    return { ...res, tookMs: Date.now() - started };
  };
  const requests = (n, tag, ackTimeout = T) => ({
    fetchSockets: timed(n, "fetchSockets", { nsp: "/", timeoutMs: T }),
    allRooms: timed(n, "allRooms", { nsp: "/", timeoutMs: T }),
    serverSideEmit: timed(n, "serverSideEmit", { nsp: "/", args: ["sse", { u, from: n.name, tag }], ack: true }),
    broadcastWithAck: timed(n, "broadcastWithAck", { nsp: "/", event: ACK_EVENT, data: tag, timeoutMs: ackTimeout }),
  });

  it("requests from a wasio node and from a Node node end (none hangs), with the live nodes' answers", async () => {
    const [W1, N1, W2] = [c.byName.W1, c.byName.N1, c.byName.W2];
    u = uid("dies");
    clients = {};
    for (const n of [W1, N1, W2]) {
      const s = await c.connect(n, "/");
      s.on(ACK_EVENT, (data, cb) => cb(n.name));
      await ack(s, "join", `${u}-${n.name}`);
      clients[n.name] = s;
    }

    W2.signal("SIGKILL");
    await W2.waitExit();
    killedAt = Date.now();
    const counts = { W1: W1.op("serverCount", { nsp: "/" }), N1: N1.op("serverCount", { nsp: "/" }) };
    const pending = { W1: requests(W1, "during"), N1: requests(N1, "during") };
    const issueDelay = Date.now() - killedAt;
    results = {};
    for (const n of ["W1", "N1"]) {
      results[n] = { serverCount: await counts[n] };
      for (const [k, p] of Object.entries(pending[n])) results[n][k] = await p;
    }
    // Every mismatch at once, so that a failure tells the whole story.
    const problems = [];
    const check = (cond, what) => cond || problems.push(what);
    check(issueDelay < HEARTBEAT_TIMEOUT - HEARTBEAT_INTERVAL - 500, `(test) the requests went out ${issueDelay} ms after the kill, while W2 still counts`);
    for (const [name, other] of [
      ["N1", "W1"],
      ["W1", "N1"],
    ]) {
      const r = results[name];
      const node = c.byName[name];
      const from = `from ${name} (${node.kind})`;
      check(r.serverCount.count === 3, `${name} still counts W2 right after the kill (within heartbeatTimeout): ${safeJson(r.serverCount)}`);
      for (const op of ["fetchSockets", "allRooms", "broadcastWithAck"]) {
        check(r[op].tookMs >= T - 50, `${op} ${from} waited for the timeout: ${r[op].tookMs} ms ${safeJson(r[op])}`);
        check(r[op].tookMs < T + 3000, `${op} ${from} ended soon after the timeout: ${r[op].tookMs} ms`);
      }
      // serverSideEmit: wasio's at requestsTimeout; Node's when W2 is forgotten or at 5 s.
      const sseMax = node.kind === "node" ? NODE_SSE_TIMEOUT + 2000 : T + 3000;
      check(r.serverSideEmit.tookMs >= T - 50, `serverSideEmit ${from} waited for W2: ${r.serverSideEmit.tookMs} ms ${safeJson(r.serverSideEmit)}`);
      check(r.serverSideEmit.tookMs < sseMax, `serverSideEmit ${from} ended within ${sseMax} ms: ${r.serverSideEmit.tookMs} ms`);
      // What the live nodes answered, where the call resolves (Node's rejects: next test).
      if (r.fetchSockets.ok) {
        const ids = r.fetchSockets.sockets.map((x) => x.id);
        check(ids.includes(clients.W1.id) && ids.includes(clients.N1.id), `fetchSockets ${from} has the live nodes' sockets: ${safeJson(r.fetchSockets)}`);
      }
      if (r.allRooms.ok) {
        const rooms = r.allRooms.rooms.filter((x) => x.startsWith(u)).sort();
        check(rooms.includes(`${u}-W1`) && rooms.includes(`${u}-N1`), `allRooms ${from} has the live nodes' rooms: ${safeJson(r.allRooms)}`);
      }
      const sse = r.serverSideEmit;
      check(JSON.stringify(sse.responses) === JSON.stringify([other]), `serverSideEmit ack ${from} carries the live node's answer [${other}]: ${safeJson(sse)}`);
      const bwa = r.broadcastWithAck;
      check(bwa.ok === true, `broadcastWithAck ${from} answered: ${safeJson(bwa)}`);
      check(safeJson([...(bwa.responses || [])].sort()) === safeJson(["N1", "W1"]), `broadcastWithAck ${from} has the live nodes' clients' acks: ${safeJson(bwa)}`);
      check(bwa.complete === false, `broadcastWithAck ${from} is incomplete (W2's client count never came): ${safeJson(bwa)}`);
    }
    assert.deepEqual(problems, [], "requests in flight when W2 died");
  });

  it("the timeouts are reported as errors: fetchSockets and allRooms reject, wasio's serverSideEmit ack gets an error", () => {
    assert.ok(results, "the previous test ran");
    const problems = [];
    for (const name of ["N1", "W1"]) {
      const r = results[name];
      const from = `from ${name} (${c.byName[name].kind})`;
      const ops = ["fetchSockets", "allRooms"];
      // Node's serverSideEmit completes without error once W2 is forgotten (before its 5 s).
      if (c.byName[name].kind === "wasio") ops.push("serverSideEmit");
      for (const op of ops) {
        if (!/timeout/i.test(String(r[op].error))) problems.push(`${op} ${from} reports the timeout as an error: got ${safeJson(r[op])}`);
      }
    }
    assert.deepEqual(problems, [], "timeout outcomes");
  });

  it("after heartbeatTimeout the dead node is forgotten: 2 servers, requests complete at once", async () => {
    assert.ok(results, "the first test ran");
    const [W1, N1] = [c.byName.W1, c.byName.N1];
    for (const n of [W1, N1]) {
      for (const nsp of ["/", "/chat"]) {
        await until(async () => (await n.op("serverCount", { nsp })).count === 2, {
          timeoutMs: HEARTBEAT_TIMEOUT + 4000,
          what: `${n.name} serverCount(${nsp}) == 2`,
        });
      }
    }
    const forgottenAfter = Date.now() - killedAt;
    assert.ok(forgottenAfter < HEARTBEAT_TIMEOUT + 4000, `forgotten ${forgottenAfter} ms after the kill`);
    for (const n of [W1, N1]) {
      const r = requests(n, "after", 3000);
      const fs = await r.fetchSockets;
      assert.equal(fs.ok, true, `${n.name} fetchSockets after the death: ${safeJson(fs)}`);
      assert.ok(fs.tookMs < T, `${n.name} fetchSockets completes before the timeout (${fs.tookMs} ms)`);
      const ids = fs.sockets.map((s) => s.id);
      assert.ok(ids.includes(clients.W1.id) && ids.includes(clients.N1.id), `${n.name} sees the live sockets`);
      assert.ok(!ids.includes(clients.W2.id), `${n.name} no longer sees the dead node's socket`);
      const rooms = await r.allRooms;
      assert.equal(rooms.ok, true, `${n.name} allRooms after the death: ${safeJson(rooms)}`);
      assert.ok(rooms.tookMs < T, `${n.name} allRooms completes before the timeout (${rooms.tookMs} ms)`);
      assert.deepEqual(
        rooms.rooms.filter((x) => x.startsWith(u)).sort(),
        [`${u}-N1`, `${u}-W1`],
        `${n.name} allRooms has the live nodes' rooms only`,
      );
      const sse = await r.serverSideEmit;
      assert.equal(sse.ok, true, `${n.name} serverSideEmit with ack after the death: ${safeJson(sse)}`);
      assert.deepEqual(sse.responses, [n.name === "W1" ? "N1" : "W1"]);
      assert.ok(sse.tookMs < T, `${n.name} serverSideEmit completes before the timeout (${sse.tookMs} ms)`);
      const bwa = await r.broadcastWithAck;
      assert.equal(bwa.ok, true, safeJson(bwa));
      assert.deepEqual([...bwa.responses].sort(), ["N1", "W1"], `${n.name} broadcastWithAck: the live clients' acks`);
      assert.equal(bwa.complete, true, `${n.name} broadcastWithAck complete before the timeout (${bwa.elapsedMs} ms)`);
    }
  });
});

// `cleanupInterval`: every cleanupInterval ms a node deletes the attachment rows older than
// cleanupInterval ms. W1 alone (a wasio node; Node.js under WASIO_POSTGRES_REFERENCE), so the
// deletion is its doing.
describe("postgres: the attachments' cleanup (W1 alone, cleanupInterval 1000)", () => {
  const CLEANUP = 1000;
  let backend;
  let c;
  before(async () => {
    backend = await postgresBackend();
    const { channelPrefix, tableName } = await backend.fresh("clean");
    c = await startCluster({ backend: "postgres", postgresUrl: backend.url, channelPrefix, tableName, cleanupInterval: CLEANUP, wasio: 1, node: 0, namespaces: ["/"] });
  });
  after(async () => {
    try {
      if (c) await c.stop();
    } finally {
      if (backend) await backend.stop();
    }
  });

  it("attachment rows older than cleanupInterval are deleted, younger ones kept", async () => {
    const W1 = c.byName.W1;
    // A row made an hour ago, one dated an hour ahead (never old enough), and W1's own
    // binary broadcast's row.
    const [old, young] = [uid("old"), uid("young")];
    await backend.pool.query(`INSERT INTO ${c.tableName} (created_at, payload) VALUES (now() - interval '1 hour', $1), (now() + interval '1 hour', $2)`, [Buffer.from(old), Buffer.from(young)]);
    const u = uid("clean");
    const res = await W1.op("broadcast", { nsp: "/", event: "bin", data: { u, bin: crypto.randomBytes(16) } });
    assert.deepEqual(res, { ok: true });
    await until(async () => (await attachmentRows(backend.pool, c.tableName, u)).length === 1, { what: "W1's attachment row" });
    await until(async () => (await attachmentRows(backend.pool, c.tableName, old)).length === 0, { timeoutMs: CLEANUP * 3 + 2000, what: "the hour-old row deleted" });
    await until(async () => (await attachmentRows(backend.pool, c.tableName, u)).length === 0, { timeoutMs: CLEANUP * 3 + 2000, what: "W1's row deleted once older than cleanupInterval" });
    assert.equal((await attachmentRows(backend.pool, c.tableName, young)).length, 1, "the young row is kept");
  });
});
