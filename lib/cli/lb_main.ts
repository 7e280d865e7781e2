/**
 * The load balancer as a program: from its parsed flags to a running LB
 * (credentials, QUIC stack, monitor, HTTP endpoint, discovery, HAProxy
 * agent-check, status table) and back to nothing with `stop()`. `lb.ts`
 * wraps it with signals; tests start it in-process.
 *
 * @module
 */

import { Discovery, watchDnsName, watchServersFile } from "../lb/discovery.ts";
import type { ServerDirectory, ServerSet } from "../lb/directory.ts";
import { Monitor } from "../lb/monitor.ts";
import { FleetDirectory } from "../fleet/directory.ts";
import { createEtcdStore } from "../fleet/etcd.ts";
import { Fleet } from "../fleet/fleet.ts";
import { FleetKeys } from "../fleet/keys.ts";
import { formatAddress, isLoopbackHost } from "../protocol/address.ts";
import { CliError } from "./flags.ts";
import type { Transport } from "../transport/transport.ts";
import type { Logger } from "../util/log.ts";
import { settlesWithin } from "../util/timeout.ts";
import { VERSION } from "../util/version.ts";
import { loadLbCredentials } from "./credentials.ts";
import { startStack } from "./entry.ts";
import type { LbConfig } from "./lb_flags.ts";
import { serveLbHttp, startLbIntegrations } from "./lb_outputs.ts";
import { openLbScreen } from "./lb_screen.ts";

/** A running LB. */
export interface RunningLb {
  /** The servers this LB checks. */
  readonly monitor: Monitor;
  /** What it serves: the monitor's servers, or in fleet mode the fleet's. */
  readonly directory: ServerDirectory;
  /** This LB's part in the fleet (fleet mode only). */
  readonly fleet: Fleet | undefined;
  /** The HTTP endpoint's address. */
  readonly http: Deno.NetAddr;
  /** The agent-check port, when served. */
  readonly agentCheckPort: number | undefined;
  /** The DNS port (UDP and TCP), when served. */
  readonly dnsPort: number | undefined;
  readonly log: Logger;
  /** Reads the servers file and re-resolves the DNS names now (SIGHUP). */
  reload(): void;
  /**
   * Ends every session with TERMINATE (at most 1.5 s), stops the ports, the
   * discovery and the table, and closes the QUIC stack it opened.
   */
  stop(reason?: string): Promise<void>;
}

/** Options of {@linkcode startLb}. */
export interface StartLbOptions {
  /** Use this transport (kept open on stop) instead of opening `config.quic`'s stack. */
  transport?: Transport;
  /** Log lines go here instead of stderr (or the table's screen). */
  logSink?: (line: string) => void;
}

/**
 * Starts an LB.
 *
 * @throws {CliError} or another typed set-up error (exit 2): bad flags, files or keys
 * @throws {Error} when a port cannot be bound (exit 1)
 */
