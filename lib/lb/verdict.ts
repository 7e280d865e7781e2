/**
 * The verdict on one server (UP, DOWN or UNKNOWN) from a run of check
 * outcomes. Pure: outcomes and the time come in, a transition comes out.
 *
 * @module
 */

/** What the LB believes about a server. */
export type HealthState = "UNKNOWN" | "UP" | "DOWN";

/** Options of {@linkcode HealthTracker}. */
export interface HealthTrackerOptions {
  /** Consecutive failures that turn UP or UNKNOWN into DOWN (HAProxy's `fall`). Default 3. */
  fall?: number;
  /** Consecutive successes that turn DOWN into UP (HAProxy's `rise`). Default 2. */
  rise?: number;
}

/** A change of verdict. */
export interface Transition {
  from: HealthState;
  to: HealthState;
  /** Why: the last check's outcome. */
  reason: string;
  /** When it happened (ms since epoch). */
  at: number;
  /** How long the previous state lasted, in ms. */
  afterMs: number;
  /**
   * How long the decision took: from the first outcome of the run of
   * failures (or successes) that caused it, ms. 0 for an immediate DOWN.
   */
  tookMs: number;
}

/**
 * Counts consecutive outcomes and decides UP and DOWN.
 *
 * @example
 * ```ts
 * import { HealthTracker } from "./verdict.ts";
 * const h = new HealthTracker({ fall: 2, rise: 2 }, 0);
 * h.success(10); // { from: "UNKNOWN", to: "UP", … }
 * h.failure("timeout", 20); // undefined: one failure of two
 * h.failure("timeout", 30); // { from: "UP", to: "DOWN", reason: "timeout", … }
 * ```
 */
export class HealthTracker {
  #fall: number;
  #rise: number;
  #state: HealthState = "UNKNOWN";
  #failures = 0;
  #successes = 0;
  #since: number;
  #streakStart: number;
  #lastError: string | undefined;

  constructor(options: HealthTrackerOptions, now: number) {
    this.#fall = options.fall ?? 3;
    this.#rise = options.rise ?? 2;
    this.#since = now;
    this.#streakStart = now;
  }

  /** The verdict. */
  get state(): HealthState {
    return this.#state;
  }

  /** Consecutive failed checks. */
  get consecutiveFailures(): number {
    return this.#failures;
  }

  /** Consecutive good checks. */
  get consecutiveSuccesses(): number {
    return this.#successes;
  }

  /** When the verdict last changed (ms since epoch; start time until the first change). */
  get lastChange(): number {
    return this.#since;
  }

  /**
   * The reason of the most recent failure; cleared by a good check that
   * leaves or makes the server UP (a DOWN server keeps it until it is UP).
   */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /**
   * True while the verdict is in doubt: a failure since the last UP, or a good
   * check since the last DOWN. The LB checks at its fast interval meanwhile.
   */
  get inDoubt(): boolean {
    return this.#state === "DOWN" ? this.#successes > 0 : this.#failures > 0;
  }

  /** Changes the thresholds; applies from the next outcome. */
  configure(options: HealthTrackerOptions): void {
    if (options.fall !== undefined) this.#fall = options.fall;
    if (options.rise !== undefined) this.#rise = options.rise;
  }

  /** Records a good check. */
  success(now: number): Transition | undefined {
    if (this.#successes === 0) this.#streakStart = now;
    this.#failures = 0;
    this.#successes++;
    if (this.#state === "UP") {
      this.#lastError = undefined;
      return undefined;
    }
    // From UNKNOWN one good check is enough: there is no flapping to damp yet.
    if (this.#state === "DOWN" && this.#successes < this.#rise) return undefined;
    this.#lastError = undefined;
    return this.#move("UP", "check succeeded", now);
  }

  /** Records a failed check. */
  failure(reason: string, now: number): Transition | undefined {
    if (this.#failures === 0) this.#streakStart = now;
    this.#successes = 0;
    this.#failures++;
    this.#lastError = reason;
    if (this.#state === "DOWN" || this.#failures < this.#fall) return undefined;
    return this.#move("DOWN", reason, now);
  }

  /** Marks DOWN at once (the server said it is going away). */
  down(reason: string, now: number): Transition | undefined {
    if (this.#failures === 0) this.#streakStart = now;
    this.#successes = 0;
    this.#failures = Math.max(this.#failures, 1);
    this.#lastError = reason;
    if (this.#state === "DOWN") return undefined;
    return this.#move("DOWN", reason, now);
  }

  #move(to: HealthState, reason: string, now: number): Transition {
    const t: Transition = {
      from: this.#state,
      to,
      reason,
      at: now,
      afterMs: now - this.#since,
      tookMs: now - this.#streakStart,
    };
    this.#state = to;
    this.#since = now;
    return t;
  }
}
