/**
 * What the LB counts of one server for `/metrics`: checks, verdict changes
 * and the evidence behind each DOWN, dials, heartbeats, probes, pushes, and
 * a histogram of check durations.
 *
 * @module
 */

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
