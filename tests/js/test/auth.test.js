// Auth on `wasio serve` (issue 19): a JWT on connect (HS256, RS256 from a PEM, ES256 from
// a JWKS re-read on SIGHUP) whose claims say which namespaces, rooms to join and rooms to
// publish to a socket may use; refusals as socket.io's `connect_error` or an `{error}`
// ack that changed nothing; refusals and limits counted in /metrics; the token's data
// claims in the socket's `data` as a Node.js server's fetchSockets sees it.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fsp = require("node:fs/promises");
const path = require("node:path");
const { ack, closeAll, connect, fence, refused, roomsOf, uid, TRANSPORTS } = require("../lib/client");
const { configText, startServer } = require("../lib/server");
const { startAdminServer } = require("../lib/admin");
const { REDIS_URL, until } = require("../lib/cluster");
const { keyPair, sign } = require("../lib/jwt");

const SECRET = "a-test-secret-of-32-bytes-------";
const ISS = "https://issuer.test";
const AUD = "wasio-test";

const JWT_TABLE = [
  "[auth.jwt]",
  `secret = ${JSON.stringify(SECRET)}`,
  `issuer = ${JSON.stringify(ISS)}`,
  `audience = ${JSON.stringify(AUD)}`,
  'data_claims = ["sub", "name"]',
].join("\n");

/** A token for `sub` granting `rights` (the `wasio` claim), signed with SECRET. */
const token = (rights, claims = {}) => sign({ iss: ISS, aud: AUD, sub: "alice", wasio: rights, ...claims }, { key: SECRET });

/** Parses /metrics into {name{labels}: value}. */
async function metrics(node) {
  const res = await fetch(`${node.admin.base}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  const out = {};
  for (const line of (await res.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

describe("JWT on connect (HS256)", () => {
  let node;
  before(async () => {
    node = await startAdminServer({ extra: JWT_TABLE });
  });
  after(() => node && node.stop());

  it("logs the auth mode, and --check reports it", async () => {
    assert.match(node.stderr(), /auth on.*mode="?jwt/);
    assert.doesNotMatch(node.stderr(), /relay is open/);
  });

  for (const transport of TRANSPORTS) {
    it(`a valid token connects, over ${transport}; auth.token or Authorization: Bearer`, async () => {
      const a = await connect(node.url, "/", { transport, auth: { token: token({}) } });
      assert.ok(a.connected);
      const b = await connect(node.url, "/", { transport, extraHeaders: { authorization: `Bearer ${token({})}` } });
      assert.ok(b.connected);
      closeAll(a, b);
    });
  }

  it("refuses a missing, expired, wrong-audience, wrong-issuer, wrongly-signed, malformed or not-yet-valid token", async () => {
    const before = await metrics(node);
    const now = Math.floor(Date.now() / 1000);
    const cases = [
      [undefined, /unauthorized: no token/],
      [token({}, { exp: now - 60 }), /unauthorized: token expired/],
      [token({}, { aud: "someone-else" }), /unauthorized: wrong token audience/],
      [token({}, { iss: "https://evil.test" }), /unauthorized: wrong token issuer/],
      [sign({ iss: ISS, aud: AUD, sub: "x" }, { key: "another-secret-of-32-bytes------" }), /unauthorized: invalid token signature/],
      ["not.a.jwt", /unauthorized: malformed token/],
      [token({}, { nbf: now + 3600 }), /unauthorized: token not valid yet/],
      [token({}, { exp: null }), /unauthorized: token has no `exp` claim/],
    ];
    for (const [t, want] of cases) {
      const msg = await refused(node.url, "/", t === undefined ? {} : { auth: { token: t } });
      assert.match(msg, want, `token ${t}`);
    }
    const after = await metrics(node);
    const key = 'wasio_auth_denied_total{stage="connect",by="token"}';
    assert.equal(after[key] - before[key], cases.length);
  });

  it("the namespaces claim decides where a token may connect", async () => {
    const t = token({ namespaces: ["/chat"] });
    const chat = await connect(node.url, "/chat", { auth: { token: t } });
    const msg = await refused(node.url, "/", { auth: { token: t } });
    assert.match(msg, /forbidden: the token does not grant namespace `\/`/);
    closeAll(chat);
    const m = await metrics(node);
    assert.ok(m['wasio_auth_denied_total{stage="connect",by="claims"}'] >= 1);
  });

  it("join: exact names and globs of the claim; a join with one refused room joins none", async () => {
    const r = uid("r");
    const s = await connect(node.url, "/", { auth: { token: token({ join: [`${r}-lobby`, `${r}-user:*`] }) } });
    const ok = await ack(s, "join", [`${r}-lobby`, `${r}-user:1`]);
    assert.equal(ok.ok, true);
    const bad = await ack(s, "join", [`${r}-user:2`, `${r}-admin`]);
    assert.match(bad.error, new RegExp(`join: forbidden: the token does not grant joining \`${r}-admin\``));
    assert.deepEqual(await roomsOf(s), [`${r}-lobby`, `${r}-user:1`].sort(), "nothing of the refused join");
    closeAll(s);
  });

  it("publish: only to rooms the claim grants, the whole namespace only with `*`; refused publishes reach nobody", async () => {
    const r = uid("p");
    const listener = await connect(node.url, "/", { auth: { token: token({ join: [`${r}-*`] }) } });
    await ack(listener, "join", [`${r}-news`, `${r}-ops`]);
    const writer = await connect(node.url, "/", { auth: { token: token({ publish: [`${r}-news`] }) } });
    const sent = await ack(writer, "publish", { room: `${r}-news`, event: "headline", data: 1 });
    assert.deepEqual(sent, { ok: true, count: 1 });
    const toOps = await ack(writer, "publish", { room: `${r}-ops`, event: "headline", data: 2 });
    assert.match(toOps.error, new RegExp(`publish: forbidden: publishing to room \`${r}-ops\` is not allowed`));
    const toAll = await ack(writer, "publish", { event: "headline", data: 3 });
    assert.match(toAll.error, /publish: forbidden: publishing to the whole namespace is not allowed/);
    const mixed = await ack(writer, "publish", { room: [`${r}-news`, `${r}-ops`], event: "headline", data: 4 });
    assert.ok(mixed.error, "one refused room refuses the publish");
    // An `admin` token (publish: ["*"]) fences the listener: everything before it is in.
    const admin = await connect(node.url, "/", { auth: { token: token({ publish: ["*"] }) } });
    await fence(admin, [listener]);
    assert.deepEqual(listener.inbox.data("headline"), [1]);
    closeAll(listener, writer, admin);
    const m = await metrics(node);
    assert.ok(m['wasio_auth_denied_total{stage="publish",by="claims"}'] >= 3);
  });
});

