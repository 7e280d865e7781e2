/**
 * What makes a parsed JSON object a QHCP/1 message: a known `type`, a `seq`,
 * a supported `version`, then the fields of its type in wire order, each
 * checked and rebuilt from its known parts. Pure; every failure is a
 * {@linkcode CodecError}.
 *
 * @module
 */

import { validateConfigUpdate } from "./config_check.ts";
import { CodecError } from "./errors.ts";
import { describe, isInteger, isNameArray } from "./json_values.ts";
import {
  isErrorCode,
  isMessageType,
  MAX_HEARTBEAT_MS,
  MAX_INTERVAL_MS,
  MAX_SERVICES,
  type Message,
  type MessageType,
  MIN_HEARTBEAT_MS,
  MIN_INTERVAL_MS,
  PROTOCOL_VERSION,
  REQUIRED_METRICS,
  serviceProblem,
  type SessionConfig,
} from "./wire.ts";

type _Check = (value: unknown) => string | undefined;

interface _Field {
  name: string;
  required: boolean;
  check: _Check;
  /** Rebuilds a checked value with known parts only. */
  canon?: (value: unknown) => unknown;
}

const _int = (min: number, max = Number.MAX_SAFE_INTEGER): _Check => (v) =>
  isInteger(v) && v >= min && v <= max ? undefined : `an integer in ${min}..${max}`;
const _string: _Check = (v) => typeof v === "string" ? undefined : "a string";
const _nonEmptyString: _Check = (v) =>
  typeof v === "string" && v.length > 0 ? undefined : "a non-empty string";
const _names: _Check = (v) => isNameArray(v) ? undefined : "an array of non-empty strings";
const _object: _Check = (v) =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? undefined : "an object";
const _status: _Check = (v) =>
  v === "UP" || v === "DRAINING" || v === "FAILING" ? undefined : '"UP", "DRAINING" or "FAILING"';
const _checks: _Check = (v) =>
  Array.isArray(v) &&
    v.every((c) =>
      typeof c === "object" && c !== null && !Array.isArray(c) &&
      typeof (c as Record<string, unknown>).name === "string" &&
      typeof (c as Record<string, unknown>).ok === "boolean" &&
      typeof (c as Record<string, unknown>).detail === "string"
    )
    ? undefined
    : "an array of {name: string, ok: boolean, detail: string}";
const _errorCode: _Check = (v) => isErrorCode(v) ? undefined : "a known error code";
const _metricValues: _Check = (v) => {
  if (_object(v) !== undefined) return "an object";
  const values = v as Record<string, unknown>;
  for (const [name, value] of Object.entries(values)) {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      return `an object of finite numbers (${JSON.stringify(name)} is ${describe(value)})`;
    }
  }
  for (const name of REQUIRED_METRICS) {
    const value = values[name];
    if (typeof value !== "number" || value < 0 || value > 100) {
      return `an object with ${name} in 0..100`;
    }
  }
  return undefined;
};
const _config: _Check = (v) => {
  if (_object(v) !== undefined) return "an object";
  const c = v as Record<string, unknown>;
  if (_int(MIN_INTERVAL_MS, MAX_INTERVAL_MS)(c.interval_ms) !== undefined) {
    return `an object whose interval_ms is an integer in ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`;
  }
  if (!isNameArray(c.metrics)) return "an object whose metrics is an array of non-empty strings";
  if (c.heartbeat_ms !== undefined && _heartbeatMs(c.heartbeat_ms) !== undefined) {
    return `an object whose heartbeat_ms is an integer in ${MIN_HEARTBEAT_MS}..${MAX_HEARTBEAT_MS}`;
  }
  return undefined;
};
const _heartbeatMs = _int(MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS);
const _percent: _Check = (v) =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 && v <= 100
    ? undefined
    : "a number in 0..100";
const _services: _Check = (v) =>
  Array.isArray(v) && v.length <= MAX_SERVICES && v.every((x) => serviceProblem(x) === undefined)
    ? undefined
    : `an array of at most ${MAX_SERVICES} {name: a DNS label, port: 1..65535, tags?: strings}`;
const _copyServices = (v: unknown) =>
  (v as { name: string; port: number; tags?: string[] }[]).map((x) =>
    x.tags === undefined
      ? { name: x.name, port: x.port }
      : { name: x.name, port: x.port, tags: [...x.tags] }
  );
const _copyChecks = (v: unknown) =>
  (v as { name: string; ok: boolean; detail: string }[]).map((c) => ({
    name: c.name,
    ok: c.ok,
    detail: c.detail,
  }));

const _req = (name: string, check: _Check, canon?: _Field["canon"]): _Field =>
  canon ? { name, required: true, check, canon } : { name, required: true, check };
const _opt = (name: string, check: _Check, canon?: _Field["canon"]): _Field =>
  canon ? { name, required: false, check, canon } : { name, required: false, check };
