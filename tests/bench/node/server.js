#!/usr/bin/env node
// A Node.js node for wasio-bench: socket.io 4.8 + @socket.io/redis-adapter 8.3 (classic),
// serving the same `publish` relay event as `wasio serve` (see tests/js/reference/wasio-ref.js):
// emit `event` with `data` to the namespace (or `room`) cluster-wide, `exceptSelf` skipping the
// sender, ack {ok, count} with the number of this node's sockets it went to. Events of one
// socket are applied in order, as wasio does.
//
// Usage: node tests/bench/node/server.js --port P --redis URL --key K
// The packages come from tests/js/node_modules (`cd tests/js && npm ci`).
"use strict";

const http = require("node:http");
const path = require("node:path");
const { createRequire } = require("node:module");

const jsRequire = createRequire(path.resolve(__dirname, "../../js/package.json"));
const { Server } = jsRequire("socket.io");
const { createClient } = jsRequire("redis");
const { createAdapter } = jsRequire("@socket.io/redis-adapter");

const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);

function parseArgs(argv) {
  const args = { port: 3000, redis: "redis://127.0.0.1:6379", key: "socket.io" };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (k === "--port") args.port = Number(v);
    else if (k === "--redis") args.redis = v;
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

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pub = createClient({ url: args.redis });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => process.stderr.write(`redis: ${err.message}\n`));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub, { key: args.key }) });
  const nsp = io.of("/");
  nsp.on("connection", (socket) => {
    let chain = Promise.resolve();
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
