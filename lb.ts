#!/usr/bin/env -S deno run -A
/**
 * QHCP load balancer monitor. Run `deno run -A lb.ts --help`.
 *
 * @module
 */

import { createEd25519Signer, createHmacSigner, readKeyFile, readSecretFile } from "./lib/auth.ts";
import {
  _fail as _failWith,
  _hangupAction,
  _onTerminal,
  _parseConfig,
  _readFlagFile,
  _setupFailed,
  _sighupIgnoredAtStart,
  _startStack,
  _stopSignals,
  _writeAll,
} from "./lib/_entry.ts";
import { checkCertificatePair } from "./lib/certs.ts";
import { CliError } from "./lib/cli.ts";
import {
  defaultCertsDir,
  type DefaultFiles,
  type DefaultNeed,
  ensureDefaultFiles,
} from "./lib/defaults.ts";
import { type AgentCheckServer, startAgentCheckServer } from "./lib/agent_check.ts";
import { Discovery, watchDnsName, watchServersFile } from "./lib/discovery.ts";
import { createHttpApi } from "./lib/http_api.ts";
import { type HttpServer, serveHttp } from "./lib/http_server.ts";
import { fitConnectionCaps, openFileLimit, perAddressCap } from "./lib/limits.ts";
import { type LbConfig, lbUsage, parseLbArgs } from "./lib/lb_cli.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { Monitor } from "./lib/monitor.ts";
import { isLoopbackHost, type Transport } from "./lib/transport.ts";
import { Redrawer, StatusScreen, summarize } from "./lib/status_table.ts";
import type { WatchEvents } from "./lib/watch.ts";
import { VERSION } from "./lib/version.ts";

const PROGRAM = "qhcp-lb";

