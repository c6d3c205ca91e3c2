// A Redis Cluster master fails over under a mixed cluster (classic mode).
//
// A Redis Cluster of the file's own (3 masters + 3 replicas, cluster-node-timeout 1000 ms,
// lib/redis-cluster.js) under W1, W2 (wasio, `redis-cluster://` with every node as a seed)
// and N1 (Node.js, @socket.io/redis-adapter 8.3 on an ioredis 5 Cluster). Clients on W1
// publish steadily (200 acked relay publishes a second in all, each carrying its sequence
// number; 4 clients, as wasio lets one socket publish 100 a second); a client on W2 and
// one on N1 record what arrives, and when. wasio's classic
// publishes all go by the master of slot 0 (host/src/datasource/redis.rs: `ClusterHash::
// Custom(0)`): that master is SIGKILLed mid-stream, and its replica takes over.
//
// Asserted: cluster requests issued right after the kill (fetchSockets and serverSideEmit
// with ack, from W1 and from N1) end, by their timeout, instead of hanging; every publish is
// acked; delivery resumes after the promotion, and every message published once it has
// resumed reaches W2's and N1's clients; then every node counts 3 servers again, requests
// complete before the timeout and broadcasts cross every way.
// Measured and printed (one line, "# failover: ..."): sent, delivered, lost, duplicated and
// out-of-order messages per receiver, the longest silence at the receiver, and the time
// from the kill to the replica's promotion.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { ack, uid, safeJson } = require("../lib/client");
const { startCluster, until } = require("../lib/cluster");
const { startRedisCluster } = require("../lib/redis-cluster");

const T = 1000; // requestsTimeout, ms
const RATE = 200; // publishes per second, all senders together
const SENDERS = 4;
const BEFORE_KILL = 200; // messages W2's client gets before the kill
const AFTER_RESUME_MS = 1500; // publishing goes on this long once delivery resumed
const HANG_BOUND_MS = T + 4000; // a request that has not ended by then hangs
const RESUME_TIMEOUT_MS = 20000; // delivery must resume this soon after the promotion

