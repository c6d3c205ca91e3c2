// A wasio cluster adapter in JavaScript: the `wasio-json` protocol
// (guest-adapters/json-protocol.md) over publish/subscribe. Every node of a namespace
// listens on `{prefix}#{nsp}#` and on its own `{prefix}#{nsp}#{uid}#` for answers.
// Nothing here blocks: the host calls an export, the adapter publishes and returns;
// answers, timers and subscriber counts come back later as calls to other exports.
//
// Build: bash build.sh adapter.wasm (componentize-qjs, world `pubsub-adapter`).
// WIT values in JS: records are objects with camelCase keys, variants `{tag, val}`,
// options `null`, list<u8> a Uint8Array; an export returning `result` throws its error.

import log from "wasio:adapter/log@0.1.0";
import timers from "wasio:adapter/timers@0.1.0";
import sockets from "wasio:adapter/sockets@0.1.0";
import requests from "wasio:adapter/requests@0.1.0";
import pubsub from "wasio:adapter/pubsub@0.1.0";

let uid = ""; // this node: init-args.node-id, kept across a hot swap
let ownPrefix = ""; // how our own messages start, as UTF-8 bytes in a string (see onMessage)
let prefix = "wasio-json";
let requestsTimeout = 5000;
const channels = new Map(); // subscribed channel -> its namespace
const pending = new Map(); // request id -> our request, while it waits for other nodes
const timerRequest = new Map(); // timer id -> request id
const remote = new Map(); // handle -> another node's request we answer: {nsp, uid, rid}
let nextHandle = 1;

// Each answer type and the request type it answers.
const ANSWERS = { sockets: "fetch", "rooms-reply": "rooms", "emit-ack": "emit", count: "broadcast-ack", ack: "broadcast-ack" };

const allNodes = (nsp) => `${prefix}#${nsp}#`;
const nodeChannel = (nsp, node) => `${prefix}#${nsp}#${node}#`;
const invalid = (why) => ({ tag: "invalid", val: why }); // thrown: the export returns err(invalid)

// `v` and `uid` first: every message of ours starts with `ownPrefix`.
function publish(channel, nsp, msg) {
  pubsub.publish(channel, utf8Encode(JSON.stringify({ v: 1, uid, nsp, ...msg })), "classic");
}

// An answer to another node's request. Failing to send it loses only that answer
// (the requester times out), so it is logged rather than failing the call.
function answer(r, msg) {
  try {
    publish(nodeChannel(r.nsp, r.uid), r.nsp, { rid: r.rid, ...msg });
  } catch (e) {
    log.log("warn", `${msg.type} for request ${r.rid} of ${r.uid} not sent: ${e.val ?? e}`);
  }
}

function relay(nsp, opts, msg) {
  if (!opts.flags.local) publish(allNodes(nsp), nsp, { ...msg, opts: wireOpts(opts) });
}

