/**
 * The transition table of the LB's session machine ({@linkcode LbSession}):
 * the message types from the server each state accepts, and what each one
 * does. Apart from the driver's calls so that the reply side reads as one
 * table.
 *
 * @module
 */

import { _closeCodeFor } from "./session_rules.ts";
import type { LbAction, LbReadyAction, StatusAction } from "./lb_actions.ts";
import type { _LbCore, LbSessionState } from "./lb_core.ts";
import { _ackCapabilities } from "./lb_extensions.ts";
import { _badRe } from "./lb_requests.ts";
import { QhcpError } from "./errors.ts";
import {
  type AckMessage,
  CLOSE_CODES,
  type ConfigAckMessage,
  type ErrorMessage,
  type HealthResponseMessage,
  type HeartbeatMessage,
  type MessageOf,
  type MessageType,
  type StatusMessage,
  type TerminateAckMessage,
  type TerminateMessage,
} from "./wire.ts";

/** A handler of one message type, called with the session it is for. */
export type _Handler<T extends MessageType> = (
  s: _LbCore,
  m: MessageOf<T>,
  now: number,
) => LbAction[];

type _Table = { [S in LbSessionState]: { [T in MessageType]?: _Handler<T> } };

/** The transition table: for each state, the message types it accepts. */
export const _TABLE: _Table = {
  DISCONNECTED: {},
  CONNECTING: {},
  HELLO_SENT: {
    ACK: _onAck,
    ERROR: _onError,
    TERMINATE: _onTerminate,
  },
  READY: {
    HEALTH_RESPONSE: _onHealthResponse,
    CONFIG_ACK: _onConfigAck,
    ERROR: _onError,
    TERMINATE: _onTerminate,
    STATUS: _onStatus,
    HEARTBEAT: _onHeartbeat,
  },
  TERMINATING: {
    HEALTH_RESPONSE: _ignore,
    CONFIG_ACK: _ignore,
    STATUS: _ignore,
    HEARTBEAT: _ignore,
    ERROR: _ignore,
    TERMINATE: _onTerminate,
    TERMINATE_ACK: _onTerminateAck,
  },
};

function _onAck(s: _LbCore, m: AckMessage, now: number): LbAction[] {
  if (m.re !== s.helloSeq) return s.fail(_badRe(m, `HELLO ${s.helloSeq}`));
  const caps = _ackCapabilities(m, s.options.capabilities ?? []);
  if (caps instanceof QhcpError) return s.fail(caps);
  s.caps = caps;
  s.state = "READY";
  s.ackDeadline = undefined;
  const ready: LbReadyAction = {
    kind: "ready",
    ack: m,
    setupMs: now - s.startedAt,
    capabilities: [...caps],
  };
  if (m.heartbeat_ms !== undefined) ready.heartbeatMs = m.heartbeat_ms;
  return [ready];
}

function _onStatus(_s: _LbCore, m: StatusMessage): LbAction[] {
  const action: StatusAction = { kind: "status", message: m };
  return [action];
}

function _onHeartbeat(s: _LbCore, m: HeartbeatMessage): LbAction[] {
  return s.heartbeats.take(m.hb, m.status, m.cpu_percent, m.mem_percent);
}

function _onHealthResponse(s: _LbCore, m: HealthResponseMessage, now: number): LbAction[] {
  const settled = s.requests.answerCheck(m, now);
  return settled instanceof QhcpError ? s.fail(settled) : settled;
}

function _onConfigAck(s: _LbCore, m: ConfigAckMessage): LbAction[] {
  const settled = s.requests.answerConfig(m);
  return settled instanceof QhcpError ? s.fail(settled) : settled;
}

function _onError(s: _LbCore, m: ErrorMessage): LbAction[] {
  if (m.code === "BAD_CONFIG" && m.re !== undefined) {
    const settled = s.requests.rejectConfig(m.re, m.message);
    if (settled) return settled;
  }
  const aborted = s.requests.abort(`server sent ERROR ${m.code}`);
  s.reset();
  return [
    ...aborted,
    { kind: "failed", failure: { kind: "peer_error", code: m.code, message: m.message } },
    s.close(_closeCodeFor(m.code), `server sent ERROR ${m.code}`),
  ];
}

function _onTerminate(s: _LbCore, m: TerminateMessage): LbAction[] {
  const aborted = s.requests.abort("server terminated the session");
  const ack = s.send({ type: "TERMINATE_ACK", re: m.seq });
  s.reset();
  const reason = m.reason ?? "";
  return [
    ...aborted,
    ack,
    { kind: "terminated", reason },
    s.close(CLOSE_CODES.NO_ERROR, `terminated by server: ${reason}`),
  ];
}

function _onTerminateAck(s: _LbCore, m: TerminateAckMessage): LbAction[] {
  if (m.re !== s.terminate?.seq) {
    return s.fail(_badRe(m, `TERMINATE ${s.terminate?.seq}`));
  }
  s.reset();
  return [s.close(CLOSE_CODES.NO_ERROR, "terminate acknowledged")];
}

/** Replies still in flight after we sent TERMINATE. */
function _ignore(): LbAction[] {
  return [];
}
