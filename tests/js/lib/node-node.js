#!/usr/bin/env node
// A Node.js socket.io 4.8 server with the official `@socket.io/redis-adapter` 8.3 or
// `@socket.io/mongo-adapter` 0.4, for the mixed-cluster interop tests: the same client relay
// protocol as wasio (the handlers of reference/wasio-ref.js) and the same `/ops` namespace as
// `wasio-test-node` (tests/node/main.rs), each op done with socket.io's own API.
//
// Usage: node lib/node-node.js --port N --name NAME --redis URL --options JSON
//   URL: redis://... (node-redis 4), or redis-cluster:// / redis-sentinel:// as wasio takes
//   them (ioredis 5 Cluster or Sentinel client, node-redis 4 cluster for sharded: see
//   lib/redis-clients.js)
//   options: {mode: "classic"|"sharded", key, requestsTimeout, publishOnSpecificResponseChannel,
//             subscriptionMode, namespaces}
//    or:   node lib/node-node.js --port N --name NAME --mongo URL --options JSON
//   options: {collection, uid, requestsTimeout, heartbeatInterval, heartbeatTimeout,
//             addCreatedAtField, ttlSeconds, cappedSize, namespaces}
//   The database is the URL's. As the adapter's README says: the collection is created
//   capped (`cappedSize` bytes, default 1e6; "already exists" ignored), or, with
//   `addCreatedAtField` or `ttlSeconds`, gets a TTL index on `createdAt` (`ttlSeconds`,
//   default 3600) and the adapter adds `createdAt` to its documents.
//    or:   node lib/node-node.js --port N --name NAME --postgres URL --options JSON
//   options: {channelPrefix, tableName, payloadThreshold, cleanupInterval, heartbeatInterval,
//             heartbeatTimeout, namespaces}
//   A pg.Pool on URL; the attachments table is created as the adapter's README says
//   (`CREATE TABLE IF NOT EXISTS`). The adapter's errorHandler (malformed notifications,
//   failed queries) records into `errors`.
//
// WASIO_NODE_BREAK=<feature> removes one feature of this node's /ops, to check that the
// interop tests notice (run with WASIO_REDIS_REFERENCE=1 / WASIO_MONGO_REFERENCE=1 /
// WASIO_POSTGRES_REFERENCE=1):
//   local-broadcast (broadcasts stay on this node) | except (ignored) | fetch-local |
//   fetch-details (no rooms/data/handshake) | rooms-local | join-local (socketsJoin/Leave
//   and disconnectSockets stay on this node) | sse-self (serverSideEmit also runs here) |
//   sse-ack (acks with a wrong name) | ack-local (broadcast with ack on this node only)
//
// GET /healthz answers {status, name, kind: "node", uid (mongo: the adapter's), datasource:
// {connector, connected, reconnects}, errors} (postgres: `connected` is a `SELECT 1` on the
// pool at that moment, `reconnects` counts its false → true turns); `errors` lists exceptions
// the process survived (the adapters throw on some malformed messages; this process records them
// instead of dying, and the tests report them).
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { register } = require("../reference/wasio-ref");

const BREAK = process.env.WASIO_NODE_BREAK || "";

/** Server-side events this node listens to (the tests use these names). */
const SERVER_SIDE_EVENTS = ["sse"];

function parseArgs(argv) {
  const args = { port: 0, name: "node", redis: "redis://127.0.0.1:6379", mongo: null, postgres: null, options: {} };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[++i];
    switch (argv[i - 1]) {
      case "--port":
        args.port = Number(v);
        break;
      case "--name":
        args.name = v;
        break;
      case "--redis":
        args.redis = v;
        break;
      case "--mongo":
        args.mongo = v;
        break;
      case "--postgres":
        args.postgres = v;
        break;
      case "--options":
        args.options = JSON.parse(v);
        break;
      default:
        process.stderr.write(`unknown argument ${argv[i - 1]}\n`);
        process.exit(2);
    }
  }
  return args;
}

const errors = [];
function survive(kind) {
  return (err) => {
    const msg = `${kind}: ${err && err.stack ? err.stack : err}`;
    errors.push(msg.split("\n")[0]);
    process.stderr.write(`node-node: ${msg}\n`);
  };
}
process.on("uncaughtException", survive("uncaughtException"));
process.on("unhandledRejection", survive("unhandledRejection"));