export const guest = {
  init({ nodeId, options }) {
    let opts;
    try {
      opts = JSON.parse(options);
    } catch (e) {
      throw invalid(`options are not JSON: ${e}`);
    }
    for (const [key, value] of Object.entries(opts ?? {})) {
      if (key === "prefix" && typeof value === "string") prefix = value;
      else if (key === "requestsTimeout" && Number.isInteger(value) && value > 0 && value <= U32) requestsTimeout = value;
      else if (key === "prefix") throw invalid(`option prefix: expected a string, got ${JSON.stringify(value)}`);
      else if (key === "requestsTimeout") throw invalid(`option requestsTimeout: expected milliseconds (1 to 2^32-1), got ${JSON.stringify(value)}`);
      else throw invalid(`unknown option ${key} (known: prefix, requestsTimeout)`);
    }
    uid = nodeId;
    ownPrefix = unescape(encodeURIComponent(`{"v":1,"uid":${JSON.stringify(uid)},`));
    return { name: "json-js", version: "0.1.0" };
  },

  open(nsp) {
    for (const channel of [allNodes(nsp), nodeChannel(nsp, uid)]) {
      pubsub.subscribe(channel, "classic");
      channels.set(channel, nsp);
    }
  },

  close() {
    // Try every channel; report the last failure (the host only logs it).
    let failure;
    for (const channel of channels.keys()) {
      try {
        pubsub.unsubscribe(channel, "classic");
      } catch (e) {
        failure = e;
      }
    }
    channels.clear();
    if (failure) throw failure;
  },

  // --- this node's operations, for the other nodes --------------------------------

  broadcast(nsp, packet, opts) {
    relay(nsp, opts, { type: "broadcast", packet: packet.toBase64() });
  },
  addSockets(nsp, opts, rooms) {
    relay(nsp, opts, { type: "join", rooms });
  },
  delSockets(nsp, opts, rooms) {
    relay(nsp, opts, { type: "leave", rooms });
  },
  disconnectSockets(nsp, opts, close) {
    relay(nsp, opts, { type: "disconnect", close });
  },

  fetchSockets(nsp, id, opts) {
    request(nsp, id, { type: "fetch", opts: wireOpts(opts) }, requestsTimeout);
  },
  allRooms(nsp, id, opts) {
    request(nsp, id, { type: "rooms", opts: wireOpts(opts) }, requestsTimeout);
  },
  broadcastWithAck(nsp, id, packet, opts, timeoutMs) {
    const msg = { type: "broadcast-ack", packet: packet.toBase64(), opts: wireOpts(opts), timeout: timeoutMs };
    request(nsp, id, msg, timeoutMs);
  },
  serverSideEmit(nsp, id, data) {
    if (id === null) publish(allNodes(nsp), nsp, { type: "emit", data: data.toBase64() });
    else request(nsp, id, { type: "emit", data: data.toBase64() }, requestsTimeout);
  },
  serverCount(nsp, id) {
    // No message: the subscriber count of the namespace is the answer (onCounts).
    pending.set(id, { type: "server-count" });
    countNodes(nsp, id);
  },

  // --- events ----------------------------------------------------------------------

  onMessage(channel, pattern, payload) {
    // Our own messages come back on the all-nodes channel: skip them before decoding.
    if (atob(payload.subarray(0, ownPrefix.length).toBase64()) === ownPrefix) return;
    const msg = parse(payload);
    if (!isObject(msg) || msg.v !== 1) throw invalid("not a version 1 message");
    const from = str(msg.uid, "uid");
    const nsp = str(msg.nsp, "nsp");
    if (typeof msg.type !== "string" || !Object.hasOwn(handlers, msg.type)) throw invalid(`unknown type ${msg.type}`);
    if (from === uid || channels.get(channel) !== nsp) return; // our own, or another namespace's
    handlers[msg.type](msg, { nsp, uid: from });
  },

  onTimer(id) {
    const rid = timerRequest.get(id);
    if (rid === undefined) return;
    const req = pending.get(rid);
    const acks = req.type === "broadcast-ack" ? `, ${req.acks} of ${req.clients} client acks` : "";
    const why = `${req.type} request ${rid}: ${req.nodes.size} of ${req.expected ?? "?"} nodes answered in time${acks}`;
    finish(rid, { tag: "err", val: { tag: "timeout", val: why } });
  },

  onCounts(ticket, counts) {
    const req = pending.get(ticket); // the ticket is the request id
    if (!req) return;
    if (counts.tag === "err") return finish(ticket, counts);
    const nodes = counts.val[0];
    if (req.type === "server-count") {
      requests.reply(ticket, { tag: "server-count", val: nodes });
      return finish(ticket, { tag: "ok" });
    }
    req.expected = nodes - 1; // every node but this one
    settle(ticket, req);
  },

  onLocalAck(handle, ack) {
    const r = remote.get(handle);
    if (!r) return;
    if (ack === null) remote.delete(handle); // the last call for this handle
    else answer(r, { type: "ack", data: ack.toBase64() });
  },

  onServerSideAck(handle, data) {
    const r = remote.get(handle);
    if (!r) return;
    remote.delete(handle);
    answer(r, { type: "emit-ack", data: data.toBase64() });
  },

  // Not used by this protocol: no documents, no per-room channels, and the host
  // replays the subscriptions itself after a reconnect.
  onDocument() {},
  onRooms() {},
  onConnection() {},
};

// --- our requests: publish, then wait for every other node --------------------------

function request(nsp, id, msg, timeoutMs) {
  publish(allNodes(nsp), nsp, { ...msg, rid: id });
  const timer = timers.start(timeoutMs);
  timerRequest.set(timer, id);
  // nodes: uids that answered (sent `count`, for broadcast-ack); clients: their counts summed.
  pending.set(id, { type: msg.type, timer, expected: null, nodes: new Set(), clients: 0, acks: 0 });
  countNodes(nsp, id);
}

