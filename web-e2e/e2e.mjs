// The web console end to end, in headless Chromium driven by playwright-core:
// open the page the server serves, launch a batch from the page with the keyboard, wait until
// the console shows live tok/s and a finished run in its feed, check that it never held more
// than two streams to the server, and save a screenshot.
//
// Usage: node e2e.mjs URL SCREENSHOT.png

import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node e2e.mjs URL SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
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

  // Focus the canvas on an empty spot, then L opens the launch form and Enter launches.
  await page.mouse.click(8, 400);
  await page.keyboard.press("l");
  await page.waitForTimeout(500);
  await page.keyboard.press("Enter");

  await page.waitForFunction(
    () => {
      const m = document.title.match(/(\d+) live · ([\d.]+) tok\/s · (\d+) finished/);
      return m && Number(m[1]) > 0 && Number(m[2]) > 0;
    },
    null,
    { timeout: 60_000 },
  );
  console.log(`live with tok/s > 0: "${await page.title()}"`);
  await page.screenshot({ path: screenshot.replace(/\.png$/, "-live.png") });
  await page.waitForFunction(
    () => {
      const m = document.title.match(/(\d+) finished/);
      return m && Number(m[1]) >= 1;
    },
    null,
    { timeout: 120_000 },
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
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
