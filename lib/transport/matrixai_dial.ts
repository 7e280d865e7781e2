/**
 * The client side of the @matrixai/quic wrapper: dialling a server (on a
 * shared socket per address family, or one of the session's own), our own
 * certificate verification (see `certs.ts`; never turned off to reach a
 * server by IP address), the client's QUIC settings, and dial failures told
 * apart as {@linkcode TransportError} kinds.
 *
 * @module
 */

import { verifyServerChain } from "../security/certs.ts";
import { _errorMessage as _message, _ioError, _unresolvedError } from "./stream_channel.ts";
import { settlesWithin } from "../util/timeout.ts";
import { ALPN } from "../protocol/wire.ts";
import { type Channel, type DialOptions, TransportError } from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import { _MatrixChannel } from "./matrixai_channel.ts";
import { _forceClient, _TEARDOWN_MS } from "./matrixai_teardown.ts";
import type { _MatrixaiLib, _QuicClient, _QuicSocket } from "./matrixai_lib.ts";

/** The shared client sockets of one transport, one per address family, opened on first use. */
export class _ClientSockets {
  readonly #lib: _MatrixaiLib;
  readonly #open = new Map<"0.0.0.0" | "::", Promise<_QuicSocket>>();

  constructor(lib: _MatrixaiLib) {
    this.#lib = lib;
  }

  /** The socket for local address `host`, started on first use. */
  get(host: "0.0.0.0" | "::"): Promise<_QuicSocket> {
    let socket = this.#open.get(host);
    if (!socket) {
      socket = (async () => {
        const s = this.#lib.newSocket();
        await s.start({ host, port: 0 });
        return s;
      })();
      this.#open.set(host, socket);
      // A failed start is not remembered: the next dial tries again.
      socket.catch(() => this.#open.delete(host));
    }
    return socket;
  }

  /** Stops every socket (by force). */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(open.map(async (p) => {
      const s = await p.catch(() => undefined);
      if (s) await settlesWithin(s.stop({ force: true }), _TEARDOWN_MS);
    }));
  }
}

/**
 * Dials a server and opens the control stream; the client is in `clients`
 * until its channel closes.
 */
export async function _dial(
  lib: _MatrixaiLib,
  options: DialOptions,
  clients: Set<_QuicClient>,
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
  let client: _QuicClient;
  try {
    const socket = sockets ? await sockets.get(localHost) : undefined;
    const pending = lib.newClient(
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
            : { verifyPeer: true, ca: caPem!, verifyCallback }),
        },
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
    if (e instanceof lib.errors.ErrorQUICHostInvalid) {
      throw _unresolvedError(options.host, options.port, e);
    }
    throw _dialError(target, e, options.timeoutMs);
  }
  clients.add(client);
  const conn = client.connection;
  // QUICClient.destroy stops the connection (and the client's socket unless shared).
  const channel = new _MatrixChannel(
    lib,
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

function _name(e: unknown): string {
  return e instanceof Error ? e.name : "";
}
