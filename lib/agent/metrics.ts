/**
 * Host metrics for HEALTH_RESPONSE, sampled in the background so that an
 * answer never waits on a probe. The only module that imports
 * systeminformation.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import si from "systeminformation";
import type { MetricValues } from "../protocol/wire.ts";
import { within } from "../util/timeout.ts";

/** A source of the latest metric values. */
export interface MetricsSource {
  /** Every name this source can report. */
  readonly names: readonly string[];
  /** The latest values (cached; never blocks). */
  snapshot(): MetricValues;
}

/** What each metric means, for `--help`, the README and ACK. */
export const SYSTEM_METRICS: Readonly<Record<string, string>> = {
  cpu_percent: "CPU busy over the last sample interval, 0..100",
  mem_percent: "memory in use (total minus available), 0..100",
  mem_used_bytes: "memory in use, bytes",
  mem_total_bytes: "physical memory, bytes",
  swap_percent: "swap in use, 0..100 (0 without swap)",
  load_1: "1-minute load average",
  load_5: "5-minute load average",
  load_15: "15-minute load average",
  cpu_count: "logical CPUs",
  disk_percent: "use of the file system holding /, 0..100",
  net_rx_bytes_per_s: "bytes received per second, all non-loopback interfaces",
  net_tx_bytes_per_s: "bytes sent per second, all non-loopback interfaces",
  uptime_s: "host uptime, seconds",
};

/** Options of {@linkcode SystemMetrics}. */
export interface SystemMetricsOptions {
  /** Interval of CPU, memory, load and network sampling, ms. Default 1000. */
  intervalMs?: number;
  /** Interval of the slower disk sampling, ms. Default 10000. */
  slowIntervalMs?: number;
  /** Called when a probe fails; the previous value is kept. */
  onError?: (error: unknown) => void;
}

/**
 * Samples the host with systeminformation on a timer.
 *
 * Until the first CPU sample completes (systeminformation needs about half a
 * second for it), `cpu_percent` is estimated from the 1-minute load average.
 *
 * @example
 * ```ts
 * import { SystemMetrics } from "./metrics.ts";
 * const metrics = new SystemMetrics();
 * metrics.start();
 * metrics.snapshot().cpu_percent; // a number in 0..100
 * await metrics.stop();
 * ```
 */
export class SystemMetrics implements MetricsSource {
  readonly names: readonly string[] = Object.keys(SYSTEM_METRICS);
  readonly #intervalMs: number;
  readonly #slowIntervalMs: number;
  readonly #onError: (error: unknown) => void;
  #values: MetricValues;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #lastSlow = 0;

  constructor(options: SystemMetricsOptions = {}) {
    this.#intervalMs = options.intervalMs ?? AGENT_DEFAULTS.sampleIntervalMs;
    this.#slowIntervalMs = options.slowIntervalMs ?? AGENT_DEFAULTS.slowSampleIntervalMs;
    this.#onError = options.onError ?? (() => {});
    this.#values = _initialSample();
  }

  /** Starts background sampling. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops sampling; waits for a probe in progress, at most its timeout. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#loop;
  }

  /** The latest values. */
  snapshot(): MetricValues {
    return this.#values;
  }

  #wake: (() => void) | undefined;

  async #run(): Promise<void> {
    while (this.#running) {
      await this.#sample();
      if (!this.#running) break;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, this.#intervalMs);
      });
    }
  }

  async #sample(): Promise<void> {
    const next: MetricValues = { ...this.#values, ..._quickSample() };
    // A probe that never settles (a failing callback inside systeminformation)
    // must not stall sampling or shutdown: each round is bounded.
    const limit = Math.max(2000, this.#intervalMs * 2);
    try {
      const [load, net] = await _bounded(
        Promise.all([si.currentLoad(), si.networkStats("*")]),
        limit,
        "cpu/network probe",
      );
      next.cpu_percent = _percent(load.currentLoad);
      let rx = 0;
      let tx = 0;
      for (const n of net) {
        if (n.iface === "lo") continue;
        rx += n.rx_sec ?? 0;
        tx += n.tx_sec ?? 0;
      }
      next.net_rx_bytes_per_s = Math.round(rx);
      next.net_tx_bytes_per_s = Math.round(tx);
      const now = Date.now();
      if (now - this.#lastSlow >= this.#slowIntervalMs) {
        this.#lastSlow = now;
        const fs = await _bounded(si.fsSize(), limit, "disk probe");
        const root = fs.find((f) => f.mount === "/") ?? fs[0];
        if (root) next.disk_percent = _percent(root.use);
      }
    } catch (e) {
      this.#onError(e);
    }
    this.#values = next;
  }
}

/** Values that cost a system call or two (no process spawn, no sampling delay). */
function _quickSample(): MetricValues {
  const mem = Deno.systemMemoryInfo();
  const [l1, l5, l15] = Deno.loadavg();
  const used = mem.total - mem.available;
  return {
    mem_percent: _percent((used / mem.total) * 100),
    mem_used_bytes: used,
    mem_total_bytes: mem.total,
    swap_percent: mem.swapTotal > 0
      ? _percent(((mem.swapTotal - mem.swapFree) / mem.swapTotal) * 100)
      : 0,
    load_1: _round(l1 ?? 0),
    load_5: _round(l5 ?? 0),
    load_15: _round(l15 ?? 0),
    uptime_s: Math.round(Deno.osUptime()),
  };
}

/** Starting values: the quick ones, and CPU estimated from the load average. */
function _initialSample(): MetricValues {
  const quick = _quickSample();
  const cpus = navigator.hardwareConcurrency || 1;
  return {
    cpu_percent: _percent(((quick.load_1 ?? 0) / cpus) * 100),
    ...quick,
    cpu_count: cpus,
    disk_percent: 0,
    net_rx_bytes_per_s: 0,
    net_tx_bytes_per_s: 0,
  };
}

/** `p`'s value, or an error saying `what` took longer than `ms`. */
async function _bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const r = await within(p, ms);
  if (!r.ok) throw new Error(`${what} took longer than ${ms} ms`);
  return r.value;
}

function _percent(v: number): number {
  if (!Number.isFinite(v)) return 0;
  return _round(Math.min(100, Math.max(0, v)));
}

function _round(v: number): number {
  return Math.round(v * 100) / 100;
}
