// A misbehaving adapter guest (trap, endless loop, unbounded allocation) never takes the server
// down: the host stops it, re-instantiates it and keeps serving the same clients.
//
// Needs WASIO_TEST_GUESTS (a directory with faulty.wasm); skipped without it.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { guestsDir, configText } = require("../lib/server");
const { TRANSPORTS, ack, uid, safeJson } = require("../lib/client");

const dir = guestsDir();
const faulty = dir && path.join(dir, "faulty.wasm");
const skip = !dir
  ? "WASIO_TEST_GUESTS is not set (it must name the directory holding faulty.wasm)"
  : !fs.existsSync(faulty)
    ? `${faulty} does not exist (build the test guests first)`
    : false;

const MARKERS = ["__trap__", "__loop__", "__grow__"];
// What the host's log line about each fault must mention (loosely: the cause, not the wording).
const CAUSE = {
  __trap__: /trap|abort|unreachable|panic|error while executing/i,
  __loop__: /deadline|interrupt|timed? ?out|epoch|fuel/i,
  __grow__: /memory|grow|cap|limit/i,
};
const FAULT_ACK_TIMEOUT_MS = 10000; // deadline_ms is 100: a stopped guest answers long before this

describe("faulty guest", { skip }, () => {
  // Required lazily so that a skipped suite starts no server.
  const { useServer } = require("../lib/harness");
  const ctx = useServer({ config: configText({ wasm: faulty || "", deadlineMs: 100, memoryMib: 16 }) });

  it("serves normally with the faulty guest loaded", async () => {
    const [a, b] = await ctx.clients(2, "/", "websocket");
    const room = uid("r");
    await ack(b, "join", room);
    assert.deepEqual(await ack(a, "publish", { room, event: "m", data: "plain" }), { ok: true, count: 1 });
    await b.inbox.waitFor("m", (d) => d === "plain");
  });

  for (const transport of TRANSPORTS) {
    it(`survives ${MARKERS.join(", ")} over ${transport}`, async () => {
      const nsp = `/dyn/${uid("faulty")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      const room = "victims";
      await ack(a, "join", room);
      await ack(b, "join", room);

      for (const marker of MARKERS) {
        for (const [how, data] of [
          ["a string", `payload ${marker} here`],
          ["a Buffer", Buffer.from(`bin ${marker} bin`)],
        ]) {
          const logBefore = ctx.server.stderr().length;
          const t0 = Date.now();
          const res = await ack(a, "publish", { room, event: "bad", data }, { timeoutMs: FAULT_ACK_TIMEOUT_MS });
          const ms = Date.now() - t0;
          assert.ok(
            res && (res.ok === true || typeof res.error === "string"),
            `${marker} as ${how}: ack is {ok:true,...} or {error}, got ${safeJson(res)}`,
          );
          // The host delivers locally before calling the guest.
          const got = await b.inbox.waitFor("bad", (d) => (Buffer.isBuffer(d) && Buffer.isBuffer(data) ? d.equals(data) : d === data), {
            what: `local delivery of the ${marker} publish (as ${how}) to the other member`,
          });
          assert.ok(got);

          // The server is still up and still the same clients' server.
          const h = await ctx.server.health();
          assert.equal(h.status, 200, `/healthz after ${marker} (${how}, ack after ${ms} ms)`);
          assert.equal(h.json && h.json.status, "ok");
          assert.deepEqual(a.disconnects, [], `a was disconnected after ${marker}`);
          assert.deepEqual(b.disconnects, [], `b was disconnected after ${marker}`);
          assert.ok(a.connected && b.connected);

          // The host logged the fault with its cause (bounded poll: the log line may trail the ack).
          const logDeadline = Date.now() + 3000;
          const logged = () => CAUSE[marker].test(ctx.server.stderr().slice(logBefore).replace(/__(trap|loop|grow)__/g, ""));
          while (!logged() && Date.now() < logDeadline) {
            await new Promise((r) => setTimeout(r, 20));
          }
          assert.ok(logged(), `no log line matching ${CAUSE[marker]} after ${marker} (${how}); new stderr:\n${ctx.server.stderr().slice(logBefore)}`);

          // A normal publish right after is delivered, and acked ok with a count.
          const token = uid("after");
          const ok = await ack(a, "publish", { room, event: "good", data: token }, { timeoutMs: FAULT_ACK_TIMEOUT_MS });
          assert.deepEqual(ok, { ok: true, count: 2 }, `normal publish after ${marker} (${how})`);
          await a.inbox.waitFor("good", (d) => d === token);
          await b.inbox.waitFor("good", (d) => d === token);
        }
      }

      // Membership survived the guest's re-instantiations.
      const res = await ack(b, "join", "extra");
      assert.ok(res.rooms.includes(room) && res.rooms.includes("extra"), `rooms after the faults: ${res.rooms}`);
      // A socket connecting now is served too.
      const [c] = await ctx.clients(1, nsp, transport);
      await ack(c, "join", room);
      assert.deepEqual(await ack(a, "publish", { room, event: "late", data: 1 }), { ok: true, count: 3 });
      await c.inbox.waitFor("late");
    });
  }
});
