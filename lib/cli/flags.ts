/**
 * Command-line helpers shared by `lb.ts` and `server.ts`: a flag table that
 * drives both the parser and `--help` (our own, so that the agent loads no
 * Node module), and value checks whose errors name the flag.
 *
 * @module
 */

import { CERTS_DIR_ENV } from "../security/files.ts";
import { COMMON_DEFAULTS, seconds } from "../util/defaults.ts";
import type { LogLevel } from "../util/log.ts";
import { QUIC_STACKS, type QuicStack } from "../transport/transport.ts";
import { CAPABILITIES, type Capability } from "../protocol/wire.ts";

/** A bad command line; the entry point prints it on one line and exits 2. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

/** One flag. */
export interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  /** "string" takes a value; "boolean" does not. */
  type: "string" | "boolean";
  /** Placeholder shown in help, e.g. "SECONDS". */
  arg?: string;
  /** Default shown in help (the parser does not apply it). */
  default?: string;
  /** One-line description. */
  help: string;
  /** Short alias, one letter. */
  short?: string;
  /** The flag may be given more than once; its value is then an array. */
  multiple?: boolean;
}

/** One flag's parsed value: a string, a boolean switch, or every value of a repeatable flag. */
export type FlagValue = string | boolean | string[] | undefined;

/** Parsed flags by name. */
export type ParsedFlags = Record<string, FlagValue>;

/**
 * Parses `args` against `specs`. Unknown flags, missing values and stray
 * positional arguments raise {@linkcode CliError} naming the flag.
 */
export function parseFlags(specs: readonly FlagSpec[], args: readonly string[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.flatMap((s) => (s.short ? [[s.short, s] as const] : [])));
  const out: ParsedFlags = {};
  const put = (spec: FlagSpec, value: string | boolean): void => {
    if (spec.multiple && typeof value === "string") {
      const before = out[spec.name];
      out[spec.name] = [...(Array.isArray(before) ? before : []), value];
    } else {
      out[spec.name] = value;
    }
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const long = arg.startsWith("--") && arg.length > 2;
    if (!long && !(arg.startsWith("-") && arg.length > 1 && arg !== "--")) {
      throw new CliError(`unexpected argument ${JSON.stringify(arg)} (flags start with --)`);
    }
    // --name, --name=value, -x, -xVALUE
    const eq = long ? arg.indexOf("=") : -1;
    const key = long ? arg.slice(2, eq < 0 ? undefined : eq) : arg.slice(1, 2);
    const spec = long ? byName.get(key) : byShort.get(key);
    const shown = long ? `--${key}` : `-${key}`;
    if (!spec) throw new CliError(`unknown flag ${shown} (see --help)`);
    const inline = long ? (eq < 0 ? undefined : arg.slice(eq + 1)) : arg.slice(2) || undefined;
    if (spec.type === "boolean") {
      if (inline !== undefined) throw new CliError(`--${spec.name}: takes no value`);
      put(spec, true);
      continue;
    }
    if (inline !== undefined) {
      put(spec, inline);
      continue;
    }
    const next = args[i + 1];
    if (next === undefined) throw new CliError(`--${spec.name}: expected a value`);
    if (next.startsWith("-") && next !== "-") {
      throw new CliError(
        `--${spec.name}: expected a value (write --${spec.name}=VALUE for a value starting with -)`,
      );
    }
    put(spec, next);
    i++;
  }
  return out;
}

/** Formats the usage text. */
export function formatUsage(program: string, summary: string, specs: readonly FlagSpec[]): string {
  const lines = [`Usage: ${program} [flags]`, "", summary, "", "Flags:"];
  const left = specs.map((s) => {
    const short = s.short ? `-${s.short}, ` : "    ";
    return `  ${short}--${s.name}${s.type === "string" ? ` ${s.arg ?? "VALUE"}` : ""}`;
  });
  const width = Math.max(...left.map((l) => l.length)) + 2;
  specs.forEach((s, i) => {
    const def = s.default === undefined ? "" : ` (default: ${s.default})`;
    const again = s.multiple ? " (repeatable)" : "";
    lines.push(`${left[i]!.padEnd(width)}${s.help}${def}${again}`);
  });
  return lines.join("\n");
}

/** Reads a duration in seconds (decimals allowed) and returns milliseconds. */
export function parseSeconds(
  flag: string,
  value: FlagValue,
  fallbackMs: number,
  range: { min: number; max: number },
): number {
  if (value === undefined) return fallbackMs;
  const text = String(value).trim();
  const n = Number(text);
  if (
    text === "" || !/^\d*\.?\d+$/.test(text) || !Number.isFinite(n) || n < range.min ||
    n > range.max
  ) {
    throw new CliError(
      `--${flag}: expected seconds in ${range.min}..${range.max}, got ${
        JSON.stringify(String(value))
      }`,
    );
  }
  return Math.round(n * 1000);
}

/** Reads an integer in a range. */
export function parseInteger(
  flag: string,
  value: FlagValue,
  fallback: number,
  range: { min: number; max: number },
): number {
  if (value === undefined) return fallback;
  const text = String(value).trim();
  const n = Number(text);
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(n) || n < range.min || n > range.max) {
    throw new CliError(
      `--${flag}: expected an integer in ${range.min}..${range.max}, got ${
        JSON.stringify(String(value))
      }`,
    );
  }
  return n;
}

