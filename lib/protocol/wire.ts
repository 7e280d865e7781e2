/**
 * QHCP/1 wire vocabulary: constants and the typed shape of the nine messages
 * of QHCP/1 and the two of its negotiated extensions (push and heartbeats).
 *
 * Nothing here does I/O; see `codec.ts` for turning bytes into these types and
 * `docs/PROTOCOL.md` for the normative description.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
/** The only protocol version this implementation speaks. */
export const PROTOCOL_VERSION = 1;

/** TLS ALPN identifier negotiated by both peers. */
export const ALPN = "qhcp/1";

/** UDP port a server agent listens on unless told otherwise. */
export const DEFAULT_SERVER_PORT: number = AGENT_DEFAULTS.port;

/** Bytes of the big-endian length prefix in front of every frame. */
export const FRAME_HEADER_LENGTH = 4;

/** Largest allowed frame payload in bytes (the prefix not included). */
export const MAX_FRAME_LENGTH = 65536;

/** Bounds of `interval_ms` in HELLO and CONFIG_UPDATE. */
export const MIN_INTERVAL_MS = 100;
/** Upper bound of `interval_ms` (one hour). */
export const MAX_INTERVAL_MS = 3_600_000;

/**
 * Most metric names in one CONFIG_UPDATE, and the longest name: a server
 * answers more with BAD_CONFIG (and an LB never stores more), so a config
 * can never grow a later HELLO beyond its frame.
 */
export const MAX_METRIC_NAMES = 64;
/** Longest metric name in a CONFIG_UPDATE, in characters. */
export const MAX_METRIC_NAME_LENGTH = 64;

/** The JWT audience every token must name. */
export const TOKEN_AUDIENCE = "qhcp";

/**
 * Prefix of the audience that binds a token to one server: `qhcp:` followed
 * by the host the LB dialled (a DNS name, or an IP address without brackets).
 * A server that finds one refuses the token unless it names the server.
 */
export const TOKEN_BINDING_PREFIX = "qhcp:";

/** Metrics every HEALTH_RESPONSE carries, whatever was negotiated. */
export const REQUIRED_METRICS = ["cpu_percent", "mem_percent"] as const;

/** The nine message types of QHCP/1, then the two its extensions add (§10). */
export const MESSAGE_TYPES = [
  "HELLO",
  "ACK",
  "HEALTH_REQUEST",
  "HEALTH_RESPONSE",
  "CONFIG_UPDATE",
  "CONFIG_ACK",
  "ERROR",
  "TERMINATE",
  "TERMINATE_ACK",
  "STATUS",
  "HEARTBEAT",
] as const;

/** One of the message type names. */
export type MessageType = typeof MESSAGE_TYPES[number];

/**
 * Capabilities an LB may offer in HELLO and a server accept in ACK (§10):
 * `push`, the server sends STATUS when its status changes; `heartbeat`, it
 * sends a heartbeat every `heartbeat_ms`; `datagram`, heartbeats and probes
 * travel in QUIC DATAGRAM frames (RFC 9221) instead of the control stream.
 */
export const CAPABILITIES = ["push", "heartbeat", "datagram"] as const;

/** One of the capabilities this implementation knows. */
export type Capability = typeof CAPABILITIES[number];

/** Bounds of `heartbeat_ms` in HELLO, ACK and CONFIG_UPDATE. */
export const MIN_HEARTBEAT_MS = 50;
/** Upper bound of `heartbeat_ms` (one minute). */
export const MAX_HEARTBEAT_MS = 60_000;

/** Protocol error codes carried by ERROR messages. */
export const ERROR_CODES = [
  "BAD_FRAME",
  "BAD_MESSAGE",
  "UNEXPECTED_MESSAGE",
  "UNSUPPORTED_VERSION",
  "UNAUTHORIZED",
  "BAD_CONFIG",
  "INTERNAL",
] as const;

/** One of the seven protocol error codes. */
export type ErrorCode = typeof ERROR_CODES[number];

/**
 * QUIC application error codes used in CONNECTION_CLOSE. `NO_ERROR` ends a
 * session after TERMINATE / TERMINATE_ACK; the next seven mirror the ERROR
 * codes in order; the rest name closes that follow no ERROR message.
 */
