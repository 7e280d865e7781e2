/**
 * The server side of the @matrixai/quic wrapper: a listener on a QUICServer,
 * with the retry-token HMAC through WebCrypto, the server's QUIC settings,
 * one channel per accepted connection, and a retried bind of a port this
 * process just released.
 *
 * @module
 */

import { _errorMessage as _message, _ioError, _ReleasedPorts } from "./stream_channel.ts";
import { settlesWithin } from "../util/timeout.ts";
import { ALPN } from "../protocol/wire.ts";
import type { Channel, Listener, ListenOptions } from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import { _MatrixChannel } from "./matrixai_channel.ts";
import { _forceSocket, _STOP_MS } from "./matrixai_teardown.ts";
import type { _MatrixaiLib, _QuicConnection, _QuicServer, _QuicStream } from "./matrixai_lib.ts";

const _encoder = new TextEncoder();

/** Server ports this process closed (see {@linkcode _ReleasedPorts}). */
const _released = new _ReleasedPorts();

/** {@linkcode _listen}, waiting for a port this process just released (the forced socket stop finishes after close()). */
export function _listenRetrying(
  lib: _MatrixaiLib,
  options: ListenOptions,
  onChannel: (channel: Channel) => void,
  onClosed: () => void,
): Promise<Listener> {
  return _released.bind(
    options.host,
    options.port,
    async () => {
      const listener: Listener = await _listen(lib, options, onChannel, () => {
        _released.release(listener.host, listener.port);
        onClosed();
      });
      return listener;
    },
    (e) => /EADDRINUSE/.test(_causes(e)),
  );
}

/** The messages of an error and its causes, for matching. */
function _causes(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, i = 0; c && i < 8; c = (c as { cause?: unknown }).cause, i++) {
    parts.push(_message(c));
  }
  return parts.join(" | ");
}

async function _listen(
  lib: _MatrixaiLib,
  options: ListenOptions,
  onChannel: (channel: Channel) => void,
  onClosed: () => void,
): Promise<Listener> {
  const { events } = lib;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
  const server: _QuicServer = lib.newServer({
    crypto: {
      key: key.buffer,
      ops: {
        sign: async (_k: ArrayBuffer, data: ArrayBuffer) =>
          await crypto.subtle.sign("HMAC", hmac, data),
        verify: async (_k: ArrayBuffer, data: ArrayBuffer, sig: ArrayBuffer) =>
          await crypto.subtle.verify("HMAC", hmac, sig, data),
      },
    },
    config: {
      key: options.keyPem,
      cert: options.certPem,
      verifyPeer: false,
      applicationProtos: [ALPN],
      maxIdleTimeout: options.idleTimeoutMs ?? 30_000,
      initialMaxStreamsBidi: options.maxStreamsPerConnection ?? 4,
      initialMaxStreamsUni: 0,
      // One control stream carries at most a few frames of 64 KiB in flight.
      initialMaxData: 1 << 20,
      initialMaxStreamDataBidiRemote: 256 << 10,
      initialMaxStreamDataBidiLocal: 256 << 10,
      initialMaxStreamDataUni: 0,
    },
  });
  const channels = new Map<_QuicConnection, _MatrixChannel>();
  const channelOf = (conn: _QuicConnection): _MatrixChannel => {
    let ch = channels.get(conn);
    if (!ch) {
      ch = new _MatrixChannel(lib, conn, (stop) => conn.stop(stop), () => Promise.resolve());
      channels.set(conn, ch);
      void ch.closed.then(() => channels.delete(conn));
      try {
        onChannel(ch);
      } catch {
        void ch.close(0x7, "internal error");
      }
    }
    return ch;
  };
  server.addEventListener(events.EventQUICServerConnection.name, (evt: Event) => {
    const conn = (evt as unknown as { detail: _QuicConnection }).detail;
    channelOf(conn);
  });
  // Streams are taken from the server: on the connection the first one is missed.
  server.addEventListener(events.EventQUICConnectionStream.name, (evt: Event) => {
    const stream = (evt as unknown as { detail: _QuicStream }).detail;
    const conn = (stream as unknown as { connection: _QuicConnection }).connection;
    channelOf(conn)._offerStream(stream);
  });
  server.addEventListener(events.EventQUICServerError.name, (evt: Event) => {
    // A server error event must be handled or the library rethrows it.
    evt.preventDefault?.();
  });
  try {
    await server.start({ host: options.host, port: options.port });
  } catch (e) {
    throw _ioError(`cannot listen on ${formatAddress(options.host, options.port)}`, e);
  }
  return {
    host: server.host,
    port: server.port,
    get connections() {
      return channels.size;
    },
    async close(code = 0x12, reason = "server closing") {
      onClosed();
      await Promise.all([...channels.values()].map((ch) => ch.abort(code, reason)));
      const stop = server.stop({
        isApp: true,
        errorCode: code,
        reason: _encoder.encode(reason),
        force: true,
      });
      if (!await settlesWithin(stop, _STOP_MS)) await _forceSocket(server);
    },
  };
}
