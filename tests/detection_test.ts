/**
 * Quick detection on the LB: the phi-accrual detector, the liveness rules,
 * the LB's own stalls, the heartbeat budget (all pure), and a watch on a
 * manual clock against a scripted peer that beats, pushes and falls silent
 * exactly when the test says.
 */

import assert from "node:assert/strict";
import { PhiAccrualDetector } from "../lib/lb/detector.ts";
import { heartbeatInterval, Liveness } from "../lib/lb/liveness.ts";
import { LoopHealth } from "../lib/lb/loop_health.ts";
import { HeartbeatWatch } from "../lib/lb/heartbeat_watch.ts";
import { Scheduler } from "../lib/lb/timers.ts";
import { Watch, type WatchSettings } from "../lib/lb/watch.ts";
import type { CausedTransition } from "../lib/lb/record.ts";
import { decodeMessage, encodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import { decodeDatagram, encodeDatagram } from "../lib/protocol/datagram.ts";
import type { Capability, LocalCheckResult, Message, ServerStatus } from "../lib/protocol/wire.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import type { Channel } from "../lib/transport/transport.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { silentLogger } from "../lib/util/log.ts";
import { hmacPair, ManualClock, mulberry32 } from "./_helpers.ts";

// --- the detector -------------------------------------------------------------------

Deno.test("PhiAccrualDetector: on-time heartbeats keep phi low; it passes 8 within 1.6 intervals of silence", () => {
  const d = new PhiAccrualDetector(250, {}, 0);
  for (let t = 250; t <= 10_000; t += 250) d.heartbeat(t);
  assert.ok(d.phi(10_100) < 0.5, `phi ${d.phi(10_100)} after 100 ms`);
  assert.ok(d.phi(10_250) < 1);
  const eight = d.silenceFor(8);
  assert.ok(eight > 300 && eight < 400, `phi 8 after ${eight} ms of silence`);
  assert.ok(Math.abs(d.phiAfter(eight) - 8) < 0.01);
  // phi only grows with the silence.
  let last = 0;
  for (let s = 0; s < 2000; s += 10) {
    const p = d.phiAfter(s);
    assert.ok(p >= last, `phi fell from ${last} to ${p} at ${s} ms`);
    last = p;
  }
});

Deno.test("PhiAccrualDetector adapts: a lossy, jittery path earns a later suspicion", () => {
  const random = mulberry32(7);
  const steady = new PhiAccrualDetector(250, {}, 0);
  const lossy = new PhiAccrualDetector(250, {}, 0);
  for (let k = 1; k <= 400; k++) {
    steady.heartbeat(k * 250);
    if (random() >= 0.1) lossy.heartbeat(k * 250 + random() * 50);
  }
  assert.ok(lossy.stdDevMs > 2 * steady.stdDevMs);
  // One lost heartbeat (a 500 ms gap) is suspicious on the steady path, not on the lossy one.
  assert.ok(steady.phiAfter(500) > 8);
  assert.ok(lossy.phiAfter(500) < 8);
  assert.ok(lossy.silenceFor(8) > steady.silenceFor(8) + 200);
});

Deno.test("PhiAccrualDetector forgets beyond its window and ignores a clock going back", () => {
  const d = new PhiAccrualDetector(1000, { windowSize: 4 }, 0);
  for (let t = 100; t <= 1000; t += 100) d.heartbeat(t);
  assert.equal(Math.round(d.meanMs), 100, "the four 100 ms intervals, not the 1000 ms seed");
  d.heartbeat(900);
  assert.equal(d.lastHeartbeat, 1000);
});

// --- liveness, loop health and the budget -------------------------------------------

Deno.test("Liveness: a failed probe is DOWN only if nothing came since it was sent", () => {
  const l = new Liveness({ heartbeatMs: 250 }, 0);
  for (let t = 250; t <= 5000; t += 250) l.heartbeat(t);
  const at = l.suspectAt(0);
  assert.ok(at > 5300 && at < 5400, `suspect at ${at}`);
  l.probeStarted(at, l.probeTimeoutMs(1));
  assert.equal(l.probeFailed(at + 200), true);
  l.probeStarted(6000, 200);
  l.heartbeat(6100);
  assert.equal(l.probeFailed(6200), false, "a heartbeat during the probe: alive");
  assert.equal(l.probe, undefined);
});

Deno.test("Liveness.probeTimeoutMs(): four slow round trips within the bounds, stretched by local health", () => {
  const l = new Liveness({ heartbeatMs: 250, minProbeTimeoutMs: 200, maxProbeTimeoutMs: 1000 }, 0);
  assert.equal(l.probeTimeoutMs(1), 200, "no round trip yet: the minimum");
  l.reply(10, 1);
  assert.equal(l.probeTimeoutMs(1), 200);
  l.reply(20, 120);
  assert.equal(l.probeTimeoutMs(1), 480);
  l.reply(30, 900);
  assert.equal(l.probeTimeoutMs(1), 1000);
  assert.equal(l.probeTimeoutMs(2), 2000);
});

Deno.test("Liveness leaves the LB's own stalls out of the silence", () => {
  const l = new Liveness({ heartbeatMs: 250 }, 0);
  for (let t = 250; t <= 5000; t += 250) l.heartbeat(t);
  assert.ok(l.phi(5600) > 8);
  assert.ok(l.phi(5600, 300) < 3, "300 ms of it were the LB's stall");
  assert.equal(l.suspectAt(300), l.suspectAt(0) + 300);
});

Deno.test("LoopHealth records late timers as stalls, merges them, and scales timeouts while unwell", () => {
  const h = new LoopHealth({ toleranceMs: 40 });
  h.observe(1000, 1030);
  assert.equal(h.stalledBetween(0, 5000), 0, "30 ms late is slack");
  h.observe(1000, 1300);
  h.observe(1100, 1350);
  assert.equal(h.stalledBetween(0, 5000), 350);
  assert.equal(h.stalledBetween(1200, 1250), 50);
  assert.equal(h.multiplier(1400), 1.7);
  assert.equal(h.multiplier(20_000), 1, "healthy again after 10 s");
});

Deno.test("LoopHealth counts total stalled time once per overlap and reports the longest recent stall", () => {
  const h = new LoopHealth({ toleranceMs: 40, memoryMs: 10_000 });
  h.observe(1000, 1030);
  assert.equal(h.totalMs, 0, "slack is not a stall");
  h.observe(1000, 1300);
  h.observe(1100, 1350); // overlaps the first: only 50 ms more
  h.observe(5000, 5100);
  assert.equal(h.totalMs, 450);
  assert.equal(h.longestSince(0), 350);
  assert.equal(h.longestSince(2000), 100, "the 350 ms stall ended before 2000");
  h.observe(30_000, 30_060); // forgets stalls older than the memory, keeps the total
  assert.equal(h.longestSince(0), 60);
  assert.equal(h.totalMs, 510);
});

Deno.test("heartbeatInterval() keeps the fleet within the budget, in 50 ms steps, with hysteresis", () => {
  assert.equal(heartbeatInterval(0, 250, 100, 4000), 250);
  assert.equal(heartbeatInterval(250, 250, 1000, 4000), 250);
  assert.equal(heartbeatInterval(250, 250, 1001, 4000), 300);
  assert.equal(heartbeatInterval(250, 250, 10_000, 4000), 2500);
  assert.equal(heartbeatInterval(2500, 250, 9000, 4000), 2500, "2250 is not a fifth faster");
  assert.equal(heartbeatInterval(2500, 250, 8000, 4000), 2000);
  assert.equal(heartbeatInterval(250, 0, 10_000, 4000), 0, "off stays off");
});

Deno.test("HeartbeatWatch does not probe after an LB stall that hid the heartbeats", () => {
  const clock = new ManualClock(0);
  const health = new LoopHealth();
  const scheduler = new Scheduler({ now: clock.now, timer: clock.timer, slackMs: 0 });
  const probes: number[] = [];
  const hw = new HeartbeatWatch({ heartbeatMs: 250 }, {
    scheduler,
    now: clock.now,
    log: silentLogger,
    loopHealth: health,
    probe: (t) => probes.push(t),
    probeDatagram: undefined,
  });
  return (async () => {
    for (let i = 0; i < 20; i++) {
      await clock.advance(250, 0);
      hw.heartbeat();
    }
    // The LB's loop stalls for 600 ms: the scheduler saw it late.
    health.observe(clock.now() + 10, clock.now() + 610);
    await clock.advance(610, 0);
    hw.heartbeat(); // what the stall held up
    await clock.advance(100, 0);
    assert.deepEqual(probes, []);
    // Real silence afterwards is still caught.
    await clock.advance(1000, 0);
    assert.equal(probes.length, 1);
    hw.stop();
    assert.equal(hw.timers, 0);
  })();
});

Deno.test("HeartbeatWatch sends six probe datagrams an eighth of the timeout apart, and stops at the first sign of life", () => {
  const clock = new ManualClock(0);
  const scheduler = new Scheduler({ now: clock.now, timer: clock.timer, slackMs: 0 });
  const run = async (answerAt: number | undefined) => {
    const probes: number[] = [];
    const datagrams: number[] = [];
    const start = clock.now();
    const hw = new HeartbeatWatch({ heartbeatMs: 250 }, {
      scheduler,
      now: clock.now,
      log: silentLogger,
      loopHealth: undefined,
      probe: (t) => {
        probes.push(t);
        datagrams.push(clock.now() - start); // the probe carries the first datagram
      },
      probeDatagram: () => datagrams.push(clock.now() - start),
    });
    for (let i = 0; i < 20; i++) {
      await clock.advance(250, 0);
      hw.heartbeat();
    }
    // Silence: the probe comes, then its datagrams.
    for (let t = 0; t < 3000 && probes.length === 0; t += 10) await clock.advance(10, 0);
    const sentAt = clock.now() - start;
    const timeout = probes[0]!;
    for (let t = 0; t < timeout; t += 5) {
      if (answerAt !== undefined && t === answerAt) hw.heartbeat();
      await clock.advance(5, 0);
    }
    hw.stop();
    assert.equal(hw.timers, 0);
    return { sentAt, timeout, offsets: datagrams.map((d) => d - datagrams[0]!) };
  };
  return (async () => {
    const silent = await run(undefined);
    assert.equal(silent.timeout, 100, "no round trips yet: the floor");
    assert.deepEqual(silent.offsets, [0, 12.5, 25, 37.5, 50, 62.5]);
    // A heartbeat 30 ms in ends the burst: nothing is sent after it.
    const answered = await run(30);
    assert.ok(
      answered.offsets.length >= 3 && answered.offsets.length <= 4,
      String(answered.offsets),
    );
    assert.ok(answered.offsets.every((o) => o <= 37.5), String(answered.offsets));
  })();
});

// --- a watch against a scripted peer --------------------------------------------------

const certs = await generateDevCertificates({ hosts: ["10.0.0.1"] });
const secret = new TextEncoder().encode("detection-test-secret-0123456789-abcdef");

/** A peer that accepts whatever the LB offers, and beats, pushes or stays mute on demand. */
class ScriptedPeer {
  channel: Channel | undefined;
  answers = true;
  requests = 0;
  #seq = 1;
  #beat = 0;

  constructor(readonly accept: Capability[]) {}

  async listen(transport: MemoryTransport): Promise<void> {
    await transport.listen({ host: "10.0.0.1", port: 4243, certPem: "", keyPem: "" }, (ch) => {
      this.channel = ch;
      void this.#serve(ch);
    });
  }

  beat(status: ServerStatus = "UP"): void {
    const bytes = encodeDatagram({
      kind: "heartbeat",
      counter: ++this.#beat,
      status,
      cpuPercent: 10,
      memPercent: 20,
    });
    this.channel?.datagrams?.send(bytes);
  }

  async push(status: ServerStatus, checks?: LocalCheckResult[]): Promise<void> {
    await this.#send({
      type: "STATUS",
      seq: this.#seq++,
      status,
      metrics: { cpu_percent: 10, mem_percent: 20 },
      ts: 0,
      ...(checks ? { checks } : {}),
    });
  }

  async #send(m: Message): Promise<void> {
    await this.channel?.write(encodeMessage(m)).catch(() => {});
  }

  async #serve(ch: Channel): Promise<void> {
    void (async () => {
      for (let d = await ch.datagrams!.read(); d; d = await ch.datagrams!.read()) {
        if (decodeDatagram(d)?.kind === "probe" && this.answers) this.beat();
      }
    })();
    const frames = new FrameDecoder();
    for (let chunk = await ch.read(); chunk; chunk = await ch.read()) {
      frames.push(chunk);
      for (let p = frames.next(); p; p = frames.next()) {
        const m = decodeMessage(p);
        if (m.type === "HELLO") {
          const offered = m.capabilities ?? [];
          const caps = this.accept.filter((c) => offered.includes(c));
          await this.#send({
            type: "ACK",
            seq: this.#seq++,
            re: m.seq,
            version: 1,
            server_id: "scripted",
            metrics: ["cpu_percent", "mem_percent"],
            ...(m.capabilities ? { capabilities: caps } : {}),
            ...(caps.includes("heartbeat") ? { heartbeat_ms: m.heartbeat_ms ?? 250 } : {}),
          });
        } else if (m.type === "HEALTH_REQUEST") {
          this.requests++;
          if (!this.answers) continue;
          await this.#send({
            type: "HEALTH_RESPONSE",
            seq: this.#seq++,
            re: m.seq,
            status: "UP",
            metrics: { cpu_percent: 10, mem_percent: 20 },
            ts: 0,
          });
        }
      }
    }
  }
}

