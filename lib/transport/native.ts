/**
 * The QUIC session wrapper over Deno's built-in QUIC (quinn and rustls):
 * `Deno.QuicEndpoint` and `Deno.connectQuic`, available under
 * `--unstable-net` (this project's deno.json turns it on). It implements the
 * same {@linkcode Transport} interface as the @matrixai/quic wrapper and runs
 * the same shared suite.
 *
 * What differs from the other stack, measured with Deno 2.9.6:
 * - the connections an LB dials share UDP endpoints, 128 to a socket
 *   (`native_pool.ts`), and a round trip costs about a fifth of
 *   @matrixai/quic's;
 * - rustls verifies IP addresses in certificates itself, and the CA given is
 *   trusted in addition to the process's root store (Mozilla's roots by
 *   default): `onlyGivenCa` makes that store the given CA alone;
 * - certificate verification cannot be turned off: `insecure` is refused;
 * - `connectQuic` has no timeout: a dial races a timer, and a connection that
 *   completes after its dial gave up is closed at once;
 * - a writer's close() resolves before the bytes are delivered and a
 *   connection close drops unacknowledged data, so an orderly close waits
 *   (up to its linger) for the peer to finish its side first;
 * - a server's `accept()` rejects when the client refuses our certificate,
 *   and `connectQuic` can throw synchronously (for example an IPv6 peer from
 *   an IPv4-only endpoint): both are caught here.
 *
 * The server side is in `native_listen.ts`, the client side in
 * `native_dial.ts`, the channel in `native_channel.ts` (its datagrams in
 * `native_datagrams.ts`).
 *
 * @module
 */

import { type Listener, type Transport, TransportError } from "./transport.ts";
import { EndpointPool } from "./native_pool.ts";
import { _listen } from "./native_listen.ts";
import { _dial } from "./native_dial.ts";
import type { _NativeChannel } from "./native_channel.ts";

/** Options of {@linkcode createNativeTransport}. */
export interface NativeTransportOptions {
  /**
   * Local address of the endpoints dialled connections use (one UDP socket
   * per 128 connections). Default
   * `"::"` (dual stack, reaches IPv4 and IPv6 servers), or `"0.0.0.0"` where
   * IPv6 is unavailable.
   */
  localHost?: string;
  /**
   * Trust only the CA given to `dial()`. Deno adds a dial's `caCerts` to its
   * root store (Mozilla's roots by default), so a public certificate for a
   * server's name would pass; with this set, the first dial makes the
   * process's root store the given CA alone (DENO_TLS_CA_STORE=system with
   * SSL_CERT_FILE holding the CA), unless the operator set
   * DENO_TLS_CA_STORE. Process-wide, and effective only before the process
   * makes its first TLS client connection: for a program whose only TLS
   * client is this transport (the LB). Default false.
   */
  onlyGivenCa?: boolean;
}

/** True when this Deno exposes its QUIC API (it needs `--unstable-net`). */
export function nativeQuicAvailable(): boolean {
  const d = Deno as unknown as { QuicEndpoint?: unknown; connectQuic?: unknown };
  return typeof d.QuicEndpoint === "function" && typeof d.connectQuic === "function";
}

/**
 * Creates a {@linkcode Transport} over Deno's built-in QUIC.
 *
 * @throws {TransportError} when Deno's QUIC API is not available
 *
 * @example
 * ```ts
 * import { createNativeTransport } from "./native.ts";
 * const transport = createNativeTransport();
 * const caPem = await Deno.readTextFile("certs/ca.pem");
 * const channel = await transport.dial({ host: "127.0.0.1", port: 4243, caPem, timeoutMs: 2000 });
 * ```
 */
export function createNativeTransport(options: NativeTransportOptions = {}): Transport {
  if (!nativeQuicAvailable()) {
    throw new TransportError(
      "io",
      "Deno's QUIC API is not available: run deno with --unstable-net (or use --quic matrixai)",
    );
  }
  const endpoints = new EndpointPool(
    _CONNECTIONS_PER_ENDPOINT,
    () => _clientEndpoint(options.localHost),
  );
  const dialled = new Set<_NativeChannel>();
  const listeners = new Set<Listener>();
  return {
    name: "native",
    datagrams: true,
    listen: async (listenOptions, onChannel) => {
      const listener = await _listen(listenOptions, onChannel, () => listeners.delete(listener));
      listeners.add(listener);
      return listener;
    },
    dial: (dialOptions) => {
      if (options.onlyGivenCa && dialOptions.caPem) _trustOnly(dialOptions.caPem);
      return _dial(dialOptions, endpoints.acquire(), dialled);
    },
    stats: () => ({ connections: dialled.size, listeners: listeners.size }),
    close: async () => {
      await Promise.all([...dialled].map((ch) => ch.abort(0x12, "transport closing")));
      dialled.clear();
      endpoints.close();
    },
  };
}

/** Where the process's root store was pinned to a CA, once. */
let _pinned: "ours" | "operator" | undefined;

/**
 * Makes the given CA bundle Deno's whole root store: Deno reads
 * DENO_TLS_CA_STORE when it builds its store, on the first TLS client
 * connection, and the "system" store reads SSL_CERT_FILE and SSL_CERT_DIR.
 */
function _trustOnly(caPem: string): void {
  if (_pinned) return;
  if (Deno.env.get("DENO_TLS_CA_STORE")) {
    _pinned = "operator";
    return;
  }
  const file = Deno.makeTempFileSync({ prefix: "qhcp-roots-", suffix: ".pem" });
  Deno.writeTextFileSync(file, caPem);
  Deno.env.set("SSL_CERT_FILE", file);
  Deno.env.set("SSL_CERT_DIR", `${file}.nonexistent`);
  Deno.env.set("DENO_TLS_CA_STORE", "system");
  _pinned = "ours";
}

/** Errors from Deno's QUIC code that escaped a caller (the process guard downgrades these). */
export function isNativeQuicError(reason: unknown): boolean {
  if (reason instanceof TransportError) return true;
  const stack = (reason as { stack?: unknown } | null)?.stack;
  return typeof stack === "string" && stack.includes("ext:deno_net/03_quic.js");
}

/**
 * Dialled connections per UDP socket: an LB with more sessions opens more
 * sockets, each with its own receive buffer (see `native_pool.ts`).
 */
const _CONNECTIONS_PER_ENDPOINT = 128;

function _clientEndpoint(localHost: string | undefined): Deno.QuicEndpoint {
  if (localHost !== undefined) return new Deno.QuicEndpoint({ hostname: localHost, port: 0 });
  try {
    return new Deno.QuicEndpoint({ hostname: "::", port: 0 });
  } catch {
    return new Deno.QuicEndpoint({ hostname: "0.0.0.0", port: 0 });
  }
}
