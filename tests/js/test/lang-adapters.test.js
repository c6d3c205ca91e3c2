// The language adapters of guest-adapters/json-* (the `wasio-json` protocol,
// guest-adapters/json-protocol.md) in real clusters: two wasio test nodes on the Redis at
// WASIO_TEST_REDIS_URL, each loading the adapter's component from WASIO_TEST_GUESTS, with
// socket.io-client clients on both. Every adapter runs the scenarios with itself, then
// every other adapter with the first one (a mixed cluster: the implementations must
// interoperate).
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { createClient } = require("redis");
const { ack, fence, uid, safeJson } = require("../lib/client");
const { REFERENCE, startCluster, until, waitServerCount } = require("../lib/cluster");
const { guestsDir } = require("../lib/server");
const { WAIT_MS, sorted, names, scenarios } = require("../lib/interop-rows");

// One line per adapter; the first is the partner of every other in the mixed clusters.
const ADAPTERS = [
  { name: "python", wasm: "json_python.wasm" },
  { name: "js", wasm: "json_js.wasm" },
  { name: "rust", wasm: "json_rust.wasm" },
];

const NSP = ["/"];
const REQUESTS_TIMEOUT_MS = 1000; // the guests' `requestsTimeout` (the host waits 2000 ms + 1 s)
// A debug host compiles the 18 MB Python component in about 25 s per node (the first time:
// the host caches compiled components on disk).
const START_TIMEOUT_MS = 120000;

const dir = guestsDir();
const skip = !dir
  ? "WASIO_TEST_GUESTS is not set (it must name the directory holding the json_*.wasm adapters)"
  : REFERENCE && "WASIO_REDIS_REFERENCE: these adapters have no Node.js counterpart";

const PAIRS = [...ADAPTERS.map((a) => [a, a]), ...ADAPTERS.slice(1).map((a) => [ADAPTERS[0], a])];
for (const [a, b] of PAIRS) defineSuite(a, b);

