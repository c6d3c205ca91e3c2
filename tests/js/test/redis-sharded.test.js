// Interop matrix rows 1–8 and 12 on Redis, sharded mode (`createShardedAdapter`:
// SPUBLISH / SSUBSCRIBE, Redis >= 7), mixed cluster of wasio and Node.js socket.io nodes,
// with subscriptionMode "static" (every message on the namespace's channel) and "dynamic"
// (Node's default: a channel per public room, for broadcasts to exactly one room).
// See lib/redis-suite.js.
"use strict";

const { defineRedisSuite } = require("../lib/redis-suite");

defineRedisSuite("sharded", { subscriptionMode: "static" });
defineRedisSuite("sharded", { subscriptionMode: "dynamic" });
