/**
 * The process's open-file limit. Every TCP connection to the LB's HTTP and
 * agent-check ports costs a descriptor, so the LB sizes its connection caps
 * to fit the limit and says at start what it can hold. Deno raises its soft
 * limit to the hard limit itself when it starts, so there is nothing left
 * to raise without privileges; this module only reads the limit (Linux:
 * /proc/self/limits; elsewhere undefined).
 *
 * @module
 */

/** Soft and hard limits on open files. */
export interface FileLimit {
  soft: number;
  hard: number;
}

/**
 * This process's open-file limits, or undefined where they cannot be read.
 *
 * @example
 * ```ts
 * import { openFileLimit } from "./limits.ts";
 * openFileLimit(); // { soft: 20000, hard: 20000 }
 * ```
 */
export function openFileLimit(): FileLimit | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
    if (!m) return undefined;
    const n = (v: string) => (v === "unlimited" ? Number.MAX_SAFE_INTEGER : Number(v));
    return { soft: n(m[1]!), hard: n(m[2]!) };
  } catch {
    return undefined;
  }
}

/** Descriptors kept free for everything but client connections (QUIC socket, files, DNS). */
export const RESERVED_FILES = 64;

/**
 * Splits the descriptors a process may open between its TCP ports: each
 * port's cap is its wanted cap, or an equal share of what the limit leaves,
 * whichever is smaller.
 *
 * @example
 * ```ts
 * import { fitConnectionCaps } from "./limits.ts";
 * fitConnectionCaps([2048, 1024], { soft: 1024, hard: 1024 }); // [480, 480]
 * ```
 */
export function fitConnectionCaps(
  wanted: readonly number[],
  limit: FileLimit | undefined,
): number[] {
  if (!limit) return [...wanted];
  const share = Math.max(1, Math.floor((limit.soft - RESERVED_FILES) / Math.max(1, wanted.length)));
  return wanted.map((w) => Math.min(w, share));
}

/**
 * The cap per client address on a port that holds `total` connections: the
 * wanted cap, but never more than a quarter of the total, so that one
 * address can never take the whole port from the others.
 */
export function perAddressCap(wanted: number, total: number): number {
  return Math.max(1, Math.min(wanted, Math.floor(total / 4)));
}
