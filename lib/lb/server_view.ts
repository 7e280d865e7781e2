/**
 * What one server looks like from outside (`/status`, the table, the
 * dashboard): the view's shape, which `ServerRecord.view()` fills in.
 *
 * @module
 */

import type { LbSessionState } from "../protocol/lb_session.ts";
import type {
  LocalCheckResult,
  MetricValues,
  ServerStatus,
  ServiceInfo,
} from "../protocol/wire.ts";
import type { HealthState } from "./verdict.ts";

/** Where a server's verdict comes from in fleet mode (docs/FLEET.md). */
export interface FleetView {
  /** The LBs that check it (its owners). */
  checked_by: string[];
  /** The owners whose verdicts make the one shown. */
  verdict_of: string[];
  /** When the verdict shown was written (null: by this LB, live). */
  written_at: string | null;
  /** How long etcd has not answered, ms; null while it does (the verdicts are current). */
  stale_ms: number | null;
}

/** What one server looks like in `/status`, the table and the dashboard. */
export interface WatchView {
  address: string;
  state: HealthState;
  /** The session's state; `ELSEWHERE` in fleet mode for a server other LBs check. */
  session: LbSessionState | "ELSEWHERE";
  consecutive_failures: number;
  last_rtt_ms: number | null;
  metrics: MetricValues | null;
  status: ServerStatus | null;
  last_error: string | null;
  /** ISO time of the last verdict change (start time before the first). */
  last_change: string;
  server_id: string | null;
  checks_ok: number;
  checks_failed: number;
  /** ISO time of the last HEALTH_RESPONSE. */
  last_check: string | null;
  /** Traffic weight 0..100; 0 for DOWN, UNKNOWN and DRAINING servers. */
  weight: number;
  /** The agent's local checks of its application, as last reported (null: none run). */
  checks: LocalCheckResult[] | null;
  /** The load the weight comes from (0..100), or null without metrics. */
  load: number | null;
  /**
   * The suspicion level (phi) of the heartbeat silence right now: about 0
   * while heartbeats come on time, 8 where the LB probes. Null without
   * heartbeats (a plain QHCP/1 server, or heartbeats off).
   */
  suspicion: number | null;
  /** The session's heartbeat interval, ms, or null without heartbeats. */
  heartbeat_ms: number | null;
  /** The extensions the session negotiated (empty for plain QHCP/1 or no session). */
  extensions: string[];
  /** The services the agent fronts, as its last ACK said (docs/PROTOCOL.md §11). */
  services: ServiceInfo[];
  /** In fleet mode: who checks it and whose verdict this is. */
  fleet?: FleetView;
}

/** What a session's heartbeats say now, for the view. */
export interface LivenessView {
  phi: number;
  heartbeatMs: number;
}
