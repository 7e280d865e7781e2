/**
 * The dashboard's event stream (server-sent events): one feed for every
 * subscriber, which builds each snapshot once per change and sends each
 * subscriber only the latest one when it is ready for more.
 *
 * @module
 */

const _encoder = new TextEncoder();

/** The comment line that keeps proxies from closing an idle event stream. */
const _KEEPALIVE = _encoder.encode(": keep-alive\n\n");
/** A keep-alive comment after this long without an event, ms. */
const _KEEPALIVE_MS = 15_000;

/**
 * The event stream for every subscriber. The snapshot is built
 * once per change for all of them (not once per subscriber), and a
 * subscriber is sent only the latest snapshot when it is ready for more: a
 * client that reads slowly, or not at all, holds at most one snapshot, never
 * a queue of old ones (its stream is pulled as its connection drains).
 */
export class EventFeed {
  readonly #build: () => string;
  readonly #minGapMs: number;
  #version = 0;
  #built: { version: number; bytes: Uint8Array } | undefined;
  readonly #wakers = new Set<() => void>();
  readonly #closers = new Set<() => void>();
  #unsubscribe: (() => void) | undefined;
  readonly #monitor: { subscribe(listener: () => void): () => void };

  /**
   * @param monitor what to watch for changes
   * @param build the snapshot as JSON, built when a subscriber is due one
   * @param minGapMs fewest ms between two events to one subscriber
   */
  constructor(
    monitor: { subscribe(listener: () => void): () => void },
    build: () => string,
    minGapMs: number,
  ) {
    this.#monitor = monitor;
    this.#build = build;
    this.#minGapMs = minGapMs;
  }

  /** Subscribers now. */
  get subscribers(): number {
    return this.#closers.size;
  }

  /** The latest snapshot as one event, built at most once per change. */
  #latest(): { version: number; bytes: Uint8Array } {
    if (this.#built?.version !== this.#version) {
      this.#built = {
        version: this.#version,
        bytes: _encoder.encode(`event: status\ndata: ${this.#build()}\n\n`),
      };
    }
    return this.#built;
  }

  #changed = () => {
    this.#version++;
    for (const wake of [...this.#wakers]) wake();
  };

  /** A new subscriber's stream. */
  subscribe(): ReadableStream<Uint8Array> {
    if (this.#closers.size === 0) this.#unsubscribe = this.#monitor.subscribe(this.#changed);
    let sent = -1;
    let lastAt = 0;
    let ended = false;
    let wake = () => {};
    const end = () => {
      if (ended) return;
      ended = true;
      this.#closers.delete(close);
      this.#wakers.delete(wake);
      wake();
      if (this.#closers.size === 0) {
        this.#unsubscribe?.();
        this.#unsubscribe = undefined;
      }
    };
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    const close = () => {
      end();
      try {
        controllerRef?.close();
      } catch { /* already closed */ }
    };
    this.#closers.add(close);
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        controllerRef = controller;
      },
      // Called only when the consumer wants more: that is the backpressure.
      pull: async (controller) => {
        if (ended) return;
        if (sent >= 0) {
          // Wait for a change, or send a keep-alive after a quiet while.
          const changed = await new Promise<boolean>((resolve) => {
            if (this.#version !== sent) return resolve(true);
            const timer = setTimeout(() => done(false), _KEEPALIVE_MS);
            const done = (v: boolean) => {
              clearTimeout(timer);
              this.#wakers.delete(wake);
              resolve(v);
            };
            wake = () => done(true);
            this.#wakers.add(wake);
          });
          if (ended) return;
          if (!changed) return controller.enqueue(_KEEPALIVE);
          const wait = lastAt + this.#minGapMs - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          if (ended) return;
        }
        const latest = this.#latest();
        sent = latest.version;
        lastAt = Date.now();
        controller.enqueue(latest.bytes);
      },
      cancel: () => end(),
    }, { highWaterMark: 0 });
  }

  /** Ends every stream (before the server shuts down). */
  close(): void {
    for (const close of [...this.#closers]) close();
  }
}
