// The mixed-cluster scenarios of shared/interop-matrix.md that read the same on every
// backend (rows 1–8), and the helpers the backend suites share (lib/redis-suite.js,
// lib/mongo-suite.js). Each row runs in `/` and `/chat`, issued once from a wasio node (W1)
// and once from a Node.js node (N1), with clients on every node of the cluster.
"use strict";

const { before, it } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const path = require("node:path");
const { spawn } = require("node:child_process");
const { ack, fence, uid, withTimeout, safeJson } = require("./client");
const { until } = require("./cluster");

const NAMESPACES = ["/", "/chat"];
const ORIGINS = [
  ["wasio", "W1"],
  ["Node", "N1"],
];
const WAIT_MS = 5000;

const sorted = (a) => [...a].sort();
const names = (sockets) => sorted(sockets.map((s) => s.id));

/** `data` of every `event` a socket got. */
function got(s, event) {
  return s.inbox.data(event);
}

/**
 * A python-socketio client (tests/py/redis_probe.py, a plain relay-protocol client despite
 * its name) on `url` + `nsp`: it joins `room`, prints {"ready": sid}, then waits for `event`
 * and prints {"event": data} (bytes as "<key>_hex"). Resolves with
 *   { line(key), exited(), kill() }   `line` resolves with the first output line holding
 *   `key`; `exited` with the exit code
 */
function pythonProbe(url, nsp, room, event, timeoutS = 8) {
  const py = process.env.WASIO_TEST_PYTHON || path.join(__dirname, "..", "..", "py", ".venv", "bin", "python");
  const probe = path.join(__dirname, "..", "..", "py", "redis_probe.py");
  const child = spawn(py, [probe, url, nsp, room, event, String(timeoutS)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const lines = [];
  const waiters = [];
  child.stdout.setEncoding("utf8").on("data", (d) => {
    out += d;
    let i;
    while ((i = out.indexOf("\n")) >= 0) {
      const line = JSON.parse(out.slice(0, i));
      out = out.slice(i + 1);
      lines.push(line);
      waiters.forEach((w) => w());
    }
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  const line = (key) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const l = lines.find((x) => key in x);
          if (l) resolve(l);
        };
        waiters.push(check);
        check();
      }),
      timeoutS * 1000 + 2000,
      `python probe "${key}" line (stderr: ${err})`,
    );
  return { line, exited: () => withTimeout(exited, 5000, "python probe exit"), kill: () => child.kill("SIGKILL") };
}

/**
 * The shared helpers and rows, for the cluster `getCluster()` gives once the suite's own
 * `before` hook has started it (call this inside the suite's `describe`, after that hook).
 *   roomReady(nsp, room, holders)  resolves once a broadcast to `room` would reach the
 *                                  `holders` nodes holding it (Redis sharded "dynamic" mode
 *                                  waits for their subscriptions; default: at once)
 */