/** Runs the LB until SIGINT or SIGTERM; returns the exit code. */
export async function runLb(args: readonly string[]): Promise<number> {
  const config = _parseConfig(PROGRAM, args, parseLbArgs, lbUsage);
  if (typeof config === "number") return config;

  const tableMode = config.table === "off"
    ? "off"
    : config.table === "plain" || !Deno.stdout.isTerminal()
    ? "plain"
    : "tty";
  const screen = tableMode === "off" ? undefined : new StatusScreen({
    mode: tableMode,
    write: (text) => _writeAll(Deno.stdout, text),
    columns: () => _columns(),
  });
  let monitor: Monitor | undefined;
  const drawTable = () => {
    if (!monitor) return;
    const rows = monitor.status();
    screen?.draw(rows, `QHCP LB ${config.lbId}  ${summarize(rows)}  ${new Date().toISOString()}`);
  };
  // Drawn at once, within a moment of every verdict change (and, on a
  // terminal, of every log line), and every check interval otherwise.
  const table = screen && new Redrawer({
    draw: drawTable,
    minGapMs: tableMode === "tty" ? 100 : 250,
    intervalMs: () => Math.max(monitor?.settings.checkIntervalMs ?? 1000, 1000),
  });
  // On a redrawn terminal, log lines go under the table instead of scrolling it away.
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    ...(tableMode === "tty"
      ? {
        sink: (line: string) => {
          screen!.note(line);
          table?.changed();
        },
      }
      : {}),
  });
  const sighupIgnored = _sighupIgnoredAtStart();
  // The LB's only TLS client is its QUIC stack: it trusts the configured CA alone.
  const stack = await _startStack(config.quic, log, { onlyGivenCa: true });
  if ("error" in stack) return _fail(stack.error, 1);
  const stop = _stopSignals();
  // What SIGHUP means is known from the flags: install it with the stop signals.
  const followers: { refresh(): Promise<void>; close(): void }[] = [];
  const hangup = _hangupAction({
    following: config.serversFile !== undefined || config.dnsNames.length > 0,
    terminal: _onTerminal(),
    ignoredAtStart: sighupIgnored,
  });
  const onHup = hangup === "reload"
    ? () => {
      log.info("SIGHUP: reloading the servers file and DNS names");
      for (const f of followers) void f.refresh();
    }
    : () => stop.trigger("SIGHUP");
  if (hangup !== "ignore") Deno.addSignalListener("SIGHUP", onHup);

  let adminToken: string;
  let httpTls: { cert: string; key: string } | undefined;
  try {
    ({ monitor, adminToken, httpTls } = await _buildMonitor(config, stack.transport, log, {
      onTransition: () => table?.changed(),
    }));
  } catch (e) {
    return _setupFailed(PROGRAM, e);
  }
  if (!httpTls && !isLoopbackHost(config.httpHost)) {
    log.warn(
      "the HTTP endpoint is plain HTTP beyond loopback: the admin bearer token of its mutating endpoints crosses the network in clear; serve it over TLS with --http-tls (or --http-cert-file/--http-key-file), or bind it to loopback with --http-host 127.0.0.1",
      { address: config.httpHost },
    );
  }
  if (config.insecure) {
    log.warn(
      "INSECURE: server certificates are NOT verified (--insecure); anyone on the path can impersonate a server",
    );
  }
  if (config.servers.length === 0 && config.dnsNames.length === 0 && !config.serversFile) {
    log.warn(
      "no servers to watch yet: add some with --servers, --servers-file or POST /api/servers",
    );
  }

  const startedAt = Date.now();
  const api = createHttpApi({
    monitor,
    lbId: config.lbId,
    startedAt,
    version: VERSION,
    adminToken,
    log,
  });
  // Every TCP connection costs a descriptor: the ports' caps fit the limit.
  const fileLimit = openFileLimit();
  const [httpCap, agentCap] = fitConnectionCaps(
    config.agentPort === undefined
      ? [config.httpMaxConnections]
      : [config.httpMaxConnections, config.agentMaxConnections],
    fileLimit,
  );
  let http: HttpServer;
  try {
    http = serveHttp({
      hostname: config.httpHost,
      port: config.httpPort,
      ...(httpTls ? { tls: httpTls } : {}),
      handler: api.handler,
      maxConnections: httpCap!,
      maxConnectionsPerAddress: perAddressCap(config.httpMaxPerAddress, httpCap!),
      headTimeoutMs: config.httpHeadTimeoutMs,
      log,
    });
    log.info("HTTP status endpoint listening", {
      address: http.addr.hostname,
      port: http.addr.port,
      scheme: httpTls ? "https" : "http",
      max_connections: httpCap,
      per_address: perAddressCap(config.httpMaxPerAddress, httpCap!),
      open_files: fileLimit?.soft,
    });
  } catch (e) {
    return _fail(
      `--loadbalancer-port: cannot listen on ${config.httpHost}:${config.httpPort}: ${
        (e as Error).message
      }`,
      1,
    );
  }

  const settings = monitor.settings; // a copy: the interval can change at run time
  log.info("load balancer starting", {
    lb_id: config.lbId,
    quic: config.quic,
    servers: config.servers.length,
    interval_ms: settings.checkIntervalMs,
    timeout_ms: settings.checkTimeoutMs,
    fall: settings.maxFailAttempts,
    rise: settings.rise,
    fast_ms: settings.fastIntervalMs,
    jitter: settings.jitter,
    reconnect_ms: settings.reconnectIntervalMs,
  });
  monitor.start();

  // Discovery: a servers file and DNS names add and remove servers as they change.
  const discovery = new Discovery(monitor, log);
  try {
    if (config.serversFile) {
      const file = await watchServersFile(config.serversFile, discovery, log);
      followers.push({ refresh: file.reload, close: file.close });
    }
    for (const { name, port } of config.dnsNames) {
      followers.push(
        await watchDnsName(name, port, discovery, {
          intervalMs: settings.reconnectIntervalMs,
          ...(config.dnsServer ? { nameServer: config.dnsServer } : {}),
          log,
        }),
      );
    }
  } catch (e) {
    return _fail(`discovery: ${(e as Error).message}`, 1);
  }

  let agentCheck: AgentCheckServer | undefined;
  if (config.agentPort !== undefined) {
    try {
      agentCheck = startAgentCheckServer({
        monitor,
        host: config.httpHost,
        port: config.agentPort,
        maxConnections: agentCap!,
        log,
      });
    } catch (e) {
      return _fail(
        `--agent-port: cannot listen on ${config.httpHost}:${config.agentPort}: ${
          (e as Error).message
        }`,
        1,
      );
    }
    log.info("HAProxy agent-check listening", {
      address: config.httpHost,
      port: agentCheck.port,
      max_connections: agentCap,
    });
  }

  table?.start();

  const signal = await stop.stopped;
  log.info("shutting down: sending TERMINATE to every server", { signal });
  table?.stop();
  stop.escalate(); // a second signal ends the process at once
  await Promise.race([monitor.stop("shutdown"), new Promise((r) => setTimeout(r, 1500))]);
  if (hangup !== "ignore") Deno.removeSignalListener("SIGHUP", onHup);
  for (const f of followers) f.close();
  await agentCheck?.close();
  api.close(); // end the dashboard's event streams, or shutdown would wait for them
  await http.shutdown();
  if (tableMode === "tty") drawTable();
  log.info("stopped");
  return 0;
}

