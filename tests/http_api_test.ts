/** The LB's HTTP API on the in-memory transport: every route, its auth and its validation. */

import assert from "node:assert/strict";
import { createHttpApi } from "../lib/ops/http_api.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { FakeMetrics, hmacPair, makeCredentials, startMemoryAgent, waitFor } from "./_helpers.ts";

const { secret } = await makeCredentials();
const TOKEN = "admin-token-for-tests-0123456789";

async function fixture() {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret, "lb-http");
  const metrics = [new FakeMetrics(), new FakeMetrics()];
  metrics[0]!.values = { cpu_percent: 10, mem_percent: 20, load_1: 0.1, disk_percent: 5 };
  metrics[1]!.values = { cpu_percent: 70, mem_percent: 30, load_1: 2, disk_percent: 5 };
  const agents = await Promise.all(
    [0, 1].map((i) =>
      startMemoryAgent(transport, `10.0.0.${i + 1}`, {
        secret,
        serverId: `web-${i + 1}`,
        metrics: metrics[i]!,
        services: [{ name: "web", port: 8080 }],
      })
    ),
  );
  const monitor = new Monitor({
    transport,
    signer,
    servers: [1, 2, 3].map((i) => ({ host: `10.0.0.${i}`, port: 4243 })),
    insecure: true,
    checkIntervalMs: 100,
    checkTimeoutMs: 100,
    fastIntervalMs: 50,
  });
  monitor.start();
  const api = createHttpApi({
    monitor,
    lbId: "lb-http",
    startedAt: Date.now() - 5000,
    version: "9.9.9",
    adminToken: TOKEN,
  });
  await waitFor("two UP, one DOWN", () => {
    const s = monitor.status();
    return s[0]?.state === "UP" && s[1]?.state === "UP" && s[2]?.state === "DOWN";
  });
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    token: string | null = TOKEN,
  ) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) init.body = typeof body === "string" ? body : JSON.stringify(body);
    const res = await api.handler(new Request(`http://lb${path}`, init));
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text);
    } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
  };
  return {
    monitor,
    api,
    agents,
    metrics,
    call,
    async close() {
      api.close();
      await monitor.stop();
      await Promise.all(agents.map((a) => a.shutdown("done", 50)));
    },
  };
}

Deno.test("GET /status gives every server its weight: from load when UP, 0 when DOWN", async () => {
  const f = await fixture();
  try {
    const { status, json } = await f.call("GET", "/status");
    assert.equal(status, 200);
    const servers = json.servers as Record<string, unknown>[];
    for (
      const key of [
        "address",
        "state",
        "consecutive_failures",
        "last_rtt_ms",
        "metrics",
        "status",
        "last_error",
        "last_change",
        "weight",
      ]
    ) {
      for (const s of servers) assert.ok(key in s, key);
    }
    // floor 10 + 90 x (1 - max(cpu, mem) / 100)
    assert.deepEqual(servers.map((s) => s.weight), [82, 37, 0]);
  } finally {
    await f.close();
  }
});

Deno.test("GET /status and /api/servers page the server list with offset and limit; /status builds each view once", async () => {
  const f = await fixture();
  const status = f.monitor.status.bind(f.monitor);
  let views = 0;
  f.monitor.status = (offset?: number, limit?: number) => {
    const out = status(offset, limit);
    views += out.length;
    return out;
  };
  try {
    const whole = await f.call("GET", "/status");
    views = 0;
    const page = await f.call("GET", "/status?offset=1&limit=1");
    assert.equal(page.status, 200);
    assert.deepEqual(
      [page.json.total, page.json.offset, page.json.next],
      [3, 1, 2],
    );
    assert.deepEqual((page.json.servers as { address: string }[]).map((s) => s.address), [
      "10.0.0.2:4243",
    ]);
    // The services count every server, not only the page's.
    assert.deepEqual(page.json.services, [{ name: "web", healthy: 2, total: 2 }]);
    assert.deepEqual(page.json.services, whole.json.services);
    assert.equal(views, 3, "one view per server for /status");
    const last = await f.call("GET", "/api/servers?offset=2");
    assert.deepEqual([last.json.total, last.json.offset, last.json.next], [3, 2, null]);
    assert.deepEqual((last.json.servers as { address: string }[]).map((s) => s.address), [
      "10.0.0.3:4243",
    ]);
  } finally {
    await f.close();
  }
});

