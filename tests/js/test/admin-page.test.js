// The admin page (issue 8) in headless Chromium (Debian's `chromium`, driven by
// playwright-core; no browser is downloaded). Two `wasio serve` nodes on Redis (classic,
// a key prefix of their own): A with its admin API (history sampled every 200 ms), B
// without. Clients on both. The page, opened at http://ADMIN/admin#token=..., must show:
// A's node id, the adapter's name, version and sha256 (shortened, full on hover), both
// nodes with their sockets ("this node" on A) and the server count, A's connections now
// and over time (a chart that grows when more clients connect). A screenshot is decoded
// (a small PNG decoder below, node's zlib) and the chart's line colour must be in the
// chart's box, across it. Then the page's swap form: a path (redis_next.wasm, version
// 0.1.1-next), builtin:redis with options JSON, an uploaded .wasm (file input), the
// rollback button, each checked in the page and through GET /admin/adapter; a swap to a
// missing path and options that are not JSON show their error and change nothing. A
// wrong token and an unreachable node show in the banner.
//
// WASIO_TEST_CHROMIUM   the browser (default /usr/bin/chromium; `apt-get install chromium`)
// WASIO_TEST_KEEP=1     keep the screenshot (its path is printed)
"use strict";

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const zlib = require("node:zlib");
const { connect, closeAll, uid, safeJson } = require("../lib/client");
const { REDIS_URL } = require("../lib/cluster");
const { configText, guestsDir, httpGet, startServer, tempDir } = require("../lib/server");
const { startAdminServer } = require("../lib/admin");

const CHROMIUM = process.env.WASIO_TEST_CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = 20000;
const SWAP_WAIT_MS = 60000;
const VIEWPORT = { width: 1280, height: 1000 };
const NEXT_VERSION = "0.1.1-next";

function loadPlaywright() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`chromium is missing: ${CHROMIUM} does not exist. Install Debian's chromium (apt-get install chromium; tests/run does) or set WASIO_TEST_CHROMIUM`);
  }
  try {
    return require("playwright-core");
  } catch (err) {
    throw new Error(`playwright-core is missing (npm ci in tests/js): ${err.message}`);
  }
}

