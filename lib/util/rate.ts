/**
 * Token buckets: what a peer may cost per second, with room for bursts.
 * Pure: time is an argument. (Log lines a peer can cause are limited by
 * `rateLimited` in `log.ts`.)
 *
 * @module
 */

/**
 * A bucket of `burst` tokens refilled at `perSecond`; `take(n, now)` spends
 * n tokens or says the budget is exhausted.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./rate.ts";
 * const b = new TokenBucket(10, 20, 0); // 10 a second, bursts of 20
 * b.take(20, 0); // true
 * b.take(1, 0); // false: empty
 * b.take(1, 100); // true: 100 ms later one token is back
 * ```
 */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  constructor(perSecond: number, burst: number, now: number) {
    this.#perMs = perSecond / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#at = now;
  }

  /** Spends `n` tokens if there are that many; false when the budget is exhausted. */
  take(n: number, now: number): boolean {
    this.#tokens = Math.min(this.#burst, this.#tokens + Math.max(0, now - this.#at) * this.#perMs);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}
