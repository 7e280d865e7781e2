/**
 * Command line of the load balancer (`lb.ts`): flag table, parsing and
 * validation into an {@linkcode LbConfig}. Pure apart from reading the host
 * name for the default LB id.
 *
 * @module
 */

import { LB_DEFAULTS, seconds } from "../util/defaults.ts";
import {
  CliError,
  COMMON_FLAGS,
  type CommonConfig,
  exclusive,
  type FlagSpec,
  formatUsage,
  hostname,
  parseChoice,
  parseCommon,
  parseFlags,
  parseInteger,
  parseList,
  parseSeconds,
  parseText,
} from "./flags.ts";
import type { FlagValue } from "./flags.ts";
import { isDnsLabel, MAX_HEARTBEAT_MS, MIN_HEARTBEAT_MS } from "../protocol/wire.ts";
import { parseServerAddress } from "../protocol/address.ts";
import type { ServerAddress } from "../lb/watch.ts";

/** Everything `lb.ts` needs, with defaults applied. */
export interface LbConfig extends CommonConfig {
  servers: ServerAddress[];
  /** `dns:NAME:PORT` entries of --servers. */
  dnsNames: { name: string; port: number }[];
  serversFile: string | undefined;
  dnsServer: { ipAddr: string; port: number } | undefined;
  agentPort: number | undefined;
  /** Send weights on the agent-check port (`up ready 75%`). */
  agentWeights: boolean;
  /** HAProxy's stats socket (admin level) to push verdicts to, and the prefix of its backends. */
  haproxySocket: string | undefined;
  haproxyBackendPrefix: string;
  /** Serve DNS on this UDP and TCP port (undefined: no DNS). */
  dnsPort: number | undefined;
  dnsDomain: string;
  dnsTtlSec: number;
  httpHost: string;
  httpPort: number;
  /** Connections at once to the HTTP port, and from one client address. */
  httpMaxConnections: number;
  httpMaxPerAddress: number;
  /** Connections at once to the agent-check port. */
  agentMaxConnections: number;
  /** A request head must be complete within this, ms. */
  httpHeadTimeoutMs: number;
  /** TLS on the HTTP endpoint: certificate chain and key files (PEM), or undefined for plain HTTP. */
  httpTls: { certFile: string | undefined; keyFile: string | undefined } | undefined;
  maxFailAttempts: number;
  rise: number;
  fastIntervalMs: number;
  /** Heartbeat interval asked of servers (undefined: the stack's default; 0: off). */
  heartbeatMs: number | undefined;
  /** Heartbeats per second from all servers at most (undefined: the stack's default). */
  heartbeatBudget: number | undefined;
  /** Suspicion level of heartbeat silence that triggers a probe. */
  suspectPhi: number;
  /** Fraction, 0..0.5. */
  jitter: number;
  checkIntervalMs: number;
  /** Undefined: the smaller of the interval and 2 s (it follows interval changes). */
  checkTimeoutMs: number | undefined;
  reconnectIntervalMs: number;
  caFile: string | undefined;
  insecure: boolean;
  jwtSecretFile: string | undefined;
  jwtPrivateKeyFile: string | undefined;
  jwtTtlSec: number;
  adminTokenFile: string | undefined;
  maxServers: number;
  weightFloor: number;
  loadMetrics: string[];
  lbId: string;
  metrics: string[] | undefined;
  table: "auto" | "plain" | "off";
  /** Fleet mode: etcd client URLs (undefined: standalone). */
  etcd: string[] | undefined;
  etcdPrefix: string;
  /** LBs that check each server in fleet mode (K). */
  checkersPerServer: number;
  /** The fleet lease's TTL, seconds. */
  leaseTtlSec: number;
}

