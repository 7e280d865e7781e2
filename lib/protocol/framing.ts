/**
 * Cutting a byte stream into QHCP/1 frames: a 4-byte big-endian length L
 * (1 <= L <= 65536), then L bytes of payload. Pure; a bad length is a
 * {@linkcode CodecError} as soon as its header is in.
 *
 * @module
 */

import { CodecError } from "./errors.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME_LENGTH } from "./wire.ts";

/**
 * Incremental deframer for a byte stream. Push chunks as they arrive, then
 * pull complete payloads with {@linkcode FrameDecoder.next}. A bad length is
 * reported as soon as its 4 header bytes are in, before any payload is
 * buffered, so a peer cannot make us hold more than one maximal frame.
 *
 * @example
 * ```ts
 * import { FrameDecoder } from "./framing.ts";
 * const frames = new FrameDecoder();
 * frames.push(new Uint8Array([0, 0, 0, 2, 123]));
 * frames.next(); // null: one byte of the payload is still missing
 * frames.push(new Uint8Array([125]));
 * const payload = frames.next(); // Uint8Array of "{}"
 * ```
 */
export class FrameDecoder {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #failed: CodecError | undefined;

  /** Bytes received and not yet returned as a payload. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Appends received bytes. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * Returns the next complete payload, or null when more bytes are needed.
   *
   * @throws {CodecError} `BAD_FRAME` when the next length is 0 or exceeds
   * {@linkcode MAX_FRAME_LENGTH}; the decoder stays failed afterwards.
   */
  next(): Uint8Array | null {
    if (this.#failed) throw this.#failed;
    if (this.#buffered < FRAME_HEADER_LENGTH) return null;
    const header = this.#peek(FRAME_HEADER_LENGTH);
    const length = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_LENGTH).getUint32(0);
    if (length === 0 || length > MAX_FRAME_LENGTH) {
      this.#failed = new CodecError(
        "BAD_FRAME",
        "remote",
        length === 0
          ? "Cannot decode frame: length 0 is below 1"
          : `Cannot decode frame: length ${length} exceeds ${MAX_FRAME_LENGTH}`,
      );
      throw this.#failed;
    }
    if (this.#buffered < FRAME_HEADER_LENGTH + length) return null;
    this.#take(FRAME_HEADER_LENGTH);
    return this.#take(length);
  }

  /** Returns the first `n` buffered bytes without consuming them. */
  #peek(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    this.#coalesce();
    return this.#chunks[0]!.subarray(0, n);
  }

  /** Removes and returns the first `n` buffered bytes. */
  #take(n: number): Uint8Array {
    let first = this.#chunks[0]!;
    if (first.length < n) {
      this.#coalesce();
      first = this.#chunks[0]!;
    }
    const out = first.subarray(0, n);
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
    return out;
  }

  #coalesce(): void {
    const all = new Uint8Array(this.#buffered);
    let offset = 0;
    for (const c of this.#chunks) {
      all.set(c, offset);
      offset += c.length;
    }
    this.#chunks = [all];
  }
}