/** Receiver statistics: what of `sent` (array of {seq, t}) arrived in `arrivals` ({seq, t}). */
function stats(sent, arrivals, tKill) {
  const seen = new Map();
  let outOfOrder = 0;
  const maxSeq = new Map(); // per sender: one connection's publishes keep their order
  for (const a of arrivals) {
    seen.set(a.seq, (seen.get(a.seq) || 0) + 1);
    const k = a.seq % SENDERS;
    if (a.seq < (maxSeq.get(k) ?? -1)) outOfOrder++;
    maxSeq.set(k, Math.max(maxSeq.get(k) ?? -1, a.seq));
  }
  const lostSeqs = sent.filter((s) => !seen.has(s.seq)).map((s) => s.seq);
  const duplicates = [...seen.values()].reduce((n, k) => n + (k - 1), 0);
  // The longest silence between two arrivals from a second before the kill on.
  let silence = 0;
  let silenceFrom = null;
  const times = arrivals.map((a) => a.t).filter((t) => t >= tKill - 1000);
  for (let i = 1; i < times.length; i++) {
    if (times[i] - times[i - 1] > silence) {
      silence = times[i] - times[i - 1];
      silenceFrom = times[i - 1];
    }
  }
  // Lost ones as ranges, "a-b,c".
  const ranges = [];
  for (const s of lostSeqs) {
    const last = ranges[ranges.length - 1];
    if (last && last[1] === s - 1) last[1] = s;
    else ranges.push([s, s]);
  }
  return {
    delivered: seen.size,
    lost: lostSeqs.length,
    lostRanges:
      ranges
        .slice(0, 12)
        .map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`))
        .join(",") + (ranges.length > 12 ? `,… ${ranges.length} ranges` : "") || "none",
    duplicates,
    outOfOrder,
    silenceMs: silence,
    silenceFromKillMs: silenceFrom === null ? null : silenceFrom - tKill,
  };
}

describe("redis cluster classic: the master of slot 0 fails over while a client publishes", () => {
  let rc;
  let c;
  before(async () => {
    rc = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });
    c = await startCluster({ wasio: 2, node: 1, mode: "classic", requestsTimeout: T, redisUrl: rc.url(), namespaces: ["/"] });
  });
  after(async () => {
    if (c) await c.stopChecked().catch((err) => console.error(`# ${err.message}`));
    if (rc) await rc.stop();
  });

  it("delivery resumes after the promotion, requests during the outage end at their timeout; the loss is measured", async () => {
    const [W1, W2, N1] = [c.byName.W1, c.byName.W2, c.byName.N1];
    // SENDERS clients share the rate: wasio limits each socket to 100 publishes a second
    // (server.limits.publishes_per_second); message seq goes from senders[seq % SENDERS].
    const senders = [];
    for (let i = 0; i < SENDERS; i++) senders.push(await c.connect(W1, "/"));
    const b = await c.connect(W2, "/");
    const n = await c.connect(N1, "/");
    const arrivals = { W2: [], N1: [] };
    b.on("tick", (seq) => arrivals.W2.push({ seq, t: Date.now() }));
    n.on("tick", (seq) => arrivals.N1.push({ seq, t: Date.now() }));

    const victim = await rc.masterOf(0);
    const replicas = await rc.replicasOf(victim);
    assert.equal(replicas.length, 1, `the master of slot 0 (${victim}) has a replica`);
    const where = (await rc.subscribers()).map((x) => `${x.name || "(no name)"} on ${x.port}${x.port === victim ? " (the victim)" : ""} (${x.role})`);
    console.error(`# failover: the victim is ${victim} (slot 0's master; replica ${replicas[0]}); classic subscriber connections: ${where.join("; ")}`);

    // The publisher: one acked relay publish every 1000/RATE ms, none awaited before the next.
    const sent = [];
    const acks = [];
    let stopping = false;
    const publisher = (async () => {
      const t0 = Date.now();
      for (let seq = 0; !stopping; seq++) {
        const due = t0 + (seq * 1000) / RATE;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // pacing, not synchronisation
        sent.push({ seq, t: Date.now() });
        acks.push(ack(senders[seq % SENDERS], "publish", { event: "tick", data: seq, exceptSelf: true }, { timeoutMs: 10000 }).catch((err) => ({ error: err.message })));
      }
    })();

    try {
      await b.inbox.waitFor("tick", () => arrivals.W2.length >= BEFORE_KILL, { timeoutMs: 10000, what: `${BEFORE_KILL} ticks on W2 before the kill` });

      const tKill = Date.now();
      await rc.kill(victim);
      // Cluster requests issued during the outage, from both kinds of node.
      const timed = async (node, opName, arg) => {
        const started = Date.now();
        const res = await node.op(opName, arg, { timeoutMs: 20000 }).catch((err) => ({ error: `no /ops answer: ${err.message}` }));
        return { node: node.name, op: opName, tookMs: Date.now() - started, endedAt: Date.now(), res };
      };
      const u = uid("fo");
      const requests = Promise.all([
        timed(W1, "fetchSockets", { nsp: "/" }),
        timed(N1, "fetchSockets", { nsp: "/" }),
        timed(W1, "serverSideEmit", { nsp: "/", args: ["sse", { u, from: "W1" }], ack: true }),
        timed(N1, "serverSideEmit", { nsp: "/", args: ["sse", { u, from: "N1" }], ack: true }),
      ]);

      const promoted = await rc.waitPromoted(0, victim);
      const tPromoted = Date.now();
      assert.ok(replicas.includes(promoted), `slot 0 is served by the replica ${replicas} now (got ${promoted})`);

      // Delivery resumes: W2's and N1's clients get a message published after the promotion.
      // (Failures here are collected, so that the numbers are printed all the same.)
      const problems = [];
      const sentAfterPromotion = (seq) => sent[seq] !== undefined && sent[seq].t >= tPromoted; // sent[seq].seq === seq
      const resumed = {};
      await Promise.all(
        [
          ["W2", b],
          ["N1", n],
        ].map(async ([name, s]) => {
          try {
            await s.inbox.waitFor("tick", (seq) => sentAfterPromotion(seq), {
              timeoutMs: RESUME_TIMEOUT_MS,
              what: `${name}'s client to get a message published after the promotion`,
            });
            resumed[name] = Date.now() - tPromoted;
          } catch (err) {
            problems.push(err.message);
          }
        }),
      );
      await new Promise((r) => setTimeout(r, AFTER_RESUME_MS)); // keeps publishing; not synchronisation
      stopping = true;
      await publisher;
      // Every message published once delivery had resumed on both receivers must arrive
      // (they may come out of order: wait for all of them, a bounded while).
      const resumedBoth = Math.max(resumed.W2 ?? Infinity, resumed.N1 ?? Infinity);
      const afterResume = sent.filter((x) => x.t >= tPromoted + resumedBoth);
      const lostAfter = {};
      for (const [name, s] of [
        ["W2", b],
        ["N1", n],
      ]) {
        const missing = () => {
          const got = new Set(arrivals[name].map((x) => x.seq));
          return afterResume.filter((x) => !got.has(x.seq));
        };
        await s.inbox
          .waitFor("tick", () => missing().length === 0, { timeoutMs: 10000, what: `the ${afterResume.length} messages published after delivery resumed, on ${name}'s client` })
          .catch(() => {});
        lostAfter[name] = missing();
      }
      const ackResults = await Promise.all(acks);
      const ackErrors = ackResults.filter((r) => !r || r.ok !== true);

      const reqs = await requests;
      const st = { W2: stats(sent, arrivals.W2, tKill), N1: stats(sent, arrivals.N1, tKill) };
      const promotionMs = tPromoted - tKill;
      const reqLine = reqs
        .map((r) => `${r.node} ${r.op} ${r.tookMs} ms (${r.endedAt < tPromoted ? "before" : "after"} the promotion, ${r.res.ok ? `ok ${safeJson(r.res.responses || (r.res.sockets || []).length + " sockets")}` : `error "${r.res.error}"`})`)
        .join("; ");
      const line = (name) => {
        const s = st[name];
        return `${name}: delivered ${s.delivered}, lost ${s.lost} (${s.lostRanges}), duplicated ${s.duplicates}, out of order ${s.outOfOrder} (per sender), longest silence ${s.silenceMs} ms (from kill+${s.silenceFromKillMs} ms), resumed ${resumed[name] ?? "never"} ms after the promotion`;
      };
      console.error(
        `# failover: sent ${sent.length} at ${RATE}/s from ${SENDERS} clients of W1, acked ${ackResults.length - ackErrors.length}; kill → promotion ${promotionMs} ms; ${line("W2")}; ${line("N1")}`,
      );
      console.error(`# failover: requests issued right after the kill: ${reqLine}`);
      for (const n1 of c.nodes) console.error(`# ${n1.name} after the failover: ${safeJson((await n1.health()).datasource)}`);

      // Every mismatch at once, so that a failure tells the whole story.
      if (ackErrors.length) problems.push(`${ackErrors.length} publishes not acked ok: ${safeJson(ackErrors.slice(0, 3))}`);
      for (const name of ["W2", "N1"]) {
        if (lostAfter[name].length) {
          problems.push(`${name}: ${lostAfter[name].length} of the ${afterResume.length} messages published once delivery had resumed never arrived: ${lostAfter[name].map((x) => x.seq).slice(0, 20)}`);
        }
      }
      for (const r of reqs) {
        if (r.tookMs > HANG_BOUND_MS) problems.push(`${r.node} ${r.op} during the outage took ${r.tookMs} ms (hung past ${HANG_BOUND_MS} ms): ${safeJson(r.res)}`);
      }
      assert.deepEqual(problems, [], "the failover");
    } finally {
      stopping = true;
      await publisher;
    }
  });

  it("then every node counts 3 servers and requests complete before the timeout", async () => {
    const counts = {};
    await until(
      async () => {
        for (const node of c.nodes) {
          const res = await node.op("serverCount", { nsp: "/" });
          counts[node.name] = res.error || res.count;
        }
        return c.nodes.every((node) => counts[node.name] === 3);
      },
      { timeoutMs: 20000, intervalMs: 200, what: "every node to count 3 servers" },
    ).catch(async (err) => {
      const where = (await rc.subscribers()).map((x) => `${x.name || "(no name)"} on ${x.port} (${x.role}, ${x.sub}+${x.psub})`);
      err.message += `; serverCount: ${safeJson(counts)}; subscriber connections: ${where.join("; ")}`;
      throw err;
    });
    const clients = [];
    for (const node of c.nodes) clients.push(await c.connect(node, "/"));
    for (const node of [c.byName.W1, c.byName.N1]) {
      const started = Date.now();
      const res = await node.op("fetchSockets", { nsp: "/" });
      const took = Date.now() - started;
      assert.equal(res.ok, true, `${node.name} fetchSockets after the failover: ${safeJson(res)}`);
      assert.ok(took < T, `${node.name} fetchSockets completes before the timeout (${took} ms)`);
      const ids = res.sockets.map((s) => s.id);
      for (const s of clients) assert.ok(ids.includes(s.id), `${node.name} sees ${s.node}'s socket`);
      const sse = await node.op("serverSideEmit", { nsp: "/", args: ["sse", { after: true }], ack: true });
      assert.equal(sse.ok, true, `${node.name} serverSideEmit with ack after the failover: ${safeJson(sse)}`);
      assert.deepEqual([...sse.responses].sort(), c.nodes.filter((x) => x !== node).map((x) => x.name).sort());
    }
    // And a broadcast crosses every way.
    for (const node of c.nodes) {
      const v = uid("after");
      await node.op("broadcast", { nsp: "/", event: "after", data: v });
      for (const s of clients) await s.inbox.waitFor("after", (d) => d === v, { what: `${node.name}'s broadcast on ${s.node}` });
    }
    c.assertAlive();
  });
});
