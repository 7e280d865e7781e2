/**
 * The driver of one session's heartbeat detection, beside its watch: keeps
 * the suspicion timer, probes when the silence turns suspicious, and reports
 * a server whose heartbeats stopped and whose probe went unanswered. The
 * decisions are {@linkcode Liveness}'s; this adds the timers and the LB's
 * own stalls (`loop_health.ts`).
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import { Liveness, type LivenessOptions } from "./liveness.ts";
import type { LoopHealth } from "./loop_health.ts";
import type { ScheduledTimer, Scheduler } from "./timers.ts";

/** Probe datagrams per probe (the first with the probe's HEALTH_REQUEST). */
const _PROBE_DATAGRAMS = 6;

/** What a heartbeat watch needs from its watch. */
export interface HeartbeatWatchDeps {
  scheduler: Scheduler;
  now: () => number;
  log: Logger;
  loopHealth: LoopHealth | undefined;
  /** Send a probe: a HEALTH_REQUEST held to `timeoutMs` (and a probe datagram where negotiated). */
  probe: (timeoutMs: number) => void;
  /** Send one more probe datagram, or undefined without datagrams. */
  probeDatagram: (() => void) | undefined;
}

/**
 * Heartbeat detection for one READY session.
 *
 * @example
 * ```ts
 * import { HeartbeatWatch } from "./heartbeat_watch.ts";
 * import { Scheduler } from "./timers.ts";
 * import { silentLogger } from "../util/log.ts";
 * const scheduler = new Scheduler();
 * const hw = new HeartbeatWatch({ heartbeatMs: 250 }, {
 *   scheduler,
 *   now: () => scheduler.now(),
 *   log: silentLogger,
 *   loopHealth: undefined,
 *   probe: (timeoutMs) => console.log(`HEALTH_REQUEST, held to ${timeoutMs} ms`),
 *   probeDatagram: undefined,
 * });
 * hw.heartbeat(); // on every heartbeat
 * hw.probeTimedOut(); // true: DOWN (nothing came since the probe)
 * hw.stop();
 * ```
 */
export class HeartbeatWatch {
  readonly liveness: Liveness;
  readonly #deps: HeartbeatWatchDeps;
  #timer: ScheduledTimer | undefined;
  #resend: ScheduledTimer | undefined;
  #stopped = false;

  constructor(options: LivenessOptions, deps: HeartbeatWatchDeps) {
    this.#deps = deps;
    this.liveness = new Liveness(options, deps.now());
    this.#arm();
  }

  /** Timers held (for leak checks). */
  get timers(): number {
    return (this.#timer ? 1 : 0) + (this.#resend ? 1 : 0);
  }

  /** The suspicion level now, the LB's own stalls left out. */
  phi(): number {
    const now = this.#deps.now();
    return this.liveness.phi(now, this.#stalledSince(this.liveness.lastEvidence, now));
  }

  /** A heartbeat arrived. */
  heartbeat(): void {
    // The timer stays armed; when it fires it finds the news and moves on.
    this.liveness.heartbeat(this.#deps.now());
  }

  /** A reply to a check or probe arrived after `rttMs`. */
  reply(rttMs: number): void {
    this.liveness.reply(this.#deps.now(), rttMs);
    if (this.liveness.probe) {
      this.liveness.probeAnswered();
      this.#clearResend();
      this.#arm();
    }
  }

  /**
   * The probe's check timed out. Returns true when the server is DOWN:
   * nothing at all came from it since the probe was sent.
   */
  probeTimedOut(): boolean {
    this.#clearResend();
    const silent = this.liveness.probeFailed(this.#deps.now());
    if (!silent) this.#arm();
    return silent;
  }

  /** The session ended: drop the timers. */
  stop(): void {
    this.#stopped = true;
    this.#deps.scheduler.cancel(this.#timer);
    this.#timer = undefined;
    this.#clearResend();
  }

  #stalledSince(from: number, now: number): number {
    return this.#deps.loopHealth?.stalledBetween(from, now) ?? 0;
  }

  #arm(): void {
    if (this.#stopped) return;
    this.#deps.scheduler.cancel(this.#timer);
    const now = this.#deps.now();
    const l = this.liveness;
    const at = Math.max(now + 1, l.suspectAt(this.#stalledSince(l.lastEvidence, now)));
    this.#timer = this.#deps.scheduler.at(at, () => {
      this.#timer = undefined;
      this.#due();
    });
  }

  #due(): void {
    if (this.#stopped || this.liveness.probe) return;
    const now = this.#deps.now();
    const l = this.liveness;
    const stalled = this.#stalledSince(l.lastEvidence, now);
    const phi = l.phi(now, stalled);
    if (phi < l.suspectPhi) return this.#arm();
    const timeout = l.probeTimeoutMs(this.#deps.loopHealth?.multiplier(now) ?? 1);
    l.probeStarted(now, timeout);
    this.#deps.log.debug("heartbeats stopped: probing", {
      phi: Math.round(phi * 10) / 10,
      silence_ms: Math.round(now - l.lastEvidence - stalled),
      timeout_ms: timeout,
    });
    this.#deps.probe(timeout);
    if (this.#deps.probeDatagram) this.#resendProbe(now, timeout, 1);
  }

  /**
   * More probe datagrams through the probe, `timeout / 8` apart, until
   * anything comes. The probe is shorter than a QUIC retransmission, and lost
   * datagrams are never sent again: on a path losing 10 % of packets one
   * round trip fails 19 % of the time, six in a row 0.005 %. The last leaves
   * 3/8 of the timeout (1.5 slowest round trips) for its answer.
   */
  #resendProbe(sentAt: number, timeout: number, n: number): void {
    if (n >= _PROBE_DATAGRAMS) return;
    this.#resend = this.#deps.scheduler.at(sentAt + (n * timeout) / 8, () => {
      this.#resend = undefined;
      const probe = this.liveness.probe;
      if (this.#stopped || !probe || this.liveness.lastEvidence > probe.sentAt) return;
      this.#deps.probeDatagram?.();
      this.#resendProbe(sentAt, timeout, n + 1);
    });
  }

  #clearResend(): void {
    this.#deps.scheduler.cancel(this.#resend);
    this.#resend = undefined;
  }
}
