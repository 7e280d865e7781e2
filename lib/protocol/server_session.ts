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

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import {
  _acceptDatagram,
  _classifyInvalid,
  _closeCodeFor,
  _fatal,
  _route,
  _Sequencer,
  type CloseAction,
  type DatagramAction,
  type SendAction,
} from "./session_rules.ts";
import { validateConfigUpdate } from "./codec.ts";
import { encodeDatagram } from "./datagram.ts";
import { type CodecError, ConfigError, ProtocolError, QhcpError } from "./errors.ts";
import {
  type Capability,
  CLOSE_CODES,
  type ConfigUpdateMessage,
  type HealthRequestMessage,
  type HelloMessage,
  type LocalCheckResult,
  MAX_HEARTBEAT_MS,
  type Message,
  type MessageOf,
  type MessageType,
  type MetricValues,
  PROTOCOL_VERSION,
  REQUIRED_METRICS,
  type ServerStatus,
  type ServiceInfo,
  type SessionConfig,
  type TerminateAckMessage,
  type TerminateMessage,
} from "./wire.ts";

/** States of a server session. */
export type ServerSessionState =
  | "AWAIT_HELLO"
  | "AUTHENTICATING"
  | "READY"
  | "TERMINATING"
  | "CLOSED";

/** What the server reports at this moment. */
export interface HealthSnapshot {
  status: ServerStatus;
  metrics: MetricValues;
  /** Local checks of the application, when the agent runs any. */
  checks?: LocalCheckResult[];
}

/** Options of {@linkcode ServerSession}. */
export interface ServerSessionOptions {
  /** Identifier sent in ACK. */
  serverId: string;
  /** Every metric name this server can report. Must include cpu_percent and mem_percent. */
  availableMetrics: readonly string[];
  /** Names reported when HELLO asks for none. Default: cpu_percent, mem_percent. */
  defaultMetrics?: readonly string[];
  /** Close a session that sends no HELLO within this time. Default 5000 ms. */
  helloTimeoutMs?: number;
  /** Wait this long for TERMINATE_ACK after sending TERMINATE. Default 1000 ms. */
  terminateAckTimeoutMs?: number;
  /** `interval_ms` assumed when HELLO names none. Default 10000 ms. */
  defaultIntervalMs?: number;
  /**
   * The extensions (§10) this server accepts when an LB offers them. Default
   * none: every session is plain QHCP/1.
   */
  capabilities?: readonly Capability[];
  /** Heartbeat interval when HELLO offers `heartbeat` without `heartbeat_ms`. Default 1000 ms. */
  defaultHeartbeatMs?: number;
  /** Shortest heartbeat interval this server keeps, whatever the LB asks. Default 100 ms. */
  minHeartbeatMs?: number;
  /** Services the agent fronts, advertised in every ACK (§11). Default none. */
  services?: readonly ServiceInfo[];
  /**
   * Returns the status and the named metric values right now. Called while
   * answering HEALTH_REQUEST and on every heartbeat, so it must be cheap:
   * cached values, refreshed at most once per sample interval (the agent's
   * `SystemMetrics` reads a few small /proc files then).
   */
  health: (names: readonly string[]) => HealthSnapshot;
}

/** Ask the driver to verify a HELLO's token, then call `authenticated()`. */
export interface AuthenticateAction {
  kind: "authenticate";
  token: string;
  lbId: string;
}

/** Reports that the session reached READY. */
export interface ServerReadyAction {
  kind: "ready";
  lbId: string;
  config: SessionConfig;
  /** The extensions negotiated (empty for a plain QHCP/1 session). */
  capabilities: Capability[];
}

/** Reports a configuration change accepted by CONFIG_UPDATE. */
export interface ConfiguredAction {
  kind: "configured";
  config: SessionConfig;
}

/** Everything a {@linkcode ServerSession} can ask of its driver. */
export type ServerAction =
  | SendAction
  | DatagramAction
  | CloseAction
  | AuthenticateAction
  | ServerReadyAction
  | ConfiguredAction;

