// A client may emit the moment its `connect` event fires: nothing may be lost.
//
// Some servers send the CONNECT ack before the namespace's handlers are registered; a client that
// emits from inside its `connect` listener then loses those events (no ack, no delivery). Many
// clients connecting at once make that window wide enough to hit.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, uid, attach, withTimeout, safeJson, ack } = require("../lib/client");

const ctx = useServer();
const N = Number(process.env.WASIO_RACE_CLIENTS || 200);
const TIMEOUT_MS = 10000;
const OBSERVERS = 10;

for (const transport of TRANSPORTS) {
  describe(`connect race over ${transport}`, () => {
    it(`${N} clients emit join + publish synchronously inside their connect listener`, async () => {
      const nsp = `/dyn/${uid("race")}`;
      // The publishes go to observers that joined their rooms beforehand, so that this test does
      // not depend on the order in which one socket's join and publish are handled (see
      // ordering.test.js for that). Several observers, so that none gets a burst large enough to
      // hit a server's outgoing buffer limit (see burst.test.js for that).
      const observers = await ctx.clients(OBSERVERS, nsp, transport);
      for (const [k, o] of observers.entries()) assert.equal((await ack(o, "join", `observer-${k}`)).ok, true);
      const results = Array.from({ length: N }, () => ({ join: null, publish: null }));
      const done = [];
      for (let i = 0; i < N; i++) {
        const room = `room-${i}`;
        const r = results[i];
        const s = io(`${ctx.server.url}${nsp}`, {
          transports: [transport],
          forceNew: true,
          reconnection: false,
          timeout: TIMEOUT_MS,
        });
        attach(s);
        ctx.sockets.push(s);
        done.push(
          new Promise((resolve, reject) => {
            let pending = 2; // join ack, publish ack
            const step = () => --pending === 0 && resolve();
            s.on("connect_error", (err) => reject(new Error(`client ${i}: connect_error ${err.message}`)));
            s.on("connect", () => {
              // Synchronously, in the listener: no await, no tick in between.
              s.emit("join", room, (res) => {
                r.join = res;
                step();
              });
              s.emit("publish", { room: `observer-${i % OBSERVERS}`, event: "race", data: i }, (res) => {
                r.publish = res;
                step();
              });
            });
          }),
        );
      }

      const outcome = await withTimeout(Promise.allSettled(done), TIMEOUT_MS, "all acks").catch((e) => e);
      // Every publish acked ok has been delivered to an observer before its ack was sent.
      const delivered = [];
      for (const [k, o] of observers.entries()) {
        const want = Array.from({ length: N }, (_, i) => i).filter((i) => i % OBSERVERS === k).length;
        const recs = await o.inbox.waitForCount("race", want, { timeoutMs: 2000 }).catch(() => o.inbox.all("race"));
        delivered.push(...recs);
      }
      const got = new Set(delivered.map((rec) => rec.args[0]));
      const problems = [];
      results.forEach((r, i) => {
        if (!r.join) problems.push(`client ${i}: no join ack`);
        else if (r.join.ok !== true || !r.join.rooms.includes(`room-${i}`)) problems.push(`client ${i}: join ack ${safeJson(r.join)}`);
        if (!r.publish) problems.push(`client ${i}: no publish ack`);
        else if (r.publish.ok !== true || r.publish.count !== 1) problems.push(`client ${i}: publish ack ${safeJson(r.publish)} (want {ok:true,count:1})`);
        if (!got.has(i)) problems.push(`client ${i}: its publish never reached observer ${i % OBSERVERS}`);
      });
      if (outcome instanceof Error) problems.unshift(outcome.message);
      else outcome.filter((o) => o.status === "rejected").forEach((o) => problems.unshift(o.reason.message));
      assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems among ${N} clients`);
      assert.equal(delivered.length, N, "the observers got each publish exactly once");
    });
  });
}
