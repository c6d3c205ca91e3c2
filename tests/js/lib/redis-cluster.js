// Redis deployments of a test's own, on free loopback ports, in a temporary directory,
// every process stopped (SIGKILL) and the directory removed by `stop()`, also when the
// start fails half-way. Never the shared Redis on 6379.
//
//   startRedisCluster({masters = 3, replicas = 1, nodeTimeoutMs = 1000})
//     `redis-server --cluster-enabled yes` per node (`--save "" --appendonly no`, the bus
//     on a port of its own: `--cluster-port`), `redis-cli --cluster create ...
//     --cluster-replicas N --cluster-yes`; resolves once every node says `cluster_state:ok`,
//     knows every other node, and every replica's link to its master is up.
//   startRedisSentinel({sentinels = 3, quorum = 2, downAfterMs = 1000})
//     a master, one replica (`--replicaof`) and `redis-server --sentinel` processes
//     monitoring "mymaster"; resolves once every sentinel knows the replica and the other
//     sentinels (so that a failover can be elected).
"use strict";

const { spawn, execFile } = require("node:child_process");
const fsp = require("node:fs/promises");
const os = require("node:os");
const path = require("node:path");
const { withTimeout } = require("./client");
const { freePort } = require("./server");

const START_TIMEOUT_MS = 10000;

