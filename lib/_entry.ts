/**
 * What `lb.ts` and `server.ts` share as programs: the QUIC stack with its
 * process guard, stop signals and one-line error output.
 *
 * @module
 */

import { AuthConfigError } from "./auth.ts";
import { CliError } from "./cli.ts";
import { DefaultFilesError } from "./defaults.ts";
import { installProcessGuard } from "./guard.ts";
import type { Logger } from "./log.ts";
import { createQuicTransport, type QuicStack } from "./quic_stacks.ts";
import type { Transport } from "./transport.ts";
import { VERSION } from "./version.ts";

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
 * Parses the command line; answers --help and --version, and a bad flag with
 * one line and exit 2. Returns the config to run with, or the exit code.
 */
export function _parseConfig<C extends { help: boolean; version: boolean }>(
  program: string,
  args: readonly string[],
  parse: (args: readonly string[]) => C,
  usage: (program: string) => string,
): C | number {
  let config: C;
  try {
    config = parse(args);
  } catch (e) {
    if (e instanceof CliError) return _fail(program, e.message, 2);
    throw e;
  }
  if (config.help) {
    console.log(usage(program));
    return 0;
  }
  if (config.version) {
    console.log(`${program} ${VERSION}`);
    return 0;
  }
  return config;
}

/**
 * A set-up failure as an exit: 2 for bad flags, auth configuration or
 * missing files the operator must provide, 1 for anything else.
 */
export function _setupFailed(program: string, e: unknown): number {
  const usage = e instanceof AuthConfigError || e instanceof CliError ||
    e instanceof DefaultFilesError;
  return _fail(program, (e as Error).message, usage ? 2 : 1);
}

/** Reads the file a flag names; failure is a CliError naming the flag. */
export async function _readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new CliError(`--${flag}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/**
 * Listens for SIGINT and SIGTERM. `stopped` resolves with the first one (or
 * with what `trigger()` is given); after `escalate()` a further signal ends
 * the process at once (exit 130). Install it first thing, so that a signal
 * during start-up still leads to an orderly shutdown instead of the default kill.
 */
export function _stopSignals(): {
  stopped: Promise<Deno.Signal>;
  trigger(signal: Deno.Signal): void;
  escalate(): void;
} {
  const { promise, resolve } = Promise.withResolvers<Deno.Signal>();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const handlers = signals.map((s) => [s, () => resolve(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  return {
    stopped: promise,
    trigger: resolve,
    escalate() {
      for (const [s, h] of handlers) {
        Deno.removeSignalListener(s, h);
        Deno.addSignalListener(s, () => Deno.exit(130));
      }
    },
  };
}

/** What SIGHUP means to the LB: reload its discovery sources, stop, or nothing. */
export type HangupAction = "reload" | "stop" | "ignore";

/**
 * Decides what SIGHUP means. Under `nohup` (SIGHUP ignored at start) it never
 * stops the LB. In a terminal it is the terminal hanging up: stop, so that a
 * closed terminal does not leave an LB running detached and holding its
 * ports. Without a terminal (a supervisor) it asks for a reload of the
 * servers file and DNS names when the LB follows any, and stops otherwise.
 *
 * @example
 * ```ts
 * import { _hangupAction } from "./_entry.ts";
 * _hangupAction({ following: true, terminal: false, ignoredAtStart: false }); // "reload"
 * _hangupAction({ following: true, terminal: true, ignoredAtStart: false }); // "stop"
 * ```
 */
export function _hangupAction(
  o: { following: boolean; terminal: boolean; ignoredAtStart: boolean },
): HangupAction {
  if (o.ignoredAtStart) return o.following ? "reload" : "ignore";
  if (o.terminal) return "stop";
  return o.following ? "reload" : "stop";
}

/** True when this process started with SIGHUP ignored (`nohup`); Linux only, else false. */
export function _sighupIgnoredAtStart(): boolean {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n; // bit 0: signal 1, SIGHUP
  } catch {
    return false;
  }
}

/** True when any of stdin, stdout and stderr is a terminal. */
export function _onTerminal(): boolean {
  return Deno.stdin.isTerminal() || Deno.stdout.isTerminal() || Deno.stderr.isTerminal();
}

/**
 * Creates the transport on `stack` and installs the process guard that knows
 * that stack's escaped errors. Returns a one-line reason instead when the
 * stack cannot run here (the native stack without `--unstable-net`).
 */
export async function _startStack(
  stack: QuicStack,
  log: Logger,
  options: { onlyGivenCa?: boolean } = {},
): Promise<{ transport: Transport } | { error: string }> {
  try {
    const { transport, isLibraryError } = await createQuicTransport(stack, options);
    installProcessGuard({ log, isLibraryError });
    return { transport };
  } catch (e) {
    return { error: `--quic ${stack}: ${(e as Error).message}` };
  }
}
