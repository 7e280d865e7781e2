/**
 * The slice of `@matrixai/quic` the wrapper's parts use, as structural
 * types. Only `matrixai.ts` imports the package: it hands the other
 * `matrixai_*.ts` modules a {@linkcode _MatrixaiLib} that makes the
 * library's objects, and these types are all those modules know of them.
 *
 * @module
 */

/** An application close of a connection, client or server. */
export type _Stop = { isApp: true; errorCode: number; reason: Uint8Array; force: boolean };

/** A library object that dispatches events (the library's event classes name them). */
export interface _Evented {
  /** Adds a listener for the event named `type`. */
  addEventListener(type: string, listener: (evt: Event) => void): void;
}

/** A QUICStream. */
export interface _QuicStream {
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** Settles once the stream is gone. */
  readonly closedP: Promise<void>;
  /** Resets both sides of the stream with `reason` (mapped to a code by `reasonToCode`). */
  cancel(reason?: unknown): void;
}

/** A QUICConnection. */
export interface _QuicConnection extends _Evented {
  /** The peer's address. */
  readonly remoteHost: string;
  /** The peer's port. */
  readonly remotePort: number;
  /** This connection's id (the key of the socket's connection map). */
  readonly connectionId: unknown;
  /** Settles once the connection is gone. */
  readonly closedP: Promise<void>;
  /** Closes the connection. */
  stop(stop: _Stop): Promise<void>;
  /** Opens a stream. */
  newStream(type: "bidi"): _QuicStream;
}

/** A QUICClient: one dialled connection (on a socket of its own, or a shared one). */
export interface _QuicClient {
  /** Its connection. */
  readonly connection: _QuicConnection;
  /** Stops its connection, and its socket unless shared. */
  destroy(stop: _Stop | { force: boolean }): Promise<void>;
}

/** A QUICServer. */
export interface _QuicServer extends _Evented {
  /** The bound host. */
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  /** Binds its socket and accepts connections. */
  start(at: { host: string; port: number }): Promise<void>;
  /** Closes every connection and its socket. */
  stop(stop: _Stop): Promise<void>;
}

/** A QUICSocket: one UDP socket. */
export interface _QuicSocket {
  /** Binds it. */
  start(at: { host: string; port: number }): Promise<void>;
  /** Closes it. */
  stop(options: { force: boolean }): Promise<void>;
}

/** The part of the library's `QUICConfig` this wrapper sets. */
export interface _QuicConfig {
  /** Private key, PEM (server). */
  key?: string;
  /** Certificate chain, PEM (server). */
  cert?: string;
  /** CA certificates to verify the peer against, PEM (client). */
  ca?: string;
  /** Whether the peer's certificate is verified. */
  verifyPeer: boolean;
  /** Our own verification of the peer's chain (DER): undefined, or a TLS alert code + 0x100. */
  verifyCallback?: (certs: Uint8Array[], ca: Uint8Array[]) => PromiseLike<number | undefined>;
  /** ALPN protocols. */
  applicationProtos: string[];
  /** Close the connection after this long without a packet, ms. */
  maxIdleTimeout: number;
  /** Send a keep-alive ping at this interval, ms. */
  keepAliveIntervalTime?: number;
  // Flow control: the streams and bytes the peer may open and send.
  initialMaxStreamsBidi: number;
  initialMaxStreamsUni: number;
  initialMaxData: number;
  initialMaxStreamDataBidiLocal: number;
  initialMaxStreamDataBidiRemote: number;
  initialMaxStreamDataUni: number;
}

/** What a server is made with, besides what {@linkcode _MatrixaiLib.newServer} adds. */
export interface _ServerOptions {
  /** The HMAC the library signs retry tokens and connection ids with. */
  crypto: {
    key: ArrayBuffer;
    ops: {
      sign(key: ArrayBuffer, data: ArrayBuffer): Promise<ArrayBuffer>;
      verify(key: ArrayBuffer, data: ArrayBuffer, sig: ArrayBuffer): Promise<boolean>;
    };
  };
  /** QUIC and TLS settings. */
  config: _QuicConfig & { key: string; cert: string };
}

/** What a client is made with, besides what {@linkcode _MatrixaiLib.newClient} adds. */
export type _ClientOptions =
  & {
    host: string;
    port: number;
    crypto: { ops: { randomBytes(data: ArrayBuffer): Promise<void> } };
    config: _QuicConfig;
  }
  & ({ socket: _QuicSocket } | { localHost: string });

/** A constructor, for `instanceof`. */
export type _ErrorClass = abstract new (...args: never[]) => Error;

/** The library's event classes this wrapper listens for (by their `name`). */
export type _QuicEvents = Record<
  | "EventQUICServerConnection"
  | "EventQUICConnectionStream"
  | "EventQUICServerError"
  | "EventQUICConnectionError",
  { name: string }
>;

/** The library's error classes this wrapper tells apart. */
export type _QuicErrors = Record<
  | "ErrorQUICHostInvalid"
  | "ErrorQUICConnectionPeerTLS"
  | "ErrorQUICConnectionPeer"
  | "ErrorQUICConnectionIdleTimeout"
  | "ErrorQUICConnectionLocal",
  _ErrorClass
>;

/**
 * What `matrixai.ts` hands the wrapper's parts: the library's objects, made
 * with the workarounds and settings every one of them needs (stream code
 * mapping, quiet logger).
 */
export interface _MatrixaiLib {
  /** Makes a QUICServer (not started). */
  newServer(options: _ServerOptions): _QuicServer;
  /** QUICClient.createQUICClient: a client once its handshake completed. */
  newClient(
    options: _ClientOptions,
    ctx: { timer: number; signal?: AbortSignal },
  ): Promise<_QuicClient>;
  /** A QUICSocket (not started), for clients to share. */
  newSocket(): _QuicSocket;
  /** Event classes. */
  events: _QuicEvents;
  /** Error classes. */
  errors: _QuicErrors;
}
