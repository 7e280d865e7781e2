/**
 * The server agent: accepts LB sessions on a {@linkcode Transport}, runs a
 * {@linkcode ServerSession} per connection and performs its actions (write
 * frames, verify tokens, close, keep the deadline timer).
 *
 * @module
 */

import { AGENT_DEFAULTS, COMMON_DEFAULTS } from "../util/defaults.ts";
import type { _readMessages } from "../transport/read_messages.ts";
import type { TokenVerifier } from "../security/jwt.ts";
import { certificateNames, type SubjectName } from "../security/names.ts";
import { type Logger, rateLimited, silentLogger } from "../util/log.ts";
import type { MetricsSource } from "./metrics.ts";
import {
  type Capability,
  CLOSE_CODES,
  DEFAULT_SERVER_PORT,
  type LocalCheckResult,
  REQUIRED_METRICS,
  type ServerStatus,
  type ServiceInfo,
  type SessionConfig,
} from "../protocol/wire.ts";
import { Admission } from "./admission.ts";
import { settlesWithin } from "../util/timeout.ts";
import { AgentSession } from "./session.ts";
import type { ServerSessionState } from "../protocol/server_session.ts";
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
  /**
   * Extensions accepted when an LB offers them (docs/PROTOCOL.md §10).
   * Default all: push, heartbeat, datagram (where the stack has datagrams).
   * Empty: a plain QHCP/1 agent.
   */
  extensions?: readonly Capability[];
  /** Services this agent fronts, advertised to LBs in ACK. */
  services?: readonly ServiceInfo[];
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
  /** The extensions negotiated (empty for plain QHCP/1, and before READY). */
  extensions: Capability[];
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
  readonly #sessions = new Map<Channel, AgentSession>();
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

  /**
   * The status may have changed (a local check, the drain switch): sessions
   * with push tell their LB at once if it did.
   */
  statusChanged(): void {
    for (const s of this.#sessions.values()) s.statusChanged();
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
    const session = new AgentSession(channel, this.#options, this.#names, this.#peerLog, {
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
