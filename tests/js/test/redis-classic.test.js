// Interop matrix rows 1–9 and 12 on Redis, classic mode (`createAdapter`: PUBLISH /
// PSUBSCRIBE), mixed cluster of wasio and Node.js socket.io nodes, with responses on the
// shared response channel and, second, on each requester's own channel
// (`publishOnSpecificResponseChannel`). See lib/redis-suite.js.
"use strict";

const { defineRedisSuite } = require("../lib/redis-suite");

defineRedisSuite("classic", { specific: false });
defineRedisSuite("classic", { specific: true });
