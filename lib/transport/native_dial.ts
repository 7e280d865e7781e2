/**
 * The native stack's client side: dialling a server on a pooled endpoint
 * (`Deno.connectQuic` raced against the dial's timeout and signal), opening
 * the control stream, and saying in the other stack's words why a dial failed.
 *
 * @module
 */

import { ALPN } from "../protocol/wire.ts";
import { _errorMessage as _message, _ioError, _unresolvedError } from "./stream_channel.ts";
import { type Channel, type DialOptions, TransportError } from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import type { EndpointLease } from "./native_pool.ts";
import { _closeQuietly, _NativeChannel } from "./native_channel.ts";

/**
 * Dials on the endpoint of `place`, adding the channel to `dialled` until it
 * closes; the place is released when the channel closes or the dial fails.
 *
 * @throws {TransportError} when the connection cannot be set up
 */
export async function _dial(
  options: DialOptions,
  place: EndpointLease,
  dialled: Set<_NativeChannel>,
): Promise<Channel> {
  try {
    const channel = await _dialOn(options, place.endpoint);
    dialled.add(channel);
    void channel.closed.then(() => {
      dialled.delete(channel);
      place.release();
    });
    return channel;
  } catch (e) {
    place.release();
    throw e;
  }
}

async function _dialOn(options: DialOptions, endpoint: Deno.QuicEndpoint): Promise<_NativeChannel> {
  const target = formatAddress(options.host, options.port);
  if (options.insecure) {
    throw new TransportError(
      "certificate",
      `cannot dial ${target} without certificate verification: the native QUIC stack always verifies (give a CA, or use the matrixai stack)`,
    );
  }
  if (!options.caPem) {
    throw new TransportError("certificate", `cannot verify ${target}: no CA certificate given`);
  }
  if (options.signal?.aborted) throw new TransportError("aborted", `dial ${target} aborted`);
  const idle = options.idleTimeoutMs ?? 30_000;
  let connecting: Promise<Deno.QuicConn>;
  try {
    connecting = Deno.connectQuic<false>({
      hostname: options.host,
      port: options.port,
      alpnProtocols: [ALPN],
      caCerts: [options.caPem],
      endpoint,
      maxIdleTimeout: idle,
      keepAliveInterval: options.keepAliveMs ?? Math.floor(idle / 3),
      // The server never opens streams towards the LB.
      maxConcurrentBidirectionalStreams: 0,
      maxConcurrentUnidirectionalStreams: 0,
    });
  } catch (e) {
    if (_isLookupFailure(e)) throw _unresolvedError(options.host, options.port, e);
    throw _ioError(`cannot connect to ${target}`, e);
  }
  const outcome = await _raceDial(connecting, options.timeoutMs, options.signal);
  if (outcome.kind !== "connected") {
    // The handshake may still complete later: close that connection at once.
    connecting.then((c) => _closeQuietly(c, 0x10, "dial gave up"), () => {});
    if (outcome.kind === "timeout") {
      throw new TransportError(
        "timeout",
        `no QUIC handshake with ${target} within ${options.timeoutMs} ms`,
      );
    }
    if (outcome.kind === "aborted") throw new TransportError("aborted", `dial ${target} aborted`);
    if (_isLookupFailure(outcome.error)) {
      throw _unresolvedError(options.host, options.port, outcome.error);
    }
    throw _dialError(target, outcome.error);
  }
  const conn = outcome.conn;
  let stream: Deno.QuicBidirectionalStream;
  try {
    stream = await conn.createBidirectionalStream();
  } catch (e) {
    _closeQuietly(conn, 0x7, "cannot open control stream");
    throw _ioError(`cannot open control stream to ${target}`, e);
  }
  return new _NativeChannel(conn, Promise.resolve(stream));
}

/** Deno's error for a host name that did not resolve. */
function _isLookupFailure(e: unknown): boolean {
  return /failed to lookup address|Name or service not known/i.test(_message(e));
}

type _DialOutcome =
  | { kind: "connected"; conn: Deno.QuicConn }
  | { kind: "failed"; error: unknown }
  | { kind: "timeout" }
  | { kind: "aborted" };

function _raceDial(
  connecting: Promise<Deno.QuicConn>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<_DialOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  return Promise.race<_DialOutcome>([
    connecting.then(
      (conn) => ({ kind: "connected", conn }),
      (error) => ({ kind: "failed", error }),
    ),
    new Promise((resolve) => (timer = setTimeout(() => resolve({ kind: "timeout" }), timeoutMs))),
    new Promise((resolve) => {
      if (!signal) return;
      onAbort = () => resolve({ kind: "aborted" });
      signal.addEventListener("abort", onAbort, { once: true });
    }),
  ]).finally(() => {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  });
}

function _dialError(target: string, e: unknown): TransportError {
  const text = _message(e);
  const certificate = /invalid peer certificate: (.*)$/.exec(text)?.[1];
  if (certificate !== undefined) {
    return new TransportError(
      "certificate",
      `certificate of ${target} rejected: ${_certificateProblem(certificate)}`,
      { cause: e },
    );
  }
  if (/timed out/i.test(text)) {
    return new TransportError("timeout", `no QUIC handshake with ${target}: ${text}`, { cause: e });
  }
  if (/aborted by peer|refused/i.test(text)) {
    return new TransportError("refused", `${target} refused the connection: ${text}`, {
      cause: e,
    });
  }
  return new TransportError("io", `cannot connect to ${target}: ${text}`, { cause: e });
}

/** Says what rustls found wrong with a server certificate in the words the other stack uses. */
function _certificateProblem(rustls: string): string {
  const name = /not valid for name "([^"]+)"; certificate is only valid for (.*)$/.exec(rustls);
  if (name) return `certificate for ${name[2]} does not name ${name[1]}`;
  if (/^(BadSignature|UnknownIssuer)/.test(rustls)) {
    return `certificate does not lead to a trusted CA (rustls: ${rustls})`;
  }
  if (/expired|not valid yet|NotValidYet|Expired/i.test(rustls)) {
    return `certificate has expired or is not yet valid (rustls: ${rustls})`;
  }
  return rustls;
}