/** Reads one of a fixed set of words. */
export function parseChoice<T extends string>(
  flag: string,
  value: FlagValue,
  fallback: T,
  choices: readonly T[],
): T {
  if (value === undefined) return fallback;
  const text = String(value);
  if (!(choices as readonly string[]).includes(text)) {
    throw new CliError(
      `--${flag}: expected one of ${choices.join(", ")}, got ${JSON.stringify(text)}`,
    );
  }
  return text as T;
}

/** Reads a comma-separated list of non-empty names. */
export function parseList(flag: string, value: FlagValue): string[] | undefined {
  if (value === undefined) return undefined;
  const items = String(value).split(",").map((s) => s.trim());
  if (items.some((s) => s === "")) {
    throw new CliError(
      `--${flag}: expected a comma-separated list, got ${JSON.stringify(String(value))}`,
    );
  }
  return items;
}

/** Reads a list of QHCP extensions; `none` is the empty list. Default all of them. */
export function parseExtensions(flag: string, value: FlagValue): Capability[] {
  if (value === "none") return [];
  const names = parseList(flag, value) ?? [...CAPABILITIES];
  const unknown = names.find((n) => !(CAPABILITIES as readonly string[]).includes(n));
  if (unknown !== undefined) {
    throw new CliError(
      `--${flag}: unknown extension ${JSON.stringify(unknown)}, expected ${
        CAPABILITIES.join(", ")
      } or none`,
    );
  }
  return [...new Set(names as Capability[])];
}

/** Reads a non-empty string flag. */
export function parseText(flag: string, value: FlagValue): string | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (text.trim() === "") throw new CliError(`--${flag}: expected a value, got an empty string`);
  return text;
}

/** Every value of a repeatable flag (an empty list when absent). */
export function parseRepeated(flag: string, value: FlagValue): string[] {
  if (value === undefined) return [];
  const items = Array.isArray(value) ? value : [String(value)];
  if (items.some((s) => s.trim() === "")) {
    throw new CliError(`--${flag}: expected a value, got an empty string`);
  }
  return items;
}

/** Rejects two flags given together. */
export function exclusive(flags: ParsedFlags, a: string, b: string): void {
  if (flags[a] !== undefined && flags[b] !== undefined) {
    throw new CliError(`--${a} and --${b} cannot be used together`);
  }
}

/** Flags both programs take, at the end of each program's table. */
export const COMMON_FLAGS: readonly FlagSpec[] = [
  {
    name: "certs-dir",
    type: "string",
    arg: "DIR",
    default: `$${CERTS_DIR_ENV} or ./${COMMON_DEFAULTS.certsDir}`,
    help: "where default certificates and secret live",
  },
  {
    name: "idle-timeout",
    type: "string",
    arg: "SECONDS",
    default: seconds(COMMON_DEFAULTS.idleTimeoutMs),
    help: "QUIC idle timeout of a session",
  },
  {
    name: "quic",
    type: "string",
    arg: "STACK",
    default: COMMON_DEFAULTS.quic,
    help:
      "QUIC stack: matrixai (@matrixai/quic) or native (Deno's own, about 4x faster and cheaper per check)",
  },
  {
    name: "extensions",
    type: "string",
    arg: "NAME,...",
    default: CAPABILITIES.join(","),
    help:
      "QHCP extensions to negotiate: push, heartbeat, datagram, or none for plain QHCP/1 (docs/PROTOCOL.md §10)",
  },
  {
    name: "log-level",
    type: "string",
    arg: "LEVEL",
    default: COMMON_DEFAULTS.logLevel,
    help: "debug, info, warn or error",
  },
  {
    name: "log-format",
    type: "string",
    arg: "FORMAT",
    default: COMMON_DEFAULTS.logFormat,
    help: "text or json",
  },
  { name: "version", type: "boolean", help: "print the version and exit" },
  { name: "help", type: "boolean", short: "h", help: "print this help and exit" },
];

/** The settings of {@linkcode COMMON_FLAGS}. */
export interface CommonConfig {
  certsDir: string | undefined;
  idleTimeoutMs: number;
  quic: QuicStack;
  /** Extensions to offer (LB) or accept (agent); empty for plain QHCP/1. */
  extensions: Capability[];
  logLevel: LogLevel;
  logFormat: "text" | "json";
  help: boolean;
  version: boolean;
}

/** Reads {@linkcode COMMON_FLAGS}. */
export function parseCommon(f: ParsedFlags): CommonConfig {
  return {
    certsDir: parseText("certs-dir", f["certs-dir"]),
    idleTimeoutMs: parseSeconds("idle-timeout", f["idle-timeout"], COMMON_DEFAULTS.idleTimeoutMs, {
      min: 1,
      max: 3600,
    }),
    quic: parseChoice("quic", f.quic, COMMON_DEFAULTS.quic, QUIC_STACKS),
    extensions: parseExtensions("extensions", f.extensions),
    logLevel: parseChoice(
      "log-level",
      f["log-level"],
      COMMON_DEFAULTS.logLevel,
      ["debug", "info", "warn", "error"] as const,
    ),
    logFormat: parseChoice(
      "log-format",
      f["log-format"],
      COMMON_DEFAULTS.logFormat,
      ["text", "json"] as const,
    ),
    help: f.help === true,
    version: f.version === true,
  };
}

/** This machine's host name, or `fallback` when it cannot be read. */
export function hostname(fallback = "unknown"): string {
  try {
    return Deno.hostname();
  } catch {
    return fallback;
  }
}
