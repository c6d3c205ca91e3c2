// Interop matrix row 10 on Redis: a node dies in the middle of cluster requests.
//
// Cluster W1 (wasio), N1 (Node.js) and the victim W2 (wasio). W2 is frozen (SIGSTOP: still
// subscribed, so counted by NUMSUB / SHARDNUMSUB, but answering nothing), requests start
// from W1 and from N1, and W2 is SIGKILLed while they wait. What Node's adapter 8.3 does
// then, and wasio must do the same:
//   classic  fetchSockets() and allRooms() reject at `requestsTimeout` ("timeout reached
//            while waiting for ... response"); serverSideEmit with ack calls back at
//            `requestsTimeout` with an error and the live nodes' answers.
//   sharded  (socket.io-adapter's ClusterAdapter) fetchSockets() rejects at its timeout
//            ("timeout reached: only 1 responses received out of 2"); it has no allRooms()
//            (the Node test node derives rooms from fetchSockets, so it rejects the same way);
//            serverSideEmit with ack calls back after a fixed 5 s with an error and the
//            live nodes' answers.
// After the death the survivors count 2 servers and requests complete at once.
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until } = require("../lib/cluster");

const T = 800; // requestsTimeout, ms
const SHARDED_SSE_TIMEOUT = 5000; // socket.io-adapter's ClusterAdapter: not configurable