export async function startLb(config: LbConfig, options: StartLbOptions = {}): Promise<RunningLb> {
  let monitor: Monitor | undefined;
  let directory: ServerDirectory | undefined;
  const screen = openLbScreen(config, {
    logSink: options.logSink,
    directory: () => directory,
    checkIntervalMs: () => monitor?.settings.checkIntervalMs,
  });
  const log = screen.log;

  const credentials = await loadLbCredentials(config, log);
  // The LB's only TLS client is its QUIC stack: it trusts the configured CA alone.
  const transport = options.transport ??
    await startStack(config.quic, log, { onlyGivenCa: true });
  // What to undo, last first: stop() and a failed start run it.
  const undo: (() => Promise<void> | void)[] = [];
  if (!options.transport) undo.push(() => transport.close());
  try {
    if (config.etcd && config.lbId.includes("/")) {
      throw new CliError(
        `--lb-id: a fleet LB's id cannot contain '/', got ${JSON.stringify(config.lbId)}`,
      );
    }
    monitor = new Monitor({
      transport,
      signer: credentials.signer,
      lbId: config.lbId,
      // In fleet mode the fleet decides which servers this LB checks.
      servers: config.etcd ? [] : config.servers,
      checkIntervalMs: config.checkIntervalMs,
      ...(config.checkTimeoutMs === undefined ? {} : { checkTimeoutMs: config.checkTimeoutMs }),
      maxFailAttempts: config.maxFailAttempts,
      rise: config.rise,
      fastIntervalMs: config.fastIntervalMs,
      jitter: config.jitter,
      reconnectIntervalMs: config.reconnectIntervalMs,
      ...(config.metrics ? { metrics: config.metrics } : {}),
      ...(credentials.caPem === undefined ? {} : { caPem: credentials.caPem }),
      insecure: config.insecure,
      idleTimeoutMs: config.idleTimeoutMs,
      maxServers: config.maxServers,
      weightFloor: config.weightFloor,
      loadMetrics: config.loadMetrics,
      extensions: config.extensions,
      ...(config.heartbeatMs === undefined ? {} : { heartbeatMs: config.heartbeatMs }),
      ...(config.heartbeatBudget === undefined ? {} : { heartbeatBudget: config.heartbeatBudget }),
      suspectPhi: config.suspectPhi,
      log,
      events: { onTransition: () => screen.changed() },
    });
    const m = monitor;
    _warnings(config, credentials.httpTls !== undefined, log);
    let fleet: Fleet | undefined;
    let serverSet: ServerSet = m;
    if (config.etcd) {
      const store = createEtcdStore({ endpoints: config.etcd });
      const f = new Fleet({
        store,
        keys: new FleetKeys(config.etcdPrefix),
        lbId: config.lbId,
        monitor: m,
        checkersPerServer: config.checkersPerServer,
        leaseTtlSec: config.leaseTtlSec,
        info: { version: VERSION },
        log,
      });
      fleet = f;
      directory = new FleetDirectory(f, m);
      serverSet = f.entries();
      undo.push(() => store.close());
    } else {
      directory = m;
    }
    const dir = directory;

    const http = serveLbHttp(config, dir, credentials, log, undo);

    const settings = m.settings; // a copy: the interval can change at run time
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
      extensions: settings.extensions.join(",") || "none",
      heartbeat_ms: settings.heartbeatMs,
    });
    m.start();
    undo.push(async () => {
      await settlesWithin(m.stop("shutdown"), 1500);
    });
    if (fleet) {
      const f = fleet;
      await f.start();
      // Leaving first (the lease is revoked) lets the others take over at once.
      undo.push(() => f.stop());
      for (const s of config.servers) {
        await f.addServer(formatAddress(s.host, s.port)).catch((e) =>
          log.warn("cannot add a server to the fleet yet", {
            server: formatAddress(s.host, s.port),
            error: (e as Error).message,
          })
        );
      }
      log.info("fleet mode", {
        etcd: config.etcd!.join(","),
        prefix: config.etcdPrefix,
        checkers_per_server: config.checkersPerServer,
        lease_ttl_s: config.leaseTtlSec,
      });
    }

    // Discovery: a servers file and DNS names add and remove servers as they change.
    const discovery = new Discovery(serverSet, log);
    const followers: { refresh(): Promise<void>; close(): void }[] = [];
    undo.push(() => followers.forEach((f) => f.close()));
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

    const { agentCheckPort, dnsPort } = startLbIntegrations(config, dir, http, log, undo);

    screen.start();
    undo.push(() => screen.stop());
    let stopped: Promise<void> | undefined;
    return {
      monitor: m,
      directory: dir,
      fleet,
      http: http.server.addr,
      agentCheckPort,
      dnsPort,
      log,
      reload() {
        log.info("SIGHUP: reloading the servers file and DNS names");
        for (const f of followers) void f.refresh();
      },
      stop(reason = "shutdown") {
        stopped ??= (async () => {
          log.info("shutting down: sending TERMINATE to every server", { signal: reason });
          for (const step of undo.reverse()) await step();
          screen.drawLast();
          log.info("stopped");
        })();
        return stopped;
      },
    };
  } catch (e) {
    for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => {});
    throw e;
  }
}

/** Warnings an operator should see at start. */
function _warnings(config: LbConfig, tls: boolean, log: Logger): void {
  if (!tls && !isLoopbackHost(config.httpHost)) {
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
}