/** The outcome of verifying a HELLO token. */
export type AuthResult =
  | { ok: true; /** Time (ms since epoch) after which the session must end. */ expiresAt: number }
  | { ok: false; reason: string };

type _Handler<T extends MessageType> = (
  session: ServerSession,
  message: MessageOf<T>,
  now: number,
) => ServerAction[];

type _Table = {
  [S in ServerSessionState]: { [T in MessageType]?: _Handler<T> };
};

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
  readonly #options:
    & Required<Omit<ServerSessionOptions, "health">>
    & Pick<ServerSessionOptions, "health">;
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
    this.#options = {
      defaultMetrics: REQUIRED_METRICS,
      helloTimeoutMs: AGENT_DEFAULTS.helloTimeoutMs,
      terminateAckTimeoutMs: AGENT_DEFAULTS.terminateAckTimeoutMs,
      defaultIntervalMs: AGENT_DEFAULTS.sessionIntervalMs,
      capabilities: [],
      defaultHeartbeatMs: AGENT_DEFAULTS.heartbeatMs,
      minHeartbeatMs: AGENT_DEFAULTS.minHeartbeatMs,
      services: [],
      ...options,
    };
    this.#config = {
      interval_ms: this.#options.defaultIntervalMs,
      metrics: _withRequired(this.#options.defaultMetrics, this.#options.availableMetrics),
    };
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
    this.#caps = this.#negotiate(hello.capabilities);
    this.#config = {
      interval_ms: hello.interval_ms ?? this.#options.defaultIntervalMs,
      metrics: _withRequired(
        hello.metrics?.filter((m) => this.#options.availableMetrics.includes(m)) ??
          this.#options.defaultMetrics,
        this.#options.availableMetrics,
      ),
    };
    if (this.#caps.has("heartbeat")) {
      this.#config.heartbeat_ms = this.#heartbeatMs(
        hello.heartbeat_ms ?? this.#options.defaultHeartbeatMs,
      );
    }
    this.#state = "READY";
    this.#deadline = result.expiresAt;
    // A plain QHCP/1 HELLO gets a plain ACK: no extension field at all.
    const heartbeat = this.#config.heartbeat_ms;
    return [
      this.#send({
        type: "ACK",
        re: hello.seq,
        version: PROTOCOL_VERSION,
        server_id: this.#options.serverId,
        metrics: [...this.#config.metrics],
        ...(hello.capabilities === undefined ? {} : { capabilities: [...this.#caps] }),
        ...(heartbeat === undefined ? {} : { heartbeat_ms: heartbeat }),
        // Not negotiated: an LB that does not know the field ignores it (§3).
        ...(this.#options.services.length === 0
          ? {}
          : { services: this.#options.services.map((x) => ({ ...x })) }),
      }),
      { kind: "ready", lbId: hello.lb_id, config: this.config, capabilities: [...this.#caps] },
    ];
  }

  /**
   * With `push` negotiated and READY: STATUS when the status (or the set of
   * failing local checks) differs from what the LB last heard; else nothing.
   */
  push(now: number): ServerAction[] {
    if (this.#state !== "READY" || !this.#caps.has("push")) return [];
    const report = this.#report(this.#config.metrics, now);
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
    const percent = (name: string) => Math.min(100, Math.max(0, snapshot.metrics[name] ?? 0));
    this.#heartbeats = this.#heartbeats >= 0xffff_ffff ? 1 : this.#heartbeats + 1;
    if (this.#caps.has("datagram")) {
      return [{
        kind: "datagram",
        bytes: encodeDatagram({
          kind: "heartbeat",
          counter: this.#heartbeats,
          status: snapshot.status,
          cpuPercent: percent("cpu_percent"),
          memPercent: percent("mem_percent"),
        }),
      }];
    }
    return [this.#send({
      type: "HEARTBEAT",
      hb: this.#heartbeats,
      status: snapshot.status,
      cpu_percent: percent("cpu_percent"),
      mem_percent: percent("mem_percent"),
    })];
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
    const report = this.#report(names, now);
    this.#reported = report.key;
    return [this.#send({ type: "HEALTH_RESPONSE", re: message.seq, ...report.body })];
  }

  /** @internal */
  _onConfigUpdate(message: ConfigUpdateMessage): ServerAction[] {
    let change: Partial<SessionConfig>;
    try {
      change = validateConfigUpdate(
        message.config as Record<string, unknown>,
        this.#options.availableMetrics,
      );
    } catch (e) {
      const err = e as QhcpError;
      return [this.#send({ type: "ERROR", re: message.seq, code: err.code, message: err.message })];
    }
    if (change.heartbeat_ms !== undefined && !this.#caps.has("heartbeat")) {
      const err = new ConfigError(
        "heartbeat_ms",
        "absent: this session did not negotiate heartbeat",
        "Cannot apply config: heartbeat_ms needs the heartbeat capability, which this session did not negotiate",
      );
      return [this.#send({ type: "ERROR", re: message.seq, code: err.code, message: err.message })];
    }
    const heartbeat = change.heartbeat_ms === undefined
      ? this.#config.heartbeat_ms
      : this.#heartbeatMs(change.heartbeat_ms);
    this.#config = {
      interval_ms: change.interval_ms ?? this.#config.interval_ms,
      metrics: change.metrics === undefined
        ? this.#config.metrics
        : _withRequired(change.metrics, this.#options.availableMetrics),
      ...(heartbeat === undefined ? {} : { heartbeat_ms: heartbeat }),
    };
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

  /** The extensions to accept: offered, known here, and `datagram` only with `heartbeat`. */
  #negotiate(offered: readonly string[] | undefined): Set<Capability> {
    const caps = new Set(this.#options.capabilities.filter((c) => offered?.includes(c)));
    if (!caps.has("heartbeat")) caps.delete("datagram");
    return caps;
  }

  #heartbeatMs(asked: number): number {
    return Math.min(MAX_HEARTBEAT_MS, Math.max(this.#options.minHeartbeatMs, asked));
  }

  /** The body of a HEALTH_RESPONSE or STATUS, and the key of its status and failing checks. */
  #report(names: readonly string[], now: number) {
    const snapshot = this.#options.health(names);
    const metrics: MetricValues = {};
    for (const name of names) {
      const value = snapshot.metrics[name];
      if (value !== undefined) metrics[name] = value;
    }
    const checks = snapshot.checks && snapshot.checks.length > 0 ? snapshot.checks : undefined;
    const failing = checks?.filter((c) => !c.ok).map((c) => c.name) ?? [];
    return {
      key: `${snapshot.status} ${JSON.stringify(failing)}`,
      body: {
        status: snapshot.status,
        metrics,
        ts: Math.floor(now),
        ...(checks ? { checks } : {}),
      },
    };
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

/** Adds cpu_percent and mem_percent and drops names this server cannot report. */
function _withRequired(names: readonly string[], available: readonly string[]): string[] {
  const out = new Set<string>(REQUIRED_METRICS);
  for (const name of names) if (available.includes(name)) out.add(name);
  return [...out];
}

/** The transition table: for each state, the message types it accepts. */
const _TABLE: _Table = {
  AWAIT_HELLO: {
    HELLO: (s, m) => s._onHello(m),
  },
  AUTHENTICATING: {},
  READY: {
    HEALTH_REQUEST: (s, m, now) => s._onHealthRequest(m, now),
    CONFIG_UPDATE: (s, m) => s._onConfigUpdate(m),
    TERMINATE: (s, m) => s._onTerminate(m),
    ERROR: (s, m) => s._onPeerError(m),
  },
  TERMINATING: {
    HEALTH_REQUEST: (s) => s._ignore(),
    CONFIG_UPDATE: (s) => s._ignore(),
    TERMINATE: (s, m) => s._onTerminate(m),
    TERMINATE_ACK: (s, m) => s._onTerminateAck(m),
    ERROR: (s, m) => s._onPeerError(m),
  },
  CLOSED: {},
};
