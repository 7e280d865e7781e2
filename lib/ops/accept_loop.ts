/**
 * Accepting TCP (or TLS) connections without letting any peer exhaust the
 * port: a cap on connections at once and per client address, and accept
 * errors treated as temporary. When descriptors run out (EMFILE), `accept()`
 * fails while the connection waits in the kernel's queue; the loop logs,
 * backs off (10 ms doubling to 1 s) and goes on, so the port answers again as
 * soon as descriptors are free, instead of dying for good.
 *
 * @module
 */

import { type Logger, silentLogger } from "../util/log.ts";

/** Options of {@linkcode acceptLoop}. */
export interface AcceptLoopOptions {
  /** What is served, for log lines ("HTTP", "agent-check"). */
  what: string;
  /** Connections at once; more are closed at once. */
  maxConnections: number;
  /** Connections at once from one client address; more are closed at once. */
  maxPerAddress: number;
  /** Serves one connection; the loop closes it when the promise settles. */
  serve: (conn: Deno.Conn) => Promise<void>;
  log?: Logger;
}

/** Counters of an accept loop. */
export interface AcceptStats {
  /** Connections open now. */
  open: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections closed at once because a cap was reached. */
  refused: number;
  /** Failed `accept()` calls (out of descriptors, say) since start. */
  acceptErrors: number;
}

/** A running accept loop. */
export interface AcceptLoop {
  stats(): AcceptStats;
  /** Connections open now, so that shutdown can close them. */
  connections(): Deno.Conn[];
  /** Resolves when the listener is closed and the loop has ended. */
  readonly done: Promise<void>;
}

/** Back-off after a failed accept: starts here, doubles, stops growing at the cap. */
const _BACKOFF_MIN_MS = 10;
const _BACKOFF_MAX_MS = 1000;
/** At most one log line per this many ms about refusals or accept errors. */
const _LOG_EVERY_MS = 10_000;

/**
 * Accepts connections from `listener` until it is closed.
 *
 * @example
 * ```ts
 * import { acceptLoop } from "./accept_loop.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const loop = acceptLoop(listener, {
 *   what: "echo",
 *   maxConnections: 1000,
 *   maxPerAddress: 64,
 *   serve: async (conn) => void await conn.readable.pipeTo(conn.writable, { preventClose: true }),
 * });
 * listener.close();
 * await loop.done;
 * ```
 */
export function acceptLoop(listener: Deno.Listener, options: AcceptLoopOptions): AcceptLoop {
  const log = options.log ?? silentLogger;
  const open = new Set<Deno.Conn>();
  const perAddress = new Map<string, number>();
  const stats = { accepted: 0, refused: 0, acceptErrors: 0 };
  let loggedRefused = 0;
  let loggedErrors = 0;
  let lastLog = -Infinity;
  const report = (why: string, error?: unknown) => {
    const now = Date.now();
    if (now - lastLog < _LOG_EVERY_MS) return;
    lastLog = now;
    log.warn(`${options.what}: ${why}`, {
      refused: stats.refused - loggedRefused,
      accept_errors: stats.acceptErrors - loggedErrors,
      open: open.size,
      ...(error === undefined ? {} : { error: String((error as Error)?.message ?? error) }),
    });
    loggedRefused = stats.refused;
    loggedErrors = stats.acceptErrors;
  };

  const run = async () => {
    let backoff = _BACKOFF_MIN_MS;
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        // Out of descriptors and the like: temporary. The peer waits in the
        // kernel's queue until a descriptor is free.
        stats.acceptErrors++;
        report("accept failed; backing off and trying again", e);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(_BACKOFF_MAX_MS, backoff * 2);
        continue;
      }
      backoff = _BACKOFF_MIN_MS;
      const address = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
      const fromThere = perAddress.get(address) ?? 0;
      if (open.size >= options.maxConnections || fromThere >= options.maxPerAddress) {
        stats.refused++;
        report(
          open.size >= options.maxConnections
            ? `${options.maxConnections} connections open; refusing more`
            : `${options.maxPerAddress} connections open from one address; refusing more from it`,
        );
        _close(conn);
        continue;
      }
      stats.accepted++;
      open.add(conn);
      perAddress.set(address, fromThere + 1);
      void options.serve(conn).catch(() => {}).finally(() => {
        open.delete(conn);
        const n = (perAddress.get(address) ?? 1) - 1;
        if (n <= 0) perAddress.delete(address);
        else perAddress.set(address, n);
        _close(conn);
      });
    }
  };
  return {
    stats: () => ({ open: open.size, ...stats }),
    connections: () => [...open],
    done: run(),
  };
}

function _close(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
