/**
 * The LB's own health, so that its stalls are not blamed on servers (the idea
 * of HashiCorp's Lifeguard, "local health awareness"). When the event loop
 * is blocked (a long GC, a busy callback, a starved VM), heartbeats and
 * replies wait in socket buffers and timers fire late: from inside, every
 * server looks silent at once. This records the stalls, seen as timers that
 * fired late, so that a detector can leave them out of a server's silence
 * and stretch its probe timeouts while the LB itself is unwell. Pure: times
 * come in as arguments.
 *
 * @module
 */

/** Options of {@linkcode LoopHealth}. */
export interface LoopHealthOptions {
  /** Lateness up to this is normal timer slack, not a stall, ms. Default 40. */
  toleranceMs?: number;
  /** Stalls are remembered this long, ms. Default 60000. */
  memoryMs?: number;
}

/**
 * Stalls of this process's event loop.
 *
 * @example
 * ```ts
 * import { LoopHealth } from "./loop_health.ts";
 * const health = new LoopHealth();
 * health.observe(1000, 1300); // a timer due at 1000 ran at 1300
 * health.stalledBetween(900, 1400); // 300
 * health.multiplier(1400); // > 1 for a while after a stall
 * ```
 */
export class LoopHealth {
  readonly #tolerance: number;
  readonly #memory: number;
  /** Stalls as [start, end], oldest first, not overlapping. */
  #stalls: [number, number][] = [];
  #totalMs = 0;

  constructor(options: LoopHealthOptions = {}) {
    this.#tolerance = options.toleranceMs ?? 40;
    this.#memory = options.memoryMs ?? 60_000;
  }

  /** A timer due at `dueAt` ran at `firedAt`. */
  observe(dueAt: number, firedAt: number): void {
    if (firedAt - dueAt <= this.#tolerance) return;
    const last = this.#stalls.at(-1);
    if (last && dueAt <= last[1]) {
      this.#totalMs += Math.max(0, firedAt - last[1]);
      last[1] = Math.max(last[1], firedAt);
    } else {
      this.#totalMs += firedAt - dueAt;
      this.#stalls.push([dueAt, firedAt]);
    }
    while (this.#stalls.length > 0 && this.#stalls[0]![1] < firedAt - this.#memory) {
      this.#stalls.shift();
    }
  }

  /** Time stalled since start, ms (overlapping stalls counted once). */
  get totalMs(): number {
    return this.#totalMs;
  }

  /** The longest stall that ended at or after `since` (within the memory), ms. */
  longestSince(since: number): number {
    let longest = 0;
    for (const [start, end] of this.#stalls) {
      if (end >= since) longest = Math.max(longest, end - start);
    }
    return longest;
  }

  /** How much of [from, to] the loop spent stalled, ms. */
  stalledBetween(from: number, to: number): number {
    let total = 0;
    for (const [start, end] of this.#stalls) {
      const overlap = Math.min(end, to) - Math.max(start, from);
      if (overlap > 0) total += overlap;
    }
    return total;
  }

  /**
   * Lifeguard's local health multiplier, from 1 (healthy) up to 4: how much
   * to stretch probe timeouts, from the time stalled in the last 10 s.
   */
  multiplier(now: number): number {
    const stalled = this.stalledBetween(now - 10_000, now);
    return 1 + Math.min(3, stalled / 500);
  }
}