describe("JWT keys: RS256 from a PEM file, ES256 from a JWKS re-read on SIGHUP", () => {
  let node;
  let dir;
  const rsa = keyPair("RS256");
  const ec1 = keyPair("ES256", "k1");
  const ec2 = keyPair("ES256", "k2");
  before(async () => {
    dir = await fsp.mkdtemp(path.join(require("node:os").tmpdir(), "wasio-jwks-"));
    await fsp.writeFile(path.join(dir, "rsa.pem"), rsa.publicPem);
    await fsp.writeFile(path.join(dir, "keys.json"), JSON.stringify({ keys: [ec1.jwk] }));
    const extra = [
      "[auth.jwt]",
      'algorithms = ["RS256", "ES256"]',
      `public_key = ${JSON.stringify(path.join(dir, "rsa.pem"))}`,
      `jwks = ${JSON.stringify(path.join(dir, "keys.json"))}`,
    ].join("\n");
    node = await startServer({ config: configText({ extra }), env: { RUST_LOG: "info" } });
  });
  after(async () => {
    if (node) await node.stop();
    if (dir) await fsp.rm(dir, { recursive: true, force: true });
  });

  it("verifies RS256 against the PEM and ES256 by kid; refuses HS256, not in `algorithms`", async () => {
    const rs = await connect(node.url, "/", { auth: { token: sign({ sub: "r" }, { alg: "RS256", key: rsa.privateKey }) } });
    const es = await connect(node.url, "/", { auth: { token: sign({ sub: "e" }, { alg: "ES256", key: ec1.privateKey, kid: "k1" }) } });
    closeAll(rs, es);
    const hs = await refused(node.url, "/", { auth: { token: sign({ sub: "h" }, { key: SECRET }) } });
    assert.match(hs, /unauthorized: token algorithm HS256 is not accepted/);
    const wrongKey = await refused(node.url, "/", { auth: { token: sign({}, { alg: "ES256", key: ec2.privateKey, kid: "k1" }) } });
    assert.match(wrongKey, /unauthorized: invalid token signature/);
  });

  it("a key added to the JWKS is used after SIGHUP, a removed one no longer", async () => {
    const t2 = sign({ sub: "e2" }, { alg: "ES256", key: ec2.privateKey, kid: "k2" });
    assert.match(await refused(node.url, "/", { auth: { token: t2 } }), /no key `k2`/);
    await fsp.writeFile(path.join(dir, "keys.json"), JSON.stringify({ keys: [ec2.jwk] }));
    const seen = (node.stderr().match(/token keys re-read/g) || []).length;
    process.kill(node.pid, "SIGHUP");
    await until(() => (node.stderr().match(/token keys re-read/g) || []).length > seen, { what: "the reload log line" });
    const s = await connect(node.url, "/", { auth: { token: t2 } });
    closeAll(s);
    const t1 = sign({ sub: "e1" }, { alg: "ES256", key: ec1.privateKey, kid: "k1" });
    assert.match(await refused(node.url, "/", { auth: { token: t1 } }), /no key `k1`/);
  });

  it("a JWKS that no longer parses keeps the old keys (SIGHUP logs the refusal)", async () => {
    await fsp.writeFile(path.join(dir, "keys.json"), "{ not json");
    const seen = (node.stderr().match(/token keys refused/g) || []).length;
    process.kill(node.pid, "SIGHUP");
    await until(() => (node.stderr().match(/token keys refused/g) || []).length > seen, { what: "the refusal log line" });
    assert.match(node.stderr(), /keys\.json: not a JWKS/);
    const s = await connect(node.url, "/", { auth: { token: sign({}, { alg: "ES256", key: ec2.privateKey, kid: "k2" }) } });
    closeAll(s);
  });
});

