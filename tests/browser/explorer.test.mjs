// End-to-end tests of the theory explorer: its controls change the charts' SVG data, the URL
// carries the settings (a link reproduces the view), and a bad link is reported, not fatal. Run
// with WebGPU and without it (the explorer itself needs neither, but the page must work under
// both). Screenshots go to the artifacts folder (see harness.mjs).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { openLab, screenshot, serveDist } from "./harness.mjs";

let server;
before(async () => {
  server = await serveDist();
});
after(() => server?.close());

const SOLVE_TIMEOUT_MS = 30_000;

/** Wait until the explorer is drawn and its solved parts (optima, envelope) are in. */
async function explorerReady(page) {
  await page.locator('#explorer [data-chart="winrate-bon"] polyline[data-series="exp"]').waitFor();
  await page.waitForFunction(
    () =>
      document.querySelector("#row-optimal-bon[data-kl]:not(.stale)") &&
      document.querySelector("#row-optimal-won[data-kl]:not(.stale)") &&
      !document.querySelector("#envelope-pending") &&
      document.querySelector('[data-chart="winrate-bon"] polyline[data-series="envelope"]'),
    null,
    { timeout: SOLVE_TIMEOUT_MS },
  );
}

const line = (page, chart, series) =>
  page.locator(`[data-chart="${chart}"] polyline[data-series="${series}"]`).getAttribute("points");

async function rows(page) {
  return page.$$eval("#explorer-table tbody tr[data-kl]", (trs) =>
    Object.fromEntries(
      trs.map((tr) => [
        tr.id.replace("row-", ""),
        { lambda: +tr.dataset.lambda, kl: +tr.dataset.kl, bon: +tr.dataset.bon, won: +tr.dataset.won },
      ]),
    ),
  );
}

/** Move a control and wait until `output` shows something new. */
async function move(page, control, value, output) {
  const before = await page.locator(output).textContent();
  await page.locator(control).fill(String(value));
  await page.waitForFunction(
    ([selector, old]) => document.querySelector(selector)?.textContent !== old,
    [output, before],
  );
}

const query = (page) => new URL(page.url()).searchParams;

/** The address bar is updated just after the redraw: wait until `key` reads `value`. */
async function linkSays(page, key, value) {
  await page
    .waitForFunction(([k, v]) => new URL(location.href).searchParams.get(k) === v, [key, value], { timeout: 5_000 })
    .catch(() => assert.fail(`the link has ${key}=${query(page).get(key)}, not ${value}`));
}

