// The PostgreSQL the Postgres interop tests run on.
//
//   postgresBackend()  the shared server (WASIO_TEST_POSTGRES_URL, default
//                      postgres://postgres@127.0.0.1:5432/test, trust auth). Every cluster gets a
//                      channel prefix and an attachments table of its own (`fresh()`), so that
//                      suites and tests never see each other's notifications or rows; the tables
//                      are dropped by `stop()`.
//   startPostgres()    a PostgreSQL cluster of the test's own (initdb + pg_ctl, PostgreSQL 15 from
//                      /usr/lib/postgresql/15/bin or WASIO_TEST_PG_BIN), on a free port, in a
//                      temporary directory, for the restart tests: `restart()` (pg_ctl restart
//                      -m fast), `stop()` / `start()` on the same port, `destroy()`. Run as user
//                      `postgres` (`runuser -u postgres --`) when we are root (initdb refuses
//                      root). Stopped (immediate) and removed at process exit, even after a
//                      failure.
"use strict";

const { execFileSync, spawn } = require("node:child_process");
const fs = require("node:fs");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const pg = require("pg");
const crypto = require("node:crypto");
const { freePort } = require("./server");

const POSTGRES_URL = process.env.WASIO_TEST_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/test";
const PG_BIN = process.env.WASIO_TEST_PG_BIN || "/usr/lib/postgresql/15/bin";

const hex = (n) => crypto.randomBytes(n).toString("hex");

/**
 * A channel prefix and an attachments table name of their own. The channel (`prefix#nsp`)
 * must stay under PostgreSQL's 63-byte identifier limit: short names.
 */
function freshNames(label = "t") {
  const id = hex(4);
  return { channelPrefix: `wt-pg-${label}-${id}`, tableName: `wt_att_${label.replace(/[^a-z0-9]/g, "")}_${id}` };
}

/** The attachments table, as @socket.io/postgres-adapter's README creates it. */
const createTableSql = (tableName) => `CREATE TABLE IF NOT EXISTS ${tableName} (id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`;

/** A connected pg.Client on `url` whose errors (the server going away) do not kill the tests. */
async function pgClient(url) {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/**
 * The shared server:
 *   { url, pool, client(), fresh(label), stop() }
 * `fresh(label)` creates an attachments table and resolves with {channelPrefix, tableName};
 * `client()` a dedicated connection (closed by `stop()`): its queries, NOTIFYs included, run
 * one after the other, so notifications sent through it arrive in that order.
 */
async function postgresBackend(url = POSTGRES_URL) {
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5000 });
  pool.on("error", () => {});
  try {
    await pool.query("SELECT 1");
  } catch (err) {
    await pool.end().catch(() => {});
    throw new Error(`PostgreSQL at ${url} does not answer (${err.message}): start one (trust auth, user postgres, database test) or set WASIO_TEST_POSTGRES_URL`);
  }
  const tables = new Set();
  const clients = [];
  return {
    url,
    pool,
    async client() {
      const c = await pgClient(url);
      clients.push(c);
      return c;
    },
    async fresh(label) {
      const names = freshNames(label);
      await pool.query(createTableSql(names.tableName));
      tables.add(names.tableName);
      return names;
    },
    async stop() {
      await Promise.allSettled(clients.splice(0).map((c) => c.end()));
      for (const t of tables) await pool.query(`DROP TABLE IF EXISTS ${t}`).catch(() => {});
      await pool.end().catch(() => {});
    },
  };
}

/**
 * `cmd args...` as user postgres when we are root; resolves {code, stdout, stderr} once it
 * exited (not once its output closed: a server pg_ctl starts may inherit it).
 */
function runAsPostgres(cmd, args, { timeoutMs = 60000 } = {}) {
  const asRoot = process.getuid && process.getuid() === 0;
  const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
  return new Promise((resolve) => {
    const child = spawn(file, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      child.stdout.destroy();
      child.stderr.destroy();
      resolve({ code: code === null ? `signal ${signal}` : code, stdout, stderr });
    });
  });
}

function postgresOwner() {
  const out = execFileSync("id", ["-u", "postgres"]).toString().trim();
  const uid = Number(out);
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
  return { uid, gid };
}

/**
 * Starts a PostgreSQL cluster of our own on a free port (trust auth, superuser `postgres`,
 * database `postgres`, fsync off). Resolves with
 *   { port, url, dir, restart(), stop(), start(), destroy(), log() }
 */
async function startPostgres() {
  for (const tool of ["initdb", "pg_ctl"]) {
    if (!fs.existsSync(path.join(PG_BIN, tool))) throw new Error(`${path.join(PG_BIN, tool)} is missing: install postgresql-15 or set WASIO_TEST_PG_BIN`);
  }
  const asRoot = process.getuid && process.getuid() === 0;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "wasio-pg-"));
  if (asRoot) {
    const { uid, gid } = postgresOwner();
    await fsp.chown(dir, uid, gid);
  }
  const data = path.join(dir, "data");
  const logFile = path.join(dir, "server.log");
  const port = await freePort();
  const pgCtl = path.join(PG_BIN, "pg_ctl");
  const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });
  let running = false;
  // Never outlive the tests, even when they end with an uncaught exception.
  const onExit = () => {
    if (running) {
      try {
        execFileSync(asRoot ? "runuser" : pgCtl, [...(asRoot ? ["-u", "postgres", "--", pgCtl] : []), "stop", "-D", data, "-m", "immediate", "-w"], { stdio: "ignore", timeout: 20000 });
      } catch {
        /* already gone */
      }
    }
    removeDir();
  };
  process.on("exit", onExit);
  // pg_ctl's server is a daemon: it would outlive a test process ended by a signal.
  const onSignal = (sig) => {
    onExit();
    process.removeListener("exit", onExit);
    process.kill(process.pid, sig);
  };
  for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, onSignal);
  const forget = () => {
    process.removeListener("exit", onExit);
    for (const sig of ["SIGINT", "SIGTERM"]) process.removeListener(sig, onSignal);
  };
  const log = () => {
    try {
      return fs.readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const ctl = async (args, what) => {
    const res = await runAsPostgres(pgCtl, args);
    if (res.code !== 0) throw new Error(`pg_ctl ${what} failed (${res.code}): ${res.stderr}${res.stdout}\n${log().slice(-2000)}`);
    return res;
  };
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  const init = await runAsPostgres(path.join(PG_BIN, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
  if (init.code !== 0) {
    forget();
    removeDir();
    throw new Error(`initdb failed (${init.code}): ${init.stderr}${init.stdout}`);
  }
  const server = {
    port,
    dir,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    log,
    async start() {
      await ctl(["start", "-D", data, "-l", logFile, "-w", "-t", "30", "-o", options], "start");
      running = true;
    },
    /** `pg_ctl restart -m fast`: every connection is cut, the server is back on the same port. */
    async restart() {
      await ctl(["restart", "-D", data, "-l", logFile, "-m", "fast", "-w", "-t", "30", "-o", options], "restart");
      running = true;
    },
    async stop() {
      await ctl(["stop", "-D", data, "-m", "fast", "-w", "-t", "30"], "stop");
      running = false;
    },
    /** Stops the server (if running) and removes its directory. */
    async destroy() {
      if (running) await server.stop().catch(() => runAsPostgres(pgCtl, ["stop", "-D", data, "-m", "immediate", "-w"]));
      running = false;
      forget();
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await server.start();
  } catch (err) {
    await server.destroy().catch(() => {});
    throw err;
  }
  return server;
}

module.exports = { POSTGRES_URL, createTableSql, freshNames, pgClient, postgresBackend, startPostgres };
