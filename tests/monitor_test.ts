/** Monitor-level behaviour on the in-memory transport: configuration checks, adding and removing servers. */

import assert from "node:assert/strict";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { createLogger } from "../lib/util/log.ts";
import { hmacPair, makeCredentials, sleep, startMemoryAgent, waitFor } from "./_helpers.ts";

const { secret } = await makeCredentials();

/** Agents on port 4243 of each host. */
function startAgents(transport: MemoryTransport, hosts: string[]) {
  return Promise.all(
    hosts.map((host, i) => startMemoryAgent(transport, host, { secret, serverId: `web-${i + 1}` })),
  );
}

async function fixture() {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  const agents = await startAgents(transport, ["10.0.0.1", "10.0.0.2"]);
  const monitor = new Monitor({
    transport,
    signer,
    servers: [{ host: "10.0.0.1", port: 4243 }],
    insecure: true,
    checkIntervalMs: 100,
  });
  monitor.start();
  return {
    monitor,
    agents,
    async close() {
      await monitor.stop();
      await Promise.all(agents.map((a) => a.shutdown("done", 100)));
    },
  };
}

Deno.test("Monitor.configure() refuses bad values before anything is sent", async () => {
  const f = await fixture();
  try {
    await waitFor("UP", () => f.monitor.status()[0]?.state === "UP");
    await assert.rejects(
      f.monitor.configure({ interval_ms: 50 }),
      /interval_ms number 50 is not an integer in 100\.\.3600000/,
    );
    await assert.rejects(
      f.monitor.configure({ metrics: [""] }),
      /metrics must be an array of non-empty strings/,
    );
    await assert.rejects(
      f.monitor.configure({ colour: "blue" } as never),
      /unknown field 'colour'/,
    );
    await assert.rejects(
      f.monitor.configure({}, ["10.9.9.9:4243"]),
      /unknown server 10\.9\.9\.9:4243/,
    );
    assert.equal(f.monitor.settings.checkIntervalMs, 100);
    // The session was not disturbed.
    const before = f.monitor.status()[0]!.checks_ok;
    await waitFor("more checks", () => f.monitor.status()[0]!.checks_ok > before + 2);
    assert.equal(f.agents[0]!.sessions().length, 1);
  } finally {
    await f.close();
  }
});

Deno.test("Monitor.addServer() starts watching at once; removeServer() ends the session with TERMINATE", async () => {
  const f = await fixture();
  try {
    assert.equal(f.monitor.addServer({ host: "10.0.0.2", port: 4243 }), "10.0.0.2:4243");
    assert.throws(() => f.monitor.addServer({ host: "10.0.0.2", port: 4243 }), /already watched/);
    await waitFor(
      "both UP",
      () => f.monitor.status().every((s) => s.state === "UP") && f.monitor.status().length === 2,
    );
    assert.equal(await f.monitor.removeServer("10.0.0.2:4243"), true);
    assert.equal(await f.monitor.removeServer("10.0.0.2:4243"), false);
    assert.deepEqual(f.monitor.addresses(), ["10.0.0.1:4243"]);
    await waitFor("agent 2 has no session", () => f.agents[1]!.sessions().length === 0, 2000);
  } finally {
    await f.close();
  }
});

Deno.test("Monitor refuses an lbId that differs from its signer's issuer", () => {
  const { signer } = hmacPair(secret, "lb-a");
  assert.throws(
    () =>
      new Monitor({
        transport: new MemoryTransport(),
        signer,
        lbId: "lb-b",
        servers: [],
        insecure: true,
      }),
    /differs from the token issuer/,
  );
  assert.throws(
    () => new Monitor({ transport: new MemoryTransport(), signer, servers: [] }),
    /needs a CA bundle/,
  );
});

Deno.test("Every verdict change is logged once with its cause, reason and timing", async () => {
  const transport = new MemoryTransport();
  const lines: string[] = [];
  const log = createLogger({ sink: (l) => lines.push(l) });
  const { signer } = hmacPair(secret);
  const agent = await startMemoryAgent(transport, "10.0.0.1", { secret, serverId: "web-1" });
  const wrong = await startMemoryAgent(transport, "10.0.0.3", {
    secret: new TextEncoder().encode("x".repeat(40)),
    serverId: "web-3",
  });
  const monitor = new Monitor({
    transport,
    signer,
    servers: [
      { host: "10.0.0.1", port: 4243 },
      { host: "10.0.0.2", port: 4243 },
      { host: "10.0.0.3", port: 4243 },
    ],
    insecure: true,
    checkIntervalMs: 100,
    checkTimeoutMs: 100,
    fastIntervalMs: 50,
    log,
  });
  try {
    monitor.start();
    await waitFor("1 UP, 2 and 3 DOWN", () => {
      const s = monitor.status();
      return s[0]?.state === "UP" && s[1]?.state === "DOWN" && s[2]?.state === "DOWN";
    });
    await agent.shutdown("maintenance", 100);
    await waitFor("1 DOWN", () => monitor.status()[0]?.state === "DOWN");
    await sleep(200);
    const changes = lines.filter((l) => /server (UP|DOWN) /.test(l));
    const of = (server: string) => changes.filter((l) => l.includes(`server=${server} `));
    // Each server changed exactly as often as its verdict did: no repeated lines.
    assert.equal(of("10.0.0.1:4243").length, 2, changes.join("\n"));
    assert.equal(of("10.0.0.2:4243").length, 1, changes.join("\n"));
    assert.equal(of("10.0.0.3:4243").length, 1, changes.join("\n"));
    assert.match(
      of("10.0.0.1:4243")[0]!,
      /INFO server UP .*from=UNKNOWN to=UP cause=check_ok .*took_ms=\d+ after_ms=\d+/,
    );
    assert.match(
      of("10.0.0.1:4243")[1]!,
      /WARN server DOWN .*cause=terminated evidence=terminate reason="server terminated the session: maintenance" took_ms=0 /,
    );
    assert.match(
      of("10.0.0.2:4243")[0]!,
      /cause=unreachable evidence=polls reason="connect failed: no QUIC handshake/,
    );
    assert.match(
      of("10.0.0.3:4243")[0]!,
      /cause=unauthorized evidence=polls reason="UNAUTHORIZED: Cannot accept HELLO/,
    );
    // took_ms of the unreachable server: from its first failed dial to DOWN (3 failures).
    const took = Number(/took_ms=(\d+)/.exec(of("10.0.0.2:4243")[0]!)![1]);
    assert.ok(took >= 100, `took_ms ${took}`);
  } finally {
    await monitor.stop();
    await wrong.shutdown("done", 100);
  }
});

