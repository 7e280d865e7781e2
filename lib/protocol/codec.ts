/**
 * The QHCP/1 message codec: pure functions from bytes to typed messages and
 * back. No I/O and no clock; every failure is a {@linkcode CodecError}.
 *
 * A frame is a 4-byte big-endian length L (1 <= L <= 65536) followed by L
 * bytes of UTF-8 JSON holding one object. Failures of that framing are
 * `BAD_FRAME`; a JSON object that is not a valid message is `BAD_MESSAGE`; a
 * HELLO or ACK for another protocol version is `UNSUPPORTED_VERSION`.
 *
 * @module
 */

import { CodecError, ConfigError } from "./errors.ts";
import { FrameDecoder } from "./framing.ts";
import {
  FRAME_HEADER_LENGTH,
  isErrorCode,
  isMessageType,
  MAX_FRAME_LENGTH,
  MAX_HEARTBEAT_MS,
  MAX_INTERVAL_MS,
  MAX_METRIC_NAME_LENGTH,
  MAX_METRIC_NAMES,
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

export { CodecError };
export { FrameDecoder } from "./framing.ts";

const _encoder = new TextEncoder();
const _decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Encodes one message as a complete frame (length prefix and JSON payload).
 *
 * Only the fields a message type defines are written, in a fixed order, so
 * stray properties on the input never reach the wire.
 *
 * @throws {CodecError} `BAD_MESSAGE` (side `local`) when the message is not
 * valid or its JSON exceeds {@linkcode MAX_FRAME_LENGTH} bytes.
 *
 * @example
 * ```ts
 * import { encodeMessage } from "./codec.ts";
 * const bytes = encodeMessage({ type: "HEALTH_REQUEST", seq: 2 });
 * // bytes: 00 00 00 21 {"type":"HEALTH_REQUEST","seq":2}
 * ```
 */
export function encodeMessage(message: Message): Uint8Array {
  let canonical: Message;
  try {
    canonical = _validateMessage(message as unknown as Record<string, unknown>);
  } catch (e) {
    if (e instanceof CodecError) {
      const why = e.message.replace(/^Cannot (decode|accept) [A-Z_]+: /, "");
      throw new CodecError("BAD_MESSAGE", "local", `Cannot encode ${message.type}: ${why}`);
    }
    throw e;
  }
  const payload = _encoder.encode(JSON.stringify(canonical));
  if (payload.length > MAX_FRAME_LENGTH) {
    throw new CodecError(
      "BAD_MESSAGE",
      "local",
      `Cannot encode ${message.type}: length ${payload.length} exceeds ${MAX_FRAME_LENGTH}`,
    );
  }
  const frame = new Uint8Array(FRAME_HEADER_LENGTH + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, FRAME_HEADER_LENGTH);
  return frame;
}

/**
 * Decodes a frame payload (the bytes after the length prefix) into a message.
 *
 * @throws {CodecError} side `remote`: `BAD_FRAME` when the payload is empty,
 * too long, not UTF-8 or not one JSON object; `BAD_MESSAGE` when the object is
 * not a valid message; `UNSUPPORTED_VERSION` for a HELLO or ACK whose
 * `version` is not 1.
 */
export function decodeMessage(payload: Uint8Array): Message {
  if (payload.length === 0) {
    throw new CodecError("BAD_FRAME", "remote", "Cannot decode frame: length 0 is below 1");
  }
  if (payload.length > MAX_FRAME_LENGTH) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: length ${payload.length} exceeds ${MAX_FRAME_LENGTH}`,
    );
  }
  let text: string;
  try {
    text = _decoder.decode(payload);
  } catch {
    throw new CodecError("BAD_FRAME", "remote", "Cannot decode frame: payload is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: payload is not JSON (${(e as Error).message})`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: payload is JSON ${_describe(value)}, expected an object`,
    );
  }
  return _validateMessage(value as Record<string, unknown>);
}

/**
 * Decodes exactly one complete frame, length prefix included. Convenient for
 * tests and for datagram-style callers; streams use {@linkcode FrameDecoder}.
 *
 * @throws {CodecError} `BAD_FRAME` when the bytes are not exactly one frame,
 * or any error of {@linkcode decodeMessage}.
 */
export function decodeFrame(bytes: Uint8Array): Message {
  const decoder = new FrameDecoder();
  decoder.push(bytes);
  const payload = decoder.next();
  if (payload === null) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: truncated, ${bytes.length} bytes hold no complete frame`,
    );
  }
  if (decoder.buffered > 0) {
    throw new CodecError(
      "BAD_FRAME",
      "remote",
      `Cannot decode frame: ${decoder.buffered} bytes follow the frame`,
    );
  }
  return decodeMessage(payload);
}

/**
 * Checks the content of a CONFIG_UPDATE's `config` object and returns it in
 * canonical form (known fields only, metric names de-duplicated).
 *
 * The codec calls it without `knownMetrics` while decoding, so a bad config
 * is reported as `BAD_CONFIG` (which keeps the session) rather than
 * `BAD_MESSAGE`; the server calls it again with the names it can report.
 * `heartbeat_ms` passes here; a server refuses it (BAD_CONFIG) in a session
 * that did not negotiate `heartbeat`.
 *
 * @param config the received `config` object
 * @param knownMetrics metric names the server can report; omit to skip that check
 * @throws {ConfigError} (a `BAD_CONFIG` {@linkcode CodecError}) naming the first bad field
 */