function ok(fields = {}) {
  return { ok: true, ...fields };
}

/** The Redis adapter (classic or sharded), and the link's state for /healthz. */
async function redisAdapter(args, opts, name) {
  const { createClient } = require("redis");
  const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
  const clusterClients = require("./redis-clients");
  let links = null; // redis-cluster:// and redis-sentinel:// URLs (lib/redis-clients.js)
  if (clusterClients.isClusterUrl(args.redis)) {
    links = await clusterClients.connect(args.redis, opts.mode, (msg) => process.stderr.write(`node-node ${name}: ${msg}\n`));
  }
  const pub = links ? links.pub : createClient({ url: args.redis });
  const sub = links ? links.sub : pub.duplicate();
  let reconnects = 0;
  if (!links) {
    for (const c of [pub, sub]) {
      c.on("error", (err) => process.stderr.write(`node-node ${name}: redis: ${err.message}\n`));
      c.on("reconnecting", () => reconnects++);
    }
    await Promise.all([pub.connect(), sub.connect()]);
  }

  const adapter =
    opts.mode === "sharded"
      ? createShardedAdapter(pub, sub, {
          channelPrefix: opts.key,
          subscriptionMode: opts.subscriptionMode || "dynamic",
        })
      : createAdapter(pub, sub, {
          key: opts.key,
          requestsTimeout: opts.requestsTimeout,
          publishOnSpecificResponseChannel: !!opts.publishOnSpecificResponseChannel,
        });
  if (links) return { adapter, datasource: links.datasource, close: links.close };
  return {
    adapter,
    datasource: () => ({ connector: "redis", connected: pub.isReady && sub.isReady, reconnects }),
    close: () => Promise.allSettled([pub.quit(), sub.quit()]),
  };
}

/**
 * The MongoDB adapter (change streams on one collection), set up as its README says, and
 * the link's state for /healthz (from the driver's server monitoring: `connected` while the
 * server is known, `reconnects` counts its returns).
 */
async function mongoAdapter(args, opts, name) {
  const { MongoClient } = require("mongodb");
  const { createAdapter } = require("@socket.io/mongo-adapter");
  const client = new MongoClient(args.mongo, { heartbeatFrequencyMS: 500, serverSelectionTimeoutMS: 10000 });
  let connected = false;
  let everConnected = false;
  let reconnects = 0;
  client.on("serverDescriptionChanged", (ev) => {
    const up = ev.newDescription.type !== "Unknown";
    if (up && !connected && everConnected) reconnects++;
    if (up) everConnected = true;
    connected = up;
  });
  client.on("error", (err) => process.stderr.write(`node-node ${name}: mongodb: ${err.message}\n`));
  await client.connect();
  connected = true;
  everConnected = true;
  const db = client.db();
  const collName = opts.collection || "socket.io-adapter-events";
  const ttl = !!(opts.addCreatedAtField || opts.ttlSeconds);
  if (ttl) {
    // The README adds `background: true`, an option MongoDB ignores since 4.2; SecantusDB
    // refuses it as a conflict when the same index exists without it (made by a wasio node).
    await db.collection(collName).createIndex({ createdAt: 1 }, { expireAfterSeconds: opts.ttlSeconds || 3600 });
  } else {
    try {
      await db.createCollection(collName, { capped: true, size: opts.cappedSize || 1e6 });
    } catch {
      // collection already exists
    }
  }
  const collection = db.collection(collName);
  const adapterOpts = {
    requestsTimeout: opts.requestsTimeout,
    heartbeatInterval: opts.heartbeatInterval,
    heartbeatTimeout: opts.heartbeatTimeout,
    addCreatedAtField: ttl,
  };
  if (opts.uid) adapterOpts.uid = opts.uid;
  const adapter = createAdapter(collection, adapterOpts);
  return {
    adapter,
    uid: adapterOpts.uid,
    datasource: () => ({ connector: "mongodb", connected, reconnects, collection: collName }),
    close: () => client.close(true).catch(() => {}),
  };
}

/**
 * The PostgreSQL adapter (LISTEN/NOTIFY, attachments table), set up as its README says, and
 * the link's state for /healthz (`connected`: a `SELECT 1` answered within 1 s).
 */
