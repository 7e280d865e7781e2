/**
 * What the LB knows of one server: its verdict, the figures of its last
 * check, counters, a round-trip histogram and recent history, and the JSON
 * view of all that. Synchronous and free of I/O: the watch (the driver)
 * feeds it outcomes with their times and acts on the transitions it returns.
 *
 * @module
 */

import { describeFailure, failureCause } from "../protocol/failure.ts";
import type {
  CheckAction,
  Failure,
  HeartbeatAction,
  LbSessionState,
} from "../protocol/lb_session.ts";
import type {
  HealthResponseMessage,
  LocalCheckResult,
  MetricValues,
  ServerStatus,
  ServiceInfo,
  StatusMessage,
} from "../protocol/wire.ts";
import { clip } from "../util/text.ts";
import { CheckHistory, type CheckRecord } from "./history.ts";
import { type HealthState, HealthTracker, type Transition } from "./verdict.ts";
import { computeWeight, loadOf, type WeightOptions } from "./weights.ts";

/** Upper bounds of the check duration histogram, seconds. */
export const DURATION_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
] as const;

/** A cumulative histogram of durations in seconds. */
export class DurationHistogram {
  readonly counts: number[] = DURATION_BUCKETS.map(() => 0);
  count = 0;
  sum = 0;

  /** Records one duration, seconds. */
  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]!) this.counts[i]!++;
    }
  }
}

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

/** Counters for `/metrics`. */
export interface WatchCounters {
  /** Checks that succeeded. */
  ok: number;
  /** Checks that failed (a failed dial counts as one). */
  failed: number;
  stateChanges: number;
  /** Changes to DOWN. */
  downs: number;
  /** Good checks answered more than one check interval after they were due. */
  late: number;
  /** Dials made, the first included. */
  dials: number;
  durations: DurationHistogram;
  /** Heartbeats taken, and heartbeats the counters say never came (or came out of order). */
  heartbeats: number;
  heartbeatsMissed: number;
  /** Probes sent on suspicion, and those that went unanswered. */
  probes: number;
  probesFailed: number;
  /** STATUS messages pushed by the server. */
  pushes: number;
  /** Changes to DOWN, by the evidence that decided them. */
  downsBy: Record<Evidence, number>;
}

/** Counters at zero: a new server's, or those of a server this LB does not check. */
export function zeroCounters(): WatchCounters {
  return {
    ok: 0,
    failed: 0,
    stateChanges: 0,
    downs: 0,
    late: 0,
    dials: 0,
    durations: new DurationHistogram(),
    heartbeats: 0,
    heartbeatsMissed: 0,
    probes: 0,
    probesFailed: 0,
    pushes: 0,
    downsBy: { polls: 0, "heartbeat_silence+probe": 0, pushed_status: 0, terminate: 0 },
  };
}

/**
 * Which evidence decided a verdict: `polls` (checks counted against fall or
 * rise, a failed session among them), `heartbeat_silence+probe` (heartbeats
 * stopped and a probe went unanswered), `pushed_status` (the server pushed
 * FAILING, or UP again), `terminate` (the server ended the session).
 */
export type Evidence = "polls" | "heartbeat_silence+probe" | "pushed_status" | "terminate";

/** A verdict change, what caused it ("timeout", "check_ok", …) and the evidence. */
export interface CausedTransition extends Transition {
  cause: string;
  evidence: Evidence;
}

/** Most local checks kept per server, and the longest name or detail kept. */
const _MAX_CHECKS = 32;
const _MAX_CHECK_TEXT = 200;

/**
 * One server's record.
 *
 * @example
 * ```ts
 * import { ServerRecord } from "./record.ts";
 * const r = new ServerRecord("10.0.0.7:4243", { fall: 3, rise: 2 }, 0);
 * r.failed({ kind: "timeout", message: "no ACK within 2000 ms" }, 10); // undefined: 1 of 3
 * r.view("DISCONNECTED", { floor: 10 }).consecutive_failures; // 1
 * ```
 */
