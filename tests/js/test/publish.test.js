// The HTTP publish API (issue 8): `POST /api/publish` with an API key emits to clients of
// the whole cluster. Cluster W1 + W2 (wasio) and N1 (Node.js socket.io + redis-adapter) on
// Redis; the key is given to the wasio nodes as WASIO_SERVER__API_KEY. A request to W2
// reaches exactly the members of its room on every node (N1's included), honours `except`
// and the namespace; a wrong or missing key, a bad body and an unknown namespace are
// refused with a status and a message, and deliver nothing. A node without a key answers
// 404 saying how to turn the API on.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, expectNothingElse, fence, uid } = require("../lib/client");
const { startCluster } = require("../lib/cluster");
const { configText, startServer } = require("../lib/server");

const KEY = `k-${uid("api")}`;

/** POST `body` (an object, or a raw string) to `base`/api/publish with `headers`. */
async function publish(base, body, headers = { authorization: `Bearer ${KEY}` }) {
  const res = await fetch(`${base}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON: the assertions say so */
  }
  return { status: res.status, json, text };
}

describe("POST /api/publish", () => {
  let c;
  let W2;
  const s = {}; // name → socket
  const room = uid("news");
  const vip = uid("vip");

  before(async () => {
    process.env.WASIO_SERVER__API_KEY = KEY;
    try {
      c = await startCluster({ wasio: 2, node: 1, mode: "classic", namespaces: ["/", "/chat"] });
    } finally {
      delete process.env.WASIO_SERVER__API_KEY;
    }
    const [W1, W2_, N1] = [c.byName.W1, c.byName.W2, c.byName.N1];
    W2 = W2_;
    // Members of `room` on every node, one of them also in `vip`; one outsider per node.
    for (const [name, node] of [["w1", W1], ["w2", W2], ["n1", N1]]) {
      s[name] = await c.connect(node);
      await ack(s[name], "join", room);
      s[`${name}out`] = await c.connect(node);
    }
    await ack(s.w1, "join", vip);
    s.chat = await c.connect(W1, "/chat");
    await ack(s.chat, "join", room);
  });
  after(async () => {
    if (c) await c.stopChecked();
  });

  const members = () => [s.w1, s.w2, s.n1];
  const outsiders = () => [s.w1out, s.w2out, s.n1out];
  /** Fences `/` and `/chat`: what was delivered before has arrived. */
  async function settle() {
    await fence(s.w1, [...members(), ...outsiders()]);
    const token = uid("chat-fence");
    assert.equal((await publish(W2.url, { namespace: "/chat", event: "__fence", data: token })).status, 200);
    await s.chat.inbox.waitFor("__fence", (d) => d === token);
  }

  it("reaches the room's members on every node, Node.js included, and no one else", async () => {
    const data = { title: "héllo", n: 1 };
    const r = await publish(W2.url, { room, event: "headline", data });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, true);
    assert.equal(r.json.local_count, 1, "W2 has one member of the room");
    for (const m of members()) {
      const got = await m.inbox.waitFor("headline", (d) => d && d.n === 1);
      assert.deepEqual(got.args, [data]);
    }
    await expectNothingElse(s.w1, outsiders());
    await settle();
    assert.equal(s.chat.inbox.all("headline").length, 0, "not in another namespace");
    for (const m of members()) assert.equal(m.inbox.all("headline").length, 1, "exactly once");
  });

  it("honours `except` and the namespace, and sends no argument when `data` is absent", async () => {
    const r = await publish(W2.url, { room, except: [vip], event: "no-vip" });
    assert.equal(r.status, 200, r.text);
    for (const m of [s.w2, s.n1]) {
      const got = await m.inbox.waitFor("no-vip");
      assert.deepEqual(got.args, [], "no data: no argument");
    }
    const chat = await publish(W2.url, { namespace: "/chat", room, event: "in-chat", data: 7 });
    assert.equal(chat.status, 200, chat.text);
    assert.deepEqual((await s.chat.inbox.waitFor("in-chat")).args, [7]);
    await settle();
    assert.equal(s.w1.inbox.all("no-vip").length, 0, "the vip member was left out");
    for (const o of [...outsiders(), s.chat]) assert.equal(o.inbox.all("no-vip").length, 0, "not to outsiders");
    for (const m of [s.w1, s.w2, s.n1, ...outsiders()]) assert.equal(m.inbox.all("in-chat").length, 0, "not in /");
  });

  it("takes the key as X-API-Key too, and a broadcast to everyone", async () => {
    const r = await publish(W2.url, { event: "to-all", data: "x" }, { "x-api-key": KEY });
    assert.equal(r.status, 200, r.text);
    for (const m of [...members(), s.w1out, s.w2out, s.n1out]) await m.inbox.waitFor("to-all");
  });

  it("refuses a wrong or missing key, a bad body, a reserved event and an unknown namespace, delivering nothing", async () => {
    const cases = [
      [{ room, event: "refused" }, { authorization: "Bearer wrong" }, 401, /API key/],
      [{ room, event: "refused" }, {}, 401, /API key/],
      ["{not json", undefined, 400, /request body/],
      [{ room }, undefined, 400, /event/],
      [{ room, event: "refused", rooom: 1 }, undefined, 400, /unknown field `rooom`/],
      [{ room: [], event: "refused" }, undefined, 400, /`room` must be a non-empty/],
      [{ room, event: "connect" }, undefined, 400, /reserved/],
      [{ namespace: "/nope", event: "refused" }, undefined, 404, /no namespace `\/nope`/],
    ];
    for (const [body, headers, status, message] of cases) {
      const r = await publish(W2.url, body, headers);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.json.error, message);
    }
    await settle();
    for (const m of [...members(), ...outsiders(), s.chat]) assert.equal(m.inbox.all("refused").length, 0);
  });

  it("is off, with a 404 saying how to turn it on, on a node without a key", async () => {
    const plain = await startServer({ config: configText() });
    try {
      const r = await publish(plain.url, { event: "x" });
      assert.equal(r.status, 404, r.text);
      assert.match(r.json.error, /server\.api_key/);
    } finally {
      await plain.stop();
    }
  });
});