// How many nodes subscribe to the namespace (this one included) comes to onCounts.
function countNodes(nsp, id) {
  try {
    pubsub.countSubscribers([allNodes(nsp)], "classic", id);
  } catch (e) {
    finish(id, { tag: "err", val: e });
  }
}

// Done when every other node answered and, for broadcast-ack, every client counted acked.
function settle(rid, req) {
  if (req.expected !== null && req.nodes.size >= req.expected && req.acks >= req.clients) {
    finish(rid, { tag: "ok" });
  }
}

function finish(rid, outcome) {
  const req = pending.get(rid);
  pending.delete(rid);
  if (req.timer !== undefined) {
    timers.cancel(req.timer);
    timerRequest.delete(req.timer);
  }
  requests.finish(rid, outcome);
}

// One node's answer to our request `msg.rid`: passed on at once, and counted.
function onAnswer(msg, from, part) {
  const rid = num(msg.rid, "rid");
  const req = pending.get(rid);
  if (!req || req.type !== ANSWERS[msg.type]) return; // finished, unknown, or not that kind
  requests.reply(rid, part);
  if (msg.type === "ack") req.acks++;
  else req.nodes.add(from);
  if (msg.type === "count") req.clients += part.val;
  settle(rid, req);
}

// --- messages from other nodes, by type ----------------------------------------------
// `r` is the requester: {nsp, uid} and, once known, the `rid` its answers go to.

const handlers = {
  broadcast(m, r) {
    sockets.broadcast(r.nsp, bytes(m.packet, "packet"), opts(m.opts));
  },
  join(m, r) {
    sockets.addSockets(r.nsp, opts(m.opts), strs(m.rooms, "rooms"));
  },
  leave(m, r) {
    sockets.delSockets(r.nsp, opts(m.opts), strs(m.rooms, "rooms"));
  },
  disconnect(m, r) {
    if (typeof m.close !== "boolean") throw invalid("close: not a boolean");
    sockets.disconnect(r.nsp, opts(m.opts), m.close);
  },
  fetch(m, r) {
    r.rid = num(m.rid, "rid");
    const found = sockets.fetch(r.nsp, opts(m.opts)).map((s) => ({
      id: s.id, serverId: s.serverId, rooms: s.rooms, handshake: s.handshake.toBase64(), data: s.data.toBase64(),
    }));
    answer(r, { type: "sockets", sockets: found });
  },
  rooms(m, r) {
    r.rid = num(m.rid, "rid");
    answer(r, { type: "rooms-reply", rooms: sockets.rooms(r.nsp, opts(m.opts)) });
  },
  emit(m, r) {
    const data = bytes(m.data, "data");
    if (m.rid == null) return sockets.serverSideEmit(r.nsp, data, null);
    r.rid = num(m.rid, "rid");
    const handle = nextHandle++;
    sockets.serverSideEmit(r.nsp, data, handle);
    remote.set(handle, r); // its ack comes in a later call (onServerSideAck), never during this one
  },
  "broadcast-ack"(m, r) {
    r.rid = num(m.rid, "rid");
    const [packet, o, timeout] = [bytes(m.packet, "packet"), opts(m.opts), num(m.timeout, "timeout", U32)];
    const handle = nextHandle++;
    const count = sockets.broadcastWithAck(r.nsp, packet, o, timeout, handle);
    remote.set(handle, r); // acks come in later calls (onLocalAck)
    answer(r, { type: "count", count }); // before any ack: the requester waits for `count` acks
  },

  sockets(m, r) {
    if (!Array.isArray(m.sockets)) throw invalid("sockets: not a list");
    const found = m.sockets.map((s) => {
      if (!isObject(s)) throw invalid("sockets: not a list of objects");
      const [handshake, data] = [bytes(s.handshake, "handshake"), bytes(s.data, "data")];
      return { id: str(s.id, "id"), serverId: str(s.serverId, "serverId"), rooms: strs(s.rooms, "rooms"), handshake, data };
    });
    onAnswer(m, r.uid, { tag: "sockets", val: found });
  },
  "rooms-reply"(m, r) {
    onAnswer(m, r.uid, { tag: "rooms", val: strs(m.rooms, "rooms") });
  },
  "emit-ack"(m, r) {
    onAnswer(m, r.uid, { tag: "server-ack", val: bytes(m.data, "data") });
  },
  count(m, r) {
    onAnswer(m, r.uid, { tag: "client-count", val: num(m.count, "count", U32) });
  },
  ack(m, r) {
    onAnswer(m, r.uid, { tag: "ack", val: bytes(m.data, "data") });
  },
};

