// Socket.IO client helpers. Every wait is bounded: a broken server fails the test, it never hangs.
"use strict";

const { io, Manager } = require("socket.io-client");
const crypto = require("node:crypto");

const DEFAULT_TIMEOUT_MS = 5000;

/** Both transports; every behaviour test runs once per entry. */
const TRANSPORTS = ["websocket", "polling"];

/** Rejects with `what` when `promise` has not settled after `ms`. */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A unique-ish token for room and namespace names, so tests never see each other's traffic. */
function uid(prefix = "t") {
  return `${prefix}-${crypto.randomBytes(4).toString("hex")}`;
}

function clientOptions(transport, extra = {}) {
  return {
    transports: [transport],
    forceNew: true,
    reconnection: false,
    timeout: DEFAULT_TIMEOUT_MS,
    ...extra,
  };
}

/**
 * Connects to `${url}${nsp}` with only `transport`, resolving with the connected socket.
 * Every socket gets an Inbox (`socket.inbox`) that records all events it receives, and
 * `socket.disconnects` that records every disconnect reason.
 * Pass `manager` to multiplex several namespaces over one engine.io connection.
 */
function connect(url, nsp = "/", { transport = "websocket", manager, timeoutMs = DEFAULT_TIMEOUT_MS, ...opts } = {}) {
  const socket = manager ? manager.socket(nsp, opts) : io(`${url}${nsp}`, clientOptions(transport, opts));
  attach(socket);
  const connected = new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect_error on ${nsp} (${transport}): ${err.message}`)));
  });
  if (manager) socket.connect();
  return withTimeout(connected, timeoutMs, `connect to ${nsp} over ${transport}`).catch((err) => {
    socket.disconnect();
    throw err;
  });
}

/** A Manager (one engine.io connection) for multiplexing namespaces. */
function manager(url, transport) {
  return new Manager(url, clientOptions(transport, { autoConnect: false }));
}

/** Attaches an Inbox and disconnect tracking to a socket (connect() does this for you). */
function attach(socket) {
  if (socket.inbox) return socket;
  socket.inbox = new Inbox(socket);
  socket.disconnects = [];
  socket.on("disconnect", (reason) => socket.disconnects.push(reason));
  return socket;
}

/** Records every event a socket receives, in order, and lets a test wait for some. */
class Inbox {
  constructor(socket) {
    this.socket = socket;
    this.records = []; // {seq, event, args}
    this.forgotten = 0; // records dropped by clear(): seq counts them
    this.waiters = [];
    socket.onAny((event, ...args) => {
      const rec = { seq: this.forgotten + this.records.length, event, args };
      this.records.push(rec);
      this.waiters = this.waiters.filter((w) => !w.check(rec));
    });
  }

  /** Records of `event` (all events when omitted). */
  all(event) {
    return event === undefined ? this.records.slice() : this.records.filter((r) => r.event === event);
  }

  /** First argument of every `event` received. */
  data(event) {
    return this.all(event).map((r) => r.args[0]);
  }

  /**
   * Resolves with the first record (already received or future) of `event` whose first
   * argument satisfies `pred`.
   */
  waitFor(event, pred = () => true, { timeoutMs = DEFAULT_TIMEOUT_MS, what } = {}) {
    const found = this.records.find((r) => r.event === event && pred(r.args[0], r));
    if (found) return Promise.resolve(found);
    const p = new Promise((resolve) => {
      this.waiters.push({
        check: (rec) => {
          if (rec.event === event && pred(rec.args[0], rec)) {
            resolve(rec);
            return true;
          }
          return false;
        },
      });
    });
    return withTimeout(p, timeoutMs, what || `event "${event}" on socket ${this.socket.id}`);
  }

  /** Resolves once `n` records of `event` have arrived; returns them. */
  async waitForCount(event, n, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
    await this.waitFor(event, () => this.all(event).length >= n, {
      timeoutMs,
      what: `${n} "${event}" events on socket ${this.socket.id}`,
    }).catch((err) => {
      err.message += ` (got ${this.all(event).length})`;
      throw err;
    });
    return this.all(event);
  }

  /** Records received strictly before `rec` (and not forgotten). */
  before(rec) {
    return this.records.slice(0, Math.max(0, rec.seq - this.forgotten));
  }

  /** Forgets the records received so far (long runs that count events themselves). */
  clear() {
    this.forgotten += this.records.length;
    this.records = [];
  }
}

/**
 * Emits `event` with `arg` and resolves with the ack's first argument.
 * Rejects when no ack arrives within `timeoutMs`.
 */
async function ack(socket, event, arg, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, arg);
  } catch (err) {
    throw new Error(
      `no ack for "${event}" ${safeJson(arg)} on ${socket.nsp} within ${timeoutMs} ms (socket ${socket.id}, connected=${socket.connected}, disconnect reasons: ${safeJson(socket.disconnects || [])}): ${err.message}`,
    );
  }
}

/** Emits `event` with no argument at all and resolves with the ack's first argument. */
async function ackNoArg(socket, event, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event);
  } catch (err) {
    throw new Error(`no ack for "${event}" (no argument) within ${timeoutMs} ms: ${err.message}`);
  }
}

function safeJson(v) {
  try {
    const s = JSON.stringify(v, (_, x) => (x && x.type === "Buffer" ? `<Buffer ${x.data.length}>` : x));
    return s && s.length > 200 ? s.slice(0, 200) + "…" : s;
  } catch {
    return String(v);
  }
}

/**
 * Ordering fence. `publisher` publishes a unique `__fence` event to its whole namespace and
 * waits for its ack; each socket of `receivers` (all in the publisher's namespace) then waits
 * for it. Anything the server delivered to a receiver before acking an earlier publish is
 * queued on that receiver's connection before the fence, so once the fence has arrived
 * `socket.inbox.before(fenceRecord)` holds everything it will ever get from earlier
 * publishes. Resolves with a Map socket → fence record.
 */
async function fence(publisher, receivers, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const token = uid("fence");
  const res = await ack(publisher, "publish", { event: "__fence", data: token }, { timeoutMs });
  if (!res || res.ok !== true) throw new Error(`fence publish failed: ${safeJson(res)}`);
  const out = new Map();
  for (const s of receivers) {
    out.set(s, await s.inbox.waitFor("__fence", (d) => d === token, { timeoutMs, what: `fence ${token} on ${s.id}` }));
  }
  return out;
}

/**
 * Asserts that, up to a fence, `socket` received no event other than `__fence`s and the
 * ones listed in `allowed` (event names). Returns the fence record.
 */
async function expectNothingElse(publisher, sockets, allowed = []) {
  const fences = await fence(publisher, sockets);
  for (const [s, rec] of fences) {
    const unexpected = s.inbox.before(rec).filter((r) => r.event !== "__fence" && !allowed.includes(r.event));
    if (unexpected.length) {
      throw new Error(
        `socket ${s.id} on ${s.nsp} received unexpected events: ${safeJson(unexpected.map((r) => [r.event, ...r.args]))}`,
      );
    }
  }
  return fences;
}

/** Disconnects every socket (and closes managers), ignoring errors. */
function closeAll(...sockets) {
  for (const s of sockets.flat()) {
    try {
      s.disconnect();
    } catch {
      /* ignore */
    }
    try {
      if (s.io && s.io.engine) s.io.engine.close();
    } catch {
      /* ignore */
    }
  }
}

/** Rooms from a join/leave ack without the socket's own id room (servers may or may not list it). */
function userRooms(ackValue, socket) {
  return (ackValue.rooms || []).filter((r) => r !== socket.id);
}

/**
 * The rooms `socket` is in now, its own id room left out, sorted. The relay protocol has no
 * query: this leaves a room nobody ever joins, which changes nothing and acks the rooms.
 */
async function roomsOf(socket, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const res = await ack(socket, "leave", "__rooms-query__", { timeoutMs });
  if (!res || res.ok !== true || !Array.isArray(res.rooms)) throw new Error(`rooms of ${socket.id}: ${safeJson(res)}`);
  return userRooms(res, socket).sort();
}

/**
 * Resolves the `connect_error` message of a connect to `${url}${nsp}` the server refuses
 * (a middleware or auth refusal); rejects when it connects instead.
 */
function refused(url, nsp = "/", opts = {}) {
  const socket = io(`${url}${nsp}`, { forceNew: true, reconnection: false, timeout: DEFAULT_TIMEOUT_MS, ...opts });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      socket.disconnect();
      reject(new Error(`connected to ${nsp}, expected a refusal`));
    });
    socket.once("connect_error", (err) => {
      socket.disconnect();
      resolve(err.message);
    });
  });
}

module.exports = {
  DEFAULT_TIMEOUT_MS,
  refused,
  TRANSPORTS,
  ack,
  ackNoArg,
  attach,
  closeAll,
  connect,
  expectNothingElse,
  fence,
  manager,
  roomsOf,
  safeJson,
  uid,
  userRooms,
  withTimeout,
};
