/**
 * Picking the server for the next request. Only servers with a weight above
 * 0 (UP and not draining) are eligible.
 *
 * - `weighted` (default): smooth weighted round-robin (as in NGINX): over any
 *   window each server is picked in proportion to its weight, interleaved
 *   rather than in bursts.
 * - `least-loaded`: the server with the lowest load (ties in turn).
 * - `round-robin`: every eligible server in turn, ignoring weights.
 *
 * @module
 */

import type { HealthState } from "./verdict.ts";
import type { ServerStatus } from "../protocol/wire.ts";

/** The selection strategies. */
export const STRATEGIES = ["weighted", "least-loaded", "round-robin"] as const;

/** One of {@linkcode STRATEGIES}. */
export type Strategy = typeof STRATEGIES[number];

/** A server as the selector sees it. */
export interface Candidate {
  address: string;
  state: HealthState;
  status: ServerStatus | null;
  weight: number;
  /** 0..100, or null when unknown. */
  load: number | null;
}

/** The outcome of {@linkcode Selector.pick}. */
export type PickResult =
  | { ok: true; address: string; weight: number; load: number | null; strategy: Strategy }
  | { ok: false; reason: string };

/** Returns true when `value` names a strategy. */
export function isStrategy(value: string): value is Strategy {
  return (STRATEGIES as readonly string[]).includes(value);
}

/**
 * Keeps the state the strategies need between picks (round-robin position,
 * smooth weighted round-robin counters).
 *
 * @example
 * ```ts
 * import { Selector } from "./select.ts";
 * const s = new Selector();
 * const servers = [
 *   { address: "a:1", state: "UP", status: "UP", weight: 100, load: 0 },
 *   { address: "b:1", state: "UP", status: "UP", weight: 50, load: 50 },
 * ] as const;
 * s.pick([...servers], "weighted"); // { ok: true, address: "a:1", … }
 * ```
 */
export class Selector {
  #next = 0;
  #current = new Map<string, number>();

  /** Picks a server, or says why none can be picked. */
  pick(candidates: readonly Candidate[], strategy: Strategy = "weighted"): PickResult {
    const eligible = candidates.filter((c) => c.weight > 0);
    if (eligible.length === 0) return { ok: false, reason: _whyNone(candidates) };
    let chosen: Candidate;
    switch (strategy) {
      case "round-robin":
        chosen = eligible[this.#next++ % eligible.length]!;
        break;
      case "least-loaded": {
        const lowest = Math.min(...eligible.map((c) => c.load ?? 100));
        const tied = eligible.filter((c) => (c.load ?? 100) === lowest);
        chosen = tied[this.#next++ % tied.length]!;
        break;
      }
      default:
        chosen = this.#smooth(eligible);
    }
    return {
      ok: true,
      address: chosen.address,
      weight: chosen.weight,
      load: chosen.load,
      strategy,
    };
  }

  /** Smooth weighted round-robin: add each weight, take the largest, subtract the total. */
  #smooth(eligible: readonly Candidate[]): Candidate {
    let total = 0;
    let best: Candidate | undefined;
    let bestValue = -Infinity;
    const seen = new Set<string>();
    for (const c of eligible) {
      const value = (this.#current.get(c.address) ?? 0) + c.weight;
      this.#current.set(c.address, value);
      seen.add(c.address);
      total += c.weight;
      if (value > bestValue) {
        bestValue = value;
        best = c;
      }
    }
    // Servers that left the pool start afresh when they come back.
    for (const address of this.#current.keys()) {
      if (!seen.has(address)) this.#current.delete(address);
    }
    this.#current.set(best!.address, bestValue - total);
    return best!;
  }
}

function _whyNone(candidates: readonly Candidate[]): string {
  if (candidates.length === 0) return "no servers are configured";
  const up = candidates.filter((c) => c.state === "UP");
  if (up.length === 0) {
    const down = candidates.filter((c) => c.state === "DOWN").length;
    return `no server is UP (${down} DOWN, ${candidates.length - down} UNKNOWN)`;
  }
  return `no UP server takes traffic: ${up.length} UP with weight 0 (draining)`;
}
