#!/usr/bin/env -S deno run -A
/**
 * QHCP server agent. Run `deno run -A server.ts --help`.
 *
 * @module
 */

import {
  _fail as _failWith,
  _parseConfig,
  _readFlagFile,
  _setupFailed,
  _sighupIgnoredAtStart,
  _startStack,
  _stopSignals,
} from "./lib/_entry.ts";
import { Agent } from "./lib/agent.ts";
import {
  createEd25519Verifier,
  createHmacVerifier,
  readKeyFile,
  readSecretFile,
  type TokenVerifier,
} from "./lib/auth.ts";
import { checkCertificatePair } from "./lib/certs.ts";
import { CliError } from "./lib/cli.ts";
import {
  defaultCertsDir,
  type DefaultFiles,
  type DefaultNeed,
  ensureDefaultFiles,
} from "./lib/defaults.ts";
import { createLogger, type Logger } from "./lib/log.ts";
import { DrainSwitch } from "./lib/drain.ts";
import { LocalChecks } from "./lib/local_checks.ts";
import { SystemMetrics } from "./lib/metrics.ts";
import { parseServerArgs, type ServerConfig, serverUsage } from "./lib/server_cli.ts";
import { VERSION } from "./lib/version.ts";

const PROGRAM = "qhcp-server";

/** Runs the agent until SIGINT or SIGTERM; returns the exit code. */
export async function runServer(args: readonly string[]): Promise<number> {
  const config = _parseConfig(PROGRAM, args, parseServerArgs, serverUsage);
  if (typeof config === "number") return config;
  const log = createLogger({ level: config.logLevel, format: config.logFormat });
  const stack = await _startStack(config.quic, log);
  if ("error" in stack) return _fail(stack.error, 1);
  const stop = _stopSignals();
  // A hang-up (the terminal closed) ends the agent in order, like SIGTERM;
  // under nohup (SIGHUP ignored at start) it stays ignored.
  const onHup = () => stop.trigger("SIGHUP");
  const hangupStops = !_sighupIgnoredAtStart();
  if (hangupStops) Deno.addSignalListener("SIGHUP", onHup);

  let credentials: { certPem: string; keyPem: string; verifier: TokenVerifier };
  try {
    credentials = await _credentials(config, log);
  } catch (e) {
    return _setupFailed(PROGRAM, e);
  }

  const metrics = new SystemMetrics({
    intervalMs: config.sampleIntervalMs,
    onError: (e) =>
      log.warn("metrics probe failed; keeping the previous values", { error: String(e) }),
  });
  metrics.start();
  const drain = new DrainSwitch({
    ...(config.drainFile ? { file: config.drainFile } : {}),
    onChange: (draining, cause) =>
      log.warn(draining ? "draining: asking LBs for no new traffic" : "no longer draining", {
        cause,
      }),
  });
  drain.start();
  const onUsr1 = () => {
    drain.toggle();
    log.info("SIGUSR1: drain switch flipped", { draining: drain.draining });
  };
  Deno.addSignalListener("SIGUSR1", onUsr1);
  const checks = new LocalChecks(config.localChecks, {
    intervalMs: config.localCheckIntervalMs,
    timeoutMs: config.localCheckTimeoutMs,
    onChange: (r) =>
      r.ok
        ? log.info("local check passes", { check: r.name, detail: r.detail })
        : log.warn("local check fails: reporting FAILING", { check: r.name, detail: r.detail }),
  });
  // The first round runs before the first LB can ask, so FAILING is never missed at start.
  await checks.start();
  const transport = stack.transport;
  let agent: Agent;
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
      log,
    });
  } catch (e) {
    await metrics.stop();
    await checks.stop();
    drain.stop();
    // The pair was checked above: what is left is the address (in use, not local).
    return _fail(`--server-ip/--server-port: ${(e as Error).message}`, 1);
  }
  log.info("server listening", {
    address: agent.host,
    port: agent.port,
    server_id: config.serverId,
    auth: credentials.verifier.alg,
    quic: config.quic,
    version: VERSION,
  });

  const signal = await stop.stopped;
  stop.escalate();
  const sessions = agent.sessions().length;
  log.info("shutting down: sending TERMINATE to every LB", { signal, sessions });
  await agent.shutdown("shutdown", 1000);
  await metrics.stop();
  await checks.stop();
  drain.stop();
  Deno.removeSignalListener("SIGUSR1", onUsr1);
  if (hangupStops) Deno.removeSignalListener("SIGHUP", onHup);
  await transport.close();
  log.info("stopped");
  return 0;
}

async function _credentials(
  config: ServerConfig,
  log: Logger,
): Promise<{ certPem: string; keyPem: string; verifier: TokenVerifier }> {
  // Only what this agent reads is required, or created when missing.
  const need: DefaultNeed[] = [
    ...(config.certFile ? [] : ["server" as const]),
    ...(config.jwtSecretFile || config.jwtPublicKeyFile ? [] : ["jwt" as const]),
  ];
  let files: DefaultFiles | undefined;
  if (need.length > 0) {
    files = await ensureDefaultFiles(defaultCertsDir(config.certsDir), { need, log });
  }
  const certPath = config.certFile ?? files!.serverCert;
  const keyPath = config.keyFile ?? files!.serverKey;
  const certPem = await _readFlagFile("cert-file", certPath);
  const keyPem = await _readFlagFile("key-file", keyPath);
  // A QUIC stack takes a bad pair and fails every handshake later: check it now.
  const pair = checkCertificatePair(certPem, keyPem, Date.now());
  if ("file" in pair) {
    const where = pair.file === "cert"
      ? `--cert-file: ${certPath}`
      : pair.file === "key"
      ? `--key-file: ${keyPath}`
      : `--cert-file and --key-file: ${certPath} and ${keyPath}`;
    throw new CliError(`${where}: ${pair.reason}`);
  }
  const verifierOptions = { leewaySec: config.jwtLeewaySec };
  const verifier = config.jwtPublicKeyFile
    ? await createEd25519Verifier(
      await readKeyFile(config.jwtPublicKeyFile, "JWT public key"),
      verifierOptions,
    )
      .catch((e) => {
        throw new CliError(`--jwt-public-key-file: ${(e as Error).message}`);
      })
    : createHmacVerifier(
      await readSecretFile(config.jwtSecretFile ?? files!.jwtSecret).catch((e) => {
        throw new CliError(`--jwt-secret-file: ${(e as Error).message}`);
      }),
      verifierOptions,
    );
  return { certPem, keyPem, verifier };
}

function _fail(message: string, code: number): number {
  return _failWith(PROGRAM, message, code);
}

if (import.meta.main) Deno.exit(await runServer(Deno.args));