/** The LB's flags, in help order. */
export const LB_FLAGS: readonly FlagSpec[] = [
  {
    name: "servers",
    type: "string",
    arg: "HOST:PORT,...",
    help:
      "servers to watch (a missing port means 4243); dns:NAME:PORT follows a name's A/AAAA records",
  },
  {
    name: "servers-file",
    type: "string",
    arg: "PATH",
    help: "more servers, one host:port per line (# comments); reloaded on change and on SIGHUP",
  },
  {
    name: "dns-server",
    type: "string",
    arg: "IP:PORT",
    help: "resolver for dns: servers (default: the system's)",
  },
  {
    name: "agent-port",
    type: "string",
    arg: "PORT",
    help: "serve HAProxy's agent-check protocol on this TCP port (on --http-host)",
  },
  {
    name: "haproxy-socket",
    type: "string",
    arg: "PATH",
    help:
      "push each verdict change at once to HAProxy's stats socket (admin level): backend SERVICE, servers matched by address",
  },
  {
    name: "haproxy-backend-prefix",
    type: "string",
    arg: "PREFIX",
    default: "",
    help: "the HAProxy backend of service NAME is PREFIX + NAME",
  },
  {
    name: "dns-port",
    type: "string",
    arg: "PORT",
    help:
      "serve the services by DNS on this UDP and TCP port (NAME.service.<domain> A/AAAA, _NAME._tcp.service.<domain> SRV)",
  },
  {
    name: "dns-domain",
    type: "string",
    arg: "DOMAIN",
    default: LB_DEFAULTS.dnsDomain,
    help: "the DNS zone served with --dns-port",
  },
  {
    name: "dns-ttl",
    type: "string",
    arg: "SECONDS",
    default: String(LB_DEFAULTS.dnsTtlSec),
    help: "TTL of every DNS answer",
  },
  {
    name: "agent-weights",
    type: "boolean",
    help:
      "send weights on the agent-check port (up ready 75%); HAProxy's servers then need weight 100 or more (its default weight 1 would round them to 0)",
  },

  {
    name: "loadbalancer-port",
    type: "string",
    arg: "PORT",
    default: String(LB_DEFAULTS.httpPort),
    help: "TCP port of the HTTP status endpoint (0: any free port)",
  },
  {
    name: "http-host",
    type: "string",
    arg: "ADDR",
    default: LB_DEFAULTS.httpHost,
    help: "address the HTTP endpoint binds",
  },
  {
    name: "http-max-connections",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.httpMaxConnections),
    help: "connections at once to the HTTP port (lowered to fit the open-file limit)",
  },
  {
    name: "http-max-per-address",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.httpMaxPerAddress),
    help: "connections at once to the HTTP port from one client address",
  },
  {
    name: "http-head-timeout",
    type: "string",
    arg: "SECONDS",
    default: seconds(LB_DEFAULTS.httpHeadTimeoutMs),
    help: "close an HTTP connection whose request head is not complete within this (slow clients)",
  },
  {
    name: "agent-max-connections",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.agentMaxConnections),
    help: "connections at once to the agent-check port (HAProxy opens one per check)",
  },
  {
    name: "http-tls",
    type: "boolean",
    help:
      "serve the HTTP endpoint over TLS with <certs-dir>/server.pem and server.key (issued by the development CA)",
  },
  {
    name: "http-cert-file",
    type: "string",
    arg: "PATH",
    help:
      "serve the HTTP endpoint over TLS with this certificate chain (PEM; with --http-key-file)",
  },
  {
    name: "http-key-file",
    type: "string",
    arg: "PATH",
    help: "private key (PEM) of --http-cert-file",
  },
  {
    name: "max-fail-attempts",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.maxFailAttempts),
    help: "consecutive failed checks that mark a server DOWN (fall)",
  },
  {
    name: "rise",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.rise),
    help: "consecutive good checks that bring a DOWN server back UP",
  },
  {
    name: "fast-interval",
    type: "string",
    arg: "SECONDS",
    default: seconds(LB_DEFAULTS.fastIntervalMs),
    help: "time between checks while a verdict is in doubt (after a failure, or while rising)",
  },
  {
    name: "heartbeat-interval",
    type: "string",
    arg: "SECONDS",
    default: `${seconds(LB_DEFAULTS.heartbeatMs.native)} (native), ${
      seconds(LB_DEFAULTS.heartbeatMs.matrixai)
    } (matrixai)`,
    help:
      "heartbeat interval asked of servers; 0 turns heartbeats off (detection then comes from checks alone)",
  },
  {
    name: "heartbeat-budget",
    type: "string",
    arg: "N",
    default:
      `${LB_DEFAULTS.heartbeatBudget.native} (native), ${LB_DEFAULTS.heartbeatBudget.matrixai} (matrixai)`,
    help:
      "heartbeats per second the LB takes from all servers together; a larger fleet gets longer intervals",
  },
  {
    name: "suspect-phi",
    type: "string",
    arg: "PHI",
    default: String(LB_DEFAULTS.suspectPhi),
    help:
      "suspicion level of heartbeat silence at which a server is probed (higher: fewer probes, slower detection)",
  },
  {
    name: "jitter",
    type: "string",
    arg: "PERCENT",
    default: String(LB_DEFAULTS.jitter * 100),
    help: "spread every interval by up to this percentage either way (0..50)",
  },
  {
    name: "check-interval",
    type: "string",
    arg: "SECONDS",
    default: seconds(LB_DEFAULTS.checkIntervalMs),
    help: "time between checks (decimals allowed, 0.1..3600)",
  },
  {
    name: "check-timeout",
    type: "string",
    arg: "SECONDS",
    default: `min(interval, ${seconds(LB_DEFAULTS.maxCheckTimeoutMs)})`,
    help: "a check with no answer within this is a failure",
  },
  {
    name: "reconnect-interval",
    type: "string",
    arg: "SECONDS",
    default: seconds(LB_DEFAULTS.reconnectIntervalMs),
    help: "time between redials of a DOWN server",
  },
  {
    name: "cert-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/ca.pem",
    help: "CA bundle that server certificates must chain to",
  },
  {
    name: "insecure",
    type: "boolean",
    help: "skip server certificate verification (unsafe; warned at start)",
  },
  {
    name: "jwt-secret-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/jwt.secret",
    help: "HS256 shared secret (at least 32 bytes)",
  },
  {
    name: "jwt-private-key-file",
    type: "string",
    arg: "PATH",
    help: "Ed25519 private key (PKCS#8 PEM): sign tokens with EdDSA",
  },
  {
    name: "jwt-ttl",
    type: "string",
    arg: "SECONDS",
    default: String(LB_DEFAULTS.jwtTtlSec),
    help: "lifetime of the tokens the LB signs",
  },
  {
    name: "admin-token-file",
    type: "string",
    arg: "PATH",
    default: "<certs-dir>/admin.token",
    help: "bearer token for the mutating HTTP endpoints (created when absent)",
  },
  {
    name: "max-servers",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.maxServers),
    help: "servers watched at most (flags, files, DNS and the HTTP API together)",
  },
  {
    name: "weight-floor",
    type: "string",
    arg: "N",
    default: String(LB_DEFAULTS.weightFloor),
    help: "traffic weight (0..100) of a healthy server at 100 % load",
  },
  {
    name: "weight-metrics",
    type: "string",
    arg: "NAME,...",
    default: LB_DEFAULTS.loadMetrics.join(","),
    help: "percentage metrics whose highest value is the load behind a server's weight",
  },
  {
    name: "lb-id",
    type: "string",
    arg: "ID",
    default: "lb-<hostname>",
    help: "this LB's id (the token issuer)",
  },
  {
    name: "metrics",
    type: "string",
    arg: "NAME,...",
    help: "metrics to ask servers for besides cpu_percent and mem_percent",
  },
  {
    name: "table",
    type: "string",
    arg: "MODE",
    default: LB_DEFAULTS.table,
    help: "status table: auto (redraw on a TTY, lines otherwise), plain, off",
  },
  {
    name: "etcd",
    type: "string",
    arg: "URL,...",
    help:
      "fleet mode: share the checking and the verdict with the other LBs of these etcd client URLs (docs/FLEET.md)",
  },
  {
    name: "etcd-prefix",
    type: "string",
    arg: "PREFIX",
    default: LB_DEFAULTS.etcdPrefix,
    help: "fleet mode: the fleet's keys in etcd (one fleet per prefix)",
  },
  {
    name: "checkers-per-server",
    type: "string",
    arg: "K",
    default: String(LB_DEFAULTS.checkersPerServer),
    help: "fleet mode: LBs that check each server",
  },
  {
    name: "lease-ttl",
    type: "string",
    arg: "SECONDS",
    default: String(LB_DEFAULTS.leaseTtlSec),
    help: "fleet mode: an LB gone this long has its servers taken over",
  },
  ...COMMON_FLAGS,
];

