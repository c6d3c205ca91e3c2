// TLS on the client port and the admin listener (issue 19): a self-signed certificate made
// here with openssl; socket.io-client over wss:// and https long-polling pinned to it; a
// plain http client refused; SIGHUP serves a new certificate.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync, spawn } = require("node:child_process");
const crypto = require("node:crypto");
const fsp = require("node:fs/promises");
const https = require("node:https");
const os = require("node:os");
const path = require("node:path");
const tls = require("node:tls");
const { ack, closeAll, connect } = require("../lib/client");
const { configText, freePort, runWasio, wasioBin } = require("../lib/server");
const { until } = require("../lib/cluster");

/** A fresh self-signed P-256 certificate for localhost and 127.0.0.1: writes cert.pem, key.pem. */
function makeCert(dir) {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"),
  ], { stdio: "ignore" });
  return fsp.readFile(path.join(dir, "cert.pem"), "utf8");
}

/** GET `url` over https trusting only `ca`: {status, body}. */
function get(url, ca) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, timeout: 5000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    }).on("error", reject);
  });
}

/** The SHA-256 fingerprint of the certificate a TLS server at `port` presents. */
function peerFingerprint(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on("error", reject);
  });
}

const fingerprintOf = (pem) => new crypto.X509Certificate(pem).fingerprint256;

describe("TLS on the client port and the admin listener", () => {
  let dir;
  let child;
  let stderr = "";
  let ca;
  let port;
  let adminBase;
  const token = crypto.randomBytes(8).toString("hex");

  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), "wasio-tls-"));
    ca = await makeCert(dir);
    port = await freePort();
    const extra = [
      "[server.tls]", 'cert = "cert.pem"', 'key = "key.pem"',
      "[admin]", 'listen = "127.0.0.1:0"', `token = "${token}"`,
      "[admin.tls]", 'cert = "cert.pem"', 'key = "key.pem"',
    ].join("\n");
    const config = path.join(dir, "wasio.toml");
    await fsp.writeFile(config, configText({ extra }));
    child = spawn(wasioBin(), ["serve", "--config", config, "--port", String(port)], {
      env: { ...process.env, RUST_LOG: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    await until(() => /wasio listening on https:\/\//.test(stderr), { timeoutMs: 20000, what: `the https listening line; stderr:\n${stderr}` });
    adminBase = await until(() => (/admin API listening on (https:\/\/[\d.:]+)/.exec(stderr) || [])[1], { what: "the admin https line" });
  });
  after(async () => {
    if (child) {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  for (const transport of ["websocket", "polling"]) {
    it(`socket.io-client over ${transport} with the certificate pinned: join, publish, receive`, async () => {
      const s = await connect(`https://127.0.0.1:${port}`, "/", { transport, ca });
      assert.equal((await ack(s, "join", "secure")).ok, true);
      const got = s.inbox.waitFor("e");
      assert.deepEqual(await ack(s, "publish", { room: "secure", event: "e", data: "over tls" }), { ok: true, count: 1 });
      assert.equal((await got).args[0], "over tls");
      closeAll(s);
    });
  }

  it("/healthz and the admin /metrics answer over https; plain http is refused", async () => {
    const health = await get(`https://127.0.0.1:${port}/healthz`, ca);
    assert.equal(health.status, 200);
    assert.equal(JSON.parse(health.body).status, "ok");
    const metrics = await get(`${adminBase}/metrics`, ca);
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /wasio_connections/);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) }));
  });

  it("`wasio adapter status` reaches the https admin API, trusting the config's certificate or --cacert", async () => {
    const config = path.join(dir, "wasio.toml");
    const byConfig = await runWasio(["adapter", "status", "--json", "--config", config, "--admin", adminBase]);
    assert.equal(byConfig.code, 0, byConfig.stderr);
    assert.equal(typeof JSON.parse(byConfig.stdout).loaded_at_ms, "number", byConfig.stdout);
    const byFlag = await runWasio(["adapter", "status", "--json", "--admin", adminBase, "--token", token,
      "--cacert", path.join(dir, "cert.pem")]);
    assert.equal(byFlag.code, 0, byFlag.stderr);
    const other = await fsp.mkdtemp(path.join(dir, "stranger-"));
    await makeCert(other);
    const untrusted = await runWasio(["adapter", "status", "--admin", adminBase, "--token", token,
      "--cacert", path.join(other, "cert.pem")]);
    assert.notEqual(untrusted.code, 0);
    assert.match(untrusted.stderr, /TLS handshake/);
  });

  it("SIGHUP re-reads the certificate: new connections get the new one", async () => {
    assert.equal(await peerFingerprint(port), fingerprintOf(ca));
    const fresh = await makeCert(dir);
    assert.notEqual(fingerprintOf(fresh), fingerprintOf(ca));
    const seen = (stderr.match(/certificate re-read for `server\.tls`/g) || []).length;
    child.kill("SIGHUP");
    await until(() => (stderr.match(/certificate re-read for `server\.tls`/g) || []).length > seen, { what: "the re-read log line" });
    assert.equal(await peerFingerprint(port), fingerprintOf(fresh));
    const s = await connect(`https://127.0.0.1:${port}`, "/", { transport: "websocket", ca: fresh });
    closeAll(s);
  });
});

describe("a certificate that does not load", () => {
  it("--check refuses a missing key file and a key that is not the certificate's, naming the file", async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "wasio-tls-bad-"));
    try {
      await makeCert(dir);
      const other = await fsp.mkdtemp(path.join(dir, "other-"));
      await makeCert(other);
      const cases = [
        ['cert = "cert.pem"\nkey = "missing.pem"', /key `server\.tls`: .*missing\.pem/],
        [`cert = "cert.pem"\nkey = ${JSON.stringify(path.join(other, "key.pem"))}`, /key `server\.tls`: .*key\.pem/],
        ['cert = "key.pem"\nkey = "key.pem"', /key `server\.tls`: .*key\.pem/],
      ];
      for (const [table, want] of cases) {
        const config = path.join(dir, "bad.toml");
        await fsp.writeFile(config, configText({ extra: `[server.tls]\n${table}` }));
        const r = await runWasio(["serve", "--check", "--config", config]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, want);
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
