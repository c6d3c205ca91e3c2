// join / leave / publish: acks, room membership, targeting, counts — over both transports.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, uid, userRooms, expectNothingElse, fence } = require("../lib/client");

const ctx = useServer();

function sorted(a) {
  return [...a].sort();
}

for (const transport of TRANSPORTS) {
  describe(`rooms over ${transport}`, () => {
    it("join and leave ack with the socket's sorted rooms", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const s = await ctx.connect(nsp, transport);

      let res = await ack(s, "join", "b");
      assert.equal(res.ok, true, `join "b" ack: ${JSON.stringify(res)}`);
      assert.ok(Array.isArray(res.rooms), "ack.rooms is an array");
      assert.deepEqual(userRooms(res, s), ["b"]);

      res = await ack(s, "join", ["c", "a"]);
      assert.equal(res.ok, true);
      assert.deepEqual(res.rooms, sorted(res.rooms), "ack.rooms is sorted");
      assert.deepEqual(userRooms(res, s), ["a", "b", "c"]);

      res = await ack(s, "join", "a"); // joining twice is harmless
      assert.deepEqual(userRooms(res, s), ["a", "b", "c"]);

      res = await ack(s, "leave", "b");
      assert.equal(res.ok, true);
      assert.deepEqual(userRooms(res, s), ["a", "c"]);

      res = await ack(s, "leave", ["a", "c"]);
      assert.equal(res.ok, true);
      assert.deepEqual(userRooms(res, s), []);

      res = await ack(s, "leave", "never-joined");
      assert.equal(res.ok, true, `leaving a room one is not in is not an error: ${JSON.stringify(res)}`);
      assert.deepEqual(userRooms(res, s), []);
    });

    it("rooms belong to one socket", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(a, "join", ["x", "y"]);
      const res = await ack(b, "join", "z");
      assert.deepEqual(userRooms(res, b), ["z"]);
    });

    it("publish to a room reaches its members only, and counts them", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b, c] = await ctx.clients(3, nsp, transport);
      await ack(a, "join", "r");
      await ack(b, "join", "r");

      // From a non-member.
      let res = await ack(c, "publish", { room: "r", event: "msg", data: { n: 1, s: "héllo" } });
      assert.deepEqual(res, { ok: true, count: 2 });
      for (const s of [a, b]) {
        const rec = await s.inbox.waitFor("msg", (d) => d && d.n === 1);
        assert.deepEqual(rec.args, [{ n: 1, s: "héllo" }], "the event carries exactly one argument, `data`");
      }

      // From a member: the sender is one of the members, and gets it too.
      res = await ack(a, "publish", { room: "r", event: "msg", data: { n: 2 } });
      assert.deepEqual(res, { ok: true, count: 2 });
      await a.inbox.waitFor("msg", (d) => d && d.n === 2);
      await b.inbox.waitFor("msg", (d) => d && d.n === 2);

      await fence(c, [a, b, c]);
      assert.deepEqual(c.inbox.data("msg"), [], "the non-member got nothing");
      assert.deepEqual(a.inbox.data("msg"), [{ n: 1, s: "héllo" }, { n: 2 }]);
      assert.deepEqual(b.inbox.data("msg"), [{ n: 1, s: "héllo" }, { n: 2 }]);
    });

    it("exceptSelf excludes the sender and nobody else", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b, c] = await ctx.clients(3, nsp, transport);
      await ack(a, "join", "r");
      await ack(b, "join", "r");
      await ack(c, "join", "r");

      const res = await ack(a, "publish", { room: "r", event: "msg", data: "hi", exceptSelf: true });
      assert.deepEqual(res, { ok: true, count: 2 });
      await b.inbox.waitFor("msg", (d) => d === "hi");
      await c.inbox.waitFor("msg", (d) => d === "hi");
      await expectNothingElse(b, [a]);
      assert.deepEqual(a.inbox.data("msg"), [], "the sender did not get its own message");
    });

    it("publish to several rooms delivers once to a socket in more than one of them", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b, c, d, e] = await ctx.clients(5, nsp, transport);
      await ack(a, "join", ["r1", "r2"]);
      await ack(b, "join", "r2");
      await ack(c, "join", "r3");
      await ack(d, "join", "other");

      const res = await ack(e, "publish", { room: ["r1", "r2", "r3"], event: "multi", data: 7 });
      assert.deepEqual(res, { ok: true, count: 3 });
      await fence(e, [a, b, c, d, e]);
      assert.deepEqual(a.inbox.data("multi"), [7], "a (in r1 and r2) got it exactly once");
      assert.deepEqual(b.inbox.data("multi"), [7]);
      assert.deepEqual(c.inbox.data("multi"), [7]);
      assert.deepEqual(d.inbox.data("multi"), [], "d is in none of the rooms");
      assert.deepEqual(e.inbox.data("multi"), [], "e (the sender) is in none of the rooms");

      // exceptSelf with several rooms.
      const res2 = await ack(a, "publish", { room: ["r1", "r2"], event: "multi2", data: 8, exceptSelf: true });
      assert.deepEqual(res2, { ok: true, count: 1 });
      await fence(e, [a, b, c]);
      assert.deepEqual(a.inbox.data("multi2"), []);
      assert.deepEqual(b.inbox.data("multi2"), [8]);
      assert.deepEqual(c.inbox.data("multi2"), []);
    });

    it("publish without a room reaches every socket of the namespace", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b, c] = await ctx.clients(3, nsp, transport);
      await ack(b, "join", "somewhere");

      let res = await ack(a, "publish", { event: "all", data: [1, "two", null, true] });
      assert.deepEqual(res, { ok: true, count: 3 });
      for (const s of [a, b, c]) await s.inbox.waitFor("all");
      for (const s of [a, b, c]) assert.deepEqual(s.inbox.data("all"), [[1, "two", null, true]]);

      res = await ack(a, "publish", { event: "all2", data: "x", exceptSelf: true });
      assert.deepEqual(res, { ok: true, count: 2 });
      await fence(b, [a, b, c]);
      assert.deepEqual(a.inbox.data("all2"), []);
      assert.deepEqual(b.inbox.data("all2"), ["x"]);
      assert.deepEqual(c.inbox.data("all2"), ["x"]);
    });

    it("a socket that left a room no longer gets its messages", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(a, "join", ["r", "s"]);
      let res = await ack(b, "publish", { room: "r", event: "m", data: 1 });
      assert.deepEqual(res, { ok: true, count: 1 });
      await a.inbox.waitFor("m", (d) => d === 1);

      await ack(a, "leave", "r");
      res = await ack(b, "publish", { room: "r", event: "m", data: 2 });
      assert.deepEqual(res, { ok: true, count: 0 });
      res = await ack(b, "publish", { room: "s", event: "m", data: 3 });
      assert.deepEqual(res, { ok: true, count: 1 }, "still in s");
      await a.inbox.waitFor("m", (d) => d === 3);
      assert.deepEqual(a.inbox.data("m"), [1, 3]);
    });

    it("a disconnected socket is no longer counted", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b, c] = await ctx.clients(3, nsp, transport);
      await ack(a, "join", "r");
      await ack(b, "join", "r");
      assert.deepEqual(await ack(c, "publish", { room: "r", event: "m" }), { ok: true, count: 2 });
      const gone = b.id;
      b.disconnect();
      // The server learns of it asynchronously: poll the count, bounded.
      const deadline = Date.now() + 5000;
      let count;
      while (Date.now() < deadline) {
        ({ count } = await ack(c, "publish", { room: "r", event: "m" }));
        if (count === 1) break;
      }
      assert.equal(count, 1, `socket ${gone} still counted in r after it disconnected`);
    });

    it("publish without an ack callback is still delivered", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      a.emit("publish", { room: "r", event: "noack", data: "fire-and-forget" });
      await b.inbox.waitFor("noack", (d) => d === "fire-and-forget");
    });

    it("publish without data emits the bare event", async () => {
      const nsp = `/dyn/${uid("rooms")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      assert.deepEqual(await ack(a, "publish", { room: "r", event: "ping" }), { ok: true, count: 1 });
      const rec = await b.inbox.waitFor("ping");
      assert.ok(rec.args.length <= 1 && (rec.args[0] === undefined || rec.args[0] === null), `args: ${JSON.stringify(rec.args)}`);
    });
  });
}