async function _buildMonitor(
  config: LbConfig,
  transport: Transport,
  log: Logger,
  events: WatchEvents,
): Promise<
  { monitor: Monitor; adminToken: string; httpTls: { cert: string; key: string } | undefined }
> {
  // Only what this LB reads is required, or created when missing.
  const need: DefaultNeed[] = [
    ...(config.caFile || config.insecure ? [] : ["ca" as const]),
    ...(config.jwtSecretFile || config.jwtPrivateKeyFile ? [] : ["jwt" as const]),
    ...(config.adminTokenFile ? [] : ["admin" as const]),
    ...(config.httpTls && !config.httpTls.certFile ? ["server" as const] : []),
  ];
  let files: DefaultFiles | undefined;
  if (need.length > 0) {
    files = await ensureDefaultFiles(defaultCertsDir(config.certsDir), { need, log });
  }
  let caPem: string | undefined;
  if (!config.insecure) {
    const path = config.caFile ?? files!.caCert;
    caPem = await _readFlagFile("cert-file", path);
    if (!caPem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new CliError(`--cert-file: ${path} holds no PEM certificate`);
    }
  }
  const signerOptions = { lbId: config.lbId, ttlSec: config.jwtTtlSec };
  const signer = config.jwtPrivateKeyFile
    ? await createEd25519Signer(
      await readKeyFile(config.jwtPrivateKeyFile, "JWT private key"),
      signerOptions,
    )
      .catch((e) => {
        throw new CliError(`--jwt-private-key-file: ${(e as Error).message}`);
      })
    : createHmacSigner(
      await readSecretFile(config.jwtSecretFile ?? files!.jwtSecret).catch((e) => {
        throw new CliError(`--jwt-secret-file: ${(e as Error).message}`);
      }),
      signerOptions,
    );
  const tokenPath = config.adminTokenFile ?? files!.adminToken;
  const adminToken = (await _readFlagFile("admin-token-file", tokenPath)).trim();
  if (adminToken.length < 16 || /\s/.test(adminToken)) {
    throw new CliError(
      `--admin-token-file: the token in ${tokenPath} must be at least 16 characters without spaces`,
    );
  }
  const monitor = new Monitor({
    transport,
    signer,
    lbId: config.lbId,
    servers: config.servers,
    checkIntervalMs: config.checkIntervalMs,
    ...(config.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: config.checkTimeoutMs }),
    maxFailAttempts: config.maxFailAttempts,
    rise: config.rise,
    fastIntervalMs: config.fastIntervalMs,
    jitter: config.jitter,
    reconnectIntervalMs: config.reconnectIntervalMs,
    ...(config.metrics ? { metrics: config.metrics } : {}),
    ...(caPem === undefined ? {} : { caPem }),
    insecure: config.insecure,
    idleTimeoutMs: config.idleTimeoutMs,
    maxServers: config.maxServers,
    weightFloor: config.weightFloor,
    loadMetrics: config.loadMetrics,
    log,
    events,
  });
  const httpTls = config.httpTls && await _readHttpTls(
    config.httpTls.certFile ?? files!.serverCert,
    config.httpTls.keyFile ?? files!.serverKey,
    config.httpTls.certFile
      ? ["--http-cert-file", "--http-key-file"]
      : ["--http-tls", "--http-tls"],
  );
  return { monitor, adminToken, httpTls };
}

/** Reads and checks the HTTP endpoint's certificate and key; errors name the flags. */
async function _readHttpTls(
  certPath: string,
  keyPath: string,
  [certFlag, keyFlag]: [string, string],
): Promise<{ cert: string; key: string }> {
  const cert = await _readFlagFile(certFlag.slice(2), certPath);
  const key = await _readFlagFile(keyFlag.slice(2), keyPath);
  const pair = checkCertificatePair(cert, key, Date.now());
  if ("file" in pair) {
    const where = pair.file === "key" ? `${keyFlag}: ${keyPath}` : `${certFlag}: ${certPath}`;
    throw new CliError(`${where}: ${pair.reason}`);
  }
  return { cert, key };
}

function _fail(message: string, code: number): number {
  return _failWith(PROGRAM, message, code);
}

function _columns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 120;
  }
}

if (import.meta.main) Deno.exit(await runLb(Deno.args));
