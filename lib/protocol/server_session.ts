/**
 * The server side of one QHCP/1 session as a pure state machine.
 *
 * It is driven by calls that carry the current time and returns the actions
 * its driver must perform (send a message, verify a token, close). It never
 * touches sockets, timers or the clock.
 *
 * ```
 *  AWAIT_HELLO --HELLO--> AUTHENTICATING --token ok / ACK--> READY
 *       |                       |                              |  HEALTH_REQUEST / HEALTH_RESPONSE
 *       |                       +--bad token / ERROR--> CLOSED |  CONFIG_UPDATE / CONFIG_ACK | ERROR BAD_CONFIG
 *       +--other type, bad input, 5 s timeout--> CLOSED        |
 *                                          TERMINATE / TERMINATE_ACK --> CLOSED
 *                        terminate() or token expiry --> TERMINATING --TERMINATE_ACK or 1 s--> CLOSED
 * ```
 *
 * With the extensions negotiated in HELLO and ACK (§10), a READY session also
 * sends STATUS when `push()` finds the status changed, and a heartbeat on
 * every `heartbeat()` (a DATAGRAM with `datagram`, else a HEARTBEAT message),
 * and answers a probe datagram with a heartbeat at once.
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
import type { AuthResult, ServerAction } from "./server_actions.ts";
import {
  _ack,
  _defaultConfig,
  _helloConfig,
  _negotiate,
  type _ServerOptions,
  _updatedConfig,
  _withDefaults,
  _withRequired,
  type ServerSessionOptions,
} from "./server_config.ts";
import { _heartbeat, _report } from "./server_report.ts";
import { type _Handler, _TABLE, type ServerSessionState } from "./server_transitions.ts";
import { type CodecError, ProtocolError, QhcpError } from "./errors.ts";
import {
  type Capability,
  CLOSE_CODES,
  type ConfigUpdateMessage,
  type HealthRequestMessage,
  type HelloMessage,
  type Message,
  type MessageOf,
  type MessageType,
  REQUIRED_METRICS,
  type SessionConfig,
  type TerminateAckMessage,
  type TerminateMessage,
} from "./wire.ts";

export type {
  AuthenticateAction,
  AuthResult,
  ConfiguredAction,
  ServerAction,
  ServerReadyAction,
} from "./server_actions.ts";
export type { ServerSessionOptions } from "./server_config.ts";
export type { HealthSnapshot } from "./server_report.ts";
export type { ServerSessionState } from "./server_transitions.ts";

/**
 * One server-side session, from the first byte to the close.
 *
 * @example
 * ```ts
 * import { ServerSession } from "./server_session.ts";
 * const session = new ServerSession({
 *   serverId: "web-1",
 *   availableMetrics: ["cpu_percent", "mem_percent"],
 *   health: () => ({ status: "UP", metrics: { cpu_percent: 3, mem_percent: 41 } }),
 * }, Date.now());
 * const actions = session.receive(
 *   { type: "HELLO", seq: 1, version: 1, token: "…", lb_id: "lb-1" },
 *   Date.now(),
 * ); // [{ kind: "authenticate", token: "…", lbId: "lb-1" }]
 * ```
 */
export class ServerSession {
  readonly #options: _ServerOptions;
  readonly #seq = new _Sequencer();
  #state: ServerSessionState = "AWAIT_HELLO";
  #deadline: number | undefined;
  #hello: HelloMessage | undefined;
  #lbId: string | undefined;
  #config: SessionConfig;
  #terminateSeq: number | undefined;
  /** The negotiated extensions. */
  #caps = new Set<Capability>();
  #heartbeats = 0;
  /** The status (with its failing checks) the LB last heard, so that STATUS says only news. */
  #reported: string | undefined;

  constructor(options: ServerSessionOptions, now: number) {
    this.#options = _withDefaults(options);
    this.#config = _defaultConfig(this.#options);
    this.#deadline = now + this.#options.helloTimeoutMs;
  }

  /** Current state. */
  get state(): ServerSessionState {
    return this.#state;
  }

  /** The authenticated LB's id (READY and later). */
  get lbId(): string | undefined {
    return this.#lbId;
  }