export function validateConfigUpdate(
  config: Record<string, unknown>,
  knownMetrics?: readonly string[],
  where: { messageType?: MessageType; seq?: number } = {},
): Partial<SessionConfig> {
  const fail = (field: string, expected: string, message: string) =>
    new ConfigError(field, expected, `Cannot apply config: ${message}`, where);
  const out: Partial<SessionConfig> = {};
  for (const key of Object.keys(config)) {
    if (key !== "interval_ms" && key !== "metrics" && key !== "heartbeat_ms") {
      throw fail(
        key,
        "absent: known fields are interval_ms, metrics and heartbeat_ms",
        `unknown field '${key}', expected interval_ms, metrics or heartbeat_ms`,
      );
    }
  }
  for (const [key, min, max] of _CONFIG_RANGES) {
    const v = config[key];
    if (v === undefined) continue;
    const range = `${min}..${max}`;
    if (!_isInteger(v) || v < min || v > max) {
      throw fail(
        key,
        `an integer in ${range}`,
        `${key} ${_describe(v)} is not an integer in ${range}`,
      );
    }
    out[key] = v;
  }
  if (config.metrics !== undefined) {
    const v = config.metrics;
    const names = "an array of non-empty strings";
    if (!_isNameArray(v)) throw fail("metrics", names, `metrics must be ${names}`);
    if (v.length > MAX_METRIC_NAMES) {
      throw fail(
        "metrics",
        `an array of at most ${MAX_METRIC_NAMES} names`,
        `metrics has ${v.length} names, expected at most ${MAX_METRIC_NAMES}`,
      );
    }
    const long = v.find((name) => name.length > MAX_METRIC_NAME_LENGTH);
    if (long !== undefined) {
      throw fail(
        "metrics",
        `an array of names no longer than ${MAX_METRIC_NAME_LENGTH} characters`,
        `metric name ${_describe(long)} is longer than ${MAX_METRIC_NAME_LENGTH} characters`,
      );
    }
    const unknown = knownMetrics ? v.filter((name) => !knownMetrics.includes(name)) : [];
    if (unknown.length > 0) {
      throw fail(
        "metrics",
        `names of metrics this server reports: ${knownMetrics!.join(", ")}`,
        `unknown metric ${JSON.stringify(unknown[0])}, expected one of ${knownMetrics!.join(", ")}`,
      );
    }
    out.metrics = [...new Set(v)];
  }
  return out;
}

/** The integer fields of a config with their bounds. */
const _CONFIG_RANGES = [
  ["interval_ms", MIN_INTERVAL_MS, MAX_INTERVAL_MS],
  ["heartbeat_ms", MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS],
] as const;

// --- validation -------------------------------------------------------------

type _Check = (value: unknown) => string | undefined;

interface _Field {
  name: string;
  required: boolean;
  check: _Check;
  /** Rebuilds a checked value with known parts only. */
  canon?: (value: unknown) => unknown;
}

const _int = (min: number, max = Number.MAX_SAFE_INTEGER): _Check => (v) =>
  _isInteger(v) && v >= min && v <= max ? undefined : `an integer in ${min}..${max}`;
const _string: _Check = (v) => typeof v === "string" ? undefined : "a string";
const _nonEmptyString: _Check = (v) =>
  typeof v === "string" && v.length > 0 ? undefined : "a non-empty string";
const _names: _Check = (v) => _isNameArray(v) ? undefined : "an array of non-empty strings";
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
      return `an object of finite numbers (${JSON.stringify(name)} is ${_describe(value)})`;
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
  if (!_isNameArray(c.metrics)) return "an object whose metrics is an array of non-empty strings";
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

/** Validates a parsed object and rebuilds it with only the known fields. */
function _validateMessage(obj: Record<string, unknown>): Message {
  const type = obj.type;
  if (!isMessageType(type)) {
    // The seq is still reported when it can be read, so that ERROR can carry `re`.
    const seq = _seqField(obj.seq) === undefined ? { seq: obj.seq as number } : {};
    throw new CodecError(
      "BAD_MESSAGE",
      "remote",
      `Cannot decode message: type ${_describe(type)} is not a QHCP/1 message type`,
      seq,
    );
  }
  const seq = obj.seq;
  if (_seqField(seq) !== undefined) {
    throw new CodecError(
      "BAD_MESSAGE",
      "remote",
      `Cannot decode ${type}: seq ${_describe(seq)} is not an integer >= 1`,
      { messageType: type },
    );
  }
  const where = { messageType: type, seq: seq as number };
  if ((type === "HELLO" || type === "ACK") && _isInteger(obj.version)) {
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
        `Cannot decode ${type}: field '${field.name}' is ${_describe(value)}, expected ${expected}`,
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

function _isInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v);
}

function _isNameArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string" && x.length > 0);
}

/** Short description of a JSON value for error messages. */
function _describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "undefined":
      return "missing";
    case "string": {
      const s = JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
      return `string ${s}`;
    }
    case "number":
    case "boolean":
      return `${typeof value} ${String(value)}`;
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}
