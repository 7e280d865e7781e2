/**
 * Where the LB's verdicts go out: the HTTP endpoint (status, metrics, admin
 * API), HAProxy's agent-check port, the DNS port, and the feed to HAProxy's
 * runtime API. Each is bound or started from the flags, with its connection
 * caps and its one line in the log.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { type AgentCheckServer, startAgentCheckServer } from "../ops/agent_check.ts";
import { createHttpApi, type HttpApi } from "../ops/http_api.ts";
import { type DnsServer, startDnsServer } from "../ops/dns_server.ts";
import { HaproxyRuntime } from "../ops/haproxy_runtime.ts";
import { type HttpServer, serveHttp } from "../ops/http_server.ts";
import { fitConnectionCaps, openFileLimit, perAddressCap } from "../ops/limits.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../util/version.ts";
import type { LbCredentials } from "./credentials.ts";
import type { LbConfig } from "./lb_flags.ts";

/** The LB's HTTP endpoint, from {@linkcode serveLbHttp}. */
export interface LbHttp {
  /** The listening server. */
  readonly server: HttpServer;
  /** The agent-check port's connection cap, fitted with the HTTP one (with `--agent-port`). */
  readonly agentCap: number | undefined;
}

/**
 * Serves the HTTP API over `directory`; pushes its shutdown onto `undo`.
 *
 * @throws {Error} when the port cannot be bound
 */
export function serveLbHttp(
  config: LbConfig,
  directory: ServerDirectory,
  credentials: LbCredentials,
  log: Logger,
  undo: (() => Promise<void> | void)[],
): LbHttp {
  const api = createHttpApi({
    monitor: directory,
    lbId: config.lbId,
    startedAt: Date.now(),
    version: VERSION,
    adminToken: credentials.adminToken,
    log,
  });
  const http = _serveHttp(config, api, credentials.httpTls, log);
  undo.push(() => http.server.shutdown(), () => api.close());
  return http;
}

/** The ports {@linkcode startLbIntegrations} bound. */
export interface LbIntegrations {
  /** The agent-check port, when served. */
  readonly agentCheckPort: number | undefined;
  /** The DNS port (UDP and TCP), when served. */
  readonly dnsPort: number | undefined;
}

/**
 * Starts what the flags ask for of HAProxy's agent-check, DNS, and the feed
 * to HAProxy's runtime API, over `directory`; pushes each one's close onto
 * `undo` once started.
 *
 * @throws {Error} when a port cannot be bound
 */
export function startLbIntegrations(
  config: LbConfig,
  directory: ServerDirectory,
  http: LbHttp,
  log: Logger,
  undo: (() => Promise<void> | void)[],
): LbIntegrations {
  let agentCheck: AgentCheckServer | undefined;
  let dnsPort: number | undefined;
  if (config.agentPort !== undefined) {
    try {
      agentCheck = startAgentCheckServer({
        monitor: directory,
        host: config.httpHost,
        port: config.agentPort,
        weights: config.agentWeights,
        maxConnections: http.agentCap!,
        log,
      });
    } catch (e) {
      throw new Error(
        `--agent-port: cannot listen on ${config.httpHost}:${config.agentPort}: ${
          (e as Error).message
        }`,
      );
    }
    const a = agentCheck;
    undo.push(() => a.close());
    log.info("HAProxy agent-check listening", {
      address: config.httpHost,
      port: a.port,
      max_connections: http.agentCap,
    });
  }

  if (config.dnsPort !== undefined) {
    let dns: DnsServer;
    try {
      dns = startDnsServer({
        directory,
        host: config.httpHost,
        port: config.dnsPort,
        domain: config.dnsDomain,
        ttlSec: config.dnsTtlSec,
        log,
      });
    } catch (e) {
      throw new Error(
        `--dns-port: cannot listen on ${config.httpHost}:${config.dnsPort}: ${
          (e as Error).message
        }`,
      );
    }
    undo.push(() => dns.close());
    dnsPort = dns.port;
    log.info("DNS listening", {
      address: config.httpHost,
      port: dns.port,
      zone: config.dnsDomain,
      ttl_s: config.dnsTtlSec,
    });
  }

  if (config.haproxySocket) {
    const feed = new HaproxyRuntime({
      directory,
      socket: config.haproxySocket,
      backendPrefix: config.haproxyBackendPrefix,
      log,
    });
    feed.start();
    undo.push(() => feed.close());
    log.info("pushing verdicts to HAProxy's runtime API", {
      socket: config.haproxySocket,
      backends: `${config.haproxyBackendPrefix}<service>`,
    });
  }
  return { agentCheckPort: agentCheck?.port, dnsPort };
}

/** The HTTP endpoint, its connection caps sized to the open-file limit. */
function _serveHttp(
  config: LbConfig,
  api: HttpApi,
  tls: { cert: string; key: string } | undefined,
  log: Logger,
): LbHttp {
  // Every TCP connection costs a descriptor: the ports' caps fit the limit.
  const fileLimit = openFileLimit();
  const [httpCap, agentCap] = fitConnectionCaps(
    config.agentPort === undefined
      ? [config.httpMaxConnections]
      : [config.httpMaxConnections, config.agentMaxConnections],
    fileLimit,
  );
  const perAddress = perAddressCap(config.httpMaxPerAddress, httpCap!);
  let server: HttpServer;
  try {
    server = serveHttp({
      hostname: config.httpHost,
      port: config.httpPort,
      ...(tls ? { tls } : {}),
      handler: api.handler,
      maxConnections: httpCap!,
      maxConnectionsPerAddress: perAddress,
      headTimeoutMs: config.httpHeadTimeoutMs,
      log,
    });
  } catch (e) {
    throw new Error(
      `--loadbalancer-port: cannot listen on ${config.httpHost}:${config.httpPort}: ${
        (e as Error).message
      }`,
    );
  }
  log.info("HTTP status endpoint listening", {
    address: server.addr.hostname,
    port: server.addr.port,
    scheme: tls ? "https" : "http",
    max_connections: httpCap,
    per_address: perAddress,
    open_files: fileLimit?.soft,
  });
  return { server, agentCap };
}