for (const mode of ["classic", "sharded"]) {
  describe(`redis ${mode}: a node dies mid-request`, () => {
    let c;
    before(async () => {
      // Sharded: subscriptionMode "static" (the rooms play no part here).
      c = await startCluster({ wasio: 2, node: 1, mode, subscriptionMode: "static", requestsTimeout: T, namespaces: ["/", "/chat"] });
    });
    afterEach(() => c && c.assertAlive(["W2"]));
    after(async () => {
      if (c) await c.stop();
    });

    let results; // {W1: {fetchSockets, allRooms, serverSideEmit}, N1: {...}}: each with tookMs
    let clients;
    let u;
    const timed = async (node, opName, arg) => {
      const started = Date.now();
      const res = await node.op(opName, arg, { timeoutMs: SHARDED_SSE_TIMEOUT + 5000 });
      return { ...res, tookMs: Date.now() - started };
    };

    it("requests from a wasio node and from a Node node end at their timeout, with the live nodes' answers", async () => {
      const [W1, N1, W2] = [c.byName.W1, c.byName.N1, c.byName.W2];
      u = uid("dies");
      clients = {};
      for (const n of [W1, N1, W2]) {
        clients[n.name] = await c.connect(n, "/");
        await ack(clients[n.name], "join", `${u}-${n.name}`);
      }

      W2.signal("SIGSTOP");
      const requests = {};
      for (const n of [W1, N1]) {
        requests[n.name] = {
          fetchSockets: timed(n, "fetchSockets", { nsp: "/", timeoutMs: T }),
          allRooms: timed(n, "allRooms", { nsp: "/", timeoutMs: T }),
          serverSideEmit: timed(n, "serverSideEmit", { nsp: "/", args: ["sse", { u, from: n.name }], ack: true }),
        };
      }
      // Both requests are out once the live nodes ran each other's handler; W2 dies now.
      await W1.ops.inbox.waitFor("serverSideEmitted", (d) => d.args[1] && d.args[1].u === u && d.args[1].from === "N1");
      await N1.ops.inbox.waitFor("serverSideEmitted", (d) => d.args[1] && d.args[1].u === u && d.args[1].from === "W1");
      W2.signal("SIGKILL");
      await W2.waitExit();

      results = {};
      for (const n of ["W1", "N1"]) {
        results[n] = {};
        for (const [k, p] of Object.entries(requests[n])) results[n][k] = await p;
      }
      // Every mismatch at once, so that a failure tells the whole story.
      const problems = [];
      const check = (cond, what) => {
        if (!cond) problems.push(what);
      };
      for (const [name, other] of [
        ["N1", "W1"],
        ["W1", "N1"],
      ]) {
        const r = results[name];
        const from = `from ${name} (${c.byName[name].kind})`;
        for (const op of ["fetchSockets", "allRooms"]) {
          check(r[op].tookMs >= T - 50, `${op} ${from} waited for the timeout: ${r[op].tookMs} ms`);
          check(r[op].tookMs < T + 3000, `${op} ${from} ended soon after the timeout: ${r[op].tookMs} ms`);
        }
        // What the live nodes answered, where the call resolves (Node's rejects: next test).
        if (r.fetchSockets.ok) {
          const ids = r.fetchSockets.sockets.map((x) => x.id);
          check(ids.includes(clients.W1.id) && ids.includes(clients.N1.id), `fetchSockets ${from} has the live nodes' sockets: ${JSON.stringify(r.fetchSockets)}`);
        }
        if (r.allRooms.ok) {
          const rooms = r.allRooms.rooms.filter((x) => x.startsWith(u)).sort();
          check(rooms.includes(`${u}-W1`) && rooms.includes(`${u}-N1`), `allRooms ${from} has the live nodes' rooms: ${JSON.stringify(r.allRooms)}`);
        }
        const sse = r.serverSideEmit;
        check(JSON.stringify(sse.responses) === JSON.stringify([other]), `serverSideEmit ack ${from} carries the live node's answer [${other}]: ${JSON.stringify(sse)}`);
        const sseTimeout = mode === "sharded" && c.byName[name].kind === "node" ? SHARDED_SSE_TIMEOUT : T;
        check(sse.tookMs >= sseTimeout - 50, `serverSideEmit ${from} waited for its timeout: ${sse.tookMs} ms`);
      }
      assert.deepEqual(problems, [], "requests in flight when W2 died");
    });

    it("the outcome is Node's adapter 8.3's: fetchSockets and allRooms reject, serverSideEmit's ack gets an error (and the answers)", () => {
      assert.ok(results, "the previous test ran");
      const problems = [];
      for (const name of ["N1", "W1"]) {
        const r = results[name];
        const from = `from ${name} (${c.byName[name].kind})`;
        for (const op of ["fetchSockets", "allRooms", "serverSideEmit"]) {
          if (!/timeout/i.test(String(r[op].error))) problems.push(`${op} ${from} reports the timeout as an error: got ${JSON.stringify(r[op])}`);
        }
      }
      assert.deepEqual(problems, [], "timeout outcomes");
    });

    it("then the dead node is forgotten: 2 servers, requests complete at once", async () => {
      assert.ok(results, "the first test ran");
      const [W1, N1] = [c.byName.W1, c.byName.N1];
      // The survivors forget W2: 2 servers, and requests complete at once.
      for (const n of [W1, N1]) {
        for (const nsp of ["/", "/chat"]) {
          await until(async () => (await n.op("serverCount", { nsp })).count === 2, { what: `${n.name} serverCount(${nsp}) == 2` });
        }
        const fs = await timed(n, "fetchSockets", { nsp: "/", timeoutMs: T });
        assert.equal(fs.ok, true, `${n.name} fetchSockets after the death: ${safeJson(fs)}`);
        assert.ok(fs.tookMs < T, `${n.name} fetchSockets completes before the timeout (${fs.tookMs} ms)`);
        const ids = fs.sockets.map((s) => s.id);
        assert.ok(ids.includes(clients.W1.id) && ids.includes(clients.N1.id), `${n.name} sees the live sockets`);
        assert.ok(!ids.includes(clients.W2.id), `${n.name} no longer sees the dead node's socket`);
        const rooms = await timed(n, "allRooms", { nsp: "/", timeoutMs: T });
        assert.equal(rooms.ok, true, `${n.name} allRooms after the death: ${safeJson(rooms)}`);
        assert.ok(rooms.tookMs < T, `${n.name} allRooms completes before the timeout (${rooms.tookMs} ms)`);
        assert.deepEqual(
          rooms.rooms.filter((r) => r.startsWith(u)).sort(),
          [`${u}-N1`, `${u}-W1`],
          `${n.name} allRooms has the live nodes' rooms only`,
        );
        const sse = await timed(n, "serverSideEmit", { nsp: "/", args: ["sse", { u: `${u}-after` }], ack: true });
        assert.equal(sse.ok, true, `${n.name} serverSideEmit with ack after the death: ${safeJson(sse)}`);
        assert.deepEqual(sse.responses, [n.name === "W1" ? "N1" : "W1"]);
      }
    });
  });
}
