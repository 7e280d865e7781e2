/**
 * The monitor's sums over all its watches: fleet-wide counts
 * (`GET /api/totals`), the LB's own health, and resources held (for leak
 * checks), read from each watch's counters without building its view.
 *
 * @module
 */

import type { LoopHealth } from "./loop_health.ts";
import type { Watch, WatchResources } from "./watch.ts";

/** Timers, sessions and transport resources the monitor holds, for leak checks. */
export interface MonitorResources extends WatchResources {
  /** Servers watched. */
  watches: number;
}

/** Fleet-wide counts, cheap to read at any scale (`GET /api/totals`). */
export interface MonitorTotals extends LbHealth {
  servers: number;
  up: number;
  down: number;
  unknown: number;
  /** Sessions in READY. */
  sessions: number;
  checks_ok: number;
  checks_failed: number;
  /** Good checks answered more than one check interval after they were due. */
  checks_late: number;
  /** Verdict changes to DOWN since start. */
  downs: number;
  /** Dials after each server's first one. */
  reconnects: number;
  /** The heartbeat interval asked of servers now, ms (0: off). */
  heartbeat_ms: number;
  /** Heartbeats received, probes sent on suspicion, and probes that found a server DOWN. */
  heartbeats: number;
  probes: number;
  probes_failed: number;
}

/** The LB's own health, apart from its servers': cheap to read (`/metrics` reads it). */
export interface LbHealth {
  /**
   * This LB's own event loop: time stalled since start (timers that fired
   * more than 40 ms late), and the longest stall of the last minute, ms.
   */
  loop_stalled_ms: number;
  loop_longest_stall_ms: number;
  /**
   * Fleet mode only: times the fleet's verdict on a server (its owners'
   * verdicts combined, as written in etcd) turned DOWN since this LB started.
   * `downs` counts this LB's own checks' verdicts.
   */
  fleet_downs?: number;
  /** Fleet mode only: ms since etcd last answered, once longer than a lease (null: in touch). */
  fleet_stale_ms?: number | null;
}

/** What the sums read of one watch. */
export type CountedWatch = Pick<Watch, "state" | "sessionState" | "counters" | "resources">;

/** Timers and sessions held by all `watches`. */
export function sumResources(watches: ReadonlyMap<string, CountedWatch>): MonitorResources {
  const total: MonitorResources = {
    watches: watches.size,
    timers: 0,
    sessions: 0,
    closing: 0,
  };
  for (const w of watches.values()) {
    const r = w.resources();
    total.timers += r.timers;
    total.sessions += r.sessions;
    total.closing += r.closing;
  }
  return total;
}

/** The LB's own event loop as `loopHealth` saw it, the last minute ending at `now`. */
export function loopHealthOf(loopHealth: LoopHealth, now: number): LbHealth {
  return {
    loop_stalled_ms: Math.round(loopHealth.totalMs),
    loop_longest_stall_ms: Math.round(loopHealth.longestSince(now - 60_000)),
  };
}

/**
 * Counts over all `watches`, with the heartbeat interval asked now and the
 * LB's own `health`.
 */
export function sumTotals(
  watches: ReadonlyMap<string, CountedWatch>,
  heartbeatMs: number,
  health: LbHealth,
): MonitorTotals {
  const t: MonitorTotals = {
    servers: watches.size,
    up: 0,
    down: 0,
    unknown: 0,
    sessions: 0,
    checks_ok: 0,
    checks_failed: 0,
    checks_late: 0,
    downs: 0,
    reconnects: 0,
    heartbeat_ms: heartbeatMs,
    heartbeats: 0,
    probes: 0,
    probes_failed: 0,
    ...health,
  };
  for (const w of watches.values()) {
    const state = w.state;
    if (state === "UP") t.up++;
    else if (state === "DOWN") t.down++;
    else t.unknown++;
    if (w.sessionState === "READY") t.sessions++;
    const c = w.counters();
    t.checks_ok += c.ok;
    t.checks_failed += c.failed;
    t.checks_late += c.late;
    t.downs += c.downs;
    t.reconnects += Math.max(0, c.dials - 1);
    t.heartbeats += c.heartbeats;
    t.probes += c.probes;
    t.probes_failed += c.probesFailed;
  }
  return t;
}
