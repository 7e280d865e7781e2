/**
 * The QHCP/1 message codec: pure functions from bytes to typed messages and
 * back. No I/O and no clock; every failure is a {@linkcode CodecError}.
 *
 * A frame is a 4-byte big-endian length L (1 <= L <= 65536) followed by L
 * bytes of UTF-8 JSON holding one object. Failures of that framing are
 * `BAD_FRAME`; a JSON object that is not a valid message is `BAD_MESSAGE`; a
 * HELLO or ACK for another protocol version is `UNSUPPORTED_VERSION`.
 *
 * This file is the envelope (frames, UTF-8, JSON); the checks of a message's
 * fields are in `message_check.ts`, those of a config in `config_check.ts`.
 *
 * @module
 */

import { CodecError } from "./errors.ts";
import { FrameDecoder } from "./framing.ts";
import { describe } from "./json_values.ts";
import { validateMessage } from "./message_check.ts";
import { FRAME_HEADER_LENGTH, MAX_FRAME_LENGTH, type Message } from "./wire.ts";

export { CodecError };
export { FrameDecoder } from "./framing.ts";
export { validateConfigUpdate } from "./config_check.ts";

const _encoder = new TextEncoder();
const _decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Encodes one message as a complete frame (length prefix and JSON payload).
 *
 * Only the fields a message type defines are written, in a fixed order, so
 * stray properties on the input never reach the wire.
 *
 * @throws {CodecError} `BAD_MESSAGE` (side `local`) when the message is not
 * valid or its JSON exceeds {@linkcode MAX_FRAME_LENGTH} bytes.
 *
 * @example
 * ```ts
 * import { encodeMessage } from "./codec.ts";
 * const bytes = encodeMessage({ type: "HEALTH_REQUEST", seq: 2 });
 * // bytes: 00 00 00 21 {"type":"HEALTH_REQUEST","seq":2}
 * ```
 */
export function encodeMessage(message: Message): Uint8Array {
  let canonical: Message;
  try {
    canonical = validateMessage(message as unknown as Record<string, unknown>);
  } catch (e) {
    if (e instanceof CodecError) {
      const why = e.message.replace(/^Cannot (decode|accept) [A-Z_]+: /, "");
      throw new CodecError("BAD_MESSAGE", "local", `Cannot encode ${message.type}: ${why}`);
    }
    throw e;
  }
  const payload = _encoder.encode(JSON.stringify(canonical));
  if (payload.length > MAX_FRAME_LENGTH) {
    throw new CodecError(
      "BAD_MESSAGE",
      "local",
      `Cannot encode ${message.type}: length ${payload.length} exceeds ${MAX_FRAME_LENGTH}`,
    );
  }
  const frame = new Uint8Array(FRAME_HEADER_LENGTH + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, FRAME_HEADER_LENGTH);
  return frame;
}

/**
 * Decodes a frame payload (the bytes after the length prefix) into a message.
 *
 * @throws {CodecError} side `remote`: `BAD_FRAME` when the payload is empty,
 * too long, not UTF-8 or not one JSON object; `BAD_MESSAGE` when the object is
 * not a valid message; `UNSUPPORTED_VERSION` for a HELLO or ACK whose
 * `version` is not 1.
 */
export function decodeMessage(payload: Uint8Array): Message {
  if (payload.length === 0) {
    throw new CodecError("BAD_FRAME", "remote", "Cannot decode frame: length 0 is below 1");
  }
  if (payload.length > MAX_FRAME_LENGTH) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: length ${payload.length} exceeds ${MAX_FRAME_LENGTH}`,
    );
  }
  let text: string;
  try {
    text = _decoder.decode(payload);
  } catch {
    throw new CodecError("BAD_FRAME", "remote", "Cannot decode frame: payload is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: payload is not JSON (${(e as Error).message})`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: payload is JSON ${describe(value)}, expected an object`,
    );
  }
  return validateMessage(value as Record<string, unknown>);
}

/**
 * Decodes exactly one complete frame, length prefix included. Convenient for
 * tests and for datagram-style callers; streams use {@linkcode FrameDecoder}.
 *
 * @throws {CodecError} `BAD_FRAME` when the bytes are not exactly one frame,
 * or any error of {@linkcode decodeMessage}.
 */
export function decodeFrame(bytes: Uint8Array): Message {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  const payload = decoder.next();
  if (payload === null) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: truncated, ${bytes.length} bytes hold no complete frame`,
    );
  }
  if (decoder.buffered > 0) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: ${decoder.buffered} bytes follow the frame`,
    );
  }
  return decodeMessage(payload);
}
