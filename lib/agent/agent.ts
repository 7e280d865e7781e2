/**
 * The server agent: accepts LB sessions on a {@linkcode Transport}, runs a
 * {@linkcode ServerSession} per connection and performs its actions (write
 * frames, verify tokens, close, keep the deadline timer).
 *
 * @module
 */

import { AGENT_DEFAULTS, COMMON_DEFAULTS } from "../util/defaults.ts";
import { _readMessages } from "../transport/read_messages.ts";
import { CodecError, encodeMessage } from "../protocol/codec.ts";
import { checkTokenBinding, type TokenVerifier } from "../security/jwt.ts";
import { certificateNames, type SubjectName } from "../security/certs.ts";
import { type Logger, rateLimited, silentLogger } from "../util/log.ts";
import type { MetricsSource } from "./metrics.ts";
import {
  CLOSE_CODES,
  type CloseCode,
  DEFAULT_SERVER_PORT,
  type LocalCheckResult,
  REQUIRED_METRICS,
  type ServerStatus,
  type SessionConfig,
} from "../protocol/wire.ts";
import { Admission } from "./admission.ts";
import { TokenBucket } from "../util/rate.ts";
import { settlesWithin } from "../util/timeout.ts";
import {
  type AuthResult,
  type ServerAction,
  ServerSession,
  type ServerSessionState,
} from "../protocol/server_session.ts";
import type { Channel, Listener, Transport } from "../transport/transport.ts";
import { hostOf } from "../protocol/address.ts";

/** Options of {@linkcode Agent.start}. */
export interface AgentOptions {
  /** The QUIC stack. */
  transport: Transport;
  /** Address to bind. Default "0.0.0.0". */
  host?: string;
  /** UDP port. Default 4243; 0 picks a free one. */
  port?: number;
  /** Server certificate chain and key, PEM. */
  certPem: string;
  keyPem: string;
  /** Identifier sent in ACK. */
  serverId: string;
  /** Checks HELLO tokens. */
  verifier: TokenVerifier;
  /**
   * Refuse tokens that are not bound to this server. Default false: tokens
   * from LBs that do not bind are accepted; a bound token must always name
   * this server (a name or address of its certificate).
   */
  requireBoundTokens?: boolean;
  /** Metric values for HEALTH_RESPONSE. */
  metrics: MetricsSource;
  /** Names reported when HELLO asks for none. Default cpu_percent, mem_percent. */
  defaultMetrics?: readonly string[];
  /** Current status. Default: always "UP". */
  status?: () => ServerStatus;
  /** Latest local checks of the application, reported in HEALTH_RESPONSE. */
  checks?: () => LocalCheckResult[];
  /** Close a connection that sends no HELLO within this time, ms. Default 5000. */
  helloTimeoutMs?: number;
  /** Close a connection silent for this long, ms. Default 30000. */
  idleTimeoutMs?: number;
  /**
   * Connections allowed at once before their HELLO is accepted; further ones
   * are closed at once with REFUSED. Default 100.
   */
  maxUnauthenticated?: number;
  /** Connections allowed at once in all; further ones are refused. Default 10000. */
  maxConnections?: number;
  /** Connections allowed at once from one client address. Default 64. */
  maxConnectionsPerAddress?: number;
  /** Authenticated sessions allowed at once per LB id. Default 16. */
  maxSessionsPerLb?: number;
  /**
   * Messages per second one session may send (bursts of five seconds' worth;
   * bytes in proportion); a session beyond is closed with REFUSED. Default 20:
   * twice what an LB sends at the shortest interval.
   */
  sessionRate?: number;
  /** Logger. Default: silent. */
  log?: Logger;
}

/** Counters of {@linkcode Agent.stats}. */
export interface AgentStats {
  /** Open connections. */
  connections: number;
  /** Open connections that have not passed HELLO yet. */
  unauthenticated: number;
  /** Connections refused by the limits since start. */
  refused: number;
}

/** One session as shown by {@linkcode Agent.sessions}. */
export interface AgentSessionInfo {
  remote: string;
  state: ServerSessionState;
  lbId: string | undefined;
  config: SessionConfig;
  /** When the connection was accepted (ms since epoch). */
  since: number;
}

/**
 * A running server agent.
 *
 * @example
 * ```ts
 * import { Agent } from "./agent.ts";
 * import { SystemMetrics } from "./metrics.ts";
 * import { createNativeTransport } from "../transport/native.ts";
 * import { createHmacVerifier, readSecretFile } from "../security/jwt.ts";
 * const agent = await Agent.start({
 *   transport: createNativeTransport(),
 *   certPem: await Deno.readTextFile("certs/server.pem"),
 *   keyPem: await Deno.readTextFile("certs/server.key"),
 *   serverId: "web-1",
 *   verifier: createHmacVerifier(await readSecretFile("certs/jwt.secret")),
 *   metrics: new SystemMetrics(),
 * });
 * // … later, on SIGTERM:
 * await agent.shutdown("shutdown");
 * ```
 */
