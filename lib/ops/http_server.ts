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
 * Responses carry `Content-Length` when the body is one chunk, otherwise
 * chunked transfer coding; HTTP/1.1 connections are kept alive.
 *
 * @module
 */

import { type AcceptLoop, acceptLoop, type AcceptStats } from "./accept_loop.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { within } from "../util/timeout.ts";

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

const _encoder = new TextEncoder();
const _decoder = new TextDecoder();
const _CRLF2 = Uint8Array.of(13, 10, 13, 10);
const _TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A request the server refuses before the handler sees it. */
class _Refusal extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
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

/** One client connection: requests one after another. */
class _Connection {
  readonly #conn: Deno.Conn;
  readonly #scheme: string;
  readonly #limits: Required<HttpLimits>;
  readonly #handler: HttpServerOptions["handler"];
  readonly #log: Logger;
  #buf = new Uint8Array(0);
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #readBuf = new Uint8Array(16 * 1024);

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
  }

  async serve(): Promise<void> {
    try {
      for (let first = true;; first = false) {
        // The whole head must be in within the head timeout; a kept-alive
        // connection may first sit idle for the idle timeout.
        this.#deadline(
          first || this.#buf.length > 0 ? this.#limits.headTimeoutMs : this.#limits.idleTimeoutMs,
        );
        if (!first && this.#buf.length === 0) {
          if (!await this.#fill()) return; // the client closed an idle connection
          this.#deadline(this.#limits.headTimeoutMs);
        }
        let keepAlive: boolean;
        try {
          keepAlive = await this.#exchange();
        } catch (e) {
          if (!(e instanceof _Refusal)) throw e;
          await this.#writeSimple(e.status, e.message);
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
    const head = await this.#readHead();
    const body = await this.#readBody(head);
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
      return await this.#writeResponse(head, response) && head.keepAlive;
    } finally {
      abort.abort();
    }
  }

  async #readHead(): Promise<{
    method: string;
    target: string;
    headers: Headers;
    keepAlive: boolean;
    expectContinue: boolean;
  }> {
    let end = _indexOf(this.#buf, _CRLF2);
    while (end < 0) {
      if (this.#buf.length > this.#limits.maxHeadBytes) {
        throw new _Refusal(431, "request head too large");
      }
      if (!await this.#fill()) throw new Error("closed before the head was complete");
      end = _indexOf(this.#buf, _CRLF2);
    }
    if (end > this.#limits.maxHeadBytes) throw new _Refusal(431, "request head too large");
    const text = _decoder.decode(this.#buf.subarray(0, end));
    this.#buf = this.#buf.subarray(end + 4);
    const lines = text.split("\r\n");
    const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(lines[0] ?? "");
    if (!m) throw new _Refusal(400, "bad request line");
    const headers = new Headers();
    if (lines.length > 101) throw new _Refusal(431, "too many header fields");
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).trim();
      // deno-lint-ignore no-control-regex
      if (colon <= 0 || !_TOKEN.test(name) || /[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
        throw new _Refusal(400, "bad header field");
      }
      try {
        headers.append(name, value);
      } catch {
        throw new _Refusal(400, "bad header field");
      }
    }
    const minor = m[3]!;
    const connection = (headers.get("connection") ?? "").toLowerCase();
    const keepAlive = minor === "1" ? !/\bclose\b/.test(connection) : false;
    return {
      method: m[1]!,
      target: m[2]!,
      headers,
      keepAlive,
      expectContinue: (headers.get("expect") ?? "").toLowerCase() === "100-continue",
    };
  }

  /** The body, read only up to the limit; undefined without one. */
  async #readBody(
    head: { headers: Headers; expectContinue: boolean },
  ): Promise<Uint8Array | undefined> {
    const te = head.headers.get("transfer-encoding");
    const cl = head.headers.get("content-length");
    const max = this.#limits.maxBodyBytes;
    if (te !== null) {
      if (cl !== null) throw new _Refusal(400, "both Content-Length and Transfer-Encoding");
      if (te.trim().toLowerCase() !== "chunked") {
        throw new _Refusal(501, "only chunked transfer coding is supported");
      }
      if (head.expectContinue) await this.#write(_encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
      return await this.#readChunked(max);
    }
    if (cl === null) return undefined;
    if (!/^\d{1,15}$/.test(cl.trim())) throw new _Refusal(400, "bad Content-Length");
    const length = Number(cl.trim());
    if (length > max) throw new _Refusal(413, `body of ${length} bytes exceeds ${max}`);
    if (head.expectContinue && length > 0) {
      await this.#write(_encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    while (this.#buf.length < length) {
      if (!await this.#fill()) throw new Error("closed in the body");
    }
    const body: Uint8Array<ArrayBuffer> = this.#buf.slice(0, length);
    this.#buf = this.#buf.subarray(length);
    return body;
  }

  async #readChunked(max: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const line = await this.#readLine(1024);
      const size = parseInt(line.split(";")[0]!.trim(), 16);
      if (!Number.isFinite(size) || size < 0 || !/^[0-9a-fA-F]+/.test(line)) {
        throw new _Refusal(400, "bad chunk size");
      }
      if (size === 0) {
        // Trailer fields, up to the empty line.
        for (let i = 0; (await this.#readLine(1024)) !== ""; i++) {
          if (i > 32) throw new _Refusal(400, "too many trailer fields");
        }
        break;
      }
      total += size;
      if (total > max) throw new _Refusal(413, `body exceeds ${max} bytes`);
      while (this.#buf.length < size + 2) {
        if (!await this.#fill()) throw new Error("closed in a chunk");
      }
      parts.push(this.#buf.slice(0, size));
      this.#buf = this.#buf.subarray(size + 2);
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  async #readLine(max: number): Promise<string> {
    for (;;) {
      const i = _indexOf(this.#buf, Uint8Array.of(13, 10));
      if (i >= 0) {
        const line = _decoder.decode(this.#buf.subarray(0, i));
        this.#buf = this.#buf.subarray(i + 2);
        return line;
      }
      if (this.#buf.length > max) throw new _Refusal(400, "line too long");
      if (!await this.#fill()) throw new Error("closed in a line");
    }
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    const n = await this.#conn.read(this.#readBuf);
    if (n === null) return false;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(this.#readBuf.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
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

  /** Writes all of `data`; a write that makes no progress in time closes the connection. */
  async #write(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const timer = setTimeout(() => this.#abort(), this.#limits.writeTimeoutMs);
      try {
        off += await this.#conn.write(data.subarray(off));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  async #writeSimple(status: number, message: string): Promise<void> {
    const body = _encoder.encode(JSON.stringify({ error: message }) + "\n");
    await this.#write(_encoder.encode(
      `HTTP/1.1 ${status} ${_reason(status)}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    ));
    await this.#write(body);
  }

  /** Writes the response; false when the connection cannot be kept. */
  async #writeResponse(head: { method: string }, res: Response): Promise<boolean> {
    let lines = `HTTP/1.1 ${res.status} ${res.statusText || _reason(res.status)}\r\n`;
    for (const [k, v] of res.headers) {
      if (k === "content-length" || k === "transfer-encoding" || k === "connection") continue;
      lines += `${k}: ${v}\r\n`;
    }
    const reader = res.body?.getReader();
    try {
      if (res.status === 204 || res.status === 304 || !reader) {
        await this.#write(_encoder.encode(lines + "\r\n"));
        return true;
      }
      // One chunk (every JSON answer): Content-Length. More (an event
      // stream): chunked, written as the chunks come, at the client's pace; a
      // client that went away fails a write (the stream's keep-alive comes
      // every 15 s), one that stops reading meets the write timeout.
      const first = await reader.read();
      const pending = first.done ? undefined : reader.read();
      const soon = pending && await within(pending, 5);
      const second = soon?.ok ? soon.value : undefined;
      const whole = first.done || second?.done;
      const data = first.value ?? new Uint8Array(0);
      if (head.method === "HEAD") {
        // The headers a GET would get, without the body.
        const length = whole ? `content-length: ${data.length}\r\n` : "";
        await this.#write(_encoder.encode(lines + length + "\r\n"));
        return whole === true;
      }
      if (whole) {
        await this.#write(
          _concat(_encoder.encode(lines + `content-length: ${data.length}\r\n\r\n`), data),
        );
        return true;
      }
      await this.#write(_encoder.encode(lines + "transfer-encoding: chunked\r\n\r\n"));
      await this.#writeChunk(data);
      for (let next = second ?? await pending!; !next.done; next = await reader.read()) {
        await this.#writeChunk(next.value);
      }
      await this.#write(_encoder.encode("0\r\n\r\n"));
      return true;
    } finally {
      reader?.cancel().catch(() => {});
    }
  }

  async #writeChunk(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.#write(_concat(_encoder.encode(`${data.length.toString(16)}\r\n`), data, _CRLF));
  }
}

const _CRLF = Uint8Array.of(13, 10);

function _indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function _concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function _reason(status: number): string {
  return _REASONS[status] ?? "Unknown";
}

const _REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};
