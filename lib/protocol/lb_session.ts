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
 * @module
 */

import {
  _acceptDatagram,
  _classifyInvalid,
  _closeCodeFor,
  _fatal,
  _route,
  _Sequencer,
  type CloseAction,
  type SendAction,
} from "./session_rules.ts";
import type {
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
};
import { type CodecError, ProtocolError, QhcpError } from "./errors.ts";
import { encodeDatagram } from "./datagram.ts";
import {
  type AckMessage,
  type Capability,
  CLOSE_CODES,
  type CloseCode,
  type ConfigAckMessage,
  type ErrorMessage,
  type HealthResponseMessage,
  type HeartbeatMessage,
  type Message,
  type MessageOf,
  type MessageType,
  PROTOCOL_VERSION,
  type ServerStatus,
  type SessionConfig,
  type StatusMessage,
  type TerminateAckMessage,
  type TerminateMessage,
  type UnsequencedMessage,
} from "./wire.ts";

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

type _Handler<T extends MessageType> = (s: LbSession, m: MessageOf<T>, now: number) => LbAction[];
type _Table = { [S in LbSessionState]: { [T in MessageType]?: _Handler<T> } };

/** How many timed-out request seqs are remembered so that late replies are ignored. */
const _LATE_MEMORY = 64;

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
  readonly #options: LbSessionOptions;
  #seq = new _Sequencer();
  #state: LbSessionState = "DISCONNECTED";
  #startedAt = 0;
  #helloSeq = 0;
  #ackDeadline: number | undefined;
  #check: { seq: number; sentAt: number; deadline: number; probe: boolean } | undefined;
  #configs = new Map<number, number>();
  /** Seqs of timed-out requests, so that their late replies are ignored. */
  #lateChecks: number[] = [];
  #lateConfigs: number[] = [];
  #terminate: { seq: number; deadline: number } | undefined;
  /** The extensions the server accepted in this session. */
  #caps = new Set<Capability>();
  /** The last heartbeat counter taken, so duplicates and stale ones are dropped. */
  #heartbeat = 0;
  #probeNonce = 0;

  constructor(options: LbSessionOptions) {
    this.#options = { ...options };
  }

  /** Current state. */
  get state(): LbSessionState {
    return this.#state;
  }

  /** True while a HEALTH_REQUEST awaits its answer. */
  get checkPending(): boolean {
    return this.#check !== undefined;
  }

  /** Changes the reply timeout for requests sent from now on. */
  setTimeout(ms: number): void {
    this.#options.timeoutMs = ms;
  }

  /** Changes the `interval_ms` announced in later HELLOs. */
  setInterval(ms: number): void {
    this.#options.intervalMs = ms;
  }

  /** Changes the metric names asked for in later HELLOs. */
  setMetrics(names: readonly string[]): void {
    this.#options.metrics = [...names];
  }

  /** Changes the extensions and heartbeat interval offered in later HELLOs. */
  setExtensions(capabilities: readonly Capability[], heartbeatMs?: number): void {
    this.#options.capabilities = [...capabilities];
    if (heartbeatMs === undefined) delete this.#options.heartbeatMs;
    else this.#options.heartbeatMs = heartbeatMs;
  }

  /** The extensions negotiated in this session (empty before READY and for plain servers). */
  get capabilities(): ReadonlySet<Capability> {
    return this.#caps;
  }

  /** When `tick()` must next be called (ms since epoch), or undefined. */
  get deadline(): number | undefined {
    let d: number | undefined = this.#ackDeadline;
    const consider = (t: number | undefined) => {
      if (t !== undefined && (d === undefined || t < d)) d = t;
    };
    consider(this.#check?.deadline);
    for (const t of this.#configs.values()) consider(t);
    consider(this.#terminate?.deadline);
    return d;
  }

  /** Returns true when the current state accepts this message type. */
  accepts(type: MessageType): boolean {
    return this.#negotiated(type) && _TABLE[this.#state][type] !== undefined;
  }

  /** False for a type of an extension this session did not negotiate. */
  #negotiated = (type: MessageType): boolean =>
    type === "STATUS"
      ? this.#caps.has("push")
      : type !== "HEARTBEAT" || this.#caps.has("heartbeat");

  /** The driver starts dialing. */
  connecting(now: number): LbAction[] {
    this.#reset();
    this.#state = "CONNECTING";
    this.#startedAt = now;
    return [];
  }

  /** The QUIC connection and control stream are up: send HELLO with this token. */
  connected(token: string, now: number): LbAction[] {
    if (this.#state !== "CONNECTING") return [];
    const offered = this.#options.capabilities ?? [];
    const heartbeatMs = offered.includes("heartbeat") ? this.#options.heartbeatMs : undefined;
    const hello: UnsequencedMessage = {
      type: "HELLO",
      version: PROTOCOL_VERSION,
      token,
      lb_id: this.#options.lbId,
      ...(this.#options.intervalMs === undefined ? {} : { interval_ms: this.#options.intervalMs }),
      ...(this.#options.metrics === undefined ? {} : { metrics: [...this.#options.metrics] }),
      // Offering nothing keeps the HELLO exactly QHCP/1's.
      ...(offered.length === 0 ? {} : { capabilities: [...offered] }),
      ...(heartbeatMs === undefined ? {} : { heartbeat_ms: heartbeatMs }),
    };
    const send = this.#send(hello);
    this.#helloSeq = send.message.seq;
    this.#state = "HELLO_SENT";
    this.#ackDeadline = now + this.#options.timeoutMs;
    return [send];
  }

  /** Dialing failed. */
  connectFailed(message: string, _now: number, cause?: string): LbAction[] {
    if (this.#state !== "CONNECTING") return [];
    this.#reset();
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
    if (this.#state !== "READY" || this.#check) return [];
    const send = this.#send(
      metrics === undefined
        ? { type: "HEALTH_REQUEST" }
        : { type: "HEALTH_REQUEST", metrics: [...metrics] },
    );
    const deadline = now + (timeoutMs ?? this.#options.timeoutMs);
    this.#check = { seq: send.message.seq, sentAt: now, deadline, probe: false };
    return [send];
  }

  /**
   * Probes a suspected server: a HEALTH_REQUEST that must be answered within
   * `timeoutMs` (a check already pending is held to that instead), plus a
   * probe DATAGRAM when `datagram` was negotiated. The outcome is a `check`
   * action with `probe` set. Returns [] unless READY.
   */
  probe(now: number, timeoutMs: number): LbAction[] {
    if (this.#state !== "READY") return [];
    const out: LbAction[] = [];
    if (this.#check) {
      this.#check.deadline = Math.min(this.#check.deadline, now + timeoutMs);
      this.#check.probe = true;
    } else {
      out.push(...this.check(now, undefined, timeoutMs));
      this.#check!.probe = true;
    }
    if (this.#caps.has("datagram")) out.push(this.probeDatagram());
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
    if (this.#state !== "READY") return [];
    const send = this.#send({ type: "CONFIG_UPDATE", config: { ...config } });
    this.#configs.set(send.message.seq, now + this.#options.timeoutMs);
    return [send];
  }

  /** Ends the session politely: TERMINATE now, close on TERMINATE_ACK or timeout. */
  terminate(reason: string, now: number): LbAction[] {
    if (this.#state === "READY" || this.#state === "HELLO_SENT") {
      const aborted = this.#abortPending("session terminated");
      const send = this.#send({ type: "TERMINATE", reason });
      this.#state = "TERMINATING";
      this.#ackDeadline = undefined;
      this.#terminate = { seq: send.message.seq, deadline: now + this.#options.timeoutMs };
      return [...aborted, send];
    }
    if (this.#state === "CONNECTING") {
      this.#reset();
      return [this.#close(CLOSE_CODES.GOING_AWAY, reason)];
    }
    return [];
  }

  /**
   * Closes at once without TERMINATE (the server is being marked DOWN or
   * removed). Pending requests are dropped without reporting a failure.
   */
  abandon(code: CloseCode, reason: string): LbAction[] {
    if (this.#state === "DISCONNECTED") return [];
    const aborted = this.#abortPending("session closed");
    this.#reset();
    return [...aborted, { kind: "close", code, reason }];
  }

  /** Feeds one decoded message from the server. */
  receive(message: Message, now: number): LbAction[] {
    if (this.#state === "DISCONNECTED" || this.#state === "CONNECTING") return [];
    const handler = _route(this.#seq, message, this.#state, _TABLE[this.#state], this.#negotiated);
    if (handler instanceof QhcpError) return this.#fail(handler);
    return (handler as _Handler<MessageType>)(this, message, now);
  }

  /**
   * Feeds one QUIC DATAGRAM from the server. Outside READY datagrams are
   * ignored (they may overtake the ACK on the stream); in a session without
   * `datagram`, or malformed, one is a breach.
   */
  receiveDatagram(bytes: Uint8Array, _now: number): LbAction[] {
    const datagram = _acceptDatagram(
      bytes,
      this.#state === "READY",
      this.#caps.has("datagram"),
      "heartbeat",
    );
    if (datagram instanceof QhcpError) return this.#fail(datagram);
    if (datagram === null) return [];
    return this.#heartbeatAction(
      datagram.counter,
      datagram.status,
      datagram.cpuPercent,
      datagram.memPercent,
    );
  }

  /** Feeds a frame or message from the server that failed to decode. */
  receiveInvalid(error: CodecError, _now: number): LbAction[] {
    if (this.#state === "DISCONNECTED" || this.#state === "CONNECTING") return [];
    return this.#fail(_classifyInvalid(error, this.#seq, (t) => this.accepts(t)));
  }

  /** Handles deadlines: reply timeouts. */
  tick(now: number): LbAction[] {
    const out: LbAction[] = [];
    if (this.#ackDeadline !== undefined && now >= this.#ackDeadline) {
      const failure: Failure = {
        kind: "timeout",
        message: `no ACK within ${this.#options.timeoutMs} ms`,
      };
      this.#reset();
      return [{ kind: "failed", failure }, this.#close(CLOSE_CODES.TIMEOUT, failure.message)];
    }
    if (this.#terminate && now >= this.#terminate.deadline) {
      this.#reset();
      return [this.#close(CLOSE_CODES.TIMEOUT, "no TERMINATE_ACK within the timeout")];
    }
    if (this.#check && now >= this.#check.deadline) {
      const { seq, sentAt } = this.#check;
      const probe = this.#check.probe;
      this.#check = undefined;
      _remember(this.#lateChecks, seq);
      out.push({
        kind: "check",
        ok: false,
        failure: {
          kind: "timeout",
          message: `no HEALTH_RESPONSE within ${Math.round(now - sentAt)} ms`,
        },
        ...(probe ? { probe: true as const } : {}),
      });
    }
    for (const [seq, deadline] of this.#configs) {
      if (now < deadline) continue;
      this.#configs.delete(seq);
      _remember(this.#lateConfigs, seq);
      out.push({
        kind: "config",
        seq,
        ok: false,
        code: "TIMEOUT",
        message: `no CONFIG_ACK within ${this.#options.timeoutMs} ms`,
      });
    }
    return out;
  }

  /**
   * The transport reports the connection gone. A close we did not ask for
   * while the session was up is a failure.
   */
  closed(reason: string, _now: number, cause?: string): LbAction[] {
    const state = this.#state;
    if (state === "DISCONNECTED") return [];
    const aborted = this.#abortPending(`connection closed: ${reason}`);
    this.#reset();
    if (state === "TERMINATING") return aborted;
    const kind: FailureKind = state === "CONNECTING" ? "connect" : "closed";
    const failure: Failure = cause === undefined
      ? { kind, message: reason }
      : { kind, message: reason, cause };
    return [...aborted, { kind: "failed", failure }];
  }

  // --- handlers, called through the transition table ----------------------

  /** @internal */
  _onAck(m: AckMessage, now: number): LbAction[] {
    if (m.re !== this.#helloSeq) return this.#fail(this.#badRe(m, `HELLO ${this.#helloSeq}`));
    const offered = this.#options.capabilities ?? [];
    const accepted = m.capabilities ?? [];
    const stray = accepted.find((c) => !(offered as readonly string[]).includes(c));
    const bad = (what: string) =>
      this.#fail(
        new ProtocolError("BAD_MESSAGE", "remote", `Cannot accept ACK: ${what}`, {
          seq: m.seq,
          messageType: "ACK",
        }),
      );
    if (stray !== undefined) {
      return bad(`it accepts ${JSON.stringify(stray)}, which HELLO did not offer`);
    }
    const caps = new Set(accepted as Capability[]);
    if (caps.has("heartbeat") !== (m.heartbeat_ms !== undefined)) {
      return bad("heartbeat_ms must come with the heartbeat capability, and only with it");
    }
    if (caps.has("datagram") && !caps.has("heartbeat")) {
      return bad("it accepts datagram without heartbeat");
    }
    this.#caps = caps;
    this.#state = "READY";
    this.#ackDeadline = undefined;
    const ready: LbReadyAction = {
      kind: "ready",
      ack: m,
      setupMs: now - this.#startedAt,
      capabilities: [...caps],
    };
    if (m.heartbeat_ms !== undefined) ready.heartbeatMs = m.heartbeat_ms;
    return [ready];
  }

  /** @internal */
  _onStatus(m: StatusMessage): LbAction[] {
    const action: StatusAction = { kind: "status", message: m };
    return [action];
  }

  /** @internal */
  _onHeartbeat(m: HeartbeatMessage): LbAction[] {
    return this.#heartbeatAction(m.hb, m.status, m.cpu_percent, m.mem_percent);
  }

  #heartbeatAction(
    counter: number,
    status: ServerStatus,
    cpuPercent: number,
    memPercent: number,
  ): LbAction[] {
    // Counters only grow (2^32 - 1 is followed by 1): an older or repeated one says nothing new.
    const last = this.#heartbeat;
    if (counter <= last && last - counter < 2 ** 31) return [];
    this.#heartbeat = counter;
    const action: HeartbeatAction = {
      kind: "heartbeat",
      counter,
      missed: counter > last ? counter - last - 1 : 0,
      status,
      cpuPercent,
      memPercent,
    };
    return [action];
  }

  /** @internal */
  _onHealthResponse(m: HealthResponseMessage, now: number): LbAction[] {
    if (this.#check && m.re === this.#check.seq) {
      const rttMs = now - this.#check.sentAt;
      const probe = this.#check.probe ? { probe: true as const } : {};
      this.#check = undefined;
      if (m.status === "FAILING") {
        const failed = (m.checks ?? []).filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
        const message = `server FAILING: ${
          failed.length ? failed.join("; ") : "a local check fails"
        }`;
        return [{
          kind: "check",
          ok: false,
          failure: { kind: "failing", message },
          reply: { rttMs, response: m },
          ...probe,
        }];
      }
      return [{ kind: "check", ok: true, rttMs, response: m, ...probe }];
    }
    // A late reply is dropped once; a second reply to the same request answers nothing.
    if (_forget(this.#lateChecks, m.re)) return [];
    return this.#fail(this.#badRe(m, "a pending HEALTH_REQUEST"));
  }

  /** @internal */
  _onConfigAck(m: ConfigAckMessage): LbAction[] {
    if (this.#configs.delete(m.re)) {
      return [{ kind: "config", seq: m.re, ok: true, config: m.config }];
    }
    if (_forget(this.#lateConfigs, m.re)) return [];
    return this.#fail(this.#badRe(m, "a pending CONFIG_UPDATE"));
  }

  /** @internal */
  _onError(m: ErrorMessage): LbAction[] {
    if (m.code === "BAD_CONFIG" && m.re !== undefined) {
      if (this.#configs.delete(m.re)) {
        return [{ kind: "config", seq: m.re, ok: false, code: m.code, message: m.message }];
      }
      if (_forget(this.#lateConfigs, m.re)) return [];
    }
    const aborted = this.#abortPending(`server sent ERROR ${m.code}`);
    this.#reset();
    return [
      ...aborted,
      { kind: "failed", failure: { kind: "peer_error", code: m.code, message: m.message } },
      this.#close(_closeCodeFor(m.code), `server sent ERROR ${m.code}`),
    ];
  }

  /** @internal */
  _onTerminate(m: TerminateMessage): LbAction[] {
    const aborted = this.#abortPending("server terminated the session");
    const ack = this.#send({ type: "TERMINATE_ACK", re: m.seq });
    this.#reset();
    const reason = m.reason ?? "";
    return [
      ...aborted,
      ack,
      { kind: "terminated", reason },
      this.#close(CLOSE_CODES.NO_ERROR, `terminated by server: ${reason}`),
    ];
  }

  /** @internal */
  _onTerminateAck(m: TerminateAckMessage): LbAction[] {
    if (m.re !== this.#terminate?.seq) {
      return this.#fail(this.#badRe(m, `TERMINATE ${this.#terminate?.seq}`));
    }
    this.#reset();
    return [this.#close(CLOSE_CODES.NO_ERROR, "terminate acknowledged")];
  }

  /** @internal Replies still in flight after we sent TERMINATE. */
  _ignore(): LbAction[] {
    return [];
  }

  #badRe(m: { type: MessageType; seq: number; re: number }, expected: string): ProtocolError {
    return new ProtocolError(
      "UNEXPECTED_MESSAGE",
      "remote",
      `Cannot accept ${m.type}: re ${m.re} does not answer ${expected}`,
      { seq: m.seq, messageType: m.type },
    );
  }

  #send(message: UnsequencedMessage): SendAction {
    return { kind: "send", message: this.#seq.stamp(message) };
  }

  #close(code: CloseCode, reason: string, error?: QhcpError): CloseAction {
    return error === undefined
      ? { kind: "close", code, reason }
      : { kind: "close", code, reason, error };
  }

  #fail(error: QhcpError): LbAction[] {
    const aborted = this.#abortPending(error.message);
    const actions = _fatal(this.#seq, error);
    this.#reset();
    const failed: FailedAction = {
      kind: "failed",
      failure: { kind: "protocol", code: error.code, message: error.message },
    };
    // The ERROR (if any) goes out before the failure is reported and the close.
    return [...aborted, ...actions.slice(0, -1), failed, ...actions.slice(-1)];
  }

  /** Pending configs fail with the session; a pending check is dropped (the session failure counts). */
  #abortPending(message: string): LbAction[] {
    const out: LbAction[] = [];
    for (const seq of this.#configs.keys()) {
      out.push({ kind: "config", seq, ok: false, code: "CLOSED", message });
    }
    this.#configs.clear();
    this.#check = undefined;
    return out;
  }

  #reset(): void {
    this.#state = "DISCONNECTED";
    this.#seq = new _Sequencer();
    this.#ackDeadline = undefined;
    this.#check = undefined;
    this.#configs.clear();
    this.#lateChecks = [];
    this.#lateConfigs = [];
    this.#terminate = undefined;
    this.#caps = new Set();
    this.#heartbeat = 0;
  }
}

/** Removes `seq` from the list; true when it was there. */
function _forget(list: number[], seq: number): boolean {
  const i = list.indexOf(seq);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}

function _remember(list: number[], seq: number): void {
  list.push(seq);
  if (list.length > _LATE_MEMORY) list.shift();
}

/** The transition table: for each state, the message types it accepts. */
const _TABLE: _Table = {
  DISCONNECTED: {},
  CONNECTING: {},
  HELLO_SENT: {
    ACK: (s, m, now) => s._onAck(m, now),
    ERROR: (s, m) => s._onError(m),
    TERMINATE: (s, m) => s._onTerminate(m),
  },
  READY: {
    HEALTH_RESPONSE: (s, m, now) => s._onHealthResponse(m, now),
    CONFIG_ACK: (s, m) => s._onConfigAck(m),
    ERROR: (s, m) => s._onError(m),
    TERMINATE: (s, m) => s._onTerminate(m),
    STATUS: (s, m) => s._onStatus(m),
    HEARTBEAT: (s, m) => s._onHeartbeat(m),
  },
  TERMINATING: {
    HEALTH_RESPONSE: (s) => s._ignore(),
    CONFIG_ACK: (s) => s._ignore(),
    STATUS: (s) => s._ignore(),
    HEARTBEAT: (s) => s._ignore(),
    ERROR: (s) => s._ignore(),
    TERMINATE: (s, m) => s._onTerminate(m),
    TERMINATE_ACK: (s, m) => s._onTerminateAck(m),
  },
};
