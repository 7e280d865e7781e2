/**
 * The options of a `Monitor` and the settings every watch of it
 * reads, with each default taken from `util/defaults.ts`.
 *
 * @module
 */

import { COMMON_DEFAULTS, LB_DEFAULTS } from "../util/defaults.ts";
import type { Logger } from "../util/log.ts";
import { CAPABILITIES, type Capability } from "../protocol/wire.ts";
import type { HostPort } from "../protocol/address.ts";
import type { TokenSigner } from "../security/jwt.ts";
import type { Transport } from "../transport/transport.ts";
import type { Random } from "./schedule.ts";
import type { WatchEvents, WatchSettings } from "./watch_types.ts";

/** Options of `Monitor`. */
export interface MonitorOptions {
  /** The QUIC stack. */
  transport: Transport;
  /** Signs HELLO tokens; its `lbId` is the id sent in HELLO. */
  signer: TokenSigner;
  /** The LB's id; when given it must equal `signer.lbId`. */
  lbId?: string;
  /** Servers to watch. */
  servers: readonly HostPort[];
  /** Check interval, ms. Default 10000. */
  checkIntervalMs?: number;
  /** Reply timeout per check, ms. Default: the smaller of the interval and 2000. */
  checkTimeoutMs?: number;
  /** Consecutive failures before DOWN (fall). Default 3. */
  maxFailAttempts?: number;
  /** Consecutive good checks before a DOWN server is UP again. Default 2. */
  rise?: number;
  /** Check interval while a verdict is in doubt, ms. Default 1000. */
  fastIntervalMs?: number;
  /** Spread of every interval, a fraction in [0, 0.5]. Default 0.1 (±10 %). */
  jitter?: number;
  /** Longest wait between redials of a DOWN server (backoff cap), ms. Default 30000. */
  reconnectIntervalMs?: number;
  /** Metric names to ask for in HELLO. Default: the server's default. */
  metrics?: readonly string[];
  /** CA bundle (PEM) to verify servers with. Required unless `insecure`. */
  caPem?: string;
  /** Skip certificate verification. */
  insecure?: boolean;
  /** QUIC idle timeout, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Logger. Default: silent. */
  log?: Logger;
  /** Verdict changes and check outcomes. */
  events?: WatchEvents;
  /** Uniform random numbers in [0, 1) for jitter and backoff. Default Math.random. */
  random?: Random;
  /** Weight of a healthy server at full load, 0..100. Default 10. */
  weightFloor?: number;
  /** Metrics whose highest value is the load behind the weight. Default cpu_percent, mem_percent. */
  loadMetrics?: readonly string[];
  /**
   * Checks and deadlines due within this many ms run in one timer wake-up
   * (so each runs up to this late). Default 25: at 1,000 checks a second it
   * cut the LB's CPU per check from 192 to 133 µs (native stack).
   */
  timerSlackMs?: number;
  /**
   * QUIC handshakes in flight at most, all servers together. Default 16: an
   * LB starting with 3,500 servers at 1 s (native stack) overflowed UDP
   * receive buffers with 64 and marked 18 healthy servers DOWN, with 16 none
   * and all were UP sooner; on matrixai (14 ms of CPU per handshake) 500
   * servers at 1 s gave 3 false DOWNs with 64 and none with 16.
   */
  maxConcurrentDials?: number;
  /**
   * Servers watched at most; adding more fails with a {@linkcode ServerSetError}
   * of kind "limit". Default 10000 (what one LB was measured to hold at a
   * 10 s interval on the native stack).
   */
  maxServers?: number;
  /**
   * Extensions offered to servers (docs/PROTOCOL.md §10). Default all:
   * push, heartbeat, datagram (datagram only on a stack that has them).
   * Empty: plain QHCP/1 sessions, polling only.
   */
  extensions?: readonly Capability[];
  /**
   * Heartbeat interval asked of each server, ms; 0 turns heartbeats off.
   * Default 250 on a stack with datagrams, 1000 without (each stream
   * heartbeat costs @matrixai/quic about ten times the CPU).
   */
  heartbeatMs?: number;
  /**
   * Heartbeats per second the LB takes at most from all its servers: past
   * it, the interval asked grows with the fleet. Default 4000 with
   * datagrams, 500 without.
   */
  heartbeatBudget?: number;
  /** Suspicion level (phi) of heartbeat silence that triggers a probe. Default 8. */
  suspectPhi?: number;
  /** Bounds of a probe's timeout (4 x the slowest recent round trip), ms. Default 100 and 1000. */
  minProbeTimeoutMs?: number;
  maxProbeTimeoutMs?: number;
}