function settings(over: Partial<WatchSettings> = {}): WatchSettings {
  return {
    lbId: "lb-test",
    checkIntervalMs: 10_000,
    checkTimeoutMs: 2000,
    fastIntervalMs: 1000,
    jitter: 0,
    reconnectIntervalMs: 30_000,
    maxFailAttempts: 3,
    rise: 2,
    metrics: undefined,
    caPem: certs.caCertPem,
    insecure: false,
    idleTimeoutMs: 30_000,
    weights: {},
    extensions: ["push", "heartbeat", "datagram"],
    heartbeatMs: 250,
    suspectPhi: 8,
    minProbeTimeoutMs: 200,
    maxProbeTimeoutMs: 1000,
    ...over,
  };
}

interface Setup {
  clock: ManualClock;
  peer: ScriptedPeer;
  w: Watch;
  transitions: CausedTransition[];
  [Symbol.asyncDispose](): Promise<void>;
}

async function setup(accept: Capability[], over: Partial<WatchSettings> = {}): Promise<Setup> {
  const transport = new MemoryTransport();
  const clock = new ManualClock(1_700_000_000_000);
  const peer = new ScriptedPeer(accept);
  await peer.listen(transport);
  const transitions: CausedTransition[] = [];
  const w = new Watch({ host: "10.0.0.1", port: 4243 }, {
    transport,
    signer: hmacPair(secret).signer,
    settings: settings(over),
    log: silentLogger,
    now: clock.now,
    random: () => 0.5,
    scheduler: new Scheduler({ now: clock.now, timer: clock.timer, slackMs: 0 }),
    events: { onTransition: (_a, t) => transitions.push(t as CausedTransition) },
  });
  w.start();
  for (let i = 0; i < 100 && w.state !== "UP"; i++) await clock.advance(0, 5);
  assert.equal(w.state, "UP");
  return {
    clock,
    peer,
    w,
    transitions,
    async [Symbol.asyncDispose]() {
      await w.stop(false);
      await transport.close();
    },
  };
}

