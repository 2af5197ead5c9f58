// End-to-end tests of the sampling lab: the default bundle loads after the page is up, a policy
// answers N times (streamed), every answer gets a raw and a calibrated reward, Best-of-N and
// Worst-of-N picks are marked, rounds against the base build the tally, a bad bundle shows a
// banner while the lab keeps sampling, WebGPU gives the CPU's answers for the same seed, and a
// lost WebGPU device moves the lab to the CPU.
// Screenshots go to the artifacts folder (see harness.mjs).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { dist, here, openLab, refuseSamplingWorker, screenshot, serveDist } from "./harness.mjs";

// The table `infalign calibrate` and `infalign sample --reference-k` draw for this prompt, reward,
// K and seed (crates/infalign-model/tests/default_model.rs writes and checks it).
const referenceFixture = JSON.parse(
  await readFile(join(here, "..", "fixtures", "default_reference_table.json"), "utf8"),
);

let server;
before(async () => {
  server = await serveDist();
});
after(() => server?.close());

const BUNDLE_TIMEOUT_MS = 60_000;
const CPU_ROUND_TIMEOUT_MS = 60_000;
// SwiftShader compiles every WebGPU kernel on the CPU: the first round takes minutes there.
const GPU_ROUND_TIMEOUT_MS = 300_000;

/** Records every `data-state` the answer list goes through (installed before the page runs). */
function recordAnswerStates() {
  window.__answerStates = [];
  new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target;
      if (target.id === "answers") {
        const texts = [...target.querySelectorAll(".answer-text")].map((e) => e.textContent);
        window.__answerStates.push({ state: target.dataset.state, texts });
      }
    }
  }).observe(document, { attributes: true, subtree: true, childList: true, attributeFilter: ["data-state"] });
}

async function bundleReady(page) {
  await page.locator("#lab[data-bundle=ready]").waitFor({ timeout: BUNDLE_TIMEOUT_MS });
}

/** Click "Sample" and wait for the calibrated answers (or fail with the lab's error). */
async function sampleRound(page, timeout = CPU_ROUND_TIMEOUT_MS) {
  await page.locator("#sample:not([disabled])").waitFor({ timeout });
  await page.click("#sample");
  await page.waitForFunction(
    () =>
      document.querySelector("#lab-error") ||
      (document.querySelector("#answers")?.dataset.state === "calibrated" &&
        !document.querySelector("#sample[disabled]")),
    null,
    { timeout },
  );
  const error = await page.locator("#lab-error").count();
  assert.equal(error, 0, error ? await page.locator("#lab-error").textContent() : "");
  return page.$$eval("#answers li", (lis) =>
    lis.map((li) => ({
      classes: li.className.split(" "),
      raw: Number(li.dataset.raw),
      calibrated: Number(li.dataset.calibrated),
      text: li.querySelector(".answer-text").textContent,
    })),
  );
}

function assertAnswers(answers, n) {
  assert.equal(answers.length, n);
  for (const answer of answers) {
    assert.ok(Number.isFinite(answer.raw), `raw reward ${answer.raw}`);
    assert.ok(answer.calibrated >= 0 && answer.calibrated <= 1, `calibrated ${answer.calibrated}`);
  }
  const best = answers.filter((a) => a.classes.includes("best"));
  const worst = answers.filter((a) => a.classes.includes("worst"));
  assert.equal(best.length, 1, "one Best-of-N pick");
  assert.equal(worst.length, 1, "one Worst-of-N pick");
  const raws = answers.map((a) => a.raw);
  assert.equal(best[0].raw, Math.max(...raws));
  assert.equal(worst[0].raw, Math.min(...raws));
  // Calibration keeps the order of the raw rewards.
  for (const a of answers) {
    for (const b of answers) {
      if (a.raw < b.raw) assert.ok(a.calibrated <= b.calibrated, `${a.raw}->${a.calibrated} vs ${b.raw}->${b.calibrated}`);
    }
  }
}

