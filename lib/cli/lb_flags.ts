/**
 * Command line of the load balancer (`lb.ts`): parsing and validation of its
 * flags (`lb_flag_table.ts`) into an {@linkcode LbConfig}. Pure apart from
 * reading the host name for the default LB id.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import {
  CliError,
  type CommonConfig,
  exclusive,
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
import { LB_FLAGS } from "./lb_flag_table.ts";

export { LB_FLAGS };

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
