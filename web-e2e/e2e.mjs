// The web console end to end, in headless Chromium driven by playwright-core:
// open the page the server serves, launch a batch from the page with the keyboard, wait until
// the console shows live tok/s and a finished run in its feed, check that it never held more
// than two streams to the server, and save a screenshot. Then the page without its wasm (the
// connection dropped) must say it could not load, not stay on "Loading runboard…".
//
// Usage: node e2e.mjs URL SCREENSHOT.png

import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node e2e.mjs URL SCREENSHOT.png");
  process.exit(2);
}

// What the page and the server showed when a step timed out, so a failure on a machine
// nobody can log into says why: the title, a screenshot, and every run's state and error.
let page;
async function explainFailure() {
  try {
    console.error(`the page's title: "${await page.title()}"`);
    const failedShot = screenshot.replace(/\.png$/, "-failed.png");
    await page.screenshot({ path: failedShot });
    console.error(`screenshot of the failure: ${failedShot}`);
  } catch (error) {
    console.error(`no screenshot of the failure: ${error.message}`);
  }
  try {
    const response = await fetch(new URL("api/runs", url));
    const body = await response.json();
    const runs = Array.isArray(body) ? body : body.runs || [];
    console.error(`the server's runs (${response.status}): ${runs.length}`);
    for (const run of runs.slice(0, 20)) {
      const { run_id, status, tokens_out, agent, snippet } = run;
      console.error(`  ${JSON.stringify({ run_id, status, tokens_out, agent, snippet })}`);
    }
  } catch (error) {
    console.error(`could not list the server's runs: ${error.message}`);
  }
}

// Waits until the page's title (the summary bar's figures) satisfies `ok`, saying the title
// every 15 s so a slow machine's log shows how far it got.
const liveTimeout = Number(process.env.E2E_LIVE_TIMEOUT_MS || 60_000);
async function untilTitle(what, ok, timeout) {
  const start = Date.now();
  let said = start;
  for (;;) {
    const title = await page.title();
    if (ok(title)) return;
    const now = Date.now();
    if (now - start > timeout) throw new Error(`no ${what} within ${timeout / 1000} s`);
    if (now - said >= 15_000) {
      console.log(`waiting for ${what} (${Math.round((now - start) / 1000)} s): "${title}"`);
      said = now;
    }
    await page.waitForTimeout(200);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
});
let failed = false;
try {
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (error) => console.log(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") console.log(`page console: ${message.text()}`);
  });

  // Event streams open at once, and the most ever open.
  const streams = new Set();
  let mostStreams = 0;
  const isStream = (request) =>
    /\/api\/events|\/stream(\?|$)|benchmark-sse|active-requests\/stream/.test(request.url());
  page.on("request", (request) => {
    if (isStream(request)) {
      streams.add(request);
      mostStreams = Math.max(mostStreams, streams.size);
      if (process.env.E2E_VERBOSE) console.log(`open ${streams.size} ${request.url()}`);
    }
  });
  const closed = (request) => {
    if (streams.delete(request) && process.env.E2E_VERBOSE) {
      console.log(`closed ${streams.size} ${request.url()}`);
    }
  };
  page.on("requestfinished", closed);
  page.on("requestfailed", closed);

  await page.goto(url);
  await page.waitForSelector("#runboard_loading", { state: "detached", timeout: 60_000 });
  console.log("the console started");

  // Focus the canvas on an empty spot, then L opens the launch form and Enter launches. A
  // slow machine may not have drawn the form (and focused its task) by the time Enter comes:
  // the launch request is waited for, and the keys pressed again, more slowly, when none came.
  let launched = false;
  for (let attempt = 1; attempt <= 4 && !launched; attempt++) {
    const request = page
      .waitForRequest((r) => r.method() === "POST" && r.url().endsWith("/api/runs"), {
        timeout: 10_000,
      })
      .then(() => true, () => false);
    await page.mouse.click(8, 400);
    await page.keyboard.press("l");
    await page.waitForTimeout(500 * attempt);
    await page.keyboard.press("Enter");
    launched = await request;
    if (!launched) console.log(`no launch request after try ${attempt}: "${await page.title()}"`);
  }
  if (!launched) throw new Error("the page never sent a launch request");
  console.log("the page launched a batch");

  await untilTitle(
    "live runs with tok/s > 0",
    (title) => {
      const m = title.match(/(\d+) live · ([\d.]+) tok\/s · (\d+) finished/);
      return m && Number(m[1]) > 0 && Number(m[2]) > 0;
    },
    liveTimeout,
  );
  console.log(`live with tok/s > 0: "${await page.title()}"`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-live.png") });
  await untilTitle(
    "a finished run",
    (title) => {
      const m = title.match(/(\d+) finished/);
      return m && Number(m[1]) >= 1;
    },
    120_000,
  );
  console.log(`a finished run reached the feed: "${await page.title()}"`);
  await page.waitForTimeout(1000);
  await page.screenshot({ path: screenshot });

  // Every view works in the browser: each one's first request goes out (keys 2, 3, 4).
  const views = [
    ["2", "models", (r) => r.method() === "POST" && r.url().endsWith("/api/runs")],
    ["3", "benchmark", (r) => r.url().includes("/api/benchmark-sse")],
    ["4", "requests", (r) => r.url().includes("/metrics/active-requests/stream")],
  ];
  for (const [key, name, wanted] of views) {
    const request = page.waitForRequest(wanted, { timeout: 30_000 });
    await page.keyboard.press(key);
    await request;
    await page.waitForTimeout(2500);
    await page.screenshot({ path: screenshot.replace(/\.png$/, `-${name}.png`) });
    console.log(`the ${name} view asked the server and drew`);
  }
  // The code cannot be fetched (a dropped connection): the page says so, not "Loading…" for ever.
  const broken = await browser.newPage();
  await broken.route(/\.wasm$/, (route) => route.abort("connectionreset"));
  await broken.goto(url);
  await broken.waitForSelector("#runboard_loading.failed", { timeout: 30_000 });
  console.log(`without its wasm the page says: "${await broken.textContent("#runboard_loading")}"`);
  await broken.close();

  // Two: /api/events and one view's stream; a server that reads model servers adds the
  // upstreams stream the summary bar follows in every view (E2E_MAX_STREAMS=3).
  const budget = Number(process.env.E2E_MAX_STREAMS || 2);
  console.log(`most event streams open at once: ${mostStreams}`);
  if (mostStreams > budget) {
    console.error(`the page held ${mostStreams} streams to one server; the budget is ${budget}`);
    failed = true;
  }
  if (mostStreams < 1) {
    console.error("the page opened no event stream");
    failed = true;
  }
} catch (error) {
  console.error(`web e2e failed: ${error.message}`);
  failed = true;
  await explainFailure();
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