  /** The session's effective configuration. */
  get config(): SessionConfig {
    const c: SessionConfig = {
      interval_ms: this.#config.interval_ms,
      metrics: [...this.#config.metrics],
    };
    if (this.#config.heartbeat_ms !== undefined) c.heartbeat_ms = this.#config.heartbeat_ms;
    return c;
  }

  /** The negotiated extensions (empty until READY, and for a plain session). */
  get capabilities(): Capability[] {
    return [...this.#caps];
  }

  /** When `tick()` must next be called, in ms since epoch; undefined for never. */
  get deadline(): number | undefined {
    return this.#deadline;
  }

  /** Returns true when the current state accepts this message type. */
  accepts(type: MessageType): boolean {
    return _TABLE[this.#state][type] !== undefined;
  }

  /** Feeds one decoded message from the LB. */
  receive(message: Message, now: number): ServerAction[] {
    if (this.#state === "CLOSED") return [];
    const handler = _route(this.#seq, message, this.#state, _TABLE[this.#state]);
    if (handler instanceof QhcpError) return this.#fail(handler);
    return (handler as _Handler<MessageType>)(this, message, now);
  }

  /**
   * Feeds a frame or message that failed to decode. A CONFIG_UPDATE with a
   * bad `config` (code BAD_CONFIG) is answered with ERROR and the session
   * stays READY; every other failure ends the session.
   */
  receiveInvalid(error: CodecError, _now: number): ServerAction[] {
    if (this.#state === "CLOSED") return [];
    const reported = _classifyInvalid(error, this.#seq, (t) => this.accepts(t));
    if (reported.code === "BAD_CONFIG" && reported.seq !== undefined) {
      // While TERMINATING a CONFIG_UPDATE is ignored, whatever its content.
      if (this.#state === "TERMINATING") return [];
      return [this.#send({
        type: "ERROR",
        re: reported.seq,
        code: "BAD_CONFIG",
        message: reported.message,
      })];
    }
    return this.#fail(reported);
  }

  /** Feeds the result of the token check asked for by an `authenticate` action. */
  authenticated(result: AuthResult, now: number): ServerAction[] {
    if (this.#state !== "AUTHENTICATING" || !this.#hello) return [];
    const hello = this.#hello;
    this.#hello = undefined;
    if (!result.ok) {
      return this.#fail(
        new ProtocolError("UNAUTHORIZED", "remote", `Cannot accept HELLO: ${result.reason}`, {
          seq: hello.seq,
          messageType: "HELLO",
        }),
      );
    }
    if (result.expiresAt <= now) {
      return this.#fail(
        new ProtocolError("UNAUTHORIZED", "remote", "Cannot accept HELLO: token expired", {
          seq: hello.seq,
          messageType: "HELLO",
        }),
      );
    }
    this.#lbId = hello.lb_id;
    this.#caps = _negotiate(this.#options, hello.capabilities);
    this.#config = _helloConfig(this.#options, hello, this.#caps);
    this.#state = "READY";
    this.#deadline = result.expiresAt;
    return [
      this.#send(_ack(this.#options, hello, this.#caps, this.#config)),
      { kind: "ready", lbId: hello.lb_id, config: this.config, capabilities: [...this.#caps] },
    ];
  }

  /**
   * With `push` negotiated and READY: STATUS when the status (or the set of
   * failing local checks) differs from what the LB last heard; else nothing.
   */
  push(now: number): ServerAction[] {
    if (this.#state !== "READY" || !this.#caps.has("push")) return [];
    const report = _report(this.#options.health, this.#config.metrics, now);
    if (report.key === this.#reported) return [];
    this.#reported = report.key;
    return [this.#send({ type: "STATUS", ...report.body })];
  }

  /**
   * With `heartbeat` negotiated and READY: one heartbeat, as a DATAGRAM when
   * `datagram` was negotiated, else a HEARTBEAT message. The driver calls it
   * every `config.heartbeat_ms`.
   */
  heartbeat(_now: number): ServerAction[] {
    if (this.#state !== "READY" || !this.#caps.has("heartbeat")) return [];
    const snapshot = this.#options.health(REQUIRED_METRICS);
    this.#heartbeats = this.#heartbeats >= 0xffff_ffff ? 1 : this.#heartbeats + 1;
    const beat = _heartbeat(snapshot, this.#heartbeats, this.#caps.has("datagram"));
    return ["kind" in beat ? beat : this.#send(beat)];
  }

  /**
   * Feeds one QUIC DATAGRAM from the LB. A probe is answered with a heartbeat
   * at once. Outside READY datagrams are ignored (they are not ordered with
   * the stream); in a session without `datagram`, or malformed, one is a breach.
   */
  receiveDatagram(bytes: Uint8Array, now: number): ServerAction[] {
    const datagram = _acceptDatagram(
      bytes,
      this.#state === "READY",
      this.#caps.has("datagram"),
      "probe",
    );
    if (datagram instanceof QhcpError) return this.#fail(datagram);
    if (datagram === null) return [];
    return this.heartbeat(now);
  }

  /**
   * Starts a server-initiated end of session (shutdown, token expiry). Before
   * READY there is nobody to tell, so the session just closes.
   */
  terminate(reason: string, now: number): ServerAction[] {
    if (this.#state === "READY") {
      const send = this.#send({ type: "TERMINATE", reason });
      this.#terminateSeq = send.message.seq;
      this.#state = "TERMINATING";
      this.#deadline = now + this.#options.terminateAckTimeoutMs;
      return [send];
    }
    if (this.#state === "TERMINATING" || this.#state === "CLOSED") return [];
    return [this.#close(CLOSE_CODES.GOING_AWAY, reason)];
  }

  /** Handles the deadline returned by {@linkcode ServerSession.deadline}. */
  tick(now: number): ServerAction[] {
    if (this.#deadline === undefined || now < this.#deadline) return [];
    switch (this.#state) {
      case "AWAIT_HELLO":
      case "AUTHENTICATING":
        return [this.#close(CLOSE_CODES.TIMEOUT, "no HELLO within the hello timeout")];
      case "READY":
        return this.terminate("token_expired", now);
      case "TERMINATING":
        return [this.#close(CLOSE_CODES.TIMEOUT, "no TERMINATE_ACK within the timeout")];
      default:
        return [];
    }
  }

  /** Tells the machine that the connection is gone. */
  closed(): void {
    this.#state = "CLOSED";
    this.#deadline = undefined;
  }

  // --- handlers, called through the transition table ----------------------

  /** @internal */
  _onHello(message: HelloMessage): ServerAction[] {
    this.#hello = message;
    this.#state = "AUTHENTICATING";
    return [{ kind: "authenticate", token: message.token, lbId: message.lb_id }];
  }

  /** @internal */
  _onHealthRequest(message: HealthRequestMessage, now: number): ServerAction[] {
    const names = message.metrics === undefined ? this.#config.metrics : _withRequired(
      message.metrics.filter((m) => this.#options.availableMetrics.includes(m)),
      this.#options.availableMetrics,
    );
    const report = _report(this.#options.health, names, now);
    this.#reported = report.key;
    return [this.#send({ type: "HEALTH_RESPONSE", re: message.seq, ...report.body })];
  }

  /** @internal */
  _onConfigUpdate(message: ConfigUpdateMessage): ServerAction[] {
    const update = _updatedConfig(this.#options, this.#caps, this.#config, message.config);
    if ("error" in update) {
      const err = update.error;
      return [this.#send({ type: "ERROR", re: message.seq, code: err.code, message: err.message })];
    }
    this.#config = update.config;
    return [
      this.#send({ type: "CONFIG_ACK", re: message.seq, config: this.config }),
      { kind: "configured", config: this.config },
    ];
  }

  /** @internal */
  _onTerminate(message: TerminateMessage): ServerAction[] {
    const ack = this.#send({ type: "TERMINATE_ACK", re: message.seq });
    return [ack, this.#close(CLOSE_CODES.NO_ERROR, `terminated by peer: ${message.reason ?? ""}`)];
  }

  /** @internal */
  _onTerminateAck(message: TerminateAckMessage): ServerAction[] {
    if (message.re !== this.#terminateSeq) {
      return this.#fail(
        new ProtocolError(
          "UNEXPECTED_MESSAGE",
          "remote",
          `Cannot accept TERMINATE_ACK: re ${message.re} does not answer TERMINATE ${this.#terminateSeq}`,
          { seq: message.seq, messageType: "TERMINATE_ACK" },
        ),
      );
    }
    return [this.#close(CLOSE_CODES.NO_ERROR, "terminate acknowledged")];
  }

  /** @internal */
  _onPeerError(message: MessageOf<"ERROR">): ServerAction[] {
    return [
      this.#close(_closeCodeFor(message.code), `peer reported ${message.code}: ${message.message}`),
    ];
  }

  /** @internal Messages still in flight when we asked to terminate. */
  _ignore(): ServerAction[] {
    return [];
  }

  #send(message: Parameters<_Sequencer["stamp"]>[0]): SendAction {
    return { kind: "send", message: this.#seq.stamp(message) };
  }

  #close(code: CloseAction["code"], reason: string, error?: QhcpError): CloseAction {
    this.closed();
    return error === undefined
      ? { kind: "close", code, reason }
      : { kind: "close", code, reason, error };
  }

  #fail(error: QhcpError): ServerAction[] {
    const actions = _fatal(this.#seq, error);
    this.closed();
    return actions;
  }
}