Deno.test("Monitor.totals() counts verdicts and checks; a stalled event loop shows as late checks", async () => {
  const f = await fixture();
  try {
    await waitFor("UP", () => f.monitor.status()[0]?.state === "UP");
    await waitFor("a few checks", () => f.monitor.totals().checks_ok >= 3);
    // Block the LB's event loop for 3.5 intervals: the check due meanwhile is answered late.
    const until = performance.now() + 350;
    while (performance.now() < until) { /* stall */ }
    await waitFor("a late check", () => f.monitor.totals().checks_late >= 1, 2000);
    const t = f.monitor.totals();
    assert.equal(t.servers, 1);
    assert.equal(t.up, 1);
    assert.equal(t.down + t.unknown, 0);
    assert.equal(t.sessions, 1);
    assert.equal(t.downs, 0);
    assert.equal(t.checks_failed, 0);
    assert.ok(t.checks_late <= t.checks_ok, JSON.stringify(t));
    assert.equal(t.checks_ok, f.monitor.status()[0]!.checks_ok);
  } finally {
    await f.close();
  }
});

Deno.test("Monitor keeps at most maxConcurrentDials handshakes in flight; every server still comes UP", async () => {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  const hosts = Array.from({ length: 12 }, (_, i) => `10.0.1.${i + 1}`);
  const agents = await startAgents(transport, hosts);
  let inFlight = 0;
  let most = 0;
  // Every dial takes 40 ms: without the gate all twelve would overlap.
  const slow = Object.assign(Object.create(transport), {
    dial: async (o: Parameters<MemoryTransport["dial"]>[0]) => {
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await sleep(40);
        return await transport.dial(o);
      } finally {
        inFlight--;
      }
    },
  }) as MemoryTransport;
  const monitor = new Monitor({
    transport: slow,
    signer,
    servers: hosts.map((host) => ({ host, port: 4243 })),
    insecure: true,
    checkIntervalMs: 1000,
    maxConcurrentDials: 3,
  });
  monitor.start();
  try {
    await waitFor("all UP", () => monitor.totals().up === hosts.length, 5000);
    assert.equal(most, 3);
  } finally {
    await monitor.stop();
    await Promise.all(agents.map((a) => a.shutdown("done", 100)));
  }
});

Deno.test("Monitor.subscribe() hears once per check (its reply), not again for the request going out", async () => {
  const f = await fixture();
  try {
    await waitFor("UP", () => f.monitor.status()[0]?.state === "UP");
    let heard = 0;
    const unsubscribe = f.monitor.subscribe(() => heard++);
    const before = f.monitor.status()[0]!.checks_ok;
    await waitFor("ten more checks", () => f.monitor.status()[0]!.checks_ok >= before + 10);
    const checks = f.monitor.status()[0]!.checks_ok - before;
    unsubscribe();
    // One request may be out at either end of the window.
    assert.ok(heard >= checks - 1 && heard <= checks + 1, `${heard} notices for ${checks} checks`);
  } finally {
    await f.close();
  }
});

Deno.test("Monitor.heartbeatMs and totals() say 0 when heartbeats are not offered (plain QHCP/1)", async () => {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  const options = { transport, signer, servers: [], insecure: true };
  const plain = new Monitor({ ...options, extensions: [] });
  const polls = new Monitor({ ...options, extensions: ["push"] });
  const beats = new Monitor({ ...options, extensions: ["heartbeat"], heartbeatMs: 700 });
  try {
    assert.equal(plain.heartbeatMs, 0);
    assert.equal(plain.totals().heartbeat_ms, 0);
    assert.equal(polls.heartbeatMs, 0, "push without heartbeat");
    assert.equal(beats.heartbeatMs, 700);
  } finally {
    await Promise.all([plain.stop(), polls.stop(), beats.stop()]);
  }
});

Deno.test("Monitor.subscribe() hears a status change that a heartbeat brings, before any check", async () => {
  const transport = new MemoryTransport();
  const { signer } = hmacPair(secret);
  let status: "UP" | "DRAINING" = "UP";
  const agent = await startMemoryAgent(transport, "10.0.0.1", {
    secret,
    status: () => status,
    extensions: ["heartbeat"], // no push: the heartbeat is the only news
  });
  const monitor = new Monitor({
    transport,
    signer,
    servers: [{ host: "10.0.0.1", port: 4243 }],
    insecure: true,
    checkIntervalMs: 60_000,
    heartbeatMs: 100,
  });
  monitor.start();
  try {
    await waitFor("UP", () => monitor.status()[0]?.state === "UP");
    const heard: (string | null | undefined)[] = [];
    monitor.subscribe((a) => heard.push(monitor.server(a)?.status));
    status = "DRAINING";
    await waitFor("a notice with DRAINING", () => heard.includes("DRAINING"), 5000);
  } finally {
    await monitor.stop();
    await agent.shutdown("done", 100);
  }
});
