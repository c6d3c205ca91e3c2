// Interop matrix rows 1–9 and 12 on MongoDB with the wasio nodes in `mode = "capped"`: they
// tail the capped collection with a tailable await-data cursor (no change stream, no replica
// set needed), while the Node.js node (`@socket.io/mongo-adapter` 0.4) keeps its change
// stream on the same collection: the two readers must interoperate. See lib/mongo-suite.js.
"use strict";

const { defineMongoSuite } = require("../lib/mongo-suite");

defineMongoSuite("capped");
