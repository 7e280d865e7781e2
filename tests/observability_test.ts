/**
 * The LB's observability with real processes and real tools: `promtool check
 * metrics` on the live /metrics output, and the dashboard driven in headless
 * Chromium (playwright-core with the Debian chromium package) while a server
 * is killed. `.ci/run` installs promtool (package prometheus) and chromium.
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import {
  fetchStatus,
  type Program,
  startLbProcess,
  startServerProcess,
  tempDir,
  waitFor,
} from "./_helpers.ts";
import { record } from "./_report.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const CHROMIUM = "/usr/bin/chromium";

function need(path: string, what: string): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new Error(`${what} is not installed at ${path}: run .ci/run, or apt-get install ${what}`);
  }
}

async function fleet(n: number, interval: number) {
  const certs = await tempDir("obs");
  const env = { QHCP_CERTS_DIR: certs };
  const servers = await Promise.all(
    Array.from(
      { length: n },
      (_, i) => startServerProcess(["--server-port", "0", "--server-id", `web-${i + 1}`], env),
    ),
  );
  const lb = await startLbProcess([
    "--servers",
    servers.map((s) => `127.0.0.1:${s.port}`).join(","),
    "--check-interval",
    String(interval),
    "--max-fail-attempts",
    "3",
    "--table",
    "off",
    "--lb-id",
    "lb-observed",
  ], env);
  const programs: Program[] = [...servers.map((s) => s.program), lb.program];
  await waitFor(
    "all UP",
    async () => (await fetchStatus(lb.httpPort)).every((s) => s.state === "UP"),
    15_000,
  );
  return {
    servers,
    lb,
    certs,
    async close() {
      await Promise.all(programs.map((p) => p.stop("SIGKILL")));
      await Deno.remove(certs, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test({
  ...opts,
  name: "promtool check metrics accepts the LB's live /metrics output",
  async fn() {
    need("/usr/bin/promtool", "prometheus");
    const f = await fleet(2, 0.3);
    try {
      await new Promise((r) => setTimeout(r, 700)); // a few checks for the histogram
      const text = await (await fetch(`http://127.0.0.1:${f.lb.httpPort}/metrics`)).text();
      const child = new Deno.Command("/usr/bin/promtool", {
        args: ["check", "metrics"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(text));
      await w.close();
      const out = await child.output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, said);
      assert.equal(said.trim(), "", `promtool found problems:\n${said}`);
      assert.match(text, /^qhcp_server_up\{server="127\.0\.0\.1:\d+"\} 1$/m);
      record(
        "observability",
        "metric lines checked by promtool",
        text.split("\n").filter((l) => l && !l.startsWith("#")).length,
        "",
      );
    } finally {
      await f.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "The dashboard in headless Chromium shows three servers UP, then the killed one DOWN within one check interval of the verdict",
  async fn() {
    need(CHROMIUM, "chromium");
    const interval = 0.5;
    const f = await fleet(3, interval);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 420 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(`http://127.0.0.1:${f.lb.httpPort}/`);
      await waitFor(
        "three rows UP",
        async () => (await page.locator('tr[data-state="UP"]').count()) === 3,
        10_000,
      );
      assert.equal(await page.textContent("#live"), "live", "updated by server-sent events");
      const victim = `127.0.0.1:${f.servers[1]!.port}`;
      const row = `tr[data-server="${victim}"]`;
      // The row shows a weight, CPU, memory, a round trip and a chart.
      const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent ?? ""));
      assert.match(cells[2]!, /\d+/);
      assert.match(cells[3]!, /^\d+\.\d$/);
      assert.match(cells[5]!, /^\d+\.\d\d$/);
      assert.ok(await page.$(`${row} svg polyline.rtt`), "RTT chart drawn");
      f.servers[1]!.program.kill("SIGKILL");
      // When the LB's verdict turns DOWN ...
      const lbDown = await waitFor(
        "LB says DOWN",
        async () =>
          (await fetchStatus(f.lb.httpPort)).find((s) => s.address === victim)?.state === "DOWN" &&
          performance.now(),
        15_000,
        10,
      );
      // ... the page shows it within one check interval.
      await page.waitForSelector(`${row}[data-state="DOWN"]`, { timeout: interval * 1000 });
      const shownMs = performance.now() - lbDown;
      assert.equal(await page.locator('tr[data-state="UP"]').count(), 2);
      await Deno.mkdir(new URL("./artifacts", import.meta.url), { recursive: true });
      const shot = new URL("./artifacts/dashboard.png", import.meta.url).pathname;
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(Deno.statSync(shot).size > 10_000, "screenshot saved");
      assert.deepEqual(errors, [], "no script errors on the page");
      record(
        "observability",
        "dashboard shows DOWN after the LB's verdict",
        shownMs,
        "ms",
        `< ${interval * 1000} ms (one check interval)`,
      );
    } finally {
      await browser.close();
      await f.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "A running LB process takes runtime configuration over HTTP with the admin token from its certs directory",
  async fn() {
    const f = await fleet(2, 0.3);
    try {
      const token = (await Deno.readTextFile(`${f.certs}/admin.token`)).trim();
      assert.equal(Deno.statSync(`${f.certs}/admin.token`).mode! & 0o777, 0o600);
      const post = (auth: string) =>
        fetch(`http://127.0.0.1:${f.lb.httpPort}/api/config`, {
          method: "POST",
          headers: { authorization: `Bearer ${auth}`, "content-type": "application/json" },
          body: JSON.stringify({ metrics: ["load_1", "uptime_s"] }),
        });
      const denied = await post("not-the-token-at-all");
      assert.equal(denied.status, 401);
      await denied.body?.cancel();
      const res = await post(token);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.ok, true);
      await waitFor(
        "both report uptime_s",
        async () =>
          (await fetchStatus(f.lb.httpPort)).every((s) => s.metrics?.uptime_s !== undefined),
        5000,
      );
    } finally {
      await f.close();
    }
  },
});
