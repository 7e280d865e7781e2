#!/usr/bin/env -S deno run -A
/**
 * `deno task bench`: the QHCP benchmark, one run in one process tree, for
 * both QUIC stacks side by side. Prints Markdown tables and writes
 * `bench/results.json` (`bench`; scale rows from `deno task bench:scale`
 * are kept).
 *
 * - Check round trip: `_peer.ts client qhcp` (the LB's state machine, codec
 *   and session wrapper) against a real `server.ts`, beside the raw QUIC
 *   echo of the same stack with the same frame sizes, an HTTP/1.1 keep-alive
 *   `GET /healthz` served by `Deno.serve`, and a gRPC grpc.health.v1 Check.
 * - CPU per check: the client's and the server's process CPU time over the
 *   timed calls; and the real `lb.ts`'s over a 200-server run at 1 s.
 * - Session setup: dial to first HEALTH_RESPONSE, a fresh session each time.
 * - Server footprint: `server.ts` idle (resident memory and CPU over minutes), then
 *   under 3 `lb.ts` at 1 check/s; what one metrics sample costs. The agent
 *   runs as on a production host: `run_quic.sh server`'s Deno flags, and a
 *   DENO_DIR of its own filled by `run_quic.sh install`.
 * - Failure detection (`detection.ts`): SIGKILL, SIGSTOP and SIGTERM of
 *   servers to the LB's DOWN line with heartbeats at the defaults, and
 *   SIGKILL with polls alone; pushed FAILING, recovery and drain from the
 *   agent noticing to the LB; and per heartbeat interval, the detection it
 *   buys against the LB's CPU with 1,000 servers (part `heartbeats`).
 *
 * Flags: --quick (fewer samples: a smoke run, not numbers to quote),
 * --only PART,... (rtt, peers, setup, memory, detection, heartbeats, lbcpu),
 * --stacks matrixai,native, --n N (timed checks, default 5000), --results
 * FILE (instead of bench/results.json; docs/PERFORMANCE.md is then left alone).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { QUIC_STACKS, type QuicStack } from "../lib/transport/stacks.ts";
import {
  benchLbFlags,
  Child,
  machine,
  memoryDetail,
  percentile,
  procSample,
  readResults,
  sleep,
  type Summary,
  type TimedCalls,
  writeResults,
} from "./_measure.ts";
import {
  type BenchRecord,
  benchTables,
  type RoundTrip,
  type StackResult,
  updatePerformanceDoc,
} from "./_report.ts";
import { runScale } from "./scale.ts";
import { BINARY_CACHES, denoCopy } from "./_page_cache.ts";
import { SystemMetrics } from "../lib/agent/metrics.ts";
import { agentDenoFlags } from "../lib/util/defaults.ts";
import { type DetectionBench, detectionRuns, heartbeatCosts, pushLatency } from "./detection.ts";

const PARTS = ["rtt", "peers", "setup", "memory", "detection", "heartbeats", "lbcpu"] as const;
type Part = typeof PARTS[number];

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    stacks: { type: "string", default: QUIC_STACKS.join(",") },
    n: { type: "string" },
    results: { type: "string" },
  },
});
const quick = values.quick;
const parts = new Set<Part>(
  (values.only?.split(",") ?? PARTS).map((p) => {
    if (!(PARTS as readonly string[]).includes(p)) {
      throw new Error(`--only: unknown part ${p}; expected ${PARTS.join(", ")}`);
    }
    return p as Part;
  }),
);
const stacks = values.stacks.split(",").map((s) => {
  if (!(QUIC_STACKS as readonly string[]).includes(s)) {
    throw new Error(`--stacks: unknown stack ${s}; expected ${QUIC_STACKS.join(", ")}`);
  }
  return s as QuicStack;
});
const N = Number(values.n ?? (quick ? 1000 : 5000));
const WARMUP = quick ? 200 : 1000;
const SETUPS = quick ? 30 : 200;
const LOADED_S = quick ? 8 : 20;
/** Idle CPU is a few clock ticks a minute: minutes make it a number. */
const IDLE_S = quick ? 20 : 180;

const say = (line: string) => console.error(`bench: ${line}`);
const r1 = (x: number) => Math.round(x * 10) / 10;

