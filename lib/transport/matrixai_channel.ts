/**
 * The `Channel` of the @matrixai/quic wrapper: one library
 * connection and its control stream, on either side. Further streams are
 * refused, every stream boundary catches (the library rejects promises
 * nobody awaits when a stream is aborted or a connection forced closed), and
 * the library's connection errors become the channel's `CloseInfo`.
 *
 * @module
 */

import { _errorMessage as _message, _StreamChannel } from "./stream_channel.ts";
import { settlesWithin } from "../util/timeout.ts";
import { formatAddress } from "../protocol/address.ts";
import { _STOP_MS } from "./matrixai_teardown.ts";
import type { _MatrixaiLib, _QuicConnection, _QuicStream, _Stop } from "./matrixai_lib.ts";

const _encoder = new TextEncoder();
const _decoder = new TextDecoder();

/** The reason a further stream is refused with (`reasonToCode` maps it to STREAM_REFUSED_CODE). */
export class _StreamRefusal extends Error {}

/** A channel over one library connection's control stream. */
export class _MatrixChannel extends _StreamChannel {
  readonly #errors: _MatrixaiLib["errors"];
  readonly #stopFn: (stop: _Stop) => Promise<void>;
  readonly #forceFn: () => Promise<void>;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #streamArrived: (s: _QuicStream | null) => void = () => {};

  /**
   * @param lib the library's event and error classes
   * @param stop the library's orderly stop (connection or client)
   * @param force what to do when that hangs (close the client's socket)
   */
  constructor(
    lib: Pick<_MatrixaiLib, "events" | "errors">,
    conn: _QuicConnection,
    stop: (stop: _Stop) => Promise<void>,
    force: () => Promise<void>,
  ) {
    super(formatAddress(conn.remoteHost, conn.remotePort));
    this.#errors = lib.errors;
    this.#stopFn = stop;
    this.#forceFn = force;
    this._arrival = new Promise((resolve) => (this.#streamArrived = resolve));
    conn.addEventListener(lib.events.EventQUICConnectionError.name, (evt: Event) => {
      this.#noteError((evt as unknown as { detail: unknown }).detail);
    });
    const finish = () => {
      this.#streamArrived(null);
      this._finish();
    };
    conn.closedP.then(finish, finish);
  }

  /** Receives a stream opened on this connection; all but the first are refused. */
  _offerStream(stream: _QuicStream): void {
    if (this.#reader || this._closing) {
      // QHCP/1 has one control stream: reset any further one.
      try {
        stream.cancel(new _StreamRefusal("only one control stream is allowed"));
      } catch { /* the stream may already be gone */ }
      void stream.closedP.catch(() => {});
      return;
    }
    this.#reader = stream.readable.getReader();
    this._writer = stream.writable.getWriter();
    this.#reader.closed.catch(() => {});
    this._writer.closed.catch(() => {});
    this._readable = true;
    this.#streamArrived(stream);
  }

  protected async _readChunk(): Promise<Uint8Array | null> {
    const r = await this.#reader!.read();
    return r.done ? null : r.value;
  }

  protected async _stopConnection(code: number, reason: string): Promise<void> {
    // Settle our own pending read before the library tears the stream down.
    this.#streamArrived(null);
    this.#reader?.cancel().catch(() => {});
    // The library's stop waits for quiche's draining timer; never let a close hang on it.
    const stopped = await settlesWithin(
      this.#stopFn({
        isApp: true,
        errorCode: code,
        reason: _encoder.encode(reason.slice(0, 200)),
        force: true,
      }),
      _STOP_MS,
    );
    if (!stopped) await this.#forceFn();
  }

  #noteError(detail: unknown): void {
    const errors = this.#errors;
    const data = (detail as { data?: { errorCode?: number; reason?: Uint8Array } }).data;
    const reasonText = data?.reason && data.reason.length ? _decoder.decode(data.reason) : "";
    const code = data?.errorCode === undefined ? {} : { code: data.errorCode };
    if (detail instanceof errors.ErrorQUICConnectionPeerTLS) {
      this._noteClose({
        by: "remote",
        ...code,
        reason: `peer rejected the TLS handshake (alert ${(data?.errorCode ?? 0x100) - 0x100})`,
      });
    } else if (detail instanceof errors.ErrorQUICConnectionPeer) {
      this._noteClose({
        by: "remote",
        ...code,
        reason: reasonText || `closed by peer with code ${data?.errorCode}`,
      });
    } else if (detail instanceof errors.ErrorQUICConnectionIdleTimeout) {
      this._noteClose({ by: "transport", reason: "idle timeout: the peer stopped answering" });
    } else if (detail instanceof errors.ErrorQUICConnectionLocal) {
      this._noteClose({ by: "local", ...code, reason: reasonText || _message(detail) });
    } else {
      this._noteClose({ by: "transport", reason: _message(detail) });
    }
  }
}