export const CLOSE_CODES = {
  NO_ERROR: 0x0,
  BAD_FRAME: 0x1,
  BAD_MESSAGE: 0x2,
  UNEXPECTED_MESSAGE: 0x3,
  UNSUPPORTED_VERSION: 0x4,
  UNAUTHORIZED: 0x5,
  BAD_CONFIG: 0x6,
  INTERNAL: 0x7,
  /** No HELLO, ACK or TERMINATE_ACK arrived in time. */
  TIMEOUT: 0x10,
  /** The LB gave up on an unresponsive server (marked DOWN). */
  CHECK_FAILED: 0x11,
  /** The endpoint is shutting down without a TERMINATE exchange. */
  GOING_AWAY: 0x12,
  /** Too many connections or streams; try again later. */
  REFUSED: 0x13,
} as const;

/** Numeric QUIC application close code. */
export type CloseCode = typeof CLOSE_CODES[keyof typeof CLOSE_CODES];

/** Stream reset code for any bidirectional stream after the control stream. */
export const STREAM_REFUSED_CODE = 0x13;

/**
 * Server status reported in HEALTH_RESPONSE: `UP`; `DRAINING` (healthy, but
 * send no new traffic); `FAILING` (the agent runs, but a local check of the
 * application beside it fails: the LB counts the check as failed).
 */
export type ServerStatus = "UP" | "DRAINING" | "FAILING";

/** The result of one local check of the application, reported in HEALTH_RESPONSE. */
export interface LocalCheckResult {
  /** What was checked, e.g. "tcp 127.0.0.1:5432" or "http http://127.0.0.1:8080/healthz". */
  name: string;
  ok: boolean;
  /** Why, in words: "connected in 0.4 ms", "HTTP 503", "connection refused". */
  detail: string;
}

/**
 * A service the agent fronts, advertised in ACK (docs/PROTOCOL.md §11): the
 * name (a DNS label), the port it listens on, and optional tags.
 */
export interface ServiceInfo {
  name: string;
  port: number;
  tags?: string[];
}

/** Most services one ACK advertises, and most tags per service. */
export const MAX_SERVICES = 32;
/** Most tags per service. */
export const MAX_SERVICE_TAGS = 16;

const _DNS_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Whether `text` is a DNS label: letters, digits and inner hyphens, 1..63
 * characters. Service names are labels, so they can be looked up by DNS.
 *
 * @example
 * ```ts
 * import { isDnsLabel } from "./wire.ts";
 * isDnsLabel("web-2"); // true
 * isDnsLabel("-web"); // false
 * ```
 */
export function isDnsLabel(text: string): boolean {
  return _DNS_LABEL.test(text);
}

/**
 * What is wrong with one advertised service, or `undefined` when it is
 * valid: the one rule the codec (ACK) and the agent's `--service` both use.
 */
export function serviceProblem(s: unknown): string | undefined {
  if (typeof s !== "object" || s === null || Array.isArray(s)) return "not an object";
  const o = s as Record<string, unknown>;
  if (typeof o.name !== "string" || !isDnsLabel(o.name)) {
    return "name is not a DNS label (letters, digits, inner hyphens, at most 63)";
  }
  if (!Number.isInteger(o.port) || (o.port as number) < 1 || (o.port as number) > 65535) {
    return "port is not an integer in 1..65535";
  }
  if (o.tags === undefined) return undefined;
  if (!Array.isArray(o.tags) || o.tags.length > MAX_SERVICE_TAGS) {
    return `tags is not an array of at most ${MAX_SERVICE_TAGS}`;
  }
  if (!o.tags.every((t) => typeof t === "string" && t.length > 0 && t.length <= 63)) {
    return "a tag is not a string of 1..63 characters";
  }
  return undefined;
}

/** Reported metric values, by name. */
export type MetricValues = Record<string, number>;

/** The per-session configuration a server holds for one LB. */
export interface SessionConfig {
  /** How often the LB says it will check, in milliseconds. */
  interval_ms: number;
  /** The metric names reported in HEALTH_RESPONSE. */
  metrics: string[];
  /** Time between heartbeats, ms; only in sessions that negotiated `heartbeat`. */
  heartbeat_ms?: number;
}

/** Fields shared by every message. */
export interface MessageBase {
  /** Per-sender sequence number: 1 for the first message, then +1. */
  seq: number;
}

