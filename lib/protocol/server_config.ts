/**
 * What an agent offers its sessions and how each session's configuration
 * follows from it: the options of {@linkcode ServerSession} with their
 * defaults, the extensions accepted from a HELLO and the ACK that says so, and
 * the config that HELLO and CONFIG_UPDATE set.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import { validateConfigUpdate } from "./codec.ts";
import { ConfigError, type QhcpError } from "./errors.ts";
import type { HealthSnapshot } from "./server_report.ts";
import {
  type AckMessage,
  type Capability,
  type HelloMessage,
  MAX_HEARTBEAT_MS,
  PROTOCOL_VERSION,
  REQUIRED_METRICS,
  type ServiceInfo,
  type SessionConfig,
} from "./wire.ts";

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

/** {@linkcode ServerSessionOptions} with every default filled in. */
export type _ServerOptions =
  & Required<Omit<ServerSessionOptions, "health">>
  & Pick<ServerSessionOptions, "health">;

/** Fills in the defaults of the options left out. */
export function _withDefaults(options: ServerSessionOptions): _ServerOptions {
  return {
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
}

/** The config of a session before HELLO: the defaults. */
export function _defaultConfig(options: _ServerOptions): SessionConfig {
  return {
    interval_ms: options.defaultIntervalMs,
    metrics: _withRequired(options.defaultMetrics, options.availableMetrics),
  };
}

/** The extensions to accept: offered, known here, and `datagram` only with `heartbeat`. */
export function _negotiate(
  options: _ServerOptions,
  offered: readonly string[] | undefined,
): Set<Capability> {
  const caps = new Set(options.capabilities.filter((c) => offered?.includes(c)));
  if (!caps.has("heartbeat")) caps.delete("datagram");
  return caps;
}

/** The config an accepted HELLO sets, with the extensions `caps` negotiated. */
export function _helloConfig(
  options: _ServerOptions,
  hello: HelloMessage,
  caps: ReadonlySet<Capability>,
): SessionConfig {
  const config: SessionConfig = {
    interval_ms: hello.interval_ms ?? options.defaultIntervalMs,
    metrics: _withRequired(
      hello.metrics?.filter((m) => options.availableMetrics.includes(m)) ??
        options.defaultMetrics,
      options.availableMetrics,
    ),
  };
  if (caps.has("heartbeat")) {
    config.heartbeat_ms = _heartbeatMs(options, hello.heartbeat_ms ?? options.defaultHeartbeatMs);
  }
  return config;
}

/** The ACK (without its `seq`) that answers an accepted HELLO with what was negotiated. */
export function _ack(
  options: _ServerOptions,
  hello: HelloMessage,
  caps: ReadonlySet<Capability>,
  config: SessionConfig,
): Omit<AckMessage, "seq"> {
  // A plain QHCP/1 HELLO gets a plain ACK: no extension field at all.
  const heartbeat = config.heartbeat_ms;
  return {
    type: "ACK",
    re: hello.seq,
    version: PROTOCOL_VERSION,
    server_id: options.serverId,
    metrics: [...config.metrics],
    ...(hello.capabilities === undefined ? {} : { capabilities: [...caps] }),
    ...(heartbeat === undefined ? {} : { heartbeat_ms: heartbeat }),
    // Not negotiated: an LB that does not know the field ignores it (§3).
    ...(options.services.length === 0 ? {} : { services: options.services.map((x) => ({ ...x })) }),
  };
}

/**
 * The config after a CONFIG_UPDATE carrying `change`, or the error to answer
 * with when the change is invalid or needs an extension not negotiated.
 */
export function _updatedConfig(
  options: _ServerOptions,
  caps: ReadonlySet<Capability>,
  current: SessionConfig,
  change: unknown,
): { config: SessionConfig } | { error: QhcpError } {
  let valid: Partial<SessionConfig>;
  try {
    valid = validateConfigUpdate(change as Record<string, unknown>, options.availableMetrics);
  } catch (e) {
    return { error: e as QhcpError };
  }
  if (valid.heartbeat_ms !== undefined && !caps.has("heartbeat")) {
    return {
      error: new ConfigError(
        "heartbeat_ms",
        "absent: this session did not negotiate heartbeat",
        "Cannot apply config: heartbeat_ms needs the heartbeat capability, which this session did not negotiate",
      ),
    };
  }
  const heartbeat = valid.heartbeat_ms === undefined
    ? current.heartbeat_ms
    : _heartbeatMs(options, valid.heartbeat_ms);
  return {
    config: {
      interval_ms: valid.interval_ms ?? current.interval_ms,
      metrics: valid.metrics === undefined
        ? current.metrics
        : _withRequired(valid.metrics, options.availableMetrics),
      ...(heartbeat === undefined ? {} : { heartbeat_ms: heartbeat }),
    },
  };
}

/** The heartbeat interval kept when the LB asks for `asked` ms. */
function _heartbeatMs(options: _ServerOptions, asked: number): number {
  return Math.min(MAX_HEARTBEAT_MS, Math.max(options.minHeartbeatMs, asked));
}

/** Adds cpu_percent and mem_percent and drops names this server cannot report. */
export function _withRequired(names: readonly string[], available: readonly string[]): string[] {
  const out = new Set<string>(REQUIRED_METRICS);
  for (const name of names) if (available.includes(name)) out.add(name);
  return [...out];
}
