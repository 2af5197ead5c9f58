// Measures the browser lab's budgets (issue 6) in headless Chromium on the CPU path and prints a
// table (and writes JSON when given a path): gzip transfer size of the wasm + JS, time from
// navigation to an interactive explorer and to the loaded default bundle, the explorer's redraw
// time per control, and the sampling lab's first Best-of-8 (click to eight scored answers with
// their picks; then to their calibrated rewards, K = 32 base answers sampled first), the "train it
// yourself" panel's sampling and training, and the main-thread tasks of 50 ms or more in each of
// these. A measurement, not a test: nothing here passes or fails.
//
//   cargo xtask build-web            # the served (web-release) build
//   node tests/browser/budgets.mjs [out.json]

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { dist, openLab, serveDist } from "./harness.mjs";

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const quantile = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

// 1. Transfer size.
// The app's wasm and JS, and wasm-bindgen's JS snippets (under snippets/).
const files = (await readdir(dist, { recursive: true })).filter(
  (f) => !f.startsWith("default-model") && (f.endsWith(".wasm") || f.endsWith(".js")),
);
let raw = 0;
let gzip = 0;
for (const file of files) {
  const body = await readFile(join(dist, file));
  raw += body.length;
  gzip += gzipSync(body, { level: 9 }).length;
}