function nextWasm() {
  const dir = guestsDir();
  if (!dir) throw new Error("WASIO_TEST_GUESTS is not set: it names the directory of redis_next.wasm");
  const p = path.resolve(dir, "redis_next.wasm");
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist: cargo build -p wasio (host/build.rs builds tests/redis-next)`);
  return p;
}

/**
 * Decodes an 8-bit, non-interlaced truecolour PNG (what Chromium's screenshots are):
 * {width, height, rgb(x, y) → [r, g, b]}.
 */
function decodePng(buf) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(buf.length > 8 && buf.subarray(0, 8).equals(signature), "the screenshot is a PNG");
  let width;
  let height;
  let depth;
  let colorType;
  let interlace;
  const idat = [];
  for (let pos = 8; pos + 8 <= buf.length; ) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString("latin1", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    pos += 12 + len;
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      [depth, colorType] = [data[8], data[9]];
      interlace = data[12];
    } else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
  }
  if (depth !== 8 || ![2, 6].includes(colorType) || interlace !== 0) {
    throw new Error(`PNG: bit depth ${depth}, colour type ${colorType}, interlace ${interlace}: only 8-bit RGB(A), not interlaced, is decoded here`);
  }
  const bpp = colorType === 6 ? 4 : 3;
  const stride = width * bpp;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  assert.equal(raw.length, height * (stride + 1), "PNG: the image data has the size the header gives");
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    const up = (y - 1) * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[row + i - bpp] : 0;
      const b = y > 0 ? px[up + i] : 0;
      const c = y > 0 && i >= bpp ? px[up + i - bpp] : 0;
      let pred;
      switch (filter) {
        case 0: pred = 0; break;
        case 1: pred = a; break;
        case 2: pred = b; break;
        case 3: pred = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c;
          const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
          pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`PNG: unknown filter ${filter} on row ${y}`);
      }
      px[row + i] = (line[i] + pred) & 0xff;
    }
  }
  return {
    width,
    height,
    rgb: (x, y) => {
      const o = y * stride + x * bpp;
      return [px[o], px[o + 1], px[o + 2]];
    },
  };
}

describe("the admin page in headless Chromium", () => {
  const key = uid("admin-page");
  const options = { key, requestsTimeout: 1000 };
  const nodeConfig = {
    wasm: "builtin:redis",
    datasource: "cache",
    options,
    requestTimeoutMs: 3000,
    datasources: { cache: { connector: "redis", url: REDIS_URL } },
  };
  let A;
  let B;
  let idA;
  let idB;
  let browser;
  let page;
  let shots;
  const clients = { A: [], B: [] };

  /**
   * Waits until `fn(arg)` holds in the page; on a timeout, fails naming `what` with what
   * the page shows (the banner, the header, the swap result).
   */
  async function waitPage(what, fn, arg, { timeoutMs = WAIT_MS, on = page } = {}) {
    try {
      return await on.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
    } catch (err) {
      let shown = "";
      try {
        shown = await on.evaluate(() => {
          const t = (id) => (document.getElementById(id) || {}).textContent || "";
          return JSON.stringify({ banner: t("banner"), node: t("node-id"), adapter: [t("adapter-name"), t("adapter-version"), t("adapter-sha")], servers: t("server-count"), nodes: t("nodes"), connections: t("connections"), swap: t("swap-result") });
        });
      } catch {
        /* the page is gone */
      }
      throw new Error(`timed out after ${timeoutMs} ms waiting for the page to show ${what}; it shows ${shown}\n${err.message.split("\n")[0]}`);
    }
  }
  const textOf = (id) => page.evaluate((i) => document.getElementById(i).textContent, id);

  async function connectTo(node, label, n) {
    for (let i = 0; i < n; i++) clients[label].push(await connect(node.url, "/", { transport: "websocket" }));
  }

  before(async () => {
    const { chromium } = loadPlaywright();
    [A, B] = await Promise.all([
      // `extra` lands in the [admin] table configText writes last.
      startAdminServer({ ...nodeConfig, extra: "history_interval_ms = 200" }),
      startServer({ config: configText(nodeConfig) }),
    ]);
    idA = (await A.health()).json.node_id;
    idB = (await B.health()).json.node_id;
    assert.ok(idA && idB && idA !== idB, `two node ids from /healthz: ${idA}, ${idB}`);
    await connectTo(A, "A", 3);
    await connectTo(B, "B", 2);
    shots = await tempDir();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: VIEWPORT, deviceScaleFactor: 1 });
  });

  after(async () => {
    closeAll([...clients.A, ...clients.B]);
    if (browser) await browser.close();
    const died = [];
    for (const [label, n] of [["A", A], ["B", B]]) {
      if (!n) continue;
      const res = await n.stop();
      if (res.exitedEarly) died.push(`${label} (code ${res.code}, signal ${res.signal}):\n${res.stderr}`);
    }
    if (shots) {
      if (process.env.WASIO_TEST_KEEP) process.stderr.write(`admin page screenshots kept in ${shots.dir}\n`);
      else await shots.cleanup();
    }
    if (died.length) throw new Error(`nodes died during the test: ${died.join("\n")}`);
  });

  it("GET /admin serves the page without a token; the API still asks for one", async () => {
    const res = await httpGet(`${A.admin.base}/admin`);
    assert.equal(res.status, 200, `GET /admin: ${res.body.slice(0, 200)}`);
    assert.match(res.headers.get("content-type") || "", /^text\/html/, "GET /admin is HTML");
    assert.match(res.body, /<title>wasio admin<\/title>/);
    const overview = await A.admin.request("GET", "/admin/overview", { auth: false });
    assert.equal(overview.status, 401, `GET /admin/overview without a token: ${overview.body.slice(0, 200)}`);
  });

  it("a wrong token shows a 401 in the banner", async () => {
    const other = await browser.newPage({ viewport: VIEWPORT });
    try {
      await other.goto(`${A.admin.base}/admin#token=not-the-token`);
      await waitPage("a 401 banner", () => /401/.test(document.getElementById("banner").textContent) && document.getElementById("banner").offsetHeight > 0, null, { on: other });
      assert.equal(await other.evaluate(() => document.getElementById("node-id").textContent), "…", "nothing of the node is shown");
    } finally {
      await other.close();
    }
  });

  it("shows this node, the adapter, the nodes seen with their sockets, the server count and the connections", async () => {
    const st = await A.admin.status();
    assert.equal(st.name, "redis", `A runs the Redis guest: ${safeJson(st)}`);
    await page.goto(`${A.admin.base}/admin#token=${encodeURIComponent(A.admin.token)}`);
    assert.equal(new URL(page.url()).hash, "", "the token is taken out of the address bar");
    await waitPage(`node id ${idA}`, (id) => document.getElementById("node-id").textContent === id, idA);
    await waitPage(
      `adapter ${st.name} ${st.version} ${st.sha256.slice(0, 12)}`,
      (s) => {
        const t = (id) => document.getElementById(id).textContent;
        const sha = document.getElementById("adapter-sha");
        return t("adapter-name") === s.name && t("adapter-version") === s.version && sha.textContent.startsWith(s.sha256.slice(0, 12)) && sha.title === s.sha256 && t("adapter-source") === s.source && t("adapter-datasource") === s.datasource;
      },
      st,
    );
    // Both nodes, with their sockets, A marked; B appears once the nodes hear each other.
    // One row per node answering fetchSockets; the Redis guest's answers carry no node id,
    // so B's row is "another node" (an id, if given, must be B's).
    await waitPage(
      `nodes ${idA} (3 sockets, this node) and B (2 sockets), server count 2`,
      ({ idA, idB }) => {
        const rows = [...document.querySelectorAll("#nodes tbody tr")].map((tr) => ({ id: tr.dataset.nodeId, cells: [...tr.cells].map((c) => c.textContent) }));
        const a = rows.find((r) => r.id === idA);
        const b = rows.find((r) => r !== a);
        return rows.length === 2 && a && b && [undefined, idB].includes(b.id) && a.cells[0].includes("this node") && a.cells[1] === "3" && !b.cells[0].includes("this node") && b.cells[1] === "2" && document.getElementById("server-count").textContent === "2";
      },
      { idA, idB },
    );
    await waitPage("3 connections", () => document.getElementById("connections").textContent === "3");
    await waitPage(
      "namespace / with 3 sockets",
      () => {
        const tr = document.querySelector('#namespaces tbody tr[data-namespace="/"]');
        return tr && tr.cells[1].textContent === "3";
      },
    );
    assert.equal(await textOf("banner"), "", "no error banner");
    const guest = await page.evaluate(() => [...document.querySelectorAll("#guest .counter")].map((c) => c.dataset.key));
    for (const k of ["traps", "deadline_stops"]) assert.ok(guest.includes(k), `guest counter ${k} shown: ${safeJson(guest)}`);
  });

  it("the chart of connections grows with more clients, and renders (screenshot)", async () => {
    await connectTo(A, "A", 4);
    await waitPage("7 connections", () => document.getElementById("connections").textContent === "7");
    // The line's last point is the highest: 7, after samples of 3 (and 0 before the clients).
    const line = await waitPage(
      "the chart's line ending at 7, above its earlier points",
      () => {
        const chart = document.getElementById("chart");
        const pl = document.getElementById("chart-line");
        if (!pl || chart.dataset.last !== "7") return false;
        const ys = pl.getAttribute("points").trim().split(/\s+/).map((p) => Number(p.split(",")[1]));
        const last = ys[ys.length - 1];
        return ys.length >= 3 && ys.slice(0, -1).every((y) => y >= last) && ys.some((y) => y > last + 10) ? { points: ys.length } : false;
      },
    );
    assert.ok((await line.jsonValue()).points >= 3);

    const chart = page.locator("#chart");
    await chart.scrollIntoViewIfNeeded();
    const box = await chart.boundingBox();
    assert.ok(box && box.width > 300 && box.height > 100, `the chart has a size: ${safeJson(box)}`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= VIEWPORT.width && box.y + box.height <= VIEWPORT.height, `the chart is in the viewport: ${safeJson(box)}`);
    const stroke = await page.evaluate(() => getComputedStyle(document.getElementById("chart-line")).stroke);
    const colour = (/rgb\((\d+), (\d+), (\d+)\)/.exec(stroke) || []).slice(1).map(Number);
    assert.equal(colour.length, 3, `the line's colour: ${stroke}`);

    const file = path.join(shots.dir, "admin-page.png");
    const png = await page.screenshot({ path: file });
    const img = decodePng(png);
    assert.deepEqual([img.width, img.height], [VIEWPORT.width, VIEWPORT.height], "the screenshot is the viewport");
    const near = ([r, g, b]) => Math.abs(r - colour[0]) <= 16 && Math.abs(g - colour[1]) <= 16 && Math.abs(b - colour[2]) <= 16;
    let inside = 0;
    let minX = Infinity;
    let maxX = -Infinity;
    const [x0, y0] = [Math.floor(box.x), Math.floor(box.y)];
    const [x1, y1] = [Math.min(img.width, Math.ceil(box.x + box.width)), Math.min(img.height, Math.ceil(box.y + box.height))];
    for (let y = y0; y < y1; y++) {
      for (let x = x0; x < x1; x++) {
        if (!near(img.rgb(x, y))) continue;
        inside++;
        minX = Math.min(minX, x);
        maxX = Math.max(maxX, x);
      }
    }
    assert.ok(inside >= 300, `the chart's line colour ${stroke} is drawn in the chart's box ${safeJson(box)}: ${inside} pixels (screenshot ${file})`);
    assert.ok(maxX - minX >= box.width / 2, `the line spans the chart: x ${minX}..${maxX} in a box ${Math.round(box.width)} wide (screenshot ${file})`);
    let outside = 0;
    for (let y = 0; y < img.height; y += 2) {
      for (let x = 0; x < img.width; x += 2) {
        if ((x < x0 || x >= x1 || y < y0 || y >= y1) && near(img.rgb(x, y))) outside++;
      }
    }
    assert.ok(outside * 4 < inside / 10, `the line colour is the chart's: ${outside * 4} pixels of it outside the box, ${inside} inside (screenshot ${file})`);
    assert.ok(fs.statSync(file).size > 0, "the screenshot is saved");
  });

  /** Submits the page's swap form and waits for its result box; resolves {kind, text}. */
  async function submitSwap({ wasm, datasource = "", options = "" }) {
    await page.fill("#swap-wasm", wasm);
    await page.fill("#swap-datasource", datasource);
    await page.fill("#swap-options", options);
    return clickAndWaitResult("#swap-submit", `the result of the swap to ${wasm}`);
  }
  async function clickAndWaitResult(selector, what) {
    await page.evaluate(() => {
      const box = document.getElementById("swap-result");
      box.className = "";
      box.textContent = "";
    });
    await page.click(selector);
    const res = await waitPage(
      what,
      () => {
        const box = document.getElementById("swap-result");
        return /\b(ok|error)\b/.test(box.className) ? { kind: box.className.trim(), text: box.textContent } : false;
      },
      null,
      { timeoutMs: SWAP_WAIT_MS },
    );
    return res.jsonValue();
  }
  /** The page shows `st` as the running adapter (version, sha256, source). */
  async function pageShows(st, what) {
    await waitPage(
      `${what}: ${st.name} ${st.version} ${st.sha256.slice(0, 12)} from ${st.source}`,
      (s) => {
        const sha = document.getElementById("adapter-sha");
        return document.getElementById("adapter-name").textContent === s.name && document.getElementById("adapter-version").textContent === s.version && sha.title === s.sha256 && sha.textContent.startsWith(s.sha256.slice(0, 12)) && document.getElementById("adapter-source").textContent === s.source;
      },
      st,
    );
  }

  let builtin; // the status of builtin:redis, before the swaps
  it("swaps through the form: to a path, to builtin:redis with options, an upload, and rolls back", { timeout: 240000 }, async () => {
    const next = nextWasm();
    builtin = await A.admin.status();
    assert.equal(builtin.swaps, 0, "no swap yet");
    assert.notEqual(builtin.version, NEXT_VERSION);

    // A path on the node, datasource and options kept.
    let r = await submitSwap({ wasm: next });
    assert.equal(r.kind, "ok", `the swap to ${next} succeeded in the page: ${r.text}`);
    assert.match(r.text, new RegExp(`${builtin.version}.*→.*${NEXT_VERSION.replace(/\./g, "\\.")}`), `the result names the versions: ${r.text}`);
    let st = await A.admin.status();
    assert.deepEqual([st.name, st.version, st.source, st.datasource, st.swaps], ["redis", NEXT_VERSION, next, "cache", 1], `GET /admin/adapter after the swap: ${safeJson(st)}`);
    assert.notEqual(st.sha256, builtin.sha256, "another component");
    assert.equal(st.previous && st.previous.sha256, builtin.sha256, "the builtin is kept for rollback");
    await pageShows(st, "the swapped-in component");
    const nextSha = st.sha256;

    // builtin:redis, the options from the textarea.
    r = await submitSwap({ wasm: "builtin:redis", datasource: "cache", options: JSON.stringify({ key, requestsTimeout: 1500 }) });
    assert.equal(r.kind, "ok", `the swap to builtin:redis succeeded in the page: ${r.text}`);
    st = await A.admin.status();
    assert.deepEqual([st.version, st.sha256, st.source, st.swaps], [builtin.version, builtin.sha256, "builtin:redis", 2], `GET /admin/adapter after the swap back: ${safeJson(st)}`);
    await pageShows(st, "builtin:redis again");

    // An upload from the file input (application/wasm, ?name=FILE).
    await page.setInputFiles("#swap-file", next);
    r = await clickAndWaitResult("#upload-submit", "the result of the upload");
    assert.equal(r.kind, "ok", `the upload succeeded in the page: ${r.text}`);
    st = await A.admin.status();
    assert.deepEqual([st.version, st.sha256, st.source, st.datasource, st.swaps], [NEXT_VERSION, nextSha, "upload:redis_next.wasm", "cache", 3], `GET /admin/adapter after the upload: ${safeJson(st)}`);
    await pageShows(st, "the uploaded component");

    // The rollback button: back to builtin:redis.
    r = await clickAndWaitResult("#rollback", "the result of the rollback");
    assert.equal(r.kind, "ok", `the rollback succeeded in the page: ${r.text}`);
    st = await A.admin.status();
    assert.deepEqual([st.version, st.sha256, st.source, st.swaps, st.failed_swaps], [builtin.version, builtin.sha256, "builtin:redis", 4, 0], `GET /admin/adapter after the rollback: ${safeJson(st)}`);
    await pageShows(st, "builtin:redis after the rollback");

    // The cluster still works across the swaps: B is still seen, with its sockets.
    await waitPage("B with 2 sockets", () => {
      const rows = [...document.querySelectorAll("#nodes tbody tr:not(.self)")];
      return rows.length === 1 && rows[0].cells[1].textContent === "2";
    });
  });

  it("a refused swap shows the node's error, and the adapter is unchanged", async () => {
    const before = await A.admin.status();
    // Options that are not JSON: refused in the page, nothing sent.
    let r = await submitSwap({ wasm: "builtin:redis", options: "{not json" });
    assert.equal(r.kind, "error", `bad options JSON: ${r.text}`);
    assert.match(r.text, /not valid JSON/, "the page says the options are not JSON");
    const untouched = await A.admin.status();
    assert.deepEqual([untouched.swaps, untouched.failed_swaps], [before.swaps, before.failed_swaps], "no request reached the node");

    const missing = path.join(shots.dir, "no-such-adapter.wasm");
    r = await submitSwap({ wasm: missing });
    assert.equal(r.kind, "error", `the swap to a missing file is shown as refused: ${r.text}`);
    const st = await A.admin.status();
    assert.ok(st.last_error && st.last_error.includes("no-such-adapter.wasm"), `last_error names the file: ${safeJson(st.last_error)}`);
    assert.ok(r.text.includes(st.last_error), `the page shows the node's error "${st.last_error}": ${r.text}`);
    assert.match(r.text, /HTTP 4\d\d/, "the page shows the status");
    const keep = ({ name, version, source, sha256, datasource, loaded_at_ms, swaps }) => ({ name, version, source, sha256, datasource, loaded_at_ms, swaps });
    assert.deepEqual(keep(st), keep(before), "the running adapter is unchanged");
    assert.equal(st.failed_swaps, before.failed_swaps + 1, "failed_swaps counts it");
    await pageShows(before, "the unchanged adapter");
    await waitPage("the refusal as the last error", (e) => document.getElementById("adapter-last-error").textContent === e, st.last_error);
  });

  it("an unreachable node shows in the banner", async () => {
    const res = await A.stop();
    assert.equal(res.exitedEarly, false, `A did not die before: ${res.stderr}`);
    await waitPage("a banner saying the admin API cannot be reached", () => /Cannot reach/.test(document.getElementById("banner").textContent) && document.getElementById("banner").offsetHeight > 0);
  });
});