// --- JSON shapes ---------------------------------------------------------------------

function wireOpts(o) {
  const { local, broadcast, volatile } = o.flags;
  return { rooms: o.rooms, except: o.except, flags: { local, broadcast, volatile }, sid: o.sid, serverId: o.serverId };
}

function opts(o) {
  if (!isObject(o) || !isObject(o.flags)) throw invalid("opts: not an object with flags");
  const flags = {};
  for (const f of ["local", "broadcast", "volatile"]) {
    if (typeof o.flags[f] !== "boolean") throw invalid(`opts.flags.${f}: not a boolean`);
    flags[f] = o.flags[f];
  }
  return {
    flags, rooms: strs(o.rooms, "opts.rooms"), except: strs(o.except, "opts.except"),
    sid: o.sid == null ? null : str(o.sid, "opts.sid"),
    serverId: o.serverId == null ? null : str(o.serverId, "opts.serverId"),
  };
}

const U32 = 0xffffffff;
const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

// A WIT string must be valid Unicode: JSON's "\ud800" (a lone surrogate) is not, and
// would trap when handed to the host.
const isString = (v) => typeof v === "string" && v.isWellFormed();

function str(v, field) {
  if (!isString(v)) throw invalid(`${field}: not a string`);
  return v;
}

function strs(v, field) {
  if (!Array.isArray(v) || !v.every(isString)) throw invalid(`${field}: not a list of strings`);
  return v;
}

function num(v, field, max = Number.MAX_SAFE_INTEGER) {
  if (!Number.isSafeInteger(v) || v < 0 || v > max) throw invalid(`${field}: not an integer in 0..${max}`);
  return v;
}

function bytes(v, field) {
  try {
    return Uint8Array.fromBase64(str(v, field), { lastChunkHandling: "strict" }); // padding required
  } catch {
    throw invalid(`${field}: not base64`);
  }
}

// --- bytes and text ------------------------------------------------------------------
// QuickJS has no TextEncoder/TextDecoder, and a JS loop costs ~80 ns an iteration here,
// so text goes to and from UTF-8 through native functions only: base64 and atob/btoa
// turn bytes into one char per byte, escape/unescape turn those into %XX, and
// decodeURIComponent/encodeURIComponent read and write UTF-8 as %XX (and throw on
// invalid UTF-8).

const utf8Encode = (text) => Uint8Array.fromBase64(btoa(unescape(encodeURIComponent(text))));
const utf8Decode = (bytes) => decodeURIComponent(escape(atob(bytes.toBase64())));

function parse(payload) {
  // Before decoding: a hostile message (100 000 brackets) is refused within its first
  // few kilobytes, not after copying it whole a few times under the call's deadline.
  if (tooDeep(payload)) throw invalid(`JSON nested deeper than ${MAX_DEPTH} levels`);
  let text;
  try {
    text = utf8Decode(payload);
  } catch {
    throw invalid("not UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalid(`not JSON: ${e}`);
  }
}

// JSON.parse recurses once per nesting level and, 2000 to 3000 levels down, exhausts the
// wasm stack: a trap, not an exception. The UTF-8 bytes are scanned (brackets and quotes
// are ASCII), skipping strings, and the scan stops as soon as it is too deep.
const MAX_DEPTH = 1000;
const [OPEN_A, OPEN_O, CLOSE_A, CLOSE_O, QUOTE, BACKSLASH] = [0x5b, 0x7b, 0x5d, 0x7d, 0x22, 0x5c];

function tooDeep(bytes) {
  let depth = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === OPEN_A || c === OPEN_O) {
      if (++depth > MAX_DEPTH) return true;
    } else if (c === CLOSE_A || c === CLOSE_O) depth--;
    else if (c === QUOTE) {
      // To the closing quote; an escaped character is skipped whole.
      for (i++; i < bytes.length && bytes[i] !== QUOTE; i++) if (bytes[i] === BACKSLASH) i++;
    }
  }
  return false;
}
