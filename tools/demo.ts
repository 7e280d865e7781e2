#!/usr/bin/env -S deno run -A
/**
 * `./run_quic.sh demo` / `deno task demo`: three server agents on
 * 127.0.0.1:4243-4245 and a load balancer watching them, with the live status
 * table in this terminal. Extra arguments go to the LB. Ctrl-C stops all.
 *
 * @module
 */

import { defaultCertsDir, ensureDefaultFiles } from "../lib/defaults.ts";
import { createLogger } from "../lib/log.ts";

const root = new URL("..", import.meta.url);
const config = new URL("deno.json", root).pathname;
// The QUIC library is a native addon (full trust), so the programs run with -A.
const perms = ["-A"];
const ports = [4243, 4244, 4245];
const logDir = await Deno.makeTempDir({ prefix: "qhcp-demo-" });

// Create the development CA, certificate and secret once, before anything starts.
await ensureDefaultFiles(defaultCertsDir(), { log: createLogger() });

const servers = ports.map((port, i) =>
  new Deno.Command(Deno.execPath(), {
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
      `demo-${i + 1}`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn()
);
// Server logs go to files, so that the LB's live table owns the terminal.
for (const [i, s] of servers.entries()) {
  const file = await Deno.open(`${logDir}/server-${i + 1}.log`, { write: true, create: true });
  void s.stderr.pipeTo(file.writable).catch(() => {});
}
console.error(`demo: servers on 127.0.0.1:${ports.join(", ")}; their logs are in ${logDir}`);
await new Promise((r) => setTimeout(r, 500));

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
    ...Deno.args,
  ],
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

const children = [lb, ...servers];
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
  servers.forEach((s) => _kill(s, "SIGTERM"));
  stop();
}
await Promise.all(servers.map((s) => s.status));
Deno.exit(lbStatus.code);

function _kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
}