test("on the CPU a policy answers N times, streamed, with rewards, picks and a histogram", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?lab_n=4&k=8&prompt=2`, {
    webgpu: false,
    init: recordAnswerStates,
  });
  try {
    await bundleReady(page);
    assert.match(await page.locator("#bundle-status").textContent(), /5 policies/);
    const answers = await sampleRound(page);
    assertAnswers(answers, 4);
    // On the CPU the answers were sampled in the sampling worker, off the page's thread.
    assert.equal(await page.locator("#lab").getAttribute("data-sampled-in"), "worker");
    // Only what the base policy needs was fetched: the aligned variants wait until used.
    const fetched = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
    assert.ok(fetched.some((url) => url.endsWith("/model.bpk")), "the base policy was fetched");
    assert.deepEqual(fetched.filter((url) => /\/policy-[^/]*\.bpk$/.test(url)), []);
    // The keyboard's focus goes to the answers, not back to the page.
    assert.equal(await page.evaluate(() => document.activeElement?.id), "answers");
    // Streamed: the list showed partial answers before the rewards came in.
    const states = await page.evaluate(() => window.__answerStates);
    const streaming = states.filter((s) => s.state === "streaming");
    assert.ok(streaming.length > 0, "a streaming state was seen");
    const order = ["streaming", "scored", "calibrated"].map((s) => states.findIndex((x) => x.state === s));
    assert.ok(order[0] < order[1] && order[1] < order[2], JSON.stringify(order));
    assert.equal(await page.locator("#lab-histogram").getAttribute("data-total"), "4");
    assert.match(await page.locator("#tokens-per-second").textContent(), /^\d+ tokens\/s$/);
    const search = await page.evaluate(() => location.search);
    assert.match(search, /lab_n=4/);
    assert.match(search, /prompt=2/);
    await screenshot(page, "lab-sampling-cpu");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("where the sampling worker cannot start, the page samples the same answers itself and says so", async () => {
  const query = `${server.url}?lab_n=4&k=8&prompt=2`;
  const worker = await openLab(query, { webgpu: false });
  const page = await openLab(query, { webgpu: false, init: refuseSamplingWorker });
  try {
    await bundleReady(worker.page);
    await bundleReady(page.page);
    const inWorker = await sampleRound(worker.page);
    const onPage = await sampleRound(page.page);
    assert.equal(await worker.page.locator("#lab").getAttribute("data-sampled-in"), "worker");
    assert.equal(await page.page.locator("#lab").getAttribute("data-sampled-in"), "page");
    // One module, one seed: the same answers, rewards and reference table either way.
    assert.deepEqual(onPage, inWorker);
    assert.equal(
      await page.page.locator("#reference-table").getAttribute("data-rewards"),
      await worker.page.locator("#reference-table").getAttribute("data-rewards"),
    );
    assert.match(await page.page.locator("#backend-notice").textContent(), /sampling worker could not start \(.*workers are off here.*\).*page's own thread/);
    assert.equal(await worker.page.locator("#backend-notice").count(), 0);
    assert.deepEqual([...worker.errors, ...page.errors], []);
  } finally {
    await worker.browser.close();
    await page.browser.close();
  }
});

test("the page calibrates against the reference table the native commands draw", async () => {
  const { prompt_index, k, rewards } = referenceFixture;
  const { browser, page, errors } = await openLab(
    `${server.url}?lab_n=4&k=${k}&prompt=${prompt_index}&reward=vader&policy=base`,
    { webgpu: false },
  );
  try {
    await bundleReady(page);
    const answers = await sampleRound(page);
    const shown = (await page.locator("#reference-table").getAttribute("data-rewards")).split(",").map(Number);
    assert.deepEqual(shown, rewards, "the same K rewards, bit for bit");
    // Each answer's calibrated reward is its mid-rank among them.
    for (const answer of answers) {
      const below = rewards.filter((r) => r < answer.raw).length;
      const tied = rewards.filter((r) => r === answer.raw).length;
      assert.equal(answer.calibrated, (below + tied / 2) / rewards.length, `raw ${answer.raw}`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("rounds against the base fill the tally with an interval and the theory beside it", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?lab_n=2&k=4&policy=ctrl-negexp-won4`, {
    webgpu: false,
  });
  try {
    await bundleReady(page);
    // The harmless variant defaults to the reward it was aligned with: the linear classifier,
    // read from the bundle.
    assert.equal(await page.locator("#lab-reward").inputValue(), "linear");
    // The policy's name is glossed from the bundle's record of its training.
    assert.match(await page.locator("#policy-gloss").textContent(), /^Trained with CTRL on \S*negexp:[\d.]+ of the calibrated \S+ reward, KL held near 1 nats\.$/);
    // Every request from here on, the sampling worker's included.
    const requested = [];
    page.context().on("request", (request) => requested.push(request.url()));
    await page.click("#play-rounds");
    await page.waitForFunction(
      () => document.querySelector("#lab-error") || document.querySelector("#tally")?.dataset.rounds === "10",
      null,
      { timeout: CPU_ROUND_TIMEOUT_MS * 2 },
    );
    assert.equal(await page.locator("#lab-error").count(), 0);
    // The variant in play was fetched when first used (by the sampling worker), once, and no
    // other; the bundle's other files were not fetched again.
    assert.deepEqual(requested.map((url) => url.split("/").pop()), ["policy-ctrl-negexp-won4.bpk"]);
    assert.equal(await page.locator("#lab").getAttribute("data-sampled-in"), "worker");
    for (const procedure of ["bon", "won"]) {
      const row = page.locator(`#tally tr[data-procedure=${procedure}]`);
      const rate = Number(await row.locator(".measured").getAttribute("data-rate"));
      assert.ok(rate >= 0 && rate <= 1, `${procedure} ${rate}`);
      // The outcomes are 0, 1/2 or 1 over ten rounds: the mean is a multiple of 1/20.
      assert.ok(Math.abs(rate * 20 - Math.round(rate * 20)) < 1e-9, `${procedure} ${rate}`);
      // The theory at the KL the variant's calibrated rewards moved at evaluation (a few
      // hundredths of a nat: the bundle's evaluation of the variant).
      assert.match(await row.locator(".theory").textContent(), /^0\.\d{3} \(calibrated KL 0\.0\d/);
    }
    // The round log says, round by round, what each procedure served and who won; its outcomes
    // are the tally's.
    const logged = await page.$$eval("#round-log li", (lis) =>
      lis.map((li) => Object.fromEntries([...li.querySelectorAll("p")].map((p) => [p.dataset.procedure, Number(p.dataset.outcome)]))),
    );
    assert.equal(logged.length, 10);
    for (const procedure of ["bon", "won"]) {
      const rate = Number(await page.locator(`#tally tr[data-procedure=${procedure}] .measured`).getAttribute("data-rate"));
      const mean = logged.reduce((sum, round) => sum + round[procedure], 0) / logged.length;
      assert.ok(Math.abs(mean - rate) < 1e-12, `${procedure}: log ${mean}, tally ${rate}`);
    }
    await page.locator("#round-log summary").click();
    assert.match(await page.locator("#round-log li").first().textContent(), /aligned served .* base .*: (aligned wins|base wins|a tie)\./);
    await screenshot(page, "lab-tally-cpu");
    // The rounds save as CSV: two rows a round, the same outcomes.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save-rounds")]);
    const chunks = [];
    for await (const chunk of await download.createReadStream()) chunks.push(chunk);
    const rows = Buffer.concat(chunks).toString("utf8").trim().split("\n");
    assert.equal(rows[0], "round,procedure,n,aligned_calibrated,base_calibrated,outcome");
    assert.equal(rows.length, 1 + 20);
    const outcomes = rows.slice(1).map((row) => row.split(","));
    for (const procedure of ["bon", "won"]) {
      const mean = outcomes.filter((r) => r[1] === procedure).reduce((sum, r) => sum + Number(r[5]), 0) / 10;
      const rate = Number(await page.locator(`#tally tr[data-procedure=${procedure}] .measured`).getAttribute("data-rate"));
      assert.ok(Math.abs(mean - rate) < 1e-12, `${procedure}: CSV ${mean}, tally ${rate}`);
    }
    // Reset starts the tally over.
    await page.click("#reset-tally");
    assert.equal(await page.locator("#tally").getAttribute("data-rounds"), "0");
    assert.equal(await page.locator("#round-log li").count(), 0);
    // The BoN variant moved its calibrated rewards further (the bundle's evaluation).
    await page.selectOption("#lab-policy", "ctrl-exp-bon4");
    const theory = await page.locator("#tally tr[data-procedure=bon] .theory").textContent();
    assert.match(theory, /^0\.\d{3} \(calibrated KL 0\.\d/);
    assert.equal(await page.locator("#tally").getAttribute("data-rounds"), "0", "a new policy starts a new tally");
    // Sampled answers do not outlive the settings they were drawn under.
    await page.click("#sample");
    await page.locator("#answers[data-state=calibrated]").waitFor({ timeout: CPU_ROUND_TIMEOUT_MS });
    await page.selectOption("#lab-policy", "base");
    assert.equal(await page.locator("#answers li").count(), 0);
    assert.equal(await page.locator("#answers").getAttribute("data-state"), "idle");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("a malformed bundle shows a banner and the lab keeps sampling", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?lab_n=2&k=4`, { webgpu: false });
  try {
    await bundleReady(page);
    // The real manifest with a truncated weights file: the check names the file.
    const folder = join(dist, "default-model");
    const manifest = await readFile(join(folder, "manifest.json"));
    const parsed = JSON.parse(manifest);
    const files = [{ name: "manifest.json", mimeType: "application/json", buffer: manifest }];
    const parts = [parsed.tokenizer, parsed.weights, ...parsed.variants.map((v) => v.weights), ...(parsed.reward_models ?? [])];
    for (const part of parts) {
      let buffer = await readFile(join(folder, part.file));
      if (part.file === parsed.weights.file) buffer = buffer.subarray(0, 1000);
      files.push({ name: part.file, mimeType: "application/octet-stream", buffer });
    }
    await page.setInputFiles("#bundle-files", files);
    const banner = page.locator("#bundle-banner");
    await banner.waitFor();
    assert.match(await banner.textContent(), /model\.bpk/);
    assert.match(await banner.textContent(), /truncated, corrupt or from another bundle/);
    assert.match(await banner.textContent(), /keeps the bundle it had/);
    // A reward model that is not the one the manifest lists: refused, named.
    await page.click("#bundle-banner button");
    const model = parsed.reward_models[0];
    const whole = [];
    for (const part of parts) {
      let buffer = await readFile(join(folder, part.file));
      if (part.file === model.file) buffer = Buffer.concat([buffer.subarray(0, buffer.length - 2), Buffer.from("9\n")]);
      whole.push({ name: part.file, mimeType: "application/octet-stream", buffer });
    }
    whole.push({ name: "manifest.json", mimeType: "application/json", buffer: manifest });
    await page.setInputFiles("#bundle-files", whole);
    await banner.waitFor();
    assert.ok((await banner.textContent()).includes(model.file), await banner.textContent());
    assert.match(await banner.textContent(), /truncated, corrupt or from another bundle/);
    // Not JSON at all.
    await page.click("#bundle-banner button");
    await page.setInputFiles("#bundle-files", [
      { name: "manifest.json", mimeType: "application/json", buffer: Buffer.from("{ not json") },
    ]);
    await banner.waitFor();
    assert.match(await banner.textContent(), /chosen files\/manifest\.json: not valid JSON/);
    await screenshot(page, "lab-bad-bundle-cpu");
    // The same by drag and drop onto the lab: a manifest of another format.
    await page.click("#bundle-banner button");
    await page.evaluate(() => {
      const transfer = new DataTransfer();
      const manifest = JSON.stringify({ format: "something-else", format_version: 1 });
      transfer.items.add(new File([manifest], "manifest.json", { type: "application/json" }));
      document
        .querySelector("#lab")
        .dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await banner.waitFor();
    assert.match(await banner.textContent(), /dropped files\/manifest\.json: not an InfAlign bundle manifest/);
    // The lab still samples with the default bundle.
    assert.match(await page.locator("#bundle-status").textContent(), /default-model/);
    assertAnswers(await sampleRound(page), 2);
    // The whole bundle, sound, from files: the lab uses it, and the sampling worker samples it
    // from the files the page read (it has no folder to fetch from).
    const sound = [{ name: "manifest.json", mimeType: "application/json", buffer: manifest }];
    for (const part of parts) {
      sound.push({ name: part.file, mimeType: "application/octet-stream", buffer: await readFile(join(folder, part.file)) });
    }
    await page.click("#bundle-banner button");
    await page.setInputFiles("#bundle-files", sound);
    await page.waitForFunction(() => /chosen files/.test(document.querySelector("#bundle-status")?.textContent ?? ""));
    assertAnswers(await sampleRound(page), 2);
    assert.equal(await page.locator("#lab").getAttribute("data-sampled-in"), "worker");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("a bundle link that fails says so and falls back to the default bundle", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?bundle=no-such-bundle/&lab_n=2&k=4`, {
    webgpu: false,
  });
  try {
    await bundleReady(page);
    assert.match(
      await page.locator("#bundle-banner").textContent(),
      /there is no manifest\.json at .*no-such-bundle\/manifest\.json: a bundle link points at the folder/,
    );
    assertAnswers(await sampleRound(page), 2);
    // The browser itself logs the 404 of the missing manifest; nothing else may be logged.
    assert.deepEqual(
      errors.filter((e) => !/Failed to load resource: .* 404/.test(e)),
      [],
    );
  } finally {
    await browser.close();
  }
});

test("a bundle link to a file, or to a server that does not answer, is explained", async () => {
  // A weights file instead of its folder: refused before any fetch.
  const file = await openLab(`${server.url}?bundle=default-model/model.bpk`, { webgpu: false });
  // Nothing listens on port 9 (discard): the fetch rejects as a CORS refusal would.
  const dead = await openLab(`${server.url}?bundle=http://127.0.0.1:9/bundle/`, { webgpu: false });
  try {
    await bundleReady(file.page);
    assert.match(
      await file.page.locator("#bundle-banner").textContent(),
      /names a file \(model\.bpk\); a bundle link points at the folder/,
    );
    assert.deepEqual(file.errors, []);
    await bundleReady(dead.page);
    assert.match(
      await dead.page.locator("#bundle-banner").textContent(),
      /no response the page may read .*Access-Control-Allow-Origin/,
    );
  } finally {
    await file.browser.close();
    await dead.browser.close();
  }
});

test("on WebGPU the lab samples the CPU's answers, and the switch moves it to the CPU", async () => {
  const query = "?lab_n=2&k=2&prompt=1";
  // Whether the "compiling the GPU kernels" status ever showed (installed before the page runs).
  const watchCompiling = () => {
    window.__compilingShown = false;
    new MutationObserver(() => {
      if (document.querySelector("#gpu-compiling")) window.__compilingShown = true;
    }).observe(document, { childList: true, subtree: true });
  };
  const gpu = await openLab(server.url + query + "&backend=webgpu", { webgpu: true, init: watchCompiling });
  const cpu = await openLab(server.url + query + "&backend=cpu", { webgpu: false });
  try {
    assert.equal(await gpu.page.locator("#backend").getAttribute("data-backend"), "webgpu");
    assert.equal(await cpu.page.locator("#backend").getAttribute("data-backend"), "cpu");
    await bundleReady(gpu.page);
    await bundleReady(cpu.page);
    const onGpu = await sampleRound(gpu.page, GPU_ROUND_TIMEOUT_MS);
    // WebGPU samples from the page (the GPU does the work); the CPU in the worker.
    assert.equal(await gpu.page.locator("#lab").getAttribute("data-sampled-in"), "page");
    // The first WebGPU job said it was compiling the kernels, and the notice went when it ended.
    assert.equal(await gpu.page.evaluate(() => window.__compilingShown), true);
    assert.equal(await gpu.page.locator("#gpu-compiling").count(), 0);
    const onCpu = await sampleRound(cpu.page);
    assert.equal(await cpu.page.locator("#lab").getAttribute("data-sampled-in"), "worker");
    assertAnswers(onGpu, 2);
    // Same seed, same tokens, unless a draw lands within float rounding of a token boundary
    // (then that answer diverges from there on): at least one of the two must match exactly.
    const same = onGpu.filter((a, i) => a.text === onCpu[i].text).length;
    assert.ok(same >= 1, `webgpu ${JSON.stringify(onGpu.map((a) => a.text))} vs cpu ${JSON.stringify(onCpu.map((a) => a.text))}`);
    assert.match(await gpu.page.locator("#backend").textContent(), /webgpu · \d+ tokens\/s/);
    await screenshot(gpu.page, "lab-sampling-webgpu");
    // The manual switch: to the CPU, and the next round runs there.
    await gpu.page.selectOption("#backend-switch", "cpu");
    assert.equal(await gpu.page.locator("#backend").getAttribute("data-backend"), "cpu");
    assertAnswers(await sampleRound(gpu.page), 2);
    assert.deepEqual([...gpu.errors, ...cpu.errors], []);
  } finally {
    await gpu.browser.close();
    await cpu.browser.close();
  }
});

/** Keeps every WebGPU device the page asks for in `window.__gpuDevices` (installed first). */
function recordGpuDevices() {
  window.__gpuDevices = [];
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await requestDevice.apply(this, args);
    window.__gpuDevices.push(device);
    return device;
  };
}

