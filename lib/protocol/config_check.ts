/**
 * Checking the `config` of a CONFIG_UPDATE: known fields only, integers in
 * range, bounded metric names. A bad config is a {@linkcode ConfigError}
 * naming the field, so the same check serves the codec, the server and the
 * LB's HTTP API.
 *
 * @module
 */

import { ConfigError } from "./errors.ts";
import { describe, isInteger, isNameArray } from "./json_values.ts";
import {
  MAX_HEARTBEAT_MS,
  MAX_INTERVAL_MS,
  MAX_METRIC_NAME_LENGTH,
  MAX_METRIC_NAMES,
  type MessageType,
  MIN_HEARTBEAT_MS,
  MIN_INTERVAL_MS,
  type SessionConfig,
} from "./wire.ts";

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
    if (!isInteger(v) || v < min || v > max) {
      throw fail(
        key,
        `an integer in ${range}`,
        `${key} ${describe(v)} is not an integer in ${range}`,
      );
    }
    out[key] = v;
  }
  if (config.metrics !== undefined) {
    const v = config.metrics;
    const names = "an array of non-empty strings";
    if (!isNameArray(v)) throw fail("metrics", names, `metrics must be ${names}`);
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
        `metric name ${describe(long)} is longer than ${MAX_METRIC_NAME_LENGTH} characters`,
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
