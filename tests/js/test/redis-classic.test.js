// Interop matrix rows 1–9 and 12 on Redis, classic mode (`createAdapter`: PUBLISH /
// PSUBSCRIBE), mixed cluster of wasio and Node.js socket.io nodes. See lib/redis-suite.js.
"use strict";

require("../lib/redis-suite").defineRedisSuite("classic");
