/**
 * The load balancer's flags (`lb.ts`): names, arguments, defaults and help,
 * in the order `--help` lists them. `lb_flags.ts` parses and checks them.
 *
 * @module
 */

import { LB_DEFAULTS, seconds } from "../util/defaults.ts";
import { COMMON_FLAGS, type FlagSpec } from "./flags.ts";

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
