// Mixed clusters on one Redis, one MongoDB or one PostgreSQL: N wasio test nodes
// (`wasio-test-node`, tests/node/main.rs) and M Node.js socket.io nodes (lib/node-node.js), all
// with the same channel prefix (Redis, PostgreSQL) or collection (MongoDB), each with the client relay protocol and an
// `/ops` namespace to drive cluster operations.
//
// WASIO_TEST_NODE_BIN    the wasio test node (default: wasio-test-node beside WASIO_BIN)
// WASIO_TEST_REDIS_URL   the shared Redis (default redis://127.0.0.1:6379)
// WASIO_REDIS_REFERENCE=1  run every "wasio" node of a Redis cluster as a Node.js node instead,
//                        to check the tests themselves against Node's adapter
//                        (npm run test:redis-reference)
// WASIO_MONGO_REFERENCE=1  the same for MongoDB clusters (npm run test:mongo-reference)
// WASIO_POSTGRES_REFERENCE=1  the same for PostgreSQL clusters
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { connect, closeAll, uid, withTimeout, safeJson } = require("./client");
const { freePort, tempDir, writeFile, httpGet } = require("./server");

const REDIS_URL = process.env.WASIO_TEST_REDIS_URL || "redis://127.0.0.1:6379";
const REFERENCE = process.env.WASIO_REDIS_REFERENCE === "1";
const MONGO_REFERENCE = process.env.WASIO_MONGO_REFERENCE === "1";
const POSTGRES_REFERENCE = process.env.WASIO_POSTGRES_REFERENCE === "1";
const START_TIMEOUT_MS = Number(process.env.WASIO_TEST_START_TIMEOUT_MS || 20000);
const STOP_TIMEOUT_MS = 5000;
const OP_TIMEOUT_MS = 8000;
const NODE_SCRIPT = path.join(__dirname, "node-node.js");

function testNodeBin() {
  let bin = process.env.WASIO_TEST_NODE_BIN;
  if (!bin) {
    if (!process.env.WASIO_BIN) {
      throw new Error("set WASIO_TEST_NODE_BIN (or WASIO_BIN, beside which wasio-test-node is looked for)");
    }
    bin = path.join(path.dirname(process.env.WASIO_BIN), "wasio-test-node");
  }
  if (!fs.existsSync(bin)) {
    throw new Error(`wasio test node ${bin} does not exist: cargo build -p wasio-tests --bin wasio-test-node`);
  }
  return path.resolve(bin);
}

