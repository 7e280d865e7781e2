/**
 * What `lb.ts` and `server.ts` share as programs: parsing with --help and
 * --version, one-line errors with their exit codes, stop signals and what
 * SIGHUP means, and the QUIC stack with its process guard.
 *
 * @module
 */

import { createQuicTransport } from "../transport/stacks.ts";
import type { QuicStack, Transport } from "../transport/transport.ts";
import { AuthConfigError } from "../security/jwt.ts";
import { DefaultFilesError } from "../security/files.ts";
import { installProcessGuard } from "../util/guard.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../util/version.ts";
import { stderrStream, stdoutStream } from "../util/log_stream.ts";
import { CliError } from "./flags.ts";

/**
 * Prints `program: message` on stderr, after the log lines before it, and
 * returns `code`, for `return fail(...)`.
 */
export function fail(program: string, message: string, code: number): number {
  stderrStream.write(`${program}: ${message}\n`);
  return code;
}

/**
 * Ends the process with `code` once stderr and stdout have taken what was
 * queued for them (at most `timeoutMs`: a reader that stopped reading does
 * not hold the exit).
 */
export async function exitAfterOutput(code: number, timeoutMs = 2000): Promise<never> {
  await Promise.all([stderrStream.flush(timeoutMs), stdoutStream.flush(timeoutMs)]);
  Deno.exit(code);
}

/**
 * Parses the command line; answers --help and --version, and a bad flag with
 * one line and exit 2. Returns the config to run with, or the exit code.
 */
export function parseConfig<C extends { help: boolean; version: boolean }>(
  program: string,
  args: readonly string[],
  parse: (args: readonly string[]) => C,
  usage: (program: string) => string,
): C | number {
  let config: C;
  try {
    config = parse(args);
  } catch (e) {
    if (e instanceof CliError) return fail(program, e.message, 2);
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
 * missing files the operator must provide, 1 for anything else (a port in
 * use, a stack that cannot run here).
 */
export function setupFailed(program: string, e: unknown): number {
  const usage = e instanceof AuthConfigError || e instanceof CliError ||
    e instanceof DefaultFilesError;
  return fail(program, (e as Error).message, usage ? 2 : 1);
}

/**
 * Listens for SIGINT and SIGTERM. `stopped` resolves with the first one (or
 * with what `trigger()` is given); after `escalate()` a further signal ends
 * the process at once (exit 130). Install it first thing, so that a signal
 * during start-up still leads to an orderly shutdown instead of the default kill.
 */
export function stopSignals(): {
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
        // At once, but not without what is already queued for stderr (a moment at most).
        Deno.addSignalListener(s, () => void exitAfterOutput(130, 100));
      }
    },
  };
}

/** What SIGHUP means to a program: reload its discovery sources, stop, or nothing. */
export type HangupAction = "reload" | "stop" | "ignore";

/**
 * Decides what SIGHUP means. Under `nohup` (SIGHUP ignored at start) it never
 * stops the program. In a terminal it is the terminal hanging up: stop, so
 * that a closed terminal does not leave an LB running detached and holding
 * its ports. Without a terminal (a supervisor) it asks for a reload of the
 * servers file and DNS names when the LB follows any, and stops otherwise.
 *
 * @example
 * ```ts
 * import { hangupAction } from "./entry.ts";
 * hangupAction({ following: true, terminal: false, ignoredAtStart: false }); // "reload"
 * hangupAction({ following: true, terminal: true, ignoredAtStart: false }); // "stop"
 * ```
 */
export function hangupAction(
  o: { following: boolean; terminal: boolean; ignoredAtStart: boolean },
): HangupAction {
  if (o.ignoredAtStart) return o.following ? "reload" : "ignore";
  if (o.terminal) return "stop";
  return o.following ? "reload" : "stop";
}

/** True when this process started with SIGHUP ignored (`nohup`); Linux only, else false. */
export function sighupIgnoredAtStart(): boolean {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const mask = /^SigIgn:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return mask !== undefined && (BigInt(`0x${mask}`) & 1n) === 1n; // bit 0: signal 1, SIGHUP
  } catch {
    return false;
  }
}

/** True when any of stdin, stdout and stderr is a terminal. */
export function onTerminal(): boolean {
  return Deno.stdin.isTerminal() || Deno.stdout.isTerminal() || Deno.stderr.isTerminal();
}

/**
 * Installs SIGHUP's meaning (see {@linkcode hangupAction}) and returns the
 * function that removes it. Call before anything else adds a SIGHUP
 * listener: one hides whether the signal was ignored at start.
 */
export function onHangup(
  following: boolean,
  actions: { reload(): void; stop(): void },
): () => void {
  const action = hangupAction({
    following,
    terminal: onTerminal(),
    ignoredAtStart: sighupIgnoredAtStart(),
  });
  if (action === "ignore") return () => {};
  const listener = action === "reload" ? () => actions.reload() : () => actions.stop();
  Deno.addSignalListener("SIGHUP", listener);
  return () => Deno.removeSignalListener("SIGHUP", listener);
}

/** A QUIC stack that cannot run here (the native stack without `--unstable-net`): exit 1. */
export class StackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StackError";
  }
}

/**
 * Creates the transport on `stack` and installs the process guard that knows
 * that stack's escaped errors.
 *
 * @throws {StackError} when the stack cannot run here
 */
export async function startStack(
  stack: QuicStack,
  log: Logger,
  options: { onlyGivenCa?: boolean } = {},
): Promise<Transport> {
  let handle: Awaited<ReturnType<typeof createQuicTransport>>;
  try {
    handle = await createQuicTransport(stack, options);
  } catch (e) {
    throw new StackError(`--quic ${stack}: ${(e as Error).message}`);
  }
  installProcessGuard({ log, isLibraryError: handle.isLibraryError });
  return handle.transport;
}
