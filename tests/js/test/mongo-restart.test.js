// Interop matrix row 11 on MongoDB: the backend restarts under the nodes, for both wasio
// modes. Each suite runs its OWN SecantusDB (lib/mongo-backend.js), kills it (SIGKILL) and
// starts another on the same port, without restarting any node. Checked: /healthz
// `datasource.connected` goes false, then true with `reconnects` grown; a relay publish made
// during the outage is acked, reaches its own node's client at once (wasio), and waits
// (`datasource.buffered`); afterwards it is delivered, or counted (`publish_errors` /
// `lost_messages`) — never silently lost.
//
//   "the collection is lost"  W1 alone. The new server is empty, as an in-memory server
//       restarting is: the collection, its capped-ness and the oplog behind the change
//       stream's resume token are gone. W1 makes the collection again (capped, cappedSize)
//       and reads it anew; the outage's publish is in it. One node only: several nodes making
//       the collection at once hit a SecantusDB deadlock (lib/mongo-backend.js).
//   "the cluster comes back"  W1, W2 (wasio) and N1 (Node.js, @socket.io/mongo-adapter 0.4,
//       change stream). The new server starts from a storage holding the (empty) capped
//       collection and nothing else (no oplog the nodes know). The nodes count each other
//       again, broadcasts cross every way, and the outage's publish reached W2 or is counted.
// Skipped with MONGODB_URL (the tests cannot restart someone's mongod).
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until, waitServerCount } = require("../lib/cluster");
const { MongoClient } = require("mongodb");
const { EXTERNAL_URL, createAdapterCollection, mongoBackend } = require("../lib/mongo-backend");
const { emitterBroadcast } = require("../lib/mongo-suite");

const SKIP = EXTERNAL_URL ? "MONGODB_URL is set: the tests cannot restart that server" : false;
const CAPPED_SIZE = 3000000;
const TIMING = { requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 };

const lost = (d) => (d.publish_errors || 0) + (d.lost_messages || 0);

/** Kills the backend and waits until every node of `nodes` says so in /healthz. */
async function outage(backend, nodes) {
  await backend.kill();
  for (const n of nodes) {
    await until(async () => (await n.health()).datasource.connected === false, {
      timeoutMs: 10000,
      what: `${n.name} /healthz datasource.connected == false`,
    });
  }
}

/** Waits until every node of `nodes` says in /healthz that it is connected again. */
async function reconnected(nodes) {
  for (const n of nodes) {
    await until(async () => (await n.health()).datasource.connected === true, {
      timeoutMs: 20000,
      intervalMs: 100,
      what: `${n.name} /healthz datasource.connected == true again`,
    });
  }
}

/**
 * A relay publish from `a` (a client of `node`) while the backend is away: acked, served to
 * `a` at once on a wasio node (Node's adapter serves its own clients only once its insert
 * went through). Resolves with node's /healthz during the outage (wasio) or null.
 */
async function publishDuringOutage(node, a, u) {
  const res = await ack(a, "publish", { event: "gap", data: u });
  assert.deepEqual(res, { ok: true, count: 1 }, "a publish during the outage is acked");
  if (node.kind !== "wasio") return null;
  await a.inbox.waitFor("gap", (d) => d === u, { what: `the outage's publish on ${node.name}'s own client, during the outage` });
  const h = await node.health();
  console.error(`# ${node.name} during the outage: ${safeJson(h.datasource)}`);
  return h;
}