Deno.test("GET /api/servers/{address} returns one server with its recent check history", async () => {
  const f = await fixture();
  try {
    await waitFor("a few checks", () => (f.monitor.history("10.0.0.1:4243")?.length ?? 0) >= 3);
    const { status, json } = await f.call("GET", "/api/servers/10.0.0.1:4243");
    assert.equal(status, 200);
    assert.equal(json.address, "10.0.0.1:4243");
    const history = json.history as Record<string, unknown>[];
    assert.ok(history.length >= 3);
    assert.deepEqual(Object.keys(history[0]!).sort(), ["cpu", "mem", "result", "rtt_ms", "time"]);
    assert.equal(history.at(-1)!.result, "ok");
    assert.equal(history.at(-1)!.cpu, 10);
    const down = await f.call("GET", "/api/servers/10.0.0.3:4243");
    const failures = down.json.history as Record<string, unknown>[];
    assert.ok(failures.some((h) => h.result === "fail" && typeof h.error === "string"));
    assert.equal((await f.call("GET", "/api/servers/10.9.9.9:4243")).status, 404);
    assert.equal((await f.call("GET", "/api/servers/not%20an%20address")).status, 400);
  } finally {
    await f.close();
  }
});

Deno.test("GET /health/{address} answers 200 for UP and 503 otherwise", async () => {
  const f = await fixture();
  try {
    const up = await f.call("GET", "/health/10.0.0.1:4243", undefined, null);
    assert.equal(up.status, 200);
    assert.equal(up.json.state, "UP");
    const down = await f.call("GET", "/health/10.0.0.3:4243", undefined, null);
    assert.equal(down.status, 503);
    assert.equal(down.json.state, "DOWN");
    assert.equal((await f.call("GET", "/health/10.0.0.9:4243")).status, 404);
    const healthz = await f.call("GET", "/healthz");
    assert.equal(healthz.json.status, "ok");
    assert.ok((healthz.json.uptime_s as number) >= 5);
  } finally {
    await f.close();
  }
});

Deno.test("GET /api/pick spreads by weight, picks the least loaded, or takes turns; 503 when nothing is UP", async () => {
  const f = await fixture();
  try {
    const picks = async (strategy: string, n: number) => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const r = await f.call("GET", `/api/pick?strategy=${strategy}`, undefined, null);
        assert.equal(r.status, 200);
        counts[r.json.address as string] = (counts[r.json.address as string] ?? 0) + 1;
      }
      return counts;
    };
    // Weights 82 and 37: picks in that proportion, the DOWN server never.
    const weighted = await picks("weighted", 119);
    assert.deepEqual(weighted, { "10.0.0.1:4243": 82, "10.0.0.2:4243": 37 });
    assert.deepEqual(await picks("least-loaded", 5), { "10.0.0.1:4243": 5 });
    assert.deepEqual(await picks("round-robin", 6), { "10.0.0.1:4243": 3, "10.0.0.2:4243": 3 });
    const def = await f.call("GET", "/api/pick", undefined, null);
    assert.equal(def.json.strategy, "weighted");
    const bad = await f.call("GET", "/api/pick?strategy=random", undefined, null);
    assert.equal(bad.status, 400);
    assert.match(
      bad.json.error as string,
      /query 'strategy' must be one of weighted, least-loaded, round-robin/,
    );
    await Promise.all(f.agents.map((a) => a.shutdown("maintenance", 50)));
    await waitFor("all DOWN", () => f.monitor.status().every((s) => s.state === "DOWN"));
    const none = await f.call("GET", "/api/pick", undefined, null);
    assert.equal(none.status, 503);
    assert.match(none.json.error as string, /no server is UP \(3 DOWN, 0 UNKNOWN\)/);
  } finally {
    await f.close();
  }
});

Deno.test("POST /api/config needs the admin token and rejects bad input naming the field", async () => {
  const f = await fixture();
  try {
    assert.equal((await f.call("POST", "/api/config", { metrics: ["load_1"] }, null)).status, 401);
    const wrong = await f.call(
      "POST",
      "/api/config",
      { metrics: ["load_1"] },
      "wrong-token-0123456789",
    );
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get("www-authenticate"), 'Bearer realm="qhcp"');
    const cases: [unknown, RegExp][] = [
      ["{not json", /body is not JSON/],
      [[1, 2], /body must be a JSON object/],
      [{ colour: "blue" }, /unknown field 'colour'/],
      [{ interval_ms: 50 }, /field 'interval_ms' must be an integer in 100\.\.3600000/],
      [{ interval_ms: "1000" }, /field 'interval_ms'/],
      [{ metrics: "load_1" }, /field 'metrics' must be an array of non-empty strings/],
      [{ metrics: ["load_1"], servers: [] }, /field 'servers' must be a non-empty array/],
      [
        { metrics: ["load_1"], servers: ["10.9.9.9:4243"] },
        /field 'servers': unknown server "10\.9\.9\.9:4243"/,
      ],
      [{ servers: ["10.0.0.1:4243"] }, /nothing to change/],
      // A list that would grow every later HELLO: bounded before anything is sent.
      [{ metrics: Array.from({ length: 65 }, (_, i) => `m${i}`) }, /at most 64/],
      [{ metrics: ["x".repeat(65)] }, /longer than 64 characters/],
    ];
    for (const [body, message] of cases) {
      const r = await f.call("POST", "/api/config", body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.json.error as string, message);
    }
    assert.equal(f.monitor.settings.checkIntervalMs, 100, "nothing changed");
  } finally {
    await f.close();
  }
});

