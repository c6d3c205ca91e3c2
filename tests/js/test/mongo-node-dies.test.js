// Interop matrix row 10 on MongoDB: a node dies in the middle of cluster requests.
//
// Cluster W1 (wasio), N1 (Node.js, @socket.io/mongo-adapter 0.4) and the victim W2 (wasio),
// on a SecantusDB of the suite's own. W2 is SIGKILLed; right away (well within
// heartbeatTimeout of its last heartbeat, so every node still counts it) requests start from
// W1 and from N1. What Node's mongo adapter 0.4 does then, and wasio must do the same:
//   fetchSockets()    rejects at `requestsTimeout` ("timeout reached: only 1 responses
//                     received out of 2"); allRooms (the adapter has none: the Node test node
//                     derives it from fetchSockets) rejects the same way
//   serverSideEmit    with ack: calls back at `requestsTimeout` with an error and the live
//                     node's answer
//   broadcast w/ ack  ends at its own timeout, incomplete, with the acks of the live
//                     nodes' clients
// After heartbeatTimeout the survivors forget W2 (serverCount = 1 + nodes heard within
// heartbeatTimeout = 2) and requests complete at once without it. The wasio nodes read with
// change streams: heartbeats and request timeouts are the guest's, the same in capped mode,
// whose requests the capped suite covers.
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until } = require("../lib/cluster");
const { mongoBackend } = require("../lib/mongo-backend");

const T = 800; // requestsTimeout, ms
const HEARTBEAT_INTERVAL = 300;
const HEARTBEAT_TIMEOUT = 1500;

const mongoMode = "change-stream";

describe(`mongodb, wasio in ${mongoMode} mode: a node dies mid-request`, () => {
  let backend;
  let c;
  before(async () => {
    backend = await mongoBackend();
    const collection = backend.collection("sio-dies");
    await backend.prepareCollection(collection); // made before the nodes start: lib/mongo-backend.js
    c = await startCluster({
      backend: "mongodb",
      mongoUrl: backend.url,
      collection,
      mongoMode,
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

  let results; // {W1: {fetchSockets, allRooms, serverSideEmit, broadcastWithAck}, N1: {...}}: each with tookMs
  let clients;
  let u;
  let killedAt;
  const ACK_EVENT = "dies-ack";
  const timed = async (node, opName, arg) => {
    const started = Date.now();
    const res = await node.op(opName, arg, { timeoutMs: T + 8000 });
    return { ...res, tookMs: Date.now() - started };
  };
  // `ackTimeout`: the broadcast with ack's own timeout (during the death: T, so that it
  // ends with the others; after: longer, it must complete, not time out).
  const requests = (n, tag, ackTimeout = T) => ({
    fetchSockets: timed(n, "fetchSockets", { nsp: "/" }),
    allRooms: timed(n, "allRooms", { nsp: "/" }),
    serverSideEmit: timed(n, "serverSideEmit", { nsp: "/", args: ["sse", { u, from: n.name, tag }], ack: true }),
    broadcastWithAck: timed(n, "broadcastWithAck", { nsp: "/", event: ACK_EVENT, data: tag, timeoutMs: ackTimeout }),
  });

  it("requests from a wasio node and from a Node node end at their timeout, with the live nodes' answers", async () => {
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
    const pending = { W1: requests(W1, "during"), N1: requests(N1, "during") };
    const issueDelay = Date.now() - killedAt;
    results = {};
    for (const n of ["W1", "N1"]) {
      results[n] = {};
      for (const [k, p] of Object.entries(pending[n])) results[n][k] = await p;
    }
    // Every mismatch at once, so that a failure tells the whole story.
    const problems = [];
    const check = (cond, what) => cond || problems.push(what);
    check(issueDelay < HEARTBEAT_TIMEOUT - HEARTBEAT_INTERVAL - 200, `(test) the requests went out ${issueDelay} ms after the kill, while W2 still counts`);
    for (const [name, other] of [
      ["N1", "W1"],
      ["W1", "N1"],
    ]) {
      const r = results[name];
      const from = `from ${name} (${c.byName[name].kind})`;
      for (const op of ["fetchSockets", "allRooms", "serverSideEmit", "broadcastWithAck"]) {
        check(r[op].tookMs >= T - 50, `${op} ${from} waited for the timeout: ${r[op].tookMs} ms ${safeJson(r[op])}`);
        check(r[op].tookMs < T + 3000, `${op} ${from} ended soon after the timeout: ${r[op].tookMs} ms`);
      }
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

  it("the outcome is Node's mongo adapter 0.4's: fetchSockets and allRooms reject, serverSideEmit's ack gets an error (and the answers)", () => {
    assert.ok(results, "the previous test ran");
    const problems = [];
    for (const name of ["N1", "W1"]) {
      const r = results[name];
      const from = `from ${name} (${c.byName[name].kind})`;
      for (const op of ["fetchSockets", "allRooms", "serverSideEmit"]) {
        if (!/timeout/i.test(String(r[op].error))) problems.push(`${op} ${from} reports the timeout as an error: got ${safeJson(r[op])}`);
      }
    }
    assert.deepEqual(problems, [], "timeout outcomes");
  });

  it("then, after heartbeatTimeout, the dead node is forgotten: 2 servers, requests complete at once", async () => {
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