function scenarios(getCluster, { roomReady = async () => {} } = {}) {
  let c;
  before(() => {
    c = getCluster();
    assert.ok(c, "the suite's cluster started");
  });

  /** `perNode` clients on every node, each with its own auth token and query. */
  async function spread(nsp, perNode = 1) {
    const out = [];
    for (const n of c.nodes) {
      for (let i = 0; i < perNode; i++) {
        const token = uid("tok");
        const s = await c.connect(n, nsp, { auth: { token }, query: { who: `${n.name}-${i}` } });
        s.token = token;
        s.who = `${n.name}-${i}`;
        out.push(s);
      }
    }
    return out;
  }

  /** The client of `clients` connected to the origin node, to publish fences from it. */
  function onNode(clients, name) {
    const s = clients.find((x) => x.node === name);
    assert.ok(s, `a client on ${name}`);
    return s;
  }

  /** Distinct nodes of the clients. */
  const nodesOf = (clients) => new Set(clients.map((s) => s.node)).size;

  /**
   * Waits until each of `receivers` got `event` with data matching `pred`, then a fence
   * from `publisher` (a client on the origin node, whose publishes follow the
   * operation's on the same Redis connection or into the same collection; or a function
   * `(all) => Promise` that fences `all` itself), and asserts that exactly `receivers` got
   * it, once each, and nobody else of `all` did.
   */
  async function expectExactly(all, receivers, event, pred, publisher) {
    for (const s of receivers) {
      await s.inbox.waitFor(event, pred, { timeoutMs: WAIT_MS, what: `${event} on a client of ${s.node}` });
    }
    if (typeof publisher === "function") await publisher(all);
    else await fence(publisher, all);
    for (const s of all) {
      const n = got(s, event).filter((d) => pred(d)).length;
      const want = receivers.includes(s) ? 1 : 0;
      assert.equal(n, want, `client of ${s.node} (${s.who}) got ${event} ${n} times, expected ${want}`);
    }
  }

  /** The rooms of client `s` on its node (`localSockets` over /ops), [] once it is gone. */
  async function localRooms(s, nsp) {
    const r = await c.byName[s.node].op("localSockets", { nsp });
    const me = r.sockets.find((x) => x.id === s.id);
    return me ? me.rooms : [];
  }

  /** Resolves once `s` is disconnected (at once when it already is). */
  function disconnected(s) {
    return withTimeout(
      new Promise((resolve) => (s.connected ? s.once("disconnect", resolve) : resolve())),
      WAIT_MS,
      `disconnect of ${s.who || s.id}`,
    );
  }

  /** A normal broadcast from each of `origins` reaches the clients of `targets`. */
  async function broadcastsStillWork(origins, targets, namespaces = NAMESPACES) {
    for (const nsp of namespaces) {
      const all = [];
      for (const n of targets) all.push(await c.connect(n, nsp));
      for (const n of origins) {
        const u = uid("after");
        await n.op("broadcast", { nsp, event: "after", data: { u } });
        await expectExactly(all, all, "after", (d) => d && d.u === u, onNode(all, n.name));
      }
    }
  }

  /** Rows 1–8, each in every namespace from every origin. */
  function defineRows() {
    for (const nsp of NAMESPACES) {
      for (const [originKind, originName] of ORIGINS) {
        const title = (what) => `[${nsp}] from a ${originKind} node: ${what}`;
        const origin = () => c.byName[originName];

        // Row 1
        it(title("broadcast to all reaches every client of the cluster once"), async () => {
          const all = await spread(nsp, 2);
          const u = uid("all");
          const res = await origin().op("broadcast", { nsp, event: "hello", data: { u } });
          assert.deepEqual(res, { ok: true });
          await expectExactly(all, all, "hello", (d) => d && d.u === u, onNode(all, originName));
        });

        it(title("socket.broadcast (relay publish exceptSelf) skips only the sender"), async () => {
          const all = await spread(nsp, 2);
          const sender = onNode(all, originName);
          const u = uid("bc");
          const res = await ack(sender, "publish", { event: "hello", data: { u }, exceptSelf: true });
          assert.equal(res.ok, true, safeJson(res));
          assert.equal(res.count, 1, "one other client on the sender's node");
          await expectExactly(all, all.filter((s) => s !== sender), "hello", (d) => d && d.u === u, sender);
        });

        // Row 2
        it(title("broadcast to a room, to rooms, except rooms: members only, once each"), async () => {
          const all = await spread(nsp, 2); // W1 W1 W2 W2 N1 N1
          const u = uid("rm");
          const [A, B, C] = ["a", "b", "c"].map((x) => `${u}-${x}`);
          const member = [[A], [A, B], [B], [C], [A, B, C], []];
          for (let i = 0; i < all.length; i++) {
            if (member[i].length) await ack(all[i], "join", member[i]);
          }
          const inRoom = (r) => all.filter((_, i) => member[i].includes(r));
          await roomReady(nsp, A, nodesOf(inRoom(A)));
          const pub = onNode(all, originName);
          const cases = [
            [{ rooms: [A] }, inRoom(A)],
            [{ rooms: [A, B] }, all.filter((_, i) => member[i].includes(A) || member[i].includes(B))],
            [{ except: [B] }, all.filter((_, i) => !member[i].includes(B))],
            [{ rooms: [A], except: [C] }, all.filter((_, i) => member[i].includes(A) && !member[i].includes(C))],
          ];
          for (const [target, receivers] of cases) {
            const tag = uid("case");
            const res = await origin().op("broadcast", { nsp, ...target, event: "rm", data: { tag } });
            assert.deepEqual(res, { ok: true }, `broadcast ${safeJson(target)}`);
            await expectExactly(all, receivers, "rm", (d) => d && d.tag === tag, pub).catch((err) => {
              err.message = `target ${safeJson(target)}: ${err.message}`;
              throw err;
            });
          }
          // The relay protocol's publish to several rooms, from a client of the origin node.
          const tag = uid("relay");
          const res = await ack(pub, "publish", { room: [B, C], event: "rm", data: { tag } });
          assert.equal(res.ok, true, safeJson(res));
          await expectExactly(all, all.filter((_, i) => member[i].includes(B) || member[i].includes(C)), "rm", (d) => d && d.tag === tag, pub);
        });

        // Row 3
        it(title("binary payloads arrive byte-identical on every node's clients"), async () => {
          const all = await spread(nsp, 1);
          const blob = crypto.randomBytes(4096);
          const small = Buffer.from([0, 1, 127, 128, 255]);
          const u = uid("bin");
          const data = { u, blob, nested: [small, { deep: Buffer.alloc(0) }, "text"] };
          const res = await origin().op("broadcast", { nsp, event: "bin", data });
          assert.deepEqual(res, { ok: true });
          const pub = onNode(all, originName);
          await expectExactly(all, all, "bin", (d) => d && d.u === u, pub);
          for (const s of all) {
            const d = got(s, "bin").find((x) => x.u === u);
            assert.ok(Buffer.isBuffer(d.blob) && d.blob.equals(blob), `4 KiB blob intact on ${s.node}`);
            assert.ok(Buffer.from(d.nested[0]).equals(small), `nested bytes intact on ${s.node}`);
            assert.equal(Buffer.from(d.nested[1].deep).length, 0, `empty buffer on ${s.node}`);
            assert.equal(d.nested[2], "text");
          }
          // And from a client, through the relay protocol.
          const tag = uid("rbin");
          const r2 = await ack(pub, "publish", { event: "bin", data: { u: tag, blob } });
          assert.equal(r2.ok, true);
          await expectExactly(all, all, "bin", (d) => d && d.u === tag, pub);
          for (const s of all) {
            const d = got(s, "bin").find((x) => x.u === tag);
            assert.ok(Buffer.from(d.blob).equals(blob), `relayed blob intact on ${s.node}`);
          }
        });

        // Row 4
        it(title("fetchSockets: ids, rooms, handshake and data of every socket"), async () => {
          const all = await spread(nsp, 1);
          const u = uid("fs");
          for (const s of all) await ack(s, "join", `${u}-${s.node}`);
          const res = await origin().op("fetchSockets", { nsp });
          assert.equal(res.ok, true, safeJson(res));
          const mine = new Map(all.map((s) => [s.id, s]));
          const seen = res.sockets.filter((x) => mine.has(x.id));
          // Every problem at once, so that a failure tells the whole story.
          const problems = [];
          const missing = all.filter((s) => !seen.some((x) => x.id === s.id)).map((s) => s.who);
          if (missing.length) problems.push(`missing sockets: ${missing.join(", ")}`);
          if (seen.length !== new Set(seen.map((x) => x.id)).size) problems.push("a socket listed twice");
          for (const x of seen) {
            const s = mine.get(x.id);
            const ownRooms = (x.rooms || []).filter((r) => r.startsWith(u));
            if (safeJson(ownRooms) !== safeJson([`${u}-${s.node}`])) problems.push(`rooms of ${s.who}: ${safeJson(x.rooms)}`);
            if (safeJson(x.data) !== safeJson({ node: s.node })) problems.push(`data of ${s.who}: ${safeJson(x.data)}`);
            const hs = x.handshake || {};
            if (safeJson(hs.auth) !== safeJson({ token: s.token })) problems.push(`handshake.auth of ${s.who}: ${safeJson(hs.auth)}`);
            if (!hs.query || hs.query.who !== s.who) problems.push(`handshake.query of ${s.who}: ${safeJson(hs.query)}`);
          }
          assert.deepEqual(problems, [], `fetchSockets from ${originName}`);
          // Targeted: one room held by a socket of another node.
          const other = all.find((s) => s.node !== originName);
          const one = await origin().op("fetchSockets", { nsp, rooms: [`${u}-${other.node}`] });
          assert.equal(one.ok, true, safeJson(one));
          assert.deepEqual(one.sockets.map((x) => x.id), [other.id]);
        });

        // Row 5
        it(title("allRooms is the union of every node's rooms; serverCount the node count"), async () => {
          const all = await spread(nsp, 1);
          const u = uid("ar");
          for (const s of all) await ack(s, "join", [`${u}-${s.node}`, `${u}-shared`]);
          const res = await origin().op("allRooms", { nsp });
          assert.equal(res.ok, true, safeJson(res));
          const want = [...c.nodes.map((n) => `${u}-${n.name}`), `${u}-shared`];
          const mine = res.rooms.filter((r) => r.startsWith(u));
          assert.deepEqual(sorted(mine), sorted(want));
          assert.equal(new Set(res.rooms).size, res.rooms.length, "no room twice");
          const count = await origin().op("serverCount", { nsp });
          assert.deepEqual(count, { ok: true, count: c.nodes.length });
        });

        // Row 6
        it(title("socketsJoin / socketsLeave / disconnectSockets apply on the other nodes"), async () => {
          const all = await spread(nsp, 1);
          const u = uid("sj");
          const [S, T, X] = [`${u}-s`, `${u}-t`, `${u}-x`];
          for (const s of all) await ack(s, "join", S);
          const excluded = all.find((s) => s.node === "W2");
          await ack(excluded, "join", X);
          const joiners = all.filter((s) => s !== excluded);

          const rooms = async (s) => {
            const r = await c.byName[s.node].op("localSockets", { nsp });
            const me = r.sockets.find((x) => x.id === s.id);
            return me ? me.rooms : [];
          };
          let res = await origin().op("socketsJoin", { nsp, rooms: [S], except: [X], room: T });
          assert.deepEqual(res, { ok: true });
          for (const s of joiners) {
            await until(async () => (await rooms(s)).includes(T), { what: `${s.who} joined ${T}` });
          }
          assert.ok(!(await rooms(excluded)).includes(T), "the excluded socket did not join");
          await roomReady(nsp, T, nodesOf(joiners));
          const tag = uid("t");
          await origin().op("broadcast", { nsp, rooms: [T], event: "t", data: { tag } });
          await expectExactly(all, joiners, "t", (d) => d && d.tag === tag, onNode(all, originName));

          res = await origin().op("socketsLeave", { nsp, rooms: [S], room: T });
          assert.deepEqual(res, { ok: true });
          for (const s of joiners) {
            await until(async () => !(await rooms(s)).includes(T), { what: `${s.who} left ${T}` });
          }

          // Disconnect the sockets of the other nodes only.
          const others = all.filter((s) => s.node !== originName);
          const D = `${u}-d`;
          for (const s of others) await ack(s, "join", D);
          res = await origin().op("disconnectSockets", { nsp, rooms: [D] });
          assert.deepEqual(res, { ok: true });
          for (const s of others) {
            await withTimeout(
              new Promise((resolve) => (s.connected ? s.once("disconnect", resolve) : resolve())),
              WAIT_MS,
              `disconnect of ${s.who}`,
            );
            assert.deepEqual(s.disconnects, ["io server disconnect"], `${s.who} was disconnected by the server`);
          }
          const stay = onNode(all, originName);
          assert.ok(stay.connected, "the origin's own client (not in the room) stays");
        });

        // Row 7
        it(title("serverSideEmit runs on every other node, not on the emitter"), async () => {
          const u = uid("sse");
          const others = c.nodes.filter((n) => n.name !== originName);
          const res = await origin().op("serverSideEmit", { nsp, args: ["sse", { u }, 42, "x"] });
          assert.deepEqual(res, { ok: true });
          for (const n of others) {
            const rec = await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.args && d.args[1] && d.args[1].u === u, {
              timeoutMs: WAIT_MS,
              what: `serverSideEmit on ${n.name}`,
            });
            assert.deepEqual(rec.args[0], { node: n.name, nsp, args: ["sse", { u }, 42, "x"] });
          }
          // Fence: a later serverSideEmit from another node reaches the origin after its
          // own would have.
          const f = uid("ssefence");
          await others[0].op("serverSideEmit", { nsp, args: ["sse", { f }] });
          await origin().ops.inbox.waitFor("serverSideEmitted", (d) => d.args[1] && d.args[1].f === f, { timeoutMs: WAIT_MS });
          const self = origin().ops.inbox.data("serverSideEmitted").filter((d) => d.args[1] && d.args[1].u === u);
          assert.deepEqual(self, [], "the emitter's own handler did not run");
          for (const n of others) {
            const times = n.ops.inbox.data("serverSideEmitted").filter((d) => d.args[1] && d.args[1].u === u).length;
            assert.equal(times, 1, `${n.name} ran it once`);
          }
        });

        it(title("serverSideEmit with ack: one answer from every other node"), async () => {
          const u = uid("sseack");
          const res = await origin().op("serverSideEmit", { nsp, args: ["sse", { u }], ack: true });
          assert.equal(res.ok, true, safeJson(res));
          const want = sorted(c.nodes.filter((n) => n.name !== originName).map((n) => n.name));
          assert.deepEqual(sorted(res.responses), want);
        });

        // Row 8
        it(title("broadcast with ack: one ack per client cluster-wide, complete before the timeout"), async () => {
          const all = await spread(nsp, 2);
          const ev = uid("ackme");
          for (const s of all) s.on(ev, (data, cb) => cb({ id: s.id, data }));
          const res = await origin().op("broadcastWithAck", { nsp, event: ev, data: 7, timeoutMs: 3000 });
          assert.equal(res.ok, true, safeJson(res));
          assert.deepEqual(res.errors, []);
          assert.deepEqual(sorted(res.responses.map((r) => r.id)), names(all), "one ack from each client");
          assert.ok(res.responses.every((r) => r.data === 7));
          assert.equal(res.complete, true, `complete before the timeout: every node's client count was right (${res.elapsedMs} ms)`);

          // To a room spread over two nodes.
          const R = uid("ackroom");
          const members = all.filter((s, i) => i % 2 === 0);
          for (const s of members) await ack(s, "join", R);
          const r2 = await origin().op("broadcastWithAck", { nsp, rooms: [R], event: ev, data: 8, timeoutMs: 3000 });
          assert.equal(r2.ok, true, safeJson(r2));
          assert.deepEqual(sorted(r2.responses.map((r) => r.id)), names(members));
          assert.equal(r2.complete, true, `room acks complete before the timeout (${r2.elapsedMs} ms)`);
        });
      }
    }
  }

  return { spread, onNode, nodesOf, expectExactly, localRooms, disconnected, broadcastsStillWork, defineRows };
}


module.exports = { NAMESPACES, ORIGINS, WAIT_MS, sorted, names, got, pythonProbe, scenarios };
