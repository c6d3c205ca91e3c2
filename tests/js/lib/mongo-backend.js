// The MongoDB the Mongo interop tests run on: a SecantusDB process of their own (a
// MongoDB-wire-compatible server, presenting itself as the primary of a one-node replica
// set: change streams, tailable await-data cursors on capped collections, TTL indexes), one
// per test suite on a free port, so that a test can kill it and restart it on the same port.
// SecantusDB is GPL and only ever run here as a separate process.
//
// A SecantusDB 0.7.0b3 bug the tests work around: when a collection that does not exist yet
// is created explicitly (`create`, e.g. capped, or `createIndex`) while other connections
// insert into it (creating it implicitly), the collection can deadlock for good (every later
// command on it hangs; `ping` still answers). Several nodes starting together on an empty
// database do exactly that, so `prepareCollection()` creates the shared collection before
// the nodes start, and a restart can start from a storage made beforehand (`template()`).
// A single node creating the collection on its own is tested on an empty database.
//
// WASIO_SECANTUSD  its `secantusd-py` (default: tests/py/.venv/bin/secantusd-py, which
//                  tests/run installs there from tests/js/requirements-mongo.txt)
// MONGODB_URL      a real mongod replica set to use instead (e.g.
//                  mongodb://127.0.0.1:27017/wasio_test?replicaSet=rs0; the database is the
//                  URL's path). It cannot be restarted by the tests: the backend-restart
//                  tests are skipped then, and each cluster uses a collection of its own.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { MongoClient } = require("mongodb");
const { uid, withTimeout } = require("./client");
const { freePort } = require("./server");

const EXTERNAL_URL = process.env.MONGODB_URL || null;
const START_TIMEOUT_MS = 15000;
const DB = "wasio_test";

function secantusd() {
  const bin = process.env.WASIO_SECANTUSD || path.join(__dirname, "..", "..", "py", ".venv", "bin", "secantusd-py");
  if (!fs.existsSync(bin)) {
    throw new Error(
      `SecantusDB (${bin}) is not installed: python3 -m venv tests/py/.venv && ` +
        "tests/py/.venv/bin/pip install -r tests/js/requirements-mongo.txt (tests/run does it), " +
        "or set WASIO_SECANTUSD, or MONGODB_URL for a real mongod replica set",
    );
  }
  return path.resolve(bin);
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port }, () => {
      sock.destroy();
      resolve(true);
    });
    sock.on("error", () => resolve(false));
  });
}

const newDir = () => fsp.mkdtemp(path.join(os.tmpdir(), "wasio-secantus-"));

/**
 * Starts `secantusd-py` on `port`, storing in `dir` (default: a fresh temporary directory,
 * as `:memory:` does, but removed by us even after a SIGKILL, which `:memory:` would leave
 * behind). Resolves once it accepts connections. The directory is removed when the server
 * is killed, unless `kill(signal, {keep: true})`.
 */
