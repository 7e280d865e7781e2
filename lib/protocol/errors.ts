/**
 * Typed errors. Each says which side broke the rules and carries the QHCP
 * error code that the protocol names for the breach.
 *
 * @module
 */

import type { ErrorCode, MessageType } from "./wire.ts";

/** Which peer broke the rules: this process (`local`) or the other end (`remote`). */
export type Side = "local" | "remote";

/** Options for {@linkcode QhcpError}. */
export interface QhcpErrorOptions {
  /** The `seq` of the offending message, when it could be read. */
  seq?: number;
  /** The `type` of the offending message, when it could be read. */
  messageType?: MessageType;
  /** Underlying cause. */
  cause?: unknown;
}

/** Base class of every protocol error raised by this library. */
export class QhcpError extends Error {
  /** The protocol error code for this breach. */
  readonly code: ErrorCode;
  /** Who broke the rules. */
  readonly side: Side;
  /** The `seq` of the offending message, if known. */
  readonly seq: number | undefined;
  /** The `type` of the offending message, if known. */
  readonly messageType: MessageType | undefined;

  constructor(code: ErrorCode, side: Side, message: string, options: QhcpErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.side = side;
    this.seq = options.seq;
    this.messageType = options.messageType;
  }
}

/**
 * Raised by the codec: bytes that are not a QHCP/1 frame or message
 * (`remote`), or a message of ours that cannot be encoded (`local`).
 *
 * @example
 * ```ts
 * import { CodecError, decodeMessage } from "./codec.ts";
 * try {
 *   decodeMessage(new TextEncoder().encode("[]"));
 * } catch (e) {
 *   if (e instanceof CodecError) console.log(e.code); // "BAD_FRAME"
 * }
 * ```
 */
export class CodecError extends QhcpError {}

/** Raised when a well-formed message breaks the session's rules. */
export class ProtocolError extends QhcpError {}

/**
 * A CONFIG_UPDATE's `config` that cannot be applied (code `BAD_CONFIG`), with
 * the field at fault and what was expected of it, so that the LB's HTTP API
 * can say it in its own words from the same check.
 */
export class ConfigError extends CodecError {
  constructor(
    /** The offending field of `config`. */
    readonly field: string,
    /** What the field must be, e.g. "an integer in 100..3600000". */
    readonly expected: string,
    message: string,
    options: QhcpErrorOptions = {},
  ) {
    super("BAD_CONFIG", "remote", message, options);
  }
}
