/**
 * The types a watch shares with the monitor: the settings every watch of one
 * LB reads, the outcome of a CONFIG_UPDATE, the events a watch reports, and
 * the resources it holds.
 *
 * @module
 */

import type { Capability, ErrorCode, SessionConfig } from "../protocol/wire.ts";
import type { ScheduleSettings } from "./schedule.ts";
import type { Transition } from "./verdict.ts";
import type { WeightOptions } from "./weights.ts";

/** Settings shared by every watch of one LB; changed in place at run time. */
export interface WatchSettings extends ScheduleSettings {
  lbId: string;
  checkTimeoutMs: number;
  /** Consecutive failures that mark a server DOWN (fall). */
  maxFailAttempts: number;
  /** Consecutive good checks that bring a DOWN server back UP. */
  rise: number;
  /** Metric names asked for in HELLO (undefined: the server's default). */
  metrics: readonly string[] | undefined;
  caPem: string | undefined;
  insecure: boolean;
  idleTimeoutMs: number;
  /** How weights are computed from metrics. */
  weights: WeightOptions;
  /** Extensions offered in HELLO (§10 of docs/PROTOCOL.md). */
  extensions: readonly Capability[];
  /** Heartbeat interval asked of servers, ms (after the fleet's budget); 0: no heartbeats. */
  heartbeatMs: number;
  /** Suspicion level (phi) of heartbeat silence that triggers a probe. */
  suspectPhi: number;
  /** Bounds of the probe timeout, ms. */
  minProbeTimeoutMs: number;
  maxProbeTimeoutMs: number;
}

/** The outcome of one CONFIG_UPDATE to one server. */
export type ConfigOutcome =
  | { address: string; ok: true; config: SessionConfig }
  | {
    address: string;
    ok: false;
    code: ErrorCode | "TIMEOUT" | "CLOSED" | "NOT_CONNECTED";
    message: string;
  };

/** Events a watch reports to its monitor. */
export interface WatchEvents {
  /** The verdict changed. */
  onTransition?: (address: string, t: Transition) => void;
  /** A check finished (ok or not). */
  onCheck?: (address: string, ok: boolean, rttMs: number | null) => void;
  /** Anything shown by `view()` changed (a check, a verdict, a session). */
  onChange?: (address: string) => void;
}

/** Timers and sessions a watch holds, for leak checks. */
export interface WatchResources {
  /** Armed timers (the next action, the reply deadline, and with heartbeats the suspicion and probe timers). */
  timers: number;
  /** 1 while a channel is open or being dialled. */
  sessions: number;
  /** Channels still closing. */
  closing: number;
}
