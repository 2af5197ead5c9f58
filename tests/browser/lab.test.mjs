// End-to-end tests of the browser lab: the Trunk build in dist/ is served from a local static
// server and opened in headless Chromium, once with WebGPU enabled (SwiftShader's software
// adapter) and once without it. Any page error or console error fails the run.
//
// Run through `cargo xtask test`, or by hand: `node --test tests/browser/lab.test.mjs` after
// `cargo xtask build-web`. INFALIGN_DIST and INFALIGN_CHROMIUM override the defaults.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(process.env.INFALIGN_DIST ?? join(here, "..", "..", "dist"));
const chromiumPath = process.env.INFALIGN_CHROMIUM ?? "/usr/bin/chromium";
const tokenizerGolden = JSON.parse(
  await readFile(join(here, "..", "fixtures", "default_tokenizer_golden.json"), "utf8"),
);
// The first load compiles a multi-megabyte module and, with WebGPU, software shaders.
const READY_TIMEOUT_MS = 90_000;

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
};

let server;
let baseUrl;

before(async () => {
  await stat(join(dist, "index.html")).catch(() => {
    throw new Error(`${dist}/index.html is missing: build the web app first (cargo xtask build-web)`);
  });
  server = createServer(async (request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
    const file = join(dist, path.endsWith("/") ? join(path, "index.html") : path);
    if (!file.startsWith(dist)) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end("not found");
    }
  });
  await new Promise((ready) => server.listen(0, "127.0.0.1", ready));
  baseUrl = `http://127.0.0.1:${server.address().port}/`;
});

after(() => server?.close());

/** Open the page in a fresh headless Chromium; collect page and console errors. */
async function openLab({ webgpu }) {
  const args = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ];
  if (webgpu) args.push("--enable-unsafe-webgpu");
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console error: ${message.text()}`);
  });
  await page.goto(baseUrl);
  const badge = page.locator("#backend");
  await badge.waitFor();
  await page.waitForFunction(
    () => {
      const state = document.querySelector("#backend")?.dataset.backend;
      return state && state !== "pending";
    },
    null,
    { timeout: READY_TIMEOUT_MS },
  ).catch((error) => {
    throw new Error(`the backend never came up (${error.message}); errors seen: ${errors.join(" | ") || "none"}`);
  });
  return { browser, page, errors };
}

async function smokeScore(page) {
  const text = await page.locator("#smoke-score").textContent();
  const score = Number.parseFloat(text);
  assert.ok(Number.isFinite(score), `smoke score is not a number: ${text}`);
  return score;
}

// The score of the smoke computation is a weighted sum of row-wise probabilities, so it lies
// strictly between 1 x rows and 3 x rows (4 and 12); the native tests pin its exact value.
function assertPlausibleScore(score) {
  assert.ok(score > 4 && score < 12, `smoke score ${score} outside (4, 12)`);
}

test("with WebGPU enabled the lab runs on WebGPU", async () => {
  const { browser, page, errors } = await openLab({ webgpu: true });
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "webgpu");
    assert.equal(await page.locator("#fallback-notice").count(), 0, "no fallback notice on WebGPU");
    assertPlausibleScore(await smokeScore(page));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("without WebGPU the lab falls back to the CPU and says so", async () => {
  const { browser, page, errors } = await openLab({ webgpu: false });
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "cpu");
    const notice = page.locator("#fallback-notice");
    assert.ok(await notice.isVisible(), "the fallback notice is visible");
    assert.match(await notice.textContent(), /WebGPU is not available/);
    assertPlausibleScore(await smokeScore(page));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("both backends compute the same result", async () => {
  const gpu = await openLab({ webgpu: true });
  const cpu = await openLab({ webgpu: false });
  try {
    const [a, b] = [await smokeScore(gpu.page), await smokeScore(cpu.page)];
    assert.ok(Math.abs(a - b) < 1e-4, `webgpu ${a} vs cpu ${b}`);
    assert.deepEqual([...gpu.errors, ...cpu.errors], []);
  } finally {
    await gpu.browser.close();
    await cpu.browser.close();
  }
});

test("the browser tokenizer gives the native token ids", async () => {
  const { browser, page, errors } = await openLab({ webgpu: false });
  try {
    await page.waitForFunction(
      () => document.querySelector("#token-status")?.dataset.state !== "pending",
      null,
      { timeout: READY_TIMEOUT_MS },
    );
    assert.equal(
      await page.locator("#token-status").getAttribute("data-state"),
      "ready",
      `tokenizer failed: ${await page.locator("#token-status").textContent()}`,
    );
    for (const { text, ids } of tokenizerGolden) {
      await page.fill("#tokenizer-input", text);
      const expected = JSON.stringify(ids);
      await page
        .waitForFunction(
          (want) => document.querySelector("#token-ids")?.dataset.ids === want,
          expected,
          { timeout: 10_000 },
        )
        .catch(async () => {
          const got = await page.locator("#token-ids").getAttribute("data-ids");
          assert.fail(`${JSON.stringify(text)}: browser ${got}, native ${expected}`);
        });
    }
    assert.ok(tokenizerGolden.length >= 5, "the golden file holds the cases");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