/** The `[adapter.options]` and datasource of a wasio node, as TOML. */
function wasioConfig({ wasm = "builtin:redis", namespaces, redisUrl, requestTimeoutMs, adapterOptions, publishBuffer }) {
  const lines = [
    "[server]",
    "port = 0",
    `namespaces = ${JSON.stringify(namespaces)}`,
    "",
    "[adapter]",
    `wasm = ${JSON.stringify(wasm)}`,
    'datasource = "cache"',
    `request_timeout_ms = ${requestTimeoutMs}`,
    "",
    "[adapter.options]",
  ];
  for (const [k, v] of Object.entries(adapterOptions)) {
    if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  lines.push("", "[datasources.cache]", 'connector = "redis"', `url = ${JSON.stringify(redisUrl)}`);
  if (publishBuffer !== undefined) lines.push(`publish_buffer = ${publishBuffer}`);
  lines.push("");
  return lines.join("\n");
}

/**
 * The config of a wasio node on MongoDB (`builtin:mongodb`, datasource `db`), as TOML.
 * `adapterOptions` go to `[adapter.options]` as they are (undefined ones left out).
 */
function wasioMongoConfig({ namespaces, mongoUrl, requestTimeoutMs, adapterOptions }) {
  const lines = [
    "[server]",
    "port = 0",
    `namespaces = ${JSON.stringify(namespaces)}`,
    "",
    "[adapter]",
    'wasm = "builtin:mongodb"',
    'datasource = "db"',
    `request_timeout_ms = ${requestTimeoutMs}`,
    "",
    "[adapter.options]",
  ];
  for (const [k, v] of Object.entries(adapterOptions)) {
    if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  lines.push("", "[datasources.db]", 'connector = "mongodb"', `url = ${JSON.stringify(mongoUrl)}`, "");
  return lines.join("\n");
}

/**
 * The config of a wasio node on PostgreSQL (`builtin:postgres`, datasource `pg`), as TOML.
 * `adapterOptions` go to `[adapter.options]` as they are (undefined ones left out).
 */
function wasioPostgresConfig({ namespaces, postgresUrl, requestTimeoutMs, adapterOptions }) {
  const lines = [
    "[server]",
    "port = 0",
    `namespaces = ${JSON.stringify(namespaces)}`,
    "",
    "[adapter]",
    'wasm = "builtin:postgres"',
    'datasource = "pg"',
    `request_timeout_ms = ${requestTimeoutMs}`,
    "",
    "[adapter.options]",
  ];
  for (const [k, v] of Object.entries(adapterOptions)) {
    if (v !== undefined) lines.push(`${k} = ${JSON.stringify(v)}`);
  }
  lines.push("", "[datasources.pg]", 'connector = "postgres"', `url = ${JSON.stringify(postgresUrl)}`, "");
  return lines.join("\n");
}

/**
 * The adapter options of a PostgreSQL node (wasio's `[adapter.options]`, Node's createAdapter:
 * the same names; Node's adapter has no `requestsTimeout`, its requests wait 5 s).
 */
function postgresOptions({ channelPrefix, tableName, payloadThreshold, cleanupInterval, heartbeatInterval, heartbeatTimeout, requestsTimeout }) {
  return { channelPrefix, tableName, payloadThreshold, cleanupInterval, heartbeatInterval, heartbeatTimeout, requestsTimeout };
}

/** The adapter options of a MongoDB node (wasio's `[adapter.options]`, Node's createAdapter). */
function mongoOptions({ collection, mongoMode, requestsTimeout, heartbeatInterval, heartbeatTimeout, addCreatedAtField, ttlSeconds, cappedSize }) {
  return { collection, mode: mongoMode, requestsTimeout, heartbeatInterval, heartbeatTimeout, addCreatedAtField, ttlSeconds, cappedSize };
}

/**
 * Starts one node (`role` "wasio" or "node") and resolves once GET /healthz answers and
 * its `/ops` socket is connected. The handle:
 *   name, role, kind ("wasio" | "node": what actually runs), url, port, pid
 *   op(name, arg)     an /ops operation; resolves with its ack
 *   ops               the /ops socket (its inbox records `serverSideEmitted` pushes)
 *   health()          GET /healthz JSON
 *   signal(sig)       sends a signal (SIGSTOP, SIGKILL...)
 *   exited()          null while running, else {code, signal}
 *   stop()            SIGTERM (SIGKILL after 5 s); resolves {code, signal, stderr, exitedEarly}
 * A wasio node on Redis runs `builtin:redis` with options from the spec, or the component
 * `wasm` (a path) with `adapterOptions` as they are; `startTimeoutMs` bounds its start (a
 * big component takes long to compile).
 */
async function startNode(spec) {
  const { role, name, backend = "redis", mode, key, requestsTimeout, specific, subscriptionMode, redisUrl, mongoUrl, postgresUrl, namespaces, publishBuffer, wasm, startTimeoutMs = START_TIMEOUT_MS } = spec;
  const reference = backend === "mongodb" ? MONGO_REFERENCE : backend === "postgres" ? POSTGRES_REFERENCE : REFERENCE;
  const kind = role === "wasio" && !reference ? "wasio" : "node";
  if (kind === "wasio") testNodeBin(); // throws when missing, before anything is made
  const { dir, cleanup } = await tempDir();
  const port = await freePort();
  let cmd;
  let args;
  if (backend === "postgres") {
    const adapterOptions = postgresOptions(spec);
    if (kind === "wasio") {
      const config = wasioPostgresConfig({ namespaces, postgresUrl, requestTimeoutMs: Math.max(2000, requestsTimeout * 2), adapterOptions });
      const configPath = await writeFile(dir, "config.toml", config);
      cmd = testNodeBin();
      args = ["--config", configPath, "--port", String(port), "--name", name];
    } else {
      cmd = process.execPath;
      const options = { ...adapterOptions, requestsTimeout: undefined, namespaces };
      args = [NODE_SCRIPT, "--port", String(port), "--name", name, "--postgres", postgresUrl, "--options", JSON.stringify(options)];
    }
  } else if (backend === "mongodb") {
    const adapterOptions = mongoOptions(spec);
    if (kind === "wasio") {
      const config = wasioMongoConfig({ namespaces, mongoUrl, requestTimeoutMs: Math.max(2000, requestsTimeout * 2), adapterOptions });
      const configPath = await writeFile(dir, "config.toml", config);
      cmd = testNodeBin();
      args = ["--config", configPath, "--port", String(port), "--name", name];
    } else {
      cmd = process.execPath;
      const options = { ...adapterOptions, mode: undefined, uid: spec.uid, namespaces };
      args = [NODE_SCRIPT, "--port", String(port), "--name", name, "--mongo", mongoUrl, "--options", JSON.stringify(options)];
    }
  } else if (kind === "wasio") {
    const adapterOptions = wasm
      ? spec.adapterOptions
      : {
          key,
          requestsTimeout,
          publishOnSpecificResponseChannel: !!specific,
          mode,
          subscriptionMode: mode === "sharded" ? subscriptionMode : undefined,
        };
    const config = wasioConfig({
      wasm,
      namespaces,
      redisUrl,
      requestTimeoutMs: Math.max(2000, requestsTimeout * 2),
      adapterOptions,
      publishBuffer,
    });
    const configPath = await writeFile(dir, "config.toml", config);
    cmd = testNodeBin();
    args = ["--config", configPath, "--port", String(port), "--name", name];
  } else {
    cmd = process.execPath;
    const options = { mode, key, requestsTimeout, publishOnSpecificResponseChannel: !!specific, subscriptionMode, namespaces };
    args = [NODE_SCRIPT, "--port", String(port), "--name", name, "--redis", redisUrl, "--options", JSON.stringify(options)];
  }
  const child = spawn(cmd, args, { env: { RUST_BACKTRACE: "1", ...process.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  let exit = null;
  let stopping = false;
  child.stdout.setEncoding("utf8").on("data", (d) => (stderr += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => {
    child.on("error", (err) => {
      stderr += `\n[spawn error] ${err.message}\n`;
      exit = exit || { code: null, signal: null };
      resolve(exit);
    });
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const handle = {
    name,
    role,
    kind,
    backend,
    url,
    port,
    pid: child.pid,
    ops: null,
    stderr: () => stderr,
    exited: () => exit,
    async health() {
      const { status, body } = await httpGet(`${url}/healthz`);
      if (status !== 200) throw new Error(`${name}: GET /healthz answered ${status}: ${body.slice(0, 200)}`);
      return JSON.parse(body);
    },
    async op(opName, arg = {}, { timeoutMs = OP_TIMEOUT_MS } = {}) {
      try {
        return await handle.ops.timeout(timeoutMs).emitWithAck(opName, arg);
      } catch (err) {
        throw new Error(`${name}: no ack for /ops ${opName} ${safeJson(arg)} within ${timeoutMs} ms: ${err.message}`);
      }
    },
    signal(sig) {
      if (exit === null) child.kill(sig);
    },
    async stop() {
      const exitedEarly = exit !== null && !stopping;
      stopping = true;
      if (handle.ops) closeAll(handle.ops);
      if (exit === null) {
        child.kill("SIGCONT");
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(killer);
      }
      await cleanup();
      if (process.env.WASIO_TEST_VERBOSE) {
        process.stderr.write(`---- ${name} (${kind}) stderr ----\n${stderr}\n---- end ----\n`);
      }
      return { ...exit, stderr, exitedEarly };
    },
    /** Resolves when the process has exited (after a kill). */
    waitExit: () => withTimeout(exited, STOP_TIMEOUT_MS, `${name} to exit`),
  };

  const deadline = Date.now() + startTimeoutMs;
  let problem = "no answer yet";
  while (Date.now() < deadline) {
    if (exit !== null) {
      await cleanup();
      throw new Error(`${name} (${kind}) exited before serving (code ${exit.code}, signal ${exit.signal}):\n${stderr}`);
    }
    try {
      const h = await handle.health();
      if (h.status === "ok") break;
      problem = JSON.stringify(h);
    } catch (err) {
      problem = String(err.cause ? err.cause.code || err.cause.message : err.message);
    }
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  if (Date.now() >= deadline) {
    child.kill("SIGKILL");
    await exited;
    await cleanup();
    throw new Error(`${name} (${kind}) did not serve within ${startTimeoutMs} ms (${problem}):\n${stderr}`);
  }
  handle.ops = await connect(url, "/ops", { transport: "websocket" });
  return handle;
}

/**
 * Polls `check()` (async, returns truthy when done) until it holds, at most `timeoutMs`.
 * For conditions no event announces (another node's subscriptions, remote room changes).
 */
async function until(check, { timeoutMs = 5000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${safeJson(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs)); // poll interval, not synchronisation
  }
}

/** Waits until every node of `nodes` counts `n` servers in each namespace of `namespaces`. */
async function waitServerCount(nodes, n, namespaces, timeoutMs = 10000) {
  for (const node of nodes) {
    for (const nsp of namespaces) {
      await until(
        async () => {
          const res = await node.op("serverCount", { nsp });
          if (res.error) throw new Error(res.error);
          return res.count === n ? res : null;
        },
        { timeoutMs, what: `${node.name} serverCount(${nsp}) == ${n}` },
      );
    }
  }
}

/**
 * Starts `wasio` wasio nodes (W1, W2, ...) and `node` Node.js nodes (N1, ...) on one fresh
 * prefix, and waits until each counts them all in every namespace. Resolves with
 *   { key, nodes, byName, wasio: [...], node: [...], connect(node, nsp, opts), stop() }
 * `connect` gives a client (websocket unless told) closed by `stop()` or `closeClients()`.
 */
async function startCluster({
  backend = "redis",
  wasio = 2,
  node = 1,
  mode = "classic",
  key = uid(`wt-${mode}`),
  requestsTimeout = 1000,
  specific = false,
  subscriptionMode = "dynamic",
  redisUrl = REDIS_URL,
  namespaces = ["/", "/chat"],
  publishBuffer,
  // MongoDB (backend "mongodb"): the wasio nodes' `mode` is `mongoMode`
  mongoUrl,
  collection = "socket.io-adapter-events",
  mongoMode = "change-stream",
  heartbeatInterval = 500,
  heartbeatTimeout = 1500,
  addCreatedAtField,
  ttlSeconds,
  cappedSize,
  // PostgreSQL (backend "postgres"; also heartbeatInterval, heartbeatTimeout, requestsTimeout)
  postgresUrl,
  channelPrefix,
  tableName,
  payloadThreshold,
  cleanupInterval,
} = {}) {
  if (backend === "mongodb" && !mongoUrl) throw new Error("startCluster: backend mongodb needs mongoUrl");
  if (backend === "postgres" && !(postgresUrl && channelPrefix && tableName)) {
    throw new Error("startCluster: backend postgres needs postgresUrl, channelPrefix and tableName");
  }
  const common = {
    backend,
    mode,
    key,
    requestsTimeout,
    specific,
    subscriptionMode,
    redisUrl,
    namespaces,
    publishBuffer,
    mongoUrl,
    collection,
    mongoMode,
    heartbeatInterval,
    heartbeatTimeout,
    addCreatedAtField,
    ttlSeconds,
    cappedSize,
    postgresUrl,
    channelPrefix,
    tableName,
    payloadThreshold,
    cleanupInterval,
  };
  const specs = [
    ...Array.from({ length: wasio }, (_, i) => ({ role: "wasio", name: `W${i + 1}` })),
    ...Array.from({ length: node }, (_, i) => ({ role: "node", name: `N${i + 1}` })),
  ];
  const cluster = {
    backend,
    key,
    mode,
    redisUrl,
    mongoUrl,
    collection,
    mongoMode,
    postgresUrl,
    channelPrefix,
    tableName,
    namespaces,
    nodes: [],
    byName: {},
    clients: [],
    get wasio() {
      return this.nodes.filter((n) => n.role === "wasio");
    },
    get node() {
      return this.nodes.filter((n) => n.role === "node");
    },
    async connect(n, nsp = "/", opts = {}) {
      const s = await connect(n.url, nsp, { transport: "websocket", ...opts });
      s.node = n.name;
      cluster.clients.push(s);
      return s;
    },
    closeClients() {
      closeAll(cluster.clients);
      cluster.clients = [];
    },
    /** Throws when a node died (other than those the test killed itself). */
    assertAlive(except = []) {
      for (const n of cluster.nodes) {
        const e = n.exited();
        if (e && !except.includes(n.name)) {
          throw new Error(`${n.name} (${n.kind}) exited (code ${e.code}, signal ${e.signal}):\n${n.stderr()}`);
        }
      }
    },
    /** Starts one more node with the cluster's settings (`role`, `name`, overrides). */
    async add(spec) {
      const n = await startNode({ ...common, ...spec });
      cluster.nodes.push(n);
      cluster.byName[n.name] = n;
      return n;
    },
    async stop() {
      cluster.closeClients();
      const results = await Promise.all(cluster.nodes.map((n) => n.stop()));
      return results;
    },
    /** Stops every node; throws, with their stderr, when some died during the tests. */
    async stopChecked() {
      const results = await cluster.stop();
      const died = cluster.nodes.map((n, i) => [n, results[i]]).filter(([, r]) => r.exitedEarly);
      if (died.length) throw new Error(`nodes died during the tests: ${died.map(([n, r]) => `${n.name}:\n${r.stderr}`).join("\n")}`);
    },
  };
  try {
    const started = await Promise.allSettled(specs.map((s) => startNode({ ...common, ...s })));
    for (const r of started) {
      if (r.status !== "fulfilled") continue;
      cluster.nodes.push(r.value);
      cluster.byName[r.value.name] = r.value;
    }
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    await waitServerCount(cluster.nodes, cluster.nodes.length, namespaces);
  } catch (err) {
    await cluster.stop().catch(() => {});
    throw err;
  }
  return cluster;
}

module.exports = {
  REDIS_URL,
  REFERENCE,
  MONGO_REFERENCE,
  POSTGRES_REFERENCE,
  startCluster,
  startNode,
  until,
  waitServerCount,
  wasioConfig,
  wasioMongoConfig,
  wasioPostgresConfig,
};