test("losing the WebGPU device moves the lab to the CPU without a reload", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?lab_n=2&k=2&prompt=1&backend=webgpu`, {
    webgpu: true,
    init: recordGpuDevices,
  });
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "webgpu");
    await bundleReady(page);
    // What a driver reset or an unplugged GPU does: the device is lost (destroy() is the one
    // way a page can cause it).
    const lost = await page.evaluate(async () => {
      const devices = window.__gpuDevices;
      for (const device of devices) device.destroy();
      const infos = await Promise.all(devices.map((device) => device.lost));
      return infos.map((info) => info.reason);
    });
    assert.ok(lost.length >= 1 && lost.every((reason) => reason === "destroyed"), `${lost}`);
    assertAnswers(await sampleRound(page, GPU_ROUND_TIMEOUT_MS), 2);
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "cpu");
    assert.match(await page.locator("#backend-notice").textContent(), /WebGPU/);
    await screenshot(page, "lab-webgpu-lost");
    // The lab goes on sampling on the CPU.
    assertAnswers(await sampleRound(page), 2);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

/** Makes the page's WebGPU look like one without subgroups (Firefox's and Safari's today): neither
 * the adapter nor the device lists the feature, and it is never granted (installed first). */
function hideSubgroups() {
  window.__subgroupsAsked = false;
  for (const type of [GPUAdapter, GPUDevice]) {
    const features = Object.getOwnPropertyDescriptor(type.prototype, "features");
    Object.defineProperty(type.prototype, "features", {
      configurable: true,
      get() {
        return new Set([...features.get.call(this)].filter((name) => !name.startsWith("subgroups")));
      },
    });
  }
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (descriptor = {}) {
    const asked = [...(descriptor.requiredFeatures ?? [])];
    window.__subgroupsAsked ||= asked.some((name) => String(name).startsWith("subgroups"));
    const requiredFeatures = asked.filter((name) => !String(name).startsWith("subgroups"));
    return requestDevice.call(this, { ...descriptor, requiredFeatures });
  };
}

// burn 0.22's GPU kernels use subgroups whatever the device offers (cubecl's matrix-vector
// kernels emit subgroupAdd), and there a shader fails to compile and the page panics: without
// subgroups the lab does not start WebGPU at all, even when asked to, and says why.
for (const query of ["", "&backend=webgpu"]) {
  test(`on a WebGPU without subgroups the lab runs on the CPU, says why, and logs no errors (${query || "auto"})`, async () => {
    const { browser, page, errors } = await openLab(`${server.url}?lab_n=2&k=2&prompt=1${query}`, {
      webgpu: true,
      init: hideSubgroups,
    });
    try {
      assert.equal(await page.locator("#backend").getAttribute("data-backend"), "cpu");
      assert.equal(await page.evaluate(() => window.__subgroupsAsked), false);
      const notice = page.locator("#fallback-notice");
      await notice.locator("summary").click();
      assert.match(await notice.textContent(), /no subgroups/);
      assert.equal(await page.locator("#backend-switch option[value=webgpu]").isDisabled(), true);
      await bundleReady(page);
      assertAnswers(await sampleRound(page), 2);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}

test("the CPU and WebGPU compute the same log-probabilities for every policy of the bundle", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?backend=webgpu`, { webgpu: true });
  try {
    assert.equal(await page.locator("#backend").getAttribute("data-backend"), "webgpu");
    await bundleReady(page);
    await page.locator("#backend-compare summary").click();
    await page.click("#backend-compare-run");
    await page.locator("#backend-compare[data-state=done]").waitFor({ timeout: GPU_ROUND_TIMEOUT_MS });
    const rows = await page.$$eval("#backend-compare tr[data-policy]", (trs) =>
      trs.map((tr) => ({ policy: tr.dataset.policy, largest: Number(tr.dataset.largest) })),
    );
    const names = await page.$$eval("#lab-policy option", (options) => options.map((o) => o.value));
    assert.deepEqual(rows.map((r) => r.policy).sort(), [...names].sort());
    for (const row of rows) {
      assert.ok(row.largest < 1e-3, `${row.policy}: CPU and WebGPU differ by ${row.largest} nats`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test("an empty prompt of one's own is refused in words, not sampled", async () => {
  const { browser, page, errors } = await openLab(`${server.url}?lab_n=2&k=2`, { webgpu: false });
  try {
    await bundleReady(page);
    await page.selectOption("#lab-prompt", "own");
    await page.fill("#lab-own-prompt", "   ");
    await page.locator("#lab-own-prompt").dispatchEvent("change");
    await page.click("#sample");
    await page.locator("#lab-error").waitFor();
    assert.match(await page.locator("#lab-error").textContent(), /write a prompt first/);
    assert.equal(await page.locator("#answers li").count(), 0);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
