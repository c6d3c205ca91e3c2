// The mixed-cluster interop scenarios of shared/interop-matrix.md (rows 1–9 and 12) on
// MongoDB, against `@socket.io/mongo-adapter` 0.4, for one mode of the wasio nodes:
//   "change-stream"  each node watches the collection with a change stream (Node's way)
//   "capped"         wasio tails the capped collection with a tailable await-data cursor;
//                    the Node.js node still uses its change stream on the same collection,
//                    so both readers see the same documents
// One cluster of 2 wasio nodes (W1, W2) and 1 Node.js node (N1) per mode, on a SecantusDB
// of the suite's own (lib/mongo-backend.js; MONGODB_URL for a real mongod), every node on
// the same capped collection. Every operation is issued once from a wasio node (W1) and once
// from the Node node (N1), in `/` and in `/chat`, with clients on every node (rows 1–8:
// lib/interop-rows.js). Then: the documents' format, `@socket.io/mongo-emitter` 0.2, a
// python-socketio client, malformed documents, and a node joining late (nothing replayed).
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { Binary } = require("mongodb");
const { Emitter } = require("@socket.io/mongo-emitter");
const { ack, uid, safeJson } = require("./client");
const { startCluster, until, waitServerCount } = require("./cluster");
const { NAMESPACES, WAIT_MS, got, pythonProbe, scenarios } = require("./interop-rows");
const { mongoBackend } = require("./mongo-backend");

/** Message types of @socket.io/mongo-adapter 0.4 (its `EventType`). */
const TYPE = {
  INITIAL_HEARTBEAT: 1,
  HEARTBEAT: 2,
  BROADCAST: 3,
  SOCKETS_JOIN: 4,
  SOCKETS_LEAVE: 5,
  DISCONNECT_SOCKETS: 6,
  FETCH_SOCKETS: 7,
  FETCH_SOCKETS_RESPONSE: 8,
  SERVER_SIDE_EMIT: 9,
  SERVER_SIDE_EMIT_RESPONSE: 10,
  BROADCAST_CLIENT_COUNT: 11,
  BROADCAST_ACK: 12,
};

const CAPPED_SIZE = 16e6; // bytes: room for the large documents without evicting much
const MONGO_TIMING = { requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 };


/**
 * A stand-in collection for `@socket.io/mongo-emitter`, whose inserts are not awaited:
 * `synced()` resolves once every insert it was asked for is done (so a later document of
 * ours follows them in the collection).
 */
function trackedCollection(col) {
  const pending = [];
  return {
    collection: {
      insertOne(doc) {
        const p = col.insertOne(doc);
        pending.push(p);
        return p;
      },
    },
    synced: () => Promise.all(pending.splice(0)),
  };
}

/** A broadcast document as the emitter writes it (uid "emitter"), to all of `nsp`. */
function emitterBroadcast(nsp, event, data, { rooms = [], except = [] } = {}) {
  return {
    uid: "emitter",
    nsp,
    type: TYPE.BROADCAST,
    data: { packet: { type: 2, data: [event, data], nsp }, opts: { rooms, except, flags: {} } },
  };
}

