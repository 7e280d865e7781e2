/**
 * The load balancer's side of one QHCP/1 session with one server, as a pure
 * state machine. Time comes in as an argument; actions come out.
 *
 * ```
 * DISCONNECTED --connecting()--> CONNECTING --connected() / HELLO--> HELLO_SENT --ACK--> READY
 *      ^                              |                                   |                |  check() / HEALTH_REQUEST
 *      +------ connect failed --------+------ ERROR, timeout, bad input --+----------------+  configure() / CONFIG_UPDATE
 *      +------ TERMINATE from server (TERMINATE_ACK sent) ----------------+----------------+
 *      +------ terminate() --> TERMINATING --TERMINATE_ACK or timeout-----------------------+
 * ```
 *
 * Extensions (§10) are offered in HELLO; those the ACK accepts let READY take
 * STATUS and heartbeats (HEARTBEAT messages or DATAGRAMs) and `probe()`.
 *
 * This file holds the driver's calls. What each message from the server does
 * is `lb_transitions.ts`'s; the state both share is `lb_core.ts`'s; replies
 * are paired with requests in `lb_requests.ts`, extensions are negotiated in
 * `lb_extensions.ts`, and the actions are `lb_actions.ts`'s.
 *
 * @module
 */

import { _acceptDatagram, _classifyInvalid, _route } from "./session_rules.ts";
import type { Failure, FailureKind, LbAction } from "./lb_actions.ts";
import { _LbCore, type LbSessionOptions, type LbSessionState } from "./lb_core.ts";
import { _admits, _offer } from "./lb_extensions.ts";
import { type _Handler, _TABLE } from "./lb_transitions.ts";
import { type CodecError, QhcpError } from "./errors.ts";
import { encodeDatagram } from "./datagram.ts";
import {
  type Capability,
  CLOSE_CODES,
  type CloseCode,
  type Message,
  type MessageType,
  PROTOCOL_VERSION,
  type SessionConfig,
  type UnsequencedMessage,
} from "./wire.ts";

export type {
  CheckAction,
  ConfigAction,
  FailedAction,
  Failure,
  FailureKind,
  HeartbeatAction,
  LbAction,
  LbReadyAction,
  StatusAction,
  TerminatedAction,
} from "./lb_actions.ts";
export type { LbSessionOptions, LbSessionState } from "./lb_core.ts";

/**
 * The LB's session with one server. One instance lives as long as the server
 * is monitored; each `connecting()` starts a fresh session with `seq` 1.
 *
 * @example
 * ```ts
 * import { LbSession } from "./lb_session.ts";
 * const s = new LbSession({ lbId: "lb-1", timeoutMs: 2000 });
 * s.connecting(0);
 * s.connected("<jwt>", 5); // [{ kind: "send", message: { type: "HELLO", seq: 1, … } }]
 * ```
 */
export class LbSession {
  readonly #s: _LbCore;
  #probeNonce = 0;

  /** A DISCONNECTED session; `options` is copied. */
  constructor(options: LbSessionOptions) {
    this.#s = new _LbCore(options);
  }

  /** Current state. */
  get state(): LbSessionState {
    return this.#s.state;
  }

  /** True while a HEALTH_REQUEST awaits its answer. */
  get checkPending(): boolean {
    return this.#s.requests.checkPending;
  }

  /** Changes the reply timeout for requests sent from now on. */
  setTimeout(ms: number): void {
    this.#s.options.timeoutMs = ms;
  }

  /** Changes the `interval_ms` announced in later HELLOs. */
  setInterval(ms: number): void {
    this.#s.options.intervalMs = ms;
  }

  /** Changes the metric names asked for in later HELLOs. */
  setMetrics(names: readonly string[]): void {
    this.#s.options.metrics = [...names];
  }

  /** Changes the extensions and heartbeat interval offered in later HELLOs. */
  setExtensions(capabilities: readonly Capability[], heartbeatMs?: number): void {
    this.#s.options.capabilities = [...capabilities];
    if (heartbeatMs === undefined) delete this.#s.options.heartbeatMs;
    else this.#s.options.heartbeatMs = heartbeatMs;
  }