describe("an open relay and --check", () => {
  it("without [auth], start-up warns that the relay is open", async () => {
    const node = await startServer({ env: { RUST_LOG: "info" } });
    try {
      assert.match(node.stderr(), /WARN.*auth is off: the relay is open/);
    } finally {
      await node.stop();
    }
  });

  it("--check prints the mode, and refuses an unreadable key file naming it", async () => {
    const { runWasio } = require("../lib/server");
    const dir = await fsp.mkdtemp(path.join(require("node:os").tmpdir(), "wasio-check-"));
    try {
      const good = path.join(dir, "good.toml");
      await fsp.writeFile(good, configText({ extra: JWT_TABLE }));
      const ok = await runWasio(["serve", "--check", "--config", good]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /ok: .*good\.toml: auth jwt/);
      const bad = path.join(dir, "bad.toml");
      await fsp.writeFile(bad, configText({ extra: '[auth.jwt]\nalgorithms = ["RS256"]\npublic_key = "missing.pem"' }));
      const no = await runWasio(["serve", "--check", "--config", bad]);
      assert.equal(no.code, 2);
      assert.match(no.stderr, /bad\.toml: .*auth\.jwt\.public_key: cannot read .*missing\.pem/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("per-connection limits, with or without auth", () => {
  let node;
  before(async () => {
    const extra = [
      "[server.limits]",
      "publishes_per_second = 5",
      "rooms_per_socket = 10",
      "rooms_per_join = 4",
      "room_name_bytes = 16",
      "max_publish_bytes = 65536",
    ].join("\n");
    node = await startAdminServer({ extra });
  });
  after(() => node && node.stop());

  it("rooms per join, room name length and rooms per socket: an error ack naming the limit, nothing joined", async () => {
    const s = await connect(node.url);
    const five = await ack(s, "join", ["a", "b", "c", "d", "e"]);
    assert.equal(five.limit, "rooms_per_join");
    assert.match(five.error, /join: 5 rooms in one request; at most 4/);
    const long = await ack(s, "join", "x".repeat(17));
    assert.equal(long.limit, "room_name_bytes");
    for (const batch of [["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"], ["r8", "r9"]]) {
      assert.equal((await ack(s, "join", batch)).ok, true);
    }
    const eleventh = await ack(s, "join", ["r10", "r0"]);
    assert.equal(eleventh.limit, "rooms_per_socket");
    assert.equal((await roomsOf(s)).length, 10, "the refused join added nothing");
    // Rooms already held are no new cost.
    assert.equal((await ack(s, "join", ["r0", "r1"])).ok, true);
    closeAll(s);
  });

  it("publishes per second: a burst over the rate gets error acks; the rest are delivered", async () => {
    const s = await connect(node.url);
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => ack(s, "publish", { event: "burst", data: i })));
    const refusedN = answers.filter((a) => a.limit === "publishes_per_second").length;
    // A burst of 5, refilled at 5/s: 3 refused when the 8 arrive within 200 ms.
    assert.ok(refusedN >= 1 && refusedN <= 3, `refused ${refusedN} of 8 with a burst of 5`);
    assert.equal(answers.filter((a) => a.ok).length, 8 - refusedN);
    closeAll(s);
  });

  for (const transport of TRANSPORTS) {
    it(`a publish over max_publish_bytes gets an error ack over ${transport}, and is not delivered`, async () => {
      const s = await connect(node.url, "/", { transport });
      const other = await connect(node.url, "/", { transport });
      const big = await ack(s, "publish", { event: "big", data: "x".repeat(100 * 1024) });
      assert.equal(big.limit, "max_publish_bytes");
      assert.match(big.error, /publish: .*at most 65536/);
      await fence(s, [other]);
      assert.equal(other.inbox.all("big").length, 0);
      closeAll(s, other);
    });
  }

  it("every hit is counted in /metrics by limit", async () => {
    const m = await metrics(node);
    for (const l of ["rooms_per_join", "room_name_bytes", "rooms_per_socket", "publishes_per_second", "max_publish_bytes"]) {
      assert.ok(m[`wasio_limit_hits_total{limit="${l}"}`] >= 1, `${l}: ${m[`wasio_limit_hits_total{limit="${l}"}`]}`);
    }
    assert.equal(m.wasio_auth_enabled, 0);
  });
});

describe("the default limits", () => {
  it("a 2 MB publish over WebSocket gets an error ack (default max_publish_bytes 1 MB)", async () => {
    const node = await startServer();
    try {
      const s = await connect(node.url);
      const a = await ack(s, "publish", { event: "big", data: "x".repeat(2 * 1024 * 1024) }, { timeoutMs: 10000 });
      assert.equal(a.limit, "max_publish_bytes");
      assert.match(a.error, /at most 1000000/);
      // The socket is fine afterwards.
      assert.equal((await ack(s, "publish", { event: "small", data: 1 })).ok, true);
      closeAll(s);
    } finally {
      await node.stop();
    }
  });
});

describe("limits with disconnect = true", () => {
  it("the socket gets its error ack, then is disconnected", async () => {
    const node = await startServer({ config: configText({ extra: "[server.limits]\nrooms_per_join = 2\ndisconnect = true" }) });
    try {
      const s = await connect(node.url);
      const gone = new Promise((resolve) => s.once("disconnect", resolve));
      const a = await ack(s, "join", ["a", "b", "c"]);
      assert.equal(a.limit, "rooms_per_join");
      assert.equal(await gone, "io server disconnect");
    } finally {
      await node.stop();
    }
  });
});

describe("limits re-read on SIGHUP", () => {
  it("a socket connected before the reload is held to the new [server.limits]", async () => {
    const node = await startServer({ config: configText({ extra: "[server.limits]\nrooms_per_join = 2" }), env: { RUST_LOG: "info" } });
    try {
      const s = await connect(node.url);
      assert.equal((await ack(s, "join", ["a", "b", "c"])).limit, "rooms_per_join");
      await fsp.writeFile(node.configPath, configText({ extra: "[server.limits]\nrooms_per_join = 3" }));
      const seen = (node.stderr().match(/server\.limits re-read/g) || []).length;
      process.kill(node.pid, "SIGHUP");
      await until(() => (node.stderr().match(/server\.limits re-read/g) || []).length > seen, { what: "the re-read log line" });
      assert.equal((await ack(s, "join", ["a", "b", "c"])).ok, true);
      assert.equal((await ack(s, "join", ["d", "e", "f", "g"])).limit, "rooms_per_join");
      closeAll(s);
    } finally {
      await node.stop();
    }
  });
});

describe("the token's data claims in fetchSockets, seen from a Node.js server on Redis", () => {
  let node;
  let nodeIo;
  let clients = [];
  const key = uid("auth-data");
  before(async () => {
    const extra = [`[datasources.cache]`, `connector = "redis"`, `url = ${JSON.stringify(REDIS_URL)}`, "", JWT_TABLE].join("\n");
    node = await startServer({ config: configText({ wasm: "builtin:redis", datasource: "cache", options: { key }, extra }) });
    const { Server } = require("socket.io");
    const { createAdapter } = require("@socket.io/redis-adapter");
    const { createClient } = require("redis");
    const pub = createClient({ url: REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    clients = [pub, sub];
    nodeIo = new Server();
    nodeIo.adapter(createAdapter(pub, sub, { key, requestsTimeout: 3000 }));
  });
  after(async () => {
    // No HTTP server to close (Server.close would): the adapter unsubscribes.
    if (nodeIo) await nodeIo.of("/").adapter.close();
    await Promise.all(clients.map((c) => c.quit().catch(() => {})));
    if (node) await node.stop();
  });

  it("socket.data holds the chosen claims (sub, name), not the others", async () => {
    const room = uid("who");
    const s = await connect(node.url, "/", { auth: { token: token({ join: [room] }, { name: "Alice A.", email: "a@x.test" }) } });
    await ack(s, "join", room);
    const found = await until(async () => {
      const list = await nodeIo.in(room).fetchSockets();
      return list.length === 1 ? list : null;
    }, { what: "the wasio socket in the Node.js server's fetchSockets" });
    assert.equal(found[0].id, s.id);
    assert.deepEqual(found[0].data, { sub: "alice", name: "Alice A." });
    closeAll(s);
  });
});
