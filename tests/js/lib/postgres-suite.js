// The mixed-cluster interop scenarios of shared/interop-matrix.md on PostgreSQL, against
// `@socket.io/postgres-adapter` 0.5 (LISTEN/NOTIFY on `<channelPrefix>#<nsp>`, JSON messages;
// what has binary or is over `payloadThreshold` bytes as JSON goes as MessagePack into the
// attachments table, and the notification carries `{uid, type, attachmentId}` only).
//
// definePostgresSuite() defines two suites on the shared PostgreSQL (lib/postgres-backend.js),
// each with a cluster, a channel prefix and an attachments table of its own:
//   - W1, W2 (wasio, `builtin:postgres`) + N1 (Node.js): rows 1–8 of lib/interop-rows.js, in
//     `/` and `/chat`, from W1 and from N1; the notifications' format; payloads of 8000 bytes
//     and more and binary payloads (broadcasts, server-side emits, acks) both ways, and
//     fetchSockets answers over the threshold, through the attachments table (its rows and
//     the headers naming them checked with `pg`); `@socket.io/postgres-emitter` 0.1.1 on the
//     wasio nodes (Node's adapter 0.5 ignores that emitter: see emitterPool).
//   - malformed notifications (NOTIFY on the cluster's channels from the test: not JSON, JSON
//     of the wrong shape, headers naming a missing or undecodable attachment): each one dropped
//     and counted on every wasio node, nobody dies, the cluster relays after them.
// WASIO_POSTGRES_REFERENCE=1 runs every "wasio" node as a Node.js node (lib/cluster.js): the
// wasio-only checks (counters) are skipped there.
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { decode, encode } = require("@msgpack/msgpack");
const { Emitter } = require("@socket.io/postgres-emitter");
const { ack, uid, safeJson } = require("./client");
const { POSTGRES_REFERENCE, startCluster, until, waitServerCount } = require("./cluster");
const { NAMESPACES, WAIT_MS, got, scenarios } = require("./interop-rows");
const { postgresBackend } = require("./postgres-backend");

/** Message types of socket.io-adapter's ClusterAdapter (the postgres adapter's). */
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
  ADAPTER_CLOSE: 13,
};

// requestsTimeout is wasio's (Node's postgres adapter has none: its requests wait 5 s).
const PG_TIMING = { requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 };
const PAYLOAD_THRESHOLD = 8000; // the adapter's default, given explicitly

const channelOf = (c, nsp) => `${c.channelPrefix}#${nsp}`;

/** A broadcast as the emitter sends it (uid "emitter"), JSON. */
function emitterBroadcast(nsp, event, data, { rooms = [], except = [] } = {}) {
  return { uid: "emitter", nsp, type: TYPE.BROADCAST, data: { packet: { type: 2, data: [event, data], nsp }, opts: { rooms, except, flags: {} } } };
}

/**
 * Fences through PostgreSQL, on `notifier` (one connection: its NOTIFYs arrive in the order
 * they were sent, after whatever it sent before).
 *   clients(all)  an emitter-style broadcast every client of `all` awaits
 *   servers(nodes)  an emitter-style server-side emit per namespace every node pushes to its
 *                 /ops client (a fence that involves no client)
 */
function fences(getCluster, getNotifier) {
  const notify = (nsp, msg) => getNotifier().query("SELECT pg_notify($1, $2)", [channelOf(getCluster(), nsp), JSON.stringify(msg)]);
  return {
    notify,
    async clients(all) {
      const token = uid("fence");
      for (const nsp of [...new Set(all.map((s) => s.nsp))]) await notify(nsp, emitterBroadcast(nsp, "__fence", token));
      for (const s of all) {
        await s.inbox.waitFor("__fence", (d) => d === token, { timeoutMs: WAIT_MS, what: `notification fence on a client of ${s.node}` });
      }
    },
    async servers(nodes) {
      const token = uid("ssefence");
      for (const nsp of NAMESPACES) await notify(nsp, { uid: "emitter", nsp, type: TYPE.SERVER_SIDE_EMIT, data: { packet: ["sse", { token }] } });
      for (const n of nodes) {
        for (const nsp of NAMESPACES) {
          await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.nsp === nsp && d.args[1] && d.args[1].token === token, {
            timeoutMs: WAIT_MS,
            what: `server-side fence in ${nsp} on ${n.name}`,
          });
        }
      }
    },
  };
}