const server = await serveDist();
const results = { files, raw_bytes: raw, gzip_bytes: gzip, runs: [] };
try {
  for (let run = 0; run < 3; run++) {
    // 2. Interactive: navigation start to the first drawn win-rate curve (the controls are live
    // from that render on), recorded in the page by a MutationObserver.
    const init = () => {
      new MutationObserver((_, observer) => {
        if (!window.__explorerDrawn && document.querySelector('[data-chart="winrate-bon"] polyline')) {
          window.__explorerDrawn = performance.now();
        }
        if (!window.__bundleReady && document.querySelector("#lab[data-bundle=ready]")) {
          window.__bundleReady = performance.now();
        }
        if (window.__explorerDrawn && window.__bundleReady) observer.disconnect();
      }).observe(document, { childList: true, subtree: true });
      // Tasks that kept the main thread busy for 50 ms or more (input waits behind them), with
      // when they started.
      window.__longTasks = [];
      window.__longTaskStarts = [];
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          window.__longTasks.push(entry.duration);
          window.__longTaskStarts.push(entry.startTime);
        }
      }).observe({ type: "longtask", buffered: true });
    };
    const { browser, page, errors } = await openLab(server.url, { webgpu: false, init });
    try {
      await page.locator('[data-chart="winrate-bon"] polyline').first().waitFor();
      const interactive = await page.evaluate(() => {
        const entry = performance.getEntriesByType("navigation")[0];
        return { first_paint: performance.getEntriesByType("paint")[0]?.startTime, load: entry.loadEventEnd };
      });
      const drawn = await page.evaluate(() => window.__explorerDrawn);
      await page.waitForFunction(() => !document.querySelector("#envelope-pending"), null, { timeout: 60_000 });
      // The bundle loads after the first paint; redraws are measured once it is in.
      await page.locator("#lab[data-bundle=ready]").waitFor({ timeout: 60_000 });
      const bundleReady = await page.evaluate(() => window.__bundleReady);
      // Long tasks from navigation until the bundle was in: the page should answer input while it
      // starts and loads its bundle.
      const loading = await page.evaluate((until) => window.__longTasks.filter((_, i) => window.__longTaskStarts[i] < until), bundleReady);

      // 3. Redraws: set a control, dispatch `input`, let the reactive updates run (a zero-delay
      // timer runs after them and before the next frame's solves), then force layout.
      const redraw = {};
      const plans = {
        "t-exp": Array.from({ length: 20 }, (_, i) => 300 + 25 * i),
        // N from 2 to 32 and back up, ending at 32: the KL plan then runs at N = 32.
        "n": Array.from({ length: 20 }, (_, i) => 32 - ((19 - i) % 11) * 3),
        "kl": Array.from({ length: 20 }, (_, i) => (0.2 + 0.15 * i).toFixed(2)),
      };
      const spans = async () => JSON.parse(await page.evaluate(() => window.__infalignTimings()));
      for (const [control, values] of Object.entries(plans)) {
        const times = [];
        await page.evaluate(() => window.__infalignTimingsReset());
        const longBefore = await page.evaluate(() => window.__longTasks.length);
        for (const value of values) {
          times.push(
            await page.evaluate(
              async ([id, v]) => {
                const input = document.getElementById(id);
                const t0 = performance.now();
                input.value = v;
                input.dispatchEvent(new Event("input", { bubbles: true }));
                await new Promise((r) => setTimeout(r, 0));
                document.body.getBoundingClientRect();
                const t1 = performance.now();
                // Let the deferred solves finish before the next change.
                await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
                await new Promise((r) => setTimeout(r, 0));
                return t1 - t0;
              },
              [control, String(value)],
            ),
          );
        }
        // Where the time went: the app's named spans (window.__infalignTimings), per move. They
        // include the work deferred to after the paint (the optima, the envelope, the URL).
        // Let deferred work of the last move finish, so that its long tasks are counted.
        await page.waitForTimeout(1500);
        const after = await spans();
        const longest_span_ms = {};
        const long = await page.evaluate((from) => window.__longTasks.slice(from), longBefore);
        const per_move_ms = {};
        for (const [name, { total_ms, max_ms }] of Object.entries(after)) {
          per_move_ms[name] = total_ms / values.length;
          longest_span_ms[name] = max_ms;
        }
        redraw[control] = { median_ms: median(times), p90_ms: quantile(times, 0.9), max_ms: Math.max(...times), per_move_ms, longest_span_ms,
          long_tasks: long.length, longest_task_ms: Math.max(0, ...long) };
      }
      // 4. The first Best-of-8: default settings (N = 8, K = 32), a fresh page (the policy loads
      // on the click).
      const longBeforeRound = await page.evaluate(() => window.__longTasks.length);
      const round = await page.evaluate(async () => {
        const answers = () => document.querySelector("#answers")?.dataset.state;
        const t0 = performance.now();
        document.querySelector("#sample").click();
        let scored = null;
        while (answers() !== "calibrated" && !document.querySelector("#lab-error")) {
          await new Promise((r) => setTimeout(r, 5));
          if (scored === null && answers() === "scored") scored = performance.now() - t0;
        }
        return {
          scored_ms: scored,
          calibrated_ms: performance.now() - t0,
          in_app_ms: Number(document.querySelector("#answers").dataset.firstResultMs),
          answers: document.querySelectorAll("#answers li").length,
          error: document.querySelector("#lab-error")?.textContent ?? null,
        };
      });
      round.long_tasks_ms = await page.evaluate((from) => window.__longTasks.slice(from), longBeforeRound);
      // 5. Train it yourself, default settings (C = 64 candidates of the base policy and the K = 32
      // reference answers sampled, then both sides trained): the long tasks of each phase.
      const train = await page.evaluate(async () => {
        const state = () => document.querySelector("#train")?.dataset.state;
        const wait = async (wanted) => {
          while (state() !== wanted && !document.querySelector("#lab-error")) await new Promise((r) => setTimeout(r, 10));
        };
        const from = window.__longTasks.length;
        let t0 = performance.now();
        document.querySelector("#train-sample").click();
        await wait("ready");
        const sample_ms = performance.now() - t0;
        const sampling = window.__longTasks.slice(from);
        const from2 = window.__longTasks.length;
        t0 = performance.now();
        document.querySelector("#train-run").click();
        await wait("done");
        return {
          sample_ms,
          train_ms: performance.now() - t0,
          sampling_long_tasks_ms: sampling,
          training_long_tasks_ms: window.__longTasks.slice(from2),
          error: document.querySelector("#lab-error")?.textContent ?? null,
        };
      });
      results.runs.push({ drawn_ms: drawn, bundle_ready_ms: bundleReady, loading_long_tasks_ms: loading, ...interactive, redraw, round, train, errors });
    } finally {
      await browser.close();
    }
  }
} finally {
  server.close();
}

