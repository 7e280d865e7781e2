/**
 * How much traffic each server should get: a weight 0..100 from its verdict
 * and latest metrics. Pure.
 *
 * weight = round(floor + (100 - floor) × (1 - load / 100)) for an UP server,
 * where load is the highest of the chosen metrics (default cpu_percent and
 * mem_percent), clamped to 0..100. So an idle server gets 100, a half-loaded
 * one 55 (with the default floor of 10), and a saturated but healthy one
 * still gets the floor. A DRAINING server gets 0, as do DOWN and UNKNOWN
 * servers (no traffic).
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import type { HealthState } from "./verdict.ts";
import type { MetricValues, ServerStatus } from "../protocol/wire.ts";

/** Options of {@linkcode computeWeight}. */
export interface WeightOptions {
  /** Weight of a healthy server at 100 % load, 0..100. Default 10. */
  floor?: number;
  /** Metrics (percentages) whose highest value is the load. Default cpu_percent, mem_percent. */
  loadMetrics?: readonly string[];
}

/** What the weight depends on. */
export interface WeightInput {
  state: HealthState;
  status: ServerStatus | null;
  metrics: MetricValues | null;
}

/** The load (0..100) the weight is computed from: the highest chosen metric present. */
export function loadOf(metrics: MetricValues | null, options: WeightOptions = {}): number | null {
  if (!metrics) return null;
  let load: number | null = null;
  for (const name of options.loadMetrics ?? LB_DEFAULTS.loadMetrics) {
    const v = metrics[name];
    if (typeof v === "number" && Number.isFinite(v)) load = Math.max(load ?? 0, v);
  }
  return load === null ? null : Math.min(100, Math.max(0, load));
}

/**
 * The weight of one server.
 *
 * @example
 * ```ts
 * import { computeWeight } from "./weights.ts";
 * computeWeight({ state: "UP", status: "UP", metrics: { cpu_percent: 50, mem_percent: 20 } }); // 55
 * computeWeight({ state: "UP", status: "DRAINING", metrics: null }); // 0
 * ```
 */
export function computeWeight(input: WeightInput, options: WeightOptions = {}): number {
  if (input.state !== "UP" || input.status === "DRAINING") return 0;
  const floor = Math.min(100, Math.max(0, options.floor ?? LB_DEFAULTS.weightFloor));
  const load = loadOf(input.metrics, options) ?? 0;
  return Math.round(floor + (100 - floor) * (1 - load / 100));
}
