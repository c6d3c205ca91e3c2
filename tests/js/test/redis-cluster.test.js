// Interop matrix rows 1–8 on a Redis Cluster of the file's own (3 masters + 3 replicas,
// lib/redis-cluster.js): mixed clusters of 2 wasio nodes (datasource
// `redis-cluster://SEED?node=...`, fred finds the rest) and 1 Node.js node
// (lib/node-node.js, lib/redis-clients.js), each row from W1 and from N1, in `/` and `/chat`.
//   classic  Node: @socket.io/redis-adapter 8.3 `createAdapter` on an ioredis 5 `Cluster`
//            (and its duplicate for the subscriber), as the adapter's README shows
//   sharded  Node: `createShardedAdapter` on a node-redis 4 `createCluster` (and its
//            duplicate), once with subscriptionMode "static" (everything on the namespace's
//            channel) and once "dynamic" (Node's default: a broadcast to one room goes on
//            that room's own channel, which lives on its slot's master)
// serverCount and every request's node count are the PUBSUB NUMSUB / SHARDNUMSUB of the
// cluster: every node must count all three whichever cluster node each one's subscriber
// connection landed on (ioredis picks any node of the cluster, replicas included, for its
// classic subscriber; fred a primary).
"use strict";

const { describe, it, before, after, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const { startCluster, until } = require("../lib/cluster");
const { WAIT_MS, scenarios } = require("../lib/interop-rows");
const { startRedisCluster } = require("../lib/redis-cluster");

describe("redis cluster (3 masters + 3 replicas)", () => {
  let rc;
  before(async () => {
    rc = await startRedisCluster({ masters: 3, replicas: 1 });
  });
  after(async () => {
    if (rc) await rc.stop();
  });

  for (const [mode, subscriptionMode] of [
    ["classic", undefined],
    ["sharded", "static"],
    ["sharded", "dynamic"],
  ]) {
    const label = mode === "classic" ? "classic (Node: ioredis Cluster)" : `sharded, subscriptionMode "${subscriptionMode}" (Node: node-redis createCluster)`;
    describe(`redis cluster ${label}: 2 wasio nodes + 1 Node.js node`, () => {
      let c;
      before(async () => {
        c = await startCluster({ wasio: 2, node: 1, mode, subscriptionMode, requestsTimeout: 1000, redisUrl: rc.url() });
      });
      afterEach(() => {
        if (!c) return;
        c.closeClients();
        c.assertAlive();
      });
      after(async () => {
        if (c) await c.stopChecked();
      });

      /** Sharded "dynamic": waits until `holders` nodes subscribed to the room's channel, on its slot's master. */
      async function roomReady(nsp, room, holders) {
        if (mode !== "sharded" || subscriptionMode === "static") return;
        const channel = `${c.key}#${nsp}#${room}#`;
        const slot = Number((await rc.cli(rc.ports[0], ["cluster", "keyslot", channel])).trim());
        const master = await rc.masterOf(slot);
        await until(
          async () => {
            const [, n] = (await rc.cli(master, ["pubsub", "shardnumsub", channel])).trim().split("\n");
            return Number(n) >= holders;
          },
          { timeoutMs: WAIT_MS, what: `${holders} node(s) subscribed to ${channel} on ${master}` },
        );
      }

      it("every node counts the 3 servers in every namespace, wherever their subscribers are", async () => {
        if (mode === "classic") {
          const where = (await rc.subscribers()).map((x) => `${x.name || "(no name)"} on ${x.port} (${x.role}, ${x.sub} channels, ${x.psub} patterns)`);
          console.error(`# classic subscriber connections: ${where.join("; ")}`);
        }
        for (const n of c.nodes) {
          for (const nsp of ["/", "/chat"]) {
            const res = await n.op("serverCount", { nsp });
            assert.deepEqual(res, { ok: true, count: 3 }, `${n.name} serverCount(${nsp})`);
          }
        }
      });

      const { defineRows } = scenarios(() => c, { roomReady });
      defineRows();
    });
  }
});
