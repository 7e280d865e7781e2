/**
 * The one way this code waits for something with a time limit.
 *
 * @module
 */

/** What {@linkcode within} found: the value in time, or nothing. */
export type WithinResult<T> = { ok: true; value: T } | { ok: false };

/**
 * Waits for `p` at most `ms`. A rejection of `p` in time is passed on. When
 * the time runs out first, a value `p` delivers later goes to `onLate` (to
 * close a connection that arrived too late, say).
 *
 * @example
 * ```ts
 * import { within } from "./timeout.ts";
 * const r = await within(Deno.connect({ hostname: "127.0.0.1", port: 9 }).catch(() => undefined), 500, (c) => c?.close());
 * if (!r.ok) console.log("no connection within 500 ms");
 * ```
 */
export function within<T>(
  p: Promise<T>,
  ms: number,
  onLate?: (value: T) => void,
): Promise<WithinResult<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let late = false;
  if (onLate) {
    p.then((v) => {
      if (late) onLate(v);
    }, () => {});
  }
  return Promise.race([
    p.then((value) => ({ ok: true as const, value })),
    new Promise<WithinResult<T>>((resolve) => {
      timer = setTimeout(() => {
        late = true;
        resolve({ ok: false });
      }, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** True when `p` settles (resolved or rejected) within `ms`. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return (await within(p.then(() => {}, () => {}), ms)).ok;
}