/** `redis-cli -p port args...`; resolves with its stdout (rejects on a non-zero exit). */
function cli(port, args, { timeoutMs = 3000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args.map(String)], { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli -p ${port} ${args.join(" ")}: ${err.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Polls `check()` (async, truthy when done) every `intervalMs`, at most `timeoutMs`. */
async function poll(check, { timeoutMs = 10000, intervalMs = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, intervalMs)); // poll interval, not synchronisation
  }
}

/** `INFO` / `CLUSTER INFO` text as an object. */
function fields(text) {
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/**
 * A group of redis-server processes in one temporary directory. `spawnRedis(args, name)`
 * starts one and resolves once it accepts connections.
 */
async function processGroup(prefix) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  const procs = new Map(); // port -> {child, exited, output(), alive}
  const group = {
    dir,
    procs,
    async spawnRedis(port, args, name) {
      const child = spawn("redis-server", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      const proc = { port, name, child, alive: true, output: () => out };
      proc.exited = new Promise((resolve) =>
        child.on("exit", (code, signal) => {
          proc.alive = false;
          resolve({ code, signal });
        }),
      );
      child.on("error", (err) => (out += `[spawn error] ${err.message}\n`));
      procs.set(port, proc);
      const ready = new Promise((resolve, reject) => {
        child.stdout.setEncoding("utf8").on("data", (d) => {
          out += d;
          if (/Ready to accept connections|Sentinel ID is/.test(out)) resolve();
        });
        child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
        proc.exited.then(() => reject(new Error(`${name} on ${port} exited early:\n${out}`)));
      });
      await withTimeout(ready, START_TIMEOUT_MS, `${name} on port ${port} (${out})`);
      return proc;
    },
    /** SIGKILLs the process on `port`; resolves once it has exited. */
    async kill(port) {
      const p = procs.get(port);
      if (!p) throw new Error(`no process on port ${port}`);
      if (p.alive) p.child.kill("SIGKILL");
      await withTimeout(p.exited, 5000, `${p.name} on ${port} to exit`);
    },
    async stop() {
      await Promise.allSettled([...procs.keys()].map((port) => group.kill(port)));
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  return group;
}

/**
 * `CLUSTER NODES` of the node on `port`, parsed:
 *   [{id, port, flags: [...], master (id or null), linkState, slots: [[from, to], ...]}]
 */
async function clusterNodes(port) {
  const text = await cli(port, ["cluster", "nodes"]);
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((line) => {
      const [id, addr, flags, master, , , , linkState, ...slots] = line.trim().split(" ");
      return {
        id,
        port: Number(addr.split("@")[0].split(":").pop()),
        flags: flags.split(","),
        master: master === "-" ? null : master,
        linkState,
        slots: slots
          .filter((s) => !s.startsWith("["))
          .map((s) => {
            const [a, b = a] = s.split("-").map(Number);
            return [a, b];
          }),
      };
    });
}

async function startRedisCluster({ masters = 3, replicas = 1, nodeTimeoutMs = 1000 } = {}) {
  const group = await processGroup("wasio-redis-cluster-");
  try {
    const count = masters * (1 + replicas);
    const ports = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    const busPorts = [];
    for (let i = 0; i < count; i++) busPorts.push(await freePort());
    await Promise.all(
      ports.map((port, i) =>
        group.spawnRedis(
          port,
          [
            "--port", String(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--cluster-enabled", "yes",
            "--cluster-port", String(busPorts[i]),
            "--cluster-config-file", `nodes-${port}.conf`,
            "--cluster-node-timeout", String(nodeTimeoutMs),
          ],
          `redis cluster node ${i}`,
        ),
      ),
    );
    await new Promise((resolve, reject) => {
      execFile(
        "redis-cli",
        ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", String(replicas), "--cluster-yes"],
        { timeout: 30000 },
        (err, stdout, stderr) => (err ? reject(new Error(`redis-cli --cluster create: ${err.message}\n${stdout}\n${stderr}`)) : resolve()),
      );
    });
    for (const port of ports) {
      await poll(
        async () => {
          const info = fields(await cli(port, ["cluster", "info"]));
          return info.cluster_state === "ok" && Number(info.cluster_known_nodes) === count;
        },
        { timeoutMs: 20000, what: `cluster_state:ok and ${count} known nodes on ${port}` },
      );
    }
    // Every replica attached and in sync, so that it can take over.
    const view = await clusterNodes(ports[0]);
    for (const n of view.filter((x) => x.flags.includes("slave"))) {
      await poll(async () => fields(await cli(n.port, ["info", "replication"])).master_link_status === "up", {
        timeoutMs: 20000,
        what: `replica ${n.port} linked to its master`,
      });
    }

    const cluster = {
      ports,
      dir: group.dir,
      /** wasio's datasource URL: one seed, the others as `node=` (fred's form). */
      url(seeds = ports) {
        const [first, ...rest] = seeds;
        const q = rest.map((p) => `node=127.0.0.1:${p}`).join("&");
        return `redis-cluster://127.0.0.1:${first}${q ? `?${q}` : ""}`;
      },
      alive: (port) => group.procs.get(port).alive,
      livePorts: () => ports.filter((p) => group.procs.get(p).alive),
      cli,
      /** CLUSTER NODES as some live node sees it. */
      nodes: (port = cluster.livePorts()[0]) => clusterNodes(port),
      /** The port of the master serving `slot`, as a live node sees it (failed ones left out). */
      async masterOf(slot, port) {
        const view = await cluster.nodes(port);
        const m = view.find(
          (n) => n.flags.includes("master") && !n.flags.includes("fail") && n.slots.some(([a, b]) => a <= slot && slot <= b),
        );
        return m ? m.port : null;
      },
      /** The replicas of the master on `masterPort`. */
      async replicasOf(masterPort) {
        const view = await cluster.nodes();
        const m = view.find((n) => n.port === masterPort);
        return view.filter((n) => n.master === m.id).map((n) => n.port);
      },
      /**
       * Every subscriber connection of the cluster (CLIENT LIST on every live node):
       * [{port, role: "master"|"replica", name, sub, psub, ssub}] (channel, pattern and
       * shard channel counts).
       */
      async subscribers() {
        const out = [];
        for (const n of await cluster.nodes()) {
          if (!cluster.alive(n.port)) continue;
          const role = n.flags.includes("master") ? "master" : "replica";
          for (const line of (await cli(n.port, ["client", "list"])).split("\n").filter(Boolean)) {
            const f = Object.fromEntries(line.split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
            const [sub, psub, ssub] = [f.sub, f.psub, f.ssub].map((x) => Number(x || 0));
            if (sub || psub || ssub) out.push({ port: n.port, role, name: f.name, sub, psub, ssub });
          }
        }
        return out;
      },
      /** The live master ports. */
      async masterPorts() {
        const view = await cluster.nodes();
        return view.filter((n) => n.flags.includes("master") && !n.flags.includes("fail")).map((n) => n.port);
      },
      kill: (port) => group.kill(port),
      /**
       * After `kill(deadPort)`: resolves with the port of the node now serving `slot`,
       * once one of the dead node's replicas is master of it and every live node says
       * `cluster_state:ok`.
       */
      async waitPromoted(slot, deadPort, { timeoutMs = 20000, intervalMs = 20 } = {}) {
        return poll(
          async () => {
            for (const p of cluster.livePorts()) {
              if (fields(await cli(p, ["cluster", "info"])).cluster_state !== "ok") return null;
            }
            for (const p of cluster.livePorts()) {
              const m = await cluster.masterOf(slot, p);
              if (m === null || m === deadPort) return null;
            }
            return cluster.masterOf(slot);
          },
          { timeoutMs, intervalMs, what: `a replica of ${deadPort} to serve slot ${slot}` },
        );
      },
      stop: () => group.stop(),
    };
    return cluster;
  } catch (err) {
    await group.stop().catch(() => {});
    throw err;
  }
}

async function startRedisSentinel({ sentinels = 3, quorum = 2, downAfterMs = 1000, failoverTimeoutMs = 3000, service = "mymaster" } = {}) {
  const group = await processGroup("wasio-redis-sentinel-");
  try {
    const masterPort = await freePort();
    const replicaPort = await freePort();
    const common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"];
    await group.spawnRedis(masterPort, ["--port", String(masterPort), ...common], "redis master");
    await group.spawnRedis(replicaPort, ["--port", String(replicaPort), ...common, "--replicaof", "127.0.0.1", String(masterPort)], "redis replica");
    await poll(async () => fields(await cli(replicaPort, ["info", "replication"])).master_link_status === "up", {
      what: "the replica linked to its master",
    });
    const sentinelPorts = [];
    for (let i = 0; i < sentinels; i++) sentinelPorts.push(await freePort());
    await Promise.all(
      sentinelPorts.map(async (port, i) => {
        // A sentinel rewrites its config file: one per sentinel, in the group's directory.
        const conf = path.join(group.dir, `sentinel-${port}.conf`);
        await fsp.writeFile(
          conf,
          [
            `port ${port}`,
            "bind 127.0.0.1",
            `dir ${group.dir}`,
            `sentinel monitor ${service} 127.0.0.1 ${masterPort} ${quorum}`,
            `sentinel down-after-milliseconds ${service} ${downAfterMs}`,
            `sentinel failover-timeout ${service} ${failoverTimeoutMs}`,
            `sentinel parallel-syncs ${service} 1`,
            "",
          ].join("\n"),
        );
        await group.spawnRedis(port, [conf, "--sentinel"], `redis sentinel ${i}`);
      }),
    );
    // Each sentinel has found the replica and the other sentinels (hello messages).
    for (const port of sentinelPorts) {
      await poll(
        async () => {
          // redis-cli prints the reply's field names and values on alternate lines.
          const lines = (await cli(port, ["sentinel", "master", service])).split("\n").map((l) => l.trim());
          const get = (k) => lines[lines.indexOf(k) + 1];
          return Number(get("num-slaves")) >= 1 && Number(get("num-other-sentinels")) >= sentinels - 1 && get("flags") === "master";
        },
        { timeoutMs: 15000, intervalMs: 100, what: `sentinel ${port} to know the replica and ${sentinels - 1} other sentinels` },
      );
    }
    const deployment = {
      service,
      masterPort,
      replicaPort,
      sentinelPorts,
      dir: group.dir,
      /** wasio's datasource URL (fred's form): a sentinel, the others as `node=`, the service name. */
      url() {
        const [first, ...rest] = sentinelPorts;
        const q = [`sentinelServiceName=${service}`, ...rest.map((p) => `node=127.0.0.1:${p}`)].join("&");
        return `redis-sentinel://127.0.0.1:${first}/0?${q}`;
      },
      cli,
      alive: (port) => group.procs.get(port).alive,
      /** The master's port as the sentinel on `port` (default: the first live one) says. */
      async masterAddr(port = sentinelPorts.find((p) => group.procs.get(p).alive)) {
        const out = (await cli(port, ["sentinel", "get-master-addr-by-name", service])).trim().split("\n");
        return Number(out[1]);
      },
      kill: (port) => group.kill(port),
      /** Resolves once every sentinel names `port` as the master and it says it is one. */
      async waitMaster(port, { timeoutMs = 20000 } = {}) {
        return poll(
          async () => {
            for (const s of sentinelPorts) if ((await deployment.masterAddr(s)) !== port) return false;
            return fields(await cli(port, ["info", "replication"])).role === "master";
          },
          { timeoutMs, intervalMs: 50, what: `the sentinels to name ${port} master` },
        );
      },
      stop: () => group.stop(),
    };
    return deployment;
  } catch (err) {
    await group.stop().catch(() => {});
    throw err;
  }
}

module.exports = { startRedisCluster, startRedisSentinel, cli, clusterNodes };
