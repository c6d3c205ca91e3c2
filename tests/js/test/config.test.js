// Bad configs are refused up front: exit code 2, and stderr names the config file and the cause.
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { configText, freePort, guestsDir, runWasio, tempDir, writeFile } = require("../lib/server");

function faultySkip() {
  const dir = guestsDir();
  if (!dir) return "WASIO_TEST_GUESTS is not set";
  if (!fs.existsSync(path.join(dir, "faulty.wasm"))) return `${path.join(dir, "faulty.wasm")} does not exist`;
  return false;
}

let tmp;
before(async () => {
  tmp = await tempDir();
});
after(async () => {
  if (tmp) await tmp.cleanup();
});

// Each case: a config (text, written to <name>.toml) and what its error must mention.
async function badConfigs() {
  const missing = path.join(tmp.dir, "missing-adapter.wasm");
  const garbage = await writeFile(tmp.dir, "garbage.wasm", crypto.randomBytes(4096));
  // A core module (not a component): the wasm magic with version 1.
  const coreModule = await writeFile(tmp.dir, "core-module.wasm", Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  return [
    {
      name: "unknown-key",
      text: configText().replace("port = 0", "port = 0\nprot = 1"),
      cause: /\bprot\b/,
      causeText: "the unknown key `prot`",
    },
    {
      name: "missing-wasm",
      text: configText({ wasm: missing }),
      cause: /missing-adapter\.wasm|no such file|not found/i,
      causeText: "the missing file",
    },
    {
      name: "not-a-component",
      text: configText({ wasm: garbage }),
      cause: /garbage\.wasm|component|magic|invalid|parse|decode/i,
      causeText: "the file that is not a component",
    },
    {
      name: "core-module",
      text: configText({ wasm: coreModule }),
      cause: /core-module\.wasm|component|invalid|parse|decode/i,
      causeText: "the core module that is not a component",
    },
    {
      name: "toml-syntax",
      text: "[server\nport = = 1\n",
      cause: /line|expected|invalid|parse|TOML/i,
      causeText: "the syntax error",
    },
  ];
}

describe("config", () => {
  it("serve refuses each bad config with exit code 2, naming the file and the cause", async () => {
    for (const c of await badConfigs()) {
      const configPath = await writeFile(tmp.dir, `${c.name}.toml`, c.text);
      const port = await freePort();
      const res = await runWasio(["serve", "--config", configPath, "--port", String(port)], { timeoutMs: 15000 });
      assert.equal(res.timedOut, false, `${c.name}: wasio serve did not exit (it should refuse the config); stderr:\n${res.stderr}`);
      assert.equal(res.code, 2, `${c.name}: exit code; stderr:\n${res.stderr}`);
      assert.ok(res.stderr.includes(configPath), `${c.name}: stderr names ${configPath}; stderr:\n${res.stderr}`);
      assert.match(res.stderr, c.cause, `${c.name}: stderr names ${c.causeText}; stderr:\n${res.stderr}`);
    }
  });

  it("serve --check exits 2 on each bad config and 0 on a good one", async () => {
    for (const c of await badConfigs()) {
      const configPath = await writeFile(tmp.dir, `check-${c.name}.toml`, c.text);
      const res = await runWasio(["serve", "--config", configPath, "--check"], { timeoutMs: 15000 });
      assert.equal(res.code, 2, `--check ${c.name}: exit code; stderr:\n${res.stderr}`);
      assert.ok(res.stderr.includes(configPath), `--check ${c.name}: stderr names the config file; stderr:\n${res.stderr}`);
      assert.match(res.stderr, c.cause, `--check ${c.name}: stderr names ${c.causeText}; stderr:\n${res.stderr}`);
    }
    const good = await writeFile(tmp.dir, "good.toml", configText());
    const res = await runWasio(["serve", "--config", good, "--check"], { timeoutMs: 15000 });
    assert.equal(res.timedOut, false, "--check on a good config returns (it must not start serving)");
    assert.equal(res.code, 0, `--check on a good config; stderr:\n${res.stderr}`);
  });

  it("serve --check accepts the faulty test guest as a component", { skip: faultySkip() }, async () => {
    const cfg = await writeFile(tmp.dir, "faulty.toml", configText({ wasm: path.join(guestsDir(), "faulty.wasm") }));
    const res = await runWasio(["serve", "--config", cfg, "--check"], { timeoutMs: 30000 });
    assert.equal(res.code, 0, `stderr:\n${res.stderr}`);
  });

  it("a config file that does not exist is refused with exit code 2", async () => {
    const nowhere = path.join(tmp.dir, "no-such-config.toml");
    const res = await runWasio(["serve", "--config", nowhere, "--check"], { timeoutMs: 15000 });
    assert.equal(res.code, 2, `stderr:\n${res.stderr}`);
    assert.ok(res.stderr.includes(nowhere), `stderr names the file; stderr:\n${res.stderr}`);
  });
});
