// Interop matrix rows 1–9 and 12 on MongoDB, mixed cluster of wasio nodes and a Node.js
// socket.io node with `@socket.io/mongo-adapter` 0.4, every node reading the shared capped
// collection through a change stream (wasio `mode = "change-stream"`, the default).
// See lib/mongo-suite.js.
"use strict";

const { defineMongoSuite } = require("../lib/mongo-suite");

defineMongoSuite("change-stream");