async function postgresAdapter(args, opts, name) {
  const pg = require("pg");
  const { createAdapter } = require("@socket.io/postgres-adapter");
  const pool = new pg.Pool({ connectionString: args.postgres, max: 10, connectionTimeoutMillis: 2000 });
  // An idle client's error (the server went away) is reported here; without a listener it
  // would kill the process.
  pool.on("error", (err) => process.stderr.write(`node-node ${name}: postgres: ${err.message}\n`));
  // The adapter's LISTEN client (checked out of the pool for good) has no 'error' listener:
  // when the server goes away, pg's `emit("error")` throws before the client emits "end",
  // on which the adapter would reconnect and LISTEN again; it would stay deaf for good (and
  // a process without an uncaughtException handler dies). Every client gets a listener.
  pool.on("connect", (client) => client.on("error", (err) => process.stderr.write(`node-node ${name}: postgres client: ${err.message}\n`)));
  const tableName = opts.tableName || "socket_io_attachments";
  await pool.query(`CREATE TABLE IF NOT EXISTS ${tableName} (id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
  const adapterOpts = {
    channelPrefix: opts.channelPrefix,
    tableName,
    payloadThreshold: opts.payloadThreshold,
    cleanupInterval: opts.cleanupInterval,
    heartbeatInterval: opts.heartbeatInterval,
    heartbeatTimeout: opts.heartbeatTimeout,
    errorHandler: survive("postgres adapter"),
  };
  for (const k of Object.keys(adapterOpts)) if (adapterOpts[k] === undefined) delete adapterOpts[k];
  const adapter = createAdapter(pool, adapterOpts);
  let connected = true;
  let reconnects = 0;
  const probe = async () => {
    let up;
    try {
      await withTimeoutMs(pool.query("SELECT 1"), 1000);
      up = true;
    } catch {
      up = false;
    }
    if (up && !connected) reconnects++;
    connected = up;
  };
  return {
    adapter,
    probe,
    datasource: () => ({ connector: "postgres", connected, reconnects, tableName }),
    close: () => pool.end().catch(() => {}),
  };
}

function withTimeoutMs(promise, ms) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("timeout")), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const opts = { mode: "classic", key: "socket.io", namespaces: ["/", "/chat"], ...args.options };
  const name = args.name;

  const backend = args.postgres
    ? await postgresAdapter(args, opts, name)
    : args.mongo
      ? await mongoAdapter(args, opts, name)
      : await redisAdapter(args, opts, name);
  const { adapter } = backend;

  const httpServer = http.createServer(async (req, res) => {
    if (req.url.split("?")[0] === "/healthz") {
      if (backend.probe) await backend.probe();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          status: "ok",
          name,
          kind: "node",
          uid: backend.uid,
          datasource: backend.datasource(),
          errors,
        }),
      );
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const io = new Server(httpServer, { adapter, maxHttpBufferSize: 1e7 });

  const received = [];
  let holdAcks = false;
  const ops = io.of("/ops");

  for (const nspName of opts.namespaces) {
    const nsp = io.of(nspName);
    nsp.on("connection", (socket) => {
      socket.data = { node: name };
      register(socket);
    });
    for (const ev of SERVER_SIDE_EVENTS) {
      nsp.on(ev, (...eventArgs) => {
        const cb = typeof eventArgs[eventArgs.length - 1] === "function" ? eventArgs.pop() : null;
        const record = { node: name, nsp: nspName, args: [ev, ...eventArgs] };
        received.push(record);
        ops.local.emit("serverSideEmitted", record);
        if (cb && !holdAcks) cb(BREAK === "sse-ack" ? `${name}?` : name);
      });
    }
  }

  function target(arg) {
    const nspName = arg.nsp || "/";
    if (!opts.namespaces.includes(nspName)) throw new Error(`no namespace ${nspName} on this node`);
    let op = io.of(nspName);
    const rooms = [].concat(arg.rooms ?? []);
    const except = [].concat(arg.except ?? []);
    if (rooms.length) op = op.in(rooms);
    if (except.length && BREAK !== "except") op = op.except(except);
    if (arg.local) op = op.local;
    return op;
  }

  async function fetchSockets(arg) {
    let op = target(arg);
    if (arg.timeoutMs) op = op.timeout(arg.timeoutMs);
    if (BREAK === "fetch-local") op = op.local;
    const sockets = await op.fetchSockets();
    if (BREAK === "fetch-details") return sockets.map((s) => ({ id: s.id }));
    return sockets.map((s) => ({
      id: s.id,
      rooms: [...s.rooms].sort(),
      data: s.data,
      handshake: { auth: s.handshake.auth, query: s.handshake.query },
    }));
  }

  const OPS = {
    info: () => ok({ name, kind: "node", mode: opts.mode }),
    broadcast: (arg) => {
      (BREAK === "local-broadcast" ? target(arg).local : target(arg)).emit(arg.event, arg.data);
      return ok();
    },
    broadcastWithAck: (arg) =>
      new Promise((resolve) => {
        const started = Date.now();
        (BREAK === "ack-local" ? target(arg).local : target(arg))
          .timeout(arg.timeoutMs || 2000)
          .emit(arg.event, arg.data, (err, responses) => {
            resolve(
              ok({
                responses: responses || [],
                errors: err ? [err.message] : [],
                complete: !err,
                elapsedMs: Date.now() - started,
              }),
            );
          });
      }),
    fetchSockets: async (arg) => ok({ sockets: await fetchSockets(arg) }),
    localSockets: (arg) =>
      ok({
        sockets: [...io.of(arg.nsp || "/").sockets.values()].map((s) => ({ id: s.id, rooms: [...s.rooms].sort() })),
      }),
    allRooms: async (arg) => {
      const a = io.of(arg.nsp || "/").adapter;
      if (BREAK === "rooms-local") return ok({ rooms: [...a.rooms.keys()].sort() });
      if (typeof a.allRooms === "function") return ok({ rooms: [...(await a.allRooms())].sort() });
      // The sharded adapter has no allRooms(): the rooms of every socket of the cluster.
      const rooms = new Set();
      for (const s of await fetchSockets(arg)) s.rooms.forEach((r) => rooms.add(r));
      return ok({ rooms: [...rooms].sort(), derived: "fetchSockets" });
    },
    serverCount: async (arg) => ok({ count: await io.of(arg.nsp || "/").adapter.serverCount() }),
    socketsJoin: (arg) => {
      (BREAK === "join-local" ? target(arg).local : target(arg)).socketsJoin(arg.room);
      return ok();
    },
    socketsLeave: (arg) => {
      (BREAK === "join-local" ? target(arg).local : target(arg)).socketsLeave(arg.room);
      return ok();
    },
    disconnectSockets: (arg) => {
      (BREAK === "join-local" ? target(arg).local : target(arg)).disconnectSockets(!!arg.close);
      return ok();
    },
    serverSideEmit: (arg) => {
      const nsp = io.of(arg.nsp || "/");
      const [ev, ...rest] = arg.args;
      if (BREAK === "sse-self") require("node:events").EventEmitter.prototype.emit.call(nsp, ev, ...rest);
      if (!arg.ack) {
        nsp.serverSideEmit(ev, ...rest);
        return ok();
      }
      return new Promise((resolve) => {
        const started = Date.now();
        nsp.serverSideEmit(ev, ...rest, (err, responses) => {
          const elapsedMs = Date.now() - started;
          resolve(err ? { error: err.message, responses, elapsedMs } : ok({ responses, elapsedMs }));
        });
      });
    },
    holdServerSideAcks: (arg) => {
      holdAcks = !!arg.hold;
      return ok();
    },
    received: () => ok({ events: received }),
  };

  ops.on("connection", (socket) => {
    for (const [opName, fn] of Object.entries(OPS)) {
      socket.on(opName, async (arg, cb) => {
        if (typeof arg === "function") [arg, cb] = [{}, arg];
        let res;
        try {
          res = await fn(arg || {});
        } catch (err) {
          res = { error: err.message };
        }
        if (typeof cb === "function") cb(res);
      });
    }
  });

  httpServer.listen(args.port, "127.0.0.1", () =>
    process.stderr.write(`node-node ${name} listening on http://127.0.0.1:${httpServer.address().port}\n`),
  );
  const stop = async () => {
    io.close();
    await backend.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  process.stderr.write(`node-node: ${err.stack}\n`);
  process.exit(2);
});
