/**
 * What `lb.ts` and `server.ts` share as programs: stop signals and one-line
 * error output.
 *
 * @module
 */

const _encoder = new TextEncoder();

/** Writes all of `text` to a stream; a closed pipe is ignored. */
export function _writeAll(out: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = _encoder.encode(text);
  try {
    let off = 0;
    while (off < bytes.length) off += out.writeSync(bytes.subarray(off));
  } catch { /* closed pipe: nothing useful left to do */ }
}

/** Prints `program: message` on stderr and returns `code`, for `return _fail(...)`. */
export function _fail(program: string, message: string, code: number): number {
  _writeAll(Deno.stderr, `${program}: ${message}\n`);
  return code;
}

/**
 * Listens for SIGINT and SIGTERM. `stopped` resolves with the first one;
 * after `escalate()` a further signal ends the process at once (exit 130).
 * Install it first thing, so that a signal during start-up still leads to an
 * orderly shutdown instead of the default kill.
 */
export function _stopSignals(): { stopped: Promise<Deno.Signal>; escalate(): void } {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handlers = signals.map((s) => [s, () => resolve(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  return {
    stopped: promise,
    escalate() {
      for (const [s, h] of handlers) {
        Deno.removeSignalListener(s, h);
        Deno.addSignalListener(s, () => Deno.exit(130));
      }
    },
  };
}