for (const mongoMode of ["change-stream", "capped"]) {
  describe(`mongodb, wasio in ${mongoMode} mode: the backend restarts empty (the collection is lost) under one node`, { skip: SKIP }, () => {
    let backend;
    let c;
    before(async () => {
      backend = await mongoBackend();
      c = await startCluster({
        backend: "mongodb",
        mongoUrl: backend.url,
        collection: backend.collection(),
        mongoMode,
        cappedSize: CAPPED_SIZE,
        wasio: 1,
        node: 0,
        namespaces: ["/"],
        ...TIMING,
      });
    });
    after(async () => {
      try {
        if (c) await c.stop();
      } finally {
        if (backend) await backend.stop();
      }
    });

    it("the node sees the outage, makes the collection again and reads it; the outage's publish is in it or counted", async () => {
      const W1 = c.byName.W1;
      const a = await c.connect(W1, "/");
      const u = uid("lost");
      const h0 = await W1.health();
      assert.equal(h0.datasource.connected, true, `connected at first: ${safeJson(h0.datasource)}`);

      await outage(backend, [W1]);
      const gapHealth = await publishDuringOutage(W1, a, u);
      await backend.restart();
      await reconnected([W1]);
      await a.inbox.waitFor("gap", (d) => d === u, { timeoutMs: 15000, what: "the outage's publish on W1's own client" });

      const mongo = await backend.client();
      const col = mongo.db().collection(c.collection);
      if (W1.kind === "wasio") {
        // Made again as the mode needs it (Node's adapter never makes it: not under reference).
        const opts = await until(() => col.options().catch(() => null), { what: "the collection exists again" });
        assert.equal(opts.capped, true, `the collection is capped again: ${safeJson(opts)}`);
        assert.equal(opts.size, CAPPED_SIZE, `cappedSize bytes: ${safeJson(opts)}`);
      }
      // It reads the new collection: a document inserted now reaches its client.
      const v = uid("again");
      await until(
        async () => {
          await col.insertOne(emitterBroadcast("/", "again", v));
          await a.inbox.waitFor("again", (d) => d === v, { timeoutMs: 1000 });
          return true;
        },
        { timeoutMs: 15000, intervalMs: 10, what: "a document inserted after the restart reaches W1's client" },
      );

      const h1 = await W1.health();
      console.error(`# W1 after the restart: ${safeJson(h1.datasource)}`);
      assert.ok(h1.datasource.reconnects > h0.datasource.reconnects, `W1 counted its reconnect: ${safeJson(h1.datasource)}`);
      // The outage's publish: written to the new collection, or counted. Not silently lost.
      const written = (await col.countDocuments({ "data.packet.data": u })) > 0;
      if (W1.kind === "wasio") {
        const counted = lost(h1.datasource) > lost(h0.datasource);
        console.error(`# the outage's publish: in the new collection: ${written}; counted: ${counted}; buffered during the outage: ${gapHealth.datasource.buffered}`);
        assert.ok(written || counted, `the outage's publish was written after the restart (${written}) or counted (${safeJson(h1.datasource)})`);
        if (!counted) assert.ok(gapHealth.datasource.buffered >= 1, `/healthz datasource.buffered counts the publish waiting during the outage: ${safeJson(gapHealth.datasource)}`);
      } else {
        console.error(`# reference: the outage's publish ${written ? "was" : "was NOT"} written after the restart`);
      }
    });
  });

  describe(`mongodb, wasio in ${mongoMode} mode: the backend restarts under W1, W2 and a Node.js node`, { skip: SKIP }, () => {
    let backend;
    let c;
    let template;
    before(async () => {
      backend = await mongoBackend();
      const collection = backend.collection();
      // Both made before the nodes start (the SecantusDB bug, lib/mongo-backend.js).
      [template] = await Promise.all([
        backend.template((db) => createAdapterCollection(db, collection, { cappedSize: CAPPED_SIZE })),
        backend.prepareCollection(collection, { cappedSize: CAPPED_SIZE }),
      ]);
      c = await startCluster({
        backend: "mongodb",
        mongoUrl: backend.url,
        collection,
        mongoMode,
        cappedSize: CAPPED_SIZE,
        wasio: 2,
        node: 1,
        namespaces: ["/"],
        ...TIMING,
      });
    });
    after(async () => {
      try {
        if (c) await c.stop();
      } finally {
        if (backend) await backend.stop();
      }
    });

    it("the nodes see the outage, reconnect, count each other, broadcasts cross again; the outage's publish is delivered or counted", async () => {
      const [W1, W2, N1] = [c.byName.W1, c.byName.W2, c.byName.N1];
      const a = await c.connect(W1, "/");
      const b = await c.connect(W2, "/");
      const n = await c.connect(N1, "/");
      const clients = [a, b, n];
      const u = uid("rs");

      // Crossing before.
      const res = await ack(a, "publish", { event: "before", data: u, exceptSelf: true });
      assert.equal(res.ok, true);
      for (const s of [b, n]) await s.inbox.waitFor("before", (d) => d === u, { what: `W1 → ${s.node} before the outage` });
      const h0 = {};
      for (const x of c.nodes) {
        h0[x.name] = await x.health();
        assert.equal(h0[x.name].datasource.connected, true, `${x.name} connected at first: ${safeJson(h0[x.name].datasource)}`);
      }

      await outage(backend, c.nodes);
      const gapHealth = await publishDuringOutage(W1, a, u);
      await backend.restart({ from: template });
      await reconnected(c.nodes);
      await a.inbox.waitFor("gap", (d) => d === u, { timeoutMs: 15000, what: "the outage's publish on W1's own client" });
      await waitServerCount(c.nodes, c.nodes.length, ["/"], 15000);

      // Broadcasts cross again, every way, without restarting anything.
      for (const from of clients) {
        const v = uid("again");
        await until(
          async () => {
            // A node whose reading side is not back yet misses a broadcast: retried.
            const r = await ack(from, "publish", { event: "again", data: v, exceptSelf: true });
            assert.equal(r.ok, true, safeJson(r));
            const to = clients.filter((s) => s !== from);
            await Promise.all(to.map((s) => s.inbox.waitFor("again", (d) => d === v, { timeoutMs: 1000 })));
            return true;
          },
          { timeoutMs: 15000, intervalMs: 10, what: `${from.node} → the other nodes after the restart` },
        );
      }
      // Once crossing, nothing is lost: one broadcast from each node, received at once.
      for (const from of clients) {
        const v = uid("steady");
        await ack(from, "publish", { event: "steady", data: v, exceptSelf: true });
        for (const s of clients.filter((x) => x !== from)) {
          await s.inbox.waitFor("steady", (d) => d === v, { what: `${from.node} → ${s.node}, steady after the restart` });
        }
      }

      const h1 = {};
      for (const x of c.nodes) {
        h1[x.name] = await x.health();
        console.error(`# ${x.name} after the restart: ${safeJson(h1[x.name].datasource)}`);
        assert.ok(h1[x.name].datasource.reconnects > h0[x.name].datasource.reconnects, `${x.name} counted its reconnect: ${safeJson(h1[x.name].datasource)}`);
      }
      // The outage's publish: W1 held it and inserted it once the backend was back,
      // exactly once (or counted a failure). Whether W2 then sees it is the change
      // stream's resume: a real mongod replays it, but SecantusDB drops the first events
      // after a resume across its own restart (the Node.js driver sees the same), so
      // W2's delivery is only logged here.
      const delivered = b.inbox.data("gap").includes(u);
      if (W1.kind === "wasio") {
        const counted = lost(h1.W1.datasource) > lost(h0.W1.datasource);
        const client = new MongoClient(backend.url, { serverSelectionTimeoutMS: 5000, socketTimeoutMS: 10000 });
        let stored;
        try {
          stored = await client.db().collection(c.collection).countDocuments({ "data.packet.data": u, type: 3 });
        } finally {
          await client.close();
        }
        console.error(`# the outage's publish: in the collection ${stored} time(s); delivered to W2: ${delivered}; counted: ${counted}; buffered during the outage: ${gapHealth.datasource.buffered}`);
        assert.ok(gapHealth.datasource.buffered >= 1, `/healthz datasource.buffered counts the publish waiting during the outage: ${safeJson(gapHealth.datasource)}`);
        assert.ok(stored === 1 || (stored === 0 && counted), `the outage's publish was inserted once (${stored}) or counted (${safeJson(h1.W1.datasource)})`);
      } else {
        console.error(`# reference: the outage's publish ${delivered ? "was" : "was NOT"} delivered to W2 after the restart`);
      }
    });
  });
}