export class ServerRecord {
  readonly address: string;
  readonly #health: HealthTracker;
  readonly #history = new CheckHistory();
  readonly counters: WatchCounters = zeroCounters();
  #rtt: number | null = null;
  #metrics: MetricValues | null = null;
  #status: ServerStatus | null = null;
  #checks: LocalCheckResult[] | null = null;
  #checkAt: number | null = null;
  #serverId: string | null = null;
  #extensions: string[] = [];
  #services: ServiceInfo[] = [];

  constructor(address: string, thresholds: { fall: number; rise: number }, now: number) {
    this.address = address;
    this.#health = new HealthTracker(thresholds, now);
  }

  /** The verdict. */
  get state(): HealthState {
    return this.#health.state;
  }

  /** The status the server last reported (a reply, a push or a heartbeat). */
  get status(): ServerStatus | null {
    return this.#status;
  }

  /** A failure since the last UP, or a good check since the last DOWN. */
  get inDoubt(): boolean {
    return this.#health.inDoubt;
  }

  /** When the verdict last changed (ms since epoch). */
  get lastChange(): number {
    return this.#health.lastChange;
  }

  /** Changes fall and rise from the next outcome. */
  configure(thresholds: { fall: number; rise: number }): void {
    this.#health.configure(thresholds);
  }

  /** The session reached READY with a server calling itself `serverId`. */
  ready(
    serverId: string,
    extensions: readonly string[] = [],
    services: readonly ServiceInfo[] = [],
  ): void {
    this.#serverId = serverId;
    this.#extensions = [...extensions];
    // Kept after the session ends: a DOWN server's services are DOWN with it.
    this.#services = services.map((x) => ({ ...x }));
  }

  /** The session ended. */
  sessionEnded(): void {
    this.#extensions = [];
  }

  /** A dial began. */
  dialled(): void {
    this.counters.dials++;
  }

