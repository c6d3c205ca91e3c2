// Namespaces are isolated: rooms, broadcasts and counts of one never touch another.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, uid, userRooms, fence, manager, connect, closeAll } = require("../lib/client");

const ctx = useServer();

for (const transport of TRANSPORTS) {
  describe(`namespaces over ${transport}`, () => {
    it("/ and /chat are isolated", async () => {
      const room = uid("room"); // the main namespace is shared by the whole file: use fresh rooms
      const [root1, root2] = await ctx.clients(2, "/", transport);
      const [chat1, chat2] = await ctx.clients(2, "/chat", transport);
      for (const s of [root1, root2, chat1, chat2]) await ack(s, "join", room);

      // Same room name in both namespaces: each publish counts and reaches its own namespace only.
      assert.deepEqual(await ack(chat1, "publish", { room, event: "said", data: "in chat" }), { ok: true, count: 2 });
      assert.deepEqual(await ack(root1, "publish", { room, event: "said", data: "in root" }), { ok: true, count: 2 });
      await fence(root1, [root1, root2]);
      await fence(chat1, [chat1, chat2]);
      for (const s of [root1, root2]) assert.deepEqual(s.inbox.data("said"), ["in root"], `${s.nsp} socket`);
      for (const s of [chat1, chat2]) assert.deepEqual(s.inbox.data("said"), ["in chat"], `${s.nsp} socket`);

      // A publish to the whole /chat namespace does not reach /.
      const chatCount = (await ack(chat2, "publish", { event: "everyone", data: "chat-wide" })).count;
      assert.ok(chatCount >= 2, `the /chat broadcast reached its 2 sockets (count ${chatCount})`);
      await chat1.inbox.waitFor("everyone", (d) => d === "chat-wide");
      await chat2.inbox.waitFor("everyone", (d) => d === "chat-wide");
      await fence(root2, [root1, root2]);
      for (const s of [root1, root2]) assert.deepEqual(s.inbox.data("everyone"), [], "/ got the /chat broadcast");

      // Rooms joined in one namespace are not listed in the other.
      const r = await ack(chat1, "join", uid("chat-only"));
      const rr = await ack(root1, "join", uid("root-only"));
      assert.ok(!userRooms(rr, root1).some((x) => x.startsWith("chat-only")), `root rooms: ${rr.rooms}`);
      assert.ok(!userRooms(r, chat1).some((x) => x.startsWith("root-only")), `chat rooms: ${r.rooms}`);
    });

    it("namespaces multiplexed on one connection are isolated too", async () => {
      const room = uid("room");
      const nspA = `/dyn/${uid("mux")}`;
      const nspB = `/dyn/${uid("mux")}`;
      const m = manager(ctx.server.url, transport);
      const a = await connect(ctx.server.url, nspA, { manager: m, transport });
      ctx.sockets.push(a);
      const b = await connect(ctx.server.url, nspB, { manager: m, transport });
      ctx.sockets.push(b);
      assert.equal(a.io, b.io, "one engine.io connection");
      const [otherB] = await ctx.clients(1, nspB, transport);

      await ack(a, "join", room);
      await ack(b, "join", room);
      await ack(otherB, "join", room);
      assert.deepEqual(await ack(a, "publish", { room, event: "mx", data: "A" }), { ok: true, count: 1 });
      assert.deepEqual(await ack(otherB, "publish", { room, event: "mx", data: "B" }), { ok: true, count: 2 });
      await fence(a, [a]);
      await fence(otherB, [b, otherB]);
      assert.deepEqual(a.inbox.data("mx"), ["A"]);
      assert.deepEqual(b.inbox.data("mx"), ["B"]);
      assert.deepEqual(otherB.inbox.data("mx"), ["B"]);
      closeAll(a, b);
    });

    it("sockets connecting at once to a configured namespace are all served", async () => {
      const problems = [];
      for (let round = 0; round < 5; round++) {
        const room = uid("r");
        const sockets = await Promise.all(Array.from({ length: 10 }, () => ctx.connect("/chat", transport)));
        const acks = await Promise.all(
          sockets.map((s) => ack(s, "join", room).catch((e) => ({ error: e.message }))),
        );
        acks.forEach((a, i) => {
          if (!a || a.ok !== true) problems.push(`round ${round} socket ${i}: ${JSON.stringify(a)}`);
        });
        if (problems.length) break;
        const res = await ack(sockets[0], "publish", { room, event: "e" });
        if (res.count !== sockets.length) problems.push(`round ${round}: count ${res.count}, want ${sockets.length}`);
        closeAll(...sockets);
      }
      assert.deepEqual(problems, []);
    });

    it("a namespace pattern accepts namespaces under it, created on first use", async () => {
      for (const nsp of ["/dyn/anything", `/dyn/${uid("x")}`, "/dyn/a-b_c.d"]) {
        const s = await ctx.connect(nsp, transport);
        const res = await ack(s, "join", "r");
        assert.equal(res.ok, true, `${nsp}: ${JSON.stringify(res)}`);
        assert.deepEqual(await ack(s, "publish", { room: "r", event: "e", data: nsp }), { ok: true, count: 1 });
        await s.inbox.waitFor("e", (d) => d === nsp);
      }
    });

    it("a namespace that is not configured is refused with connect_error", async () => {
      await assert.rejects(ctx.connect("/not-configured", transport), /connect_error on \/not-configured.*Invalid namespace/);
    });
  });
}