/** LB to server: opens the session and authenticates the LB. */
export interface HelloMessage extends MessageBase {
  type: "HELLO";
  version: number;
  token: string;
  lb_id: string;
  interval_ms?: number;
  metrics?: string[];
  /** Capabilities offered (§10); names this receiver does not know are ignored. */
  capabilities?: string[];
  /** Heartbeat interval asked for, ms, when `heartbeat` is offered. */
  heartbeat_ms?: number;
}

/** Server to LB: accepts HELLO. */
export interface AckMessage extends MessageBase {
  type: "ACK";
  re: number;
  version: number;
  server_id: string;
  metrics: string[];
  /** The offered capabilities the server accepts; present when HELLO offered any. */
  capabilities?: string[];
  /** The heartbeat interval the server will keep, ms; present when it accepts `heartbeat`. */
  heartbeat_ms?: number;
  /** The services the agent fronts (§11); older LBs ignore the field. */
  services?: ServiceInfo[];
}

/** LB to server: asks for health and load. */
export interface HealthRequestMessage extends MessageBase {
  type: "HEALTH_REQUEST";
  metrics?: string[];
}

/** Server to LB: answers HEALTH_REQUEST. */
export interface HealthResponseMessage extends MessageBase {
  type: "HEALTH_RESPONSE";
  re: number;
  status: ServerStatus;
  metrics: MetricValues;
  ts: number;
  /** The agent's local checks of its application, when it runs any. */
  checks?: LocalCheckResult[];
}

/**
 * LB to server: changes the session's configuration. A `config` object with
 * an unknown field or a bad value is answered with ERROR BAD_CONFIG and the
 * session survives.
 */
export interface ConfigUpdateMessage extends MessageBase {
  type: "CONFIG_UPDATE";
  config: Partial<SessionConfig>;
}

/** Server to LB: the effective configuration after a CONFIG_UPDATE. */
export interface ConfigAckMessage extends MessageBase {
  type: "CONFIG_ACK";
  re: number;
  config: SessionConfig;
}

/** Either way: reports a protocol error. */
export interface ErrorMessage extends MessageBase {
  type: "ERROR";
  re?: number;
  code: ErrorCode;
  message: string;
}

/** Either way: asks the peer to end the session. */
export interface TerminateMessage extends MessageBase {
  type: "TERMINATE";
  reason?: string;
}

/** Either way: confirms TERMINATE; both sides then close. */
export interface TerminateAckMessage extends MessageBase {
  type: "TERMINATE_ACK";
  re: number;
}

/**
 * Server to LB, with `push` negotiated: the server's status changed (or the
 * set of failing local checks did). Not a reply; carries what a
 * HEALTH_RESPONSE would.
 */
export interface StatusMessage extends MessageBase {
  type: "STATUS";
  status: ServerStatus;
  metrics: MetricValues;
  ts: number;
  checks?: LocalCheckResult[];
}

/**
 * Server to LB, with `heartbeat` negotiated and `datagram` not: one heartbeat
 * on the control stream (the DATAGRAM form is in `datagram.ts`).
 */
export interface HeartbeatMessage extends MessageBase {
  type: "HEARTBEAT";
  /** The server's heartbeat counter: 1 for the session's first, then +1. */
  hb: number;
  status: ServerStatus;
  cpu_percent: number;
  mem_percent: number;
}

/** Any message. */
export type Message =
  | HelloMessage
  | AckMessage
  | HealthRequestMessage
  | HealthResponseMessage
  | ConfigUpdateMessage
  | ConfigAckMessage
  | ErrorMessage
  | TerminateMessage
  | TerminateAckMessage
  | StatusMessage
  | HeartbeatMessage;

/** Distributes `Omit` over a union so each member keeps its own fields. */
export type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A message before its sender stamps `seq` on it. */
export type UnsequencedMessage = DistributiveOmit<Message, "seq">;

/** Narrows `Message` by its `type`. */
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

/** Returns true when `value` is one of the message type names. */
export function isMessageType(value: unknown): value is MessageType {
  return typeof value === "string" && (MESSAGE_TYPES as readonly string[]).includes(value);
}

/** Returns true when `value` is one of the seven error codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && (ERROR_CODES as readonly string[]).includes(value);
}