export class Agent {
  readonly #options: AgentOptions;
  readonly #log: Logger;
  readonly #peerLog: Logger;
  /** This server's names, which a bound token must name. */
  readonly #names: SubjectName[];
  readonly #sessions = new Map<Channel, _AgentSession>();
  readonly #admission: Admission<Channel>;
  #listener!: Listener;
  #stopping = false;
  #refused = 0;
  #refusedLogged = 0;
  #refusedLogAt = 0;

  private constructor(options: AgentOptions) {
    this.#options = options;
    this.#log = options.log ?? silentLogger;
    // Sessions log what their peers do: a flood of bad peers must not flood the log.
    this.#peerLog = rateLimited(this.#log, 10_000, 20);
    this.#names = certificateNames(options.certPem);
    this.#admission = new Admission({
      ...(options.maxConnectionsPerAddress === undefined
        ? {}
        : { maxPerAddress: options.maxConnectionsPerAddress }),
      ...(options.maxSessionsPerLb === undefined ? {} : { maxPerLb: options.maxSessionsPerLb }),
    });
  }

  /** Binds the port and starts accepting LB sessions. */
  static async start(options: AgentOptions): Promise<Agent> {
    for (const name of REQUIRED_METRICS) {
      if (!options.metrics.names.includes(name)) {
        throw new Error(`Cannot start agent: metrics source lacks required metric ${name}`);
      }
    }
    const agent = new Agent(options);
    agent.#listener = await options.transport.listen(
      {
        host: options.host ?? AGENT_DEFAULTS.host,
        port: options.port ?? DEFAULT_SERVER_PORT,
        certPem: options.certPem,
        keyPem: options.keyPem,
        idleTimeoutMs: options.idleTimeoutMs ?? COMMON_DEFAULTS.idleTimeoutMs,
      },
      (channel) => agent.#accept(channel),
    );
    return agent;
  }

  /** The bound UDP port. */
  get port(): number {
    return this.#listener.port;
  }

  /** The bound address. */
  get host(): string {
    return this.#listener.host;
  }

  /** Connection counters. */
  stats(): AgentStats {
    let unauthenticated = 0;
    for (const s of this.#sessions.values()) if (s.unauthenticated) unauthenticated++;
    return { connections: this.#sessions.size, unauthenticated, refused: this.#refused };
  }

  /** Open sessions. */
  sessions(): AgentSessionInfo[] {
    return [...this.#sessions.values()].map((s) => s.info());
  }

  /**
   * Ends every session: READY sessions get TERMINATE with `reason` and up to
   * `graceMs` to answer TERMINATE_ACK; the rest are closed. Then stops listening.
   */
  async shutdown(reason = "shutdown", graceMs = 1000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const sessions = [...this.#sessions.values()];
    for (const s of sessions) s.terminate(reason);
    await settlesWithin(Promise.all(sessions.map((s) => s.done)), graceMs);
    await this.#listener.close(CLOSE_CODES.GOING_AWAY, reason);
    await Promise.all(sessions.map((s) => s.done));
  }

  /** The limit a new connection would break, or undefined. */
  #limitReached(): string | undefined {
    if (this.#sessions.size >= (this.#options.maxConnections ?? AGENT_DEFAULTS.maxConnections)) {
      return "too many connections";
    }
    const max = this.#options.maxUnauthenticated ?? AGENT_DEFAULTS.maxUnauthenticated;
    let pending = 0;
    for (const s of this.#sessions.values()) {
      if (s.unauthenticated && ++pending >= max) {
        return "too many unauthenticated connections";
      }
    }
    return undefined;
  }

  /** One warning per 10 s at most, with the count, so a flood cannot flood the log. */
  #logRefusals(why: string): void {
    const now = Date.now();
    if (now - this.#refusedLogAt < 10_000) return;
    this.#log.warn("refusing connections", {
      reason: why,
      refused: this.#refused - this.#refusedLogged,
      connections: this.#sessions.size,
    });
    this.#refusedLogAt = now;
    this.#refusedLogged = this.#refused;
  }

  #accept(channel: Channel): void {
    if (this.#stopping) {
      void channel.close(CLOSE_CODES.GOING_AWAY, "server shutting down", 0);
      return;
    }
    const limit = this.#limitReached() ??
      this.#admission.connect(channel, hostOf(channel.remoteAddress));
    if (limit) {
      this.#refused++;
      void channel.close(CLOSE_CODES.REFUSED, limit, 0);
      this.#logRefusals(limit);
      return;
    }
    const session = new _AgentSession(channel, this.#options, this.#names, this.#peerLog, {
      admit: (lbId, token) => {
        const decision = this.#admission.admit(channel, lbId, token);
        if (!decision.ok) {
          this.#refused++;
          this.#logRefusals(decision.reason);
          return decision.reason;
        }
        for (const old of decision.supersede) this.#sessions.get(old)?.supersede();
        return undefined;
      },
    });
    this.#sessions.set(channel, session);
    void session.done.then(() => {
      this.#sessions.delete(channel);
      this.#admission.release(channel);
    });
  }
}

