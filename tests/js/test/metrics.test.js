// Prometheus metrics and the overview on the admin listener (issue 8). Two wasio nodes, A
// and B, on the Redis guest with one key; clients on both, in `/` and `/chat`, in rooms.
// `GET /metrics` (no token) shows A's connections, namespaces and rooms, the adapter with
// its version and hash, the messages A sent to and got from Redis, the guest call latency
// histogram, the cluster requests pending, the datasource link, and the swap counters
// moving when A is swapped and when a swap is refused. `GET /admin/overview` (token) shows
// both nodes with their sockets in `/` and the server count.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, closeAll, connect, fence, uid } = require("../lib/client");
const { REDIS_URL } = require("../lib/cluster");
const { startAdminServer } = require("../lib/admin");

/** Parses the Prometheus text format: [{name, labels, value}], and the # TYPE lines. */
function parse(text) {
  const samples = [];
  const types = {};
  for (const line of text.split("\n")) {
    if (!line) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types[type[1]] = type[2];
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { samples, types };
}

/** The one sample of `name` whose labels include `labels`; fails when there is not exactly one. */
function one(parsed, name, labels = {}) {
  const found = parsed.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0].value;
}

async function scrape(node) {
  const res = await fetch(`${node.admin.base}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

describe("GET /metrics and GET /admin/overview", () => {
  const key = uid("metrics");
  let A;
  let B;
  const sockets = [];
  const inRoot = []; // the sockets of `/`
  const config = {
    wasm: "builtin:redis",
    datasource: "cache",
    options: { key },
    datasources: { cache: { connector: "redis", url: REDIS_URL } },
  };

  before(async () => {
    [A, B] = await Promise.all([startAdminServer(config), startAdminServer(config)]);
    // A: 3 sockets in `/` (rooms r1, r2; r1), 1 in `/chat` (room c); B: 2 in `/`.
    const a = await Promise.all([0, 1, 2].map(() => connect(A.url)));
    await ack(a[0], "join", ["r1", "r2"]);
    await ack(a[1], "join", "r1");
    const chat = await connect(A.url, "/chat");
    await ack(chat, "join", "c");
    const b = await Promise.all([0, 1].map(() => connect(B.url)));
    sockets.push(...a, chat, ...b);
    inRoot.push(...a, ...b);
    // A broadcast each way: A sends to Redis, then hears B's.
    await fence(a[0], [...a, ...b]);
    await fence(b[0], [...a, ...b]);
  });
  after(async () => {
    closeAll(sockets);
    await Promise.all([A, B].filter(Boolean).map((n) => n.stop()));
  });

  it("needs no token, and shows connections, namespaces, rooms and the adapter", async () => {
    const m = await scrape(A);
    assert.equal(one(m, "wasio_connections"), 4);
    assert.equal(one(m, "wasio_namespaces"), 2);
    assert.equal(one(m, "wasio_namespace_sockets", { namespace: "/" }), 3);
    assert.equal(one(m, "wasio_namespace_sockets", { namespace: "/chat" }), 1);
    assert.equal(one(m, "wasio_namespace_rooms", { namespace: "/" }), 2, "r1, r2 (own-id rooms not counted)");
    assert.equal(one(m, "wasio_namespace_rooms", { namespace: "/chat" }), 1);
    const status = await A.admin.status();
    assert.equal(
      one(m, "wasio_adapter_info", { adapter: status.name, version: status.version, sha256: status.sha256, source: "builtin:redis" }),
      1,
    );
    assert.equal(m.types.wasio_connections, "gauge");
  });

  it("counts messages to and from the backend per adapter", async () => {
    const status = await A.admin.status();
    const label = { adapter: `${status.name}@${status.version}` };
    const out = async () => one(await scrape(A), "wasio_backend_messages_total", { ...label, direction: "out" });
    const into = async () => one(await scrape(B), "wasio_backend_messages_total", { ...label, direction: "in" });
    const [out0, in0] = [await out(), await into()];
    // One broadcast from a client of A: one message from A to Redis, one from Redis to B.
    await fence(sockets[0], inRoot);
    assert.equal((await out()) - out0, 1, "A sent one message");
    assert.equal((await into()) - in0, 1, "B got one message");
    assert.equal((await scrape(A)).types.wasio_backend_messages_total, "counter");
  });

  it("has a guest call latency histogram per operation", async () => {
    const m = await scrape(A);
    assert.equal(m.types.wasio_guest_call_duration_seconds, "histogram");
    for (const op of ["broadcast", "on-message"]) {
      const buckets = m.samples.filter((s) => s.name === "wasio_guest_call_duration_seconds_bucket" && s.labels.op === op);
      assert.ok(buckets.length > 2, `buckets of ${op}`);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, "cumulative");
      assert.equal(buckets.at(-1).labels.le, "+Inf");
      const count = one(m, "wasio_guest_call_duration_seconds_count", { op });
      assert.ok(count >= 1, `${op} was called`);
      assert.equal(buckets.at(-1).value, count);
      assert.ok(one(m, "wasio_guest_call_duration_seconds_sum", { op }) > 0);
    }
  });

  it("shows faults, requests pending and the datasource link", async () => {
    const m = await scrape(A);
    for (const name of [
      "wasio_guest_traps_total",
      "wasio_guest_deadline_stops_total",
      "wasio_guest_memory_stops_total",
      "wasio_guest_reinstantiations_total",
      "wasio_dropped_messages_total",
    ]) {
      assert.equal(one(m, name), 0, name);
    }
    assert.equal(one(m, "wasio_cluster_requests_pending"), 0);
    assert.equal(one(m, "wasio_datasource_connected", { datasource: "cache", connector: "redis" }), 1);
    assert.equal(one(m, "wasio_datasource_reconnects_total", { datasource: "cache" }), 0);
  });

  it("the overview shows both nodes with their sockets and the server count", async () => {
    const r = await A.admin.request("GET", "/admin/overview");
    assert.equal(r.status, 200, r.body);
    const o = r.json;
    assert.equal(o.connections, 4);
    assert.equal(o.cluster.server_count, 2);
    const [a, b] = [(await fetchHealth(A)).node_id, (await fetchHealth(B)).node_id];
    assert.equal(o.node_id, a);
    // One entry per node answering a fetchSockets in `/`, this node first. The classic
    // Redis protocol's answers carry no node id.
    assert.deepEqual(o.cluster.nodes[0], { node_id: a, self: true, sockets: 3 });
    assert.equal(o.cluster.nodes.length, 2, JSON.stringify(o.cluster));
    assert.equal(o.cluster.nodes[1].sockets, 2);
    assert.equal(o.cluster.nodes[1].self, false);
    assert.ok([null, b].includes(o.cluster.nodes[1].node_id));
    assert.deepEqual(
      o.namespaces.map((n) => [n.name, n.sockets, n.rooms]),
      [["/", 3, 2], ["/chat", 1, 1]],
    );
    assert.equal(o.adapter.sha256, (await A.admin.status()).sha256);
    assert.ok(Array.isArray(o.history));
    const unauthorised = await fetch(`${A.admin.base}/admin/overview`, { signal: AbortSignal.timeout(5000) });
    assert.equal(unauthorised.status, 401);
  });

  it("counts swaps and refused swaps", async () => {
    const swapped = await A.admin.swap({ wasm: "builtin:redis", options: { key } });
    assert.equal(swapped.status, 200, swapped.body);
    const refused = await A.admin.swap({ wasm: "/no/such/file.wasm" });
    assert.equal(refused.status, 422, refused.body);
    const m = await scrape(A);
    assert.equal(one(m, "wasio_swaps_total"), 1);
    assert.equal(one(m, "wasio_failed_swaps_total"), 1);
  });
});

async function fetchHealth(node) {
  const res = await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(5000) });
  return res.json();
}
