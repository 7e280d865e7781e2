/**
 * The QUIC session wrapper over `@matrixai/quic` (quiche). This is the only
 * module that imports the QUIC library; everything else uses the
 * {@linkcode Transport} interface.
 *
 * Traps handled here (measured with @matrixai/quic 1.2.12 under Deno 2.9.6):
 * - the package only works through its default export under Deno;
 * - server-side stream events must be taken from the QUICServer, because the
 *   first stream's event fires before the connection event;
 * - stream aborts and forced closes reject promises nobody awaits inside the
 *   library: every stream boundary here catches, and
 *   {@linkcode isTransportLibraryError} lets the process guard recognise what
 *   still escapes;
 * - certificate verification by IP address is done by our own
 *   `verifyCallback` (see `certs.ts`), never by turning verification off.
 *
 * @module
 */

import quic from "@matrixai/quic";
import loggerModule from "@matrixai/logger";
import { verifyServerChain } from "../security/certs.ts";
import {
  _errorMessage as _message,
  _ioError,
  _ReleasedPorts,
  _StreamChannel,
  _unresolvedError,
} from "./stream_channel.ts";
import { settlesWithin } from "../util/timeout.ts";
import { ALPN, STREAM_REFUSED_CODE } from "../protocol/wire.ts";
import {
  type Channel,
  type DialOptions,
  type Listener,
  type ListenOptions,
  type Transport,
  TransportError,
} from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";

const { QUICServer: _LibServer, QUICClient: _LibClient, QUICSocket, events, errors } = quic;

/**
 * The library rethrows its "internal" client errors from inside an event
 * listener, which escapes as an uncaught exception and ends the process. The
 * common case is harmless: a datagram to a peer that went away fails with
 * `send UNKNOWN` (ECONNREFUSED from an ICMP port unreachable). These
 * subclasses replace the handlers (instance fields, so a subclass field wins
 * before the library registers them) with ones that close the client or
 * server in order instead.
 */
class QUICClient extends _LibClient {
  protected override handleEventQUICClientError = (
    evt: { detail: Error & { description?: string } },
  ) => {
    this.dispatchEvent(new events.EventQUICClientClose({ detail: evt.detail as never }));
  };
}

class QUICServer extends _LibServer {
  protected override handleEventQUICServerError = (evt: { detail: Error }) => {
    this.dispatchEvent(new events.EventQUICServerClose({ detail: evt.detail as never }));
  };

