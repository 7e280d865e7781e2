/**
 * What both QUIC session wrappers share: a {@linkcode Channel} over one
 * control stream, with the orderly close (finish our side, give the peer up
 * to a linger to finish its side, then close the connection), the bookkeeping
 * of who closed it and why, and the rule that reads and closes never reject.
 * Each stack supplies how to read a chunk and how to stop its connection.
 *
 * @module
 */

import { type Channel, type CloseInfo, type DatagramPort, TransportError } from "./transport.ts";
import { settlesWithin } from "../util/timeout.ts";
import { formatAddress } from "../protocol/address.ts";

/** A channel over one QUIC connection's control stream. */
export abstract class _StreamChannel implements Channel {
  readonly remoteAddress: string;
  /** Set by a stack that has datagrams. */
  readonly datagrams?: DatagramPort;
  readonly closed: Promise<CloseInfo>;
  #resolveClosed!: (info: CloseInfo) => void;
  #closeInfo: CloseInfo | undefined;
  #closing = false;
  readonly #peerFinishedP: Promise<void>;
  #resolvePeerFinished!: () => void;

  constructor(remoteAddress: string) {
    this.remoteAddress = remoteAddress;
    this.#peerFinishedP = new Promise((resolve) => (this.#resolvePeerFinished = resolve));
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Set by the stack once the control stream is there and can be read directly. */
  protected _readable = false;
  /** The control stream's writer, once there. */
  protected _writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  /** Settles once the control stream arrived (or never came); set by the stack. */
  protected _arrival: Promise<unknown> = Promise.resolve();
  /** The next bytes of the control stream, or null at its end. May reject. */
  protected abstract _readChunk(): Promise<Uint8Array | null>;
  /** Closes the connection at once with `code` and `reason`. Never rejects. */
  protected abstract _stopConnection(code: number, reason: string): Promise<void> | void;

  /** True once a close began, from either side. */
  protected get _closing(): boolean {
    return this.#closing || this.#closeInfo !== undefined;
  }

  async read(): Promise<Uint8Array | null> {
    // The per-check path is the direct read below: no extra promises once the stream is there.
    if (!this._readable && !this.#closeInfo) await Promise.race([this._arrival, this.closed]);
    if (!this._readable) return null;
    try {
      const chunk = await this._readChunk();
      if (chunk === null) this.#resolvePeerFinished();
      return chunk;
    } catch {
      this.#resolvePeerFinished();
      return null;
    }
  }

  async write(data: Uint8Array): Promise<void> {
    if (this._closing) {
      throw new TransportError("closed", `cannot write to ${this.remoteAddress}: closed`);
    }
    if (!this._writer) await Promise.race([this._arrival, this.closed]);
    const writer = this._writer;
    if (!writer || this.#closeInfo) {
      throw new TransportError("closed", `cannot write to ${this.remoteAddress}: closed`);
    }
    try {
      await writer.write(data);
    } catch (e) {
      throw new TransportError(
        "closed",
        `cannot write to ${this.remoteAddress}: ${_errorMessage(e)}`,
        { cause: e },
      );
    }
  }

  async close(code: number, reason: string, lingerMs = 250): Promise<void> {
    if (this._closing) {
      await this.closed;
      return;
    }
    this.#closing = true;
    const writer = this._writer;
    if (writer) {
      // FIN after the bytes already written. Neither stack waits for them to
      // be acknowledged, and a connection close drops what is unacknowledged:
      // give the peer up to the linger to read them and finish its side.
      await settlesWithin(writer.close().catch(() => {}), lingerMs);
      await settlesWithin(this.#peerFinishedP, lingerMs);
    }
    await this.#stop(code, reason);
  }

  async abort(code: number, reason: string): Promise<void> {
    this.#closing = true;
    await this.#stop(code, reason);
  }

  async #stop(code: number, reason: string): Promise<void> {
    if (this.#closeInfo) return;
    this.#closeInfo = { by: "local", code, reason };
    await this._stopConnection(code, reason);
    this._finish();
  }

  /** Records why the connection ended, unless that is known already. */
  protected _noteClose(info: CloseInfo): void {
    this.#closeInfo ??= info;
  }

  /** The connection is gone: settle `closed` (with `info` unless the reason is known). */
  protected _finish(info?: CloseInfo): void {
    this.#closeInfo ??= info ?? { by: "transport", reason: "connection closed" };
    this.#closing = true;
    this.#resolvePeerFinished();
    this.#resolveClosed(this.#closeInfo);
  }
}

/**
 * Server ports a stack's listeners released in this process. A stack's UDP
 * socket can outlive `close()` for a moment (matrixai's forced stop finishes
 * later; quinn frees a socket only once its endpoint is garbage-collected),
 * so a listener re-opened on such a port retries for up to 2 s; a port that
 * someone else holds fails at once.
 */
export class _ReleasedPorts {
  readonly #keys = new Set<string>();

  /** Records that this process closed a listener on host:port. */
  release(host: string, port: number): void {
    this.#keys.add(`${host}:${port}`);
  }

  /**
   * Runs `bind`; while it fails with an error `inUse` accepts on a released
   * port, runs `beforeRetry` and tries again every 50 ms, for up to 2 s.
   */
  async bind<T>(
    host: string,
    port: number,
    bind: () => T | Promise<T>,
    inUse: (e: unknown) => boolean,
    beforeRetry?: () => void,
  ): Promise<T> {
    const key = `${host}:${port}`;
    const deadline = Date.now() + 2000;
    for (;;) {
      try {
        const bound = await bind();
        this.#keys.delete(key);
        return bound;
      } catch (e) {
        if (!inUse(e) || !this.#keys.has(key) || Date.now() > deadline) throw e;
        beforeRetry?.();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }
}

/** An "io" TransportError: `what` failed, with the cause's message. */
export function _ioError(what: string, e: unknown): TransportError {
  return new TransportError("io", `${what}: ${_errorMessage(e)}`, { cause: e });
}

/** The dial error for a host name that did not resolve, in the same words on every stack. */
export function _unresolvedError(host: string, port: number, e: unknown): TransportError {
  return new TransportError(
    "unresolved",
    `cannot connect to ${formatAddress(host, port)}: the name ${
      JSON.stringify(host)
    } did not resolve to an address`,
    { cause: e },
  );
}

/** An error's message (with its cause's, if any) for a TransportError. */
export function _errorMessage(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : "";
    return `${e.message || e.name}${cause}`;
  }
  return String(e);
}