/** What a session asks of its agent. */
interface _SessionHooks {
  /** The session's token is valid: the reason to refuse it anyway (limits), or undefined. */
  admit(lbId: string, token: string): string | undefined;
}

/**
 * What one session may cost, per message allowed per second: bursts of five
 * seconds' worth, and 1.6 KiB per message (a check is a few dozen bytes, a
 * HELLO a few hundred) with bursts of 12.8 KiB. An LB sends one request at a
 * time, at most ten a second at the shortest interval; a peer far beyond
 * that (pipelining thousands of requests) is closed with REFUSED before it
 * can cost the agent its memory or CPU.
 */
const _BURST_SECONDS = 5;
const _BYTES_PER_MESSAGE = 1638;
const _BYTE_BURST_PER_MESSAGE = 12_800;

/** Drives one {@linkcode ServerSession} over one channel. */
class _AgentSession {
  readonly done: Promise<void>;
  readonly #channel: Channel;
  readonly #options: AgentOptions;
  readonly #names: readonly SubjectName[];
  readonly #machine: ServerSession;
  readonly #log: Logger;
  readonly #since = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline #timer is armed for. */
  #armedFor: number | undefined;
  #closed = false;
  readonly #hooks: _SessionHooks;
  /** The session config as last logged. */
  #configText = "";
  readonly #messages: TokenBucket;
  readonly #bytes: TokenBucket;

