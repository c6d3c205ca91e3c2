// The Redis clients of a Node.js test node (lib/node-node.js) on a Redis Cluster or behind
// Sentinel, from the URL a wasio node gets (fred's forms):
//   redis-cluster://HOST:PORT[?node=HOST:PORT&node=...]
//     classic mode: an ioredis 5 `Cluster` (pub) and its duplicate (sub), as
//     @socket.io/redis-adapter's README shows for createAdapter;
//     sharded mode: a node-redis 4 `createCluster` (pub) and its duplicate (sub), as its
//     README shows for createShardedAdapter.
//   redis-sentinel://HOST:PORT[/DB]?sentinelServiceName=NAME[&node=HOST:PORT...]
//     an ioredis 5 client on the sentinels (`{sentinels, name}`) and its duplicate.
// `isClusterUrl(url)` tells whether this module handles the URL; `connect(url, mode, log)`
// resolves with {pub, sub, client: "ioredis-cluster"|"node-redis-cluster"|"ioredis-sentinel",
// datasource(): {connector, client, connected, reconnects}, close()}.
"use strict";

const SCHEMES = /^redis-(cluster|sentinel):\/\//;

const isClusterUrl = (url) => SCHEMES.test(url);

/** The hosts of the URL (its authority, then every `node=`), its query and database. */
function parse(url) {
  const u = new URL(url.replace(SCHEMES, "http://"));
  const hostOf = (s) => {
    const i = s.lastIndexOf(":");
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
  };
  const nodes = [{ host: u.hostname, port: Number(u.port || 6379) }, ...u.searchParams.getAll("node").map(hostOf)];
  return { nodes, params: u.searchParams, db: Number(u.pathname.slice(1) || 0) };
}

async function connect(url, mode, log = () => {}) {
  const { nodes, params, db } = parse(url);
  let reconnects = 0;
  if (url.startsWith("redis-cluster:") && mode === "sharded") {
    const { createCluster } = require("redis");
    const pub = createCluster({ rootNodes: nodes.map((n) => ({ url: `redis://${n.host}:${n.port}` })) });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (err) => log(`redis cluster: ${err.message}`));
    await Promise.all([pub.connect(), sub.connect()]);
    return {
      pub,
      sub,
      client: "node-redis-cluster",
      // node-redis 4's cluster has no connection state of its own: up once connected.
      datasource: () => ({ connector: "redis", client: "node-redis-cluster", connected: true, reconnects }),
      close: () => Promise.allSettled([pub.quit(), sub.quit()]),
    };
  }
  const Redis = require("ioredis");
  let pub;
  let client;
  if (url.startsWith("redis-cluster:")) {
    client = "ioredis-cluster";
    // `slotsRefreshInterval`: without it ioredis 5.8.2 keeps the slot map it read at start
    // until a command is redirected; after a failover its `nodes()` still lists the dead
    // master and not the promoted replica, so the adapter's NUMSUB sum (serverCount, every
    // request's expected answers) misses whoever subscribed there (measured: N1 counted 2 of
    // 3 servers for good). With it, the new master is learnt within the interval.
    pub = new Redis.Cluster(nodes, { slotsRefreshInterval: 1000 });
  } else {
    client = "ioredis-sentinel";
    const name = params.get("sentinelServiceName");
    if (!name) throw new Error(`${url}: no sentinelServiceName`);
    pub = new Redis({ sentinels: nodes, name, db });
  }
  const sub = pub.duplicate();
  const ready = (c) =>
    new Promise((resolve, reject) => {
      if (c.status === "ready") return resolve();
      c.once("ready", resolve);
      c.once("end", () => reject(new Error(`${client}: connection ended before ready`)));
    });
  for (const c of [pub, sub]) {
    c.on("error", (err) => log(`${client}: ${err.message}`));
    c.on("reconnecting", () => reconnects++);
  }
  await Promise.all([ready(pub), ready(sub)]);
  return {
    pub,
    sub,
    client,
    datasource: () => ({ connector: "redis", client, connected: pub.status === "ready" && sub.status === "ready", reconnects }),
    close: () => Promise.allSettled([pub.quit(), sub.quit()]),
  };
}

module.exports = { isClusterUrl, connect, parse };
