// One socket's events are handled in the order it sent them, as socket.io guarantees: a publish
// sent right after a join sees the join, and a receiver gets one sender's publishes in order.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, uid, fence } = require("../lib/client");

const ctx = useServer();
const ROUNDS = 30;

for (const transport of TRANSPORTS) {
  describe(`ordering over ${transport}`, () => {
    it("a publish emitted right after a join (no wait for its ack) sees the join", async () => {
      const nsp = `/dyn/${uid("order")}`;
      const s = await ctx.connect(nsp, transport);
      const bad = [];
      for (let k = 0; k < ROUNDS; k++) {
        const room = `r${k}`;
        const [joined, published] = await Promise.all([
          ack(s, "join", room),
          ack(s, "publish", { room, event: "echo", data: k }),
        ]);
        assert.equal(joined.ok, true);
        if (published.count !== 1) bad.push(`round ${k}: publish ack ${JSON.stringify(published)}`);
      }
      assert.deepEqual(bad, [], `publish handled before the join it followed, in ${bad.length}/${ROUNDS} rounds`);
      await s.inbox.waitForCount("echo", ROUNDS);
    });

    it("a publish emitted right after a leave (no wait for its ack) sees the leave", async () => {
      const nsp = `/dyn/${uid("order")}`;
      const [s, t] = await ctx.clients(2, nsp, transport);
      const rooms = Array.from({ length: ROUNDS }, (_, k) => `r${k}`);
      await ack(s, "join", rooms);
      const bad = [];
      for (const room of rooms) {
        const [, published] = await Promise.all([
          ack(s, "leave", room),
          ack(s, "publish", { room, event: "echo", data: room }),
        ]);
        if (published.count !== 0) bad.push(`${room}: publish ack ${JSON.stringify(published)}`);
      }
      await fence(t, [s]);
      assert.deepEqual(bad, [], `publish handled before the leave it followed, in ${bad.length}/${ROUNDS} rounds`);
      assert.deepEqual(s.inbox.data("echo"), []);
    });

    it("one sender's publishes reach a receiver in the order they were sent", async () => {
      const nsp = `/dyn/${uid("order")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      const n = 50;
      const acks = await Promise.all(
        Array.from({ length: n }, (_, i) => ack(a, "publish", { room: "r", event: "seq", data: i })),
      );
      for (const r of acks) assert.deepEqual(r, { ok: true, count: 1 });
      const got = (await b.inbox.waitForCount("seq", n)).map((r) => r.args[0]);
      assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
    });
  });
}