  constructor(
    channel: Channel,
    options: AgentOptions,
    names: readonly SubjectName[],
    log: Logger,
    hooks: _SessionHooks,
  ) {
    this.#channel = channel;
    this.#hooks = hooks;
    const rate = options.sessionRate ?? AGENT_DEFAULTS.sessionRate;
    this.#messages = new TokenBucket(rate, rate * _BURST_SECONDS, this.#since);
    this.#bytes = new TokenBucket(
      rate * _BYTES_PER_MESSAGE,
      rate * _BYTE_BURST_PER_MESSAGE,
      this.#since,
    );
    this.#options = options;
    this.#names = names;
    this.#log = log.child({ remote: channel.remoteAddress });
    const metrics = options.metrics;
    const status = options.status ?? (() => "UP" as const);
    this.#machine = new ServerSession({
      serverId: options.serverId,
      availableMetrics: metrics.names,
      ...(options.defaultMetrics ? { defaultMetrics: options.defaultMetrics } : {}),
      ...(options.helloTimeoutMs === undefined ? {} : { helloTimeoutMs: options.helloTimeoutMs }),
      health: () => {
        const checks = options.checks?.();
        return checks
          ? { status: status(), metrics: metrics.snapshot(), checks }
          : { status: status(), metrics: metrics.snapshot() };
      },
    }, this.#since);
    this.#log.debug("connection accepted");
    this.#schedule();
    this.done = this.#run();
  }

  /** True until HELLO has been accepted. */
  get unauthenticated(): boolean {
    const state = this.#machine.state;
    return state === "AWAIT_HELLO" || state === "AUTHENTICATING";
  }

  info(): AgentSessionInfo {
    return {
      remote: this.#channel.remoteAddress,
      state: this.#machine.state,
      lbId: this.#machine.lbId,
      config: this.#machine.config,
      since: this.#since,
    };
  }

  terminate(reason: string): void {
    void this.#perform(this.#machine.terminate(reason, Date.now()));
  }

  /** A newer session of the same LB from the same address replaces this one. */
  supersede(): void {
    void this.#refuse(CLOSE_CODES.GOING_AWAY, "superseded by a newer session of the same LB");
  }

  /** Closes at once with `code`, outside the protocol's own rules (limits). */
  async #refuse(code: CloseCode, reason: string): Promise<void> {
    if (this.#closed) return;
    this.#log.debug("closing session", { lb: this.#machine.lbId, reason });
    this.#machine.closed();
    await this.#perform([{ kind: "close", code, reason }]);
  }

  async #run(): Promise<void> {
    // Every byte read is charged to the session's budget before it is decoded.
    const metered = {
      read: async () => {
        const chunk = await this.#channel.read();
        if (chunk && !this.#bytes.take(chunk.length, Date.now())) {
          await this.#refuse(CLOSE_CODES.REFUSED, "byte rate exceeded");
          return null;
        }
        return chunk;
      },
    } as Channel;
    try {
      await _readMessages(metered, () => !this.#closed, async (input) => {
        if (!this.#messages.take(1, Date.now())) {
          this.#log.warn("closing session: the peer sends messages far faster than an LB", {
            lb: this.#machine.lbId,
            per_second: this.#options.sessionRate ?? AGENT_DEFAULTS.sessionRate,
          });
          await this.#refuse(CLOSE_CODES.REFUSED, "message rate exceeded");
          return;
        }
        await this.#perform(
          input instanceof CodecError
            ? this.#machine.receiveInvalid(input, Date.now())
            : this.#machine.receive(input, Date.now()),
        );
      });
    } catch (e) {
      this.#log.error("session failed", { error: (e as Error).message });
      await this.#perform([{
        kind: "close",
        code: CLOSE_CODES.INTERNAL,
        reason: "internal error",
      }]);
    }
    // The peer finished the stream or the connection is gone.
    if (!this.#closed) {
      this.#machine.closed();
      this.#closed = true;
      await this.#channel.close(CLOSE_CODES.NO_ERROR, "stream finished", 0);
    }
    clearTimeout(this.#timer);
    const info = await this.#channel.closed;
    this.#log.debug("connection closed", { by: info.by, code: info.code, reason: info.reason });
  }

  async #perform(actions: ServerAction[]): Promise<void> {
    for (const action of actions) {
      switch (action.kind) {
        case "send": {
          if (this.#closed) break;
          let frame: Uint8Array;
          try {
            frame = encodeMessage(action.message);
          } catch (e) {
            // Our own message is invalid (a metrics source without cpu_percent, say): a bug here.
            this.#log.error("cannot encode a reply; closing the session", {
              error: (e as Error).message,
            });
            await this.#perform([{
              kind: "close",
              code: CLOSE_CODES.INTERNAL,
              reason: "internal error",
            }]);
            return;
          }
          try {
            await this.#channel.write(frame);
          } catch (e) {
            this.#log.debug("write failed", { error: (e as Error).message });
            this.#machine.closed();
            this.#closed = true;
            await this.#channel.close(CLOSE_CODES.INTERNAL, "write failed", 0);
          }
          break;
        }
        case "authenticate": {
          const verified = await this.#options.verifier.verify(
            action.token,
            action.lbId,
            Date.now(),
          );
          const refusal = verified.ok
            ? checkTokenBinding(
              verified.boundTo,
              this.#names,
              this.#options.requireBoundTokens ?? false,
            )
            : undefined;
          const result: AuthResult = refusal ? { ok: false, reason: refusal } : verified;
          if (result.ok) {
            const limit = this.#hooks.admit(action.lbId, action.token);
            if (limit) {
              await this.#refuse(CLOSE_CODES.REFUSED, limit);
              break;
            }
          }
          if (!result.ok) {
            this.#log.warn("LB refused", {
              lb: action.lbId,
              code: "UNAUTHORIZED",
              reason: result.reason,
            });
          }
          await this.#perform(this.#machine.authenticated(result, Date.now()));
          break;
        }
        case "ready":
          this.#configText = `${action.config.interval_ms} ${action.config.metrics.join(",")}`;
          this.#log.info("LB session ready", {
            lb: action.lbId,
            interval_ms: action.config.interval_ms,
            metrics: action.config.metrics.join(","),
          });
          break;
        case "configured": {
          // Logged when something changed; a repeated update is debug noise.
          const text = `${action.config.interval_ms} ${action.config.metrics.join(",")}`;
          (text !== this.#configText ? this.#log.info : this.#log.debug)(
            "LB changed session config",
            {
              lb: this.#machine.lbId,
              interval_ms: action.config.interval_ms,
              metrics: action.config.metrics.join(","),
            },
          );
          this.#configText = text;
          break;
        }
        case "close": {
          this.#closed = true;
          clearTimeout(this.#timer);
          if (action.error) {
            this.#log.warn("closing session: peer broke the protocol", {
              lb: this.#machine.lbId,
              code: action.error.code,
              reason: action.error.message,
            });
          } else {
            this.#log.info("closing session", { lb: this.#machine.lbId, reason: action.reason });
          }
          await this.#channel.close(action.code, action.reason);
          break;
        }
      }
    }
    this.#schedule();
  }

  #schedule(): void {
    const deadline = this.#machine.deadline;
    if (this.#closed || deadline === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = undefined;
      return;
    }
    // In READY the deadline (token expiry) stays put from check to check: keep the timer.
    if (deadline === this.#armedFor) return;
    clearTimeout(this.#timer);
    this.#armedFor = deadline;
    // setTimeout cannot wait longer than 2^31-1 ms; re-arm in steps.
    const delay = Math.min(Math.max(0, deadline - Date.now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#armedFor = undefined;
      void this.#perform(this.#machine.tick(Date.now()));
    }, delay);
  }
}
