/**
 * The phi-accrual failure detector (Hayashibara et al., 2004, as Akka and
 * Cassandra use it): instead of a yes/no timeout, a suspicion level phi that
 * grows with the silence since the last heartbeat, measured against the
 * intervals this server's heartbeats have actually shown. phi = 1 means a
 * 10 % chance that a heartbeat this late still comes, phi = 8 one in 10^8.
 * A steady server is suspected soon after a missed beat; one on a lossy or
 * jittery path earns a wider margin by itself. Pure: time is an argument.
 *
 * @module
 */

/** Options of {@linkcode PhiAccrualDetector}. */
export interface PhiAccrualOptions {
  /** Intervals remembered. Default 100. */
  windowSize?: number;
  /**
   * The standard deviation never counts as smaller than this, ms (loopback
   * heartbeats are so regular that any delay would look infinitely unlikely).
   * Default a tenth of the expected interval.
   */
  minStdDevMs?: number;
}

/**
 * Suspicion of one server from its heartbeat arrivals.
 *
 * @example
 * ```ts
 * import { PhiAccrualDetector } from "./detector.ts";
 * const d = new PhiAccrualDetector(250, {}, 0);
 * for (let t = 250; t <= 2500; t += 250) d.heartbeat(t);
 * d.phi(2600) < 1; // true: 100 ms of silence is normal
 * d.phi(3000) > 8; // true: three beats missed
 * d.silenceFor(8); // ms of silence at which phi reaches 8
 * ```
 */
export class PhiAccrualDetector {
  readonly #intervals: Float64Array;
  readonly #minStdDev: number;
  #next = 0;
  #count = 0;
  #sum = 0;
  #sumSquares = 0;
  #last: number;

  /**
   * @param expectedMs the negotiated heartbeat interval: the history starts
   * with two intervals around it (mean expectedMs, deviation a quarter of it)
   * @param now when the session began (the first silence is measured from it)
   */
  constructor(expectedMs: number, options: PhiAccrualOptions = {}, now: number) {
    this.#intervals = new Float64Array(Math.max(2, options.windowSize ?? 100));
    this.#minStdDev = options.minStdDevMs ?? expectedMs / 10;
    this.#add(expectedMs - expectedMs / 4);
    this.#add(expectedMs + expectedMs / 4);
    this.#last = now;
  }

  /** When the last heartbeat arrived (or the detector started). */
  get lastHeartbeat(): number {
    return this.#last;
  }

  /** Mean of the remembered intervals, ms. */
  get meanMs(): number {
    return this.#sum / this.#count;
  }

  /** Standard deviation of the remembered intervals (at least the minimum), ms. */
  get stdDevMs(): number {
    const mean = this.meanMs;
    const variance = Math.max(0, this.#sumSquares / this.#count - mean * mean);
    return Math.max(this.#minStdDev, Math.sqrt(variance));
  }

  /** A heartbeat arrived at `now`. */
  heartbeat(now: number): void {
    const interval = now - this.#last;
    if (interval < 0) return;
    this.#add(interval);
    this.#last = now;
  }

  /** The suspicion level after `silenceMs` without a heartbeat. */
  phiAfter(silenceMs: number): number {
    return _phi(silenceMs, this.meanMs, this.stdDevMs);
  }

  /** The suspicion level at `now`. */
  phi(now: number): number {
    return this.phiAfter(now - this.#last);
  }

  /** How long a silence takes phi to `threshold`, ms (from the last heartbeat). */
  silenceFor(threshold: number): number {
    const mean = this.meanMs;
    const sd = this.stdDevMs;
    // phi grows with the silence: bisect between the mean and far beyond it.
    let lo = 0;
    let hi = mean + 64 * sd;
    if (_phi(hi, mean, sd) < threshold) return hi;
    for (let i = 0; i < 40; i++) {
      const mid = (lo + hi) / 2;
      if (_phi(mid, mean, sd) < threshold) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  #add(interval: number): void {
    if (this.#count === this.#intervals.length) {
      const old = this.#intervals[this.#next]!;
      this.#sum -= old;
      this.#sumSquares -= old * old;
    } else {
      this.#count++;
    }
    this.#intervals[this.#next] = interval;
    this.#next = (this.#next + 1) % this.#intervals.length;
    this.#sum += interval;
    this.#sumSquares += interval * interval;
  }
}

/**
 * -log10 of the chance that a heartbeat comes later than `silence`, with
 * intervals normally distributed; the normal tail uses the logistic
 * approximation Akka uses (accurate to about 1e-4, and never 0 in floats).
 */
function _phi(silence: number, mean: number, sd: number): number {
  const y = (silence - mean) / sd;
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  const pLater = silence > mean ? e / (1 + e) : 1 - 1 / (1 + e);
  return -Math.log10(Math.max(pLater, Number.MIN_VALUE));
}
