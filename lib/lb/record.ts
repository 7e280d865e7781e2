/**
 * What the LB knows of one server: its verdict, the figures of its last
 * check, counters, a round-trip histogram and recent history, and the JSON
 * view of all that. Synchronous and free of I/O: the watch (the driver)
 * feeds it outcomes with their times and acts on the transitions it returns.
 * The counters' shape is in `counters.ts`, the view's in `server_view.ts`.
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
import { type Evidence, type WatchCounters, zeroCounters } from "./counters.ts";
import { CheckHistory, type CheckRecord } from "./history.ts";
import type { LivenessView, WatchView } from "./server_view.ts";
import { type HealthState, HealthTracker, type Transition } from "./verdict.ts";
import { computeWeight, loadOf, type WeightOptions } from "./weights.ts";

export {
  DURATION_BUCKETS,
  DurationHistogram,
  type Evidence,
  type WatchCounters,
  zeroCounters,
} from "./counters.ts";
export type { FleetView, LivenessView, WatchView } from "./server_view.ts";

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
    const health = this.#health;
    const state = health.state;
    return {
      address: this.address,
      state,
      session,
      consecutive_failures: health.consecutiveFailures,
      last_rtt_ms: this.#rtt === null ? null : Math.round(this.#rtt * 1000) / 1000,
      metrics: this.#metrics,
      status: this.#status,
      last_error: health.lastError ?? null,
      last_change: new Date(health.lastChange).toISOString(),
      server_id: this.#serverId,
      checks_ok: this.counters.ok,
      checks_failed: this.counters.failed,
      last_check: this.#checkAt === null ? null : new Date(this.#checkAt).toISOString(),
      weight: computeWeight({ state, status: this.#status, metrics: this.#metrics }, weights),
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
