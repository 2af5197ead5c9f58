// End-to-end tests of the browser lab: the Trunk build in dist/ is served from a local static
// server and opened in headless Chromium, once with WebGPU enabled (SwiftShader's software
// adapter) and once without it. Any page error or console error fails the run.
//
// Run through `cargo xtask test`, or by hand: `node --test tests/browser/lab.test.mjs` after
// `cargo xtask build-web`. INFALIGN_DIST and INFALIGN_CHROMIUM override the defaults.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { here, openLab as open, screenshot, serveDist, READY_TIMEOUT_MS } from "./harness.mjs";

const tokenizerGolden = JSON.parse(
  await readFile(join(here, "..", "fixtures", "default_tokenizer_golden.json"), "utf8"),
);

let server;
before(async () => {
  server = await serveDist();
});
after(() => server?.close());

const openLab = (options, query = "") => open(server.url + query, options);

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

test("with WebGPU enabled the lab runs on WebGPU when asked to", async () => {
  // Headless Chromium's adapter is SwiftShader, a software one: the lab would pick the CPU by
  // itself (next test); `backend=webgpu` insists.
  const { browser, page, errors } = await openLab({ webgpu: true }, "?backend=webgpu");
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "webgpu");
    assert.equal(await page.locator("#fallback-notice").count(), 0, "no fallback notice on WebGPU");
    assertPlausibleScore(await smokeScore(page));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("a software WebGPU adapter is not preferred over the CPU, and the switch still offers it", async () => {
  const { browser, page, errors } = await openLab({ webgpu: true });
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "cpu");
    assert.match(await page.locator("#backend-notice").textContent(), /software one .*runs on the CPU/);
    assert.equal(await page.locator("#backend-switch option[value=webgpu]").isDisabled(), false);
    await page.selectOption("#backend-switch", "webgpu");
    await page.waitForFunction(() => document.querySelector("#backend")?.dataset.backend === "webgpu");
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
    // The adapter's raw error waits behind "Details".
    assert.ok(await notice.locator("details summary").isVisible());
    assert.equal(await notice.locator("details code").isVisible(), false);
    assertPlausibleScore(await smokeScore(page));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("both backends compute the same result", async () => {
  const gpu = await openLab({ webgpu: true }, "?backend=webgpu");
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

test("at a phone's width (375 px) the page does not scroll sideways", async () => {
  const { browser, page, errors } = await open(server.url, {
    webgpu: false,
    viewport: { width: 375, height: 800 },
  });
  try {
    await page.locator("#lab[data-bundle=ready]").waitFor({ timeout: 60_000 });
    await page.locator("#explorer details summary").first().click();
    const { scroll, width } = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      width: document.documentElement.clientWidth,
    }));
    assert.ok(scroll <= width, `the page is ${scroll} px wide in a ${width} px window`);
    await screenshot(page, "phone-375");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("an accessibility snapshot: every control has a name of its own, and sliders announce values", async () => {
  const { browser, page, errors } = await open(server.url, { webgpu: false });
  try {
    await page.locator("#lab[data-bundle=ready]").waitFor({ timeout: 60_000 });
    // The accessibility tree as the browser computes it (Playwright's aria snapshot): one line
    // per node, `- role "name"`, for the whole page (explorer, sampling lab, train it yourself).
    const snapshot = await page.locator("body").ariaSnapshot();
    const roles = /^\s*- (slider|textbox|combobox|spinbutton|checkbox|radio|button)\b(.*)$/;
    const controls = snapshot.split("\n").flatMap((line) => {
      const match = line.match(roles);
      if (!match) return [];
      const name = match[2].match(/^ "([^"]*)"/)?.[1] ?? "";
      return [{ role: match[1], name, line: line.trim() }];
    });
    assert.ok(controls.length >= 30, `the snapshot lists the page's controls:\n${snapshot}`);
    const nameless = controls.filter((c) => c.name.trim() === "").map((c) => c.line);
    assert.deepEqual(nameless, [], "every control has an accessible name");
    // No two sliders, boxes or buttons share a name (four charts' "Save as SVG" did).
    const seen = new Map();
    for (const { role, name, line } of controls.filter((c) => c.role !== "radio")) {
      const key = `${role} ${name}`;
      assert.ok(!seen.has(key), `two controls are both called ${key}: ${seen.get(key)} / ${line}`);
      seen.set(key, line);
    }
    // Sliders announce the value the page shows beside them (a screen reader says
    // aria-valuetext, or else the position), not a position that is not the value (the
    // log-scaled t and beta sliders).
    const sliders = await page.$$eval('input[type="range"]', (inputs) =>
      inputs.map((input) => ({
        id: input.id,
        announced: input.getAttribute("aria-valuetext") || input.value,
        shown: input.labels?.[0]?.querySelector("output")?.textContent?.trim() ?? "",
      })),
    );
    assert.ok(sliders.length >= 10);
    for (const slider of sliders) {
      assert.ok(slider.shown !== "", `#${slider.id} shows its value beside it`);
      assert.ok(slider.announced.includes(slider.shown), `#${slider.id} announces ${JSON.stringify(slider.announced)}, shows ${JSON.stringify(slider.shown)}`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