  /**
   * The outcome of one check. `late` says a good answer came more than one
   * check interval after the check was due (the LB could not keep up).
   */
  checked(action: CheckAction, now: number, late: boolean): CausedTransition | undefined {
    const reply = action.ok ? action : action.reply;
    if (reply) this.#noteReply(reply.response, reply.rttMs, now);
    if (!action.ok) return this.failed(action.failure, now);
    this.counters.ok++;
    this.counters.durations.observe(action.rttMs / 1000);
    if (late) this.counters.late++;
    this.#history.add({
      time: now,
      result: "ok",
      rtt_ms: Math.round(action.rttMs * 1000) / 1000,
      cpu: action.response.metrics.cpu_percent ?? null,
      mem: action.response.metrics.mem_percent ?? null,
    });
    return this.#count(this.#health.success(now), "check_ok", "polls");
  }

  /** A heartbeat: the load and status it carries replace what the last reply said. */
  heartbeat(beat: HeartbeatAction): void {
    this.counters.heartbeats++;
    this.counters.heartbeatsMissed += beat.missed;
    this.#status = beat.status;
    this.#metrics = {
      ...this.#metrics,
      cpu_percent: beat.cpuPercent,
      mem_percent: beat.memPercent,
    };
  }

  /**
   * The server pushed its status. FAILING is DOWN at once (the agent knows
   * its application is down); UP or DRAINING from a DOWN server counts as
   * one good check toward rise.
   */
  pushed(message: StatusMessage, now: number): CausedTransition | undefined {
    this.counters.pushes++;
    this.#noteStatus(message);
    if (message.status === "FAILING") {
      const reason = clip(`server pushed FAILING: ${_failingText(message.checks)}`, 300);
      return this.#count(this.#health.down(reason, now), "failing", "pushed_status");
    }
    if (this.#health.state !== "DOWN") return undefined;
    return this.#count(this.#health.success(now), "check_ok", "pushed_status");
  }

  /** A probe was sent on suspicion. */
  probed(): void {
    this.counters.probes++;
  }

  /** Heartbeats stopped and the probe went unanswered: DOWN at once. */
  silent(reason: string, now: number): CausedTransition | undefined {
    this.counters.probesFailed++;
    this.counters.failed++;
    this.#history.add({
      time: now,
      result: "fail",
      rtt_ms: null,
      cpu: null,
      mem: null,
      error: reason,
    });
    return this.#count(this.#health.down(reason, now), "timeout", "heartbeat_silence+probe");
  }

  /** A failed check or a failed session: counts as one failure. */
  failed(failure: Failure, now: number): CausedTransition | undefined {
    this.counters.failed++;
    const reason = describeFailure(failure);
    this.#history.add({
      time: now,
      result: "fail",
      rtt_ms: null,
      cpu: null,
      mem: null,
      error: reason,
    });
    return this.#count(this.#health.failure(reason, now), failureCause(failure), "polls");
  }

  /** The server ended the session with TERMINATE: DOWN at once. */
  terminated(reason: string, now: number): CausedTransition | undefined {
    const why = clip(`server terminated the session: ${reason || "no reason"}`, 300);
    return this.#count(this.#health.down(why, now), "terminated", "terminate");
  }

  /** The view for `/status` and the table; `liveness` while heartbeats flow. */
  view(session: LbSessionState, weights: WeightOptions, liveness?: LivenessView): WatchView {
    return {
      address: this.address,
      state: this.#health.state,
      session,
      consecutive_failures: this.#health.consecutiveFailures,
      last_rtt_ms: this.#rtt === null ? null : Math.round(this.#rtt * 1000) / 1000,
      metrics: this.#metrics,
      status: this.#status,
      last_error: this.#health.lastError ?? null,
      last_change: new Date(this.#health.lastChange).toISOString(),
      server_id: this.#serverId,
      checks_ok: this.counters.ok,
      checks_failed: this.counters.failed,
      last_check: this.#checkAt === null ? null : new Date(this.#checkAt).toISOString(),
      weight: computeWeight(
        { state: this.#health.state, status: this.#status, metrics: this.#metrics },
        weights,
      ),
      load: loadOf(this.#metrics, weights),
      checks: this.#checks,
      suspicion: liveness ? Math.round(liveness.phi * 100) / 100 : null,
      heartbeat_ms: liveness?.heartbeatMs ?? null,
      extensions: this.#extensions,
      services: this.#services,
    };
  }

  /** The checks of the window ending at `now`, oldest first; only the last `limit` if given. */
  history(now: number, limit?: number): CheckRecord[] {
    return this.#history.entries(now, limit);
  }

  #noteReply(response: HealthResponseMessage, rttMs: number, now: number): void {
    this.#rtt = rttMs;
    this.#noteStatus(response);
    this.#checkAt = now;
  }

  #noteStatus(response: HealthResponseMessage | StatusMessage): void {
    this.#metrics = response.metrics;
    this.#status = response.status;
    // Stored per server and shown everywhere: a peer must not make it large.
    this.#checks = response.checks
      ? response.checks.slice(0, _MAX_CHECKS).map((c) => ({
        name: clip(c.name, _MAX_CHECK_TEXT),
        ok: c.ok,
        detail: clip(c.detail, _MAX_CHECK_TEXT),
      }))
      : null;
  }

  #count(
    t: Transition | undefined,
    cause: string,
    evidence: Evidence,
  ): CausedTransition | undefined {
    if (!t) return undefined;
    this.counters.stateChanges++;
    if (t.to === "DOWN") {
      this.counters.downs++;
      this.counters.downsBy[evidence]++;
    }
    return { ...t, cause, evidence };
  }
}

/** The failing local checks in words. */
function _failingText(checks: readonly LocalCheckResult[] | undefined): string {
  const failed = (checks ?? []).filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  return failed.length ? failed.join("; ") : "a local check fails";
}
