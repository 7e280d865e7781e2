/**
 * Command line of the server agent (`server.ts`): flag table, parsing and
 * validation into a {@linkcode ServerConfig}.
 *
 * @module
 */

import { AGENT_DEFAULTS, seconds } from "../util/defaults.ts";
import type { LocalCheckSpec } from "../agent/local_checks.ts";
import {
  CliError,
  COMMON_FLAGS,
  type CommonConfig,
  exclusive,
  type FlagSpec,
  formatUsage,
  hostname,
  parseCommon,
  parseFlags,
  parseInteger,
  parseList,
  parseRepeated,
  parseSeconds,
  parseText,
} from "./flags.ts";
import { SYSTEM_METRICS } from "../agent/metrics.ts";
import { MAX_SERVICES, type ServiceInfo, serviceProblem } from "../protocol/wire.ts";

/** Everything `server.ts` needs, with defaults applied. */
export interface ServerConfig extends CommonConfig {
  host: string;
  port: number;
  keyFile: string | undefined;
  certFile: string | undefined;
  jwtSecretFile: string | undefined;
  jwtPublicKeyFile: string | undefined;
  jwtLeewaySec: number;
  /** Refuse tokens not bound to this server. */
  requireBoundTokens: boolean;
  serverId: string;
  helloTimeoutMs: number;
  maxUnauthenticated: number;
  drainFile: string | undefined;
  localChecks: LocalCheckSpec[];
  localCheckIntervalMs: number;
  localCheckTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxSessionsPerLb: number;
  sessionRate: number;
  sampleIntervalMs: number;
  defaultMetrics: string[];
  /** Services this agent fronts (--service). */
  services: ServiceInfo[];
}

/** The server's flags, in help order. */
export const SERVER_FLAGS: readonly FlagSpec[] = [
  {
    name: "server-ip",
    type: "string",
    arg: "ADDR",
    default: AGENT_DEFAULTS.host,
    help: "address to listen on (use :: for IPv6)",
  },
  {
    name: "server-port",
    type: "string",
    arg: "PORT",
    default: String(AGENT_DEFAULTS.port),
    help: "UDP port to listen on (0: any free port)",
  },
  {
    name: "key-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/server.key",
    help: "server private key (PEM)",
  },
  {
    name: "cert-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/server.pem",
    help: "server certificate chain (PEM)",
  },
  {
    name: "jwt-secret-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/jwt.secret",
    help: "HS256 shared secret (at least 32 bytes)",
  },
  {
    name: "jwt-public-key-file",
    type: "string",
    arg: "PATH",
    help: "Ed25519 public key (SPKI PEM): accept EdDSA tokens only",
  },
  {
    name: "jwt-leeway",
    type: "string",
    arg: "SECONDS",
    default: String(AGENT_DEFAULTS.jwtLeewaySec),
    help: "clock leeway for token times",
  },
  {
    name: "require-bound-tokens",
    type: "boolean",
    help:
      "refuse tokens that are not bound to this server (LBs before token binding send such tokens)",
  },
  {
    name: "server-id",
    type: "string",
    arg: "ID",
    default: "<hostname>",
    help: "id sent to LBs in ACK",
  },
  {
    name: "hello-timeout",
    type: "string",
    arg: "SECONDS",
    default: seconds(AGENT_DEFAULTS.helloTimeoutMs),
    help: "close connections that send no HELLO within this",
  },
  {
    name: "max-unauthenticated",
    type: "string",
    arg: "N",
    default: String(AGENT_DEFAULTS.maxUnauthenticated),
    help: "connections allowed at once before HELLO; more are refused",
  },
  {
    name: "max-connections",
    type: "string",
    arg: "N",
    default: String(AGENT_DEFAULTS.maxConnections),
    help: "connections allowed at once in all; more are refused",
  },
  {
    name: "max-connections-per-address",
    type: "string",
    arg: "N",
    default: String(AGENT_DEFAULTS.maxConnectionsPerAddress),
    help: "connections allowed at once from one client address; more are refused",
  },
  {
    name: "max-sessions-per-lb",
    type: "string",
    arg: "N",
    default: String(AGENT_DEFAULTS.maxSessionsPerLb),
    help:
      "authenticated sessions allowed at once per LB id (at the cap, an LB's newest replaces its oldest from the same address)",
  },
  {
    name: "session-rate",
    type: "string",
    arg: "N",
    default: String(AGENT_DEFAULTS.sessionRate),
    help: "messages per second one LB session may send (bursts of 5 s); a session beyond is closed",
  },
  {
    name: "drain-file",
    type: "string",
    arg: "PATH",
    help: "report DRAINING while this file exists (kill -USR1 also toggles draining)",
  },
  {
    name: "service",
    type: "string",
    arg: "NAME:PORT[:TAG,...]",
    multiple: true,
    help:
      "a service this host runs, advertised to LBs (DNS, /api/services, pick by service); repeatable",
  },
  {
    name: "check-tcp",
    type: "string",
    arg: "HOST:PORT",
    multiple: true,
    help: "local check: the application accepts TCP connections here",
  },
  {
    name: "check-http",
    type: "string",
    arg: "URL",
    multiple: true,
    help: "local check: GET answers 2xx or 3xx",
  },
  {
    name: "local-check-interval",
    type: "string",
    arg: "SECONDS",
    default: seconds(AGENT_DEFAULTS.localCheckIntervalMs),
    help: "time between rounds of local checks",
  },
  {
    name: "local-check-timeout",
    type: "string",
    arg: "SECONDS",
    default: seconds(AGENT_DEFAULTS.localCheckTimeoutMs),
    help: "a local check with no result within this fails",
  },
  {
    name: "sample-interval",
    type: "string",
    arg: "SECONDS",
    default: seconds(AGENT_DEFAULTS.sampleIntervalMs),
    help: "metrics are sampled at most this often, when an LB asks (a check, a pushed status)",
  },
  {
    name: "metrics",
    type: "string",
    arg: "NAME,...",
    default: AGENT_DEFAULTS.metrics.join(","),
    help: "metrics reported when an LB asks for none",
  },
  ...COMMON_FLAGS,
];