/**
 * Records every notification on the cluster's channels (its own connection, LISTENing to
 * `<prefix>#<nsp>` for each namespace): `notes` [{channel, payload, at}].
 */
async function recordNotifications(backend, c) {
  const client = await backend.client();
  const notes = [];
  client.on("notification", (m) => notes.push({ channel: m.channel, payload: m.payload, at: Date.now() }));
  for (const nsp of c.namespaces) await client.query(`LISTEN "${channelOf(c, nsp)}"`);
  return notes;
}

/** The rows of the attachments table whose (MessagePack) payload holds the bytes of `token`. */
async function attachmentRows(pool, tableName, token) {
  const res = await pool.query(`SELECT id::text AS id, created_at, payload FROM ${tableName} WHERE position($1::bytea in payload) > 0 ORDER BY id`, [Buffer.from(token)]);
  const decoded = (bytes) => {
    try {
      return decode(bytes);
    } catch (err) {
      return { undecodable: err.message };
    }
  };
  return res.rows.map((r) => ({ id: r.id, createdAt: r.created_at, payload: r.payload, message: decoded(r.payload) }));
}

const parseJson = (s) => {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
};

/**
 * The emitter's "pool": `client` itself, or under WASIO_POSTGRES_REFERENCE a stand-in that adds
 * the namespace to the emitter's messages. @socket.io/postgres-emitter 0.1.1 sends no `nsp`
 * (only `packet.nsp`), and @socket.io/postgres-adapter 0.5 routes on `nsp`: Node's nodes ignore
 * every emitter message (a plain emit too), wasio's take the namespace from the channel. The
 * stand-in lets the reference run prove the emitter test itself.
 */
function emitterPool(client, nsp) {
  if (!POSTGRES_REFERENCE) return client;
  const withNsp = (m) => (m && typeof m === "object" && !Array.isArray(m) && m.nsp === undefined ? { ...m, nsp } : m);
  return {
    query(text, params) {
      if (/pg_notify/.test(text) && params && params[1] && !/attachmentId/.test(params[1])) {
        params = [params[0], JSON.stringify(withNsp(JSON.parse(params[1])))];
      } else if (/^INSERT INTO/.test(text) && params && params[0] instanceof Uint8Array) {
        params = [Buffer.from(encode(withNsp(decode(params[0]))))];
      }
      return client.query(text, params);
    },
  };
}

