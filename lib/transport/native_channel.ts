/**
 * The native stack's `Channel`: one `Deno.QuicConn` and its control
 * stream, read through a reused buffer, and what a connection's end means.
 *
 * @module
 */

import { _errorMessage as _message, _StreamChannel } from "./stream_channel.ts";
import type { CloseInfo, DatagramPort } from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import { _NativeDatagrams } from "./native_datagrams.ts";

/** Bytes per read of a control stream; QHCP frames are a few hundred bytes. */
const _READ_BUFFER = 16 * 1024;

/** A `Channel` over one native connection and its control stream. */
export class _NativeChannel extends _StreamChannel {
  // Dropped once closed: quinn keeps the socket while anything refers to them.
  #conn: Deno.QuicConn | undefined;
  /** The connection's datagrams. */
  override readonly datagrams: DatagramPort;
  #reader: ReadableStreamBYOBReader | undefined;
  /**
   * Reused for every read: the default reader allocates a fresh 64 KiB
   * buffer per read, which at a thousand checks a second cost a third of
   * the LB's resident memory.
   */
  #readBuffer: ArrayBuffer = new ArrayBuffer(_READ_BUFFER);

  /** `stream` resolves to the control stream, or null if the connection ended before one came. */
  constructor(conn: Deno.QuicConn, stream: Promise<Deno.QuicBidirectionalStream | null>) {
    super(formatAddress(conn.remoteAddr.hostname, conn.remoteAddr.port));
    this.#conn = conn;
    this.datagrams = new _NativeDatagrams(() => this.#conn);
    this._arrival = stream.then((s) => {
      if (s && this.#conn) {
        this.#reader = s.readable.getReader({ mode: "byob" });
        this._writer = s.writable.getWriter();
        this.#reader.closed.catch(() => {});
        this._writer.closed.catch(() => {});
        this._readable = true;
      }
    });
    conn.closed.then(
      (info) => this._finish({ by: "remote", code: info.closeCode, reason: info.reason }),
      (e) => this._finish(_closeInfoOf(e)),
    );
  }

  protected async _readChunk(): Promise<Uint8Array | null> {
    const r = await this.#reader!.read(new Uint8Array(this.#readBuffer));
    // The read detached our buffer and hands it back inside the view.
    if (r.value) this.#readBuffer = r.value.buffer as ArrayBuffer;
    if (r.done) return null;
    // The caller keeps what it gets (the frame decoder buffers it): copy out.
    return r.value.slice();
  }

  protected _stopConnection(code: number, reason: string): void {
    this.#reader?.cancel().catch(() => {});
    if (this.#conn) _closeQuietly(this.#conn, code, reason);
  }

  protected override _finish(info?: CloseInfo): void {
    // After a close quinn delivers no more stream data; let go of everything.
    this.#conn = undefined;
    this._arrival = Promise.resolve();
    this.#reader = undefined;
    this._readable = false;
    this._writer = undefined;
    super._finish(info);
  }
}

/** What a rejected `conn.closed` means. */
function _closeInfoOf(e: unknown): CloseInfo {
  const text = _message(e);
  if (/timed out/i.test(text)) {
    return { by: "transport", reason: "idle timeout: the peer stopped answering" };
  }
  if (/reset by peer|stateless reset/i.test(text)) {
    return { by: "remote", reason: `connection reset by peer: ${text}` };
  }
  return { by: "transport", reason: text || "connection lost" };
}

/** Closes `conn` with `code` and `reason`, ignoring a connection already closed. */
export function _closeQuietly(conn: Deno.QuicConn, code: number, reason: string): void {
  try {
    // The reason travels in the CONNECTION_CLOSE frame: keep it short.
    conn.close({ closeCode: code, reason: reason.slice(0, 200) });
  } catch { /* already closed */ }
}
