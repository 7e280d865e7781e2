/**
 * The native stack's client endpoints: dialled connections are spread over
 * several UDP sockets, at most `perEndpoint` each. One socket for all of an
 * LB's sessions overflowed its receive buffer (the kernel default, which
 * Deno does not raise) whenever the event loop paused: in a fleet takeover,
 * hundreds of handshakes on top of a thousand sessions dropped thousands of
 * datagrams, and every lost handshake packet costs a retransmission timeout
 * (docs/PERFORMANCE.md, "Fleet"). N sockets hold N times as much.
 *
 * @module
 */

/** One endpoint and the connections it carries. */
interface _Slot {
  endpoint: Deno.QuicEndpoint;
  live: number;
}

/** A connection's place in the pool: its endpoint, and the call that gives the place back. */
export interface EndpointLease {
  endpoint: Deno.QuicEndpoint;
  /** Called once when the connection is over (or the dial failed); later calls do nothing. */
  release(): void;
}

/**
 * Endpoints made on demand by `make`; a dial takes the least loaded one, or
 * a new one when every endpoint carries `perEndpoint` connections. Empty
 * endpoints beyond the first are closed.
 *
 * @example
 * ```ts
 * import { EndpointPool } from "./native_pool.ts";
 * const pool = new EndpointPool(256, () => new Deno.QuicEndpoint({ hostname: "::", port: 0 }));
 * const { endpoint, release } = pool.acquire();
 * ```
 */
export class EndpointPool {
  readonly #slots: _Slot[] = [];
  readonly #perEndpoint: number;
  readonly #make: () => Deno.QuicEndpoint;

  constructor(perEndpoint: number, make: () => Deno.QuicEndpoint) {
    this.#perEndpoint = Math.max(1, perEndpoint);
    this.#make = make;
  }

  /** UDP sockets open now. */
  get size(): number {
    return this.#slots.length;
  }

  /** A place for one more connection. */
  acquire(): EndpointLease {
    let slot = this.#slots.reduce<_Slot | undefined>(
      (best, s) => (best === undefined || s.live < best.live ? s : best),
      undefined,
    );
    if (slot === undefined || slot.live >= this.#perEndpoint) {
      slot = { endpoint: this.#make(), live: 0 };
      this.#slots.push(slot);
    }
    slot.live++;
    const held = slot;
    let released = false;
    return {
      endpoint: held.endpoint,
      release: () => {
        if (released) return;
        released = true;
        held.live--;
        this.#trim(held);
      },
    };
  }

  /** Closes every endpoint. */
  close(): void {
    for (const s of this.#slots.splice(0)) _close(s.endpoint);
  }

  #trim(slot: _Slot): void {
    if (slot.live > 0 || this.#slots.length <= 1) return;
    const at = this.#slots.indexOf(slot);
    if (at < 0) return;
    this.#slots.splice(at, 1);
    _close(slot.endpoint);
  }
}

function _close(endpoint: Deno.QuicEndpoint): void {
  try {
    endpoint.close();
  } catch { /* already closed */ }
}
