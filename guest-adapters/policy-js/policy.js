// A wasio access policy in JavaScript (wit/policy/policy.wit, world `access-policy`).
//
// The host asks it before a client connects, joins rooms or publishes; each answer is
// allow or deny with a reason the client is told. An exception that escapes here is a
// denial too (the host starts a fresh instance), so inputs are checked, not trusted.
//
// The rules come from `[auth] policy_options`, every key optional:
// {"require": "user", "deny_rooms": ["secret*", "ops"], "deny_events": ["forbidden"]}.
// Edit authorizeConnect, authorizeJoin and authorizePublish to make it yours.
//
// Build: bash build.sh OUT.wasm (componentize-qjs). WIT values in JS: records are
// objects with camelCase keys, variants `{tag, val}`, options `null`; an export
// returning `result` throws its error.

import log from "wasio:policy/log@0.1.0";

const NAME = "wasio-policy-js";
const VERSION = "0.1.0";
// JSON.parse recurses once per nesting level and, some 2000 levels down, exhausts the
// wasm stack (a trap): an auth with this many brackets counts as unparsable.
const MAX_BRACKETS = 256;

let require = null; // a key the handshake's `auth` must hold as a non-empty string
let denyRooms = []; // rooms no one may join or publish to: `name` exactly, or `prefix*`
let denyEvents = []; // events no one may publish

const allow = { tag: "allow" };
const deny = (reason) => ({ tag: "deny", val: reason });

// Whether `s` can go back to the host: a lone surrogate cannot be lowered.
function wellFormed(s) {
  try {
    encodeURIComponent(s);
    return true;
  } catch {
    return false;
  }
}

// `options[key]` as a string; absent or null is null, another type an error.
function stringOption(options, key) {
  const value = options[key] ?? null;
  if (value !== null && !(typeof value === "string" && wellFormed(value))) throw `options.${key} must be a string`;
  return value;
}

// `options[key]` as a list of strings; absent or null is empty, another type an error.
function listOption(options, key) {
  const value = options[key] ?? [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string" && wellFormed(v))) {
    throw `options.${key} must be a list of strings`;
  }
  return value;
}

// `text` as a JSON object, or {} when it is not one (never throws).
function parseObject(text) {
  if (text.length - text.replaceAll("[", "").replaceAll("{", "").length > MAX_BRACKETS) return {};
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

// The first of `rooms` a denyRooms entry matches (`prefix*`, else exact), or undefined.
function reserved(rooms) {
  const matches = (room, p) => (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : room === p);
  return rooms.find((room) => denyRooms.some((p) => matches(room, p)));
}

export const policy = {
  init(text) {
    let options;
    try {
      options = JSON.parse(text);
    } catch (e) {
      throw `options: not JSON: ${e}`;
    }
    if (options === null || typeof options !== "object" || Array.isArray(options)) throw "options: not a JSON object";
    // Unknown keys are ignored; a known key of the wrong type is refused.
    require = stringOption(options, "require");
    denyRooms = listOption(options, "deny_rooms");
    denyEvents = listOption(options, "deny_events");
    log.log(
      "info",
      `require auth.${require || "(nothing)"}, ${denyRooms.length} reserved room patterns, ${denyEvents.length} denied events`,
    );
    return { name: NAME, version: VERSION };
  },

  authorizeConnect(request) {
    if (require === null) return allow;
    // Unparsable or not an object: the key is missing, not a trap.
    const value = parseObject(request.auth)[require];
    return typeof value === "string" && value !== "" ? allow : deny(`auth.${require} is missing`);
  },

  authorizeJoin(socket, rooms) {
    const room = reserved(rooms);
    return room === undefined ? allow : deny(`room ${room} is reserved`);
  },

  authorizePublish(socket, rooms, event, size) {
    if (denyEvents.includes(event)) return deny(`event ${event} is not allowed`);
    // null is the whole namespace: no room to check.
    const room = reserved(rooms ?? []);
    return room === undefined ? allow : deny(`room ${room} is reserved`);
  },
};
