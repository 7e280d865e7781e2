/**
 * Integrations without the real HAProxy: the agent-check protocol, drain,
 * local application checks and the FAILING status, on the in-memory
 * transport and plain sockets.
 */

import assert from "node:assert/strict";
import { agentReply, startAgentCheckServer } from "../lib/ops/agent_check.ts";
import { decodeFrame, encodeMessage } from "../lib/protocol/codec.ts";
import { DrainSwitch } from "../lib/agent/drain.ts";
import { LocalChecks } from "../lib/agent/local_checks.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import type { LocalCheckResult, ServerStatus } from "../lib/protocol/wire.ts";
import type { WatchView } from "../lib/lb/watch.ts";
import {
  hmacPair,
  makeCredentials,
  sleep,
  startMemoryAgent,
  tempDir,
  waitFor,
} from "./_helpers.ts";

const { secret } = await makeCredentials();

function view(over: Partial<WatchView>): WatchView {
  return {
    address: "10.0.0.1:4243",
    state: "UP",
    session: "READY",
    consecutive_failures: 0,
    last_rtt_ms: 1,
    metrics: { cpu_percent: 20, mem_percent: 10 },
    status: "UP",
    last_error: null,
    last_change: "2026-11-21T10:00:00.000Z",
    server_id: "web-1",
    checks_ok: 1,
    checks_failed: 0,
    last_check: null,
    weight: 82,
    load: 20,
    checks: null,
    suspicion: null,
    heartbeat_ms: null,
    extensions: [],
    services: [],
    ...over,
  };
}

Deno.test("agentReply() answers up ready (with the weight when asked), up drain, or down with the reason", () => {
  assert.equal(agentReply("10.0.0.1:4243", view({})), "up ready\n");
  assert.equal(agentReply("10.0.0.1:4243", view({}), true), "up ready 82%\n");
  // A healthy server is never sent down to 0 % by a weight.
  assert.equal(agentReply("10.0.0.1:4243", view({ weight: 0.4 }), true), "up ready 1%\n");
  assert.equal(agentReply("10.0.0.1:4243", view({ status: "DRAINING", weight: 0 })), "up drain\n");
  assert.equal(
    agentReply(
      "10.0.0.1:4243",
      view({ state: "DOWN", weight: 0, last_error: "timeout: no HEALTH_RESPONSE\nwithin 2 s" }),
    ),
    "down #QHCP DOWN: timeout: no HEALTH_RESPONSE within 2 s\n",
  );
  assert.equal(
    agentReply("10.0.0.1:4243", view({ state: "UNKNOWN", weight: 0 })),
    "down #QHCP UNKNOWN: not checked yet\n",
  );
  assert.equal(agentReply("10.9.9.9:1", undefined), "down #QHCP: unknown server 10.9.9.9:1\n");
});

async function agentCheck(port: number, send: string | null): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  if (send !== null) await conn.write(new TextEncoder().encode(send));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(512);
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
    chunks.push(buf.slice(0, n));
  }
  conn.close();
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