function defineSuite(a, b) {
  const label = a === b ? `json-${a.name}` : `json-${a.name} + json-${b.name}`;
  describe(`${label}: two wasio nodes on Redis`, { skip }, () => {
    let c;
    let key; // the channel prefix of this cluster
    let redis; // a plain client of the same Redis, to publish garbage

    before(async () => {
      key = uid("json");
      c = await startCluster({ wasio: 0, node: 0, key, namespaces: NSP, requestsTimeout: REQUESTS_TIMEOUT_MS });
      const adapterOptions = { prefix: key, requestsTimeout: REQUESTS_TIMEOUT_MS };
      const started = await Promise.allSettled(
        [["W1", a], ["W2", b]].map(([name, x]) => c.add({ role: "wasio", name, wasm: path.join(dir, x.wasm), adapterOptions, startTimeoutMs: START_TIMEOUT_MS })),
      );
      const failed = started.find((r) => r.status === "rejected");
      if (failed) throw failed.reason;
      await waitServerCount(c.nodes, 2, NSP);
      redis = createClient({ url: c.redisUrl });
      redis.on("error", () => {});
      await redis.connect();
    });
    afterEach(() => {
      if (!c) return;
      c.closeClients();
      c.assertAlive();
    });
    after(async () => {
      if (redis) await redis.quit().catch(() => {});
      if (c) await c.stopChecked();
    });

    const { spread, onNode, expectExactly, localRooms, disconnected } = scenarios(() => c);
    const other = (n) => c.nodes.find((x) => x !== n);

    it("a broadcast to all, from each node, reaches every client once; exceptSelf skips only the sender", async () => {
      const all = await spread("/", 2);
      for (const n of c.nodes) {
        const u = uid("all");
        assert.deepEqual(await n.op("broadcast", { event: "hello", data: { u } }), { ok: true });
        await expectExactly(all, all, "hello", (d) => d && d.u === u, onNode(all, n.name));

        const sender = onNode(all, n.name);
        const v = uid("bc");
        const res = await ack(sender, "publish", { event: "hello", data: { u: v }, exceptSelf: true });
        assert.equal(res.ok, true, safeJson(res));
        await expectExactly(all, all.filter((s) => s !== sender), "hello", (d) => d && d.u === v, sender);
      }
    });

    it("a room broadcast, from each node, reaches the room's members on both nodes only", async () => {
      const all = await spread("/", 2); // two clients on each node
      const [R, X] = [uid("room"), uid("except")];
      const members = all.filter((_, i) => i !== 1);
      for (const s of members) await ack(s, "join", R);
      await ack(all[3], "join", X);
      for (const n of c.nodes) {
        const pub = onNode(all, n.name);
        const [t1, t2] = [uid("r"), uid("rx")];
        await n.op("broadcast", { rooms: [R], event: "rm", data: { t: t1 } });
        await expectExactly(all, members, "rm", (d) => d && d.t === t1, pub);
        await n.op("broadcast", { rooms: [R], except: [X], event: "rm", data: { t: t2 } });
        await expectExactly(all, members.filter((s) => s !== all[3]), "rm", (d) => d && d.t === t2, pub);
      }
    });

    it("fetchSockets from each node lists both nodes' sockets: id, node, rooms, handshake and data", async () => {
      const all = await spread("/", 1);
      const u = uid("fs");
      for (const s of all) await ack(s, "join", `${u}-${s.node}`);
      const nodeId = {};
      for (const n of c.nodes) nodeId[n.name] = (await n.op("info")).nodeId;
      const want = all.map((s) => ({ id: s.id, serverId: nodeId[s.node], rooms: [`${u}-${s.node}`], auth: { token: s.token }, data: { node: s.node } }));
      for (const n of c.nodes) {
        const res = await n.op("fetchSockets", {});
        assert.equal(res.ok, true, safeJson(res));
        const seen = res.sockets
          .filter((x) => all.some((s) => s.id === x.id))
          .map((x) => ({ id: x.id, serverId: x.serverId, rooms: x.rooms.filter((r) => r.startsWith(u)), auth: x.handshake.auth, data: x.data }));
        const byId = (p, q) => p.id.localeCompare(q.id);
        assert.deepEqual(seen.sort(byId), [...want].sort(byId), `fetchSockets from ${n.name}`);

        const remote = all.find((s) => s.node !== n.name);
        const one = await n.op("fetchSockets", { rooms: [`${u}-${remote.node}`] });
        assert.deepEqual(one.sockets.map((x) => x.id), [remote.id], `fetchSockets of one room from ${n.name}`);
      }
    });

    it("allRooms from each node is the union of both nodes' rooms; serverCount is 2", async () => {
      const all = await spread("/", 1);
      const u = uid("ar");
      for (const s of all) await ack(s, "join", [`${u}-${s.node}`, `${u}-shared`]);
      const want = sorted([...c.nodes.map((n) => `${u}-${n.name}`), `${u}-shared`]);
      for (const n of c.nodes) {
        const res = await n.op("allRooms", {});
        assert.equal(res.ok, true, safeJson(res));
        assert.deepEqual(sorted(res.rooms.filter((r) => r.startsWith(u))), want, `allRooms from ${n.name}`);
        assert.deepEqual(await n.op("serverCount", {}), { ok: true, count: 2 });
      }
    });

    it("socketsJoin, socketsLeave and disconnectSockets from each node apply on the other", async () => {
      for (const origin of c.nodes) {
        const all = await spread("/", 2);
        const local = all.find((s) => s.node === origin.name);
        const [remote, bystander] = all.filter((s) => s.node !== origin.name);
        const [S, T] = [uid("s"), uid("t")];
        for (const s of [local, remote]) await ack(s, "join", S);

        assert.deepEqual(await origin.op("socketsJoin", { rooms: [S], room: T }), { ok: true });
        await until(async () => (await localRooms(remote, "/")).includes(T), { what: `${remote.who || remote.id} joined ${T}` });
        assert.ok(!(await localRooms(bystander, "/")).includes(T), "a socket outside the targeted room did not join");
        const t = uid("t");
        await origin.op("broadcast", { rooms: [T], event: "t", data: { t } });
        await expectExactly(all, [local, remote], "t", (d) => d && d.t === t, local);

        assert.deepEqual(await origin.op("socketsLeave", { rooms: [S], room: T }), { ok: true });
        await until(async () => !(await localRooms(remote, "/")).includes(T), { what: `${remote.id} left ${T}` });

        assert.deepEqual(await origin.op("disconnectSockets", { rooms: [S] }), { ok: true });
        await disconnected(remote);
        await disconnected(local);
        assert.deepEqual(remote.disconnects, ["io server disconnect"]);
        await fence(onNode([bystander], bystander.node), [bystander]); // still connected and served
        c.closeClients();
      }
    });

    it("serverSideEmit from each node runs on the other; with an ack, the other node's answer comes back", async () => {
      for (const n of c.nodes) {
        const u = uid("sse");
        assert.deepEqual(await n.op("serverSideEmit", { args: ["sse", { u }, 42] }), { ok: true });
        const rec = await other(n).ops.inbox.waitFor("serverSideEmitted", (d) => d.args[1] && d.args[1].u === u, {
          timeoutMs: WAIT_MS,
          what: `serverSideEmit from ${n.name} on ${other(n).name}`,
        });
        assert.deepEqual(rec.args[0], { node: other(n).name, nsp: "/", args: ["sse", { u }, 42] });

        const res = await n.op("serverSideEmit", { args: ["sse", { u: `${u}-ack` }], ack: true });
        assert.deepEqual(res, { ok: true, responses: [other(n).name] }, `serverSideEmit with ack from ${n.name}`);
      }
    });

    it("a request the other node does not answer ends at requestsTimeout with a timeout", async () => {
      const [n, silent] = c.nodes;
      await silent.op("holdServerSideAcks", { hold: true });
      try {
        const started = Date.now();
        const res = await n.op("serverSideEmit", { args: ["sse", { held: true }], ack: true });
        const elapsed = Date.now() - started;
        assert.match(String(res.error), /time/i, safeJson(res));
        assert.deepEqual(res.responses, []);
        // The host would cut the request off only at 3000 ms: the guest's timer ended it.
        assert.ok(elapsed >= REQUESTS_TIMEOUT_MS - 50 && elapsed < 2000, `ended after ${elapsed} ms`);
      } finally {
        await silent.op("holdServerSideAcks", { hold: false });
      }
    });

    it("broadcastWithAck from each node gets one ack per client of both nodes, complete before the timeout", async () => {
      const all = await spread("/", 2);
      const ev = uid("ackme");
      for (const s of all) s.on(ev, (data, cb) => cb({ id: s.id, data }));
      for (const n of c.nodes) {
        const res = await n.op("broadcastWithAck", { event: ev, data: 7, timeoutMs: 3000 });
        assert.equal(res.ok, true, safeJson(res));
        assert.deepEqual(res.errors, []);
        assert.deepEqual(sorted(res.responses.map((r) => r.id)), names(all), `one ack from each client (from ${n.name})`);
        assert.ok(res.responses.every((r) => r.data === 7));
        assert.equal(res.complete, true, `ended when every node's clients had answered, not at the timeout (${res.elapsedMs} ms)`);
      }
    });

    it("malformed messages are refused and counted as dropped; nothing traps and relaying goes on", async () => {
      const opts = { rooms: [], except: [], flags: { local: false, broadcast: false, volatile: false }, sid: null, serverId: null };
      const msg = (fields) => JSON.stringify({ v: 1, uid: "intruder", nsp: "/", ...fields });
      const GARBAGE = [
        "{not json",
        Buffer.from([0xff, 0xfe, 0x7b, 0x7d]), // not UTF-8
        "[1, 2, 3]",
        JSON.stringify({ v: 2, uid: "intruder", nsp: "/", type: "broadcast", packet: "kwE=", opts }),
        msg({ type: "no-such-type" }),
        msg({ type: "broadcast", opts }), // no packet
        msg({ type: "broadcast", packet: "!!not base64", opts }),
        msg({ type: "broadcast", packet: Buffer.from([0xc1]).toString("base64"), opts }), // not MessagePack
        msg({ type: "join", opts: { ...opts, rooms: [1] }, rooms: ["x"] }),
        msg({ type: "fetch", rid: "one", opts }),
        msg({ type: "count", rid: 1, count: -1 }),
        "[".repeat(100000), // deep enough to overflow a guest's stack in a recursive decoder
        '{"a":'.repeat(1000),
      ];
      const counters = async () => Promise.all(c.nodes.map(async (n) => (await n.health()).guest));
      const before = await counters();
      for (const p of GARBAGE) await redis.publish(`${key}#/#`, p);
      for (const [i, n] of c.nodes.entries()) {
        await until(async () => (await n.health()).guest.dropped_messages >= before[i].dropped_messages + GARBAGE.length, {
          what: `${n.name} to drop ${GARBAGE.length} messages`,
        });
      }
      const now = await counters();
      for (const [i, n] of c.nodes.entries()) {
        const delta = (k) => now[i][k] - before[i][k];
        assert.deepEqual(
          { dropped: delta("dropped_messages"), traps: delta("traps"), deadline: delta("deadline_stops"), memory: delta("memory_stops") },
          { dropped: GARBAGE.length, traps: 0, deadline: 0, memory: 0 },
          `${n.name}: ${safeJson(now[i])}`,
        );
      }
      const all = await spread("/", 1);
      for (const n of c.nodes) {
        const u = uid("after");
        await n.op("broadcast", { event: "after", data: { u } });
        await expectExactly(all, all, "after", (d) => d && d.u === u, onNode(all, n.name));
      }
    });

    it("no guest call of the suite trapped or was stopped at the deadline (100 ms) or the memory cap (64 MiB)", async () => {
      for (const n of c.nodes) {
        const { traps, deadline_stops, memory_stops, reinstantiations } = (await n.health()).guest;
        assert.deepEqual({ traps, deadline_stops, memory_stops, reinstantiations }, { traps: 0, deadline_stops: 0, memory_stops: 0, reinstantiations: 0 }, n.name);
      }
    });
  });
}
