// Hot swap under load (issue 6): two wasio nodes on one Redis (classic mode), each with its
// admin API; 500 socket.io clients split over them; a steady stream of broadcasts (to the
// whole namespace, to rooms, to several rooms at once, with and without exceptSelf) and of
// room changes for the whole run; meanwhile 100 swaps, alternating per node (A on even
// steps, B on odd), between `builtin:redis` and redis_next.wasm (the same guest built as
// another component, version 0.1.1-next: tests/redis-next), so the cluster runs mixed
// versions half the time.
//
// Every broadcast carries an id, and its receivers are known exactly when it is sent:
//  - nobody connects or disconnects during the run (the namespace is fixed);
//  - every client is in one static room S0..S9, never left;
//  - the churn rooms X0..X3 change membership one at a time: round t toggles members of
//    X(t % 4) only and publishes to the other three, and a round ends when every broadcast
//    of it reached every receiver, so no broadcast to a room is in flight while it changes.
// Then: zero lost, zero duplicated, zero delivered to a non-member, every publish acked
// with the right local count, zero disconnects, every client still in its rooms, every
// swap answered 200 with the expected versions, and /admin/adapter counts the swaps.
//
// WASIO_TEST_SWAP_CLIENTS / WASIO_TEST_SWAPS scale it (defaults 500 / 100).
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const fs = require("node:fs");
const { connect, closeAll, ack, roomsOf, uid, withTimeout, safeJson } = require("../lib/client");
const { REDIS_URL, until } = require("../lib/cluster");
const { guestsDir } = require("../lib/server");
const { startAdminServer, healthAdapter } = require("../lib/admin");

const CLIENTS = Number(process.env.WASIO_TEST_SWAP_CLIENTS || 500);
const SWAPS = Number(process.env.WASIO_TEST_SWAPS || 100);
const STATIC_ROOMS = 10;
const CHURN_ROOMS = 4;
const PUBLISHES_PER_ROUND = 24;
const TOGGLES_PER_ROUND = 10;
const POLLING_EVERY = 25; // every 25th client on HTTP long-polling, the others on WebSocket
const DELIVERY_TIMEOUT_MS = 10000; // a broadcast not delivered by then is lost
const MAX_BAD_ROUNDS = 5; // stop early (and fail) after this many rounds with losses
const BUILTIN = "builtin:redis";

