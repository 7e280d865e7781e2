/**
 * The core of an LB session: its options, its state, and the moves that both
 * the driver's calls (`lb_session.ts`) and the server's messages
 * (`lb_transitions.ts`) make on it. One object shared by the two, so that
 * neither reaches into the other.
 *
 * @module
 */

import { _fatal, _Sequencer, type CloseAction, type SendAction } from "./session_rules.ts";
import type { FailedAction, LbAction } from "./lb_actions.ts";
import { _Heartbeats } from "./lb_extensions.ts";
import { _LbRequests } from "./lb_requests.ts";
import type { QhcpError } from "./errors.ts";
import type { Capability, CloseCode, UnsequencedMessage } from "./wire.ts";

/** States of the LB's session with one server. */
export type LbSessionState = "DISCONNECTED" | "CONNECTING" | "HELLO_SENT" | "READY" | "TERMINATING";

/** Options of {@linkcode LbSession}. */
export interface LbSessionOptions {
  /** The LB's id, sent in HELLO and used as the token's `iss`. */
  lbId: string;
  /** Reply timeout for ACK, HEALTH_RESPONSE, CONFIG_ACK and TERMINATE_ACK, in ms. */
  timeoutMs: number;
  /** `interval_ms` announced in HELLO. */
  intervalMs?: number;
  /** Metric names asked for in HELLO. */
  metrics?: readonly string[];
  /** Extensions offered in HELLO (§10). Default none: a plain QHCP/1 HELLO. */
  capabilities?: readonly Capability[];
  /** `heartbeat_ms` asked for in HELLO when `heartbeat` is offered. */
  heartbeatMs?: number;
}

/** The state of one LB session; `reset()` ends a session, `connecting()` starts the next. */
export class _LbCore {
  /** A copy of the caller's; `LbSession`'s setters change it for later requests and HELLOs. */
  readonly options: LbSessionOptions;
  state: LbSessionState = "DISCONNECTED";
  seq = new _Sequencer();
  startedAt = 0;
  helloSeq = 0;
  ackDeadline: number | undefined;
  requests = new _LbRequests();
  terminate: { seq: number; deadline: number } | undefined;
  /** The extensions the server accepted in this session. */
  caps = new Set<Capability>();
  heartbeats = new _Heartbeats();

  constructor(options: LbSessionOptions) {
    this.options = { ...options };
  }

  /** Stamps the message with this session's next `seq`. */
  send(message: UnsequencedMessage): SendAction {
    return { kind: "send", message: this.seq.stamp(message) };
  }

  /** The close action. */
  close(code: CloseCode, reason: string): CloseAction {
    return { kind: "close", code, reason };
  }

  /** Ends the session for a breach by the server. */
  fail(error: QhcpError): LbAction[] {
    const aborted = this.requests.abort(error.message);
    const actions = _fatal(this.seq, error);
    this.reset();
    const failed: FailedAction = {
      kind: "failed",
      failure: { kind: "protocol", code: error.code, message: error.message },
    };
    // The ERROR (if any) goes out before the failure is reported and the close.
    return [...aborted, ...actions.slice(0, -1), failed, ...actions.slice(-1)];
  }

  /** Back to DISCONNECTED, forgetting everything of the session that ended. */
  reset(): void {
    this.state = "DISCONNECTED";
    this.seq = new _Sequencer();
    this.ackDeadline = undefined;
    this.requests = new _LbRequests();
    this.terminate = undefined;
    this.caps = new Set();
    this.heartbeats = new _Heartbeats();
  }
}
