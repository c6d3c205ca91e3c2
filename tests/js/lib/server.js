// Helpers to run the wasio binary under test.
//
// WASIO_BIN       path of the binary (required; tests fail with a clear message without it)
// WASIO_TEST_GUESTS  directory holding test guest components (faulty.wasm, ...); optional
// WASIO_TEST_VERBOSE=1  print every server's stderr when it is stopped
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const HEALTH_TIMEOUT_MS = Number(process.env.WASIO_TEST_START_TIMEOUT_MS || 20000);
const STOP_TIMEOUT_MS = 5000;

/** A TOML value (strings, numbers, booleans, arrays of them) written as JSON writes it. */
const tomlValue = (v) => JSON.stringify(v);

/**
 * Minimal valid config; `wasm` selects the adapter. Optional:
 *   datasource        `[adapter] datasource`, the name of one of `datasources`
 *   options           `[adapter.options]` (undefined values left out)
 *   requestTimeoutMs  `[adapter] request_timeout_ms`
 *   datasources       {NAME: {connector, url, publish_buffer?}}: `[datasources.NAME]`, all
 *                     written whether the adapter uses them or not (hot swaps may pick any)
 *   admin             {listen, token}: the `[admin]` table (lib/admin.js fills it in)
 *   server            more `[server]` keys, {key: value}
 *   extra             TOML appended as it is
 */
function configText({
  wasm = "builtin:local",
  deadlineMs = 100,
  memoryMib = 64,
  extra = "",
  datasource,
  options,
  requestTimeoutMs,
  datasources = {},
  admin,
  server = {},
} = {}) {
  const lines = [
    "[server]",
    "port = 0",
    // Two static namespaces, and a pattern whose namespaces are created on first use.
    'namespaces = ["/", "/chat", "/dyn/{*rest}"]',
    ...Object.entries(server).map(([k, v]) => `${k} = ${tomlValue(v)}`),
    "",
    "[adapter]",
    `wasm = ${tomlValue(wasm)}`,
  ];
  if (datasource !== undefined) lines.push(`datasource = ${tomlValue(datasource)}`);
  if (requestTimeoutMs !== undefined) lines.push(`request_timeout_ms = ${requestTimeoutMs}`);
  if (options) {
    lines.push("", "[adapter.options]");
    for (const [k, v] of Object.entries(options)) if (v !== undefined) lines.push(`${k} = ${tomlValue(v)}`);
  }
  lines.push("", "[limits]", `deadline_ms = ${deadlineMs}`, `memory_mib = ${memoryMib}`);
  for (const [name, ds] of Object.entries(datasources)) {
    lines.push("", `[datasources.${name}]`);
    for (const [k, v] of Object.entries(ds)) if (v !== undefined) lines.push(`${k} = ${tomlValue(v)}`);
  }
  if (admin) lines.push("", "[admin]", `listen = ${tomlValue(admin.listen)}`, `token = ${tomlValue(admin.token)}`);
  lines.push(extra, "");
  return lines.join("\n");
}

function wasioBin() {
  const bin = process.env.WASIO_BIN;
  if (!bin) {
    throw new Error("WASIO_BIN is not set: point it at the wasio binary (e.g. target/debug/wasio)");
  }
  if (!fs.existsSync(bin)) {
    throw new Error(`WASIO_BIN=${bin} does not exist`);
  }
  return path.resolve(bin);
}

/** The test guests directory, or null when WASIO_TEST_GUESTS is unset. */
function guestsDir() {
  return process.env.WASIO_TEST_GUESTS || null;
}

/** A port that was free a moment ago on 127.0.0.1 (the kernel picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh temporary directory, removed by the returned `cleanup`. */
async function tempDir() {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "wasio-test-"));
  return { dir, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}

/** Writes `text` to `<dir>/<name>` and returns the absolute path. */
async function writeFile(dir, name, content) {
  const p = path.join(dir, name);
  await fsp.writeFile(p, content);
  return p;
}

/**
 * Runs `wasio ...args` to completion (bounded by timeoutMs, then SIGKILL).
 * Resolves {code, signal, stdout, stderr, timedOut}.
 */