/** Beats every 250 ms for `n` beats. */
async function beats(s: Setup, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await s.clock.advance(250, 2);
    s.peer.beat();
    await s.clock.advance(0, 2);
  }
}

Deno.test({
  name:
    "Watch with heartbeats: silence and an unanswered probe are DOWN at once, with that evidence, well before fall x fast interval",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await setup(["push", "heartbeat", "datagram"]);
    assert.deepEqual(s.w.view().extensions, ["push", "heartbeat", "datagram"]);
    await beats(s, 20);
    assert.equal(s.w.counters().heartbeats, 20);
    assert.ok(s.w.view().suspicion! < 1, `suspicion ${s.w.view().suspicion}`);
    const last = s.clock.now();
    s.peer.answers = false; // frozen: no heartbeats, no replies
    const requests = s.peer.requests;
    for (let t = 0; t < 2000 && s.w.state === "UP"; t += 10) await s.clock.advance(10, 1);
    const took = s.clock.now() - last;
    assert.equal(s.w.state, "DOWN");
    assert.ok(took >= 350 && took <= 700, `DOWN ${took} ms after the last heartbeat`);
    assert.equal(s.peer.requests, requests + 1, "one probe");
    const down = s.transitions.at(-1)!;
    assert.equal(down.evidence, "heartbeat_silence+probe");
    assert.equal(down.cause, "timeout");
    assert.match(
      down.reason,
      /^no heartbeat for \d+ ms \(every 250 ms expected\) and no HEALTH_RESPONSE within 200 ms/,
    );
    assert.equal(s.w.counters().probes, 1);
    assert.equal(s.w.counters().probesFailed, 1);
  },
});

