#!/usr/bin/env -S deno run -A
/**
 * `./run_quic.sh demo --fleet`: fleet mode on this machine. A 3-member etcd
 * cluster on loopback, six server agents on 127.0.0.1:4243-4248 and three
 * LBs sharing them through etcd (each server checked by two). The first
 * LB's status table runs in this terminal; every LB serves the whole fleet,
 * with who checks what, on its dashboard: http://127.0.0.1:4242/,
 * http://127.0.0.1:4252/ and http://127.0.0.1:4262/. `--first-port N` moves
 * the agents to N..N+5, `--first-lb-port P` the LBs to P, P+10 and P+20;
 * every other argument goes to the first LB. Ctrl-C stops all. Try
 * `kill -9` on one LB (`pgrep -f "lb-id demo-lb-2"`) and watch the others
 * take its servers over.
 *
 * @module
 */

import { defaultCertsDir, ensureDefaultFiles } from "../lib/security/files.ts";
import { createLogger } from "../lib/util/log.ts";
import { EtcdCluster } from "./etcd_cluster.ts";
import { havePeer, PEERS } from "./peers.ts";
import { takePort } from "./demo_args.ts";

const root = new URL("..", import.meta.url);
const config = new URL("deno.json", root).pathname;

if (!havePeer("etcd")) {
  console.error(
    `demo --fleet needs etcd (${PEERS.etcd.path}): install it with ` +
      `"sudo apt-get install ${PEERS.etcd.pkg}", or run ./run_quic.sh test as root, which installs it`,
  );
  Deno.exit(1);
}
const firstLbArgs = [...Deno.args];
const firstPort = takePort(firstLbArgs, "first-port", 4243, 6);
const firstLbPort = takePort(firstLbArgs, "first-lb-port", 4242, 21);
const ports = [0, 1, 2, 3, 4, 5].map((i) => firstPort + i);
const lbPort = (n: number) => firstLbPort + (n - 1) * 10;
await ensureDefaultFiles(defaultCertsDir(), { log: createLogger() });
const logDir = await Deno.makeTempDir({ prefix: "qhcp-fleet-demo-" });
console.error("demo: starting a 3-member etcd cluster on 127.0.0.1 ...");
const etcd = await EtcdCluster.start(3);

const children: Deno.ChildProcess[] = [];
let stopping = false;
/** Stops every program and etcd, then exits with `code`. */
const stop = async (code = 0) => {
  if (stopping) return;
  stopping = true;
  for (const c of children) _kill(c, "SIGTERM");
  setTimeout(() => children.forEach((c) => _kill(c, "SIGKILL")), 4000);
  await Promise.all(children.map((c) => c.status));
  await etcd[Symbol.asyncDispose]();
  Deno.exit(code);
};
const spawn = (name: string, script: string, args: string[], log: string | undefined) => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--config", config, "-A", new URL(script, root).pathname, ...args],
    stdin: log ? "null" : "inherit",
    stdout: log ? "null" : "inherit",
    stderr: log ? "piped" : "inherit",
    env: log ? { NO_COLOR: "1" } : {},
  }).spawn();
  if (log) void _toFile(child, log);
  children.push(child);
  // A program that fails (its port taken, say) ends the demo, named; one
  // stopped by Ctrl-C (which reaches every program of the terminal) ends it quietly.
  void child.status.then((s) => {
    if (stopping) return;
    const failed = s.code !== 0 && s.signal === null;
    if (failed) {
      console.error(
        `demo: ${name} stopped with exit code ${s.code}${log ? `; its log: ${log}` : ""}`,
      );
    }
    void stop(failed ? 1 : 0);
  });
  return child;
};

for (const [i, port] of ports.entries()) {
  spawn(`server fleet-demo-${i + 1}`, "server.ts", [
    "--server-ip",
    "127.0.0.1",
    "--server-port",
    String(port),
    "--server-id",
    `fleet-demo-${i + 1}`,
  ], `${logDir}/server-${i + 1}.log`);
}
const lb = (n: number, extra: string[], log: string | undefined) =>
  spawn(`LB demo-lb-${n}`, "lb.ts", [
    "--etcd",
    etcd.endpoints.join(","),
    "--lb-id",
    `demo-lb-${n}`,
    "--http-host",
    "127.0.0.1",
    "--loadbalancer-port",
    String(lbPort(n)),
    "--check-interval",
    "1",
    ...extra,
  ], log);
lb(2, ["--table", "off"], `${logDir}/lb-2.log`);
lb(3, ["--table", "off"], `${logDir}/lb-3.log`);
console.error(
  `demo: 6 servers, 3 LBs sharing them through etcd; dashboards on http://127.0.0.1:${
    lbPort(1)
  }/, :${lbPort(2)}/ and :${lbPort(3)}/; logs in ${logDir}`,
);
const first = lb(
  1,
  ["--servers", ports.map((p) => `127.0.0.1:${p}`).join(","), ...firstLbArgs],
  undefined,
);

Deno.addSignalListener("SIGINT", () => void stop());
Deno.addSignalListener("SIGTERM", () => void stop());
await first.status;
await stop();

async function _toFile(child: Deno.ChildProcess, path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    for await (const chunk of child.stderr) await file.write(chunk);
  } catch { /* gone */ }
  file.close();
}

function _kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
}