for (const webgpu of [false, true]) {
  const name = webgpu ? "webgpu" : "cpu";

  test(`explorer (${name}): the controls redraw the charts and update the link`, async () => {
    const { browser, page, errors } = await openLab(server.url + (webgpu ? "?backend=webgpu" : ""), { webgpu });
    try {
      await explorerReady(page);
      // Default: every policy spends the 1-nat budget, and the link says so.
      let table = await rows(page);
      assert.deepEqual(Object.keys(table).sort(), [
        "exp", "identity", "log", "negexp", "optimal-bon", "optimal-won",
      ]);
      for (const [policy, row] of Object.entries(table)) {
        assert.ok(Math.abs(row.kl - 1) < 1e-3, `${policy} spends ${row.kl} nats, not 1`);
      }
      await linkSays(page, "kl", "1");
      // The optimum for BoN_N is the best under BoN_N at matched KL.
      for (const policy of ["identity", "log", "exp", "negexp"]) {
        assert.ok(table["optimal-bon"].bon >= table[policy].bon - 1e-9, policy);
      }

      // t of exp: the exp curves and shape change, identity's do not.
      const expCurve = await line(page, "winrate-bon", "exp");
      const expShape = await line(page, "shapes", "exp");
      const identityCurve = await line(page, "winrate-bon", "identity");
      await move(page, "#t-exp", 800, "#t-exp-value");
      assert.notEqual(await line(page, "winrate-bon", "exp"), expCurve);
      assert.notEqual(await line(page, "shapes", "exp"), expShape);
      assert.equal(await line(page, "winrate-bon", "identity"), identityCurve);
      await linkSays(page, "t_exp", await page.locator("#t-exp-value").textContent());

      // The KL budget moves the markers and the table, not the curves.
      await move(page, "#kl", 2, "#kl-value");
      await explorerReady(page);
      table = await rows(page);
      for (const [policy, row] of Object.entries(table)) {
        assert.ok(Math.abs(row.kl - 2) < 1e-3, `${policy} spends ${row.kl} nats, not 2`);
      }
      const marker = page.locator('[data-chart="winrate-bon"] [data-series="marker-identity"]');
      assert.ok(Math.abs(+(await marker.getAttribute("data-x")) - 2) < 1e-3);
      assert.equal(await line(page, "winrate-bon", "identity"), identityCurve);

      // N redraws everything for BoN_8 / WoN_8.
      await move(page, "#n", 8, "#n-value");
      await explorerReady(page);
      assert.notEqual(await line(page, "winrate-bon", "identity"), identityCurve);
      assert.match(await page.locator('[data-chart="winrate-won"] text').first().textContent(), /N = 8/);
      assert.match(await page.locator("#explorer-table thead").textContent(), /BoN_8/);
      await linkSays(page, "n", "8");

      // Best t at this KL: exp's BoN_8 win rate can only improve.
      const before = (await rows(page)).exp.bon;
      await page.locator("#best-t").click();
      await page.locator("#best-t-result.result").waitFor({ timeout: SOLVE_TIMEOUT_MS });
      await explorerReady(page);
      const after = (await rows(page)).exp.bon;
      assert.ok(after >= before - 1e-9, `best t made BoN_8 worse: ${before} -> ${after}`);

      // One beta for every transform: one lambda in every closed-form row.
      await page.locator("#mode-beta").check();
      await page.locator("#beta").waitFor();
      await explorerReady(page);
      table = await rows(page);
      const lambda = 1 / +(await page.locator("#beta-value").textContent());
      for (const policy of ["identity", "log", "exp", "negexp"]) {
        assert.ok(Math.abs(table[policy].lambda - lambda) < 1e-6 * lambda, policy);
      }
      await linkSays(page, "beta", await page.locator("#beta-value").textContent());
      assert.ok(!query(page).has("kl"));
      // The best-t answer was for a KL budget: it goes with it.
      assert.equal(await page.locator("#best-t-result").count(), 0);

      // The density chart follows the chosen policy.
      await page.locator("#inspect").selectOption("optimal-won");
      await page.waitForFunction(() =>
        document.querySelector('[data-chart="densities"] text')?.textContent.includes("optimal WoN_8"),
      );
      const density = await line(page, "densities", "policy");
      assert.ok(density && density.split(" ").length > 100, "the density is drawn");

      await page.locator("details.math summary").click();
      assert.ok((await page.locator("details.math math").count()) >= 4, "formulas in MathML");
      // After all those in-place redraws (web/src/svg.rs patches only the changed lines), each
      // chart is exactly what parsing its latest SVG from scratch gives.
      const patched = await page.evaluate(() =>
        [...document.querySelectorAll("#explorer figure")]
          .filter((figure) => figure.__morphHtml)
          .map((figure) => {
            const template = document.createElement("template");
            template.innerHTML = figure.__morphHtml;
            return [figure.id, template.content.firstElementChild.outerHTML === figure.firstElementChild.outerHTML];
          }),
      );
      assert.ok(patched.length >= 3, JSON.stringify(patched));
      assert.deepEqual(patched.filter(([, same]) => !same), []);
      await screenshot(page, `explorer-${name}`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}

test("explorer: a link reproduces its view, and a bad one says what it ignored", async () => {
  const shared = await openLab(`${server.url}?n=8&t_exp=20&t_negexp=3&beta=0.05&inspect=negexp`, {
    webgpu: false,
  });
  try {
    const { page } = shared;
    await explorerReady(page);
    assert.equal(await page.locator("#n-value").textContent(), "8");
    assert.equal(await page.locator("#t-exp-value").textContent(), "20");
    assert.equal(await page.locator("#t-negexp-value").textContent(), "3");
    assert.equal(await page.locator("#beta-value").textContent(), "0.05");
    assert.ok(await page.locator("#mode-beta").isChecked());
    const table = await rows(page);
    assert.ok(Math.abs(table.identity.lambda - 20) < 1e-9);
    assert.match(await page.locator('[data-chart="densities"] text').first().textContent(), /negexp \(t = 3\)/);
    assert.equal(await page.locator("#explorer-link-notice").count(), 0);
    // Every control has an accessible name (its own label, not the label's <output>), and the
    // log-scaled sliders announce values, not positions.
    const unnamed = await page.$$eval("input, select, textarea", (controls) =>
      controls
        .filter((c) => c.type !== "hidden" && c.type !== "file")
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label"))
        .map((c) => c.id || c.outerHTML.slice(0, 60)),
    );
    assert.deepEqual(unnamed, []);
    for (const id of ["n", "t-exp", "t-negexp", "beta"]) {
      const control = await page.$eval(`label[for="${id}"]`, (label) => label.control?.id);
      assert.equal(control, id, `the label for #${id} names it`);
    }
    assert.equal(await page.locator("#t-exp").getAttribute("aria-valuetext"), "t = 20");
    assert.equal(await page.locator("#beta").getAttribute("aria-valuetext"), "β = 0.05");
    // Every chart is an image with a title and a description a screen reader can say.
    const charts = await page.$$eval("figure.chart svg", (svgs) =>
      svgs.map((svg) => ({
        role: svg.getAttribute("role"),
        title: svg.querySelector(":scope > title")?.textContent ?? "",
        desc: svg.querySelector(":scope > desc")?.textContent ?? "",
      })),
    );
    assert.ok(charts.length >= 3, `${charts.length} charts`);
    for (const chart of charts) {
      assert.equal(chart.role, "img");
      assert.ok(chart.title.length > 5 && chart.desc.includes(" against "), JSON.stringify(chart));
    }
    assert.deepEqual(shared.errors, []);
  } finally {
    await shared.browser.close();
  }

  const bad = await openLab(`${server.url}?n=999&kl=abc&inspect=everything`, { webgpu: false });
  try {
    const { page } = bad;
    await explorerReady(page);
    const notice = await page.locator("#explorer-link-notice").textContent();
    for (const part of ["n=999", "kl=abc", "inspect=everything"]) {
      assert.ok(notice.includes(part), `the notice names ${part}: ${notice}`);
    }
    assert.equal(await page.locator("#n-value").textContent(), "4", "defaults stand in");
    assert.equal((await rows(page)).identity.kl.toFixed(3), "1.000");
    assert.deepEqual(bad.errors, []);
  } finally {
    await bad.browser.close();
  }
});

// What the theory cannot give at large N and KL is said in the page's words: the envelope is drawn
// as far as double precision allows, with a note; a saturated optimum says why it stops short;
// nothing meant for the command line (flags, "lambda =", f64) reaches the page.
for (const [n, kl] of [[28, 4], [32, 4], [64, 1]]) {
  test(`explorer at N = ${n} and ${kl} nats draws or explains everything`, async () => {
    const { browser, page, errors } = await openLab(`${server.url}?n=${n}&kl=${kl}`, { webgpu: false });
    try {
      await page.locator('#explorer [data-chart="winrate-bon"] polyline[data-series="exp"]').waitFor();
      await page.waitForFunction(() => !document.querySelector("#envelope-pending"), null, {
        timeout: 120_000,
      });
      // Both optima are in, or the optimal row says why not.
      await page.waitForFunction(
        () =>
          document.querySelector("#row-optimal") ||
          (document.querySelector("#row-optimal-bon[data-kl]:not(.stale)") &&
            document.querySelector("#row-optimal-won[data-kl]:not(.stale)")),
        null,
        { timeout: 60_000 },
      );
      const text = await page.locator("#explorer").textContent();
      for (const raw of ["lambda =", "f64", "normexp/normnegexp", "did not converge after"]) {
        assert.ok(!text.includes(raw), `the page shows the solver's words "${raw}"`);
      }
      const envelope = await page.locator('[data-chart="winrate-bon"] polyline[data-series="envelope"]').count();
      const note = await page.locator("#envelope-note").count();
      assert.ok(envelope === 1 || note === 1, "the BoN envelope is drawn or explained");
      if (note) assert.match(await page.locator("#envelope-note").textContent(), /is drawn up to .* nats; beyond/);
      if (n === 64) {
        assert.match(await page.locator("#row-optimal-won .row-note").textContent(), /^saturated/);
      }
      if (n === 32) {
        assert.match(await page.locator("#row-optimal").textContent(), /not computable here/);
      }
      await screenshot(page, `explorer-n${n}-kl${kl}`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}

// The optimal solves (up to a second each at large N) run in a Web Worker: none of them is timed
// on the page's thread, and the page answers a move of N while the worker is still solving.
test("explorer: the optimal solves run in a worker, off the page's thread", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?n=6&kl=1.5`, { webgpu: false });
  try {
    await explorerReady(page);
    assert.equal(await page.locator("#solving-here").count(), 0, "the worker runs the solves");
    // N = 29 at 3 nats: the envelope and optima that took single main-thread tasks of 0.7-1.1 s.
    await page.locator("#kl").fill("3");
    await move(page, "#n", 29, "#n-value");
    // While N = 29's solves are under way, the page still answers the controls.
    const pending = await page.locator("#envelope-pending").count();
    await move(page, "#t-exp", 400, "#t-exp-value");
    await page.waitForFunction(() => !document.querySelector("#envelope-pending"), null, { timeout: 120_000 });
    const spans = JSON.parse(await page.evaluate(() => window.__infalignTimings()));
    for (const name of ["solves", "optima", "envelope"]) {
      assert.ok(!(name in spans), `the page's thread ran "${name}": ${JSON.stringify(spans[name])}`);
    }
    assert.ok(pending === 1, "N = 29's envelope was still being solved while t moved");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

// Where no worker can start, the page solves on its own thread, in short slices, and says so.
test("explorer without a Web Worker solves on the page and says so", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?n=5`, {
    webgpu: false,
    init: () => {
      delete globalThis.Worker;
    },
  });
  try {
    await explorerReady(page);
    assert.match(await page.locator("#solving-here").textContent(), /run on the page itself \(the theory worker could not start/);
    const spans = JSON.parse(await page.evaluate(() => window.__infalignTimings()));
    assert.ok(spans.solves?.count > 0, "the page's own desk solved");
    assert.equal((await rows(page))["optimal-bon"].kl.toFixed(3), "1.000");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
