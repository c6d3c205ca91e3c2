// The admin HTTP API of a wasio node (hot swap of the adapter component), and nodes that
// serve it.
//
//   [admin] listen = "127.0.0.1:PORT", token = "SECRET"; every request carries
//   `Authorization: Bearer SECRET`.
//   GET  /admin/adapter           {name, version, source, sha256, datasource, loaded_at_ms,
//                                  swaps, failed_swaps, last_error, previous}
//   POST /admin/adapter           JSON {wasm: PATH | "builtin:NAME", datasource?, options?}, or
//                                 a raw .wasm (Content-Type application/wasm, ?datasource=NAME)
//                                 200 {from, to, prepare_ms, switch_ms, total_ms};
//                                 422 invalid component / init refused; 502 datasource
//                                 unreachable; 400 malformed request; errors: {error}
//   POST /admin/adapter/rollback  200 report, or 409
"use strict";

const crypto = require("node:crypto");
const { configText, httpGet, startServer } = require("./server");
const { until } = require("./cluster");

const SWAP_TIMEOUT_MS = Number(process.env.WASIO_TEST_SWAP_TIMEOUT_MS || 60000);

/**
 * A client of one node's admin API at `base` (http://HOST:PORT). Every call resolves
 * `{status, json, body, ms}` (json null when the body is not JSON); none throws on a
 * non-2xx status. Bounded by `timeoutMs`.
 */
function adminClient(base, token) {
  async function request(method, path, { body, contentType, timeoutMs = SWAP_TIMEOUT_MS, auth = true } = {}) {
    const headers = {};
    if (auth) headers.authorization = `Bearer ${token}`;
    if (contentType) headers["content-type"] = contentType;
    const started = Date.now();
    const res = await fetch(`${base}${path}`, { method, headers, body, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, body: text, ms: Date.now() - started };
  }
  const admin = {
    base,
    token,
    request,
    /** GET /admin/adapter. */
    get: (opts) => request("GET", "/admin/adapter", opts),
    /** GET /admin/adapter, asserting 200; resolves the status object. */
    async status() {
      const r = await admin.get();
      if (r.status !== 200 || !r.json) throw new Error(`GET /admin/adapter answered ${r.status}: ${r.body.slice(0, 300)}`);
      return r.json;
    },
    /** POST /admin/adapter with `{wasm, datasource?, options?}`. */
    swap: (spec, opts) => request("POST", "/admin/adapter", { body: JSON.stringify(spec), contentType: "application/json", ...opts }),
    /**
     * POST /admin/adapter with a raw component (`bytes`); `name` (the upload's file name,
     * shown as its source `upload:NAME`) and `datasource` go in the query string.
     */
    upload(bytes, { name, datasource, ...opts } = {}) {
      const q = new URLSearchParams();
      if (name) q.set("name", name);
      if (datasource) q.set("datasource", datasource);
      const qs = q.toString();
      return request("POST", `/admin/adapter${qs ? `?${qs}` : ""}`, { body: bytes, contentType: "application/wasm", ...opts });
    },
    /** POST /admin/adapter/rollback. */
    rollback: (opts) => request("POST", "/admin/adapter/rollback", opts),
  };
  return admin;
}

/**
 * Starts `wasio serve` (lib/server.js) with an `[admin]` listener on a port of the kernel's
 * choosing (`127.0.0.1:0`, read back from the log line "admin API listening on http://ADDR")
 * and a fresh token, `configOpts` going to configText (wasm, datasource, options,
 * datasources...). Resolves once GET /admin/adapter answers 200, with the server handle
 * plus `admin` (adminClient).
 */
async function startAdminServer(configOpts = {}, { env = {} } = {}) {
  const token = crypto.randomBytes(16).toString("hex");
  const config = configText({ ...configOpts, admin: { listen: "127.0.0.1:0", token } });
  // The listen address is read from the log: keep the CLI's info lines whatever RUST_LOG says.
  const rustLog = process.env.RUST_LOG ? `${process.env.RUST_LOG},wasio::cli=info` : "info";
  const server = await startServer({ config, env: { RUST_LOG: rustLog, ...env } });
  try {
    const addr = await until(() => (/admin API listening on (http:\/\/[\w.:[\]-]+)/.exec(server.stderr()) || [])[1], {
      timeoutMs: 10000,
      what: 'the log line "admin API listening on http://ADDR"',
    });
    const admin = adminClient(addr.replace("0.0.0.0", "127.0.0.1"), token);
    await until(
      async () => {
        const r = await admin.get({ timeoutMs: 2000 });
        return r.status === 200 ? r : null;
      },
      { timeoutMs: 10000, what: `GET ${addr}/admin/adapter to answer 200` },
    );
    server.admin = admin;
    return server;
  } catch (err) {
    await server.stop();
    err.message += `\nwasio stderr:\n${server.stderr()}`;
    throw err;
  }
}

/** The `adapter` of GET /healthz: {name, version, source, sha256}. */
async function healthAdapter(server) {
  const { status, body } = await httpGet(`${server.url}/healthz`);
  if (status !== 200) throw new Error(`GET /healthz answered ${status}: ${body.slice(0, 200)}`);
  return JSON.parse(body).adapter;
}

module.exports = { SWAP_TIMEOUT_MS, adminClient, healthAdapter, startAdminServer };
