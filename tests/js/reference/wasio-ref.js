#!/usr/bin/env node
// A reference implementation of the wasio *client-facing contract* on Node's socket.io, used
// only to check the test suite itself (`npm run test:reference`): every test must pass against
// it, and break when a feature is removed from it (see WASIO_REF_BREAK below).
//
// It is not wasio: there is no WebAssembly here. `[adapter] wasm` is only validated (a file
// must exist and start with the component-model preamble); the faulty guest's markers are
// ignored, so the fault tests only check that ordinary service goes on.
//
// WASIO_REF_BREAK=<feature> removes one feature, to check that the suite notices:
//   except-self | multi-room-dedup | leave | binary | connect-race | validation | counts |
//   healthz | config-check |
//   namespaces (every namespace is accepted, configured or not) |
//   namespace-isolation (every namespace shares the main namespace's rooms and sockets) |
//   ordering (join/leave are applied a moment late, after a publish sent behind them)
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { Server } = require("socket.io");

const BREAK = process.env.WASIO_REF_BREAK || "";
const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"]);
// The known keys of each section, and their TOML type.
const KNOWN = {
  server: { port: "integer", host: "string", namespaces: "strings", max_buffer_size: "integer", max_payload: "integer" },
  adapter: { wasm: "string" },
  limits: { deadline_ms: "integer", memory_mib: "integer" },
};

function fail(configPath, msg) {
  process.stderr.write(`error: invalid config ${configPath}: ${msg}\n`);
  process.exit(2);
}

// A tiny TOML subset: [section] headers and `key = "string" | integer | ["string", ...]` lines.
function loadConfig(configPath) {
  let text;
  try {
    text = fs.readFileSync(configPath, "utf8");
  } catch (err) {
    fail(configPath, err.message);
  }
  const cfg = {};
  let section = null;
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) return;
    let m;
    if ((m = /^\[([A-Za-z0-9_]+)\]$/.exec(line))) {
      section = m[1];
      if (!KNOWN[section]) fail(configPath, `line ${i + 1}: unknown section \`${section}\``);
      cfg[section] = cfg[section] || {};
    } else if ((m = /^([A-Za-z0-9_]+)\s*=\s*(.+)$/.exec(line))) {
      if (!section) fail(configPath, `line ${i + 1}: key outside a section`);
      const [, key, v] = m;
      const type = KNOWN[section][key];
      if (!type && BREAK !== "config-check") fail(configPath, `line ${i + 1}: unknown field \`${key}\``);
      let value;
      if (/^-?\d+$/.test(v)) value = Number(v);
      else if (/^".*"$/.test(v) || /^\[.*\]$/.test(v)) {
        try {
          value = JSON.parse(v); // TOML basic strings and simple arrays of them are JSON
        } catch {
          fail(configPath, `line ${i + 1}: invalid value`);
        }
      } else fail(configPath, `line ${i + 1}: invalid value`);
      const ok = {
        integer: Number.isInteger(value),
        string: typeof value === "string",
        strings: Array.isArray(value) && value.every((x) => typeof x === "string"),
      }[type];
      if (type && !ok) fail(configPath, `line ${i + 1}: \`${key}\` must be ${{ integer: "an integer", string: "a string", strings: "an array of strings" }[type]}`);
      cfg[section][key] = value;
    } else {
      fail(configPath, `line ${i + 1}: expected a key or a section`);
    }
  });
  cfg.server = cfg.server || {};
  cfg.server.namespaces = cfg.server.namespaces || ["/"];
  const bad = cfg.server.namespaces.find((n) => !n.startsWith("/"));
  if (bad !== undefined) fail(configPath, `key \`server.namespaces\`: \`${bad}\` must start with \`/\``);
  const wasm = cfg.adapter && cfg.adapter.wasm;
  if (!wasm) fail(configPath, "missing field `adapter.wasm`");
  if (wasm !== "builtin:local" && BREAK !== "config-check") {
    let bytes;
    try {
      bytes = fs.readFileSync(wasm);
    } catch (err) {
      fail(configPath, `adapter.wasm: cannot read ${wasm}: ${err.message}`);
    }
    const preamble = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);
    if (bytes.length < 8 || !bytes.subarray(0, 8).equals(preamble)) {
      fail(configPath, `adapter.wasm: ${wasm} is not a WebAssembly component`);
    }
  }
  return cfg;
}