function runWasio(args, { timeoutMs = 15000, env = {} } = {}) {
  const bin = wasioBin();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

async function httpGet(url, { timeoutMs = 3000 } = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.text();
  return { status: res.status, headers: res.headers, body };
}

/**
 * Starts `wasio serve --config <tmp>/config.toml --port <free port>` and resolves once
 * GET /healthz answers 200 with {"status":"ok"}. Rejects (with the server's stderr) when
 * the process exits first or the deadline passes.
 *
 * Returns a handle:
 *   url         http://127.0.0.1:<port>
 *   port
 *   configPath
 *   stderr()    everything the server wrote to stderr so far
 *   exited()    null while running, else {code, signal}
 *   health()    GET /healthz → {status, json}
 *   stop()      SIGTERM (then SIGKILL after 5 s); resolves {code, signal, stderr, exitedEarly}
 */
async function startServer({ config = configText(), env = {}, attempts = 3 } = {}) {
  let lastErr;
  for (let i = 0; i < attempts; i++) {
    try {
      return await startOnce(config, env);
    } catch (err) {
      lastErr = err;
      // Only retry when the port we picked got taken in between.
      if (!/address (already )?in use|EADDRINUSE|os error 98/i.test(String(err.message))) break;
    }
  }
  throw lastErr;
}

async function startOnce(config, env) {
  const bin = wasioBin();
  const { dir, cleanup } = await tempDir();
  const configPath = await writeFile(dir, "config.toml", config);
  const port = await freePort();
  const child = spawn(bin, ["serve", "--config", configPath, "--port", String(port)], {
    env: { RUST_BACKTRACE: "1", ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  let exit = null;
  let stopping = false;
  child.stdout.setEncoding("utf8").on("data", (d) => (stderr += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
  const exited = new Promise((resolve) => {
    child.on("error", (err) => {
      stderr += `\n[spawn error] ${err.message}\n`;
      exit = exit || { code: null, signal: null, error: err };
      resolve(exit);
    });
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const url = `http://127.0.0.1:${port}`;

  const handle = {
    url,
    port,
    configPath,
    pid: child.pid,
    stderr: () => stderr,
    exited: () => exit,
    async health() {
      const { status, body } = await httpGet(`${url}/healthz`);
      let json = null;
      try {
        json = JSON.parse(body);
      } catch {
        /* not JSON */
      }
      return { status, json, body };
    },
    async stop() {
      const exitedEarly = exit !== null && !stopping;
      stopping = true;
      if (exit === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(killer);
      }
      await cleanup();
      if (process.env.WASIO_TEST_VERBOSE) {
        process.stderr.write(`---- wasio stderr (${configPath}) ----\n${stderr}\n---- end ----\n`);
      }
      return { ...exit, stderr, exitedEarly };
    },
  };

  // Poll /healthz with a bounded loop.
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  let lastProblem = "no answer yet";
  while (Date.now() < deadline) {
    if (exit !== null) {
      await cleanup();
      throw new Error(
        `wasio exited before serving (code ${exit.code}, signal ${exit.signal}); stderr:\n${stderr}`,
      );
    }
    try {
      const h = await handle.health();
      if (h.status === 200 && h.json && h.json.status === "ok") return handle;
      lastProblem = `GET /healthz answered ${h.status}: ${h.body.slice(0, 200)}`;
    } catch (err) {
      lastProblem = String(err.cause ? err.cause.code || err.cause.message : err.message);
    }
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  child.kill("SIGKILL");
  await exited;
  await cleanup();
  throw new Error(
    `wasio did not become healthy within ${HEALTH_TIMEOUT_MS} ms (${lastProblem}); stderr:\n${stderr}`,
  );
}

/**
 * Asserts the server is still running (did not crash during the test). Meant for after() hooks.
 */
function assertAlive(server) {
  const e = server.exited();
  if (e !== null) {
    throw new Error(
      `wasio exited during the test (code ${e.code}, signal ${e.signal}); stderr:\n${server.stderr()}`,
    );
  }
}

module.exports = {
  assertAlive,
  configText,
  freePort,
  guestsDir,
  httpGet,
  runWasio,
  startServer,
  tempDir,
  wasioBin,
  writeFile,
};
