/**
 * A last-resort guard for long-running processes: unhandled rejections and
 * uncaught errors are logged and counted instead of ending the process. The
 * QUIC library throws past its callers in a few measured cases (see the
 * session wrapper); those are logged as warnings, anything else as a bug.
 *
 * @module
 */

import type { Logger } from "./log.ts";

/** Options of {@linkcode installProcessGuard}. */
export interface GuardOptions {
  log: Logger;
  /** Recognises errors raised inside the transport library. */
  isLibraryError: (reason: unknown) => boolean;
  /**
   * Keep the process alive on errors that are not the library's. Default
   * true (production); tests pass false so that a bug fails the test.
   */
  swallowAll?: boolean;
}

/** What the guard has seen. */
export interface ProcessGuard {
  /** Library errors absorbed. */
  readonly library: number;
  /** Other errors (bugs) seen. */
  readonly other: number;
  /** Removes the listeners. */
  uninstall(): void;
}

/** Installs the guard on `globalThis`. */
export function installProcessGuard(options: GuardOptions): ProcessGuard {
  const swallowAll = options.swallowAll ?? true;
  const counts = { library: 0, other: 0 };
  const handle = (kind: string, reason: unknown, event: Event) => {
    if (options.isLibraryError(reason)) {
      counts.library++;
      event.preventDefault();
      options.log.warn(`absorbed ${kind} from the QUIC library`, { error: _describe(reason) });
      return;
    }
    counts.other++;
    options.log.error(`${kind} (bug)`, { error: _describe(reason) });
    if (swallowAll) event.preventDefault();
  };
  const onRejection = (e: PromiseRejectionEvent) => handle("unhandled rejection", e.reason, e);
  const onError = (e: ErrorEvent) => handle("uncaught exception", e.error, e);
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    get library() {
      return counts.library;
    },
    get other() {
      return counts.other;
    },
    uninstall() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

function _describe(reason: unknown): string {
  if (reason instanceof Error) return `${reason.name}: ${reason.message}`;
  return String(reason);
}