async function startSecantus(port, { dir } = {}) {
  dir = dir || (await newDir());
  const child = spawn(
    secantusd(),
    ["--host", "127.0.0.1", "--port", String(port), "--storage-path", dir, "--log-level", "WARNING", "--cache-size", "128M"],
    { stdio: ["ignore", "pipe", "pipe"], cwd: dir },
  );
  let out = "";
  let exit = null;
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  const exited = new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    }),
  );
  child.on("error", (err) => {
    out += `\n[spawn error] ${err.message}\n`;
  });
  // Never outlive the tests, even when they end with an uncaught exception.
  let keep = false;
  const onExit = () => {
    if (exit === null) child.kill("SIGKILL");
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", onExit);
  exited.then(() => process.removeListener("exit", onExit));
  const cleanup = () => fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (exit !== null) {
      await cleanup();
      throw new Error(`secantusd-py on port ${port} exited early (${JSON.stringify(exit)}):\n${out}`);
    }
    if (await canConnect(port)) break;
    if (Date.now() >= deadline) {
      child.kill("SIGKILL");
      await exited;
      await cleanup();
      throw new Error(`secantusd-py did not listen on port ${port} within ${START_TIMEOUT_MS} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  return {
    port,
    pid: child.pid,
    output: () => out,
    dir,
    /** SIGKILL (the default) or SIGTERM; resolves once it exited and (unless `keep`) its storage is gone. */
    async kill(signal = "SIGKILL", { keep: keepDir = false } = {}) {
      keep = keepDir;
      if (exit === null) child.kill(signal);
      await withTimeout(exited, 10000, "secantusd-py to exit").catch(() => child.kill("SIGKILL"));
      if (!keep) await cleanup();
    },
  };
}

/**
 * A storage directory made by a SecantusDB of its own (on another port): `prepare(db)` runs
 * on database `wasio_test`, then the server shuts down cleanly. Resolves with the directory,
 * for `restart({from})` (which copies it); removed at process exit.
 */
async function makeTemplate(prepare) {
  const server = await startSecantus(await freePort());
  const dir = server.dir;
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  const c = new MongoClient(`mongodb://127.0.0.1:${server.port}/${DB}?directConnection=true`, { serverSelectionTimeoutMS: 10000 });
  try {
    await c.connect();
    await prepare(c.db());
  } finally {
    await c.close(true).catch(() => {});
    await server.kill("SIGTERM", { keep: true });
  }
  return dir;
}

/** Creates `name` as the Node adapter's README does (capped), or with a TTL index on createdAt. */
async function createAdapterCollection(db, name, { cappedSize = 1e6, ttlSeconds } = {}) {
  if (ttlSeconds) {
    await db.createCollection(name).catch(() => {});
    await db.collection(name).createIndex({ createdAt: 1 }, { expireAfterSeconds: ttlSeconds });
  } else {
    await db.createCollection(name, { capped: true, size: cappedSize }).catch((err) => {
      if (!/already exists/i.test(err.message) && err.code !== 48) throw err;
    });
  }
}

/**
 * The backend of one test suite:
 *   { url, external, restartable, kill(), restart({from}), template(prepare), stop(), client(),
 *     collection(prefix), prepareCollection(name, opts) }
 * `url` names database `wasio_test`; `kill()` SIGKILLs the server and `restart()` starts a
 * new, empty one on the same port (what an in-memory server restarting looks like: every
 * collection is gone), or one on a copy of `template(prepare)`'s storage with `from`.
 * `client()` gives a connected MongoClient, closed by `stop()`. `prepareCollection` creates
 * the shared collection before the nodes start (the SecantusDB bug above; harmless on mongod).
 * `collection(prefix)` names the shared collection of a cluster: the adapter's default on a
 * server of our own; on MONGODB_URL a fresh one per call, dropped by `stop()`.
 * With MONGODB_URL: that server, neither killed nor restarted.
 */
async function mongoBackend() {
  const clients = [];
  const client = async () => {
    // socketTimeoutMS: a command the server never answers (a deadlocked collection) fails
    // the test instead of hanging it.
    const c = new MongoClient(backend.url, { serverSelectionTimeoutMS: 10000, socketTimeoutMS: 10000 });
    await c.connect();
    clients.push(c);
    return c;
  };
  const closeClients = () => Promise.allSettled(clients.splice(0).map((c) => c.close(true)));
  const prepareCollection = async (name, opts) => createAdapterCollection((await client()).db(), name, opts);
  let backend;
  if (EXTERNAL_URL) {
    const used = new Set();
    backend = {
      url: EXTERNAL_URL,
      external: true,
      restartable: false,
      client,
      prepareCollection,
      /** A collection name of its own (`prefix` + random), dropped by `stop()`. */
      collection(prefix = "sio") {
        const name = uid(prefix);
        used.add(name);
        return name;
      },
      async stop() {
        if (used.size) {
          const c = await client().catch(() => null);
          if (c) await Promise.allSettled([...used].map((name) => c.db().collection(name).drop()));
        }
        await closeClients();
      },
    };
    return backend;
  }
  const port = await freePort();
  let server = await startSecantus(port);
  backend = {
    url: `mongodb://127.0.0.1:${port}/${DB}?directConnection=true`,
    port,
    external: false,
    restartable: true,
    client,
    prepareCollection,
    template: makeTemplate,
    /** The server is the suite's own and new: the adapter's default name will do. */
    collection: () => "socket.io-adapter-events",
    pid: () => server && server.pid,
    async kill() {
      if (server) await server.kill("SIGKILL");
      server = null;
    },
    async restart({ from } = {}) {
      if (server) await server.kill("SIGKILL");
      let dir;
      if (from) {
        dir = await newDir();
        await fsp.cp(from, dir, { recursive: true });
      }
      server = await startSecantus(port, { dir });
    },
    async stop() {
      await closeClients();
      if (server) await server.kill("SIGTERM");
      server = null;
    },
  };
  return backend;
}

module.exports = { EXTERNAL_URL, createAdapterCollection, mongoBackend, startSecantus };
