/**
 * The server agent as a program: from its parsed flags to a running agent
 * (credentials, QUIC stack, metrics sampling, drain switch, local checks)
 * and back to nothing with `stop()`. `server.ts` wraps it with signals;
 * tests start it in-process.
 *
 * @module
 */

import { Agent } from "../agent/agent.ts";
import { DrainSwitch } from "../agent/drain.ts";
import { LocalChecks } from "../agent/local_checks.ts";
import { type MetricsSource, SystemMetrics } from "../agent/metrics.ts";
import type { Transport } from "../transport/transport.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { VERSION } from "../util/version.ts";
import { loadAgentCredentials } from "./credentials.ts";
import { startStack } from "./entry.ts";
import type { ServerConfig } from "./server_flags.ts";

/** A running agent. */
export interface RunningAgent {
  readonly agent: Agent;
  readonly log: Logger;
  /** Flips the drain switch (SIGUSR1). */
  toggleDrain(): void;
  /**
   * Sends TERMINATE to every LB (up to 1 s for the acknowledgements), stops
   * sampling and checking, and closes the QUIC stack it opened.
   */
  stop(reason?: string): Promise<void>;
}

/** Options of {@linkcode startAgent}. */
export interface StartAgentOptions {
  /** Use this transport (kept open on stop) instead of opening `config.quic`'s stack. */
  transport?: Transport;
  /** Use these metrics instead of sampling the host. */
  metrics?: MetricsSource;
  /** Log lines go here instead of stderr. */
  logSink?: (line: string) => void;
}

/**
 * Starts an agent.
 *
 * @throws {CliError} or another typed set-up error (exit 2): bad flags, files or keys
 * @throws {Error} when the address cannot be bound (exit 1)
 */
export async function startAgent(
  config: ServerConfig,
  options: StartAgentOptions = {},
): Promise<RunningAgent> {
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    ...(options.logSink ? { sink: options.logSink } : {}),
  });
  const credentials = await loadAgentCredentials(config, log);
  const transport = options.transport ?? await startStack(config.quic, log);
  // What to undo, last first: stop() and a failed start run it.
  const undo: (() => Promise<void> | void)[] = [];
  if (!options.transport) undo.push(() => transport.close());
  try {
    let metrics = options.metrics;
    if (!metrics) {
      const system = new SystemMetrics({
        intervalMs: config.sampleIntervalMs,
        onError: (e) =>
          log.warn("metrics probe failed; keeping the previous values", { error: String(e) }),
      });
      log.info(`metrics: ${system.describeLimits()}`);
      metrics = system;
    }
    // A status change reaches LBs with push at once; the agent exists once the checks ran.
    let agent: Agent | undefined;
    const drain = new DrainSwitch({
      ...(config.drainFile ? { file: config.drainFile } : {}),
      onChange: (draining, cause) => {
        log.warn(draining ? "draining: asking LBs for no new traffic" : "no longer draining", {
          cause,
        });
        agent?.statusChanged();
      },
    });
    drain.start();
    undo.push(() => drain.stop());
    const checks = new LocalChecks(config.localChecks, {
      intervalMs: config.localCheckIntervalMs,
      timeoutMs: config.localCheckTimeoutMs,
      onChange: (r) => {
        if (r.ok) log.info("local check passes", { check: r.name, detail: r.detail });
        else log.warn("local check fails: reporting FAILING", { check: r.name, detail: r.detail });
        agent?.statusChanged();
      },
    });
    // The first round runs before the first LB can ask, so FAILING is never missed at start.
    await checks.start();
    undo.push(() => checks.stop());
    try {
      agent = await Agent.start({
        transport,
        host: config.host,
        port: config.port,
        certPem: credentials.certPem,
        keyPem: credentials.keyPem,
        serverId: config.serverId,
        verifier: credentials.verifier,
        requireBoundTokens: config.requireBoundTokens,
        metrics,
        status: () => checks.failing ? "FAILING" : drain.draining ? "DRAINING" : "UP",
        ...(config.localChecks.length > 0 ? { checks: () => checks.results() } : {}),
        defaultMetrics: config.defaultMetrics,
        helloTimeoutMs: config.helloTimeoutMs,
        maxUnauthenticated: config.maxUnauthenticated,
        maxConnections: config.maxConnections,
        maxConnectionsPerAddress: config.maxConnectionsPerAddress,
        maxSessionsPerLb: config.maxSessionsPerLb,
        sessionRate: config.sessionRate,
        idleTimeoutMs: config.idleTimeoutMs,
        extensions: config.extensions,
        services: config.services,
        log,
      });
    } catch (e) {
      // The pair was checked above: what is left is the address (in use, not local).
      throw new Error(`--server-ip/--server-port: ${(e as Error).message}`);
    }
    log.info("server listening", {
      address: agent.host,
      port: agent.port,
      server_id: config.serverId,
      auth: credentials.verifier.alg,
      quic: config.quic,
      version: VERSION,
    });
    let stopped: Promise<void> | undefined;
    return {
      agent,
      log,
      toggleDrain() {
        drain.toggle();
        log.info("SIGUSR1: drain switch flipped", { draining: drain.draining });
      },
      stop(reason = "shutdown") {
        stopped ??= (async () => {
          log.info("shutting down: sending TERMINATE to every LB", {
            signal: reason,
            sessions: agent.sessions().length,
          });
          await agent.shutdown("shutdown", 1000);
          for (const step of undo.reverse()) await step();
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
