// Graceful shutdown of `wasio serve` on SIGTERM, and its JSON logs.
//
// Node A is `wasio serve` (builtin:redis, classic, `--log-format json` through
// WASIO_LOG_FORMAT); node B is a wasio test node on the same key, whose /ops namespace
// makes cluster requests (fetchSockets, serverCount). A gets SIGTERM with a client on each
// transport and a burst of publishes just acked. Expected: A's clients are told at once
// (not at the ping timeout), the burst reaches B's client, A exits 0 within
// server.shutdown_timeout_ms, and A has left the cluster by then: Redis no longer counts
// its subscription and B's requests complete without waiting for A.
//
// Not asserted here: /healthz answering 503 while draining. The listener stops accepting
// in the same step, so no new request can observe it deterministically from outside
// (host/src/shutdown.rs has a unit test of it instead).
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { createClient } = require("redis");
const { ack, closeAll, connect, uid, withTimeout, safeJson } = require("../lib/client");
const { configText, startServer } = require("../lib/server");
const { REDIS_URL, startNode, waitServerCount } = require("../lib/cluster");

const T = 2000; // requestsTimeout of both nodes, ms
// Below lib/server.js's SIGKILL at 5 s: a drain that does not finish shows as exit code 1.
const SHUTDOWN_TIMEOUT_MS = 3000;
// socket.io's ping interval + timeout (25 s + 20 s): without being told, a client notices
// a vanished server only then.
const TOLD_WITHIN_MS = 2000;
const BURST = 1000;

/** Every line of `text` as JSON; throws naming the first line that is not. */
function jsonLines(text) {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((line, i) => {
      try {
        return JSON.parse(line);
      } catch (err) {
        throw new Error(`stderr line ${i + 1} is not JSON (${err.message}): ${line}`);
      }
    });
}

/** Resolves with the reason and time of `socket`'s next disconnect. */
function nextDisconnect(socket) {
  return new Promise((resolve) => socket.once("disconnect", (reason) => resolve({ reason, at: Date.now() })));
}