  /** The extensions negotiated in this session (empty before READY and for plain servers). */
  get capabilities(): ReadonlySet<Capability> {
    return this.#s.caps;
  }

  /** When `tick()` must next be called (ms since epoch), or undefined. */
  get deadline(): number | undefined {
    // Read after every message and tick: no array built for three values.
    const s = this.#s;
    return _earliest(_earliest(s.ackDeadline, s.requests.deadline), s.terminate?.deadline);
  }

  /** Returns true when the current state accepts this message type. */
  accepts(type: MessageType): boolean {
    return this.#negotiated(type) && _TABLE[this.#s.state][type] !== undefined;
  }

  /** False for a type of an extension this session did not negotiate. */
  #negotiated = (type: MessageType): boolean => _admits(this.#s.caps, type);

  /** The driver starts dialing. */
  connecting(now: number): LbAction[] {
    this.#s.reset();
    this.#s.state = "CONNECTING";
    this.#s.startedAt = now;
    return [];
  }

  /** The QUIC connection and control stream are up: send HELLO with this token. */
  connected(token: string, now: number): LbAction[] {
    const s = this.#s;
    if (s.state !== "CONNECTING") return [];
    const hello: UnsequencedMessage = {
      type: "HELLO",
      version: PROTOCOL_VERSION,
      token,
      lb_id: s.options.lbId,
      ...(s.options.intervalMs === undefined ? {} : { interval_ms: s.options.intervalMs }),
      ...(s.options.metrics === undefined ? {} : { metrics: [...s.options.metrics] }),
      ..._offer(s.options.capabilities ?? [], s.options.heartbeatMs),
    };
    const send = s.send(hello);
    s.helloSeq = send.message.seq;
    s.state = "HELLO_SENT";
    s.ackDeadline = now + s.options.timeoutMs;
    return [send];
  }

