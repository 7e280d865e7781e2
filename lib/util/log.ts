/**
 * A small structured logger: one line per event, text or JSON, to stderr by
 * default. Fields are key=value pairs; values are never secrets (callers pass
 * reasons, not tokens).
 *
 * @module
 */

import { isoTime } from "./iso_time.ts";
import { stderrStream } from "./log_stream.ts";

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Field values attached to a log line. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** A log line before formatting. */
export interface LogRecord {
  time: number;
  level: LogLevel;
  message: string;
  fields: LogFields;
}

/** Writes log lines. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. Default "info". */
  level?: LogLevel;
  /** "text" (default) or "json" (one object per line). */
  format?: "text" | "json";
  /** Receives each formatted line. Default: stderr, through {@linkcode stderrStream}. */
  sink?: (line: string, record: LogRecord) => void;
  /** Clock, for tests. Default Date.now. */
  now?: () => number;
}

const _RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Creates a logger.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger({ level: "info" });
 * log.info("server DOWN", { server: "10.0.0.7:4243", reason: "timeout" });
 * // 2026-11-21T10:00:00.000Z INFO server DOWN server=10.0.0.7:4243 reason=timeout
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = _RANK[options.level ?? "info"];
  const format = options.format ?? "text";
  const now = options.now ?? Date.now;
  const line = (record: LogRecord) => format === "json" ? _json(record) : formatLogRecord(record);
  const dropNotice = (dropped: number) =>
    line({
      time: now(),
      level: "warn",
      message: "log lines dropped: stderr did not keep up",
      fields: { dropped },
    }) + "\n";
  // Never a synchronous write: a reader that stops reading must not stop the program.
  const sink = options.sink ?? ((text: string) => {
    stderrStream.writeDropNotice(dropNotice);
    stderrStream.write(text + "\n");
  });
  const make = (base: LogFields): Logger => {
    const emit = (level: LogLevel, message: string, fields?: LogFields) => {
      if (_RANK[level] < min) return;
      const record: LogRecord = { time: now(), level, message, fields: { ...base, ...fields } };
      sink(line(record), record);
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make({});
}

/** A logger that discards everything. */
export const silentLogger: Logger = createLogger({ sink: () => {}, level: "error" });

/** Formats a record as one text line. */
export function formatLogRecord(record: LogRecord): string {
  const parts = [isoTime(record.time), record.level.toUpperCase(), record.message];
  for (const [k, v] of Object.entries(record.fields)) {
    if (v === undefined) continue;
    const s = String(v);
    // Quoted (and so escaped) whenever a value could break or forge a line.
    // deno-lint-ignore no-control-regex
    parts.push(`${k}=${/[\s"=\u0000-\u001f\u007f]/.test(s) || s === "" ? JSON.stringify(s) : s}`);
  }
  return parts.join(" ");
}

function _json(record: LogRecord): string {
  const out: Record<string, unknown> = {
    time: isoTime(record.time),
    level: record.level,
    msg: record.message,
  };
  for (const [k, v] of Object.entries(record.fields)) if (v !== undefined) out[k] = v;
  return JSON.stringify(out);
}

/**
 * A logger for lines a peer can cause (refused tokens, protocol breaches,
 * failed HTTP requests): each message text is written at most `burst` times
 * per `windowMs`; the first line after a window that dropped some says how
 * many (`suppressed=N`). Children share the budget.
 *
 * @example
 * ```ts
 * import { createLogger, rateLimited } from "./log.ts";
 * const peerLog = rateLimited(createLogger(), 10_000, 5);
 * for (let i = 0; i < 1000; i++) peerLog.warn("LB refused", { reason: "bad token" }); // 5 lines
 * ```
 */
export function rateLimited(
  log: Logger,
  windowMs: number,
  burst: number,
  now: () => number = Date.now,
): Logger {
  const windows = new Map<string, { start: number; count: number }>();
  const wrap = (inner: Logger): Logger => {
    const limited = (level: LogLevel) => (message: string, fields?: LogFields) => {
      const t = now();
      let w = windows.get(message);
      let suppressed = 0;
      if (!w || t - w.start >= windowMs) {
        suppressed = w ? Math.max(0, w.count - burst) : 0;
        w = { start: t, count: 0 };
        windows.set(message, w);
      }
      if (++w.count > burst) return;
      inner[level](message, suppressed > 0 ? { ...fields, suppressed } : fields);
    };
    return {
      debug: limited("debug"),
      info: limited("info"),
      warn: limited("warn"),
      error: limited("error"),
      child: (fields) => wrap(inner.child(fields)),
    };
  };
  return wrap(log);
}
