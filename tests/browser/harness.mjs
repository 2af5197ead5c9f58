// Shared by the browser test files and the budget measurements: a static server for the Trunk
// build in dist/, and a headless Chromium (with or without WebGPU) that records page and console
// errors. INFALIGN_DIST, INFALIGN_CHROMIUM and INFALIGN_ARTIFACTS override the defaults.

import { createServer } from "node:http";
import { mkdir, readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const here = dirname(fileURLToPath(import.meta.url));
export const dist = resolve(process.env.INFALIGN_DIST ?? join(here, "..", "..", "dist"));
const chromiumPath = process.env.INFALIGN_CHROMIUM ?? "/usr/bin/chromium";
/** Where screenshots go (kept by CI as test artifacts). */
export const artifacts = resolve(
  process.env.INFALIGN_ARTIFACTS ?? join(here, "..", "..", "target", "browser-artifacts"),
);
// The first load compiles a multi-megabyte module and, with WebGPU, software shaders.
export const READY_TIMEOUT_MS = 90_000;

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
};

/** Serve dist/ on a free local port; resolves to { url, close }. */
export async function serveDist() {
  await stat(join(dist, "index.html")).catch(() => {
    throw new Error(`${dist}/index.html is missing: build the web app first (cargo xtask build-web)`);
  });
  const server = createServer(async (request, response) => {
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
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

/**
 * Open `url` in a fresh headless Chromium and wait until the backend badge has settled;
 * page errors and console errors are collected in `errors`. `init` (a function) runs in the page
 * before any of its scripts.
 */
export async function openLab(url, { webgpu, viewport = { width: 1100, height: 900 }, init }) {
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
  const page = await browser.newPage({ viewport });
  const errors = [];
  // A page error while the lab starts (a panic in a component, say) fails at once, naming it,
  // instead of after the wait for the backend badge times out.
  let pageBroke;
  const broken = new Promise((_, reject) => (pageBroke = reject));
  broken.catch(() => {});
  page.on("pageerror", (error) => {
    errors.push(`page error: ${error.message}`);
    pageBroke(new Error(`page error: ${error.message}`));
  });
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console error: ${message.text()}`);
  });
  if (init) await page.addInitScript(init);
  const ready = (async () => {
    await page.goto(url);
    await page.locator("#backend").waitFor({ timeout: READY_TIMEOUT_MS });
    await page.waitForFunction(
      () => {
        const state = document.querySelector("#backend")?.dataset.backend;
        return state && state !== "pending";
      },
      null,
      { timeout: READY_TIMEOUT_MS },
    );
  })();
  try {
    await Promise.race([ready, broken]);
  } catch (error) {
    await browser.close();
    throw new Error(`the lab never came up (${error.message}); errors seen: ${errors.join(" | ") || "none"}`);
  }
  return { browser, page, errors };
}

/** Save a full-page screenshot as `name`.png under the artifacts folder. */
export async function screenshot(page, name) {
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/**
 * An `init` for `openLab`: the lab's sampling worker fails to start (its constructor throws, as
 * where workers are blocked); other workers start.
 */
export function refuseSamplingWorker() {
  const Original = window.Worker;
  window.Worker = class extends Original {
    constructor(url, options) {
      if (options?.name === "infalign-sampling") throw new Error("workers are off here");
      super(url, options);
    }
  };
}
