/**
 * A limit on QUIC handshakes in flight. An LB that dials a thousand servers
 * at once through one UDP socket receives a thousand certificate chains at
 * once: the socket's receive buffer overflows, handshake packets are lost,
 * their retransmissions back off for seconds and healthy servers are marked
 * DOWN (measured: 584 false DOWNs for 1,000 servers). Through this gate the
 * dials queue instead, lowest priority number first (first come first
 * served among equals): the LB passes how long a server has been DOWN, so a
 * server that was UP a moment ago (a restarted agent) is redialled before
 * ones that have been dead for hours.
 *
 * @module
 */

/**
 * Counts permits; `acquire()` waits for one.
 *
 * @example
 * ```ts
 * import { DialGate } from "./dial_gate.ts";
 * const gate = new DialGate(32);
 * const release = await gate.acquire();
 * try {
 *   // dial
 * } finally {
 *   release();
 * }
 * ```
 */
export class DialGate {
  readonly #limit: number;
  #active = 0;
  /** Waiters, a min-heap by (priority, arrival). */
  readonly #queue: _Waiter[] = [];
  #arrivals = 0;

  /** @param limit permits; Infinity for no limit */
  constructor(limit: number) {
    if (!(limit >= 1)) throw new RangeError(`DialGate limit must be at least 1, got ${limit}`);
    this.#limit = limit;
  }

  /** Permits held. */
  get active(): number {
    return this.#active;
  }

  /** Callers waiting for a permit. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Waits for a permit and returns the function that gives it back (calling
   * it twice is harmless). Waiters with a lower `priority` are served first.
   * Rejects with the signal's reason if `signal` aborts first.
   */
  acquire(signal?: AbortSignal, priority = 0): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.#limit) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const waiter: _Waiter = {
        priority,
        arrival: this.#arrivals++,
        cancelled: false,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          this.#active++;
          resolve(this.#releaser());
        },
      };
      const onAbort = () => {
        // Left in the heap and skipped when it comes up: removal is O(n).
        waiter.cancelled = true;
        this.#waiting--;
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      _push(this.#queue, waiter);
      this.#waiting++;
    });
  }

  #waiting = 0;

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      for (let next = _pop(this.#queue); next; next = _pop(this.#queue)) {
        if (next.cancelled) continue;
        this.#waiting--;
        next.grant();
        break;
      }
    };
  }
}

interface _Waiter {
  priority: number;
  arrival: number;
  cancelled: boolean;
  grant: () => void;
}

function _before(a: _Waiter, b: _Waiter): boolean {
  return a.priority < b.priority || (a.priority === b.priority && a.arrival < b.arrival);
}

function _push(heap: _Waiter[], w: _Waiter): void {
  heap.push(w);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!_before(w, heap[parent]!)) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = w;
}

function _pop(heap: _Waiter[]): _Waiter | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= heap.length) break;
      const r = l + 1;
      const c = r < heap.length && _before(heap[r]!, heap[l]!) ? r : l;
      if (!_before(heap[c]!, last)) break;
      heap[i] = heap[c]!;
      i = c;
    }
    heap[i] = last;
  }
  return top;
}
