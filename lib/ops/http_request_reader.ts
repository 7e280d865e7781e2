/**
 * Reading HTTP/1.1 requests off one connection for `http_server.ts`, within
 * its byte limits: the head (request line and header fields), then the body
 * by Content-Length or chunked transfer coding. What breaks a rule is a
 * {@linkcode _Refusal}; bytes past one request stay buffered for the next.
 *
 * @module
 */

import { concatBytes } from "../util/bytes.ts";

const _decoder = new TextDecoder();
const _CRLF2 = Uint8Array.of(13, 10, 13, 10);
const _TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A request the server refuses before the handler sees it. */
export class _Refusal extends Error {
  /**
   * @param status the status the client is answered with
   * @param message what the client is told
   */
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** A parsed request head. */
export interface _RequestHead {
  method: string;
  target: string;
  headers: Headers;
  /** HTTP/1.1 without `Connection: close`. */
  keepAlive: boolean;
  /** The client sent `Expect: 100-continue`. */
  expectContinue: boolean;
}

/** The buffered reading side of one connection. */
export class _RequestReader {
  readonly #conn: Deno.Conn;
  readonly #limits: { maxHeadBytes: number; maxBodyBytes: number };
  #buf = new Uint8Array(0);
  readonly #readBuf = new Uint8Array(16 * 1024);

  /**
   * @param conn the connection to read
   * @param limits largest request head and body, bytes
   */
  constructor(conn: Deno.Conn, limits: { maxHeadBytes: number; maxBodyBytes: number }) {
    this.#conn = conn;
    this.#limits = limits;
  }

  /** Bytes read but not yet taken by a request. */
  get buffered(): number {
    return this.#buf.length;
  }

  /**
   * The next request head.
   *
   * @throws {_Refusal} 400 or 431 for a bad or oversized head; an Error when the connection ends
   */
  async readHead(): Promise<_RequestHead> {
    let end = _indexOf(this.#buf, _CRLF2);
    while (end < 0) {
      if (this.#buf.length > this.#limits.maxHeadBytes) {
        throw new _Refusal(431, "request head too large");
      }
      if (!await this.fill()) throw new Error("closed before the head was complete");
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

  /**
   * The body, read only up to the limit; undefined without one.
   *
   * @param sendContinue writes `100 Continue`, called before a body the client waits to send
   * @throws {_Refusal} 413 as soon as the body is known to be too large; 400 or 501 for bad framing
   */
  async readBody(
    head: { headers: Headers; expectContinue: boolean },
    sendContinue: () => Promise<void>,
  ): Promise<Uint8Array | undefined> {
    const te = head.headers.get("transfer-encoding");
    const cl = head.headers.get("content-length");
    const max = this.#limits.maxBodyBytes;
    if (te !== null) {
      if (cl !== null) throw new _Refusal(400, "both Content-Length and Transfer-Encoding");
      if (te.trim().toLowerCase() !== "chunked") {
        throw new _Refusal(501, "only chunked transfer coding is supported");
      }
      if (head.expectContinue) await sendContinue();
      return await this.#readChunked(max);
    }
    if (cl === null) return undefined;
    if (!/^\d{1,15}$/.test(cl.trim())) throw new _Refusal(400, "bad Content-Length");
    const length = Number(cl.trim());
    if (length > max) throw new _Refusal(413, `body of ${length} bytes exceeds ${max}`);
    if (head.expectContinue && length > 0) {
      await sendContinue();
    }
    while (this.#buf.length < length) {
      if (!await this.fill()) throw new Error("closed in the body");
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
        if (!await this.fill()) throw new Error("closed in a chunk");
      }
      parts.push(this.#buf.slice(0, size));
      this.#buf = this.#buf.subarray(size + 2);
    }
    return concatBytes(...parts);
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
      if (!await this.fill()) throw new Error("closed in a line");
    }
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async fill(): Promise<boolean> {
    const n = await this.#conn.read(this.#readBuf);
    if (n === null) return false;
    // Two parts: always a copy, which the reused read buffer needs.
    this.#buf = concatBytes(this.#buf, this.#readBuf.subarray(0, n));
    return true;
  }
}

function _indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
