// Interop matrix rows 1–8 and 12 on Redis, sharded mode (`createShardedAdapter`:
// SPUBLISH / SSUBSCRIBE, Redis >= 7, subscriptionMode "dynamic"), mixed cluster of wasio
// and Node.js socket.io nodes. See lib/redis-suite.js.
"use strict";

require("../lib/redis-suite").defineRedisSuite("sharded");
