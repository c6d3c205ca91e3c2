// A policy component on `wasio serve` (issue 19), through real socket.io clients: its
// denials reach the client (connect_error, `{error}` acks) and change nothing; a policy
// that traps or loops is a counted denial and the server carries on; a hot swap of the
// policy under load loses no publish; the starting projects in Rust, Python and JS
// (`wasio policy new`) allow and deny as they say.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { ack, closeAll, connect, fence, refused, roomsOf, uid } = require("../lib/client");
const { guestsDir } = require("../lib/server");
const { startAdminServer } = require("../lib/admin");

/** A compiled guest of WASIO_TEST_GUESTS; fails (never skips) when it is missing. */
function guest(file) {
  const dir = guestsDir();
  assert.ok(dir, "WASIO_TEST_GUESTS is not set (tests/run sets it)");
  const p = path.resolve(dir, file);
  assert.ok(fs.existsSync(p), `${p} is missing: tests/run builds it`);
  return p;
}

/** `[auth] policy` with `options` as `[auth.policy_options]` (JSON values are TOML values). */
function policyTable(wasm, options = {}) {
  const lines = ["[auth]", `policy = ${JSON.stringify(wasm)}`, "[auth.policy_options]"];
  for (const [k, v] of Object.entries(options)) lines.push(`${k} = ${JSON.stringify(v)}`);
  return lines.join("\n");
}

async function metric(node, sample) {
  const res = await fetch(`${node.admin.base}/metrics`, { signal: AbortSignal.timeout(5000) });
  const line = (await res.text()).split("\n").find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : undefined;
}

describe("a policy component (the test double policy-test)", () => {
  let node;
  before(async () => {
    const extra = policyTable(guest("policy_test.wasm"), { deny_rooms: ["closed"], deny_namespaces: ["/chat"] });
    node = await startAdminServer({ extra, deadlineMs: 100 });
  });
  after(() => node && node.stop());

  it("its denials reach the client and change nothing", async () => {
    assert.match(await refused(node.url, "/chat"), /^forbidden: namespace \/chat is closed$/);
    const s = await connect(node.url);
    assert.equal((await ack(s, "join", "open")).ok, true);
    const no = await ack(s, "join", ["open2", "closed"]);
    assert.equal(no.error, "join: forbidden: room `closed` is closed");
    assert.deepEqual(await roomsOf(s), ["open"]);
    const pub = await ack(s, "publish", { room: "closed", event: "e", data: 1 });
    assert.equal(pub.error, "publish: forbidden: room `closed` is closed");
    closeAll(s);
    assert.ok((await metric(node, 'wasio_auth_denied_total{stage="join",by="policy"}')) >= 1);
    assert.ok((await metric(node, 'wasio_auth_denied_total{stage="connect",by="policy"}')) >= 1);
    assert.equal(await metric(node, "wasio_auth_enabled"), 1);
  });

  it("a policy that traps or loops: a counted denial, a fresh instance, the server fine", async () => {
    const faults = await metric(node, "wasio_policy_faults_total");
    const s = await connect(node.url);
    const trap = await ack(s, "join", "__trap__");
    assert.match(trap.error, /^join: forbidden: /);
    const loop = await ack(s, "join", "__loop__", { timeoutMs: 10000 });
    assert.match(loop.error, /^join: forbidden: /);
    // A fresh instance answers the next question: it has counted one call.
    assert.equal((await ack(s, "join", "__count__")).error, "join: forbidden: calls=1");
    assert.equal((await ack(s, "join", "fine")).ok, true);
    assert.equal(await metric(node, "wasio_policy_faults_total"), faults + 2);
    const other = await connect(node.url);
    closeAll(s, other);
  });

  it("a hot swap of the policy under load: every publish answered, the allowed ones all delivered in order", async () => {
    const room = uid("load");
    const rx = await connect(node.url);
    await ack(rx, "join", room);
    const writers = await Promise.all([0, 1, 2].map(() => connect(node.url)));
    let running = true;
    const sent = writers.map(() => []);
    const loops = writers.map(async (w, i) => {
      for (let n = 0; running; n++) {
        const a = await ack(w, "publish", { room, event: "n", data: [i, n] }, { timeoutMs: 10000 });
        assert.equal(a.ok, true, `publish ${i}/${n}: ${JSON.stringify(a)}`);
        sent[i].push(n);
        // The default limit (100 publishes/s per socket) is not what this test is about.
        if (n % 50 === 49) await new Promise((r) => setTimeout(r, 550));
      }
    });
    const wasm = guest("policy_test.wasm");
    for (let k = 0; k < 6; k++) {
      const options = { deny_rooms: ["closed", `other-${k}`], deny_namespaces: ["/chat"], version: `0.0.${k}` };
      const r = await node.admin.request("POST", "/admin/policy", { body: JSON.stringify({ wasm, options }), contentType: "application/json" });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json.version, `0.0.${k}`);
    }
    running = false;
    await Promise.all(loops);
    await fence(writers[0], [rx]);
    for (let i = 0; i < writers.length; i++) {
      const got = rx.inbox.data("n").filter(([w]) => w === i).map(([, n]) => n);
      assert.deepEqual(got, sent[i], `writer ${i}`);
    }
    assert.ok(sent.every((s) => s.length > 0));
    assert.equal(await metric(node, "wasio_policy_swaps_total"), 6);
    // The last one answers: its rule is there.
    const s = await connect(node.url);
    assert.equal((await ack(s, "join", "other-5")).error, "join: forbidden: room `other-5` is closed");
    closeAll(rx, s, ...writers);
  });
});

// The starting projects of `wasio policy new` (guest-adapters/policy-*): one example
// policy in three languages, driven by the same options.
const LANGS = [
  ["rust", "policy_rust.wasm"],
  ["python", "policy_python.wasm"],
  ["js", "policy_js.wasm"],
];
for (const [lang, file] of LANGS) {
  describe(`the ${lang} starting policy`, () => {
    let node;
    before(async () => {
      const options = { require: "user", deny_rooms: ["secret*", "ops"], deny_events: ["forbidden"] };
      node = await startAdminServer({ extra: policyTable(guest(file), options), deadlineMs: 1000 });
    });
    after(() => node && node.stop());

    it("allows and denies connects, joins and publishes as its options say", async () => {
      assert.match(await refused(node.url, "/"), /^forbidden: auth\.user is missing$/);
      const s = await connect(node.url, "/", { auth: { user: "ann" } });
      assert.equal((await ack(s, "join", ["lobby", "opsroom"])).ok, true);
      assert.equal((await ack(s, "join", ["lobby", "secret-1"])).error, "join: forbidden: room secret-1 is reserved");
      assert.equal((await ack(s, "join", "ops")).error, "join: forbidden: room ops is reserved");
      assert.deepEqual(await roomsOf(s), ["lobby", "opsroom"]);
      assert.equal((await ack(s, "publish", { room: "lobby", event: "hello", data: 1 })).ok, true);
      assert.equal((await ack(s, "publish", { room: "lobby", event: "forbidden", data: 1 })).error, "publish: forbidden: event forbidden is not allowed");
      assert.equal((await ack(s, "publish", { room: "secretive", event: "hello" })).error, "publish: forbidden: room secretive is reserved");
      await fence(s, [s]);
      assert.deepEqual(s.inbox.data("hello"), [1]);
      assert.equal(s.inbox.all("forbidden").length, 0);
      closeAll(s);
    });
  });
}
