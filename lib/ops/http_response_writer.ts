/**
 * Writing HTTP/1.1 responses to one connection for `http_server.ts`, at the
 * client's pace: a write that makes no progress within the write timeout
 * closes the connection. Responses carry `Content-Length` when the body is
 * one chunk, otherwise chunked transfer coding.
 *
 * @module
 */

import { within } from "../util/timeout.ts";
import { concatBytes } from "../util/bytes.ts";

const _encoder = new TextEncoder();
const _CRLF = Uint8Array.of(13, 10);

/** The writing side of one connection. */
export class _ResponseWriter {
  readonly #conn: Deno.Conn;
  readonly #writeTimeoutMs: number;
  readonly #abort: () => void;

  /**
   * @param conn the connection to write
   * @param writeTimeoutMs a write with no progress for this long calls `abort`, ms
   * @param abort closes the connection
   */
  constructor(conn: Deno.Conn, writeTimeoutMs: number, abort: () => void) {
    this.#conn = conn;
    this.#writeTimeoutMs = writeTimeoutMs;
    this.#abort = abort;
  }

  /** Writes all of `data`; a write that makes no progress in time closes the connection. */
  async write(data: Uint8Array): Promise<void> {
    let off = 0;
    while (off < data.length) {
      const timer = setTimeout(() => this.#abort(), this.#writeTimeoutMs);
      try {
        off += await this.#conn.write(data.subarray(off));
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Writes the interim `100 Continue` for a client waiting to send its body. */
  async writeContinue(): Promise<void> {
    await this.write(_encoder.encode("HTTP/1.1 100 Continue\r\n\r\n"));
  }

  /** Writes `{"error": message}` with `status`, and `Connection: close`. */
  async writeSimple(status: number, message: string): Promise<void> {
    const body = _encoder.encode(JSON.stringify({ error: message }) + "\n");
    await this.write(_encoder.encode(
      `HTTP/1.1 ${status} ${_reason(status)}\r\ncontent-type: application/json; charset=utf-8\r\n` +
        `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    ));
    await this.write(body);
  }

  /** Writes the response; false when the connection cannot be kept. */
  async writeResponse(head: { method: string }, res: Response): Promise<boolean> {
    let lines = `HTTP/1.1 ${res.status} ${res.statusText || _reason(res.status)}\r\n`;
    for (const [k, v] of res.headers) {
      if (k === "content-length" || k === "transfer-encoding" || k === "connection") continue;
      lines += `${k}: ${v}\r\n`;
    }
    const reader = res.body?.getReader();
    try {
      if (res.status === 204 || res.status === 304 || !reader) {
        await this.write(_encoder.encode(lines + "\r\n"));
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
        await this.write(_encoder.encode(lines + length + "\r\n"));
        return whole === true;
      }
      if (whole) {
        await this.write(
          concatBytes(_encoder.encode(lines + `content-length: ${data.length}\r\n\r\n`), data),
        );
        return true;
      }
      await this.write(_encoder.encode(lines + "transfer-encoding: chunked\r\n\r\n"));
      await this.#writeChunk(data);
      for (let next = second ?? await pending!; !next.done; next = await reader.read()) {
        await this.#writeChunk(next.value);
      }
      await this.write(_encoder.encode("0\r\n\r\n"));
      return true;
    } finally {
      reader?.cancel().catch(() => {});
    }
  }

  async #writeChunk(data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    await this.write(concatBytes(_encoder.encode(`${data.length.toString(16)}\r\n`), data, _CRLF));
  }
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