Deno.test("POST /api/config sends CONFIG_UPDATE, returns each server's answer and moves the LB's interval", async () => {
  const f = await fixture();
  try {
    const r = await f.call("POST", "/api/config", { interval_ms: 200, metrics: ["load_1"] });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.ok, false, "the DOWN server cannot answer");
    assert.equal(r.json.interval_ms, 200);
    const results = r.json.results as Record<string, unknown>[];
    assert.deepEqual(results.map((x) => [x.address, x.ok]), [
      ["10.0.0.1:4243", true],
      ["10.0.0.2:4243", true],
      ["10.0.0.3:4243", false],
    ]);
    assert.deepEqual((results[0]!.config as Record<string, unknown>).metrics, [
      "cpu_percent",
      "mem_percent",
      "load_1",
    ]);
    assert.equal(results[2]!.code, "NOT_CONNECTED");
    assert.equal(f.monitor.settings.checkIntervalMs, 200);
    await waitFor("load_1 reported", () => f.monitor.status()[1]?.metrics?.load_1 === 2);
    // One server only; an unknown metric is the server's BAD_CONFIG.
    const one = await f.call("POST", "/api/config", {
      metrics: ["gpu"],
      servers: ["10.0.0.1:4243"],
    });
    // Refused by every server that answered: the LB keeps its own settings (422).
    assert.equal(one.status, 422);
    assert.equal(one.json.applied, false);
    const [only] = one.json.results as Record<string, unknown>[];
    assert.equal(only!.code, "BAD_CONFIG");
    assert.deepEqual(f.monitor.settings.metrics, ["load_1"]);
  } finally {
    await f.close();
  }
});

Deno.test("POST /api/servers and DELETE /api/servers/{address} change the watched set, with the admin token", async () => {
  const f = await fixture();
  try {
    assert.equal(
      (await f.call("POST", "/api/servers", { address: "10.0.0.4:4243" }, null)).status,
      401,
    );
    const added = await f.call("POST", "/api/servers", { address: "10.0.0.4:4243" });
    assert.equal(added.status, 201, added.text);
    assert.equal((added.json.server as Record<string, unknown>).address, "10.0.0.4:4243");
    assert.equal((await f.call("POST", "/api/servers", { address: "10.0.0.4:4243" })).status, 409);
    const bad = await f.call("POST", "/api/servers", { address: "10.0.0.4:99999" });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error as string, /field 'address': port/);
    assert.equal((await f.call("POST", "/api/servers", { host: "x" })).status, 400);
    assert.equal(f.monitor.addresses().length, 4);
    assert.equal(
      (await f.call("DELETE", "/api/servers/10.0.0.2:4243", undefined, null)).status,
      401,
    );
    const removed = await f.call("DELETE", "/api/servers/10.0.0.2:4243");
    assert.equal(removed.status, 200);
    assert.equal((await f.call("DELETE", "/api/servers/10.0.0.2:4243")).status, 404);
    assert.deepEqual(f.monitor.addresses(), ["10.0.0.1:4243", "10.0.0.3:4243", "10.0.0.4:4243"]);
    await waitFor("agent 2 lost its session", () => f.agents[1]!.sessions().length === 0, 2000);
  } finally {
    await f.close();
  }
});

Deno.test("Mutating endpoints answer 403 when the LB has no admin token", async () => {
  const transport = new MemoryTransport();
  const monitor = new Monitor({
    transport,
    signer: hmacPair(secret).signer,
    servers: [],
    insecure: true,
  });
  const api = createHttpApi({ monitor, lbId: "x", startedAt: Date.now(), version: "0" });
  const res = await api.handler(
    new Request("http://lb/api/servers", { method: "POST", body: "{}" }),
  );
  assert.equal(res.status, 403);
  await res.body?.cancel();
});

