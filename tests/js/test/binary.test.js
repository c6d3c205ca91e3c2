// Binary attachments anywhere inside `data` arrive byte-identical, over both transports.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, uid } = require("../lib/client");

const ctx = useServer();

function allBytes() {
  return Buffer.from(Array.from({ length: 256 }, (_, i) => i));
}

function assertSameBuffer(actual, expected, where) {
  assert.ok(Buffer.isBuffer(actual), `${where}: expected a Buffer, got ${typeof actual} ${JSON.stringify(actual)?.slice(0, 100)}`);
  assert.equal(actual.length, expected.length, `${where}: length`);
  assert.ok(actual.equals(expected), `${where}: bytes differ`);
}

for (const transport of TRANSPORTS) {
  describe(`binary over ${transport}`, () => {
    it("nested Buffers arrive byte-identical", async () => {
      const nsp = `/dyn/${uid("bin")}`;
      const [a, b, c] = await ctx.clients(3, nsp, transport);
      await ack(b, "join", "r");
      await ack(c, "join", "r");

      const big = crypto.randomBytes(64 * 1024); // bigger payloads: see the 512 KiB test
      const bytes = allBytes();
      const data = {
        name: "file.bin",
        top: bytes,
        nested: { list: [Buffer.from("héllo"), 1, "two", { deep: big }], flag: false },
        empty: Buffer.alloc(0),
      };
      const res = await ack(a, "publish", { room: "r", event: "blob", data });
      assert.deepEqual(res, { ok: true, count: 2 });

      for (const s of [b, c]) {
        const rec = await s.inbox.waitFor("blob");
        assert.equal(rec.args.length, 1);
        const got = rec.args[0];
        assert.equal(got.name, "file.bin");
        assertSameBuffer(got.top, bytes, "data.top");
        assertSameBuffer(got.nested.list[0], Buffer.from("héllo"), "data.nested.list[0]");
        assert.equal(got.nested.list[1], 1);
        assert.equal(got.nested.list[2], "two");
        assertSameBuffer(got.nested.list[3].deep, big, "data.nested.list[3].deep");
        assert.equal(got.nested.flag, false);
        assertSameBuffer(got.empty, Buffer.alloc(0), "data.empty");
      }
    });

    it("a Buffer as the whole data, to all sockets", async () => {
      const nsp = `/dyn/${uid("bin")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      const payload = crypto.randomBytes(4096);
      const res = await ack(a, "publish", { event: "raw", data: payload });
      assert.deepEqual(res, { ok: true, count: 2 });
      for (const s of [a, b]) {
        const rec = await s.inbox.waitFor("raw");
        assertSameBuffer(rec.args[0], payload, "data");
      }
    });

    it("several binary messages in a row keep their content", async () => {
      const nsp = `/dyn/${uid("bin")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      const sent = Array.from({ length: 20 }, (_, i) => ({ i, buf: crypto.randomBytes(1 + i * 97) }));
      const acks = await Promise.all(sent.map((d) => ack(a, "publish", { room: "r", event: "seq", data: d })));
      for (const r of acks) assert.deepEqual(r, { ok: true, count: 1 });
      const got = await b.inbox.waitForCount("seq", sent.length);
      // Order is checked in ordering.test.js; here each message is matched by its index.
      const byIndex = new Map(got.map((r) => [r.args[0].i, r.args[0]]));
      assert.equal(byIndex.size, sent.length, "each message once");
      for (const d of sent) assertSameBuffer(byIndex.get(d.i).buf, d.buf, `message ${d.i}`);
    });

    it("a 512 KiB Buffer is accepted (socket.io's default limit is 1 MB per message)", async () => {
      const nsp = `/dyn/${uid("bin")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      const big = crypto.randomBytes(512 * 1024);
      const res = await ack(a, "publish", { room: "r", event: "big", data: { big } }, { timeoutMs: 10000 });
      assert.deepEqual(res, { ok: true, count: 1 });
      const rec = await b.inbox.waitFor("big", () => true, { timeoutMs: 10000 });
      assertSameBuffer(rec.args[0].big, big, "data.big");
    });
  });
}
