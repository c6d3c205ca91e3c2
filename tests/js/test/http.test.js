// Plain HTTP endpoints: health, the demo page and the client bundle it loads.
"use strict";

const { describe, it } = require("node:test");
const assert = require("node:assert/strict");
const { useServer } = require("../lib/harness");
const { httpGet } = require("../lib/server");

const ctx = useServer();

describe("http", () => {
  it("GET /healthz answers 200 with JSON status ok", async () => {
    const res = await httpGet(`${ctx.server.url}/healthz`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") || "", /application\/json/);
    assert.equal(JSON.parse(res.body).status, "ok");
  });

  it("GET / serves the demo page", async () => {
    const res = await httpGet(`${ctx.server.url}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") || "", /text\/html/);
    assert.match(res.body, /<title>[^<]*wasio[^<]*<\/title>/i, "the page's title names wasio");
    assert.match(res.body, /<script src="\/socket\.io\.min\.js"><\/script>/, "the page loads the client bundle from /socket.io.min.js");
  });

  it("GET /socket.io.min.js serves the socket.io client bundle the page loads", async () => {
    const res = await httpGet(`${ctx.server.url}/socket.io.min.js`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") || "", /javascript/);
    assert.ok(res.body.length > 10000, `bundle is ${res.body.length} bytes`);
    // The bundle defines the global `io` (UMD) and speaks protocol v4 (socket.io-client 4.x).
    assert.match(res.body, /\bio\b/);
    assert.match(res.body, /Socket\.IO v4|EIO/);
  });
});
