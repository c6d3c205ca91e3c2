// A burst of messages to one receiver is delivered whole, over both transports. socket.io (Node)
// buffers a client's outgoing packets without bound; a server with a small per-client buffer
// drops packets (or fails the publish) when a polling client has not fetched yet.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { TRANSPORTS, ack, uid, safeJson } = require("../lib/client");

const ctx = useServer();
const BURST = 300;

for (const transport of TRANSPORTS) {
  describe(`burst over ${transport}`, () => {
    it(`${BURST} publishes from several senders to one receiver all arrive`, async () => {
      const nsp = `/dyn/${uid("burst")}`;
      const [receiver, ...senders] = await ctx.clients(6, nsp, transport);
      await ack(receiver, "join", "sink");
      const acks = await Promise.all(
        Array.from({ length: BURST }, (_, i) =>
          ack(senders[i % senders.length], "publish", { room: "sink", event: "b", data: i }, { timeoutMs: 10000 }),
        ),
      );
      const bad = acks.map((a, i) => [i, a]).filter(([, a]) => !a || a.ok !== true || a.count !== 1);
      assert.deepEqual(bad.slice(0, 5).map(([i, a]) => `publish ${i}: ${safeJson(a)}`), [], `${bad.length} of ${BURST} publishes not acked {ok:true,count:1}`);
      const got = await receiver.inbox.waitForCount("b", BURST, { timeoutMs: 10000 });
      assert.equal(new Set(got.map((r) => r.args[0])).size, BURST);
    });
  });
}
