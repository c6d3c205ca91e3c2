// Malformed join / leave / publish requests get an {error} ack, change nothing and deliver nothing.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, ackNoArg, uid, userRooms, expectNothingElse, safeJson } = require("../lib/client");

const ctx = useServer();

const RESERVED = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

const BAD_ROOMS = [
  ["a number", 42],
  ["an object", { room: "r" }],
  ["null", null],
  ["a boolean", true],
  ["an empty string", ""],
  ["an array holding a number", ["ok", 1]],
  ["an array holding an empty string", ["ok", ""]],
  ["an array holding an array", [["r"]]],
];

const BAD_PUBLISH = [
  ["a string instead of an object", "hello"],
  ["an object without event", { room: "r", data: 1 }],
  ["event as a number", { event: 42, data: 1 }],
  ["event as null", { event: null }],
  ["event as an array", { event: ["x"] }],
  ...RESERVED.map((name) => [`reserved event "${name}"`, { event: name, data: "x" }]),
  ["room as a number", { room: 5, event: "x" }],
  ["room as an object", { room: { r: 1 }, event: "x" }],
  ["room as an array holding a number", { room: ["r", 5], event: "x" }],
];

function assertError(res, what) {
  assert.ok(res && typeof res === "object", `${what}: ack is an object, got ${safeJson(res)}`);
  assert.equal(typeof res.error, "string", `${what}: ack has a string "error", got ${safeJson(res)}`);
  assert.ok(res.error.length > 0, `${what}: error message is not empty`);
  assert.notEqual(res.ok, true, `${what}: ack is not ok`);
}

for (const transport of TRANSPORTS) {
  describe(`validation over ${transport}`, () => {
    it("join and leave reject arguments that are not a room name or a list of them", async () => {
      const nsp = `/dyn/${uid("val")}`;
      const s = await ctx.connect(nsp, transport);
      await ack(s, "join", "keep");
      for (const [what, arg] of BAD_ROOMS) {
        assertError(await ack(s, "join", arg), `join with ${what}`);
        assertError(await ack(s, "leave", arg), `leave with ${what}`);
      }
      // A rejected request changed nothing: still exactly in "keep" (and "ok" was not joined
      // from the half-valid arrays).
      const res = await ack(s, "join", "keep");
      assert.deepEqual(userRooms(res, s), ["keep"]);
    });

    it("publish rejects malformed requests and delivers nothing", async () => {
      const nsp = `/dyn/${uid("val")}`;
      const [a, b] = await ctx.clients(2, nsp, transport);
      await ack(b, "join", "r");
      for (const [what, arg] of BAD_PUBLISH) {
        assertError(await ack(a, "publish", arg), `publish with ${what}`);
      }
      // Nothing at all reached either socket (not even an event named "disconnect").
      await expectNothingElse(a, [a, b]);
      assert.ok(a.connected && b.connected, "both sockets still connected");
      // And the connection still works normally.
      assert.deepEqual(await ack(a, "publish", { room: "r", event: "x", data: 1 }), { ok: true, count: 1 });
      await b.inbox.waitFor("x", (d) => d === 1);
    });

    it("join, leave and publish with no argument at all get an error ack", async () => {
      const nsp = `/dyn/${uid("val")}`;
      const s = await ctx.connect(nsp, transport);
      for (const event of ["join", "leave", "publish"]) {
        assertError(await ackNoArg(s, event), `${event} with no argument`);
      }
      assert.ok(s.connected);
    });
  });
}
