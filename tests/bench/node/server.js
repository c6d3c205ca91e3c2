#!/usr/bin/env node
// A Node.js node for wasio-bench: socket.io 4.8 + @socket.io/redis-adapter 8.3 (classic), or
// with --mongodb + @socket.io/mongo-adapter 0.4, serving the same `publish` relay event as
// `wasio serve` (see tests/js/reference/wasio-ref.js): emit `event` with `data` to the
// namespace (or `room`) cluster-wide, `exceptSelf` skipping the sender, ack {ok, count} with
// the number of this node's sockets it went to. Events of one socket are applied in order, as
// wasio does.
//
// `join` (a room or a list of them, ack {ok, rooms}) as wasio's.
//
// Usage: node tests/bench/node/server.js --port P --redis URL --key K
//        node tests/bench/node/server.js --port P --mongodb URL --key COLLECTION
//        node tests/bench/node/server.js --port P --postgres URL --key CHANNEL_PREFIX
// On MongoDB (the database is the URL's path), as the adapter's README says: the collection
// is created capped (1e6 bytes; "already exists" ignored) and read through a change stream.
//
// The packages (pinned in package.json here) come from tests/bench/node/node_modules
// (`cd tests/bench/node && npm ci`), or else from tests/js/node_modules, which pins the same
// versions (`cd tests/js && npm ci`).
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { createRequire } = require("node:module");

const own = fs.existsSync(path.join(__dirname, "node_modules"));
const pkgRequire = createRequire(path.resolve(__dirname, own ? "package.json" : "../../js/package.json"));
const { Server } = pkgRequire("socket.io");

const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);

function parseArgs(argv) {
  const args = { port: 3000, redis: "redis://127.0.0.1:6379", mongodb: null, postgres: null, key: null };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === "--port") args.port = Number(v);
    else if (k === "--redis") args.redis = v;
    else if (k === "--mongodb") args.mongodb = v;
    else if (k === "--postgres") args.postgres = v;
    else if (k === "--key") args.key = v;
    else {
      process.stderr.write(`unknown argument ${k}\n`);
      process.exit(2);
    }
  }
  return args;
}

const isRoomList = (r) =>
  (typeof r === "string" && r.length > 0) ||
  (Array.isArray(r) && r.length > 0 && r.every((x) => typeof x === "string" && x.length > 0));

async function redisAdapter(args) {
  const { createClient } = pkgRequire("redis");
  const { createAdapter } = pkgRequire("@socket.io/redis-adapter");
  const pub = createClient({ url: args.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub, { key: args.key || "socket.io" });
}

async function mongoAdapter(args) {
  const { MongoClient } = pkgRequire("mongodb");
  const { createAdapter } = pkgRequire("@socket.io/mongo-adapter");
  const client = new MongoClient(args.mongodb);
  client.on("error", (err) => process.stderr.write(`mongodb: ${err.message}\n`));
  await client.connect();
  const db = client.db();
  const name = args.key || "socket.io-adapter-events";
  try {
    await db.createCollection(name, { capped: true, size: 1e6 });
  } catch (err) {
    // Another node made it first.
    if (!(err.codeName === "NamespaceExists" || err.code === 48 || /already exists/i.test(err.message))) throw err;
  }
  return createAdapter(db.collection(name));
}

async function postgresAdapter(args) {
  const { Pool } = pkgRequire("pg");
  const { createAdapter } = pkgRequire("@socket.io/postgres-adapter");
  const pool = new Pool({ connectionString: args.postgres });
  pool.on("error", (err) => process.stderr.write(`postgres: ${err.message}\n`));
  // As the adapter's README says; wasio nodes make the same table when missing.
  await pool.query(
    "CREATE TABLE IF NOT EXISTS socket_io_attachments (id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)",
  ).catch(() => {});
  return createAdapter(pool, { channelPrefix: args.key || "socket.io" });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const adapter = args.mongodb
    ? await mongoAdapter(args)
    : args.postgres
      ? await postgresAdapter(args)
      : await redisAdapter(args);

  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter });
  const nsp = io.of("/");
  nsp.on("connection", (socket) => {
    let chain = Promise.resolve();
    socket.on("join", (rooms, cb) => {
      chain = chain.then(() => {
        if (!isRoomList(rooms)) return typeof cb === "function" && cb({ error: "join: bad room" });
        socket.join(rooms);
        if (typeof cb === "function") cb({ ok: true, rooms: [...socket.rooms].sort() });
      });
    });
    socket.on("publish", (msg, cb) => {
      chain = chain.then(() => publish(socket, msg, cb)).catch((err) => process.stderr.write(`publish: ${err.stack}\n`));
    });
  });

  async function publish(socket, msg, cb) {
    const reply = (body) => typeof cb === "function" && cb(body);
    if (!msg || typeof msg !== "object" || Array.isArray(msg)) return reply({ error: "publish: expected an object" });
    if (typeof msg.event !== "string" || !msg.event || RESERVED.has(msg.event))
      return reply({ error: "publish: `event` must be a non-reserved string" });
    if (msg.room != null && !isRoomList(msg.room)) return reply({ error: "publish: bad `room`" });
    const rooms = msg.room == null ? [] : [].concat(msg.room);
    const targets = await nsp.adapter.sockets(new Set(rooms));
    let op = rooms.length ? nsp.to(rooms) : nsp;
    if (msg.exceptSelf) {
      op = op.except(socket.id);
      targets.delete(socket.id);
    }
    op.emit(msg.event, msg.data);
    reply({ ok: true, count: targets.size });
  }

  httpServer.listen(args.port, "127.0.0.1");
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});
