// Hot swap across adapters (issue 6): two wasio nodes, A and B, start on the built-in local
// adapter with every datasource they will need in their config (Redis `cache`, MongoDB
// `db` on a SecantusDB of the suite's own, and `dead`: a Redis URL on a closed port), and
// clients in rooms on both, in `/` and `/chat`. Both nodes are swapped, through the admin
// API, local → redis (classic) → redis sharded → mongodb → local. After each step:
// broadcasts (to a room, to several rooms, to the namespace, with exceptSelf, in /chat)
// reach exactly their receivers — on both nodes when the adapter is a cluster adapter, on
// the sender's node only with the local one — and no client disconnected or left a room.
//
// Refused swaps, on the Redis cluster: a garbage upload, a component built against a later
// contract (future_version.wasm), a component whose init fails (faulty.wasm with
// `fail_init`), builtin:redis on the unreachable datasource. Each is refused with a message
// naming what was refused and why, and the old adapter keeps serving: the status is
// unchanged but for `failed_swaps` and `last_error`, and broadcasts still cross.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { connect, closeAll, ack, fence, roomsOf, uid, safeJson } = require("../lib/client");
const { REDIS_URL } = require("../lib/cluster");
const { freePort, guestsDir } = require("../lib/server");
const { startAdminServer, healthAdapter } = require("../lib/admin");
const { mongoBackend } = require("../lib/mongo-backend");

const WAIT_MS = 8000;