Deno.test("The agent-check endpoint answers each HAProxy connection with one line for the named server, then closes", async () => {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  const agent = await startMemoryAgent(transport, "10.0.0.1", { secret, serverId: "web-1" });
  const monitor = new Monitor({
    transport,
    signer,
    servers: [{ host: "10.0.0.1", port: 4243 }, { host: "10.0.0.2", port: 4243 }],
    insecure: true,
    checkIntervalMs: 100,
    checkTimeoutMs: 100,
    fastIntervalMs: 50,
  });
  monitor.start();
  const server = startAgentCheckServer({
    monitor,
    host: "127.0.0.1",
    port: 0,
    readTimeoutMs: 300,
    weights: true,
  });
  try {
    await waitFor(
      "one UP, one DOWN",
      () => monitor.status()[0]?.state === "UP" && monitor.status()[1]?.state === "DOWN",
    );
    // FakeMetrics: cpu 12.5, mem 40 -> 10 + 90 x 0.6 = 64.
    assert.equal(await agentCheck(server.port, "10.0.0.1:4243\n"), "up ready 64%\n");
    assert.equal(await agentCheck(server.port, "10.0.0.1:4243\r\n"), "up ready 64%\n");
    assert.match(
      await agentCheck(server.port, "10.0.0.2:4243\n"),
      /^down #QHCP DOWN: connect failed: .*\n$/,
    );
    assert.equal(
      await agentCheck(server.port, "10.0.0.9:4243\n"),
      "down #QHCP: unknown server 10.0.0.9:4243\n",
    );
    assert.equal(
      await agentCheck(server.port, "not a server\n"),
      "down #QHCP: unknown server not a server\n",
    );
    // No agent-send configured: HAProxy sends nothing; the answer says what to do.
    assert.match(await agentCheck(server.port, null), /^down #QHCP: set agent-send/);
    assert.equal(server.replies, 6);
  } finally {
    await server.close();
    await monitor.stop();
    await agent.shutdown("done", 50);
  }
});

Deno.test("DrainSwitch: SIGUSR1 toggles; a drain file holds DRAINING while it exists; each change is reported once", async () => {
  const dir = await tempDir("drain");
  const changes: string[] = [];
  const drain = new DrainSwitch({
    file: `${dir}/drain`,
    pollMs: 20,
    onChange: (d, cause) => changes.push(`${d} ${cause}`),
  });
  try {
    drain.start();
    assert.equal(drain.draining, false);
    drain.toggle();
    assert.equal(drain.draining, true);
    drain.toggle();
    assert.equal(drain.draining, false);
    await Deno.writeTextFile(`${dir}/drain`, "");
    await waitFor("file seen", () => drain.draining, 2000, 10);
    drain.toggle(); // on by hand too: still draining, no change to report
    await Deno.remove(`${dir}/drain`);
    await sleep(100);
    assert.equal(drain.draining, true, "the manual switch still holds it");
    drain.toggle();
    assert.equal(drain.draining, false);
    assert.deepEqual(changes, [
      "true SIGUSR1",
      "false SIGUSR1",
      `true drain file ${dir}/drain created`,
      "false SIGUSR1",
    ]);
  } finally {
    drain.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LocalChecks: TCP and HTTP checks pass and fail for the right reasons, within their timeout", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = (listener.addr as Deno.NetAddr).port;
  const accepting = (async () => {
    for await (const c of listener) c.close();
  })().catch(() => {});
  const closed = (() => {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const p = (l.addr as Deno.NetAddr).port;
    l.close();
    return p;
  })();
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/slow") await sleep(600);
    if (path === "/moved") {
      return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
    }
    return new Response(path === "/sick" ? "no" : "ok", { status: path === "/sick" ? 503 : 200 });
  });
  const base = `http://127.0.0.1:${http.addr.port}`;
  const changes: LocalCheckResult[] = [];
  const checks = new LocalChecks([
    { kind: "tcp", host: "127.0.0.1", port: open },
    { kind: "tcp", host: "127.0.0.1", port: closed },
    { kind: "http", url: `${base}/ok` },
    { kind: "http", url: `${base}/moved` },
    { kind: "http", url: `${base}/sick` },
    { kind: "http", url: `${base}/slow` },
  ], { timeoutMs: 300, intervalMs: 60_000, onChange: (r) => changes.push(r) });
  try {
    assert.equal(checks.failing, false, "nothing known to be wrong before the first round");
    const t0 = performance.now();
    await checks.start();
    assert.ok(performance.now() - t0 < 1500, "every check bounded by its timeout");
    const r = checks.results();
    assert.deepEqual(r.map((x) => [x.name, x.ok]), [
      [`tcp 127.0.0.1:${open}`, true],
      [`tcp 127.0.0.1:${closed}`, false],
      [`http ${base}/ok`, true],
      [`http ${base}/moved`, true],
      [`http ${base}/sick`, false],
      [`http ${base}/slow`, false],
    ]);
    assert.match(r[0]!.detail, /^connected in \d+\.\d ms$/);
    assert.match(r[1]!.detail, /refused/i);
    assert.match(r[3]!.detail, /^HTTP 302 /);
    assert.match(r[4]!.detail, /^HTTP 503 /);
    assert.equal(r[5]!.detail, "no answer within 300 ms");
    assert.equal(checks.failing, true);
    assert.equal(changes.length, 6, "the first round reports every check once");
    await checks.runOnce();
    assert.equal(changes.length, 6, "unchanged outcomes are not reported again");
  } finally {
    await checks.stop();
    listener.close();
    await accepting;
    await http.shutdown();
  }
});

Deno.test("A FAILING server is checked as failed: DOWN after fall, with the failing check named, then UP when it passes", async () => {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  let status: ServerStatus = "UP";
  let results: LocalCheckResult[] = [{
    name: "tcp 127.0.0.1:5432",
    ok: true,
    detail: "connected in 0.3 ms",
  }];
  const agent = await startMemoryAgent(transport, "10.0.0.1", {
    secret,
    serverId: "db-1",
    status: () => status,
    checks: () => results,
  });
  const monitor = new Monitor({
    transport,
    signer,
    servers: [{ host: "10.0.0.1", port: 4243 }],
    insecure: true,
    checkIntervalMs: 100,
    fastIntervalMs: 50,
    maxFailAttempts: 3,
    rise: 2,
  });
  monitor.start();
  try {
    await waitFor("UP", () => monitor.status()[0]?.state === "UP");
    assert.deepEqual(monitor.status()[0]!.checks, results);
    status = "FAILING";
    results = [{
      name: "tcp 127.0.0.1:5432",
      ok: false,
      detail: "Connection refused (os error 111)",
    }];
    await waitFor("DOWN", () => monitor.status()[0]?.state === "DOWN");
    const s = monitor.status()[0]!;
    assert.equal(
      s.last_error,
      "server FAILING: tcp 127.0.0.1:5432: Connection refused (os error 111)",
    );
    assert.ok(s.consecutive_failures >= 3, `${s.consecutive_failures} failures`);
    assert.equal(s.status, "FAILING");
    assert.equal(s.weight, 0);
    status = "UP";
    results = [{ name: "tcp 127.0.0.1:5432", ok: true, detail: "connected in 0.3 ms" }];
    await waitFor("UP again", () => monitor.status()[0]?.state === "UP");
  } finally {
    await monitor.stop();
    await agent.shutdown("done", 50);
  }
});

Deno.test("HEALTH_RESPONSE carries checks and status FAILING through the codec", () => {
  const m = {
    type: "HEALTH_RESPONSE" as const,
    seq: 2,
    re: 2,
    status: "FAILING" as const,
    metrics: { cpu_percent: 1, mem_percent: 2 },
    ts: 5,
    checks: [{ name: "http http://127.0.0.1/healthz", ok: false, detail: "HTTP 503 in 1.0 ms" }],
  };
  assert.deepEqual(decodeFrame(encodeMessage(m)), m);
  const body = (o: unknown) => {
    const b = new TextEncoder().encode(JSON.stringify(o));
    const f = new Uint8Array(4 + b.length);
    new DataView(f.buffer).setUint32(0, b.length);
    f.set(b, 4);
    return f;
  };
  assert.throws(
    () => decodeFrame(body({ ...m, checks: [{ name: "x", ok: "no", detail: "" }] })),
    /field 'checks'/,
  );
  assert.throws(() => decodeFrame(body({ ...m, status: "SICK" })), /"UP", "DRAINING" or "FAILING"/);
});