/** Usage text for `--help`. */
export function lbUsage(program = "qhcp-lb"): string {
  return formatUsage(
    program,
    "QHCP load balancer monitor: keeps one QUIC session per server, checks each on an interval,\n" +
      "marks servers UP and DOWN, prints a live status table and serves GET /status over HTTP.",
    LB_FLAGS,
  );
}

/**
 * Parses the LB's command line.
 *
 * @throws {CliError} naming the flag with a bad value
 */
export function parseLbArgs(args: readonly string[]): LbConfig {
  const f = parseFlags(LB_FLAGS, args);
  exclusive(f, "jwt-secret-file", "jwt-private-key-file");
  exclusive(f, "insecure", "cert-file");
  if ((f["http-cert-file"] === undefined) !== (f["http-key-file"] === undefined)) {
    throw new CliError("--http-cert-file and --http-key-file must be given together");
  }
  exclusive(f, "http-tls", "http-cert-file");
  if (f.insecure === true && f.quic === "native") {
    throw new CliError(
      "--insecure cannot be used with --quic native: Deno's QUIC always verifies certificates (give --cert-file)",
    );
  }
  const servers: ServerAddress[] = [];
  const dnsNames: { name: string; port: number }[] = [];
  const list = parseList("servers", f.servers) ?? [];
  for (const item of list) {
    if (item.startsWith("dns:")) {
      const m = /^dns:([A-Za-z0-9.-]+):(\d+)$/.exec(item);
      const port = m ? Number(m[2]) : NaN;
      if (!m || port < 1 || port > 65535) {
        throw new CliError(`--servers: expected dns:NAME:PORT, got ${JSON.stringify(item)}`);
      }
      dnsNames.push({ name: m[1]!, port });
      continue;
    }
    try {
      servers.push(parseServerAddress(item));
    } catch (e) {
      throw new CliError(`--servers: ${(e as Error).message}`);
    }
  }
  let dnsServer: { ipAddr: string; port: number } | undefined;
  if (f["dns-server"] !== undefined) {
    try {
      const a = parseServerAddress(String(f["dns-server"]));
      dnsServer = { ipAddr: a.host, port: f["dns-server"].toString().includes(":") ? a.port : 53 };
    } catch (e) {
      throw new CliError(`--dns-server: ${(e as Error).message}`);
    }
  }
  const checkIntervalMs = parseSeconds(
    "check-interval",
    f["check-interval"],
    LB_DEFAULTS.checkIntervalMs,
    {
      min: 0.1,
      max: 3600,
    },
  );
  const checkTimeoutMs = f["check-timeout"] === undefined
    ? undefined
    : parseSeconds("check-timeout", f["check-timeout"], 0, { min: 0.01, max: 3600 });
  return {
    servers,
    dnsNames,
    serversFile: parseText("servers-file", f["servers-file"]),
    dnsServer,
    agentWeights: f["agent-weights"] === true,
    haproxySocket: parseText("haproxy-socket", f["haproxy-socket"]),
    haproxyBackendPrefix: f["haproxy-backend-prefix"] === undefined
      ? ""
      : String(f["haproxy-backend-prefix"]),
    dnsPort: f["dns-port"] === undefined
      ? undefined
      : parseInteger("dns-port", f["dns-port"], 0, { min: 0, max: 65535 }),
    dnsDomain: _dnsDomain(f["dns-domain"]),
    dnsTtlSec: parseInteger("dns-ttl", f["dns-ttl"], LB_DEFAULTS.dnsTtlSec, {
      min: 0,
      max: 86_400,
    }),
    agentPort: f["agent-port"] === undefined
      ? undefined
      : parseInteger("agent-port", f["agent-port"], 0, { min: 0, max: 65535 }),
    httpHost: parseText("http-host", f["http-host"]) ?? LB_DEFAULTS.httpHost,
    httpPort: parseInteger("loadbalancer-port", f["loadbalancer-port"], LB_DEFAULTS.httpPort, {
      min: 0,
      max: 65535,
    }),
    httpMaxConnections: parseInteger(
      "http-max-connections",
      f["http-max-connections"],
      LB_DEFAULTS.httpMaxConnections,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    httpMaxPerAddress: parseInteger(
      "http-max-per-address",
      f["http-max-per-address"],
      LB_DEFAULTS.httpMaxPerAddress,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    httpHeadTimeoutMs: parseSeconds(
      "http-head-timeout",
      f["http-head-timeout"],
      LB_DEFAULTS.httpHeadTimeoutMs,
      {
        min: 0.1,
        max: 600,
      },
    ),
    agentMaxConnections: parseInteger(
      "agent-max-connections",
      f["agent-max-connections"],
      LB_DEFAULTS.agentMaxConnections,
      {
        min: 1,
        max: 1_000_000,
      },
    ),
    httpTls: f["http-tls"] === true || f["http-cert-file"] !== undefined
      ? {
        certFile: parseText("http-cert-file", f["http-cert-file"]),
        keyFile: parseText("http-key-file", f["http-key-file"]),
      }
      : undefined,
    maxFailAttempts: parseInteger(
      "max-fail-attempts",
      f["max-fail-attempts"],
      LB_DEFAULTS.maxFailAttempts,
      {
        min: 1,
        max: 1000,
      },
    ),
    rise: parseInteger("rise", f.rise, LB_DEFAULTS.rise, { min: 1, max: 1000 }),
    fastIntervalMs: parseSeconds("fast-interval", f["fast-interval"], LB_DEFAULTS.fastIntervalMs, {
      min: 0.1,
      max: 3600,
    }),
    heartbeatMs: _heartbeatMs(f["heartbeat-interval"]),
    heartbeatBudget: f["heartbeat-budget"] === undefined
      ? undefined
      : parseInteger("heartbeat-budget", f["heartbeat-budget"], 0, { min: 1, max: 1_000_000 }),
    suspectPhi: parseInteger("suspect-phi", f["suspect-phi"], LB_DEFAULTS.suspectPhi, {
      min: 1,
      max: 100,
    }),
    jitter: parseInteger("jitter", f.jitter, LB_DEFAULTS.jitter * 100, { min: 0, max: 50 }) / 100,
    checkIntervalMs,
    checkTimeoutMs,
    reconnectIntervalMs: parseSeconds(
      "reconnect-interval",
      f["reconnect-interval"],
      LB_DEFAULTS.reconnectIntervalMs,
      {
        min: 0.1,
        max: 86_400,
      },
    ),
    caFile: parseText("cert-file", f["cert-file"]),
    insecure: f.insecure === true,
    jwtSecretFile: parseText("jwt-secret-file", f["jwt-secret-file"]),
    jwtPrivateKeyFile: parseText("jwt-private-key-file", f["jwt-private-key-file"]),
    jwtTtlSec: parseSeconds("jwt-ttl", f["jwt-ttl"], LB_DEFAULTS.jwtTtlSec * 1000, {
      min: 10,
      max: 86_400,
    }) / 1000,
    adminTokenFile: parseText("admin-token-file", f["admin-token-file"]),
    maxServers: parseInteger("max-servers", f["max-servers"], LB_DEFAULTS.maxServers, {
      min: 1,
      max: 1_000_000,
    }),
    weightFloor: parseInteger("weight-floor", f["weight-floor"], LB_DEFAULTS.weightFloor, {
      min: 0,
      max: 100,
    }),
    loadMetrics: parseList("weight-metrics", f["weight-metrics"]) ?? [...LB_DEFAULTS.loadMetrics],
    lbId: parseText("lb-id", f["lb-id"]) ?? `lb-${hostname()}`,
    metrics: parseList("metrics", f.metrics),
    table: parseChoice("table", f.table, LB_DEFAULTS.table, ["auto", "plain", "off"] as const),
    etcd: _etcdUrls(f.etcd),
    etcdPrefix: parseText("etcd-prefix", f["etcd-prefix"]) ?? LB_DEFAULTS.etcdPrefix,
    checkersPerServer: parseInteger(
      "checkers-per-server",
      f["checkers-per-server"],
      LB_DEFAULTS.checkersPerServer,
      { min: 1, max: 16 },
    ),
    leaseTtlSec: parseInteger("lease-ttl", f["lease-ttl"], LB_DEFAULTS.leaseTtlSec, {
      min: 2,
      max: 300,
    }),
    ...parseCommon(f),
  };
}

/** --dns-domain: DNS labels separated by dots, the final dot optional. */
function _dnsDomain(value: FlagValue): string {
  const text = parseText("dns-domain", value) ?? LB_DEFAULTS.dnsDomain;
  const labels = text.replace(/\.$/, "").split(".");
  if (text.length > 200 || !labels.every(isDnsLabel)) {
    throw new CliError(
      `--dns-domain: expected a domain name such as qhcp. or lb.example.com, got ${
        JSON.stringify(text)
      }`,
    );
  }
  return `${labels.join(".").toLowerCase()}.`;
}

/** --etcd: comma-separated http(s) URLs of etcd's client port. */
function _etcdUrls(value: FlagValue): string[] | undefined {
  const urls = parseList("etcd", value);
  if (urls === undefined) return undefined;
  for (const u of urls) {
    const url = URL.canParse(u) ? new URL(u) : undefined;
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
      throw new CliError(`--etcd: expected http:// or https:// URLs, got ${JSON.stringify(u)}`);
    }
  }
  return urls;
}

/** --heartbeat-interval: 0 (off) or 0.05..60 s; undefined keeps the stack's default. */
function _heartbeatMs(value: FlagValue): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseSeconds("heartbeat-interval", value, 0, { min: 0, max: MAX_HEARTBEAT_MS / 1000 });
  if (ms !== 0 && ms < MIN_HEARTBEAT_MS) {
    throw new CliError(
      `--heartbeat-interval: expected 0 (off) or ${MIN_HEARTBEAT_MS / 1000}..${
        MAX_HEARTBEAT_MS / 1000
      } seconds, got ${JSON.stringify(String(value))}`,
    );
  }
  return ms;
}
