/**
 * Faults injected for real: an in-process UDP relay between the LB and a
 * server agent drops, black-holes and heals datagrams of real QUIC sessions
 * on loopback; silent and slow peers hold sessions open. Each test asserts
 * the detection time against the bound the schedule promises, plus a stated
 * margin for a busy 2-core machine, and records what it saw.
 */

import assert from "node:assert/strict";
import { Agent } from "../lib/agent/agent.ts";
import { decodeMessage, encodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import type { Transition } from "../lib/lb/verdict.ts";
import { Monitor, type MonitorOptions } from "../lib/lb/monitor.ts";
import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import type { Listener, Transport } from "../lib/transport/transport.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { FakeMetrics, hmacPair, sleep, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";
import { UdpRelay } from "./_udp_relay.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const certs = await generateDevCertificates();
const secret = new TextEncoder().encode("faults-test-secret-0123456789-abcdefgh");
const MARGIN_MS = 1000;

interface Net {
  transport: Transport;
  agent: Agent;
  relay: UdpRelay;
  transitions: { address: string; t: Transition; at: number }[];
  monitor: Monitor;
  close(): Promise<void>;
}

async function startAgent(transport: Transport, port = 0): Promise<Agent> {
  return await Agent.start({
    transport,
    host: "127.0.0.1",
    port,
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
    serverId: "behind-relay",
    verifier: hmacPair(secret).verifier,
    metrics: new FakeMetrics(),
  });
}

/** An agent behind a relay and an LB dialing the relay. */
async function net(options: Partial<MonitorOptions>, extraPorts: number[] = []): Promise<Net> {
  const transport = createMatrixaiTransport();
  const agent = await startAgent(transport);
  const relay = await UdpRelay.start({ host: "127.0.0.1", port: agent.port }, { seed: 7 });
  const transitions: Net["transitions"] = [];
  const monitor = new Monitor({
    transport,
    signer: hmacPair(secret).signer,
    servers: [relay.port, ...extraPorts].map((port) => ({ host: "127.0.0.1", port })),
    caPem: certs.caCertPem,
    events: {
      onTransition: (address, t) => transitions.push({ address, t, at: performance.now() }),
    },
    ...options,
  });
  monitor.start();
  return {
    transport,
    agent,
    relay,
    transitions,
    monitor,
    async close() {
      await monitor.stop();
      await relay.close();
      await agent.shutdown("done", 200);
      await transport.close();
    },
  };
}

const stateOf = (m: Monitor, port: number) =>
  m.status().find((s) => s.address === `127.0.0.1:${port}`);

Deno.test({
  ...opts,
  name: "10 % packet loss for 60 checks at 0.2 s with fall 3 causes no false DOWN",
  async fn() {
    const n = await net({ checkIntervalMs: 200, maxFailAttempts: 3 });
    try {
      await waitFor("UP", () => stateOf(n.monitor, n.relay.port)?.state === "UP", 10_000);
      n.relay.set({ dropPercent: 10 });
      const start = stateOf(n.monitor, n.relay.port)!;
      const done = () => {
        const s = stateOf(n.monitor, n.relay.port)!;
        return s.checks_ok + s.checks_failed - start.checks_ok - start.checks_failed;
      };
      await waitFor("60 checks", () => done() >= 60, 60_000, 50);
      const s = stateOf(n.monitor, n.relay.port)!;
      const failed = s.checks_failed - start.checks_failed;
      assert.deepEqual(
        n.transitions.map((x) => x.t.to),
        ["UP"],
        `no DOWN under 10 % loss; transitions: ${
          n.transitions.map((x) => `${x.t.to} (${x.t.reason})`).join(", ")
        }`,
      );
      assert.ok(n.relay.stats.dropped > 10, `the relay dropped ${n.relay.stats.dropped} datagrams`);
      record("faults", "checks under 10 % loss", done(), "checks");
      record("faults", "datagrams dropped by the relay", n.relay.stats.dropped, "datagrams");
      record("faults", "failed checks under 10 % loss", failed, "checks");
      record("faults", "false DOWN under 10 % loss", 0, "", "must be 0");
    } finally {
      await n.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "Black-hole: DOWN within interval + timeout + (fall - 1) x fast interval; healed: UP within reconnect interval + rise checks",
  async fn() {
    const s = {
      checkIntervalMs: 500,
      checkTimeoutMs: 500,
      fastIntervalMs: 200,
      maxFailAttempts: 3,
      rise: 2,
      reconnectIntervalMs: 1000,
    };
    const n = await net(s);
    try {
      await waitFor("UP", () => stateOf(n.monitor, n.relay.port)?.state === "UP", 10_000);
      const t0 = performance.now();
      n.relay.set({ blackhole: true });
      await waitFor("DOWN", () => stateOf(n.monitor, n.relay.port)?.state === "DOWN", 10_000, 5);
      const downMs = performance.now() - t0;
      // The next check comes within one (jittered) interval, then times out; the
      // remaining fall - 1 checks come and time out one fast interval apart.
      const downBound = s.checkIntervalMs * 1.1 + s.checkTimeoutMs +
        (s.maxFailAttempts - 1) * s.fastIntervalMs;
      assert.ok(
        downMs <= downBound + MARGIN_MS,
        `DOWN after ${downMs} ms (bound ${downBound} + ${MARGIN_MS})`,
      );
      assert.match(stateOf(n.monitor, n.relay.port)!.last_error!, /timeout/);
      await sleep(1500); // redials keep failing in the black hole
      const t1 = performance.now();
      n.relay.set({});
      await waitFor("UP", () => stateOf(n.monitor, n.relay.port)?.state === "UP", 10_000, 5);
      const upMs = performance.now() - t1;
      // A redial comes within one reconnect interval (the backoff cap); one may be
      // in flight when the path heals and time out first; then rise checks, one
      // fast interval apart.
      const upBound = s.reconnectIntervalMs + s.checkTimeoutMs + (s.rise - 1) * s.fastIntervalMs;
      assert.ok(
        upMs <= upBound + MARGIN_MS,
        `UP after ${upMs} ms (bound ${upBound} + ${MARGIN_MS})`,
      );
      record("faults", "black-hole to DOWN", downMs, "ms", `<= ${downBound} + ${MARGIN_MS} ms`);
      record("faults", "heal to UP", upMs, "ms", `<= ${upBound} + ${MARGIN_MS} ms`);
      const down = n.transitions.find((x) => x.t.to === "DOWN")!;
      record("faults", "first failed check to DOWN (took_ms in the log)", down.t.tookMs, "ms");
    } finally {
      await n.close();
    }
  },
});

/** A peer that answers HELLO, then never answers (mode "mute") or answers one byte per second ("slow"). */
async function badPeer(transport: Transport, mode: "mute" | "slow"): Promise<Listener> {
  return await transport.listen({
    host: "127.0.0.1",
    port: 0,
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
  }, (ch) => {
    void (async () => {
      const frames = new FrameDecoder();
      let seq = 1;
      for (let chunk = await ch.read(); chunk; chunk = await ch.read()) {
        frames.push(chunk);
        for (let p = frames.next(); p; p = frames.next()) {
          const m = decodeMessage(p);
          if (m.type === "HELLO") {
            await ch.write(
              encodeMessage({
                type: "ACK",
                seq: seq++,
                re: m.seq,
                version: 1,
                server_id: mode,
                metrics: [],
              }),
            )
              .catch(() => {});
          } else if (m.type === "HEALTH_REQUEST" && mode === "slow") {
            const bytes = encodeMessage({
              type: "HEALTH_RESPONSE",
              seq: seq++,
              re: m.seq,
              status: "UP",
              metrics: { cpu_percent: 1, mem_percent: 1 },
              ts: Date.now(),
            });
            void (async () => {
              for (const b of bytes) {
                if (await ch.write(Uint8Array.of(b)).then(() => false, () => true)) return;
                await sleep(1000);
              }
            })();
          }
        }
      }
    })().catch(() => {});
  });
}

Deno.test({
  ...opts,
  name:
    "A silent server and a server answering one byte per second are failed on time and never delay a healthy one",
  async fn() {
    const transport = createMatrixaiTransport();
    const mute = await badPeer(transport, "mute");
    const slow = await badPeer(transport, "slow");
    const s = {
      checkIntervalMs: 200,
      checkTimeoutMs: 400,
      fastIntervalMs: 200,
      maxFailAttempts: 3,
    };
    const n = await net(s, [mute.port, slow.port]);
    try {
      const t0 = performance.now();
      await waitFor(
        "mute and slow DOWN",
        () =>
          stateOf(n.monitor, mute.port)?.state === "DOWN" &&
          stateOf(n.monitor, slow.port)?.state === "DOWN",
        10_000,
        5,
      );
      const downMs = performance.now() - t0;
      // From start: connect and first check at once, each of `fall` checks times out
      // after min(timeout, fast interval) once in doubt.
      const bound = s.checkTimeoutMs +
        (s.maxFailAttempts - 1) *
          Math.max(s.fastIntervalMs, Math.min(s.checkTimeoutMs, s.fastIntervalMs));
      assert.ok(
        downMs <= bound + MARGIN_MS,
        `DOWN after ${downMs} ms (bound ${bound} + ${MARGIN_MS})`,
      );
      for (const port of [mute.port, slow.port]) {
        assert.match(stateOf(n.monitor, port)!.last_error!, /timeout: no HEALTH_RESPONSE/);
      }
      // Over 3 s with both bad peers being checked, failed and redialled, the
      // healthy server behind the relay is still checked about every 200 ms.
      await sleep(Math.max(0, 3000 - (performance.now() - t0)));
      const windowMs = performance.now() - t0;
      const good = stateOf(n.monitor, n.relay.port)!;
      const expectedChecks = windowMs / (s.checkIntervalMs * 1.1);
      assert.equal(good.state, "UP");
      assert.equal(good.checks_failed, 0);
      assert.ok(
        good.checks_ok >= expectedChecks * 0.6,
        `${good.checks_ok} checks of the healthy server in ${windowMs} ms`,
      );
      record(
        "faults",
        "silent and one-byte-per-second servers to DOWN",
        downMs,
        "ms",
        `<= ${bound} + ${MARGIN_MS} ms`,
      );
      record(
        "faults",
        "healthy server's good checks in the same 3 s",
        good.checks_ok,
        "checks",
        ">= 60 % of one per interval",
      );
    } finally {
      await n.close();
      await mute.close();
      await slow.close();
      await transport.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "Delay, jitter, duplication and reordering together cause no failed check and show in the round trip",
  async fn() {
    const n = await net({ checkIntervalMs: 100, checkTimeoutMs: 1000, maxFailAttempts: 3 });
    const rtts: number[] = [];
    try {
      await waitFor("UP", () => stateOf(n.monitor, n.relay.port)?.state === "UP", 10_000);
      n.relay.set({ delayMs: 20, jitterMs: 10, duplicatePercent: 10, reorderPercent: 10 });
      const start = stateOf(n.monitor, n.relay.port)!;
      await waitFor(
        "40 checks",
        () => {
          const s = stateOf(n.monitor, n.relay.port)!;
          if (s.last_rtt_ms !== null && s.checks_ok > start.checks_ok + rtts.length) {
            rtts.push(s.last_rtt_ms);
          }
          return s.checks_ok + s.checks_failed >= start.checks_ok + start.checks_failed + 40;
        },
        30_000,
        5,
      );
      const s = stateOf(n.monitor, n.relay.port)!;
      assert.equal(s.checks_failed, start.checks_failed, "no failed check");
      assert.deepEqual(n.transitions.map((x) => x.t.to), ["UP"]);
      const stats = n.relay.stats;
      assert.ok(
        stats.duplicated > 0 && stats.reordered > 0 && stats.delayed > 0,
        JSON.stringify(stats),
      );
      // Each way is delayed by at least 20 ms, so a check takes at least 40 ms.
      const min = Math.min(...rtts);
      assert.ok(min >= 40, `smallest round trip ${min} ms`);
      record(
        "faults",
        "round trip with 20 ms (+0-10 ms) delay each way, min",
        min,
        "ms",
        ">= 40 ms",
      );
      record("faults", "failed checks with delay, duplication and reordering", 0, "", "must be 0");
      record(
        "faults",
        "datagrams duplicated / reordered",
        `${stats.duplicated} / ${stats.reordered}`,
        "",
      );
    } finally {
      await n.close();
    }
  },
});
