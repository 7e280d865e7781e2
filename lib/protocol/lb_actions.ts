/**
 * What the LB's session machine ({@linkcode LbSession}) reports to its
 * driver: failures with their kind, and the actions of every call.
 *
 * @module
 */

import type { CloseAction, DatagramAction, SendAction } from "./session_rules.ts";
import type {
  AckMessage,
  Capability,
  ErrorCode,
  HealthResponseMessage,
  ServerStatus,
  SessionConfig,
  StatusMessage,
} from "./wire.ts";

/** Why a check or a session failed. */
export type FailureKind =
  /** The QUIC connection could not be set up (unreachable, certificate, ALPN). */
  | "connect"
  /** No reply within the timeout. */
  | "timeout"
  /** The server sent ERROR. */
  | "peer_error"
  /** The server broke the protocol; we sent ERROR. */
  | "protocol"
  /** The server sent TERMINATE. */
  | "terminated"
  /** The connection ended without a TERMINATE exchange. */
  | "closed"
  /** The server answered FAILING: a local check of its application fails. */
  | "failing";

/** A failure with its cause, as shown to operators. */
export interface Failure {
  kind: FailureKind;
  /** Protocol error code, for `peer_error` and `protocol`. */
  code?: ErrorCode;
  /** Human-readable detail. */
  message: string;
  /**
   * Set by the driver for `connect` and `closed` failures: what the transport
   * saw ("certificate", "unreachable", "closed_by_peer", "connection_lost").
   */
  cause?: string;
}

/** The session reached READY. */
export interface LbReadyAction {
  kind: "ready";
  ack: AckMessage;
  /** From `connecting()` to ACK, in ms. */
  setupMs: number;
  /** The extensions the server accepted (empty for a plain QHCP/1 server). */
  capabilities: Capability[];
  /** The server's heartbeat interval, ms, when `heartbeat` was accepted. */
  heartbeatMs?: number;
}

/** A heartbeat arrived (a HEARTBEAT message or a DATAGRAM); duplicates and stale ones are dropped. */
export interface HeartbeatAction {
  kind: "heartbeat";
  counter: number;
  /** Heartbeats skipped since the previous one (lost, or still to come out of order). */
  missed: number;
  status: ServerStatus;
  cpuPercent: number;
  memPercent: number;
}

/** The server pushed a status change (STATUS). */
export interface StatusAction {
  kind: "status";
  message: StatusMessage;
}

/**
 * The outcome of one HEALTH_REQUEST. A reply with status FAILING (the agent
 * runs, its application does not) is a failed check that still carries the
 * reply, so that its metrics and local checks can be shown.
 */
export type CheckAction =
  | { kind: "check"; ok: true; rttMs: number; response: HealthResponseMessage; probe?: true }
  | {
    kind: "check";
    ok: false;
    failure: Failure;
    /** The FAILING reply, with its round trip. */
    reply?: { rttMs: number; response: HealthResponseMessage };
    /** Set when the check was a probe (`LbSession.probe()`). */
    probe?: true;
  };

/** The outcome of one CONFIG_UPDATE. */
export type ConfigAction =
  | { kind: "config"; seq: number; ok: true; config: SessionConfig }
  | {
    kind: "config";
    seq: number;
    ok: false;
    code: ErrorCode | "TIMEOUT" | "CLOSED";
    message: string;
  };

/** The session ended abnormally; a `close` action accompanies it when needed. */
export interface FailedAction {
  kind: "failed";
  failure: Failure;
}

/** The server ended the session with TERMINATE, which was acknowledged. */
export interface TerminatedAction {
  kind: "terminated";
  reason: string;
}

/** Everything an {@linkcode LbSession} can ask of its driver or report to it. */
export type LbAction =
  | SendAction
  | DatagramAction
  | CloseAction
  | HeartbeatAction
  | StatusAction
  | LbReadyAction
  | CheckAction
  | ConfigAction
  | FailedAction
  | TerminatedAction;
