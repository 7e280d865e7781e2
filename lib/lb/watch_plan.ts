/**
 * When one watch acts next: the single "next thing to do" timer, checks
 * planned one (fast or normal, jittered) interval after the last was due,
 * redials with backoff once the server is DOWN, and the reply deadline, put
 * off once for the LB's own stalls. What to do when the time comes is the
 * watch's; the intervals are {@linkcode checkDelay} and {@linkcode redialDelay}.
 *
 * @module
 */

import type { LoopHealth } from "./loop_health.ts";
import type { ServerRecord } from "./record.ts";
import { checkDelay, type Random, redialDelay } from "./schedule.ts";
import type { ScheduledTimer, Scheduler } from "./timers.ts";
import type { WatchSettings } from "./watch_types.ts";

/** What a watch's plan needs from its watch. */
export interface WatchPlanDeps {
  /** Timers; its clock must be `now`. */
  scheduler: Scheduler;
  now: () => number;
  /** Uniform random numbers in [0, 1) for jitter. */
  random: Random;
  /** The verdict the intervals follow: fast while in doubt, backoff while DOWN. */
  record: Pick<ServerRecord, "inDoubt" | "state">;
  /** The watch's settings (changed in place) and the LB's own stalls, read when used. */
  watch: { readonly settings: WatchSettings; readonly loopHealth?: LoopHealth };
  /** The next action is due. */
  next: () => void;
}

/**
 * The timers of one watch: the next action and the reply deadline.
 *
 * @example
 * ```ts
 * import { Scheduler } from "./timers.ts";
 * import { WatchPlan } from "./watch_plan.ts";
 * import type { WatchSettings } from "./watch_types.ts";
 * declare const settings: WatchSettings; // the monitor's, shared by its watches
 * const scheduler = new Scheduler();
 * const plan = new WatchPlan({
 *   scheduler,
 *   now: () => scheduler.now(),
 *   random: Math.random,
 *   record: { inDoubt: false, state: "UP" },
 *   watch: { settings },
 *   next: () => console.log("check or dial now"),
 * });
 * plan.after(0); // act at once
 * plan.check(); // the next check, one interval after the last was due
 * plan.stop();
 * ```
 */
export class WatchPlan {
  readonly #deps: WatchPlanDeps;
  #nextTimer: ScheduledTimer | undefined;
  #deadlineTimer: ScheduledTimer | undefined;
  /** A reply deadline already put off once for the LB's own stall. */
  #deferred: number | undefined;
  #stopped = false;
  #lastAttempt = 0;
  /** Redials since the server went DOWN, for the backoff. */
  #redials = 0;
  /** When the armed timer is due, when the last action was, and when the check in flight was (for `late`). */
  #dueAt = 0;
  #lastDue = 0;
  #checkDueAt = 0;

  constructor(deps: WatchPlanDeps) {
    this.#deps = deps;
  }

  /** True once stopped: nothing is planned any more. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Armed timers: the next action and the reply deadline. */
  get timers(): number {
    return (this.#nextTimer === undefined ? 0 : 1) + (this.#deadlineTimer === undefined ? 0 : 1);
  }

  /** When the check in flight was due. */
  get checkDueAt(): number {
    return this.#checkDueAt;
  }

  /** Stops planning: the next action is cancelled and none is armed again. */
  stop(): void {
    this.#stopped = true;
    this.clearNext();
  }

  /** Arms the single "next thing to do" timer. */
  after(delayMs: number): void {
    this.clearNext();
    if (this.#stopped) return;
    this.#dueAt = this.#deps.now() + Math.max(0, delayMs);
    this.#nextTimer = this.#deps.scheduler.at(this.#dueAt, () => {
      this.#nextTimer = undefined;
      this.#deps.next();
    });
  }

  /** Cancels the next action. */
  clearNext(): void {
    this.#deps.scheduler.cancel(this.#nextTimer);
    this.#nextTimer = undefined;
  }

  /** The next action's time has come: it is now the last one due. */
  due(): void {
    this.#lastDue = this.#dueAt;
  }

  /** A dial, or with `check` a check, starts now. */
  attempted(check: boolean): void {
    this.#lastAttempt = this.#deps.now();
    if (check) this.#checkDueAt = this.#dueAt;
  }

  /** Connecting or terminating: look again after one interval. */
  again(): void {
    this.after(checkDelay(this.#deps.watch.settings, false, this.#deps.random));
  }

  /** Plans the next check, one (fast or normal, jittered) interval after the last one was due. */
  check(): void {
    const delay = checkDelay(
      this.#deps.watch.settings,
      this.#deps.record.inDoubt,
      this.#deps.random,
    );
    // From when the last action was due rather than when it ran, so that timer
    // slack and event-loop delays do not stretch the interval; after a long
    // stall, from when it ran, so that missed checks are not made up in a burst.
    const now = this.#deps.now();
    const base = now - this.#lastDue < delay ? this.#lastDue : this.#lastAttempt;
    this.after(base + delay - now);
  }

  /**
   * Plans the next dial after a session ended or failed: DOWN servers back off
   * (full jitter, capped at the reconnect interval); others are dialled on
   * the check schedule, where a failed dial counts as a failed check.
   */
  redial(immediately = false): void {
    if (immediately) return this.after(0);
    const s = this.#deps.watch.settings;
    if (this.#deps.record.state === "DOWN") {
      this.after(redialDelay(s, this.#redials++, this.#deps.random));
    } else {
      this.check();
    }
  }

  /** The server is UP again: the next backoff starts over. */
  resetBackoff(): void {
    this.#redials = 0;
  }

  /**
   * Arms the reply deadline (none if undefined); `tick` runs when it passes,
   * with the time.
   */
  armDeadline(deadline: number | undefined, tick: (now: number) => void): void {
    this.clearDeadline();
    if (deadline === undefined) return;
    const { scheduler, now: clock, watch } = this.#deps;
    this.#deadlineTimer = scheduler.at(deadline, () => {
      this.#deadlineTimer = undefined;
      const now = clock();
      // The LB's own stall is not the server's fault: once per deadline, let
      // the replies the stall held up arrive before timing anything out.
      const stalled = watch.loopHealth?.stalledBetween(now - watch.settings.checkTimeoutMs, now) ??
        0;
      if (stalled > 0 && this.#deferred !== deadline) {
        this.#deferred = deadline;
        this.#deadlineTimer = scheduler.at(now + Math.min(stalled, 1000), () => {
          this.#deadlineTimer = undefined;
          tick(clock());
        });
        return;
      }
      tick(now);
    });
  }

  /** Cancels the reply deadline. */
  clearDeadline(): void {
    this.#deps.scheduler.cancel(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
  }
}