  /** Dialing failed. */
  connectFailed(message: string, _now: number, cause?: string): LbAction[] {
    if (this.#s.state !== "CONNECTING") return [];
    this.#s.reset();
    const failure: Failure = cause === undefined
      ? { kind: "connect", message }
      : { kind: "connect", message, cause };
    return [{ kind: "failed", failure }];
  }

  /**
   * Sends a HEALTH_REQUEST unless one is pending or the session is not READY.
   *
   * @param timeoutMs this check's timeout; default the session's reply timeout
   */
  check(now: number, metrics?: readonly string[], timeoutMs?: number): LbAction[] {
    const s = this.#s;
    if (s.state !== "READY" || s.requests.checkPending) return [];
    const send = s.send(
      metrics === undefined
        ? { type: "HEALTH_REQUEST" }
        : { type: "HEALTH_REQUEST", metrics: [...metrics] },
    );
    s.requests.checkSent(send.message.seq, now, now + (timeoutMs ?? s.options.timeoutMs));
    return [send];
  }

  /**
   * Probes a suspected server: a HEALTH_REQUEST that must be answered within
   * `timeoutMs` (a check already pending is held to that instead), plus a
   * probe DATAGRAM when `datagram` was negotiated. The outcome is a `check`
   * action with `probe` set. Returns [] unless READY.
   */
  probe(now: number, timeoutMs: number): LbAction[] {
    const s = this.#s;
    if (s.state !== "READY") return [];
    const out = s.requests.checkPending ? [] : this.check(now, undefined, timeoutMs);
    s.requests.probe(now + timeoutMs);
    if (s.caps.has("datagram")) out.push(this.probeDatagram());
    return out;
  }

  /** A probe DATAGRAM (the server answers with a heartbeat at once); only with `datagram`. */
  probeDatagram(): LbAction {
    this.#probeNonce = (this.#probeNonce + 1) % 0x1_0000_0000;
    return { kind: "datagram", bytes: encodeDatagram({ kind: "probe", nonce: this.#probeNonce }) };
  }

  /**
   * Sends CONFIG_UPDATE; its outcome arrives later as a `config` action with
   * the `seq` of the returned `send` action. Returns [] unless READY.
   */
  configure(config: Partial<SessionConfig>, now: number): LbAction[] {
    const s = this.#s;
    if (s.state !== "READY") return [];
    const send = s.send({ type: "CONFIG_UPDATE", config: { ...config } });
    s.requests.configSent(send.message.seq, now + s.options.timeoutMs);
    return [send];
  }

  /** Ends the session politely: TERMINATE now, close on TERMINATE_ACK or timeout. */
  terminate(reason: string, now: number): LbAction[] {
    const s = this.#s;
    if (s.state === "READY" || s.state === "HELLO_SENT") {
      const aborted = s.requests.abort("session terminated");
      const send = s.send({ type: "TERMINATE", reason });
      s.state = "TERMINATING";
      s.ackDeadline = undefined;
      s.terminate = { seq: send.message.seq, deadline: now + s.options.timeoutMs };
      return [...aborted, send];
    }
    if (s.state === "CONNECTING") {
      s.reset();
      return [s.close(CLOSE_CODES.GOING_AWAY, reason)];
    }
    return [];
  }

  /**
   * Closes at once without TERMINATE (the server is being marked DOWN or
   * removed). Pending requests are dropped without reporting a failure.
   */
  abandon(code: CloseCode, reason: string): LbAction[] {
    if (this.#s.state === "DISCONNECTED") return [];
    const aborted = this.#s.requests.abort("session closed");
    this.#s.reset();
    return [...aborted, { kind: "close", code, reason }];
  }

  /** Feeds one decoded message from the server. */
  receive(message: Message, now: number): LbAction[] {
    const s = this.#s;
    if (s.state === "DISCONNECTED" || s.state === "CONNECTING") return [];
    const handler = _route(s.seq, message, s.state, _TABLE[s.state], this.#negotiated);
    if (handler instanceof QhcpError) return s.fail(handler);
    return (handler as _Handler<MessageType>)(s, message, now);
  }

  /**
   * Feeds one QUIC DATAGRAM from the server. Outside READY datagrams are
   * ignored (they may overtake the ACK on the stream); in a session without
   * `datagram`, or malformed, one is a breach.
   */
  receiveDatagram(bytes: Uint8Array, _now: number): LbAction[] {
    const s = this.#s;
    const datagram = _acceptDatagram(
      bytes,
      s.state === "READY",
      s.caps.has("datagram"),
      "heartbeat",
    );
    if (datagram instanceof QhcpError) return s.fail(datagram);
    if (datagram === null) return [];
    const { counter, status, cpuPercent, memPercent } = datagram;
    return s.heartbeats.take(counter, status, cpuPercent, memPercent);
  }

  /** Feeds a frame or message from the server that failed to decode. */
  receiveInvalid(error: CodecError, _now: number): LbAction[] {
    if (this.#s.state === "DISCONNECTED" || this.#s.state === "CONNECTING") return [];
    return this.#s.fail(_classifyInvalid(error, this.#s.seq, (t) => this.accepts(t)));
  }

  /** Handles deadlines: reply timeouts. */
  tick(now: number): LbAction[] {
    const s = this.#s;
    if (s.ackDeadline !== undefined && now >= s.ackDeadline) {
      const failure: Failure = {
        kind: "timeout",
        message: `no ACK within ${s.options.timeoutMs} ms`,
      };
      s.reset();
      return [{ kind: "failed", failure }, s.close(CLOSE_CODES.TIMEOUT, failure.message)];
    }
    if (s.terminate && now >= s.terminate.deadline) {
      s.reset();
      return [s.close(CLOSE_CODES.TIMEOUT, "no TERMINATE_ACK within the timeout")];
    }
    return s.requests.expire(now, s.options.timeoutMs);
  }

  /**
   * The transport reports the connection gone. A close we did not ask for
   * while the session was up is a failure.
   */
  closed(reason: string, _now: number, cause?: string): LbAction[] {
    const state = this.#s.state;
    if (state === "DISCONNECTED") return [];
    const aborted = this.#s.requests.abort(`connection closed: ${reason}`);
    this.#s.reset();
    if (state === "TERMINATING") return aborted;
    const kind: FailureKind = state === "CONNECTING" ? "connect" : "closed";
    const failure: Failure = cause === undefined
      ? { kind, message: reason }
      : { kind, message: reason, cause };
    return [...aborted, { kind: "failed", failure }];
  }
}

/** The earlier of two optional times. */
function _earliest(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined || a <= b ? a : b;
}
