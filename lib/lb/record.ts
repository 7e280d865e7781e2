/**
 * What the LB knows of one server: its verdict, the figures of its last
 * check, counters, a round-trip histogram and recent history, and the JSON
 * view of all that. Synchronous and free of I/O: the watch (the driver)
 * feeds it outcomes with their times and acts on the transitions it returns.
 *
 * @module
 */

import { describeFailure, failureCause } from "../protocol/failure.ts";
import type { CheckAction, Failure, LbSessionState } from "../protocol/lb_session.ts";
import type {
  HealthResponseMessage,
  LocalCheckResult,
  MetricValues,
  ServerStatus,
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

/** What one server looks like in `/status`, the table and the dashboard. */
export interface WatchView {
  address: string;
  state: HealthState;
  session: LbSessionState;
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
}

/** A verdict change and what caused it ("timeout", "check_ok", …). */
export interface CausedTransition extends Transition {
  cause: string;
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
  readonly counters: WatchCounters = {
    ok: 0,
    failed: 0,
    stateChanges: 0,
    downs: 0,
    late: 0,
    dials: 0,
    durations: new DurationHistogram(),
  };
  #rtt: number | null = null;
  #metrics: MetricValues | null = null;
  #status: ServerStatus | null = null;
  #checks: LocalCheckResult[] | null = null;
  #checkAt: number | null = null;
  #serverId: string | null = null;

  constructor(address: string, thresholds: { fall: number; rise: number }, now: number) {
    this.address = address;
    this.#health = new HealthTracker(thresholds, now);
  }

  /** The verdict. */
  get state(): HealthState {
    return this.#health.state;
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
  ready(serverId: string): void {
    this.#serverId = serverId;
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
    return this.#count(this.#health.success(now), "check_ok");
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
    return this.#count(this.#health.failure(reason, now), failureCause(failure));
  }

  /** The server ended the session with TERMINATE: DOWN at once. */
  terminated(reason: string, now: number): CausedTransition | undefined {
    const why = clip(`server terminated the session: ${reason || "no reason"}`, 300);
    return this.#count(this.#health.down(why, now), "terminated");
  }

  /** The view for `/status` and the table. */
  view(session: LbSessionState, weights: WeightOptions): WatchView {
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
    };
  }

  /** The checks of the window ending at `now`, oldest first; only the last `limit` if given. */
  history(now: number, limit?: number): CheckRecord[] {
    return this.#history.entries(now, limit);
  }

  #noteReply(response: HealthResponseMessage, rttMs: number, now: number): void {
    this.#rtt = rttMs;
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
    this.#checkAt = now;
  }

  #count(t: Transition | undefined, cause: string): CausedTransition | undefined {
    if (!t) return undefined;
    this.counters.stateChanges++;
    if (t.to === "DOWN") this.counters.downs++;
    return { ...t, cause };
  }
}
