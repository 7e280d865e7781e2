/**
 * Attacks on a real LB's HTTP port, bounded in count and time: idle and
 * slow connections under a small open-file limit, event-stream subscribers
 * that never read, and requests that used to make it log without bound. The
 * port keeps answering, the LB's memory stays under a stated ceiling, and
 * its log stays small. Figures go to docs/RELIABILITY.md.
 */

import assert from "node:assert/strict";
import { createHttpApi } from "../lib/ops/http_api.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { hmacPair, Program, sleep, tempDir, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";

const root = new URL("..", import.meta.url).pathname;
const enc = new TextEncoder();

function rssMb(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) / 1024;
}

async function healthz(url: string): Promise<number> {
  const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3000) });
  await res.body?.cancel();
  return res.status;
}

/** Connects and returns the connection, or undefined when refused or closed at once. */
async function tryConnect(port: number): Promise<Deno.TcpConn | undefined> {
  try {
    return await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return undefined;
  }
}

function closeAll(conns: (Deno.Conn | undefined)[]): void {
  for (const c of conns) {
    try {
      c?.close();
    } catch { /* closed */ }
  }
}

Deno.test({
  name:
    "Under a 300-file limit, 400 idle and 50 slow-loris connections from one address: the HTTP port keeps answering, nothing escapes, memory stays bounded",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await tempDir("fd");
    // The LB runs under `ulimit -n 300`, on :: (IPv4 and IPv6), with a 1 s head timeout.
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        `ulimit -n 300 && exec "${Deno.execPath()}" run -A "${root}lb.ts" --http-host :: ` +
        `--loadbalancer-port 0 --http-head-timeout 1 --table off`,
      ],
      env: { QHCP_CERTS_DIR: dir, NO_COLOR: "1" },
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const lines: string[] = [];
    const pump = (async () => {
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        lines.push(...t.split("\n"));
      }
    })();
    const held: (Deno.Conn | undefined)[] = [];
    try {
      const port = Number(
        (await waitFor(
          "listening",
          () => lines.join("\n").match(/HTTP status endpoint listening .*port=(\d+)/),
          20_000,
        ))[1],
      );
      const v6 = `http://[::1]:${port}`;
      assert.equal(await healthz(v6), 200);
      const rssBefore = rssMb(child.pid);
      assert.match(lines.join("\n"), /max_connections=236 per_address=59 open_files=300/);
      // 400 idle connections from 127.0.0.1: at most 59 held, the rest closed at once.
      for (let i = 0; i < 400; i++) held.push(await tryConnect(port));
      await sleep(300);
      assert.equal(await healthz(v6), 200, "another address is served meanwhile");
      // 50 slow-loris connections, one byte every 100 ms: closed at the head timeout.
      closeAll(held.splice(0));
      await sleep(200);
      const slow = (await Promise.all(Array.from({ length: 50 }, () => tryConnect(port)))).filter((
        c,
      ) => c !== undefined) as Deno.Conn[];
      const t0 = Date.now();
      const dripping = setInterval(() => {
        for (const c of slow) c.write(enc.encode("G")).catch(() => {});
      }, 100);
      const buf = new Uint8Array(16);
      await Promise.all(slow.map((c) => c.read(buf).catch(() => null)));
      const slowClosedMs = Date.now() - t0;
      clearInterval(dripping);
      closeAll(slow);
      assert.ok(slowClosedMs < 4000, `slow connections closed after ${slowClosedMs} ms`);
      // The attacker's address is served again once its connections are gone.
      await waitFor(
        "IPv4 served again",
        async () => (await healthz(`http://127.0.0.1:${port}`)) === 200,
        5000,
      );
      const rssAfter = rssMb(child.pid);
      const text = lines.join("\n");
      assert.ok(!/unhandled rejection|uncaught exception/.test(text), "nothing escaped");
      assert.match(text, /HTTP: 59 connections open from one address; refusing more from it/);
      assert.ok(
        rssAfter < rssBefore + 100,
        `RSS ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MB`,
      );
      record(
        "http attacks",
        "idle connections held of 400 from one address (limit 300 files)",
        59,
        "connections",
        "<= 59 (a quarter of the port's 236)",
      );
      record(
        "http attacks",
        "slow-loris connections closed after (head timeout 1 s)",
        slowClosedMs,
        "ms",
        "< 4000 ms",
      );
      record(
        "http attacks",
        "LB resident memory before / after",
        `${rssBefore.toFixed(0)} / ${rssAfter.toFixed(0)}`,
        "MB",
        "after < before + 100 MB",
      );
    } finally {
      closeAll(held);
      child.kill("SIGTERM");
      await child.status;
      await pump.catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "50 event-stream subscribers that never read, while 300 servers change: the LB's memory stays under its ceiling; its log stays small under 500 malformed requests",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await tempDir("sse");
    const servers = Array.from({ length: 300 }, (_, i) => `127.0.0.1:${20000 + i}`).join(",");
    const lb = new Program("lb.ts", [
      "--http-host",
      "127.0.0.1",
      "--loadbalancer-port",
      "0",
      "--servers",
      servers,
      "--check-interval",
      "0.2",
      "--reconnect-interval",
      "0.3",
      "--table",
      "off",
    ], { QHCP_CERTS_DIR: dir });
    const subscribers: Deno.Conn[] = [];
    try {
      const port = Number((await lb.waitForLine(/HTTP status endpoint listening .*port=(\d+)/))[1]);
      await sleep(2000); // dials fail and redials begin: the snapshot changes all the time
      const rssBefore = rssMb(lb.child.pid);
      for (let i = 0; i < 50; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        await c.write(enc.encode("GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n"));
        subscribers.push(c); // never read
      }
      let peak = rssBefore;
      for (let t = 0; t < 10; t++) {
        await sleep(1000);
        peak = Math.max(peak, rssMb(lb.child.pid));
      }
      const growth = peak - rssBefore;
      assert.ok(growth < 150, `RSS grew ${growth.toFixed(0)} MB with 50 stalled subscribers`);
      assert.equal(await healthz(`http://127.0.0.1:${port}`), 200);
      // Malformed percent-encoding and long paths: 400 or 431, and no log line each.
      const logBefore = lb.lines.length;
      const junk = "%zz".repeat(2000);
      for (let i = 0; i < 500; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/health/${junk}`);
        await res.body?.cancel();
        assert.ok(res.status === 400 || res.status === 431, String(res.status));
      }
      const logged = lb.lines.slice(logBefore).filter((l) => /HTTP|path/.test(l));
      assert.ok(logged.length <= 25, `${logged.length} log lines for 500 bad requests`);
      assert.ok(logged.every((l) => l.length < 2000));
      record(
        "http attacks",
        "RSS growth with 50 stalled event-stream subscribers, 10 s",
        growth,
        "MB",
        "< 150 MB",
      );
      record(
        "http attacks",
        "log lines for 500 malformed requests",
        logged.length,
        "lines",
        "<= 25",
      );
    } finally {
      closeAll(subscribers);
      await lb.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("The event stream caps its subscribers (503 beyond) and builds each snapshot once for all of them", async () => {
  const transport = new MemoryTransport();
  const monitor = new Monitor({
    transport,
    signer: hmacPair(new TextEncoder().encode("x".repeat(40))).signer,
    servers: [{ host: "10.0.0.9", port: 4243 }],
    insecure: true,
    checkIntervalMs: 100,
  });
  let built = 0;
  const original = monitor.status.bind(monitor);
  monitor.status = (...args: Parameters<Monitor["status"]>) => {
    built++;
    return original(...args);
  };
  const api = createHttpApi({
    monitor,
    lbId: "lb",
    startedAt: Date.now(),
    version: "t",
    maxSubscribers: 3,
    eventsPerSecond: 1000,
  });
  const readers: ReadableStreamDefaultReader<Uint8Array>[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const res = await api.handler(new Request("http://x/api/events"));
      assert.equal(res.status, 200);
      readers.push(res.body!.getReader());
    }
    const fourth = await api.handler(new Request("http://x/api/events"));
    assert.equal(fourth.status, 503);
    assert.equal(fourth.headers.get("retry-after"), "10");
    // All three read their first event: one snapshot built for the three.
    await Promise.all(readers.map((r) => r.read()));
    assert.equal(built, 1);
    await fourth.body?.cancel();
  } finally {
    for (const r of readers) await r.cancel();
    api.close();
    await transport.close();
  }
});
