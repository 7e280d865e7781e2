import assert from "node:assert/strict";
import { Agent } from "../lib/agent.ts";
import { createHttpHandler } from "../lib/http_api.ts";
import { MemoryTransport } from "../lib/memory_transport.ts";
import { Monitor } from "../lib/monitor.ts";
import { FakeMetrics, hmacPair, makeCredentials, waitFor } from "./_helpers.ts";

const { secret } = await makeCredentials();

async function fixture() {
  const transport = new MemoryTransport();
  const { signer, verifier } = hmacPair(secret, "lb-http");
  const agent = await Agent.start({
    transport,
    host: "10.0.0.1",
    port: 4243,
    certPem: "",
    keyPem: "",
    serverId: "web-1",
    verifier,
    metrics: new FakeMetrics(),
  });
  const monitor = new Monitor({
    transport,
    signer,
    lbId: "lb-http",
    servers: [{ host: "10.0.0.1", port: 4243 }, { host: "10.0.0.2", port: 4243 }],
    insecure: true,
    checkIntervalMs: 100,
    checkTimeoutMs: 100,
  });
  monitor.start();
  const handler = createHttpHandler({
    monitor,
    lbId: "lb-http",
    startedAt: Date.now() - 5000,
    version: "9.9.9",
  });
  return {
    handler,
    monitor,
    async close() {
      await monitor.stop();
      await agent.shutdown("done", 100);
    },
  };
}

Deno.test("GET /status returns every server with the documented fields", async () => {
  const f = await fixture();
  try {
    await waitFor("UP and DOWN", () => {
      const s = f.monitor.status();
      return s[0]?.state === "UP" && s[1]?.state === "DOWN";
    });
    const res = await f.handler(new Request("http://lb/status"));
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    const body = await res.json();
    assert.equal(body.lb_id, "lb-http");
    assert.equal(body.servers.length, 2);
    const [up, down] = body.servers;
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
      ]
    ) {
      assert.ok(key in up, key);
      assert.ok(key in down, key);
    }
    assert.equal(up.address, "10.0.0.1:4243");
    assert.equal(up.state, "UP");
    assert.equal(up.status, "UP");
    assert.deepEqual(up.metrics, { cpu_percent: 12.5, mem_percent: 40 });
    assert.equal(up.last_error, null);
    assert.ok(!Number.isNaN(Date.parse(up.last_change)));
    assert.equal(down.state, "DOWN");
    assert.equal(down.metrics, null);
    assert.match(down.last_error, /connect failed/);
  } finally {
    await f.close();
  }
});

Deno.test("GET /healthz reports the LB itself; unknown routes 404; other methods 405", async () => {
  const f = await fixture();
  try {
    const h = await (await f.handler(new Request("http://lb/healthz"))).json();
    assert.equal(h.status, "ok");
    assert.equal(h.version, "9.9.9");
    assert.ok(h.uptime_s >= 5);
    assert.equal((await f.handler(new Request("http://lb/nope"))).status, 404);
    const post = await f.handler(new Request("http://lb/status", { method: "POST", body: "{}" }));
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  } finally {
    await f.close();
  }
});
