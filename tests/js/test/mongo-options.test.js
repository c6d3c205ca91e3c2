// MongoDB adapter options beyond the interop rows, on a SecantusDB of the suite's own:
//   - a wasio node alone on an empty database makes the collection capped, `cappedSize`
//     bytes, in both modes (Node's README set-up);
//   - the TTL variant of @socket.io/mongo-adapter's README: wasio with `ttlSeconds` makes the
//     collection a normal one with a TTL index on `createdAt` and adds `createdAt` to its
//     documents (as Node's `addCreatedAtField`), and interoperates with a Node.js node set up
//     that way;
//   - `wasio serve --check` accepts a mongodb config and refuses a bad `mode`.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { MONGO_REFERENCE, startCluster, until, waitServerCount, wasioMongoConfig } = require("../lib/cluster");
const { mongoBackend } = require("../lib/mongo-backend");
const { TYPE } = require("../lib/mongo-suite");
const { runWasio, tempDir, writeFile } = require("../lib/server");

const TTL = 600;

/** Runs `fn`, then stops cluster `c` whatever happened (each test here has its own). */
async function using(c, fn) {
  try {
    await fn();
  } finally {
    await c.stop();
  }
}

describe("mongodb options", () => {
  let backend;
  before(async () => {
    backend = await mongoBackend();
  });
  after(async () => {
    if (backend) await backend.stop();
  });

  for (const mongoMode of ["change-stream", "capped"]) {
    it(`${mongoMode}: a missing collection is made capped, cappedSize bytes, and read`, async () => {
      const collection = backend.external ? backend.collection("sio-make") : `sio-make-${mongoMode}`;
      const cappedSize = 2000000;
      const c = await startCluster({ backend: "mongodb", mongoUrl: backend.url, collection, mongoMode, cappedSize, wasio: 1, node: 0, namespaces: ["/"] });
      await using(c, async () => {
        const mongo = await backend.client();
        const col = mongo.db().collection(collection);
        if (c.byName.W1.kind === "wasio") {
          const opts = await col.options();
          assert.equal(opts.capped, true, `capped: ${safeJson(opts)}`);
          assert.equal(opts.size, cappedSize, `size: ${safeJson(opts)}`);
        }
        // It reads it: a document inserted now reaches its client.
        const s = await c.connect(c.byName.W1, "/");
        const u = uid("make");
        await until(
          async () => {
            await col.insertOne({ uid: "emitter", nsp: "/", type: TYPE.BROADCAST, data: { packet: { type: 2, data: ["made", u], nsp: "/" }, opts: { rooms: [], except: [], flags: {} } } });
            await s.inbox.waitFor("made", (d) => d === u, { timeoutMs: 500 });
            return true;
          },
          { timeoutMs: 5000, what: "a document inserted in the new collection reaches W1's client" },
        );
      });
    });
  }

  it("ttlSeconds: a TTL index on createdAt, createdAt on every document, and a Node node with addCreatedAtField interoperates", async () => {
    const collection = backend.external ? backend.collection("sio-ttl") : "sio-ttl";
    // W1 alone first: what it creates is its own doing.
    const c = await startCluster({ backend: "mongodb", mongoUrl: backend.url, collection, ttlSeconds: TTL, wasio: 1, node: 0, namespaces: ["/"] });
    await using(c, async () => {
      const mongo = await backend.client();
      const col = mongo.db().collection(collection);
      const opts = await col.options();
      assert.notEqual(opts.capped, true, `not a capped collection: ${safeJson(opts)}`);
      const indexes = await col.indexes();
      const ttl = indexes.find((i) => safeJson(i.key) === safeJson({ createdAt: 1 }));
      assert.ok(ttl, `an index on {createdAt: 1}: ${safeJson(indexes)}`);
      assert.equal(ttl.expireAfterSeconds, TTL, `expireAfterSeconds ${TTL}: ${safeJson(ttl)}`);

      const N1 = await c.add({ role: "node", name: "N1", addCreatedAtField: true });
      await waitServerCount(c.nodes, 2, ["/"]);
      const W1 = c.byName.W1;
      const a = await c.connect(W1, "/");
      const b = await c.connect(N1, "/");
      const u = uid("ttl");
      await ack(a, "publish", { event: "ttl", data: { u, from: "W1" }, exceptSelf: true });
      await b.inbox.waitFor("ttl", (d) => d.u === u && d.from === "W1", { what: "W1 → N1" });
      await ack(b, "publish", { event: "ttl", data: { u, from: "N1" }, exceptSelf: true });
      await a.inbox.waitFor("ttl", (d) => d.u === u && d.from === "N1", { what: "N1 → W1" });

      const doc = await col.findOne({ type: TYPE.BROADCAST, "data.packet.data.1.from": "W1", "data.packet.data.1.u": u });
      assert.ok(doc, "W1's broadcast document");
      assert.ok(doc.createdAt instanceof Date, `createdAt is a BSON date: ${safeJson(doc.createdAt)}`);
      assert.ok(Math.abs(doc.createdAt.getTime() - Date.now()) < 60000, `createdAt is now: ${doc.createdAt.toISOString()}`);
      const without = await col.countDocuments({ createdAt: { $exists: false } });
      assert.equal(without, 0, "every document (heartbeats too) has createdAt");
    });
  });

  it("wasio serve --check accepts a mongodb config and refuses an unknown mode", { skip: MONGO_REFERENCE && "WASIO_MONGO_REFERENCE: no wasio here" }, async () => {
    if (!process.env.WASIO_BIN) throw new Error("set WASIO_BIN (wasio serve --check is run)");
    const tmp = await tempDir();
    try {
      const collection = backend.external ? backend.collection("sio-check") : "sio-check";
      const config = (mode) =>
        wasioMongoConfig({ namespaces: ["/"], mongoUrl: backend.url, requestTimeoutMs: 2000, adapterOptions: { collection, mode, requestsTimeout: 1000, heartbeatInterval: 500, heartbeatTimeout: 1500 } });
      for (const mode of ["change-stream", "capped"]) {
        const good = await writeFile(tmp.dir, `good-${mode}.toml`, config(mode));
        const res = await runWasio(["serve", "--config", good, "--check"], { timeoutMs: 15000 });
        assert.equal(res.timedOut, false, "--check returns");
        assert.equal(res.code, 0, `--check on mode ${mode}; stderr:\n${res.stderr}`);
      }
      const bad = await writeFile(tmp.dir, "bad-mode.toml", config("tailing"));
      const res = await runWasio(["serve", "--config", bad, "--check"], { timeoutMs: 15000 });
      assert.equal(res.code, 2, `--check on mode "tailing": exit code; stderr:\n${res.stderr}`);
      assert.match(res.stderr, /mode/, `the refusal names the mode option; stderr:\n${res.stderr}`);
    } finally {
      await tmp.cleanup();
    }
  });
});
