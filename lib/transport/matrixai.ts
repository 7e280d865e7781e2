/**
 * The QUIC session wrapper over `@matrixai/quic` (quiche). This is the only
 * module that imports the QUIC library; everything else uses the
 * {@linkcode Transport} interface. Its parts get the library's objects from
 * here, as the structural types of `matrixai_lib.ts`: the server side
 * (`matrixai_listen.ts`), the client side (`matrixai_dial.ts`), the channel
 * (`matrixai_channel.ts`) and the forced teardown (`matrixai_teardown.ts`).
 *
 * Traps handled (measured with @matrixai/quic 1.2.12 under Deno 2.9.6):
 * - the package only works through its default export under Deno;
 * - server-side stream events must be taken from the QUICServer, because the
 *   first stream's event fires before the connection event
 *   (`matrixai_listen.ts`);
 * - stream aborts and forced closes reject promises nobody awaits inside the
 *   library: every stream boundary catches, and
 *   {@linkcode isTransportLibraryError} lets the process guard recognise what
 *   still escapes;
 * - certificate verification by IP address is done by our own
 *   `verifyCallback` (see `certs.ts`, `matrixai_dial.ts`), never by turning
 *   verification off.
 *
 * @module
 */

// Full npm specifiers, not names from deno.json's import map: the agent runs
// without the project's config (agentDenoFlags), its versions pinned by deno.lock.
// deno-lint-ignore no-import-prefix
import quic from "npm:@matrixai/quic@1.2.12";
// deno-lint-ignore no-import-prefix
import loggerModule from "npm:@matrixai/logger@3.1.2";
import { settlesWithin } from "../util/timeout.ts";
import { STREAM_REFUSED_CODE } from "../protocol/wire.ts";
import { type Listener, type Transport, TransportError } from "./transport.ts";
import type { _MatrixaiLib, _QuicClient } from "./matrixai_lib.ts";
import { _StreamRefusal } from "./matrixai_channel.ts";
import { _listenRetrying } from "./matrixai_listen.ts";
import { _ClientSockets, _dial } from "./matrixai_dial.ts";
import { _forceClient, _TEARDOWN_MS } from "./matrixai_teardown.ts";

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

type QUICSocketT = InstanceType<typeof QUICSocket>;

// @matrixai/logger is CommonJS; its class is the default export's `default`.
const _loggerNs = loggerModule as unknown as {
  default: new (name: string, level: number) => unknown;
  LogLevel: { WARN: number; ERROR: number; SILENT?: number };
};
const _LoggerClass = _loggerNs.default;
const _libLogger = () => new _LoggerClass("quic", _loggerNs.LogLevel.ERROR) as never;

/** The library's default maps stream codes to `new Error("read 0")`, which escapes as uncaught; ours never throws. */
const _codeToReason = (type: "read" | "write", code: number) =>
  new TransportError("closed", `stream ${type} closed by peer with code ${code}`);
const _reasonToCode = (_type: "read" | "write", reason?: unknown) =>
  reason instanceof _StreamRefusal ? STREAM_REFUSED_CODE : 0;

/** The library as the wrapper's parts use it: our subclasses, stream codes and logger on every object. */
const _lib: _MatrixaiLib = {
  newServer: (options) =>
    new QUICServer({
      ...options,
      codeToReason: _codeToReason,
      reasonToCode: _reasonToCode,
      logger: _libLogger(),
    }),
  newClient: (options, ctx) => {
    const common = {
      codeToReason: _codeToReason,
      reasonToCode: _reasonToCode,
      logger: _libLogger(),
    };
    if (!("socket" in options)) return QUICClient.createQUICClient({ ...options, ...common }, ctx);
    // Every socket a dial passes came from newSocket below.
    const socket = options.socket as QUICSocketT;
    return QUICClient.createQUICClient({ ...options, socket, ...common }, ctx);
  },
  newSocket: () => new QUICSocket({ logger: _libLogger() }),
  events,
  errors,
};

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
  const clients = new Set<_QuicClient>();
  const listeners = new Set<Listener>();
  const sockets = options.shareClientSocket === false ? undefined : new _ClientSockets(_lib);
  return {
    name: "matrixai",
    // The library keeps quiche's DATAGRAM support switched off and has no API for it.
    datagrams: false,
    listen: async (options, onChannel) => {
      const listener = await _listenRetrying(
        _lib,
        options,
        onChannel,
        () => listeners.delete(listener),
      );
      listeners.add(listener);
      return listener;
    },
    dial: (options) => _dial(_lib, options, clients, sockets),
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