describe("graceful shutdown (SIGTERM) on redis classic", () => {
  const key = uid("shutdown");
  let A;
  let B;
  let redis;
  let clients = [];

  before(async () => {
    redis = createClient({ url: REDIS_URL });
    await redis.connect();
    B = await startNode({ role: "wasio", name: "B", mode: "classic", key, requestsTimeout: T, redisUrl: REDIS_URL, namespaces: ["/"] });
    A = await startServer({
      config: configText({
        wasm: "builtin:redis",
        datasource: "cache",
        options: { key, requestsTimeout: T },
        datasources: { cache: { connector: "redis", url: REDIS_URL } },
        // 1000 publishes from one socket as fast as acks come back: over the default
        // per-socket rate, which is not what this test is about.
        extra: "[server.limits]\npublishes_per_second = 0",
      }),
      env: {
        WASIO_LOG_FORMAT: "json",
        WASIO_SERVER__SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
        // The shutdown steps are info lines of wasio::shutdown: kept whatever RUST_LOG says.
        RUST_LOG: process.env.RUST_LOG ? `${process.env.RUST_LOG},wasio=info` : "info",
      },
    });
    await waitServerCount([B], 2, ["/"]);
  });

  after(async () => {
    closeAll(clients);
    if (A) await A.stop();
    if (B) await B.stop();
    if (redis) await redis.quit();
  });

  it("logs one JSON object a line, the listening line with timestamp, level, target and fields", async () => {
    const lines = jsonLines(A.stderr());
    const listening = lines.find((l) => l.fields && /^wasio listening on http:\/\//.test(l.fields.message));
    assert.ok(listening, `a "wasio listening" line among ${safeJson(lines.map((l) => l.fields && l.fields.message))}`);
    assert.equal(listening.level, "INFO");
    assert.equal(listening.target, "wasio::cli");
    assert.ok(!Number.isNaN(Date.parse(listening.timestamp)), `timestamp ${listening.timestamp} is a date`);
    assert.match(listening.fields.message, new RegExp(`:${A.port}$`));
    const health = await A.health();
    assert.equal(listening.fields.adapter, health.json.adapter.name);
    assert.equal(listening.fields.version, health.json.adapter.version);
    assert.equal(listening.fields.source, health.json.adapter.source);
  });

  it("SIGTERM: clients told at once, publishes just acked delivered, exit 0, peers stop counting the node at once", async () => {
    const room = uid("room");
    const aWs = await connect(A.url, "/", { transport: "websocket" });
    const aPoll = await connect(A.url, "/", { transport: "polling" });
    const b = await connect(B.url, "/", { transport: "websocket" });
    clients = [aWs, aPoll, b];
    const aIds = [aWs.id, aPoll.id];
    // The polling client stays out of the room: idle, it always has a long-poll pending,
    // which carries the close. (A busy one may be between polls, and its next request
    // finds the session gone: "transport error". It reconnects all the same.)
    for (const s of [aWs, b]) assert.equal((await ack(s, "join", room)).ok, true);
    const requestChannel = `${key}-request#/#`;
    assert.equal((await redis.pubSubNumSub(requestChannel))[requestChannel], 2, "both nodes subscribed before");

    const told = [aWs, aPoll].map(nextDisconnect);
    // A burst just acked by A (each publish handed to its adapter), then the signal: none of
    // it may be lost to the shutdown.
    const acks = await Promise.all(
      Array.from({ length: BURST }, (_, i) => ack(aWs, "publish", { room, event: "burst", data: i })),
    );
    assert.deepEqual(acks.filter((a) => a.ok !== true), [], "every publish acked ok");
    const signalled = Date.now();
    const stopped = A.stop(); // SIGTERM (SIGKILL after 5 s)

    const [ws, poll] = await withTimeout(Promise.all(told), TOLD_WITHIN_MS + 1000, "A's clients to be disconnected");
    for (const [name, d] of [
      ["websocket", ws],
      ["polling", poll],
    ]) {
      assert.equal(d.reason, "transport close", `${name} client's disconnect reason`);
      assert.ok(d.at - signalled < TOLD_WITHIN_MS, `${name} client told within ${TOLD_WITHIN_MS} ms: ${d.at - signalled} ms`);
    }

    const exit = await stopped;
    const tookMs = Date.now() - signalled;
    assert.deepEqual(
      { code: exit.code, signal: exit.signal },
      { code: 0, signal: null },
      `A exits 0 by itself; stderr:\n${exit.stderr}`,
    );
    assert.ok(tookMs < SHUTDOWN_TIMEOUT_MS, `A exits within the bound: ${tookMs} ms`);

    // Asked once, right after the exit (no polling): A's subscriptions are gone already.
    assert.equal((await redis.pubSubNumSub(requestChannel))[requestChannel], 1, "A's subscription is gone on exit");
    // So B's requests do not wait for A (they would until requestsTimeout if counted).
    const count = await B.op("serverCount", { nsp: "/" });
    assert.equal(count.count, 1, `B's serverCount: ${safeJson(count)}`);
    const started = Date.now();
    const fs = await B.op("fetchSockets", { nsp: "/", timeoutMs: T });
    const fsMs = Date.now() - started;
    assert.equal(fs.ok, true, `B's fetchSockets: ${safeJson(fs)}`);
    assert.ok(fsMs < T / 2, `B's fetchSockets does not wait for A: ${fsMs} ms`);
    const ids = fs.sockets.map((s) => s.id);
    assert.ok(ids.includes(b.id), "B's own client is there");
    assert.deepEqual(ids.filter((id) => aIds.includes(id)), [], "no socket of A");

    // The whole burst reached B's client, in order.
    const got = await b.inbox.waitForCount("burst", BURST);
    assert.deepEqual(
      got.map((r) => r.args[0]),
      Array.from({ length: BURST }, (_, i) => i),
    );

    // Every step logged, in order, as JSON.
    const steps = jsonLines(exit.stderr)
      .filter((l) => l.target === "wasio::shutdown")
      .map((l) => l.fields.message);
    const expected = [
      /^shutdown: draining/,
      /^shutdown: \/healthz answers 503/,
      /^shutdown: listeners stop accepting/,
      /^shutdown: client connections closed/,
      /^shutdown: HTTP server stopped/,
      /^shutdown: adapter closed/,
      /^shutdown: done/,
    ];
    assert.equal(steps.length, expected.length, `shutdown steps: ${safeJson(steps)}`);
    expected.forEach((re, i) => assert.match(steps[i], re));
    const closed = jsonLines(exit.stderr).find((l) => /^shutdown: client connections closed/.test(l.fields.message));
    assert.equal(closed.fields.sockets, 2, "both of A's sockets counted");
  });
});
