/**
 * What the LB decides from one session's heartbeats: how suspicious the
 * silence is, when to probe, how long a probe may take, and whether a failed
 * probe proves the server dead. Pure: times come in as arguments; the watch
 * owns the timers and the session.
 *
 * The rule, in the order events happen:
 * 1. every heartbeat (and every reply) is evidence of life; the silence is
 *    the time since the last evidence, minus the time the LB itself was
 *    stalled (see `loop_health.ts`);
 * 2. when the silence's suspicion (phi, from `detector.ts`) reaches the
 *    threshold, the LB probes: a HEALTH_REQUEST held to a short timeout, and
 *    probe datagrams where negotiated;
 * 3. if the probe times out and nothing at all came from the server since it
 *    was sent, the server is DOWN at once: heartbeat silence and a failed
 *    probe are strong evidence. If anything came, the probe counts as one
 *    ordinary failed check.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import { PhiAccrualDetector } from "./detector.ts";

/** Options of {@linkcode Liveness}. */
export interface LivenessOptions {
  /** The negotiated heartbeat interval, ms. */
  heartbeatMs: number;
  /** The suspicion level that triggers a probe. Default 8. */
  suspectPhi?: number;
  /** Bounds of the probe timeout, ms. Default 100 and 1000. */
  minProbeTimeoutMs?: number;
  maxProbeTimeoutMs?: number;
}

/** Round trips remembered for the probe timeout. */
const _RTTS = 16;

/**
 * One session's liveness.
 *
 * @example
 * ```ts
 * import { Liveness } from "./liveness.ts";
 * const l = new Liveness({ heartbeatMs: 250 }, 0);
 * for (let t = 250; t <= 5000; t += 250) l.heartbeat(t);
 * l.suspectAt(0); // about 5380: when a silence from 5000 on would be suspicious
 * l.probeStarted(5400, l.probeTimeoutMs(1));
 * l.probeFailed(5600); // true: nothing came since the probe, the server is DOWN
 * ```
 */
export class Liveness {
  readonly heartbeatMs: number;
  readonly suspectPhi: number;
  readonly #minProbe: number;
  readonly #maxProbe: number;
  readonly #detector: PhiAccrualDetector;
  #lastEvidence: number;
  #rtts: number[] = [];
  #probe: { sentAt: number; timeoutMs: number } | undefined;

  constructor(options: LivenessOptions, now: number) {
    this.heartbeatMs = options.heartbeatMs;
    this.suspectPhi = options.suspectPhi ?? LB_DEFAULTS.suspectPhi;
    this.#minProbe = options.minProbeTimeoutMs ?? LB_DEFAULTS.minProbeTimeoutMs;
    this.#maxProbe = options.maxProbeTimeoutMs ?? LB_DEFAULTS.maxProbeTimeoutMs;
    this.#detector = new PhiAccrualDetector(options.heartbeatMs, {}, now);
    this.#lastEvidence = now;
  }

  /** When the server was last heard from (a heartbeat or a reply). */
  get lastEvidence(): number {
    return this.#lastEvidence;
  }

  /** The probe in flight, if any. */
  get probe(): { readonly sentAt: number; readonly timeoutMs: number } | undefined {
    return this.#probe;
  }

  /** A heartbeat arrived. */
  heartbeat(now: number): void {
    this.#detector.heartbeat(now);
    this.#lastEvidence = Math.max(this.#lastEvidence, now);
  }

  /** A reply (to a check or a probe) arrived after `rttMs`. */
  reply(now: number, rttMs: number): void {
    this.#lastEvidence = Math.max(this.#lastEvidence, now);
    this.#rtts.push(rttMs);
    if (this.#rtts.length > _RTTS) this.#rtts.shift();
  }

  /** The suspicion level at `now`, leaving out `stalledMs` of the LB's own stalls. */
  phi(now: number, stalledMs = 0): number {
    return this.#detector.phiAfter(Math.max(0, now - this.#lastEvidence - stalledMs));
  }

  /** When the suspicion reaches the threshold if nothing comes (stalls known so far added). */
  suspectAt(stalledMs: number): number {
    return this.#lastEvidence + stalledMs + this.#detector.silenceFor(this.suspectPhi);
  }

  /**
   * How long a probe may take: four times the slowest recent round trip,
   * within the bounds, stretched by the LB's local health `multiplier`.
   */
  probeTimeoutMs(multiplier: number): number {
    const slowest = this.#rtts.length > 0 ? Math.max(...this.#rtts) : 0;
    const base = Math.min(this.#maxProbe, Math.max(this.#minProbe, 4 * slowest));
    return Math.round(base * multiplier);
  }

  /** A probe was sent. */
  probeStarted(now: number, timeoutMs: number): void {
    this.#probe = { sentAt: now, timeoutMs };
  }

  /**
   * The probe timed out. Returns true when nothing came from the server
   * since it was sent (the server is DOWN); either way the probe is over.
   */
  probeFailed(_now: number): boolean {
    const probe = this.#probe;
    this.#probe = undefined;
    return probe !== undefined && this.#lastEvidence <= probe.sentAt;
  }

  /** The probe was answered. */
  probeAnswered(): void {
    this.#probe = undefined;
  }
}

/**
 * The heartbeat interval an LB asks of each of its `servers` so that all of
 * them together send at most `budgetPerSecond` heartbeats: the configured
 * interval while the fleet fits, longer beyond, in 50 ms steps. From the
 * `current` interval it moves only when the fleet no longer fits or would
 * fit a fifth faster, so that a fleet growing by a few servers does not
 * reconfigure every session. 0 turns heartbeats off whatever the size.
 *
 * @example
 * ```ts
 * import { heartbeatInterval } from "./liveness.ts";
 * heartbeatInterval(250, 250, 1000, 4000); // 250
 * heartbeatInterval(250, 250, 10_000, 4000); // 2500
 * heartbeatInterval(2500, 250, 9_000, 4000); // 2500: 2250 is not a fifth faster
 * ```
 */
export function heartbeatInterval(
  current: number,
  configuredMs: number,
  servers: number,
  budgetPerSecond: number,
): number {
  if (configuredMs <= 0) return 0;
  const needed = budgetPerSecond > 0 ? (servers * 1000) / budgetPerSecond : 0;
  const target = Math.max(configuredMs, Math.ceil(needed / 50) * 50);
  if (current <= 0 || target > current || target <= current * 0.8) return target;
  return current;
}