function guest(file) {
  const dir = guestsDir();
  if (!dir) throw new Error("WASIO_TEST_GUESTS is not set: it names the directory of the test guests");
  const p = path.resolve(dir, file);
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist: cargo build -p wasio builds the test guests`);
  return p;
}

describe("hot swap matrix: local → redis → redis sharded → mongodb → local, and refused swaps", () => {
  const key = uid("swap-matrix");
  const collection = `${key}-events`;
  let backend;
  let A;
  let B;
  const sockets = {}; // "A/m0" → socket ...
  const rooms = {}; // the rooms each socket was put in (never changed afterwards)
  const ids = {};
  let deadUrl;

  before(async () => {
    backend = await mongoBackend();
    await backend.prepareCollection(collection, { cappedSize: 16e6 });
    // A port nothing listens on: taken from the kernel, then released.
    deadUrl = `redis://127.0.0.1:${await freePort()}`;
    const config = {
      wasm: "builtin:local",
      requestTimeoutMs: 4000,
      datasources: {
        cache: { connector: "redis", url: REDIS_URL },
        db: { connector: "mongodb", url: backend.url },
        dead: { connector: "redis", url: deadUrl },
      },
    };
    [A, B] = await Promise.all([startAdminServer(config), startAdminServer(config)]);
    A.label = "A";
    B.label = "B";
    // Per node: in `/`, m0 in r1 and r2, m1 in r1, m2 in no room; in `/chat`, c0 in r1.
    const plan = { m0: ["/", ["r1", "r2"]], m1: ["/", ["r1"]], m2: ["/", []], c0: ["/chat", ["r1"]] };
    for (const node of [A, B]) {
      for (const [name, [nsp, rs]] of Object.entries(plan)) {
        const k = `${node.label}/${name}`;
        const s = await connect(node.url, nsp, { transport: name === "m1" ? "polling" : "websocket" });
        s.key = k;
        s.nodeLabel = node.label;
        sockets[k] = s;
        ids[k] = s.id;
        rooms[k] = rs.map((r) => `${key}-${r}`).sort();
        if (rs.length) {
          const res = await ack(s, "join", rooms[k]);
          assert.equal(res.ok, true, `${k} joins ${rs}: ${safeJson(res)}`);
        }
      }
    }
  });

  after(async () => {
    closeAll(Object.values(sockets));
    const died = [];
    for (const n of [A, B]) {
      if (!n) continue;
      const res = await n.stop();
      if (res.exitedEarly) died.push(`${n.label} (code ${res.code}, signal ${res.signal}):\n${res.stderr}`);
    }
    if (backend) await backend.stop();
    if (died.length) throw new Error(`nodes died during the tests: ${died.join("\n")}`);
  });

  const room = (r) => `${key}-${r}`;
  const members = (r) => Object.keys(sockets).filter((k) => rooms[k].includes(room(r)));
  const inNsp = (nsp) => Object.keys(sockets).filter((k) => sockets[k].nsp === nsp);

  /**
   * Sends the step's broadcasts and checks that each reached exactly its receivers, once:
   * every socket whose node shares the sender's cluster (`crosses`: both nodes; else the
   * sender's node only), and nobody else (checked up to fences from both nodes).
   */
  async function checkTraffic(label, { crosses }) {
    const sends = [
      { from: "A/m0", nsp: "/", to: ["r1"] },
      { from: "B/m1", nsp: "/", to: ["r2"], exceptSelf: true },
      { from: "A/m2", nsp: "/", to: null, exceptSelf: true },
      { from: "B/m2", nsp: "/", to: ["r1", "r2"] },
      { from: "B/c0", nsp: "/chat", to: ["r1"] },
      { from: "A/c0", nsp: "/chat", to: null },
    ];
    const expected = Object.fromEntries(Object.keys(sockets).map((k) => [k, []]));
    for (const [n, s] of sends.entries()) {
      const sender = sockets[s.from];
      const reach = (k) => sockets[k].nsp === s.nsp && (crosses || sockets[k].nodeLabel === sender.nodeLabel);
      let targets = s.to === null ? inNsp(s.nsp) : [...new Set(s.to.flatMap(members))];
      targets = targets.filter((k) => reach(k) && !(s.exceptSelf && k === s.from));
      for (const k of targets) expected[k].push(n);
      const arg = { event: "step", data: { label, n }, exceptSelf: !!s.exceptSelf };
      if (s.to) arg.room = s.to.map(room);
      const res = await ack(sender, "publish", arg);
      assert.equal(res.ok, true, `${label}: publish #${n} from ${s.from}: ${safeJson(res)}`);
      const local = targets.filter((k) => sockets[k].nodeLabel === sender.nodeLabel).length;
      assert.equal(res.count, local, `${label}: publish #${n} from ${s.from} delivered on its node to ${local}`);
    }
    for (const [k, ns] of Object.entries(expected)) {
      for (const n of ns) {
        await sockets[k].inbox.waitFor("step", (d) => d && d.label === label && d.n === n, {
          timeoutMs: WAIT_MS,
          what: `${label}: ${k} receives broadcast #${n} (${safeJson(sends[n])})`,
        });
      }
    }
    // Fences from each node (to each node's own sockets when the nodes are not one
    // cluster): anything else on its way from the same sender came before them.
    for (const nsp of ["/", "/chat"]) {
      for (const from of ["A", "B"]) {
        const publisher = sockets[`${from}/${nsp === "/" ? "m0" : "c0"}`];
        const receivers = inNsp(nsp).filter((k) => crosses || sockets[k].nodeLabel === from);
        await fence(publisher, receivers.map((k) => sockets[k]), { timeoutMs: WAIT_MS });
      }
    }
    for (const [k, ns] of Object.entries(expected)) {
      const got = sockets[k].inbox
        .data("step")
        .filter((d) => d && d.label === label)
        .map((d) => d.n)
        .sort();
      assert.deepEqual(got, [...ns].sort(), `${label}: ${k} received exactly broadcasts ${safeJson(ns)}, once each`);
    }
  }

  /** No socket disconnected, changed id, or left (or gained) a room. */
  async function checkClients(label) {
    for (const [k, s] of Object.entries(sockets)) {
      assert.deepEqual(s.disconnects, [], `${label}: ${k} never disconnected`);
      assert.equal(s.connected, true, `${label}: ${k} connected`);
      assert.equal(s.id, ids[k], `${label}: ${k} is the same socket`);
      assert.deepEqual(await roomsOf(s), rooms[k], `${label}: ${k} is still in its rooms`);
    }
  }

  /** Swaps `node` to `spec` and checks the report, the status and /healthz. */
  async function swap(node, spec, { name, datasource }) {
    const before = await node.admin.status();
    const res = await node.admin.swap(spec);
    assert.equal(res.status, 200, `${node.label}: swap to ${safeJson(spec)} answered ${res.status}: ${res.body}`);
    const r = res.json;
    assert.equal(r.from.sha256, before.sha256, `${node.label}: the report's from is what ran: ${safeJson(r)}`);
    assert.equal(r.from.name, before.name);
    assert.equal(r.to.name, name, `${node.label}: the report's to: ${safeJson(r)}`);
    assert.equal(r.to.source, spec.wasm);
    assert.equal(r.to.datasource, datasource);
    for (const k of ["prepare_ms", "switch_ms", "total_ms"]) assert.equal(typeof r[k], "number", `${k}: ${safeJson(r)}`);
    const st = await node.admin.status();
    assert.equal(st.name, name, `${node.label}: status after the swap: ${safeJson(st)}`);
    assert.equal(st.source, spec.wasm);
    assert.equal(st.datasource, datasource);
    assert.equal(st.sha256, r.to.sha256);
    assert.equal(st.swaps, before.swaps + 1, `${node.label}: swaps counted`);
    assert.equal(st.failed_swaps, before.failed_swaps);
    assert.ok(st.previous && st.previous.sha256 === before.sha256 && st.previous.name === before.name, `${node.label}: previous: ${safeJson(st.previous)}`);
    assert.ok(st.loaded_at_ms >= before.loaded_at_ms, "loaded_at_ms moves on");
    const h = await healthAdapter(node);
    assert.deepEqual({ name: h.name, sha256: h.sha256 }, { name, sha256: st.sha256 }, `${node.label}: /healthz shows the new adapter`);
  }

  async function swapBoth(label, spec, expect) {
    await swap(A, spec, expect);
    await swap(B, spec, expect);
    await checkTraffic(label, { crosses: expect.name !== "local" });
    await checkClients(label);
  }

  const redisClassic = { wasm: "builtin:redis", datasource: "cache", options: { key, requestsTimeout: 1000 } };

  it("local: broadcasts stay on their node", async () => {
    for (const n of [A, B]) assert.equal((await n.admin.status()).name, "local");
    await checkTraffic("local", { crosses: false });
    await checkClients("local");
  });

  it("local → redis (classic): broadcasts cross, nobody disconnects or leaves a room", async () => {
    await swapBoth("redis", redisClassic, { name: "redis", datasource: "cache" });
  });

  /**
   * A refused swap on A: the answer's status and message, then A's status is unchanged but
   * for `failed_swaps` (one more) and `last_error`, and the Redis cluster still works.
   */
  async function refused(label, attempt, { status, message }) {
    const before = await A.admin.status();
    assert.equal(before.name, "redis", "A runs the Redis adapter before the refusal");
    const res = await attempt();
    assert.equal(res.status, status, `${label}: answered ${res.status}: ${res.body}`);
    assert.ok(res.json && typeof res.json.error === "string", `${label}: {error}: ${res.body}`);
    for (const re of message) assert.match(res.json.error, re, `${label}: the error names what and why`);
    const st = await A.admin.status();
    const keep = ({ name, version, source, sha256, datasource, loaded_at_ms, swaps, previous }) => ({ name, version, source, sha256, datasource, loaded_at_ms, swaps, previous });
    assert.deepEqual(keep(st), keep(before), `${label}: the running adapter is unchanged`);
    assert.equal(st.failed_swaps, before.failed_swaps + 1, `${label}: failed_swaps grew`);
    assert.equal(st.last_error, res.json.error, `${label}: last_error is the refusal`);
    const h = await healthAdapter(A);
    assert.equal(h.sha256, before.sha256, `${label}: /healthz shows the old adapter`);
    await checkTraffic(`after ${label}`, { crosses: true });
    await checkClients(`after ${label}`);
  }

  it("refused: an upload that is not a component (422), the old adapter keeps serving", async () => {
    await refused("garbage upload", () => A.admin.upload(Buffer.from("this is not a WebAssembly component"), { name: "garbage.wasm" }), {
      status: 422,
      message: [/upload:garbage\.wasm/, /not a valid WebAssembly component/i],
    });
  });

  it("refused: a component built against a later contract (422), the old adapter keeps serving", async () => {
    const file = guest("future_version.wasm");
    await refused("future version", () => A.admin.swap({ wasm: file, datasource: null, options: {} }), {
      status: 422,
      message: [/future_version\.wasm/, /wasio:adapter@/],
    });
  });

  it("refused: a component whose init fails (422), the old adapter keeps serving", async () => {
    const file = guest("faulty.wasm");
    await refused("init fails", () => A.admin.swap({ wasm: file, datasource: null, options: { fail_init: true } }), {
      status: 422,
      message: [/faulty\.wasm/, /init refused on purpose/],
    });
  });

  it("refused: builtin:redis on an unreachable datasource (502), the old adapter keeps serving", async () => {
    const port = deadUrl.split(":").pop();
    await refused("datasource unreachable", () => A.admin.swap({ wasm: "builtin:redis", datasource: "dead", options: { key } }), {
      status: 502,
      message: [/\bdead\b/, new RegExp(`${port}|refused|unreachable|connect`, "i")],
    });
  });

  it("redis → redis sharded: broadcasts cross (on the rooms' own channels), nobody disconnects", async () => {
    await swapBoth("redis sharded", { wasm: "builtin:redis", datasource: "cache", options: { key, mode: "sharded", requestsTimeout: 1000 } }, { name: "redis-sharded", datasource: "cache" });
  });

  it("redis sharded → mongodb: broadcasts cross, nobody disconnects", async () => {
    await swapBoth(
      "mongodb",
      { wasm: "builtin:mongodb", datasource: "db", options: { collection, requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 } },
      { name: "mongodb", datasource: "db" },
    );
  });

  it("mongodb → local: broadcasts stay on their node again, nobody disconnects", async () => {
    await swapBoth("local again", { wasm: "builtin:local", datasource: null, options: {} }, { name: "local", datasource: null });
    for (const n of [A, B]) {
      const st = await n.admin.status();
      assert.equal(st.swaps, 4, `${n.label}: four swaps`);
      assert.equal(st.failed_swaps, n === A ? 4 : 0, `${n.label}: refused swaps`);
    }
  });
});