const mb = (b) => (b / 1e6).toFixed(2);
console.log(`wasm + JS: ${mb(raw)} MB raw, ${mb(gzip)} MB gzip -9 (${files.join(", ")})`);
const drawn = results.runs.map((r) => r.drawn_ms);
console.log(`explorer drawn after navigation: median ${median(drawn).toFixed(0)} ms of ${drawn.map((d) => d.toFixed(0)).join(", ")}`);
const bundles = results.runs.map((r) => r.bundle_ready_ms);
console.log(`default bundle loaded after navigation: median ${median(bundles).toFixed(0)} ms of ${bundles.map((d) => d.toFixed(0)).join(", ")}`);
const firsts = results.runs.map((r) => r.round.scored_ms ?? r.round.in_app_ms);
const calibrated = results.runs.map((r) => r.round.calibrated_ms);
console.log(`first Best-of-8 (click to 8 scored answers and picks): median ${median(firsts).toFixed(0)} ms of ${firsts.map((d) => d.toFixed(0)).join(", ")}; calibrated (K = 32 sampled first): median ${median(calibrated).toFixed(0)} ms`);
for (const r of results.runs) if (r.round.error || r.round.answers !== 8) console.log(`round problem: ${JSON.stringify(r.round)}`);
const tasks = (list) => (list.length ? `${list.length} (${list.map((d) => d.toFixed(0)).join(", ")} ms)` : "none");
console.log(`main-thread tasks of 50 ms or more, per run: loading ${results.runs.map((r) => tasks(r.loading_long_tasks_ms)).join("; ")}`);
console.log(`  first Best-of-8 ${results.runs.map((r) => tasks(r.round.long_tasks_ms)).join("; ")}`);
console.log(`  train it yourself, sampling the candidates ${results.runs.map((r) => tasks(r.train.sampling_long_tasks_ms)).join("; ")}`);
console.log(`  train it yourself, training ${results.runs.map((r) => tasks(r.train.training_long_tasks_ms)).join("; ")}`);
const trainSample = results.runs.map((r) => r.train.sample_ms);
console.log(`train it yourself: candidates sampled in median ${median(trainSample).toFixed(0)} ms, trained in ${median(results.runs.map((r) => r.train.train_ms)).toFixed(0)} ms`);
for (const r of results.runs) if (r.train.error) console.log(`train problem: ${r.train.error}`);
for (const control of Object.keys(results.runs[0].redraw)) {
  const medians = results.runs.map((r) => r.redraw[control].median_ms);
  const p90 = results.runs.map((r) => r.redraw[control].p90_ms);
  console.log(`redraw on ${control}: median ${median(medians).toFixed(1)} ms, p90 ${median(p90).toFixed(1)} ms (medians per run ${medians.map((m) => m.toFixed(1)).join(", ")})`);
  const names = Object.keys(results.runs[0].redraw[control].per_move_ms);
  const split = names.map((name) => `${name} ${median(results.runs.map((r) => r.redraw[control].per_move_ms[name] ?? 0)).toFixed(2)}`);
  console.log(`  per move, ms (median of runs): ${split.join(", ")}`);
  const longest = results.runs.map((r) => r.redraw[control].longest_task_ms);
  const counts = results.runs.map((r) => r.redraw[control].long_tasks);
  console.log(`  main-thread tasks of 50 ms or more: ${counts.join(", ")} per run; longest ${longest.map((l) => l.toFixed(0)).join(", ")} ms`);
  const spanMax = names.map((name) => `${name} ${Math.max(...results.runs.map((r) => r.redraw[control].longest_span_ms[name] ?? 0)).toFixed(1)}`);
  console.log(`  longest single span, ms (all runs): ${spanMax.join(", ")}`);
}
if (process.argv[2]) await writeFile(process.argv[2], JSON.stringify(results, null, 2));