const dir = await Deno.makeTempDir({ prefix: "qhcp-bench-" });
// As run_quic.sh runs the programs: no update check.
const env = { QHCP_CERTS_DIR: dir, DENO_NO_UPDATE_CHECK: "1" };
const children = new Set<Child>();
const results: Partial<Record<QuicStack, StackResult>> = {};
const peers: BenchRecord["peers"] = {};

/**
 * The agents' DENO_DIR, filled by `run_quic.sh install` as a production
 * host's is: the agent then maps only its own and the LB's entries of Deno's
 * module caches, not every module a development checkout ever ran.
 */
const agentDenoDir = `${dir}/deno-dir`;
/** The checkout this benchmark runs from, without a trailing slash. */
const checkout = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

async function installAgentCache(): Promise<void> {
  say("filling the agents' DENO_DIR with run_quic.sh install ...");
  const out = await new Deno.Command("bash", {
    args: [`${checkout}/run_quic.sh`, "install"],
    env: { ...env, DENO_DIR: agentDenoDir },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`run_quic.sh install failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
}

/** Starts a child and remembers it, so that a failed run leaves nothing behind. */
function spawn(
  script: string,
  args: string[],
  denoFlags: string[] = [],
  more: Record<string, string> = {},
  deno?: string,
): Child {
  const c = new Child(script, args, { ...env, ...more }, denoFlags, deno);
  children.add(c);
  return c;
}

async function stop(c: Child, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  await c.stop(signal);
  children.delete(c);
}

/**
 * A real server.ts on 127.0.0.1, any port, run by `deno` (this Deno unless
 * given); resolves with the child and its port.
 */
async function startServer(
  stack: QuicStack,
  id: string,
  deno?: string,
): Promise<{ child: Child; port: number }> {
  const child = spawn(
    "server.ts",
    [
      "--server-ip",
      "127.0.0.1",
      "--server-port",
      "0",
      "--quic",
      stack,
      "--server-id",
      id,
      // A benchmark asks as fast as the stack answers, far beyond an LB's pace.
      "--session-rate",
      "1000000",
    ],
    agentDenoFlags(checkout),
    { DENO_DIR: agentDenoDir },
    deno,
  );
  const m = await child.waitForLog(/server listening .*port=(\d+)/, 60_000);
  return { child, port: Number(m.match[1]) };
}

/** Runs a timed client against a server process, reading the server's CPU time around the timed calls. */
async function timed(
  serverPid: number,
  clientScript: string,
  args: string[],
  flags: string[] = [],
): Promise<{ trip: RoundTrip; reply: Record<string, unknown> }> {
  const client = spawn(
    clientScript,
    [...args, "--n", String(N), "--warmup", String(WARMUP)],
    flags,
  );
  await client.next(300_000); // { phase: "warm" }
  const s0 = procSample(serverPid).cpuMs;
  const done = await client.next<TimedCalls & Record<string, unknown>>(600_000);
  const s1 = procSample(serverPid).cpuMs;
  await stop(client);
  const trip = {
    rtt: done.rtt,
    client_cpu_us: done.clientCpuUsPerCall,
    server_cpu_us: r1(((s1 - s0) * 1000) / N),
  };
  return { trip, reply: done };
}

async function roundTrips(stack: QuicStack, out: StackResult): Promise<void> {
  const server = await startServer(stack, `bench-${stack}`);
  try {
    // The QUIC peers' common arguments, to a port.
    const quicArgs = (port: number) => ["--quic", stack, "--certs", dir, "--port", String(port)];
    if (parts.has("rtt")) {
      say(`${stack}: ${N} checks against server.ts ...`);
      const check = await timed(server.child.pid, "bench/_peer.ts", [
        "client",
        "qhcp",
        ...quicArgs(server.port),
      ]);
      const frames = check.reply.frames as { request: number; response: number };
      out.check = { ...check.trip, frames };

      say(`${stack}: ${N} echoes of ${frames.request} -> ${frames.response} bytes ...`);
      const sizes = ["--req", String(frames.request), "--resp", String(frames.response)];
      const echoServer = spawn("bench/_peer.ts", ["serve", "echo", ...quicArgs(0), ...sizes]);
      const { port } = await echoServer.next<{ port: number }>(60_000);
      out.echo = (await timed(echoServer.pid, "bench/_peer.ts", [
        "client",
        "echo",
        ...quicArgs(port),
        ...sizes,
      ])).trip;
      await stop(echoServer);
      out.check_over_echo = {
        p50: r1(out.check.rtt.p50 / out.echo.rtt.p50),
        p99: r1(out.check.rtt.p99 / out.echo.rtt.p99),
      };
    }
    if (parts.has("setup")) {
      say(`${stack}: ${SETUPS} session setups ...`);
      const client = spawn("bench/_peer.ts", [
        "client",
        "setup",
        ...quicArgs(server.port),
        "--n",
        String(SETUPS),
      ]);
      out.setup = (await client.next<{ setup: Summary }>(300_000)).setup;
      await stop(client);
    }
  } finally {
    await stop(server.child);
  }
}

/** Same-size answers from the two peers users would deploy instead, over the same loopback. */
async function otherPeers(responseBytes: number): Promise<void> {
  say(`HTTP/1.1 keep-alive GET /healthz (Deno.serve), ${N} requests ...`);
  const http = spawn("bench/_peer.ts", ["serve", "http", "--resp", String(responseBytes)]);
  const h = await http.next<{ port: number }>(60_000);
  peers.http =
    (await timed(http.pid, "bench/_peer.ts", ["client", "http", "--port", String(h.port)])).trip;
  await stop(http);

  say(`gRPC grpc.health.v1 Check (@grpc/grpc-js), ${N} calls ...`);
  const grpcFlags = ["--config", new URL("./grpc/deno.json", import.meta.url).pathname];
  const grpc = spawn("bench/grpc/peer.ts", ["serve"], grpcFlags);
  const g = await grpc.next<{ port: number }>(120_000);
  peers.grpc = (await timed(grpc.pid, "bench/grpc/peer.ts", [
    "client",
    "--port",
    String(g.port),
  ], grpcFlags)).trip;
  await stop(grpc);
}

function lbArgs(stack: QuicStack, servers: string[], extra: string[]): string[] {
  return [
    "--servers",
    servers.join(","),
    ...benchLbFlags(stack),
    ...extra,
  ];
}

async function memory(stack: QuicStack, out: StackResult): Promise<void> {
  say(
    `${stack}: two server.ts idle for ${IDLE_S} s, each on its own copy of the Deno binary ` +
      `(${BINARY_CACHES.join(", ")}), then the first under 3 LBs at 1 s for ${LOADED_S} s ...`,
  );
  // Side by side: an idle agent's CPU is a few ticks a minute, and the copies share no page.
  const server = await startServer(stack, `mem-${stack}`, await denoCopy(dir, "faulted"));
  const written = await startServer(stack, `mem-${stack}-w`, await denoCopy(dir, "written"));
  const pid = server.child.pid;
  const lbs: Child[] = [];
  try {
    await sleep(5000);
    const before = procSample(pid).cpuMs;
    await sleep(IDLE_S * 1000);
    const idleCpu = (procSample(pid).cpuMs - before) / (IDLE_S * 10);
    const idle = memoryDetail(pid);
    const idleWritten = memoryDetail(written.child.pid);
    await stop(written.child);
    for (let i = 0; i < 3; i++) {
      lbs.push(
        spawn(
          "lb.ts",
          lbArgs(stack, [`127.0.0.1:${server.port}`], [
            "--check-interval",
            "1",
            "--lb-id",
            `lb-mem-${i}`,
          ]),
        ),
      );
    }
    await Promise.all(lbs.map((lb) => lb.waitForLog(/server UP/, 60_000)));
    let peak = 0;
    const loadedFrom = procSample(pid).cpuMs;
    for (let s = 0; s < LOADED_S; s++) {
      await sleep(1000);
      peak = Math.max(peak, memoryDetail(pid).rss);
    }
    const loadedCpu = (procSample(pid).cpuMs - loadedFrom) / (LOADED_S * 10);
    const end = memoryDetail(pid).rss;
    for (const lb of lbs) {
      if (lb.stderrLines.some((l) => /server DOWN/.test(l.line))) {
        throw new Error(`an LB marked the server DOWN during the memory run:\n${lb.stderr()}`);
      }
    }
    out.server_rss_mb = {
      idle: Math.round(idle.rss),
      three_lbs_peak: Math.round(peak),
      three_lbs_end: Math.round(end),
      idle_detail: idle,
      idle_written_detail: idleWritten,
    };
    out.server_cpu = {
      idle_percent: Math.round(idleCpu * 1000) / 1000,
      idle_window_s: IDLE_S,
      three_lbs_percent: Math.round(loadedCpu * 1000) / 1000,
    };
  } finally {
    await Promise.all(lbs.map((lb) => stop(lb)));
    await Promise.all([server.child, written.child].map((c) => stop(c)));
  }
}

/** What one metrics sample costs the agent, µs: spaced out, as an agent takes them. */
async function sampleCost(): Promise<number> {
  const metrics = new SystemMetrics();
  const times: number[] = [];
  for (let i = 0; i < (quick ? 50 : 300); i++) {
    await sleep(10);
    const t = performance.now();
    metrics.sampleNow();
    times.push(performance.now() - t);
  }
  times.sort((x, y) => x - y);
  return Math.round(percentile(times, 50) * 1000);
}

async function lbCpu(stack: QuicStack, out: StackResult): Promise<void> {
  say(`${stack}: lb.ts CPU per check, 200 servers at 1 s ...`);
  const r = await runScale({
    servers: 200,
    intervalS: 1,
    quic: stack,
    durationS: quick ? 8 : 20,
    warmupS: 3,
    say,
  });
  out.lb = {
    servers: r.servers,
    interval_s: r.interval_s,
    lb_cpu_us_per_check: r.lb_cpu_us_per_check,
    lb_cpu_percent: r.lb_cpu_percent,
    lb_rss_mb: r.lb_rss_mb,
    holds: r.holds,
  };
}

// --- run -----------------------------------------------------------------------

const started = performance.now();
const detectionBench: DetectionBench = {
  env,
  agent: { denoFlags: agentDenoFlags(checkout), env: { DENO_DIR: agentDenoDir } },
  quick,
  say,
};
let heartbeats: BenchRecord["heartbeat_costs"];
let sampleUs: number | undefined;
try {
  await ensureDefaultFiles(dir);
  if ((["rtt", "setup", "memory", "detection", "heartbeats"] as const).some((p) => parts.has(p))) {
    await installAgentCache();
  }
  for (const stack of stacks) {
    const out: StackResult = {};
    results[stack] = out;
    if (parts.has("rtt") || parts.has("setup")) await roundTrips(stack, out);
  }
  if (parts.has("peers")) {
    const frames = results.native?.check?.frames ?? results.matrixai?.check?.frames;
    await otherPeers(frames?.response ?? 200);
  }
  for (const stack of stacks) {
    const out = results[stack]!;
    if (parts.has("memory")) await memory(stack, out);
    if (parts.has("lbcpu")) await lbCpu(stack, out);
    if (parts.has("detection")) {
      out.detection = await detectionRuns(detectionBench, stack);
      out.push = await pushLatency(detectionBench, stack);
    }
  }
  if (parts.has("heartbeats")) heartbeats = await heartbeatCosts(detectionBench);
  if (parts.has("memory")) sampleUs = await sampleCost();
} finally {
  await Promise.all([...children].map((c) => c.stop("SIGKILL")));
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

const record: BenchRecord = {
  when: new Date().toISOString(),
  quick,
  n: N,
  warmup: WARMUP,
  took_s: Math.round((performance.now() - started) / 1000),
  machine: machine(),
  stacks: results,
  peers,
  ...(heartbeats ? { heartbeat_costs: heartbeats } : {}),
  ...(sampleUs !== undefined ? { agent_sample_us: sampleUs } : {}),
};
console.log(benchTables(record));
const all = { ...readResults(values.results), bench: record };
writeResults(all, values.results);
const documented = !values.results && await updatePerformanceDoc(all);
say(
  `done in ${record.took_s} s; results in ${values.results ?? "bench/results.json"}` +
    (documented ? (quick ? "" : " and docs/PERFORMANCE.md") : ""),
);