function nextWasm() {
  const dir = guestsDir();
  if (!dir) throw new Error("WASIO_TEST_GUESTS is not set: it names the directory of redis_next.wasm");
  const p = path.resolve(dir, "redis_next.wasm");
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist: cargo build -p wasio (host/build.rs builds tests/redis-next)`);
  return p;
}

describe(`hot swap under load: ${CLIENTS} clients on 2 nodes (Redis classic), ${SWAPS} swaps`, () => {
  const key = uid("swap-load");
  const options = { key, requestsTimeout: 2000 };
  const nodeConfig = {
    wasm: BUILTIN,
    datasource: "cache",
    options,
    requestTimeoutMs: 4000,
    datasources: { cache: { connector: "redis", url: REDIS_URL } },
  };
  let A;
  let B;
  let clients = []; // {i, socket, node, id, staticRoom, group}
  let run; // what the load run saw, for the assertions

  before(async () => {
    [A, B] = await Promise.all([startAdminServer(nodeConfig), startAdminServer(nodeConfig)]);
    A.label = "A";
    B.label = "B";
  });
  after(async () => {
    closeAll(clients.map((c) => c.socket));
    const died = [];
    for (const n of [A, B]) {
      if (!n) continue;
      const res = await n.stop();
      if (res.exitedEarly) died.push(`${n.label} (code ${res.code}, signal ${res.signal}):\n${res.stderr}`);
    }
    if (died.length) throw new Error(`nodes died during the test: ${died.join("\n")}`);
  });

  it("swaps back and forth under traffic: nothing lost, duplicated or disconnected", { timeout: 480000 }, async (t) => {
    const started = Date.now();
    const next = nextWasm();
    const initial = { A: await A.admin.status(), B: await B.admin.status() };
    for (const [n, st] of Object.entries(initial)) {
      assert.equal(st.name, "redis", `${n} runs the Redis guest: ${safeJson(st)}`);
      assert.equal(st.swaps, 0, `${n} has not swapped yet`);
    }
    const builtinVersion = initial.A.version;
    assert.notEqual(builtinVersion, "0.1.1-next", "the two builds report different versions");

    // ---- clients: half on each node, each in its static room; churn rooms half full.
    const member = Array.from({ length: CHURN_ROOMS }, () => new Set()); // client indexes in Xg
    const roomName = (g) => `${key}-X${g}`;
    const staticName = (r) => `${key}-S${r}`;
    const connectStarted = Date.now();
    for (let base = 0; base < CLIENTS; base += 50) {
      const batch = [];
      for (let i = base; i < Math.min(CLIENTS, base + 50); i++) {
        const node = i % 2 === 0 ? A : B;
        const j = Math.floor(i / 2);
        const transport = i % POLLING_EVERY === POLLING_EVERY - 1 ? "polling" : "websocket";
        batch.push(
          connect(node.url, "/", { transport, timeoutMs: 20000 }).then((socket) => ({
            i,
            socket,
            node,
            id: socket.id,
            staticRoom: staticName(j % STATIC_ROOMS),
            group: j % CHURN_ROOMS,
            inChurn: j % 8 < CHURN_ROOMS,
          })),
        );
      }
      const got = await Promise.all(batch);
      clients.push(...got);
    }
    const connectMs = Date.now() - connectStarted;
    await Promise.all(
      clients.map(async (c) => {
        const rooms = c.inChurn ? [c.staticRoom, roomName(c.group)] : [c.staticRoom];
        const res = await ack(c.socket, "join", rooms, { timeoutMs: 20000 });
        assert.equal(res.ok, true, `client ${c.i} joins ${rooms}: ${safeJson(res)}`);
        if (c.inChurn) member[c.group].add(c.i);
      }),
    );

    // Both nodes hear each other (their subscriptions are up) before the count starts.
    await until(
      async () => {
        const token = uid("warm");
        await ack(clients[0].socket, "publish", { event: "warm", data: token });
        await ack(clients[1].socket, "publish", { event: "warm", data: token });
        await Promise.all([
          clients[1].socket.inbox.waitFor("warm", (d) => d === token, { timeoutMs: 1000 }),
          clients[0].socket.inbox.waitFor("warm", (d) => d === token, { timeoutMs: 1000 }),
        ]);
        return true;
      },
      { timeoutMs: 15000, what: "a broadcast to cross between the nodes both ways" },
    );

    // ---- delivery bookkeeping
    let swapping = "no swap yet"; // what the swap loop is doing, for the problem reports
    const msgs = new Map(); // id → {expected: Set, got: Map i→count, remaining, done, resolve}
    const problems = { duplicated: [], stray: [], unknown: [], publishErrors: [], localCounts: [], roomAcks: [] };
    let delivered = 0;
    for (const c of clients) {
      c.socket.on("m", (data) => {
        delivered++;
        const m = msgs.get(data && data.id);
        if (!m) {
          problems.unknown.push({ client: c.i, data });
          return;
        }
        const n = (m.got.get(c.i) || 0) + 1;
        m.got.set(c.i, n);
        if (!m.expected.has(c.i)) problems.stray.push({ id: m.id, client: c.i, desc: m.desc });
        else if (n > 1) problems.duplicated.push({ id: m.id, client: `${c.i}@${c.node.label}`, times: n, desc: m.desc, during: swapping });
        else if (--m.remaining === 0) m.resolve();
      });
    }
    const staticMembers = new Map();
    for (const c of clients) {
      if (!staticMembers.has(c.staticRoom)) staticMembers.set(c.staticRoom, new Set());
      staticMembers.get(c.staticRoom).add(c.i);
    }
    let seq = 0;
    /** Publishes from `sender` to `rooms` (null: the namespace); resolves the message record. */
    async function publish(sender, rooms, { exceptSelf = false, phase = "" } = {}) {
      const expected = new Set();
      if (rooms === null) for (const c of clients) expected.add(c.i);
      else
        for (const r of rooms) {
          const g = [...Array(CHURN_ROOMS).keys()].find((x) => roomName(x) === r);
          for (const i of g !== undefined ? member[g] : staticMembers.get(r)) expected.add(i);
        }
      if (exceptSelf) expected.delete(sender.i);
      const id = `${key}:${seq++}`;
      const m = { id, expected, got: new Map(), remaining: expected.size, desc: `${phase} from ${sender.i}@${sender.node.label} to ${rooms ? rooms.join("+") : "all"}${exceptSelf ? " exceptSelf" : ""}` };
      m.done = expected.size === 0 ? Promise.resolve() : new Promise((r) => (m.resolve = r));
      msgs.set(id, m);
      const arg = { event: "m", data: { id }, exceptSelf };
      if (rooms) arg.room = rooms;
      let res;
      try {
        res = await ack(sender.socket, "publish", arg, { timeoutMs: 15000 });
      } catch (err) {
        problems.publishErrors.push({ desc: m.desc, error: err.message });
        return m;
      }
      if (!res || res.ok !== true) problems.publishErrors.push({ desc: m.desc, res });
      else {
        const local = [...expected].filter((i) => clients[i].node === sender.node).length;
        if (res.count !== local) problems.localCounts.push({ desc: m.desc, acked: res.count, expected: local });
      }
      return m;
    }
    const pick = (arr) => arr[Math.floor(Math.random() * arr.length)];

    // ---- the load: rounds until the swaps are done (and two more after the last)
    let rounds = 0;
    let badRounds = 0;
    let lost = [];
    let roundWaiters = [];
    let swapsFinished = false;
    const roundDone = () => new Promise((r) => roundWaiters.push(r));
    async function oneRound(t) {
      const churning = t % CHURN_ROOMS;
      const stable = [...Array(CHURN_ROOMS).keys()].filter((g) => g !== churning);
      const toggles = [];
      const groupClients = clients.filter((c) => c.group === churning);
      const chosen = new Set();
      while (chosen.size < Math.min(TOGGLES_PER_ROUND, groupClients.length)) chosen.add(pick(groupClients));
      for (const c of chosen) {
        toggles.push(
          (async () => {
            const isIn = member[churning].has(c.i);
            const op = isIn ? "leave" : "join";
            const res = await ack(c.socket, op, roomName(churning), { timeoutMs: 15000 }).catch((err) => ({ error: err.message }));
            const nowIn = res && res.ok === true && Array.isArray(res.rooms) && res.rooms.includes(roomName(churning));
            if (!res || res.ok !== true || nowIn === isIn) problems.roomAcks.push({ client: c.i, op, res });
            // Only this round's broadcasts could be affected, and none goes to this room.
            if (nowIn) member[churning].add(c.i);
            else member[churning].delete(c.i);
          })(),
        );
      }
      const sent = [];
      for (let k = 0; k < PUBLISHES_PER_ROUND; k++) {
        const sender = pick(clients);
        const phase = `round ${t}`;
        const kind = k % 8;
        if (kind === 0) sent.push(publish(sender, null, { exceptSelf: k % 16 === 0, phase }));
        else if (kind <= 4) sent.push(publish(sender, [staticName(Math.floor(Math.random() * STATIC_ROOMS))], { exceptSelf: kind === 4, phase }));
        else if (kind <= 6) sent.push(publish(sender, [roomName(pick(stable))], { exceptSelf: kind === 6, phase }));
        else sent.push(publish(sender, [staticName(Math.floor(Math.random() * STATIC_ROOMS)), roomName(pick(stable))], { phase }));
      }
      await Promise.all(toggles);
      const ms = await Promise.all(sent);
      const all = Promise.all(ms.map((m) => m.done));
      await withTimeout(all, DELIVERY_TIMEOUT_MS, `round ${t} deliveries`).catch(() => {
        const missing = ms.filter((m) => m.remaining > 0).map((m) => ({ desc: m.desc, missing: [...m.expected].filter((i) => !m.got.has(i)).length, of: m.expected.size }));
        lost.push(...missing);
        badRounds++;
      });
      // Every broadcast of the round was delivered (or counted lost): forget the inboxes.
      for (const c of clients) c.socket.inbox.clear();
    }
    const load = (async () => {
      let after = 0;
      while (badRounds < MAX_BAD_ROUNDS) {
        await oneRound(rounds);
        rounds++;
        for (const w of roundWaiters.splice(0)) w();
        if (swapsFinished && ++after >= 2) break;
      }
    })();

    // ---- the swaps, one at a time, each after at least one round since the previous
    const swaps = [];
    const count = { A: 0, B: 0 };
    const swapStarted = Date.now();
    try {
      for (let step = 0; step < SWAPS && badRounds < MAX_BAD_ROUNDS; step++) {
        await roundDone();
        const node = step % 2 === 0 ? A : B;
        const toNext = count[node.label] % 2 === 0;
        swapping = `swap ${step} of ${node.label} in progress`;
        const res = await node.admin.swap({ wasm: toNext ? next : BUILTIN, datasource: "cache", options });
        swapping = `after swap ${step} of ${node.label}`;
        count[node.label]++;
        swaps.push({ step, node: node.label, toNext, status: res.status, json: res.json, body: res.body, ms: res.ms });
      }
    } finally {
      swapsFinished = true;
    }
    const swapMs = Date.now() - swapStarted;
    await load;

    // ---- a last broadcast to all from each node: anything late (a duplicate) came first
    for (const c of [clients[0], clients[1]]) {
      const m = await publish(c, null, { phase: "final" });
      await withTimeout(m.done, DELIVERY_TIMEOUT_MS, "final broadcast").catch(() => lost.push({ desc: m.desc, missing: m.remaining }));
    }

    // ---- rooms: every client still in exactly the rooms the test put it in
    const roomProblems = [];
    await Promise.all(
      clients.map(async (c) => {
        const want = [c.staticRoom, ...(member[c.group].has(c.i) ? [roomName(c.group)] : [])].sort();
        const got = await roomsOf(c.socket, { timeoutMs: 15000 }).catch((err) => err.message);
        if (JSON.stringify(got) !== JSON.stringify(want)) roomProblems.push({ client: c.i, want, got });
      }),
    );

    const status = { A: await A.admin.status(), B: await B.admin.status() };
    const health = { A: await healthAdapter(A), B: await healthAdapter(B) };
    run = { swaps, status, health, count, builtinVersion };

    const disconnected = clients.filter((c) => c.socket.disconnects.length || !c.socket.connected || c.socket.id !== c.id);
    const badSwaps = swaps.filter((s) => s.status !== 200);
    const swapMsList = swaps.filter((s) => s.json && s.json.total_ms !== undefined).map((s) => s.json.total_ms);
    t.diagnostic(
      `clients ${clients.length} (connect ${connectMs} ms), rounds ${rounds}, broadcasts ${msgs.size}, deliveries ${delivered}, ` +
        `swaps ${swaps.length} in ${swapMs} ms (server total_ms avg ${swapMsList.length ? (swapMsList.reduce((a, b) => a + b, 0) / swapMsList.length).toFixed(1) : "-"}, ` +
        `max ${swapMsList.length ? Math.max(...swapMsList).toFixed(1) : "-"}), run ${Date.now() - started} ms`,
    );

    const report = {
      badSwaps: badSwaps.slice(0, 5).map((s) => ({ step: s.step, node: s.node, status: s.status, body: s.body.slice(0, 300) })),
      lost: lost.slice(0, 10),
      lostCount: lost.length,
      duplicated: problems.duplicated.slice(0, 10),
      duplicatedCount: problems.duplicated.length,
      duplicatedDuring: Object.entries(problems.duplicated.reduce((acc, d) => ({ ...acc, [d.during]: (acc[d.during] || 0) + 1 }), {})).slice(0, 10),
      stray: problems.stray.slice(0, 10),
      strayCount: problems.stray.length,
      unknown: problems.unknown.slice(0, 5),
      publishErrors: problems.publishErrors.slice(0, 5),
      publishErrorCount: problems.publishErrors.length,
      localCounts: problems.localCounts.slice(0, 5),
      roomAcks: problems.roomAcks.slice(0, 5),
      disconnected: disconnected.slice(0, 5).map((c) => ({ client: c.i, reasons: c.socket.disconnects, connected: c.socket.connected })),
      disconnectedCount: disconnected.length,
      roomProblems: roomProblems.slice(0, 5),
      roomProblemCount: roomProblems.length,
    };
    const failures = Object.entries(report).filter(([, v]) => (Array.isArray(v) ? v.length : v));
    assert.deepEqual(Object.fromEntries(failures), {}, "everything sent arrived exactly once, nobody disconnected or lost a room, every swap succeeded");
    assert.equal(swaps.length, SWAPS, `all ${SWAPS} swaps were made`);
    assert.ok(rounds > SWAPS, `traffic ran between every two swaps (${rounds} rounds)`);
  });

  it("each swap reported the component it left and the one it loaded", () => {
    assert.ok(run, "the load test ran");
    const nextSha = new Set();
    const builtinSha = new Set();
    for (const s of run.swaps) {
      const r = s.json;
      assert.ok(r && r.from && r.to, `swap ${s.step} (${s.node}) report: ${s.body.slice(0, 300)}`);
      const [fromV, toV] = s.toNext ? [run.builtinVersion, "0.1.1-next"] : ["0.1.1-next", run.builtinVersion];
      assert.equal(r.to.version, toV, `swap ${s.step} (${s.node}) loaded version ${toV}: ${safeJson(r.to)}`);
      assert.equal(r.from.version, fromV, `swap ${s.step} (${s.node}) left version ${fromV}: ${safeJson(r.from)}`);
      assert.equal(r.to.source, s.toNext ? path.resolve(guestsDir(), "redis_next.wasm") : BUILTIN, `swap ${s.step}: source`);
      assert.equal(r.to.name, "redis");
      assert.equal(r.to.datasource, "cache");
      assert.notEqual(r.from.sha256, r.to.sha256, `swap ${s.step} changed the component`);
      (s.toNext ? nextSha : builtinSha).add(r.to.sha256);
      for (const k of ["prepare_ms", "switch_ms", "total_ms"]) assert.equal(typeof r[k], "number", `swap ${s.step}: ${k}`);
    }
    assert.equal(nextSha.size, 1, "one redis-next component");
    assert.equal(builtinSha.size, 1, "one builtin redis component");
  });

  it("/admin/adapter counts the swaps, and both nodes are back on builtin:redis", () => {
    assert.ok(run, "the load test ran");
    for (const n of ["A", "B"]) {
      const st = run.status[n];
      assert.equal(st.swaps, run.count[n], `${n}: swaps == the number done (${safeJson(st)})`);
      assert.equal(st.failed_swaps, 0, `${n}: no refused swap`);
      // Each node made an even number of swaps: it ends where it started.
      assert.equal(run.count[n] % 2, 0);
      assert.equal(st.source, BUILTIN, `${n} runs builtin:redis again`);
      assert.equal(st.name, "redis");
      assert.equal(st.version, run.builtinVersion);
      assert.equal(st.datasource, "cache");
      assert.ok(st.previous && st.previous.version === "0.1.1-next", `${n} keeps redis-next for rollback: ${safeJson(st.previous)}`);
      assert.deepEqual(
        { name: run.health[n].name, version: run.health[n].version, sha256: run.health[n].sha256 },
        { name: st.name, version: st.version, sha256: st.sha256 },
        `${n}: /healthz shows the running component`,
      );
    }
  });
});