function parseArgs(argv) {
  const args = { cmd: argv[0], check: false };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === "--config") args.config = argv[++i];
    else if (argv[i] === "--port") args.port = Number(argv[++i]);
    else if (argv[i] === "--check") args.check = true;
    else {
      process.stderr.write(`unknown argument ${argv[i]}\n`);
      process.exit(2);
    }
  }
  if (args.cmd !== "serve" || !args.config) {
    process.stderr.write("usage: wasio-ref serve --config FILE [--port N] [--check]\n");
    process.exit(2);
  }
  return args;
}

function isRoomList(v) {
  if (typeof v === "string") return v.length > 0;
  return Array.isArray(v) && v.every((r) => typeof r === "string" && r.length > 0);
}

function sortedRooms(socket) {
  return [...socket.rooms].sort();
}

// A namespace pattern in matchit syntax as a RegExp: `{name}` is one path segment, `{*name}`
// the (non-empty) rest of the path.
function patternRegExp(pattern) {
  const parts = pattern.split(/(\{\*?[^}]*\})/).map((p) => {
    if (p.startsWith("{*")) return ".+";
    if (p.startsWith("{")) return "[^/]+";
    return p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  });
  return new RegExp(`^${parts.join("")}$`);
}

// One socket's relay events are handled strictly in the order it sent them, each after the
// previous one finished (publish is asynchronous). BREAK=ordering applies join/leave a moment
// late instead, so that a publish sent right behind them overtakes them.
function inOrder(socket) {
  let chain = Promise.resolve();
  return (event, handler) =>
    socket.on(event, (...args) => {
      if (BREAK === "ordering") {
        if (event === "publish") handler(...args);
        else setTimeout(() => handler(...args), 5);
        return;
      }
      chain = chain
        .then(() => handler(...args))
        .catch((err) => process.stderr.write(`wasio-ref: ${event} handler failed: ${err.stack}\n`));
    });
}

function register(socket) {
  const nsp = socket.nsp;
  const on = inOrder(socket);
  on("join", (rooms, cb) => {
    if (typeof rooms === "function") [rooms, cb] = [undefined, rooms];
    if (BREAK !== "validation" && !isRoomList(rooms)) return reply(cb, { error: "rooms must be a non-empty string or an array of them" });
    socket.join(rooms);
    reply(cb, { ok: true, rooms: sortedRooms(socket) });
  });
  on("leave", (rooms, cb) => {
    if (typeof rooms === "function") [rooms, cb] = [undefined, rooms];
    if (BREAK !== "validation" && !isRoomList(rooms)) return reply(cb, { error: "rooms must be a non-empty string or an array of them" });
    if (BREAK !== "leave") for (const r of [].concat(rooms)) socket.leave(r);
    reply(cb, { ok: true, rooms: sortedRooms(socket) });
  });
  on("publish", async (msg, cb) => {
    if (typeof msg === "function") [msg, cb] = [undefined, msg];
    if (BREAK !== "validation") {
      if (!msg || typeof msg !== "object" || Array.isArray(msg)) return reply(cb, { error: "expected an object" });
      if (typeof msg.event !== "string") return reply(cb, { error: "event must be a string" });
      if (RESERVED.has(msg.event)) return reply(cb, { error: `"${msg.event}" is a reserved event name` });
      if (msg.room !== undefined && msg.room !== null && !isRoomList(msg.room)) return reply(cb, { error: "room must be a string or an array of strings" });
    }
    logMarkers(msg.data);
    const rooms = msg.room === undefined || msg.room === null ? [] : [].concat(msg.room);
    let data = msg.data;
    if (BREAK === "binary") data = JSON.parse(JSON.stringify(data === undefined ? null : data));
    let targets = [...(await nsp.adapter.sockets(new Set(rooms)))];
    if (msg.exceptSelf && BREAK !== "except-self") targets = targets.filter((id) => id !== socket.id);
    if (BREAK === "multi-room-dedup" && rooms.length > 1) {
      for (const r of rooms) {
        let op = nsp.to(r);
        if (msg.exceptSelf) op = op.except(socket.id);
        op.emit(msg.event, data);
      }
    } else {
      let op = rooms.length ? nsp.to(rooms) : nsp;
      if (msg.exceptSelf && BREAK !== "except-self") op = op.except(socket.id);
      op.emit(msg.event, data);
    }
    reply(cb, { ok: true, count: BREAK === "counts" ? 0 : targets.length });
  });
}

