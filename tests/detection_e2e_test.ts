/**
 * Quick detection for real (docs/PROTOCOL.md §10): lb.ts and server.ts
 * processes on both QUIC stacks, SIGKILL and SIGSTOP, drains pushed at once,
 * extended and plain QHCP/1 peers both ways, heartbeats through a lossy
 * jittery relay, and an LB whose own event loop keeps stalling. Bounds here
 * are generous (a busy 2-core machine); `deno task bench` measures the
 * distributions.
 */

import assert from "node:assert/strict";
import { Agent } from "../lib/agent/agent.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import type { CausedTransition } from "../lib/lb/record.ts";
import { createNativeTransport } from "../lib/transport/native.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { readSecretFile } from "../lib/security/jwt.ts";
import {
  FakeMetrics,
  fetchStatus,
  Fleet,
  hmacPair,
  type Program,
  sleep,
  waitFor,
} from "./_helpers.ts";
import { record } from "./_report.ts";
import { UdpRelay } from "./_udp_relay.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** The time stamp of the first line matching `re`, ms since the epoch. */
async function lineTime(program: Program, re: RegExp, timeoutMs = 15_000): Promise<number> {
  const m = await program.waitForLine(new RegExp(`^(\\S+) .*${re.source}`), timeoutMs);
  return Date.parse(m[1]!);
}

/** An LB and one agent on `stack`, the agent UP with heartbeats flowing. */
async function pair(fleet: Fleet, stack: string, lbArgs: string[] = [], serverArgs: string[] = []) {
  const server = await fleet.server(["--server-port", "0", "--quic", stack, ...serverArgs]);
  const lb = await fleet.lb([
    "--servers",
    `127.0.0.1:${server.port}`,
    "--quic",
    stack,
    "--table",
    "off",
    "--log-level",
    "debug",
    ...lbArgs,
  ]);
  await lb.program.waitForLine(/server UP /);
  return { server, lb };
}

for (
  const [stack, signal, boundMs] of [
    ["native", "SIGKILL", 2000],
    ["native", "SIGSTOP", 2500],
    ["matrixai", "SIGKILL", 5000],
  ] as const
) {
  Deno.test({
    ...opts,
    name:
      `[${stack}] ${signal} of an agent: DOWN within ${boundMs} ms at the defaults, on heartbeat silence and a failed probe`,
    async fn() {
      await using fleet = await Fleet.create("detect");
      const { server, lb } = await pair(fleet, stack);
      // Let the detector learn the arrival pattern, then stop the agent mid-interval.
      await sleep(1500 + Math.random() * 500);
      const killedAt = Date.now();
      server.program.kill(signal);
      const downAt = await lineTime(lb.program, /server DOWN .*evidence=heartbeat_silence\+probe/);
      const took = downAt - killedAt;
      assert.ok(took <= boundMs, `DOWN ${took} ms after ${signal}\n${lb.program.output()}`);
      record("detection", `${stack} ${signal} to DOWN (defaults)`, took, "ms", `<= ${boundMs}`);
      if (signal === "SIGSTOP") server.program.kill("SIGKILL");
    },
  });
}

Deno.test({
  ...opts,
  name: "[native] a drain (SIGUSR1) is pushed: the LB shows DRAINING, weight 0, within 1 s",
  async fn() {
    await using fleet = await Fleet.create("drain-push");
    // A 60 s check interval: only a push can tell the LB in time.
    const { server, lb } = await pair(fleet, "native", ["--check-interval", "60"]);
    const t0 = Date.now();
    server.program.kill("SIGUSR1");
    await waitFor(
      "DRAINING",
      async () => (await fetchStatus(lb.httpPort))[0]?.status === "DRAINING",
      1000,
      5,
    );
    const took = Date.now() - t0;
    assert.equal((await fetchStatus(lb.httpPort))[0]!.weight, 0);
    record(
      "detection",
      "drain signal to DRAINING at the LB (check interval 60 s)",
      took,
      "ms",
      "<= 1000",
    );
  },
});

Deno.test({
  ...opts,
  name:
    "[native] plain QHCP/1 either way: an LB with --extensions none, and an agent with --extensions none, poll only and still find a dead server",
  async fn() {
    await using fleet = await Fleet.create("plain");
    const plain = ["--extensions", "none"];
    const cases: [string[], string[]][] = [[plain, []], [[], plain]];
    for (const [lbArgs, serverArgs] of cases) {
      const { server, lb } = await pair(
        fleet,
        "native",
        ["--check-interval", "1", ...lbArgs],
        serverArgs,
      );
      await lb.program.waitForLine(/session ready .*extensions=""/);
      await server.program.waitForLine(/LB session ready .*extensions=""/);
      assert.ok(!lb.program.output().includes("heartbeats stopped"));
      const status = (await fetchStatus(lb.httpPort))[0] as unknown as Record<string, unknown>;
      assert.equal(status.suspicion, null);
      assert.deepEqual(status.extensions, []);
      server.program.kill("SIGKILL");
      await lb.program.waitForLine(/server DOWN .*evidence=polls/, 10_000);
      await lb.program.stop();
    }
  },
});