  /**
   * Called by the socket for a datagram of no known connection, with the
   * packet header as a native (N-API) `Header` object. The library reads that
   * object again after awaiting the retry token's HMAC, and under Deno 2.9.6 a
   * native object kept across an event-loop turn can lose its N-API wrap:
   * `napi_unwrap` hands the addon a stale pointer and the process dies of
   * SIGSEGV (or heap corruption) in the addon's `Header` getters. Its fields
   * are copied into a plain object before the library's first await.
   */
  acceptConnection(remoteInfo: unknown, header: _Header, dcid: unknown, data: unknown): unknown {
    if (header.ty !== _INITIAL && header.ty !== _ZERO_RTT) {
      // The library returns at once for these, before any await.
      return _libAcceptConnection.call(this, remoteInfo, header, dcid, data);
    }
    const plain = {
      ty: header.ty,
      version: header.version,
      dcid: header.dcid,
      scid: header.scid,
      token: header.token,
    };
    if (!plain.token?.byteLength) {
      return _libAcceptConnection.call(this, remoteInfo, plain, dcid, data);
    }
    // An Initial carrying our retry token creates the connection, but only
    // after two awaits (token check, connection id HMAC). A retransmission of
    // it arriving meanwhile (a client's PTO while the agent is busy) created a
    // second connection under the same id, which replaced the first in the
    // socket's map: the client finished its handshake with the first, whose
    // packets then went to the second, so the agent never saw the connection
    // (no hello timer) and the client kept it until its idle timeout.
    const key = String(dcid);
    if (this.#accepting.has(key)) return Promise.resolve(undefined);
    this.#accepting.add(key);
    const accepted = _libAcceptConnection.call(this, remoteInfo, plain, dcid, data);
    const done = () => this.#accepting.delete(key);
    (accepted as Promise<unknown>).then(done, done);
    return accepted;
  }

  /** Connection ids whose connection is being created (see acceptConnection). */
  readonly #accepting = new Set<string>();
}

type _Header = {
  ty: number;
  version: number;
  dcid: Uint8Array;
  scid: Uint8Array;
  token?: Uint8Array | null;
};
const _INITIAL = quic.native.quiche.Type.Initial as number;
const _ZERO_RTT = quic.native.quiche.Type.ZeroRTT as number;
/** The library's (internal, undeclared) QUICServer.acceptConnection. */
const _libAcceptConnection = (_LibServer.prototype as unknown as {
  acceptConnection: (...args: unknown[]) => unknown;
}).acceptConnection;

type QUICServerT = InstanceType<typeof _LibServer>;
type QUICSocketT = InstanceType<typeof QUICSocket>;
type QUICClientT = InstanceType<typeof _LibClient>;
type QUICConnectionT = QUICClientT["connection"];
type QUICStreamT = ReturnType<QUICConnectionT["newStream"]>;

// @matrixai/logger is CommonJS; its class is the default export's `default`.
const _loggerNs = loggerModule as unknown as {
  default: new (name: string, level: number) => unknown;
  LogLevel: { WARN: number; ERROR: number; SILENT?: number };
};
const _LoggerClass = _loggerNs.default;
const _libLogger = () => new _LoggerClass("quic", _loggerNs.LogLevel.ERROR) as never;

const _encoder = new TextEncoder();
const _decoder = new TextDecoder();

/** The library's default maps stream codes to `new Error("read 0")`, which escapes as uncaught; ours never throws. */
const _codeToReason = (type: "read" | "write", code: number) =>
  new TransportError("closed", `stream ${type} closed by peer with code ${code}`);
const _reasonToCode = (_type: "read" | "write", reason?: unknown) =>
  reason instanceof _StreamRefusal ? STREAM_REFUSED_CODE : 0;

class _StreamRefusal extends Error {}

/** Longest wait for an orderly stop of a connection or server (they take ~0.3 s). */
const _STOP_MS = 1000;
/** Longest wait for the library to tear a socket down by force. */
const _TEARDOWN_MS = 2000;

type _Stop = { isApp: true; errorCode: number; reason: Uint8Array; force: boolean };

/** Options of {@linkcode createMatrixaiTransport}. */
export interface MatrixaiTransportOptions {
  /**
   * Dial every session from one UDP socket per address family, opened at the
   * first dial and closed by `close()`, instead of the library's default of a
   * socket per session. Default: true. An LB of 1,000 servers then holds a
   * few descriptors instead of a thousand, and the library reads one socket.
   */
  shareClientSocket?: boolean;
}

/**
 * Creates a {@linkcode Transport} over `@matrixai/quic`.
 *
 * @example
 * ```ts
 * import { createMatrixaiTransport } from "./matrixai.ts";
 * const transport = createMatrixaiTransport();
 * const channel = await transport.dial({ host: "127.0.0.1", port: 4243, insecure: true, timeoutMs: 2000 });
 * ```
 */
export function createMatrixaiTransport(options: MatrixaiTransportOptions = {}): Transport {
  const clients = new Set<QUICClientT>();
  const listeners = new Set<Listener>();
  const sockets = options.shareClientSocket === false ? undefined : new _ClientSockets();
  return {
    name: "matrixai",
    // The library keeps quiche's DATAGRAM support switched off and has no API for it.
    datagrams: false,
    listen: async (options, onChannel) => {
      const listener = await _listenRetrying(options, onChannel, () => listeners.delete(listener));
      listeners.add(listener);
      return listener;
    },
    dial: (options) => _dial(options, clients, sockets),
    stats: () => ({ connections: clients.size, listeners: listeners.size }),
    close: async () => {
      await Promise.all([...clients].map(async (c) => {
        if (!await settlesWithin(c.destroy({ force: true }), _TEARDOWN_MS)) await _forceClient(c);
      }));
      clients.clear();
      await sockets?.close();
    },
  };
}

/**
 * Returns true for errors and rejection reasons that come from inside the
 * QUIC library rather than from QHCP code (the process guard downgrades
 * these to warnings).
 */
export function isTransportLibraryError(reason: unknown): boolean {
  if (reason === null || reason === undefined) return true; // `Uncaught (in promise) null` after a forced destroy
  if (reason instanceof TransportError) return true;
  const e = reason as { name?: unknown; stack?: unknown; message?: unknown };
  if (typeof e.name === "string" && e.name.startsWith("ErrorQUIC")) return true;
  if (typeof e.stack === "string" && e.stack.includes("@matrixai")) return true;
  return typeof e.message === "string" && /^(read|write) \d+$/.test(e.message);
}

// --- server -------------------------------------------------------------------

/** Server ports this process closed (see {@linkcode _ReleasedPorts}). */
const _released = new _ReleasedPorts();

/** {@linkcode _listen}, waiting for a port this process just released (the forced socket stop finishes after close()). */
function _listenRetrying(
  options: ListenOptions,
  onChannel: (channel: Channel) => void,
  onClosed: () => void,
): Promise<Listener> {
  return _released.bind(
    options.host,
    options.port,
    async () => {
      const listener: Listener = await _listen(options, onChannel, () => {
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
  options: ListenOptions,
  onChannel: (channel: Channel) => void,
  onClosed: () => void,
): Promise<Listener> {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const hmac = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
    "verify",
  ]);
  const server: QUICServerT = new QUICServer({
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
    codeToReason: _codeToReason,
    reasonToCode: _reasonToCode,
    logger: _libLogger(),
  });
  const channels = new Map<QUICConnectionT, _MatrixChannel>();
  const channelOf = (conn: QUICConnectionT): _MatrixChannel => {
    let ch = channels.get(conn);
    if (!ch) {
      ch = new _MatrixChannel(conn, (stop) => conn.stop(stop), () => Promise.resolve());
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
    const conn = (evt as unknown as { detail: QUICConnectionT }).detail;
    channelOf(conn);
  });
  // Streams are taken from the server: on the connection the first one is missed.
  server.addEventListener(events.EventQUICConnectionStream.name, (evt: Event) => {
    const stream = (evt as unknown as { detail: QUICStreamT }).detail;
    const conn = (stream as unknown as { connection: QUICConnectionT }).connection;
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

// --- client -------------------------------------------------------------------

/** The shared client sockets of one transport, one per address family, opened on first use. */
class _ClientSockets {
  readonly #open = new Map<"0.0.0.0" | "::", Promise<QUICSocketT>>();

  get(host: "0.0.0.0" | "::"): Promise<QUICSocketT> {
    let socket = this.#open.get(host);
    if (!socket) {
      socket = (async () => {
        const s = new QUICSocket({ logger: _libLogger() });
        await s.start({ host, port: 0 });
        return s;
      })();
      this.#open.set(host, socket);
      // A failed start is not remembered: the next dial tries again.
      socket.catch(() => this.#open.delete(host));
    }
    return socket;
  }

  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(open.map(async (p) => {
      const s = await p.catch(() => undefined);
      if (s) await settlesWithin(s.stop({ force: true }), _TEARDOWN_MS);
    }));
  }
}

async function _dial(
  options: DialOptions,
  clients: Set<QUICClientT>,
  sockets: _ClientSockets | undefined,
): Promise<Channel> {
  const target = formatAddress(options.host, options.port);
  const caPem = options.caPem;
  if (!options.insecure && !caPem) {
    throw new TransportError("certificate", `cannot verify ${target}: no CA certificate given`);
  }
  let verdict: string | undefined;
  const verifyCallback = async (certs: Uint8Array[]) => {
    const result = await verifyServerChain(certs, [caPem!], options.host, Date.now());
    if (result.ok) return undefined;
    verdict = result.reason;
    // TLS alert codes offset by 0x100, as quiche expects.
    return result.problem === "expired" ? 0x12d : result.problem === "bad_name" ? 0x12a : 0x130;
  };
  const idle = options.idleTimeoutMs ?? 30_000;
  const localHost = options.host.includes(":") ? "::" : "0.0.0.0";
  let client: QUICClientT;
  try {
    const socket = sockets ? await sockets.get(localHost) : undefined;
    const pending = QUICClient.createQUICClient(
      {
        host: options.host,
        port: options.port,
        ...(socket ? { socket } : { localHost }),
        crypto: {
          ops: {
            randomBytes: async (data: ArrayBuffer) => {
              crypto.getRandomValues(new Uint8Array(data));
              await Promise.resolve();
            },
          },
        },
        config: {
          applicationProtos: [ALPN],
          maxIdleTimeout: idle,
          keepAliveIntervalTime: options.keepAliveMs ?? Math.floor(idle / 3),
          initialMaxStreamsBidi: 0,
          initialMaxStreamsUni: 0,
          initialMaxData: 1 << 20,
          initialMaxStreamDataBidiLocal: 256 << 10,
          initialMaxStreamDataBidiRemote: 256 << 10,
          initialMaxStreamDataUni: 0,
          ...(options.insecure
            ? { verifyPeer: false }
            : { verifyPeer: true, ca: caPem!, verifyCallback: verifyCallback as never }),
        },
        codeToReason: _codeToReason,
        reasonToCode: _reasonToCode,
        logger: _libLogger(),
      },
      { timer: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) },
    );
    client = await pending;
  } catch (e) {
    if (verdict) {
      throw new TransportError("certificate", `certificate of ${target} rejected: ${verdict}`, {
        cause: e,
      });
    }
    if (options.signal?.aborted) {
      throw new TransportError("aborted", `dial ${target} aborted`, { cause: e });
    }
    if (e instanceof errors.ErrorQUICHostInvalid) {
      throw _unresolvedError(options.host, options.port, e);
    }
    throw _dialError(target, e, options.timeoutMs);
  }
  clients.add(client);
  const conn = client.connection;
  // QUICClient.destroy stops the connection (and the client's socket unless shared).
  const channel = new _MatrixChannel(
    conn,
    (stop) => client.destroy(stop),
    () => _forceClient(client),
  );
  void channel.closed.then(() => clients.delete(client));
  try {
    channel._offerStream(conn.newStream("bidi"));
  } catch (e) {
    await channel.abort(0x7, "cannot open control stream");
    throw _ioError(`cannot open control stream to ${target}`, e);
  }
  return channel;
}

function _dialError(target: string, e: unknown, timeoutMs: number): TransportError {
  const text = _message(e);
  if (
    /timed? ?out|ErrorContextsTimedTimeOut|ErrorQUICConnectionIdleTimeout/i.test(text + _name(e))
  ) {
    return new TransportError(
      "timeout",
      `no QUIC handshake with ${target} within ${timeoutMs} ms`,
      { cause: e },
    );
  }
  if (/TLS|Tls/.test(text + _name(e))) {
    return new TransportError("certificate", `TLS handshake with ${target} failed: ${text}`, {
      cause: e,
    });
  }
  return new TransportError("io", `cannot connect to ${target}: ${text}`, { cause: e });
}

// --- channel ------------------------------------------------------------------

class _MatrixChannel extends _StreamChannel {
  readonly #stopFn: (stop: _Stop) => Promise<void>;
  readonly #forceFn: () => Promise<void>;
  #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #streamArrived: (s: QUICStreamT | null) => void = () => {};

  /**
   * @param stop the library's orderly stop (connection or client)
   * @param force what to do when that hangs (close the client's socket)
   */
  constructor(
    conn: QUICConnectionT,
    stop: (stop: _Stop) => Promise<void>,
    force: () => Promise<void>,
  ) {
    super(formatAddress(conn.remoteHost, conn.remotePort));
    this.#stopFn = stop;
    this.#forceFn = force;
    this._arrival = new Promise((resolve) => (this.#streamArrived = resolve));
    conn.addEventListener(events.EventQUICConnectionError.name, (evt: Event) => {
      this.#noteError((evt as unknown as { detail: unknown }).detail);
    });
    const finish = () => {
      this.#streamArrived(null);
      this._finish();
    };
    conn.closedP.then(finish, finish);
  }

  /** Receives a stream opened on this connection; all but the first are refused. */
  _offerStream(stream: QUICStreamT): void {
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

type _Socket = { stop(o: { force: boolean }): Promise<void> };

/**
 * A client whose orderly stop hung: with a socket of its own, close that
 * socket by force; on a shared socket, only take its connection off the
 * socket's routing table, so that the other sessions carry on.
 */
async function _forceClient(client: QUICClientT): Promise<void> {
  const inner = client as unknown as {
    isSocketShared?: boolean;
    socket: { connectionMap: { delete(id: unknown): void } };
  };
  if (!inner.isSocketShared) return await _forceSocket(client);
  inner.socket.connectionMap.delete(client.connection.connectionId);
}

/**
 * Closes the UDP socket under a server or client whose orderly stop is stuck
 * (a connection aborted mid-handshake can wait forever for quiche's draining
 * timer), so that the port is free again: a restarted server must be able to
 * bind it, and an LB must not leak sockets.
 */
async function _forceSocket(owner: unknown): Promise<void> {
  const socket = (owner as { socket?: _Socket }).socket;
  if (socket) await settlesWithin(socket.stop({ force: true }), _TEARDOWN_MS);
}

function _name(e: unknown): string {
  return e instanceof Error ? e.name : "";
}