// The faulty test guest misbehaves on these; the reference has no guest and only logs them.
function logMarkers(data) {
  const seen = [];
  const walk = (v) => {
    if (Buffer.isBuffer(v) || typeof v === "string") {
      const t = v.toString("latin1");
      for (const m of ["__trap__", "__loop__", "__grow__"]) if (t.includes(m)) seen.push(m);
    } else if (v && typeof v === "object") Object.values(v).forEach(walk);
  };
  walk(data);
  // Mimic the real host's log lines, so that the fault tests can run against the reference.
  const cause = { __trap__: "trap", __loop__: "deadline", __grow__: "memory cap" };
  for (const m of seen) process.stderr.write(`wasio-ref: no guest here; pretending a ${cause[m]} fault (${m})\n`);
}

function reply(cb, value) {
  if (typeof cb === "function") cb(value);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const cfg = loadConfig(args.config);
  if (args.check) {
    process.stderr.write(`config ${args.config} is valid\n`);
    process.exit(0);
  }
  const port = args.port ?? (cfg.server && cfg.server.port) ?? 3000;
  const staticDir = path.join(__dirname, "..", "..", "..", "host", "static");
  const clientBundle = path.join(path.dirname(require.resolve("socket.io-client/package.json")), "dist", "socket.io.min.js");

  const httpServer = http.createServer((req, res) => {
    const url = req.url.split("?")[0];
    if (url === "/healthz" && BREAK !== "healthz") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", adapter: cfg.adapter.wasm }));
    } else if (url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(fs.readFileSync(path.join(staticDir, "index.html")));
    } else if (url === "/socket.io.min.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(fs.readFileSync(clientBundle));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const io = new Server(httpServer, { maxHttpBufferSize: cfg.server.max_payload ?? 10e6 });
  const onConnection = (socket) => {
    if (BREAK === "connect-race") setTimeout(() => register(socket), 3);
    else register(socket);
  };

  // `[server] namespaces`: exact names, and matchit patterns (those with a `{`) whose
  // namespaces are created on first use. Any other namespace gets socket.io's own
  // connect_error "Invalid namespace".
  const names = cfg.server.namespaces;
  const patterns = names.filter((n) => n.includes("{")).map(patternRegExp);
  const served = (name) => BREAK === "namespaces" || names.includes(name) || patterns.some((re) => re.test(name));
  // socket.io always serves "/": refuse it by hand when it is not configured.
  io.use((socket, next) => next(served("/") ? undefined : new Error("Invalid namespace")));
  io.on("connection", onConnection);
  const others = io.of((name, auth, next) => next(null, name !== "/" && served(name)));
  if (BREAK === "namespace-isolation") {
    // Every namespace shares the main namespace's rooms and sockets.
    others.on("connection", (socket) => {
      socket.nsp = io.of("/");
      onConnection(socket);
    });
  } else {
    others.on("connection", onConnection);
  }
  httpServer.listen(port, "0.0.0.0", () => process.stderr.write(`wasio-ref listening on ${port}\n`));
  const stop = () => {
    io.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// Run as a program; required as a module (lib/node-node.js), it lends its relay handlers.
if (require.main === module) main();

module.exports = { register };
