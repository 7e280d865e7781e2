/**
 * The native stack's server side: a listener on its own `Deno.QuicEndpoint`,
 * accepting connections and taking the first bidirectional stream a client
 * opens as its control stream (refusing any later one).
 *
 * @module
 */

import { ALPN, STREAM_REFUSED_CODE } from "../protocol/wire.ts";
import { _ioError, _ReleasedPorts } from "./stream_channel.ts";
import type { Channel, Listener, ListenOptions } from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import { _closeQuietly, _NativeChannel } from "./native_channel.ts";

/**
 * Listens on `options.host:options.port`, calling `onChannel` once per
 * accepted connection; `onClosed` runs when the listener is closed.
 *
 * @throws {TransportError} ("io") when it cannot listen there
 */
export async function _listen(
  options: ListenOptions,
  onChannel: (channel: Channel) => void,
  onClosed: () => void,
): Promise<Listener> {
  const where = formatAddress(options.host, options.port);
  let endpoint: Deno.QuicEndpoint;
  try {
    endpoint = await _released.bind(
      options.host,
      options.port,
      () => new Deno.QuicEndpoint({ hostname: options.host, port: options.port }),
      (e) => e instanceof Deno.errors.AddrInUse,
      // With --expose-gc (the test runner sets it) the old socket goes at once;
      // otherwise wait for V8 to collect it.
      () => (globalThis as { gc?: () => void }).gc?.(),
    );
  } catch (e) {
    throw _ioError(`cannot listen on ${where}`, e);
  }
  let quicListener: Deno.QuicListener;
  try {
    quicListener = endpoint.listen({
      alpnProtocols: [ALPN],
      cert: options.certPem,
      key: options.keyPem,
      maxIdleTimeout: options.idleTimeoutMs ?? 30_000,
      maxConcurrentBidirectionalStreams: options.maxStreamsPerConnection ?? 4,
      maxConcurrentUnidirectionalStreams: 0,
    });
  } catch (e) {
    endpoint.close();
    throw _ioError(`cannot listen on ${where}`, e);
  }
  const channels = new Set<_NativeChannel>();
  // Dropped on close: quinn frees the socket only once nothing refers to it.
  let live: { endpoint: Deno.QuicEndpoint; listener: Deno.QuicListener } | undefined = {
    endpoint,
    listener: quicListener,
  };
  const accept = async (incoming: Deno.QuicIncoming) => {
    let conn: Deno.QuicConn;
    try {
      conn = await incoming.accept();
    } catch {
      return; // the handshake failed, e.g. the client refused our certificate
    }
    if (!live) {
      _closeQuietly(conn, 0x12, "server closing");
      return;
    }
    const channel = new _NativeChannel(conn, _controlStream(conn));
    channels.add(channel);
    void channel.closed.then(() => channels.delete(channel));
    try {
      onChannel(channel);
    } catch {
      void channel.close(0x7, "internal error");
    }
  };
  void (async () => {
    while (live) {
      let incoming: Deno.QuicIncoming;
      try {
        incoming = await live.listener.incoming();
      } catch {
        return; // the listener stopped
      }
      if (live) void accept(incoming);
      else incoming.refuse();
    }
  })();
  const { hostname, port } = endpoint.addr;
  return {
    host: hostname,
    port,
    get connections() {
      return channels.size;
    },
    async close(code = 0x12, reason = "server closing") {
      if (!live) return;
      const { endpoint, listener } = live;
      live = undefined;
      onClosed();
      await Promise.all([...channels].map((ch) => ch.abort(code, reason)));
      try {
        listener.stop();
      } catch { /* already stopped */ }
      try {
        endpoint.close({ closeCode: code, reason });
      } catch { /* already closed */ }
      _released.release(hostname, port);
    },
  };
}

/** Server ports this process closed (see {@linkcode _ReleasedPorts}). */
const _released = new _ReleasedPorts();

/**
 * The first bidirectional stream the peer opens is the control stream; every
 * later one is refused unread. Resolves null if the connection ends first.
 * Deno's API cannot send RESET_STREAM with a code: dropping the stream makes
 * quinn send STOP_SENDING (code 0) and finish our side, which the peer sees
 * as its writes failing and its reads ending.
 */
function _controlStream(conn: Deno.QuicConn): Promise<Deno.QuicBidirectionalStream | null> {
  const reader = conn.incomingBidirectionalStreams.getReader();
  return (async () => {
    const first = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (first.done || !first.value) return null;
    void (async () => {
      for (;;) {
        const next = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (next.done || !next.value) return;
        // QHCP/1 has one control stream: refuse any further one.
        next.value.readable.cancel(STREAM_REFUSED_CODE).catch(() => {});
        next.value.writable.abort(STREAM_REFUSED_CODE).catch(() => {});
      }
    })();
    return first.value;
  })();
}