/** The stack-dependent defaults: with datagrams (native), or on the control stream. */
function _perStack(transport: Transport): "native" | "matrixai" {
  return transport.datagrams ? "native" : "matrixai";
}

/**
 * The heartbeat interval asked for before the budget (0 when the heartbeat
 * extension is not offered), and the budget, for these options.
 */
export function heartbeatPlan(options: MonitorOptions): { heartbeatMs: number; budget: number } {
  const stack = _perStack(options.transport);
  const offered = (options.extensions ?? CAPABILITIES).includes("heartbeat");
  return {
    heartbeatMs: offered ? options.heartbeatMs ?? LB_DEFAULTS.heartbeatMs[stack] : 0,
    budget: options.heartbeatBudget ?? LB_DEFAULTS.heartbeatBudget[stack],
  };
}

/**
 * The metrics to ask servers for: `metrics` (undefined: the server's default)
 * and every metric weights are computed from, so that `--weight-metrics
 * cpu_pressure_some_avg10` needs no `--metrics` beside it.
 */
export function askedMetrics(
  metrics: readonly string[] | undefined,
  loadMetrics: readonly string[],
): readonly string[] | undefined {
  const extra = loadMetrics.filter((m) => !LB_DEFAULTS.loadMetrics.includes(m));
  if (extra.length === 0) return metrics;
  return [...new Set([...LB_DEFAULTS.loadMetrics, ...(metrics ?? []), ...extra])];
}

/** The settings of every watch of a monitor with these options and check interval. */
export function buildSettings(options: MonitorOptions, interval: number): WatchSettings {
  return {
    lbId: options.signer.lbId,
    checkIntervalMs: interval,
    checkTimeoutMs: options.checkTimeoutMs ?? Math.min(interval, LB_DEFAULTS.maxCheckTimeoutMs),
    maxFailAttempts: options.maxFailAttempts ?? LB_DEFAULTS.maxFailAttempts,
    rise: options.rise ?? LB_DEFAULTS.rise,
    fastIntervalMs: options.fastIntervalMs ?? LB_DEFAULTS.fastIntervalMs,
    jitter: options.jitter ?? LB_DEFAULTS.jitter,
    reconnectIntervalMs: options.reconnectIntervalMs ?? LB_DEFAULTS.reconnectIntervalMs,
    metrics: askedMetrics(options.metrics, options.loadMetrics ?? LB_DEFAULTS.loadMetrics),
    caPem: options.caPem,
    insecure: options.insecure ?? false,
    idleTimeoutMs: options.idleTimeoutMs ?? COMMON_DEFAULTS.idleTimeoutMs,
    weights: {
      floor: options.weightFloor ?? LB_DEFAULTS.weightFloor,
      loadMetrics: options.loadMetrics ?? LB_DEFAULTS.loadMetrics,
    },
    extensions: options.extensions ?? CAPABILITIES,
    heartbeatMs: heartbeatPlan(options).heartbeatMs,
    suspectPhi: options.suspectPhi ?? LB_DEFAULTS.suspectPhi,
    minProbeTimeoutMs: options.minProbeTimeoutMs ?? LB_DEFAULTS.minProbeTimeoutMs,
    maxProbeTimeoutMs: options.maxProbeTimeoutMs ?? LB_DEFAULTS.maxProbeTimeoutMs,
  };
}
