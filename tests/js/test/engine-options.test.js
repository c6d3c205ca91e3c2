// Engine.IO settings from [server]: ping_interval_ms, ping_timeout_ms, connect_timeout_ms,
// path and transports reach real socket.io-client / engine.io-client connections; the
// defaults are socket.io's.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { Socket: EngineSocket } = require("engine.io-client");
const { startServer, configText, httpGet } = require("../lib/server");
const { withTimeout } = require("../lib/client");

/** Resolves with the socket once connected, rejects with the connect_error. */
function connectWith(url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
  const outcome = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => {
      socket.close();
      reject(err);
    });
  });
  return withTimeout(outcome, 8000, `connect with ${JSON.stringify(opts)}`);
}

/** The Engine.IO handshake an engine.io-client gets (its `handshake` event), then closes. */
async function handshake(url, opts) {
  const engine = new EngineSocket(url, opts);
  try {
    return await withTimeout(new Promise((resolve) => engine.once("handshake", resolve)), 5000, "the handshake");
  } finally {
    engine.close();
  }
}

describe("engine options", () => {
  let server;
  before(async () => {
    server = await startServer({
      config: configText({
        server: {
          ping_interval_ms: 1500,
          ping_timeout_ms: 700,
          connect_timeout_ms: 400,
          path: "/rt/",
          transports: ["websocket"],
        },
      }),
    });
  });
  after(async () => {
    if (server) await server.stop();
  });

  it("the handshake carries ping_interval_ms and ping_timeout_ms", async () => {
    const shake = await handshake(server.url, { path: "/rt/", transports: ["websocket"] });
    assert.equal(shake.pingInterval, 1500);
    assert.equal(shake.pingTimeout, 700);
    const socket = await connectWith(server.url, { path: "/rt/", transports: ["websocket"] });
    try {
      // Pings come at the interval: one arrives well within two intervals.
      const pinged = new Promise((resolve) => socket.io.engine.once("ping", resolve));
      await withTimeout(pinged, 3000, "a ping within 2 × 1500 ms");
    } finally {
      socket.close();
    }
  });

  it("only the configured path is served", async () => {
    const res = await httpGet(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.ok(!res.body.startsWith("0{"), `the default path answered an Engine.IO handshake: ${res.status} ${res.body}`);
    await assert.rejects(connectWith(server.url, { transports: ["websocket"] }), "a client on the default path does not connect");
  });

  it("a transport not in `transports` is refused", async () => {
    await assert.rejects(
      connectWith(server.url, { path: "/rt/", transports: ["polling"] }),
      "a polling client does not connect when only websocket is allowed",
    );
  });

  it("a connection that joins no namespace is closed after connect_timeout_ms", async () => {
    // Engine.IO alone: it opens, then never sends the Socket.IO CONNECT packet.
    const engine = new EngineSocket(server.url, { path: "/rt/", transports: ["websocket"] });
    const opened = new Promise((resolve) => engine.once("open", () => resolve(Date.now())));
    const closed = new Promise((resolve) => engine.once("close", () => resolve(Date.now())));
    const openedAt = await withTimeout(opened, 5000, "engine open");
    const closedAt = await withTimeout(closed, 5000, "closed by the server (the default would wait 45 s)");
    assert.ok(closedAt - openedAt >= 300, `closed after ${closedAt - openedAt} ms, before connect_timeout_ms`);
  });
});

describe("engine defaults", () => {
  let server;
  before(async () => {
    server = await startServer({ config: configText() });
  });
  after(async () => {
    if (server) await server.stop();
  });

  it("are socket.io's: ping every 25 s, 20 s to answer, /socket.io/, both transports", async () => {
    for (const transport of ["polling", "websocket"]) {
      // engine.io-client alone defaults to /engine.io/; socket.io-client to /socket.io/.
      const shake = await handshake(server.url, { path: "/socket.io/", transports: [transport] });
      assert.equal(shake.pingInterval, 25000);
      assert.equal(shake.pingTimeout, 20000);
      const socket = await connectWith(server.url, { transports: [transport] });
      socket.close();
    }
  });
});
