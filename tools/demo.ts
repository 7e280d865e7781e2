#!/usr/bin/env -S deno run -A
/**
 * `./run_quic.sh demo`: three server agents on 127.0.0.1:4243-4245 and a
 * load balancer watching them, with the live status table in this terminal.
 * `--first-port N` moves the agents to N..N+2; every other argument goes to
 * the LB. Ctrl-C stops all. A server that cannot start (its port is taken,
 * say) stops the demo with a line that names it and says why.
 *
 * @module
 */

import { defaultCertsDir, ensureDefaultFiles } from "../lib/security/files.ts";
import { createLogger } from "../lib/util/log.ts";
import { takePort } from "./demo_args.ts";

const root = new URL("..", import.meta.url);
const config = new URL("deno.json", root).pathname;
// The QUIC library is a native addon (full trust), so the programs run with -A.
const perms = ["-A"];

const lbArgs = [...Deno.args];
const firstPort = takePort(lbArgs, "first-port", 4243, 3);
const ports = [firstPort, firstPort + 1, firstPort + 2];
const logDir = await Deno.makeTempDir({ prefix: "qhcp-demo-" });

// Create the development CA, certificate and secret once, before anything starts.
await ensureDefaultFiles(defaultCertsDir(), { log: createLogger() });

interface DemoServer {
  name: string;
  port: number;
  child: Deno.ChildProcess;
  log: string;
  /** The last lines it wrote. */
  lines: string[];
  /** Resolves when it listens, or with the reason it did not. */
  ready: Promise<{ ok: true } | { ok: false; why: string }>;
}

const servers: DemoServer[] = ports.map((port, i) => {
  const name = `demo-${i + 1}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--config",
      config,
      ...perms,
      new URL("server.ts", root).pathname,
      "--server-ip",
      "127.0.0.1",
      "--server-port",
      String(port),
      "--server-id",
      name,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const log = `${logDir}/server-${i + 1}.log`;
  const lines: string[] = [];
  const ready = _follow(child, log, lines);
  return { name, port, child, log, lines, ready };
});

// Every server must be listening before the LB starts; one that is not stops the demo.
const outcomes = await Promise.all(servers.map((s) => s.ready));
const failed = servers.filter((_, i) => !outcomes[i]!.ok);
if (failed.length > 0) {
  for (const s of failed) {
    const o = outcomes[servers.indexOf(s)]!;
    console.error(
      `demo: server ${s.name} on 127.0.0.1:${s.port} failed to start: ${
        o.ok ? "" : o.why
      } (its log: ${s.log})`,
    );
  }
  servers.forEach((s) => _kill(s.child, "SIGTERM"));
  await Promise.all(servers.map((s) => s.child.status));
  Deno.exit(1);
}
console.error(`demo: servers on 127.0.0.1:${ports.join(", ")}; their logs are in ${logDir}`);

const lb = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--config",
    config,
    ...perms,
    new URL("lb.ts", root).pathname,
    "--servers",
    ports.map((p) => `127.0.0.1:${p}`).join(","),
    "--check-interval",
    "1",
    "--reconnect-interval",
    "5",
    "--lb-id",
    "demo-lb",
    // The demo's HTTP endpoint (and its admin token) stays on this machine.
    "--http-host",
    "127.0.0.1",
    ...lbArgs,
  ],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

const children = [lb, ...servers.map((s) => s.child)];
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // From a terminal, Ctrl-C already reached every child; give them time to end
  // cleanly, then ask the rest with SIGTERM, then SIGKILL.
  setTimeout(() => children.forEach((c) => _kill(c, "SIGTERM")), 3000);
  setTimeout(() => children.forEach((c) => _kill(c, "SIGKILL")), 6000);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", () => {
  children.forEach((c) => _kill(c, "SIGTERM"));
  stop();
});
const lbStatus = await lb.status;
// The LB ended (Ctrl-C or an error): end the servers too.
if (!stopping) {
  servers.forEach((s) => _kill(s.child, "SIGTERM"));
  stop();
}
await Promise.all(servers.map((s) => s.child.status));
Deno.exit(lbStatus.code);

/** Copies a server's stderr to its log file; resolves once it listens, exits, or 20 s pass. */
function _follow(
  child: Deno.ChildProcess,
  path: string,
  lines: string[],
): Promise<{ ok: true } | { ok: false; why: string }> {
  const { promise, resolve } = Promise.withResolvers<{ ok: true } | { ok: false; why: string }>();
  const timer = setTimeout(
    () => resolve({ ok: false, why: "it did not report listening within 20 s" }),
    20_000,
  );
  void (async () => {
    const file = await Deno.open(path, { write: true, create: true });
    const encoder = new TextEncoder();
    let partial = "";
    try {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        await file.write(encoder.encode(text));
        const parts = (partial + text).split("\n");
        partial = parts.pop() ?? "";
        for (const line of parts) {
          lines.push(line);
          if (lines.length > 20) lines.shift();
          if (/ INFO server listening /.test(line)) resolve({ ok: true });
        }
      }
    } catch { /* the child is gone */ }
    file.close();
    const status = await child.status;
    clearTimeout(timer);
    const last = [...lines, partial].reverse().find((l) => l.trim() !== "") ?? "";
    resolve({
      ok: false,
      why: `it exited with code ${status.code}${
        last ? `: ${last.replace(/^\d{4}-\d\d-\d\dT\S+ [A-Z]+ /, "")}` : ""
      }`,
    });
  })();
  void promise.then(() => clearTimeout(timer));
  return promise;
}

function _kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
}
