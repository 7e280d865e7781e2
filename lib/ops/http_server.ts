/**
 * The LB's HTTP/1.1 server, over TCP or TLS, serving a `(Request) => Response`
 * handler. Deno.serve gives no hold on connections, so a flood of idle or
 * slow connections could exhaust the port and its accept loop died for good
 * when descriptors ran out; here every resource a client can hold is bounded:
 *
 * - connections at once, and per client address ({@linkcode acceptLoop}),
 *   which also survives failed accepts;
 * - a request head must arrive complete within `headTimeoutMs` of the
 *   connection (or of the previous response) and fit in `maxHeadBytes`, so a
 *   slow-loris client is closed;
 * - a body is read only up to `maxBodyBytes` (413 as soon as it is known to
 *   be larger, chunked or not) and within the head timeout;
 * - a response write that makes no progress for `writeTimeoutMs` closes the
 *   connection, so a client that stops reading a stream is dropped.
 *
 * HTTP/1.1 connections are kept alive. Requests are read by
 * `http_request_reader.ts`, responses written by `http_response_writer.ts`.
 *
 * @module
 */

import { type AcceptLoop, acceptLoop, type AcceptStats } from "./accept_loop.ts";
import { _Refusal, _RequestReader } from "./http_request_reader.ts";
import { _ResponseWriter } from "./http_response_writer.ts";
import { type Logger, silentLogger } from "../util/log.ts";

/** Limits of {@linkcode serveHttp}; each has a default. */
export interface HttpLimits {
  /** Connections at once. Default 1000. */
  maxConnections?: number;
  /** Connections at once from one client address. Default 64. */
  maxConnectionsPerAddress?: number;
  /** A request head must be complete within this, ms. Default 10000. */
  headTimeoutMs?: number;
  /** An idle kept-alive connection is closed after this, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Largest request head, bytes. Default 16384. */
  maxHeadBytes?: number;
  /** Largest request body, bytes. Default 65536. */
  maxBodyBytes?: number;
  /** A response write with no progress for this long closes the connection, ms. Default 30000. */
  writeTimeoutMs?: number;
}

/** Options of {@linkcode serveHttp}. */
export interface HttpServerOptions extends HttpLimits {
  hostname: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Serve HTTPS with this certificate chain and key (PEM). */
  tls?: { cert: string; key: string };
  handler: (req: Request, info: { remoteAddr: Deno.NetAddr }) => Response | Promise<Response>;
  log?: Logger;
}

/** A running server. */
export interface HttpServer {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** Connection counters. */
  stats(): AcceptStats;
  /** Stops accepting, closes every connection, and waits for the loop to end. */
  shutdown(): Promise<void>;
}

/**
 * Starts serving.
 *
 * @throws when the address cannot be bound (in use, not local)
 *
 * @example
 * ```ts
 * import { serveHttp } from "./http_server.ts";
 * const server = serveHttp({ hostname: "127.0.0.1", port: 0, handler: () => new Response("ok") });
 * await (await fetch(`http://127.0.0.1:${server.addr.port}/`)).text(); // "ok"
 * await server.shutdown();
 * ```
 */
export function serveHttp(options: HttpServerOptions): HttpServer {
  const limits: Required<HttpLimits> = {
    maxConnections: options.maxConnections ?? 1000,
    maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? 64,
    headTimeoutMs: options.headTimeoutMs ?? 10_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
    maxHeadBytes: options.maxHeadBytes ?? 16 * 1024,
    maxBodyBytes: options.maxBodyBytes ?? 64 * 1024,
    writeTimeoutMs: options.writeTimeoutMs ?? 30_000,
  };
  const log = options.log ?? silentLogger;
  const listener: Deno.Listener = options.tls
    ? Deno.listenTls({ hostname: options.hostname, port: options.port, ...options.tls })
    : Deno.listen({ hostname: options.hostname, port: options.port });
  const scheme = options.tls ? "https" : "http";
  const loop: AcceptLoop = acceptLoop(listener, {
    what: "HTTP",
    maxConnections: limits.maxConnections,
    maxPerAddress: limits.maxConnectionsPerAddress,
    serve: (conn) => new _Connection(conn, scheme, limits, options.handler, log).serve(),
    log,
  });
  return {
    addr: listener.addr as Deno.NetAddr,
    stats: () => loop.stats(),
    async shutdown() {
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const c of loop.connections()) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await loop.done;
    },
  };
}

/** One client connection: requests one after another, each within its deadlines. */
class _Connection {
  readonly #conn: Deno.Conn;
  readonly #scheme: string;
  readonly #limits: Required<HttpLimits>;
  readonly #handler: HttpServerOptions["handler"];
  readonly #log: Logger;
  readonly #reader: _RequestReader;
  readonly #writer: _ResponseWriter;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    conn: Deno.Conn,
    scheme: string,
    limits: Required<HttpLimits>,
    handler: HttpServerOptions["handler"],
    log: Logger,
  ) {
    this.#conn = conn;
    this.#scheme = scheme;
    this.#limits = limits;
    this.#handler = handler;
    this.#log = log;
    this.#reader = new _RequestReader(conn, limits);
    this.#writer = new _ResponseWriter(conn, limits.writeTimeoutMs, () => this.#abort());
  }

  async serve(): Promise<void> {
    try {
      for (let first = true;; first = false) {
        // The whole head must be in within the head timeout; a kept-alive
        // connection may first sit idle for the idle timeout.
        this.#deadline(
          first || this.#reader.buffered > 0
            ? this.#limits.headTimeoutMs
            : this.#limits.idleTimeoutMs,
        );
        if (!first && this.#reader.buffered === 0) {
          if (!await this.#reader.fill()) return; // the client closed an idle connection
          this.#deadline(this.#limits.headTimeoutMs);
        }
        let keepAlive: boolean;
        try {
          keepAlive = await this.#exchange();
        } catch (e) {
          if (!(e instanceof _Refusal)) throw e;
          await this.#writer.writeSimple(e.status, e.message);
          return;
        }
        if (!keepAlive) return;
      }
    } catch {
      // Closed by the peer, by a deadline, or a write failed: nothing to answer.
    } finally {
      clearTimeout(this.#timer);
      this.#closed = true;
    }
  }

  /** One request and its response; true to keep the connection for another. */
  async #exchange(): Promise<boolean> {
    const head = await this.#reader.readHead();
    const body = await this.#reader.readBody(head, () => this.#writer.writeContinue());
    clearTimeout(this.#timer);
    const remoteAddr = this.#conn.remoteAddr as Deno.NetAddr;
    const host = head.headers.get("host") ?? "localhost";
    let url: URL;
    try {
      url = new URL(head.target, `${this.#scheme}://${host}`);
    } catch {
      throw new _Refusal(400, "bad request target");
    }
    if (!head.target.startsWith("/")) throw new _Refusal(400, "bad request target");
    const abort = new AbortController();
    const request = new Request(url, {
      method: head.method,
      headers: head.headers,
      signal: abort.signal,
      ...(body && head.method !== "GET" && head.method !== "HEAD"
        ? { body: body as Uint8Array<ArrayBuffer> }
        : {}),
    });
    let response: Response;
    try {
      response = await this.#handler(request, { remoteAddr });
    } catch (e) {
      this.#log.error("HTTP handler failed", { error: (e as Error).message });
      response = new Response("internal error\n", { status: 500 });
    }
    try {
      return await this.#writer.writeResponse(head, response) && head.keepAlive;
    } finally {
      abort.abort();
    }
  }

  /** Closes the connection unless the next step is done within `ms`. */
  #deadline(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#abort(), ms);
  }

  #abort(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}