Deno.test("GET /metrics exports the documented families in the Prometheus text format", async () => {
  const f = await fixture();
  try {
    const r = await f.call("GET", "/metrics", undefined, null);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    for (
      const family of [
        "qhcp_server_up",
        "qhcp_server_weight",
        "qhcp_server_cpu_percent",
        "qhcp_server_mem_percent",
        "qhcp_check_duration_seconds",
        "qhcp_checks_total",
        "qhcp_state_changes_total",
        "qhcp_checks_late_total",
        "qhcp_sessions",
        "qhcp_reconnects_total",
        "qhcp_loop_stalled_seconds_total",
        "qhcp_loop_longest_stall_seconds",
        "qhcp_log_lines_dropped_total",
      ]
    ) assert.match(r.text, new RegExp(`^# TYPE ${family} `, "m"), family);
    assert.match(r.text, /^qhcp_server_up\{server="10\.0\.0\.1:4243"\} 1$/m);
    assert.match(r.text, /^qhcp_server_up\{server="10\.0\.0\.3:4243"\} 0$/m);
    assert.match(r.text, /^qhcp_server_weight\{server="10\.0\.0\.1:4243"\} 82$/m);
    assert.match(
      r.text,
      /^qhcp_checks_total\{server="10\.0\.0\.3:4243",result="fail"\} [1-9]\d*$/m,
    );
    assert.match(
      r.text,
      /^qhcp_check_duration_seconds_bucket\{server="10\.0\.0\.1:4243",le="\+Inf"\} [1-9]\d*$/m,
    );
    assert.match(r.text, /^qhcp_sessions 2$/m);
    assert.match(r.text, /^qhcp_reconnects_total [1-9]\d*$/m, "the DOWN server has been redialled");
    assert.match(r.text, /^qhcp_loop_stalled_seconds_total \d+(\.\d+)?$/m);
    assert.match(r.text, /^qhcp_log_lines_dropped_total 0$/m);
  } finally {
    await f.close();
  }
});

Deno.test("GET /api/events streams the status at once and again after a change", async () => {
  const f = await fixture();
  try {
    const res = await f.api.handler(new Request("http://lb/api/events"));
    assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const nextEvent = async () => {
      let text = "";
      while (!text.includes("\n\n")) text += (await reader.read()).value ?? "";
      return JSON.parse(/data: (.*)/.exec(text)![1]!);
    };
    const first = await nextEvent();
    assert.equal(first.servers.length, 3);
    assert.ok(Array.isArray(first.servers[0].history));
    await f.agents[0]!.shutdown("maintenance", 50);
    let event = await nextEvent();
    while (event.servers[0].state !== "DOWN") event = await nextEvent();
    assert.equal(event.servers[0].state, "DOWN");
    f.api.close();
    assert.equal((await reader.read()).done, true, "close() ends the stream");
  } finally {
    await f.close();
  }
});

Deno.test("GET / serves the dashboard page with everything inline; unknown routes 404, wrong methods 405", async () => {
  const f = await fixture();
  try {
    const page = await f.call("GET", "/", undefined, null);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /^text\/html/);
    assert.match(page.headers.get("content-security-policy")!, /default-src 'none'/);
    assert.match(page.text, /new EventSource\("api\/events"\)/);
    assert.doesNotMatch(page.text, /<script src=|<link [^>]*href="http/);
    assert.equal((await f.call("GET", "/nope")).status, 404);
    const wrong = await f.call("DELETE", "/status");
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "GET");
  } finally {
    await f.close();
  }
});

Deno.test("GET /api/totals sums verdicts and checks over every server", async () => {
  const f = await fixture();
  try {
    const r = await f.call("GET", "/api/totals", undefined, null);
    assert.equal(r.status, 200);
    const t = r.json as Record<string, number>;
    assert.equal(t.servers, 3);
    assert.equal(t.up, 2);
    assert.equal(t.down, 1);
    assert.equal(t.unknown, 0);
    assert.equal(t.sessions, 2);
    assert.ok(t.downs! >= 1, "the dead address went DOWN");
    const views = f.monitor.status();
    assert.ok(t.checks_ok! > 0 && t.checks_failed! >= 3);
    assert.ok(t.checks_ok! <= views.reduce((n, v) => n + v.checks_ok, 0));
    assert.equal((await f.call("POST", "/api/totals")).status, 405);
  } finally {
    await f.close();
  }
});