function definePostgresSuite() {
  describe("postgres: 2 wasio nodes + 1 Node.js node (@socket.io/postgres-adapter 0.5)", () => {
    let backend;
    let c;
    let notifier; // one connection: the emitter's "pool", fences
    let notes; // every notification on the cluster's channels

    before(async () => {
      backend = await postgresBackend();
      const { channelPrefix, tableName } = await backend.fresh("rows");
      c = await startCluster({
        backend: "postgres",
        postgresUrl: backend.url,
        channelPrefix,
        tableName,
        payloadThreshold: PAYLOAD_THRESHOLD,
        cleanupInterval: 60000,
        wasio: 2,
        node: 1,
        ...PG_TIMING,
      });
      notifier = await backend.client();
      notes = await recordNotifications(backend, c);
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

    const { spread, onNode, expectExactly, localRooms, disconnected, defineRows } = scenarios(() => c);
    defineRows();
    const fence = fences(
      () => c,
      () => notifier,
    );

    /** Notifications on `nsp`'s channel since `since`, parsed. */
    const notesOn = (nsp, since = 0) =>
      notes.filter((n) => n.channel === channelOf(c, nsp) && n.at >= since).map((n) => ({ ...n, json: parseJson(n.payload) }));

    it("every node's notifications are the adapter's JSON: heartbeats under a uid of its own, a small broadcast inline", async () => {
      // Heartbeats: every node sends some on each namespace's channel, each under its own uid.
      const since = Date.now();
      for (const nsp of NAMESPACES) {
        await until(
          () => {
            const uids = new Set(notesOn(nsp, since).filter((n) => n.json && n.json.type === TYPE.HEARTBEAT && n.json.nsp === nsp).map((n) => n.json.uid));
            return uids.size === c.nodes.length ? uids : null;
          },
          { timeoutMs: PG_TIMING.heartbeatInterval * 4 + 2000, what: `heartbeats from ${c.nodes.length} uids on ${channelOf(c, nsp)}` },
        );
      }

      // A broadcast from a wasio node, to a room except another: one notification, JSON.
      const W1 = c.byName.W1;
      const u = uid("fmt");
      const res = await W1.op("broadcast", { nsp: "/chat", rooms: [`${u}-r`], except: [`${u}-x`], event: "docfmt", data: { u, n: 1 } });
      assert.deepEqual(res, { ok: true });
      const note = await until(() => notesOn("/chat").find((n) => n.payload.includes(u)), { what: "W1's broadcast notification" });
      const msg = note.json;
      const problems = [];
      const check = (cond, what) => cond || problems.push(what);
      check(msg && typeof msg === "object", `JSON: ${note.payload.slice(0, 200)}`);
      if (msg) {
        const heartbeatUids = notesOn("/chat").filter((n) => n.json && n.json.type === TYPE.HEARTBEAT).map((n) => n.json.uid);
        check(typeof msg.uid === "string" && msg.uid && msg.uid !== "emitter", `uid is the node's own string: ${safeJson(msg.uid)}`);
        check(heartbeatUids.includes(msg.uid), "the uid is the one of W1's heartbeats");
        check(msg.nsp === "/chat", `nsp: ${safeJson(msg.nsp)}`);
        check(msg.type === TYPE.BROADCAST, `type 3 (BROADCAST), a number: ${safeJson(msg.type)}`);
        check(msg.attachmentId === undefined, "inline, no attachment");
        const packet = (msg.data && msg.data.packet) || {};
        check(packet.type === 2 && (packet.nsp === undefined || packet.nsp === "/chat"), `packet {type: 2, nsp?}: ${safeJson(packet)}`);
        check(safeJson(packet.data) === safeJson(["docfmt", { u, n: 1 }]), `packet.data [event, data]: ${safeJson(packet.data)}`);
        const o = (msg.data && msg.data.opts) || {};
        check(safeJson(o.rooms) === safeJson([`${u}-r`]), `opts.rooms: ${safeJson(o.rooms)}`);
        check(safeJson(o.except) === safeJson([`${u}-x`]), `opts.except: ${safeJson(o.except)}`);
        check(msg.data.requestId === undefined, "no requestId on a broadcast without ack");
      }
      check(Buffer.byteLength(note.payload) < PAYLOAD_THRESHOLD, "under the threshold");
      check((await attachmentRows(backend.pool, c.tableName, u)).length === 0, "no attachment row for a small text broadcast");
      assert.deepEqual(problems, [], `W1's broadcast notification ${note.payload.slice(0, 300)}`);
    });

    /**
     * Asserts that `origin`'s broadcast holding `u` went through the attachments table: one
     * row, MessagePack of {uid, nsp, type: 3, data: {packet, opts}}, announced on the
     * namespace's channel by a header {uid, type: 3, attachmentId} naming that row.
     */
    async function assertAttached(origin, nsp, u, type = TYPE.BROADCAST) {
      const rows = await attachmentRows(backend.pool, c.tableName, u);
      assert.equal(rows.length, 1, `one attachment row for ${origin}'s ${u}: ${rows.map((r) => r.id)}`);
      const [row] = rows;
      const m = row.message;
      assert.equal(m.type, type, `the row is a message of type ${type}: ${safeJson(m)}`);
      assert.equal(m.nsp, nsp, `the row's nsp: ${safeJson(m)}`);
      assert.ok(typeof m.uid === "string" && m.uid, `the row's uid: ${safeJson(m.uid)}`);
      const header = await until(
        () => notesOn(nsp).find((n) => n.json && n.json.attachmentId !== undefined && String(n.json.attachmentId) === row.id),
        { what: `the header naming row ${row.id} on ${channelOf(c, nsp)}` },
      );
      assert.equal(header.json.type, type, `header type: ${header.payload}`);
      assert.equal(header.json.uid, m.uid, `header uid is the row's: ${header.payload}`);
      assert.equal(header.json.data, undefined, `the header carries no data: ${header.payload}`);
      assert.ok(Buffer.byteLength(header.payload) < 200, `a short header: ${header.payload}`);
      return { row, header };
    }

    const big = (n, ch = "x") => ch.repeat(n);
    const PAYLOADS = [
      // A JSON message over the threshold (the data alone is 8000 bytes).
      { what: "8000 bytes of text", data: () => ({ text: big(8000) }), check: (d) => d.text === big(8000) },
      // 4000 characters, 8000 bytes in UTF-8: over the threshold in bytes, not in characters.
      { what: "4000 two-byte characters (8000 bytes of UTF-8)", data: () => ({ text: big(4000, "é") }), check: (d) => d.text === big(4000, "é") },
      { what: "200 KiB of text, 10000 numbers", data: () => ({ text: big(200 * 1024, "y"), list: Array.from({ length: 10000 }, (_, i) => i * 7) }), check: (d) => d.text.length === 200 * 1024 && d.list.length === 10000 && d.list[9999] === 9999 * 7 },
      { what: "a 3-byte Buffer", data: () => ({ bin: Buffer.from([1, 0, 255]) }), check: (d) => Buffer.isBuffer(d.bin) && d.bin.equals(Buffer.from([1, 0, 255])) },
      { what: "a 256 KiB Buffer, nested", data: (seed) => ({ nested: [{ bin: seed }] }), check: (d, seed) => Buffer.from(d.nested[0].bin).equals(seed) },
    ];

    for (const p of PAYLOADS) {
      it(`${p.what} crosses both ways, through the attachments table`, async () => {
        const all = await spread("/", 1);
        const seed = crypto.randomBytes(256 * 1024);
        for (const origin of ["N1", "W1"]) {
          const u = uid("att");
          const data = { u, ...p.data(seed) };
          const res = await c.byName[origin].op("broadcast", { nsp: "/", event: "att", data }, { timeoutMs: 15000 });
          assert.deepEqual(res, { ok: true });
          await expectExactly(all, all, "att", (d) => d && d.u === u, onNode(all, origin));
          for (const s of all) {
            const d = got(s, "att").find((x) => x.u === u);
            assert.ok(p.check(d, seed), `${p.what} from ${origin} intact on ${s.node}`);
          }
          const { row } = await assertAttached(origin, "/", u);
          const pkt = row.message.data && row.message.data.packet;
          assert.ok(pkt && Array.isArray(pkt.data) && pkt.data[0] === "att" && pkt.data[1].u === u, `the row holds the packet: ${safeJson(row.message)}`);
        }
      });
    }

    it("fetchSockets answers over the threshold travel as attachments, both ways", async () => {
      // 20 sockets per node with a 300-byte query each: every node's answer is well over
      // 8000 bytes as JSON, so it goes into the table (type 8, FETCH_SOCKETS_RESPONSE).
      const u = uid("fsbig");
      const mine = [];
      for (const n of c.nodes) {
        for (let i = 0; i < 20; i++) {
          const s = await c.connect(n, "/", { query: { who: `${n.name}-${i}`, pad: `${u}-${"p".repeat(300)}` } });
          mine.push(s);
        }
      }
      for (const origin of ["N1", "W1"]) {
        const res = await c.byName[origin].op("fetchSockets", { nsp: "/", timeoutMs: 4000 }, { timeoutMs: 15000 });
        assert.equal(res.ok, true, `${origin}: ${safeJson(res)}`);
        const ids = new Set(res.sockets.map((x) => x.id));
        const missing = mine.filter((s) => !ids.has(s.id)).map((s) => s.node);
        assert.deepEqual(missing, [], `${origin}'s fetchSockets lists every socket (missing, by node: ${safeJson(missing)})`);
        const other = res.sockets.find((x) => x.id === mine.find((s) => s.node !== origin).id);
        assert.ok(other.handshake && other.handshake.query && other.handshake.query.pad.startsWith(u), `${origin}: another node's socket with its handshake query`);
      }
      // Each node answered the other two's requests through the table: rows of type 8 holding
      // its sockets' ids.
      for (const n of c.nodes) {
        const s = mine.find((x) => x.node === n.name);
        const rows = (await attachmentRows(backend.pool, c.tableName, s.id)).filter((r) => r.message.type === TYPE.FETCH_SOCKETS_RESPONSE);
        assert.ok(rows.length >= 1, `${n.name}'s fetchSockets answers went through the attachments table: ${rows.length} row(s)`);
        assert.ok(rows.every((r) => r.message.nsp === "/" && r.message.data && Array.isArray(r.message.data.sockets)), `${n.name}'s answer rows: {nsp, data: {requestId, sockets}}`);
      }
    });

    it("binary crosses both ways in server-side emits and in broadcast acks, through the attachments table", async () => {
      // serverSideEmit with a Buffer.
      for (const origin of ["N1", "W1"]) {
        const u = uid("ssebin");
        const bin = crypto.randomBytes(64);
        const res = await c.byName[origin].op("serverSideEmit", { nsp: "/chat", args: ["sse", { u, bin }] });
        assert.deepEqual(res, { ok: true });
        for (const n of c.nodes.filter((x) => x.name !== origin)) {
          const rec = await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.args[1] && d.args[1].u === u, { timeoutMs: WAIT_MS, what: `${origin}'s binary serverSideEmit on ${n.name}` });
          assert.ok(Buffer.from(rec.args[0].args[1].bin).equals(bin), `${origin} → ${n.name}: the Buffer intact`);
        }
        await assertAttached(origin, "/chat", u, TYPE.SERVER_SIDE_EMIT);
      }
      // Clients acking a broadcast with a Buffer: each BROADCAST_ACK has binary.
      const all = await spread("/", 1);
      const ev = uid("binack");
      for (const s of all) s.on(ev, (data, cb) => cb({ who: s.who, bin: Buffer.from(s.who) }));
      for (const origin of ["N1", "W1"]) {
        const r = await c.byName[origin].op("broadcastWithAck", { nsp: "/", event: ev, data: 1, timeoutMs: 3000 });
        assert.equal(r.ok, true, safeJson(r));
        assert.deepEqual(r.errors, [], `${origin}: ${safeJson(r)}`);
        const acks = r.responses.map((x) => `${x.who}:${Buffer.from(x.bin).toString()}`).sort();
        assert.deepEqual(acks, all.map((s) => `${s.who}:${s.who}`).sort(), `${origin}: every client's binary ack, intact`);
        assert.equal(r.complete, true, `${origin}: complete before the timeout (${r.elapsedMs} ms)`);
      }
    });

    // Row 9: @socket.io/postgres-emitter 0.1 (uid "emitter"), on the notifier's connection.
    // Emitter#of() forgets the options (channelPrefix, tableName): one Emitter per namespace.
    // It reaches the wasio nodes only: Node's adapter 0.5 ignores its messages (no `nsp`, see
    // emitterPool), so N1's clients are left out here (what they got is printed).
    describe("@socket.io/postgres-emitter reaches the cluster's wasio nodes", () => {
      for (const nsp of NAMESPACES) {
        it(`[${nsp}] emit (with binary: an attachment; 9000 bytes) / to a room / except a room, socketsJoin/Leave, serverSideEmit, disconnectSockets`, async () => {
          const emitter = new Emitter(emitterPool(notifier, nsp), nsp, { channelPrefix: c.channelPrefix, tableName: c.tableName, payloadThreshold: PAYLOAD_THRESHOLD });
          // The emitter does not await its queries: two round trips on its connection cover
          // an attachment's INSERT and the NOTIFY queued after it.
          const synced = async () => {
            await notifier.query("SELECT 1");
            await notifier.query("SELECT 1");
          };
          const fenceAll = async (clients) => {
            await synced();
            await fence.clients(clients);
          };
          const everyone = await spread(nsp, 1);
          // Under the reference every node gets them (emitterPool): all clients count.
          const reached = (s) => POSTGRES_REFERENCE || c.byName[s.node].kind === "wasio";
          const all = everyone.filter(reached);
          const left = everyone.filter((s) => !reached(s));
          const targets = c.nodes.filter((n) => POSTGRES_REFERENCE || n.kind === "wasio");
          const u = uid("em");

          emitter.emit("em", { u, bin: Buffer.from([9, 8, 7]), nested: [Buffer.from([0, 255])] });
          await expectExactly(all, all, "em", (d) => d && d.u === u, fenceAll);
          for (const s of all) {
            const d = got(s, "em").find((x) => x.u === u);
            assert.ok(Buffer.isBuffer(d.bin) && d.bin.equals(Buffer.from([9, 8, 7])), `emitter binary on ${s.node}: ${safeJson(d)}`);
            assert.ok(Buffer.from(d.nested[0]).equals(Buffer.from([0, 255])), `nested emitter binary on ${s.node}`);
          }
          const rows = await attachmentRows(backend.pool, c.tableName, u);
          assert.equal(rows.length, 1, "the emitter's binary broadcast is one attachment row");
          assert.equal(rows[0].message.uid, "emitter");

          const text = big(9000, "e");
          emitter.emit("em", { u: `${u}-big`, text });
          await expectExactly(all, all, "em", (d) => d && d.u === `${u}-big` && d.text === text, fenceAll);

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
          emitter.to(J).emit("em", { u: `${u}-joined` });
          await expectExactly(all, members, "em", (d) => d && d.u === `${u}-joined`, fenceAll);
          emitter.in(R).socketsLeave(J);
          for (const s of members) await until(async () => !(await localRooms(s, nsp)).includes(J), { what: `${s.who} left ${J}` });

          emitter.serverSideEmit("sse", { u });
          for (const n of targets) {
            await n.ops.inbox.waitFor("serverSideEmitted", (d) => d.nsp === nsp && d.args[1] && d.args[1].u === u, {
              timeoutMs: WAIT_MS,
              what: `emitter serverSideEmit on ${n.name}`,
            });
          }

          emitter.in(R).disconnectSockets();
          for (const s of members) await disconnected(s);
          await fenceAll([nonMember]);
          assert.ok(nonMember.connected, "a non-member stays connected");
          for (const s of left) {
            const em = got(s, "em").filter((d) => d && typeof d.u === "string" && d.u.startsWith(u));
            console.error(`# ${s.node} (Node.js, postgres-adapter 0.5): got ${em.length} of the emitter's broadcasts, ${s.connected ? "still connected" : "disconnected"}`);
          }
        });
      }
    });
  });

  // Row 12 on PostgreSQL: notifications on the cluster's channels that are no message of the
  // adapter. A cluster of its own: Node's adapter counts the garbage's uids as nodes until
  // heartbeatTimeout, which would slow the other suite's requests.
  describe("postgres: malformed notifications (2 wasio nodes + 1 Node.js node)", () => {
    let backend;
    let c;
    let notifier;
    before(async () => {
      backend = await postgresBackend();
      const { channelPrefix, tableName } = await backend.fresh("bad");
      c = await startCluster({ backend: "postgres", postgresUrl: backend.url, channelPrefix, tableName, wasio: 2, node: 1, ...PG_TIMING });
      notifier = await backend.client();
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
    const { broadcastsStillWork } = scenarios(() => c);
    const fence = fences(
      () => c,
      () => notifier,
    );

    /** A row of the cluster's attachments table holding `bytes`; resolves with its id. */
    const insertRow = async (bytes) => (await notifier.query(`INSERT INTO ${c.tableName} (payload) VALUES ($1) RETURNING id::text AS id`, [bytes])).rows[0].id;
    const validOpts = { rooms: [], except: [], flags: {} };
    const deep = (n) => (n === 0 ? { end: true } : { a: deep(n - 1) });

    // `counted`: clearly no message of a served namespace, so every wasio node must drop it
    // and count it (`datasource.malformed` or `guest.dropped_messages`; the test prints
    // which); the others (a type nobody knows) may be ignored silently, as Node does.
    // `payload` is the NOTIFY payload, or a function making it (attachment rows first).
    const GARBAGE = [
      { what: "not JSON", nsp: "/", payload: "garbage", counted: true },
      { what: "an empty payload", nsp: "/chat", payload: "", counted: true },
      { what: "truncated JSON", nsp: "/", payload: '{"uid":"intruder","nsp":"/","type":3,"data":{"packet"', counted: true },
      { what: "a JSON array", nsp: "/", payload: "[1,2,3]", counted: true },
      { what: "JSON null", nsp: "/chat", payload: "null", counted: true },
      { what: "a JSON string", nsp: "/", payload: '"hello"', counted: true },
      { what: "an empty object", nsp: "/", payload: "{}", counted: true },
      { what: "type a string", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: "3", data: { packet: { type: 2, data: ["x"] }, opts: validOpts } }), counted: true },
      { what: "type a fraction", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: 3.5, data: {} }), counted: true },
      { what: "a broadcast without data", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: TYPE.BROADCAST }), counted: true },
      { what: "a broadcast whose data is a number", nsp: "/chat", payload: JSON.stringify({ uid: "intruder", nsp: "/chat", type: TYPE.BROADCAST, data: 5 }), counted: true },
      { what: "packet a number, opts a string", nsp: "/", payload: JSON.stringify({ uid: 7, nsp: "/", type: TYPE.BROADCAST, data: { packet: 5, opts: "x" } }), counted: true },
      { what: "packet.data not an array, rooms a number", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: { packet: { type: 2, data: 7 }, opts: { rooms: 3 } } }), counted: true },
      { what: "socketsJoin with rooms a number, opts null", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: TYPE.SOCKETS_JOIN, data: { opts: null, rooms: 5 } }), counted: true },
      { what: "fetchSockets with requestId an object", nsp: "/chat", payload: JSON.stringify({ uid: "intruder", nsp: "/chat", type: TYPE.FETCH_SOCKETS, data: { requestId: { x: 1 }, opts: [] } }), counted: true },
      { what: "serverSideEmit with packet a string", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: TYPE.SERVER_SIDE_EMIT, data: { packet: "not an array" } }), counted: true },
      { what: "JSON nested 3900 deep", nsp: "/", payload: `${"[".repeat(3900)}${"]".repeat(3900)}`, counted: true },
      { what: "data nested 200 deep", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: TYPE.BROADCAST, data: deep(200) }), counted: true },
      { what: "a header whose attachmentId does not exist", nsp: "/", payload: JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: "999999999999" }), counted: true },
      { what: "a header whose attachmentId is a number that does not exist", nsp: "/chat", payload: JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: 888888888 }), counted: true },
      { what: "a header whose attachmentId is no number", nsp: "/", payload: JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: "abc'; DROP TABLE x; --" }), counted: true },
      { what: "a header whose attachmentId is an object", nsp: "/", payload: JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: { id: 1 } }), counted: true },
      { what: "a header naming a row of random bytes", nsp: "/", payload: async () => JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: await insertRow(crypto.randomBytes(64)) }), counted: true },
      { what: "a header naming an empty row", nsp: "/chat", payload: async () => JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: await insertRow(Buffer.alloc(0)) }), counted: true },
      {
        what: "a header naming a row of MessagePack of the wrong shape",
        nsp: "/",
        payload: async () => JSON.stringify({ uid: "intruder", type: TYPE.BROADCAST, attachmentId: await insertRow(Buffer.from([0x93, 0x01, 0x02, 0x03])) }),
        counted: true,
      },
      { what: "an unknown type", nsp: "/", payload: JSON.stringify({ uid: "intruder", nsp: "/", type: 99, data: { x: 1 } }), counted: false },
    ];

    it("each is dropped and counted on every wasio node, nothing crashes, the cluster relays after them", async () => {
      // Under WASIO_POSTGRES_REFERENCE every node is Node.js: no counters there.
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
        assert.equal(typeof start[n.name].malformed, "number", `${n.name} /healthz datasource.malformed: ${safeJson((await n.health()).datasource)}`);
      }
      // One at a time, so that each one's fate is known.
      const problems = [];
      const where = {}; // garbage → node → the counter(s) that moved
      for (const g of GARBAGE) {
        const before = {};
        for (const n of wasioNodes) before[n.name] = await counters(n);
        const payload = typeof g.payload === "function" ? await g.payload() : g.payload;
        await notifier.query("SELECT pg_notify($1, $2)", [channelOf(c, g.nsp), payload]);
        if (!g.counted) continue;
        await Promise.all(
          wasioNodes.map(async (n) => {
            const b = before[n.name];
            const moved = (x) => [x.malformed > b.malformed && "datasource.malformed", x.dropped > b.dropped && "guest.dropped_messages"].filter(Boolean);
            let now;
            try {
              now = await until(
                async () => {
                  const x = await counters(n);
                  return moved(x).length ? x : null;
                },
                { timeoutMs: 3000, what: `${n.name} to count "${g.what}"` },
              );
            } catch {
              now = await counters(n).catch((e) => e.message);
              problems.push(`${n.name} did not count "${g.what}" (counters before ${safeJson(b)}, 3 s later ${safeJson(now)})`);
              return;
            }
            (where[g.what] ||= {})[n.name] = moved(now).join("+");
          }),
        );
      }
      // Every node has read them all (the uncounted ones too) once a later notification arrived.
      await fence.servers(c.nodes);
      c.assertAlive();
      for (const n of c.nodes) {
        const h = await n.health();
        assert.equal(h.status, "ok", `${n.name} healthy`);
        if (n.kind === "node" && h.errors.length) {
          console.error(`# ${n.name} (Node.js) survived ${h.errors.length} errors: ${safeJson(h.errors.slice(0, 3))}`);
        }
      }
      for (const n of wasioNodes) {
        const end = await counters(n);
        // A guest stopped at its deadline is re-instantiated and loses its state (known
        // nodes, pending requests): a malformed message must be dropped before it costs that.
        for (const k of ["traps", "memory_stops", "deadline_stops", "reinstantiations"]) {
          if (end[k] !== start[n.name][k]) problems.push(`${n.name}: guest.${k} ${start[n.name][k]} → ${end[k]}`);
        }
        console.error(`# ${n.name}: ${safeJson(start[n.name])} → ${safeJson(end)}`);
      }
      const used = new Set(Object.values(where).flatMap((w) => Object.values(w)));
      console.error(`# malformed notifications counted in: ${[...used].join(", ") || "-"}`);
      assert.deepEqual(problems, [], "malformed notifications");
      // Relaying goes on, in both namespaces, from every node to every node.
      await broadcastsStillWork(c.nodes, c.nodes);
      // The garbage's uids ("intruder", 7) are no nodes: within heartbeatTimeout every node
      // counts the live nodes only (Node counts any uid it heard from until then).
      await waitServerCount(c.nodes, c.nodes.length, NAMESPACES, PG_TIMING.heartbeatTimeout + 5000);
      const fs = await c.byName.W1.op("fetchSockets", { nsp: "/" });
      assert.equal(fs.ok, true, `W1's fetchSockets after the garbage: ${safeJson(fs)}`);
    });
  });
}

module.exports = { definePostgresSuite, TYPE, PG_TIMING, attachmentRows, channelOf, emitterBroadcast, fences, recordNotifications };
