/**
 * A limit on QUIC handshakes in flight. An LB that dials a thousand servers
 * at once through one UDP socket receives a thousand certificate chains at
 * once: the socket's receive buffer overflows, handshake packets are lost,
 * their retransmissions back off for seconds and healthy servers are marked
 * DOWN (measured: 584 false DOWNs for 1,000 servers). Through this gate the
 * dials queue instead, first come first served.
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
  readonly #queue: (() => void)[] = [];

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
    return this.#queue.length;
  }

  /**
   * Waits for a permit and returns the function that gives it back (calling
   * it twice is harmless). Rejects with the signal's reason if `signal`
   * aborts first.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.#limit) {
      this.#active++;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#active++;
        resolve(this.#releaser());
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(grant);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(grant);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#queue.shift()?.();
    };
  }
}
