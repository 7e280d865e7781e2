/**
 * The small interface between QHCP and a QUIC stack. The rest of the library
 * sees only these types, so a second stack, or an in-memory fake for tests,
 * can stand beside the real one and run the same suite.
 *
 * A {@linkcode Channel} is one QUIC connection together with its control
 * stream: the only stream QHCP/1 uses.
 *
 * @module
 */

/**
 * The QUIC stacks QHCP can run on (named here, away from the modules that
 * load them, so that naming one loads no native code).
 */
export const QUIC_STACKS = ["matrixai", "native"] as const;

/** A QUIC stack: `matrixai` (quiche through @matrixai/quic, the default) or `native` (Deno's quinn). */
export type QuicStack = typeof QUIC_STACKS[number];

/** How a connection ended. */
export interface CloseInfo {
  /** Who closed it: this process, the peer, or the transport (idle timeout, socket error). */
  by: "local" | "remote" | "transport";
  /** The QUIC application error code, when the close carried one. */
  code?: number;
  /** Human-readable reason. */
  reason: string;
}

/** The QUIC DATAGRAM frames (RFC 9221) of one connection. */
export interface DatagramPort {
  /** Largest datagram the peer takes, bytes (0 when it takes none). */
  readonly maxSize: number;
  /**
   * Sends one datagram. Datagrams may be lost; one larger than `maxSize`, or
   * sent once the connection is gone, is dropped. Never throws.
   */
  send(data: Uint8Array): void;
  /** The next datagram from the peer, or null once the connection is gone. Never rejects. */
  read(): Promise<Uint8Array | null>;
}

/** One QUIC connection and its control stream. */
export interface Channel {
  /** The peer's address as `host:port` (IPv6 in brackets). */
  readonly remoteAddress: string;
  /** The connection's datagrams, on a stack that has them (undefined on @matrixai/quic). */
  readonly datagrams?: DatagramPort;
  /**
   * The next bytes from the control stream, or null once the peer finished
   * the stream or the connection closed. Never rejects.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Writes bytes to the control stream.
   *
   * @throws {TransportError} when the stream or connection is closed
   */
  write(data: Uint8Array): Promise<void>;
  /**
   * Closes gracefully: finishes our side of the control stream so written
   * bytes are delivered, waits up to `lingerMs` for the peer to do the same,
   * then closes the connection with `code` and `reason`. Never rejects.
   */
  close(code: number, reason: string, lingerMs?: number): Promise<void>;
  /** Closes the connection at once, dropping unsent bytes. Never rejects. */
  abort(code: number, reason: string): Promise<void>;
  /** Resolves once the connection is gone. Never rejects. */
  readonly closed: Promise<CloseInfo>;
}

/** Options for listening as a QHCP server. */
export interface ListenOptions {
  /** Address to bind, e.g. "0.0.0.0", "::" or "127.0.0.1". */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Server certificate chain, PEM. */
  certPem: string;
  /** Server private key, PEM. */
  keyPem: string;
  /** Close connections silent for this long, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Bidirectional streams a peer may have open at once. Default 4. */
  maxStreamsPerConnection?: number;
}

/** A listening server endpoint. */
export interface Listener {
  /** The bound host. */
  readonly host: string;
  /** The bound port (useful after binding port 0). */
  readonly port: number;
  /** Connections currently open. */
  readonly connections: number;
  /** Stops listening and closes every connection with `code`. */
  close(code?: number, reason?: string): Promise<void>;
}

/** Options for dialing a server. */
export interface DialOptions {
  /** Host name or IP address of the server. */
  host: string;
  /** UDP port of the server. */
  port: number;
  /**
   * CA certificates (PEM bundle) the server's chain must lead to. The server
   * certificate must also name `host`: a DNS name, or an IP address.
   */
  caPem?: string;
  /** Skip certificate verification entirely. */
  insecure?: boolean;
  /** Give up on the handshake after this long, ms. */
  timeoutMs: number;
  /** Close the connection when silent this long, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Send keep-alive pings at this interval, ms. Default idleTimeoutMs / 3. */
  keepAliveMs?: number;
  /** Aborts the dial. */
  signal?: AbortSignal;
}

/** A QUIC stack seen through the interface QHCP needs. */
export interface Transport {
  /** Short name, e.g. "matrixai" or "memory". */
  readonly name: string;
  /** True when its channels carry QUIC DATAGRAM frames (`Channel.datagrams`). */
  readonly datagrams: boolean;
  /** Starts a server; `onChannel` is called once per accepted connection. */
  listen(options: ListenOptions, onChannel: (channel: Channel) => void): Promise<Listener>;
  /**
   * Connects to a server and opens the control stream.
   *
   * @throws {TransportError} when the connection cannot be set up
   */
  dial(options: DialOptions): Promise<Channel>;
  /** What this transport holds right now (for leak checks). */
  stats(): TransportStats;
  /** Releases shared resources (sockets). */
  close(): Promise<void>;
}

/** Resources a transport holds. */
export interface TransportStats {
  /** Dialled connections still open. */
  connections: number;
  /** Listeners still open. */
  listeners: number;
}

/** Why a transport operation failed. */
export type TransportErrorKind =
  /** The server's host name did not resolve to an address. */
  | "unresolved"
  | "timeout"
  | "certificate"
  | "refused"
  | "closed"
  | "aborted"
  | "io";

/** A failure of the transport (not of the QHCP protocol). */
export class TransportError extends Error {
  /** What kind of failure. */
  readonly kind: TransportErrorKind;

  constructor(kind: TransportErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransportError";
    this.kind = kind;
  }
}
