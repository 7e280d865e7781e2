/**
 * One timer for many callbacks. An LB watching thousands of servers arms two
 * timers per check (the next check, the reply deadline); with one
 * `setTimeout` each, every check costs its own event-loop wake-ups. Here
 * callbacks due within the same `slackMs` slot run together in one wake-up,
 * which cut the LB's CPU time per check by about a quarter at a thousand
 * checks a second (see docs/PERFORMANCE.md).
 *
 * A callback never runs early: it runs at the end of its slot, at most
 * `slackMs` late (plus whatever the event loop adds).
 *
 * @module
 */

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** Width of a slot, ms: callbacks due in one slot run together. Default 10; 0 disables batching. */
  slackMs?: number;
  /** Clock, ms. Default `performance.timeOrigin + performance.now()`. */
  now?: () => number;
  /**
   * The one real timer underneath. Default `setTimeout`/`clearTimeout`; tests
   * inject a manual one and move the clock themselves.
   */
  timer?: TimerFunctions;
  /**
   * Told, before the callbacks of a wake-up run, when the earliest of them was
   * due and when they ran: how late the event loop let them be.
   */
  onFire?: (dueAt: number, firedAt: number) => void;
}

/** What the scheduler needs of a timer. */
export interface TimerFunctions {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const _realTimer: TimerFunctions = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A scheduled callback; pass it to {@linkcode Scheduler.cancel}. */
export interface ScheduledTimer {
  /** When it is due, ms (the clock's). */
  readonly at: number;
}

interface _Entry extends ScheduledTimer {
  readonly slot: number;
  readonly fn: () => void;
}

/**
 * Runs callbacks at given times, batching those due close together.
 *
 * @example
 * ```ts
 * import { Scheduler } from "./timers.ts";
 * const scheduler = new Scheduler({ slackMs: 10 });
 * const t = scheduler.after(1000, () => console.log("a second later, or up to 10 ms more"));
 * scheduler.cancel(t);
 * ```
 */
export class Scheduler {
  readonly #slack: number;
  readonly #now: () => number;
  /** Callbacks by slot (due time / slack, rounded up). */
  readonly #slots = new Map<number, Set<_Entry>>();
  /** Slot numbers, a min-heap; may hold slots whose callbacks were all cancelled. */
  readonly #heap: number[] = [];
  readonly #timerFns: TimerFunctions;
  readonly #onFire: ((dueAt: number, firedAt: number) => void) | undefined;
  #timer: unknown;
  #armedSlot = Infinity;
  #size = 0;

  constructor(options: SchedulerOptions = {}) {
    this.#slack = Math.max(0, options.slackMs ?? 10);
    this.#now = options.now ?? (() => performance.timeOrigin + performance.now());
    this.#timerFns = options.timer ?? _realTimer;
    this.#onFire = options.onFire;
  }

  /** The scheduler's clock, ms. */
  now(): number {
    return this.#now();
  }

  /** Callbacks waiting to run. */
  get size(): number {
    return this.#size;
  }

  /** Runs `fn` `delayMs` from now. */
  after(delayMs: number, fn: () => void): ScheduledTimer {
    return this.at(this.#now() + Math.max(0, delayMs), fn);
  }

  /** Runs `fn` at `time` (the clock's ms), or at once if that has passed. */
  at(time: number, fn: () => void): ScheduledTimer {
    const slot = this.#slack > 0 ? Math.ceil(time / this.#slack) : time;
    const entry: _Entry = { at: time, slot, fn };
    let bucket = this.#slots.get(slot);
    if (!bucket) {
      bucket = new Set();
      this.#slots.set(slot, bucket);
      _push(this.#heap, slot);
    }
    bucket.add(entry);
    this.#size++;
    if (slot < this.#armedSlot) this.#arm(slot);
    return entry;
  }

  /** Cancels a callback that has not run yet; anything else is ignored. */
  cancel(timer: ScheduledTimer | undefined): void {
    if (!timer) return;
    const entry = timer as _Entry;
    const bucket = this.#slots.get(entry.slot);
    if (!bucket?.delete(entry)) return;
    this.#size--;
    if (bucket.size === 0) this.#slots.delete(entry.slot);
    if (this.#size === 0) this.#disarm();
  }

  /** Cancels everything. */
  clear(): void {
    this.#slots.clear();
    this.#heap.length = 0;
    this.#size = 0;
    this.#disarm();
  }

  #slotTime(slot: number): number {
    return this.#slack > 0 ? slot * this.#slack : slot;
  }

  #arm(slot: number): void {
    if (this.#timer !== undefined) this.#timerFns.clear(this.#timer);
    this.#armedSlot = slot;
    this.#timer = this.#timerFns.set(
      () => this.#fire(),
      Math.max(0, this.#slotTime(slot) - this.#now()),
    );
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#timerFns.clear(this.#timer);
    this.#timer = undefined;
    this.#armedSlot = Infinity;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedSlot = Infinity;
    const now = this.#now();
    if (this.#onFire && this.#heap.length > 0) this.#onFire(this.#slotTime(this.#heap[0]!), now);
    while (this.#heap.length > 0 && this.#slotTime(this.#heap[0]!) <= now) {
      const slot = _pop(this.#heap);
      const bucket = this.#slots.get(slot);
      if (!bucket) continue; // every callback of that slot was cancelled
      this.#slots.delete(slot);
      for (const entry of bucket) {
        this.#size--;
        try {
          entry.fn();
        } catch (e) {
          // One callback's bug must not stop the others; surface it as usual.
          queueMicrotask(() => {
            throw e;
          });
        }
      }
    }
    // Drop cancelled slots at the top, then wait for the next live one.
    while (this.#heap.length > 0 && !this.#slots.has(this.#heap[0]!)) _pop(this.#heap);
    if (this.#heap.length > 0 && this.#size > 0) this.#arm(this.#heap[0]!);
  }
}

function _push(heap: number[], value: number): void {
  heap.push(value);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent]! <= value) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = value;
}

function _pop(heap: number[]): number {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
      if (heap[c]! >= last) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = last;
  }
  return top;
}