function defineMongoSuite(mongoMode) {
  describe(`mongodb, wasio in ${mongoMode} mode: 2 wasio nodes + 1 Node.js node (@socket.io/mongo-adapter 0.4)`, () => {
    let backend;
    let c;
    let mongo; // a plain client of the same server, for checks, the emitter and garbage
    let col;

    before(async () => {
      backend = await mongoBackend();
      // Made before the nodes start (a SecantusDB bug, see lib/mongo-backend.js); a wasio
      // node making it on its own is tested in mongo-options.test.js.
      const collection = backend.collection();
      await backend.prepareCollection(collection, { cappedSize: CAPPED_SIZE });
      c = await startCluster({
        backend: "mongodb",
        mongoUrl: backend.url,
        collection,
        mongoMode,
        cappedSize: CAPPED_SIZE,
        wasio: 2,
        node: 1,
        ...MONGO_TIMING,
      });
      mongo = await backend.client();
      col = mongo.db().collection(c.collection);
    });
    afterEach(() => {
      if (!c) return;
      c.closeClients();
      c.assertAlive();
    });
    after(async () => {
      try {
        if (c) await c.stopChecked();
      } finally {
        if (backend) await backend.stop();
      }
    });

    const { spread, onNode, expectExactly, localRooms, disconnected, broadcastsStillWork, defineRows } = scenarios(() => c);
    defineRows();

    /** A fence through the collection: an emitter-style broadcast every client of `all` awaits. */
    async function collectionFence(all) {
      const nsps = [...new Set(all.map((s) => s.nsp))];
      const token = uid("fence");
      for (const nsp of nsps) await col.insertOne(emitterBroadcast(nsp, "__fence", token));
      for (const s of all) {
        await s.inbox.waitFor("__fence", (d) => d === token, { timeoutMs: WAIT_MS, what: `collection fence on a client of ${s.node}` });
      }
    }

    /**
     * A fence through the collection that involves no client (a malformed document may make
     * Node's adapter disconnect every client of a namespace): an emitter-style server-side
     * emit per namespace, which every node of `nodes` pushes to its /ops client.
     */
    async function serverSideFence(nodes) {
      const token = uid("ssefence");
      for (const nsp of NAMESPACES) await col.insertOne({ uid: "emitter", nsp, type: TYPE.SERVER_SIDE_EMIT, data: { packet: ["sse", { token }] } });
      for (const n of nodes) {
        for (const nsp of NAMESPACES) {
          await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.nsp === nsp && d.args[1] && d.args[1].token === token, {
            timeoutMs: WAIT_MS,
            what: `server-side fence in ${nsp} on ${n.name}`,
          });
        }
      }
    }

    it("every node's documents are {uid, nsp, type, data}, with BSON binary", async () => {
      // Heartbeats: every node of the cluster wrote some, under a uid of its own, per namespace.
      for (const nsp of NAMESPACES) {
        const uids = await col.distinct("uid", { nsp, type: { $in: [TYPE.INITIAL_HEARTBEAT, TYPE.HEARTBEAT] } });
        assert.equal(uids.length, c.nodes.length, `heartbeat uids in ${nsp}: ${safeJson(uids)}`);
      }

      // A broadcast from a wasio node, with binary, to a room except another.
      const W1 = c.byName.W1;
      const u = uid("doc");
      const bin = crypto.randomBytes(32);
      const res = await W1.op("broadcast", { nsp: "/chat", rooms: [`${u}-r`], except: [`${u}-x`], event: "docfmt", data: { u, bin } });
      assert.deepEqual(res, { ok: true });
      const doc = await until(() => col.findOne({ "data.packet.data.1.u": u }), { what: "W1's broadcast document" });
      const problems = [];
      const check = (cond, what) => cond || problems.push(what);
      const heartbeatUids = await col.distinct("uid", { nsp: "/chat", type: TYPE.HEARTBEAT });
      check(typeof doc.uid === "string" && doc.uid && doc.uid !== "emitter", `uid is the node's own string: ${safeJson(doc.uid)}`);
      check(heartbeatUids.includes(doc.uid) || (await col.countDocuments({ uid: doc.uid, type: TYPE.INITIAL_HEARTBEAT })) > 0, "the uid is the one of W1's heartbeats");
      check(doc.nsp === "/chat", `nsp: ${safeJson(doc.nsp)}`);
      check(doc.type === TYPE.BROADCAST, `type 3 (BROADCAST), a number: ${safeJson(doc.type)}`);
      check(!("createdAt" in doc), "no createdAt without addCreatedAtField");
      const packet = (doc.data && doc.data.packet) || {};
      // Node's adapter writes socket.io's packet as it is ({type, data}); the emitter adds nsp.
      check(packet.type === 2 && (packet.nsp === undefined || packet.nsp === "/chat"), `packet {type: 2, nsp?}: ${safeJson(packet)}`);
      check(Array.isArray(packet.data) && packet.data[0] === "docfmt", `packet.data [event, ...]: ${safeJson(packet.data)}`);
      const b = packet.data && packet.data[1] && packet.data[1].bin;
      check(b instanceof Binary && Buffer.from(b.buffer).equals(bin), `binary stored as BSON binary, bytes intact: ${Object.prototype.toString.call(b)} ${b && b.constructor && b.constructor.name}`);
      const o = (doc.data && doc.data.opts) || {};
      check(safeJson(o.rooms) === safeJson([`${u}-r`]), `opts.rooms: ${safeJson(o.rooms)}`);
      check(safeJson(o.except) === safeJson([`${u}-x`]), `opts.except: ${safeJson(o.except)}`);
      check(o.flags === undefined || (typeof o.flags === "object" && !Array.isArray(o.flags)), `opts.flags an object: ${safeJson(o.flags)}`);
      check(doc.data.requestId === undefined, "no requestId on a broadcast without ack");
      assert.deepEqual(problems, [], `W1's broadcast document ${safeJson(doc)}`);
    });

    it("large payloads cross both ways: a 256 KiB Buffer and a 10000-item array, from a Node node and from a wasio node", async () => {
      const all = await spread("/", 1);
      const blob = crypto.randomBytes(256 * 1024);
      const list = Array.from({ length: 10000 }, (_, i) => i * 7);
      for (const origin of ["N1", "W1"]) {
        const u = uid("large");
        const res = await c.byName[origin].op("broadcast", { nsp: "/", event: "large", data: { u, blob, list } }, { timeoutMs: 15000 });
        assert.deepEqual(res, { ok: true });
        await expectExactly(all, all, "large", (d) => d && d.u === u, onNode(all, origin));
        for (const s of all) {
          const d = got(s, "large").find((x) => x.u === u);
          assert.ok(Buffer.from(d.blob).equals(blob), `256 KiB from ${origin} intact on ${s.node}`);
          assert.deepEqual(d.list, list, `10000 items from ${origin} intact on ${s.node}`);
        }
      }
      for (const n of c.wasio.filter((x) => x.kind === "wasio")) {
        const g = (await n.health()).guest;
        assert.equal(g.deadline_stops, 0, `${n.name}: no guest call stopped at its deadline: ${safeJson(g)}`);
      }
    });

    // Row 9: @socket.io/mongo-emitter 0.2 (documents with uid "emitter").
    describe("@socket.io/mongo-emitter reaches the cluster", () => {
      for (const nsp of NAMESPACES) {
        it(`[${nsp}] emit to all / to a room / except a room, socketsJoin/Leave, serverSideEmit, disconnectSockets`, async () => {
          const t = trackedCollection(col);
          const emitter = new Emitter(t.collection).of(nsp);
          const all = await spread(nsp, 1);
          const u = uid("em");
          const fenceAll = async (clients) => {
            await t.synced();
            await collectionFence(clients);
          };

          emitter.emit("em", { u, bin: Buffer.from([9, 8, 7]), nested: [Buffer.from([0, 255])] });
          await t.synced();
          await expectExactly(all, all, "em", (d) => d && d.u === u, fenceAll);
          for (const s of all) {
            const d = got(s, "em").find((x) => x.u === u);
            assert.ok(Buffer.isBuffer(d.bin) && d.bin.equals(Buffer.from([9, 8, 7])), `emitter binary on ${s.node}: ${safeJson(d)}`);
            assert.ok(Buffer.from(d.nested[0]).equals(Buffer.from([0, 255])), `nested emitter binary on ${s.node}`);
          }

          const R = `${u}-r`;
          const members = all.filter((s) => s.node !== "W1");
          for (const s of members) await ack(s, "join", R);
          emitter.to(R).emit("em", { u: `${u}-room` });
          await expectExactly(all, members, "em", (d) => d && d.u === `${u}-room`, fenceAll);
          emitter.except(R).emit("em", { u: `${u}-except` });
          await expectExactly(all, all.filter((s) => !members.includes(s)), "em", (d) => d && d.u === `${u}-except`, fenceAll);

          const J = `${u}-j`;
          emitter.in(R).socketsJoin(J);
          for (const s of members) await until(async () => (await localRooms(s, nsp)).includes(J), { what: `${s.who} joined ${J}` });
          await fenceAll(all);
          const nonMember = all.find((s) => !members.includes(s));
          assert.ok(!(await localRooms(nonMember, nsp)).includes(J), "a non-member did not join");
          emitter.in(R).socketsLeave(J);
          for (const s of members) await until(async () => !(await localRooms(s, nsp)).includes(J), { what: `${s.who} left ${J}` });

          emitter.serverSideEmit("sse", { u });
          for (const n of c.nodes) {
            await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.nsp === nsp && d.args[1] && d.args[1].u === u, {
              timeoutMs: WAIT_MS,
              what: `emitter serverSideEmit on ${n.name}`,
            });
          }

          emitter.in(R).disconnectSockets();
          for (const s of members) await disconnected(s);
          await fenceAll([nonMember]);
          assert.ok(nonMember.connected, "a non-member stays connected");
        });
      }
    });

    // A second client implementation on a wasio node, across nodes.
    it("a python-socketio client on a wasio node gets a broadcast from the Node node", async () => {
      const room = uid("py");
      const probe = pythonProbe(c.byName.W2.url, "/chat", room, "pyev", 8);
      try {
        const ready = await probe.line("ready");
        assert.ok(ready.ready, "the python client joined its room on W2");
        const res = await c.byName.N1.op("broadcast", { nsp: "/chat", rooms: [room], event: "pyev", data: { hi: "from N1", bin: Buffer.from([1, 2, 3]) } });
        assert.deepEqual(res, { ok: true });
        const ev = await probe.line("event");
        assert.deepEqual(ev.event, { hi: "from N1", bin_hex: "010203" });
        assert.equal(await probe.exited(), 0);
      } finally {
        probe.kill();
      }
    });

    // Row 12: documents inserted directly in the collection, wrong in every way a document
    // can be. `counted`: clearly malformed for a namespace the nodes serve, so a wasio node
    // must drop it and count it in /healthz (`datasource.malformed`, or
    // `guest.dropped_messages` as the Redis guest does; the test prints which); the others (a
    // type nobody knows, a namespace nobody serves) may be ignored silently, as Node does.
    const deep = (n) => (n === 0 ? { end: true } : { a: deep(n - 1) });
    const validOpts = { rooms: [], except: [], flags: {} };
    const GARBAGE = [
      { what: "an empty document", doc: {}, counted: false },
      { what: "no type", doc: { uid: "intruder", nsp: "/", data: { packet: { type: 2, data: ["x"], nsp: "/" }, opts: validOpts } }, counted: true },
      { what: "type a string", doc: { uid: "intruder", nsp: "/", type: "3", data: { packet: { type: 2, data: ["x"], nsp: "/" }, opts: validOpts } }, counted: true },
      { what: "type a fraction", doc: { uid: "intruder", nsp: "/", type: 3.5, data: {} }, counted: true },
      { what: "uid a number, broadcast without data", doc: { uid: 7, nsp: "/", type: TYPE.BROADCAST }, counted: true },
      { what: "data random binary", doc: { uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: new Binary(crypto.randomBytes(64)) }, counted: true },
      { what: "data a string", doc: { uid: "intruder", nsp: "/chat", type: TYPE.BROADCAST, data: "nope" }, counted: true },
      { what: "packet a number, opts a string", doc: { uid: "intruder", nsp: "/chat", type: TYPE.BROADCAST, data: { packet: 5, opts: "x" } }, counted: true },
      { what: "packet.data not an array, rooms a number", doc: { uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: { packet: { type: 2, data: 7, nsp: "/" }, opts: { rooms: 3 } } }, counted: true },
      { what: "packet.data random binary", doc: { uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: { packet: { type: 2, data: new Binary(crypto.randomBytes(100)), nsp: "/" }, opts: validOpts } }, counted: true },
      { what: "100000 numbers as rooms", doc: { uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: { packet: { type: 2, data: ["x"], nsp: "/" }, opts: { rooms: Array.from({ length: 100000 }, (_, i) => i), except: [] } } }, counted: true },
      { what: "socketsJoin with rooms a number, opts null", doc: { uid: "intruder", nsp: "/", type: TYPE.SOCKETS_JOIN, data: { opts: null, rooms: 5 } }, counted: true },
      { what: "disconnectSockets with opts an array", doc: { uid: "intruder", nsp: "/chat", type: TYPE.DISCONNECT_SOCKETS, data: { opts: [1, 2], close: "yes" } }, counted: true },
      { what: "fetchSockets with requestId an object", doc: { uid: "intruder", nsp: "/", type: TYPE.FETCH_SOCKETS, data: { requestId: { x: 1 }, opts: [] } }, counted: true },
      { what: "serverSideEmit with packet a string", doc: { uid: "intruder", nsp: "/", type: TYPE.SERVER_SIDE_EMIT, data: { packet: "not an array" } }, counted: true },
      { what: "data nested 90 deep", doc: { uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: deep(90) }, counted: true },
      { what: "an unknown type", doc: { uid: "intruder", nsp: "/", type: 99, data: { x: 1 } }, counted: false },
      { what: "nsp a number", doc: { uid: "intruder", nsp: 12, type: TYPE.BROADCAST, data: "nope" }, counted: false },
      { what: "a namespace nobody serves", doc: { uid: "intruder", nsp: "/nowhere", type: TYPE.BROADCAST, data: 5 }, counted: false },
    ];

    it("malformed documents inserted in the collection: dropped and counted, nothing crashes, relaying goes on", async () => {
      // Under WASIO_MONGO_REFERENCE every node is Node.js: no counters there.
      const wasioNodes = c.wasio.filter((n) => n.kind === "wasio");
      const counters = async (n) => {
        const h = await n.health();
        const g = h.guest || {};
        return {
          malformed: h.datasource && h.datasource.malformed,
          dropped: g.dropped_messages,
          traps: g.traps,
          deadline_stops: g.deadline_stops,
          memory_stops: g.memory_stops,
          reinstantiations: g.reinstantiations,
        };
      };
      const start = {};
      for (const n of wasioNodes) {
        start[n.name] = await counters(n);
        assert.equal(typeof start[n.name].malformed, "number", `${n.name} /healthz datasource.malformed: ${safeJson(await n.health())}`);
      }
      // One document at a time, so that each one's fate is known: on every wasio node the
      // document is dropped and counted (datasource.malformed, or guest.dropped_messages).
      const problems = [];
      const where = {}; // document → node → the counter(s) that moved
      for (const g of GARBAGE) {
        const before = {};
        for (const n of wasioNodes) before[n.name] = await counters(n);
        await col.insertOne(g.doc);
        if (!g.counted) continue;
        await Promise.all(
          wasioNodes.map(async (n) => {
            const b = before[n.name];
            const moved = (x) => [x.malformed > b.malformed && "datasource.malformed", x.dropped > b.dropped && "guest.dropped_messages"].filter(Boolean);
            let now;
            try {
              now = await until(async () => {
                const x = await counters(n);
                return moved(x).length ? x : null;
              }, { timeoutMs: 2000, what: `${n.name} to count "${g.what}"` });
            } catch {
              now = await counters(n).catch((e) => e.message);
              problems.push(`${n.name} did not count "${g.what}" (counters before ${safeJson(b)}, 2 s later ${safeJson(now)})`);
              return;
            }
            (where[g.what] ||= {})[n.name] = moved(now).join("+");
          }),
        );
      }
      // Every node has read them all (the uncounted ones too) once a later document arrived.
      await serverSideFence(c.nodes);
      c.assertAlive();
      for (const n of c.nodes) {
        const h = await n.health();
        assert.equal(h.status, "ok", `${n.name} healthy`);
        if (n.kind === "node" && h.errors.length) {
          console.error(`# ${n.name} (Node.js) survived ${h.errors.length} exceptions: ${safeJson(h.errors.slice(0, 3))}`);
        }
      }
      for (const n of wasioNodes) {
        const end = await counters(n);
        // A guest stopped at its deadline is re-instantiated: its state (known nodes,
        // pending requests) is lost. A document must be dropped before it costs that.
        for (const k of ["traps", "memory_stops", "deadline_stops", "reinstantiations"]) {
          if (end[k] !== start[n.name][k]) problems.push(`${n.name}: guest.${k} ${start[n.name][k]} → ${end[k]}`);
        }
        console.error(`# ${n.name}: ${safeJson(start[n.name])} → ${safeJson(end)}`);
      }
      const used = new Set(Object.values(where).flatMap((w) => Object.values(w)));
      console.error(`# malformed documents counted in: ${[...used].join(", ") || "-"}`);
      assert.deepEqual(problems, [], "malformed documents");
      c.closeClients();
      // Relaying goes on, in both namespaces, from every node to every node.
      await broadcastsStillWork(c.nodes, c.nodes);
      // The garbage's uids ("intruder", 7) are not nodes: within heartbeatTimeout every node
      // counts the live nodes only (Node counts any uid it hears from until then).
      await waitServerCount(c.nodes, c.nodes.length, NAMESPACES, MONGO_TIMING.heartbeatTimeout + 5000);
    });

    it("a node that joins late gets what is inserted after it started, and nothing from before (no replay)", async () => {
      const u = uid("late");
      // Before W3: a server-side emit and a broadcast, in both namespaces.
      for (const nsp of NAMESPACES) {
        await col.insertOne({ uid: "emitter", nsp, type: TYPE.SERVER_SIDE_EMIT, data: { packet: ["sse", { u, when: "before" }] } });
        await col.insertOne(emitterBroadcast(nsp, "late", { u, when: "before" }));
      }
      const W3 = await c.add({ role: "wasio", name: "W3" });
      await waitServerCount(c.nodes, c.nodes.length, NAMESPACES);
      const clients = [];
      for (const nsp of NAMESPACES) clients.push(await c.connect(W3, nsp));
      for (const nsp of NAMESPACES) {
        await col.insertOne({ uid: "emitter", nsp, type: TYPE.SERVER_SIDE_EMIT, data: { packet: ["sse", { u, when: "after" }] } });
        await col.insertOne(emitterBroadcast(nsp, "late", { u, when: "after" }));
      }
      for (const s of clients) await s.inbox.waitFor("late", (d) => d && d.u === u && d.when === "after", { what: `the new broadcast on W3's ${s.nsp} client` });
      for (const nsp of NAMESPACES) {
        await W3.ops.inbox.waitFor("serverSideEmitted", (d) => d.nsp === nsp && d.args[1] && d.args[1].u === u && d.args[1].when === "after", {
          what: `the new serverSideEmit on W3 in ${nsp}`,
        });
      }
      const rec = await W3.op("received");
      const replayed = rec.events.filter((e) => e.args && e.args[1] && e.args[1].u === u && e.args[1].when === "before");
      assert.deepEqual(replayed, [], "W3 ran no server-side emit inserted before it started");
      for (const s of clients) {
        assert.deepEqual(got(s, "late").filter((d) => d.u === u).map((d) => d.when), ["after"], `W3's ${s.nsp} client got the new broadcast only`);
      }
      // And W3 is a full member: a fetchSockets from N1 finds its sockets.
      const fs = await c.byName.N1.op("fetchSockets", { nsp: "/" });
      assert.ok(fs.ok && fs.sockets.some((x) => x.id === clients[0].id), `N1's fetchSockets lists W3's socket: ${safeJson(fs)}`);
    });
  });
}

module.exports = { defineMongoSuite, TYPE, MONGO_TIMING, emitterBroadcast, trackedCollection };
