/**
 * The watch (the driver of one server) against an in-memory peer, on an
 * injected clock and timer: checks come exactly on the schedule, timeouts
 * exactly at their deadlines, DOWN after fall failures, and redials back
 * off, without waiting for real time.
 */

import assert from "node:assert/strict";
import { Scheduler } from "../lib/lb/timers.ts";
import { Watch, type WatchSettings } from "../lib/lb/watch.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { CLOSE_CODES } from "../lib/protocol/wire.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { silentLogger } from "../lib/util/log.ts";
import { hmacPair, ManualClock, startMemoryAgent, startMutePeer } from "./_helpers.ts";

const certs = await generateDevCertificates({ hosts: ["10.0.0.1", "10.0.0.2"] });
const secret = new TextEncoder().encode("watch-test-secret-0123456789-abcdefghij");

function settings(over: Partial<WatchSettings> = {}): WatchSettings {
  return {
    lbId: "lb-test",
    checkIntervalMs: 10_000,
    checkTimeoutMs: 2000,
    fastIntervalMs: 1000,
    jitter: 0.1,
    reconnectIntervalMs: 30_000,
    maxFailAttempts: 3,
    rise: 2,
    metrics: undefined,
    caPem: certs.caCertPem,
    insecure: false,
    idleTimeoutMs: 30_000,
    weights: {},
    extensions: [],
    heartbeatMs: 0,
    suspectPhi: 8,
    minProbeTimeoutMs: 200,
    maxProbeTimeoutMs: 1000,
    ...over,
  };
}

/** A watch on a manual clock; jitter draws 0.5 (no spread) and backoff draws 0.5. */
function watch(transport: MemoryTransport, host: string, clock: ManualClock, s = settings()) {
  return new Watch({ host, port: 4243 }, {
    transport,
    signer: hmacPair(secret).signer,
    settings: s,
    log: silentLogger,
    now: clock.now,
    random: () => 0.5,
    scheduler: new Scheduler({ now: clock.now, timer: clock.timer, slackMs: 0 }),
  });
}

/** Lets in-flight I/O finish without moving the clock, until `cond` holds. */
async function until(clock: ManualClock, what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await clock.advance(0, 10);
  assert.ok(cond(), `never: ${what}`);
}

Deno.test({
  name:
    "Watch checks once per interval by its clock, never early, and planned from when each check was due",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const transport = new MemoryTransport();
    const clock = new ManualClock();
    const agent = await startMemoryAgent(transport, "10.0.0.1", {
      certPem: certs.serverCertPem,
      secret,
    });
    const w = watch(transport, "10.0.0.1", clock);
    try {
      w.start();
      await until(clock, "the first good check", () => w.counters().ok === 1);
      assert.equal(w.state, "UP");
      const t0 = clock.now();
      await clock.advance(9_999);
      assert.equal(w.counters().ok, 1, "no check before the interval");
      await clock.advance(1);
      await until(clock, "the second check", () => w.counters().ok === 2);
      assert.equal(clock.now() - t0, 10_000);
      // The next one is due 10 s after this one was due, whatever the answer took.
      await clock.advance(9_999);
      assert.equal(w.counters().ok, 2);
      await clock.advance(1);
      await until(clock, "the third check", () => w.counters().ok === 3);
      assert.equal(w.counters().late, 0);
    } finally {
      await w.stop(false);
      await agent.shutdown("done", 100);
      await transport.close();
    }
  },
});

Deno.test({
  name:
    "Watch fails an unanswered check exactly at its timeout, is DOWN after timeout + (fall - 1) x fast interval, closes CHECK_FAILED and redials with backoff",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const transport = new MemoryTransport();
    const clock = new ManualClock();
    // A peer that answers HELLO and then nothing.
    const mute = await startMutePeer(transport, {
      host: "10.0.0.2",
      port: 4243,
      certPem: "",
      keyPem: "",
    });
    const w = watch(transport, "10.0.0.2", clock);
    try {
      w.start();
      await until(clock, "the session", () => w.sessionState === "READY");
      const t0 = clock.now(); // the first check went out as the session came up
      await clock.advance(1999);
      assert.equal(w.counters().failed, 0, "not before the timeout");
      await clock.advance(1);
      assert.equal(w.counters().failed, 1, "failed at the timeout");
      // In doubt: the next checks go at once and time out after the fast interval.
      await clock.advance(999);
      assert.equal(w.counters().failed, 1);
      await clock.advance(1);
      assert.equal(w.counters().failed, 2);
      assert.equal(w.state, "UNKNOWN");
      await clock.advance(1000);
      assert.equal(w.state, "DOWN", "timeout + (fall - 1) x fast interval");
      assert.equal(clock.now() - t0, 4000);
      const closed = await mute.closes[0]!;
      assert.equal(closed.code, CLOSE_CODES.CHECK_FAILED);
      // Redial number 0 waits min(reconnect, fast) x 0.5 = 500 ms.
      const dials = w.counters().dials;
      await clock.advance(499);
      assert.equal(w.counters().dials, dials);
      await clock.advance(1);
      await until(clock, "the redial", () => w.counters().dials === dials + 1);
    } finally {
      await w.stop(false);
      await mute.listener.close();
      await transport.close();
    }
  },
});