const _seqField = _int(1);

/** Fields of each message type, in wire order, after `type` and `seq`. */
const _FIELDS: Record<MessageType, readonly _Field[]> = {
  HELLO: [
    _req("version", _int(1)),
    _req("token", _string),
    _req("lb_id", _nonEmptyString),
    _opt("interval_ms", _int(MIN_INTERVAL_MS, MAX_INTERVAL_MS)),
    _opt("metrics", _names),
    _opt("capabilities", _names),
    _opt("heartbeat_ms", _heartbeatMs),
  ],
  ACK: [
    _req("re", _seqField),
    _req("version", _int(1)),
    _req("server_id", _nonEmptyString),
    _req("metrics", _names),
    _opt("capabilities", _names),
    _opt("heartbeat_ms", _heartbeatMs),
    _opt("services", _services, _copyServices),
  ],
  HEALTH_REQUEST: [_opt("metrics", _names)],
  HEALTH_RESPONSE: [
    _req("re", _seqField),
    _req("status", _status),
    _req("metrics", _metricValues),
    _req("ts", _int(0)),
    _opt("checks", _checks, _copyChecks),
  ],
  CONFIG_UPDATE: [_req("config", _object)],
  CONFIG_ACK: [
    _req("re", _seqField),
    _req("config", _config, (v) => {
      const c = v as SessionConfig;
      const out: SessionConfig = { interval_ms: c.interval_ms, metrics: [...c.metrics] };
      if (c.heartbeat_ms !== undefined) out.heartbeat_ms = c.heartbeat_ms;
      return out;
    }),
  ],
  ERROR: [_opt("re", _seqField), _req("code", _errorCode), _req("message", _string)],
  TERMINATE: [_opt("reason", _string)],
  TERMINATE_ACK: [_req("re", _seqField)],
  STATUS: [
    _req("status", _status),
    _req("metrics", _metricValues),
    _req("ts", _int(0)),
    _opt("checks", _checks, _copyChecks),
  ],
  HEARTBEAT: [
    _req("hb", _int(1)),
    _req("status", _status),
    _req("cpu_percent", _percent),
    _req("mem_percent", _percent),
  ],
};

/**
 * Validates a parsed object and rebuilds it with only the known fields.
 *
 * @throws {CodecError} side `remote`: `BAD_MESSAGE` when it is not a valid
 * message, `UNSUPPORTED_VERSION` for a HELLO or ACK of another version,
 * `BAD_CONFIG` for a CONFIG_UPDATE whose config cannot be applied.
 */
export function validateMessage(obj: Record<string, unknown>): Message {
  const type = obj.type;
  if (!isMessageType(type)) {
    // The seq is still reported when it can be read, so that ERROR can carry `re`.
    const seq = _seqField(obj.seq) === undefined ? { seq: obj.seq as number } : {};
    throw new CodecError(
      "BAD_MESSAGE",
      "remote",
      `Cannot decode message: type ${describe(type)} is not a QHCP/1 message type`,
      seq,
    );
  }
  const seq = obj.seq;
  if (_seqField(seq) !== undefined) {
    throw new CodecError(
      "BAD_MESSAGE",
      "remote",
      `Cannot decode ${type}: seq ${describe(seq)} is not an integer >= 1`,
      { messageType: type },
    );
  }
  const where = { messageType: type, seq: seq as number };
  if ((type === "HELLO" || type === "ACK") && isInteger(obj.version)) {
    if (obj.version !== PROTOCOL_VERSION) {
      throw new CodecError(
        "UNSUPPORTED_VERSION",
        "remote",
        `Cannot accept ${type}: version ${obj.version} is not supported, expected ${PROTOCOL_VERSION}`,
        where,
      );
    }
  }
  const out: Record<string, unknown> = { type, seq };
  for (const field of _FIELDS[type]) {
    const value = obj[field.name];
    if (value === undefined) {
      if (field.required) {
        throw new CodecError(
          "BAD_MESSAGE",
          "remote",
          `Cannot decode ${type}: field '${field.name}' is missing`,
          where,
        );
      }
      continue;
    }
    const expected = field.check(value);
    if (expected !== undefined) {
      throw new CodecError(
        "BAD_MESSAGE",
        "remote",
        `Cannot decode ${type}: field '${field.name}' is ${describe(value)}, expected ${expected}`,
        where,
      );
    }
    // JSON.parse built fresh objects, so values are kept without copying;
    // structures with a fixed shape are rebuilt from their known fields.
    out[field.name] = field.canon ? field.canon(value) : value;
  }
  if (type === "CONFIG_UPDATE") {
    out.config = validateConfigUpdate(out.config as Record<string, unknown>, undefined, where);
  }
  return out as unknown as Message;
}
