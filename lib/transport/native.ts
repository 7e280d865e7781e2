/**
 * The QUIC session wrapper over Deno's built-in QUIC (quinn and rustls):
 * `Deno.QuicEndpoint` and `Deno.connectQuic`, available under
 * `--unstable-net` (this project's deno.json turns it on). It implements the
 * same {@linkcode Transport} interface as the @matrixai/quic wrapper and runs
 * the same shared suite.
 *
 * What differs from the other stack, measured with Deno 2.9.6:
 * - every connection an LB dials shares one UDP endpoint (one socket), and a
 *   round trip costs about a tenth of @matrixai/quic's;
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
 * @module
 */

import { ALPN, STREAM_REFUSED_CODE } from "../protocol/wire.ts";
import {
  _errorMessage as _message,
  _ioError,
  _ReleasedPorts,
  _StreamChannel,
  _unresolvedError,
} from "./stream_channel.ts";
import {
  type Channel,
  type CloseInfo,
  type DatagramPort,
  type DialOptions,
  type Listener,
  type ListenOptions,
  type Transport,
  TransportError,
} from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";
import { type EndpointLease, EndpointPool } from "./native_pool.ts";

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

// --- server -------------------------------------------------------------------

async function _listen(
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

// --- client -------------------------------------------------------------------

async function _dial(
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

// --- channel ------------------------------------------------------------------

/** Bytes per read of a control stream; QHCP frames are a few hundred bytes. */
const _READ_BUFFER = 16 * 1024;

class _NativeChannel extends _StreamChannel {
  // Dropped once closed: quinn keeps the socket while anything refers to them.
  #conn: Deno.QuicConn | undefined;
  override readonly datagrams: DatagramPort;
  #reader: ReadableStreamBYOBReader | undefined;
  /**
   * Reused for every read: the default reader allocates a fresh 64 KiB
   * buffer per read, which at a thousand checks a second cost a third of
   * the LB's resident memory.
   */
  #readBuffer: ArrayBuffer = new ArrayBuffer(_READ_BUFFER);

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

/** A connection's datagrams; `conn` is undefined once it closed. */
class _NativeDatagrams implements DatagramPort {
  constructor(readonly conn: () => Deno.QuicConn | undefined) {}

  get maxSize(): number {
    return this.conn()?.maxDatagramSize ?? 0;
  }

  send(data: Uint8Array): void {
    const c = this.conn();
    if (!c || data.length > c.maxDatagramSize) return;
    c.sendDatagram(data).catch(() => {});
  }

  async read(): Promise<Uint8Array | null> {
    const c = this.conn();
    if (!c) return null;
    try {
      return await c.readDatagram();
    } catch {
      return null; // the connection closed
    }
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

function _closeQuietly(conn: Deno.QuicConn, code: number, reason: string): void {
  try {
    // The reason travels in the CONNECTION_CLOSE frame: keep it short.
    conn.close({ closeCode: code, reason: reason.slice(0, 200) });
  } catch { /* already closed */ }
}