/** Usage text for `--help`. */
export function serverUsage(program = "qhcp-server"): string {
  const width = Math.max(...Object.keys(SYSTEM_METRICS).map((k) => k.length)) + 2;
  const names = Object.entries(SYSTEM_METRICS).map(([k, v]) => `  ${k.padEnd(width)}${v}`);
  return formatUsage(
    program,
    "QHCP server agent: answers load balancers' health checks over QUIC with CPU, memory\n" +
      "and other metrics, after authenticating each LB by JWT.",
    SERVER_FLAGS,
  ) + "\n\nMetrics:\n" + names.join("\n");
}

/**
 * Parses the server's command line.
 *
 * @throws {CliError} naming the flag with a bad value
 */
export function parseServerArgs(args: readonly string[]): ServerConfig {
  const f = parseFlags(SERVER_FLAGS, args);
  exclusive(f, "jwt-secret-file", "jwt-public-key-file");
  if ((f["key-file"] === undefined) !== (f["cert-file"] === undefined)) {
    throw new CliError("--key-file and --cert-file must be given together");
  }
  const metrics = parseList("metrics", f.metrics) ?? [...AGENT_DEFAULTS.metrics];
  const unknown = metrics.find((m) => !(m in SYSTEM_METRICS));
  if (unknown) {
    throw new CliError(
      `--metrics: unknown metric ${JSON.stringify(unknown)} (see --help for the list)`,
    );
  }
  return {
    host: parseText("server-ip", f["server-ip"]) ?? AGENT_DEFAULTS.host,
    port: parseInteger("server-port", f["server-port"], AGENT_DEFAULTS.port, {
      min: 0,
      max: 65535,
    }),
    keyFile: parseText("key-file", f["key-file"]),
    certFile: parseText("cert-file", f["cert-file"]),
    jwtSecretFile: parseText("jwt-secret-file", f["jwt-secret-file"]),
    jwtPublicKeyFile: parseText("jwt-public-key-file", f["jwt-public-key-file"]),
    jwtLeewaySec: parseSeconds("jwt-leeway", f["jwt-leeway"], AGENT_DEFAULTS.jwtLeewaySec * 1000, {
      min: 0,
      max: 3600,
    }) / 1000,
    requireBoundTokens: f["require-bound-tokens"] === true,
    serverId: parseText("server-id", f["server-id"]) ?? hostname(),
    helloTimeoutMs: parseSeconds(
      "hello-timeout",
      f["hello-timeout"],
      AGENT_DEFAULTS.helloTimeoutMs,
      { min: 0.1, max: 300 },
    ),
    drainFile: parseText("drain-file", f["drain-file"]),
    localChecks: [
      ...parseRepeated("check-tcp", f["check-tcp"]).map((v) => _tcpCheck(v)),
      ...parseRepeated("check-http", f["check-http"]).map((v) => _httpCheck(v)),
    ],
    localCheckIntervalMs: parseSeconds(
      "local-check-interval",
      f["local-check-interval"],
      AGENT_DEFAULTS.localCheckIntervalMs,
      {
        min: 0.1,
        max: 3600,
      },
    ),
    localCheckTimeoutMs: parseSeconds(
      "local-check-timeout",
      f["local-check-timeout"],
      AGENT_DEFAULTS.localCheckTimeoutMs,
      {
        min: 0.01,
        max: 600,
      },
    ),
    maxUnauthenticated: parseInteger(
      "max-unauthenticated",
      f["max-unauthenticated"],
      AGENT_DEFAULTS.maxUnauthenticated,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    maxConnections: parseInteger(
      "max-connections",
      f["max-connections"],
      AGENT_DEFAULTS.maxConnections,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    maxConnectionsPerAddress: parseInteger(
      "max-connections-per-address",
      f["max-connections-per-address"],
      AGENT_DEFAULTS.maxConnectionsPerAddress,
      { min: 1, max: 1_000_000 },
    ),
    maxSessionsPerLb: parseInteger(
      "max-sessions-per-lb",
      f["max-sessions-per-lb"],
      AGENT_DEFAULTS.maxSessionsPerLb,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    sessionRate: parseInteger("session-rate", f["session-rate"], AGENT_DEFAULTS.sessionRate, {
      min: 1,
      max: 1_000_000,
    }),
    sampleIntervalMs: parseSeconds(
      "sample-interval",
      f["sample-interval"],
      AGENT_DEFAULTS.sampleIntervalMs,
      {
        min: 0.1,
        max: 3600,
      },
    ),
    defaultMetrics: metrics,
    services: _services(parseRepeated("service", f.service)),
    ...parseCommon(f),
  };
}

/** --service NAME:PORT[:TAG,...]: checked by the rule the codec holds ACK to; each name once. */
function _services(values: readonly string[]): ServiceInfo[] {
  const out: ServiceInfo[] = [];
  for (const text of values) {
    const m = /^([^:]+):(\d{1,5})(?::(.+))?$/.exec(text.trim());
    const tags = m?.[3]?.split(",").map((t) => t.trim()).filter(Boolean);
    const service: ServiceInfo | undefined = m
      ? { name: m[1]!.toLowerCase(), port: Number(m[2]), ...(tags?.length ? { tags } : {}) }
      : undefined;
    const problem = service ? serviceProblem(service) : "not NAME:PORT";
    if (problem !== undefined || !service) {
      throw new CliError(
        `--service: expected NAME:PORT[:TAG,...] with NAME a DNS label (letters, digits, inner hyphens) and PORT 1..65535, got ${
          JSON.stringify(text)
        } (${problem})`,
      );
    }
    if (out.some((s) => s.name === service.name)) {
      throw new CliError(`--service: ${JSON.stringify(service.name)} is given twice`);
    }
    out.push(service);
  }
  if (out.length > MAX_SERVICES) {
    throw new CliError(`--service: at most ${MAX_SERVICES} services, got ${out.length}`);
  }
  return out;
}

function _tcpCheck(text: string): LocalCheckSpec {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d+)$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new CliError(`--check-tcp: expected HOST:PORT, got ${JSON.stringify(text)}`);
  }
  return { kind: "tcp", host: (m[1] ?? m[2])!, port };
}

function _httpCheck(text: string): LocalCheckSpec {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new CliError(
      `--check-http: expected an http:// or https:// URL, got ${JSON.stringify(text)}`,
    );
  }
  return { kind: "http", url: url.href };
}