Deno.test({
  name:
    "Watch with heartbeats: a heartbeat during the probe keeps the server UP; an answered probe too",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await setup(["heartbeat", "datagram"]);
    await beats(s, 20);
    s.peer.answers = false;
    // Silent until the probe goes out, then one heartbeat, and no answer to the probe.
    for (let t = 0; t < 1000 && s.w.counters().probes === 0; t += 10) await s.clock.advance(10, 1);
    assert.equal(s.w.counters().probes, 1);
    s.peer.beat();
    await s.clock.advance(300, 2);
    assert.equal(s.w.state, "UP", "alive: the probe counts as one failed check");
    assert.equal(s.w.counters().failed, 1);
    // Answered probes change nothing.
    s.peer.answers = true;
    await s.clock.advance(1500, 2);
    assert.equal(s.w.state, "UP");
    assert.ok(s.w.counters().probes >= 2);
    assert.equal(s.w.counters().probesFailed, 0);
  },
});

Deno.test({
  name:
    "Watch: a pushed FAILING is DOWN at once and keeps the session; a pushed UP brings it back after rise checks",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await setup(["push"]);
    assert.equal(s.w.view().suspicion, null, "no heartbeats negotiated");
    await s.peer.push("FAILING", [{ name: "tcp :5432", ok: false, detail: "refused" }]);
    await s.clock.advance(0, 5);
    assert.equal(s.w.state, "DOWN", "at once, on the clock: no time passed");
    const down = s.transitions.at(-1)!;
    assert.equal(down.evidence, "pushed_status");
    assert.equal(down.cause, "failing");
    assert.match(down.reason, /server pushed FAILING: tcp :5432: refused/);
    assert.equal(s.w.sessionState, "READY", "the agent is alive: the session stays");
    await s.peer.push("UP");
    const up = () => (s.w.state as string) === "UP";
    for (let i = 0; i < 20 && !up(); i++) await s.clock.advance(0, 5);
    assert.ok(up(), "the push and the check it triggers make rise 2");
    assert.equal(s.transitions.at(-1)!.evidence, "polls");
  },
});

Deno.test({
  name: "Watch: a DRAINING heartbeat takes the weight to 0 at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await setup(["heartbeat", "datagram"]);
    await beats(s, 2);
    assert.ok(s.w.view().weight > 0);
    s.peer.beat("DRAINING");
    await s.clock.advance(0, 5);
    assert.equal(s.w.view().status, "DRAINING");
    assert.equal(s.w.view().weight, 0);
    assert.equal(s.w.state, "UP");
  },
});

Deno.test({
  name: "Watch with extensions off sends a plain QHCP/1 HELLO and polls only",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await setup(["push", "heartbeat", "datagram"], { extensions: [] });
    assert.deepEqual(s.w.view().extensions, []);
    assert.equal(s.w.view().suspicion, null);
    s.peer.answers = false;
    await s.clock.advance(10_000 + 1999, 2);
    assert.equal(s.w.state, "UP", "only the poll's timeout counts");
    await s.clock.advance(1, 2);
    assert.equal(s.w.counters().failed, 1);
  },
});
