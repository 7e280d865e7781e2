/**
 * When the LB next checks or redials a server. Pure: the random source is an
 * argument, so every rule is tested without timers.
 *
 * - Checks run every check interval, or every fast interval while a verdict is
 *   in doubt (a failure since the last UP, or a good check since the last
 *   DOWN), like HAProxy's `fastinter`.
 * - Every interval is spread by ±jitter so that thousands of checks do not
 *   fire in lockstep.
 * - Redials of a DOWN server back off exponentially with full jitter (a
 *   uniform draw in [0, min(cap, base × 2^attempt)]), capped at the reconnect
 *   interval, so that a fleet restart does not cause a reconnect storm.
 *
 * @module
 */

/** What the schedule depends on. */
export interface ScheduleSettings {
  /** Normal time between checks, ms. */
  checkIntervalMs: number;
  /** Time between checks while the verdict is in doubt, ms. */
  fastIntervalMs: number;
  /** Spread of each interval, a fraction in [0, 0.5] (0.1 is ±10 %). */
  jitter: number;
  /** Longest wait between redials of a DOWN server, ms. */
  reconnectIntervalMs: number;
}

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

/** `ms` spread uniformly over ±`jitter` of itself. */
export function jittered(ms: number, jitter: number, random: Random): number {
  if (jitter <= 0) return ms;
  return ms * (1 - jitter + 2 * jitter * random());
}

/**
 * Delay before the next check of a server with a live session.
 *
 * @param inDoubt a failure since the last UP, or a good check since the last DOWN
 */
export function checkDelay(s: ScheduleSettings, inDoubt: boolean, random: Random): number {
  const base = inDoubt ? Math.min(s.fastIntervalMs, s.checkIntervalMs) : s.checkIntervalMs;
  return jittered(base, s.jitter, random);
}

/**
 * Delay before redial number `attempt` (0 for the first) of a DOWN server:
 * full-jitter exponential backoff starting from the fast interval and capped
 * at the reconnect interval.
 *
 * @example
 * ```ts
 * import { redialDelay } from "./schedule.ts";
 * const s = { checkIntervalMs: 10_000, fastIntervalMs: 1000, jitter: 0.1, reconnectIntervalMs: 30_000 };
 * redialDelay(s, 0, () => 0.5); // 500: half of min(30000, 1000 × 2^0)
 * redialDelay(s, 10, () => 0.5); // 15000: half of the 30000 cap
 * ```
 */
export function redialDelay(s: ScheduleSettings, attempt: number, random: Random): number {
  const base = Math.min(s.fastIntervalMs, s.reconnectIntervalMs);
  const ceiling = Math.min(s.reconnectIntervalMs, base * 2 ** Math.min(attempt, 30));
  return ceiling * random();
}
