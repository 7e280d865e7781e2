/**
 * Pieces shared by the two session state machines: sequence numbers, the
 * order in which a received message is checked, and fatal-error actions.
 *
 * @module
 */

import { type Datagram, decodeDatagram } from "./datagram.ts";
import { CodecError, ProtocolError, type QhcpError } from "./errors.ts";
import {
  CLOSE_CODES,
  type CloseCode,
  type ErrorCode,
  type Message,
  type MessageType,
  type UnsequencedMessage,
} from "./wire.ts";

/** Something a state machine asks its driver to do, or reports to it. */
export interface SendAction {
  kind: "send";
  message: Message;
}

/** Send these bytes in one QUIC DATAGRAM frame (a negotiated extension, §10). */
export interface DatagramAction {
  kind: "datagram";
  bytes: Uint8Array;
}

/** Close the QUIC connection with this application code. */
export interface CloseAction {
  kind: "close";
  code: CloseCode;
  /** Human text put in CONNECTION_CLOSE and the logs. */
  reason: string;
  /** The breach that caused the close, if any. */
  error?: QhcpError;
}

/** Stamps outgoing sequence numbers and checks incoming ones. */
export class _Sequencer {
  #next = 1;
  #expected = 1;

  /** The `seq` the next sent message will carry. */
  get nextSeq(): number {
    return this.#next;
  }

  /** Returns the message with this sender's next `seq`. */
  stamp(message: UnsequencedMessage): Message {
    return { ...message, seq: this.#next++ } as Message;
  }

  /** Accepts the peer's `seq`, or returns the error when it is out of order. */
  accept(seq: number, type: MessageType): ProtocolError | undefined {
    if (seq !== this.#expected) {
      return new ProtocolError(
        "BAD_MESSAGE",
        "remote",
        `Cannot accept ${type}: seq ${seq} is out of order, expected ${this.#expected}`,
        { seq, messageType: type },
      );
    }
    this.#expected++;
    return undefined;
  }
}

/**
 * Turns a codec failure into the error to report, following the order in
 * which the protocol checks a message: frame, then `type` and `seq`, then
 * whether the type is allowed in this state, then the fields.
 */
export function _classifyInvalid(
  err: CodecError,
  sequencer: _Sequencer,
  accepts: (type: MessageType) => boolean,
): QhcpError {
  if (err.code === "BAD_FRAME" || err.messageType === undefined || err.seq === undefined) {
    return err;
  }
  const outOfOrder = sequencer.accept(err.seq, err.messageType);
  if (outOfOrder) return outOfOrder;
  if (!accepts(err.messageType)) return _unexpected(err.messageType, err.seq, "");
  return err;
}

/**
 * Checks a received message's `seq`, then finds the handler its state has for
 * its type (unless `negotiated` says the session lacks the extension that
 * type needs). Returns the handler, or the error to report when there is none.
 */
export function _route(
  sequencer: _Sequencer,
  message: { type: MessageType; seq: number },
  state: string,
  row: { readonly [T in MessageType]?: unknown },
  negotiated: (type: MessageType) => boolean = () => true,
): unknown {
  const outOfOrder = sequencer.accept(message.seq, message.type);
  if (outOfOrder) return outOfOrder;
  const handler = negotiated(message.type) ? row[message.type] : undefined;
  return handler ?? _unexpected(message.type, message.seq, state);
}

/** The error for a message type that the current state does not accept. */
export function _unexpected(type: MessageType, seq: number, state: string): ProtocolError {
  const where = state ? ` in state ${state}` : "";
  return new ProtocolError(
    "UNEXPECTED_MESSAGE",
    "remote",
    `Cannot accept ${type}${where}: not expected`,
    { seq, messageType: type },
  );
}

/**
 * Sends ERROR for a breach by the peer and closes with the matching code. An
 * ERROR is never answered with an ERROR: when the offending message is one,
 * the session just closes.
 */
export function _fatal(
  sequencer: _Sequencer,
  error: QhcpError,
): (SendAction | CloseAction)[] {
  const close: CloseAction = {
    kind: "close",
    code: _closeCodeFor(error.code),
    reason: error.message,
    error,
  };
  if (error.messageType === "ERROR") return [close];
  const message: UnsequencedMessage = error.seq === undefined
    ? { type: "ERROR", code: error.code, message: error.message }
    : { type: "ERROR", re: error.seq, code: error.code, message: error.message };
  return [{ kind: "send", message: sequencer.stamp(message) }, close];
}

/**
 * The close code after an error with this code. BAD_CONFIG never ends a
 * session by itself; one that does (an unsolicited ERROR BAD_CONFIG) is an
 * unexpected message.
 */
export function _closeCodeFor(code: ErrorCode): CloseCode {
  return code === "BAD_CONFIG" ? CLOSE_CODES.UNEXPECTED_MESSAGE : CLOSE_CODES[code];
}

/**
 * One received QUIC DATAGRAM, checked as both machines check it: `null` to
 * ignore (outside READY, or a record kind from the future), the datagram of
 * the `expected` kind, or the breach: no `datagram` negotiated, malformed, or
 * the kind only this side sends.
 */
export function _acceptDatagram<K extends Datagram["kind"]>(
  bytes: Uint8Array,
  ready: boolean,
  negotiated: boolean,
  expected: K,
): Extract<Datagram, { kind: K }> | null | QhcpError {
  if (!ready) return null;
  if (!negotiated) {
    return new ProtocolError(
      "UNEXPECTED_MESSAGE",
      "remote",
      "Cannot accept a datagram: this session did not negotiate datagram",
    );
  }
  let datagram: Datagram | null;
  try {
    datagram = decodeDatagram(bytes);
  } catch (e) {
    if (e instanceof CodecError) return e;
    throw e;
  }
  if (datagram === null) return null;
  if (datagram.kind !== expected) {
    const sender = datagram.kind === "probe" ? "an LB sends probes" : "a server sends heartbeats";
    return new ProtocolError(
      "UNEXPECTED_MESSAGE",
      "remote",
      `Cannot accept a ${datagram.kind} datagram: only ${sender}`,
    );
  }
  return datagram as Extract<Datagram, { kind: K }>;
}