// --- in-process LB: lossy paths and stalls ---------------------------------------------

const certs = await generateDevCertificates();
const secret = new TextEncoder().encode("detection-e2e-secret-0123456789-abcdef");

Deno.test({
  ...opts,
  name:
    "[native] 6 agents behind relays with 10 % loss and 50 ms jitter for 10 s: heartbeats and probes, zero false DOWN",
  async fn() {
    const transport = createNativeTransport();
    const agents: Agent[] = [];
    const relays: UdpRelay[] = [];
    for (let i = 0; i < 6; i++) {
      const agent = await Agent.start({
        transport,
        host: "127.0.0.1",
        port: 0,
        certPem: certs.serverCertPem,
        keyPem: certs.serverKeyPem,
        serverId: `lossy-${i}`,
        verifier: hmacPair(secret).verifier,
        metrics: new FakeMetrics(),
      });
      agents.push(agent);
      relays.push(await UdpRelay.start({ host: "127.0.0.1", port: agent.port }, { seed: 11 + i }));
    }
    const downs: CausedTransition[] = [];
    const monitor = new Monitor({
      transport,
      signer: hmacPair(secret).signer,
      servers: relays.map((r) => ({ host: "127.0.0.1", port: r.port })),
      caPem: certs.caCertPem,
      events: { onTransition: (_a, t) => t.to === "DOWN" && downs.push(t as CausedTransition) },
    });
    try {
      monitor.start();
      await waitFor("all UP", () => monitor.totals().up === 6, 10_000);
      for (const r of relays) r.set({ dropPercent: 10, jitterMs: 50 });
      await sleep(10_000);
      const records = monitor.records();
      const beats = records.reduce((n, r) => n + r.counters.heartbeats, 0);
      const probes = records.reduce((n, r) => n + r.counters.probes, 0);
      const dropped = relays.reduce((n, r) => n + r.stats.dropped, 0);
      assert.deepEqual(downs, [], "no false DOWN");
      assert.ok(beats > 6 * 10 * 2, `${beats} heartbeats`);
      assert.ok(dropped > 50, `the relays dropped ${dropped} datagrams`);
      record(
        "detection",
        "heartbeats through 10 % loss, 50 ms jitter (6 servers, 10 s)",
        beats,
        "heartbeats",
      );
      record("detection", "probes on suspicion under that loss", probes, "probes");
      record("detection", "false DOWN under that loss", downs.length, "", "must be 0");
    } finally {
      await monitor.stop();
      for (const r of relays) await r.close();
      for (const a of agents) await a.shutdown("done", 200);
      await transport.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "[native] an LB whose event loop stalls 300 ms every second for 10 s blames none of its 4 servers",
  async fn() {
    await using fleet = await Fleet.create("stall");
    const ports: number[] = [];
    for (let i = 0; i < 4; i++) {
      ports.push((await fleet.server(["--server-port", "0", "--quic", "native"])).port);
    }
    const transport = createNativeTransport();
    const downs: CausedTransition[] = [];
    const monitor = new Monitor({
      transport,
      signer: hmacPair(await readSecretFile(`${fleet.dir}/jwt.secret`)).signer,
      servers: ports.map((port) => ({ host: "127.0.0.1", port })),
      caPem: await Deno.readTextFile(`${fleet.dir}/ca.pem`),
      events: { onTransition: (_a, t) => t.to === "DOWN" && downs.push(t as CausedTransition) },
    });
    try {
      monitor.start();
      await waitFor("all UP", () => monitor.totals().up === 4, 10_000);
      for (let i = 0; i < 10; i++) {
        const until = performance.now() + 300;
        while (performance.now() < until) { /* the LB's loop is blocked */ }
        await sleep(700);
      }
      const probes = monitor.records().reduce((n, r) => n + r.counters.probes, 0);
      assert.deepEqual(downs, [], "no false DOWN");
      assert.equal(monitor.totals().up, 4);
      record(
        "detection",
        "probes while the LB stalled 300 ms/s (4 servers, 10 s)",
        probes,
        "probes",
      );
      record("detection", "false DOWN while the LB stalled", downs.length, "", "must be 0");
    } finally {
      await monitor.stop();
      await transport.close();
    }
  },
});
