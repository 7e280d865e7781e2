/**
 * The detection part of `deno task bench` (docs/PERFORMANCE.md,
 * "Detection"): how fast a dead, frozen or stopping server is DOWN with
 * heartbeats at the defaults and with polls alone; how fast a pushed status
 * reaches the LB; and what each heartbeat interval costs the LB per 1,000
 * servers against the detection time it buys.
 *
 * Every time is read from log lines as they arrive in this process (the
 * LB's `server DOWN`, the agent's `local check fails`), so both ends of a
 * measurement are stamped by the same clock.
 *
 * @module
 */

import type { QuicStack } from "../lib/transport/stacks.ts";
import { benchLbFlags, Child, sleep, summarize, type Summary } from "./_measure.ts";
import { runScale } from "./scale.ts";

/** Signal to DOWN, one configuration. */
export interface Detection {
  /** `defaults` (heartbeats on), `polls` (--extensions none), `fast polls` (that, at 1 s / 0.2 s). */
  config: "defaults" | "polls" | "fast polls";
  signal: "SIGKILL" | "SIGSTOP" | "SIGTERM";
  /** Milliseconds from the signal to the LB's DOWN line. */
  to_down: Summary & { max: number };
  /** DOWN lines by the evidence that decided them. */
  evidence: Record<string, number>;
}

/** From the agent noticing to the LB acting, pushed (check interval 60 s: no poll helps). */
export interface PushLatency {
  /** Local check fails (agent log) to the LB's DOWN. */
  failing: Summary & { max: number };
  /** Local check passes again to the LB's UP (the push and one confirming check). */
  recovered: Summary & { max: number };
  /** SIGUSR1 drain (agent log) to the LB's "server draining". */
  drain: Summary & { max: number };
}

/** One heartbeat interval: detection it buys, CPU it costs. */
export interface HeartbeatCost {
  quic: QuicStack;
  /** The interval asked with `--heartbeat-interval`; 0: heartbeats off (polls only). */
  asked_ms: number;
  /** The interval the LB used with 1,000 servers (its budget may lengthen it). */
  heartbeat_ms: number;
  /** SIGKILL to DOWN at this interval. */
  to_down: Summary & { max: number };
  /** The LB's CPU with 1,000 servers at a 10 s check interval, percent of one core. */
  lb_cpu_percent_1000: number;
  /** Probes sent during that scale run (false suspicions; none should fail). */
  probes: number;
  false_downs: number;
}

/** What the caller provides: the certificates directory, a logger, and a smoke-run switch. */
export interface DetectionBench {
  env: Record<string, string>;
  /** How an agent runs, as on a production host: its Deno flags and environment (DENO_DIR). */
  agent: { denoFlags: readonly string[]; env: Record<string, string> };
  quick: boolean;
  say: (line: string) => void;
}

const SERVERS = 6;

const r3 = (x: number) => Math.round(x * 1000) / 1000;
const withMax = (times: number[]) => ({ ...summarize(times), max: r3(Math.max(...times)) });

/** A server.ts on 127.0.0.1, any port. */
async function server(b: DetectionBench, stack: QuicStack, args: string[] = []) {
  const child = new Child(
    "server.ts",
    ["--server-ip", "127.0.0.1", "--server-port", "0", "--quic", stack, ...args],
    { ...b.env, ...b.agent.env },
    b.agent.denoFlags,
  );
  const m = await child.waitForLog(/server listening .*port=(\d+)/, 60_000);
  return { child, port: Number(m.match[1]) };
}

function lb(b: DetectionBench, stack: QuicStack, ports: number[], args: string[]): Child {
  return new Child("lb.ts", [
    "--servers",
    ports.map((p) => `127.0.0.1:${p}`).join(","),
    ...benchLbFlags(stack),
    ...args,
  ], b.env);
}

/**
 * `rounds` rounds of SERVERS servers under one LB; once all are UP and the
 * detectors have seen a few seconds of heartbeats, each server gets the
 * signal at a random moment within `spreadS`. Returns the times and evidence.
 */
async function killRounds(
  b: DetectionBench,
  stack: QuicStack,
  lbArgs: string[],
  signal: Detection["signal"],
  rounds: number,
  spreadS: number,
): Promise<{ times: number[]; evidence: Record<string, number> }> {
  const times: number[] = [];
  const evidence: Record<string, number> = {};
  for (let round = 0; round < rounds; round++) {
    const servers = await Promise.all(Array.from({ length: SERVERS }, () => server(b, stack)));
    const l = lb(b, stack, servers.map((s) => s.port), lbArgs);
    try {
      for (const s of servers) {
        await l.waitForLog(new RegExp(`server UP server=127\\.0\\.0\\.1:${s.port}\\b`), 60_000);
      }
      await sleep(3000);
      const from = l.stderrCount;
      await Promise.all(servers.map(async (s) => {
        await sleep(Math.random() * spreadS * 1000);
        const killedAt = performance.now();
        s.child.process.kill(signal);
        const down = await l.waitForLog(
          new RegExp(`server DOWN server=127\\.0\\.0\\.1:${s.port}\\b.*evidence=(\\S+)`),
          120_000,
          from,
        );
        times.push(down.at - killedAt);
        evidence[down.match[1]!] = (evidence[down.match[1]!] ?? 0) + 1;
      }));
    } finally {
      await l.stop("SIGTERM");
      await Promise.all(servers.map((s) => s.child.stop("SIGKILL")));
    }
  }
  return { times, evidence };
}

/** Signal to DOWN on `stack`: heartbeats at the defaults, and polls alone. */
export async function detectionRuns(b: DetectionBench, stack: QuicStack): Promise<Detection[]> {
  const configs: [Detection["config"], string[], Detection["signal"][], number, number][] = [
    ["defaults", [], ["SIGKILL", "SIGSTOP", "SIGTERM"], b.quick ? 1 : 5, 1],
    ["polls", ["--extensions", "none"], ["SIGKILL"], 1, 10],
    [
      "fast polls",
      ["--extensions", "none", "--check-interval", "1", "--fast-interval", "0.2"],
      ["SIGKILL"],
      1,
      1,
    ],
  ];
  const out: Detection[] = [];
  for (const [config, args, signals, rounds, spreadS] of configs) {
    for (const signal of signals) {
      b.say(`${stack}: ${signal} to DOWN, ${config}, ${rounds} x ${SERVERS} servers ...`);
      const { times, evidence } = await killRounds(b, stack, args, signal, rounds, spreadS);
      out.push({ config, signal, to_down: withMax(times), evidence });
    }
  }
  return out;
}

/**
 * Pushed status on `stack`: an agent with a TCP local check (0.2 s) on a
 * port this process opens and closes, and a drain by SIGUSR1; the LB checks
 * every 60 s, so only a push can be that fast.
 */
export async function pushLatency(b: DetectionBench, stack: QuicStack): Promise<PushLatency> {
  const rounds = b.quick ? 2 : 10;
  b.say(`${stack}: pushed FAILING, recovery and drain, ${rounds} rounds ...`);
  let app: Deno.Listener | undefined = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const appPort = (app.addr as Deno.NetAddr).port;
  const serve = (l: Deno.Listener) =>
    void (async () => {
      for await (const c of l) c.close();
    })().catch(() => {});
  serve(app);
  const s = await server(b, stack, [
    "--check-tcp",
    `127.0.0.1:${appPort}`,
    "--local-check-interval",
    "0.2",
  ]);
  const l = lb(b, stack, [s.port], ["--check-interval", "60"]);
  const failing: number[] = [];
  const recovered: number[] = [];
  const drain: number[] = [];
  try {
    await l.waitForLog(/server UP /, 60_000);
    for (let i = 0; i < rounds; i++) {
      await sleep(500 + Math.random() * 200);
      let sf = s.child.stderrCount;
      let lf = l.stderrCount;
      app.close();
      app = undefined;
      const noticed = await s.child.waitForLog(/local check fails/, 10_000, sf);
      const down = await l.waitForLog(/server DOWN .*evidence=pushed_status/, 10_000, lf);
      failing.push(down.at - noticed.at);
      sf = s.child.stderrCount;
      lf = l.stderrCount;
      app = Deno.listen({ hostname: "127.0.0.1", port: appPort });
      serve(app);
      const passes = await s.child.waitForLog(/local check passes/, 10_000, sf);
      const up = await l.waitForLog(/server UP /, 10_000, lf);
      recovered.push(up.at - passes.at);
      sf = s.child.stderrCount;
      lf = l.stderrCount;
      s.child.process.kill("SIGUSR1");
      const draining = await s.child.waitForLog(/draining: asking LBs/, 10_000, sf);
      const seen = await l.waitForLog(/server draining /, 10_000, lf);
      drain.push(seen.at - draining.at);
      s.child.process.kill("SIGUSR1"); // back to UP
      await l.waitForLog(/server no longer draining/, 10_000, lf);
    }
  } finally {
    app?.close();
    await l.stop("SIGTERM");
    await s.child.stop("SIGKILL");
  }
  return { failing: withMax(failing), recovered: withMax(recovered), drain: withMax(drain) };
}

/**
 * The trade-off table: for each heartbeat interval, SIGKILL to DOWN (a few
 * rounds) and the LB's CPU with 1,000 servers checked every 10 s. On the
 * native stack the budget is lifted so that each interval is what was asked;
 * on matrixai the default budget applies (what an operator gets).
 */
export async function heartbeatCosts(b: DetectionBench): Promise<HeartbeatCost[]> {
  const plan: [QuicStack, number][] = b.quick ? [["native", 250]] : [
    ["native", 0],
    ["native", 100],
    ["native", 250],
    ["native", 500],
    ["native", 1000],
    ["matrixai", 0],
    ["matrixai", 1000],
  ];
  const out: HeartbeatCost[] = [];
  for (const [quic, ms] of plan) {
    const args = ms === 0 ? ["--extensions", "none"] : [
      "--heartbeat-interval",
      String(ms / 1000),
      ...(quic === "native" ? ["--heartbeat-budget", "1000000"] : []),
    ];
    b.say(`${quic}: heartbeat ${ms || "off"} ms: SIGKILL to DOWN ...`);
    const { times } = await killRounds(
      b,
      quic,
      args,
      "SIGKILL",
      b.quick ? 1 : 2,
      ms === 0 ? 10 : 1,
    );
    b.say(`${quic}: heartbeat ${ms || "off"} ms: LB CPU with 1,000 servers at 10 s ...`);
    const scale = await runScale({
      servers: 1000,
      intervalS: 10,
      quic,
      durationS: b.quick ? 8 : 30,
      warmupS: 5,
      lbArgs: args,
      say: b.say,
    });
    out.push({
      quic,
      asked_ms: ms,
      heartbeat_ms: scale.heartbeat_ms ?? 0,
      to_down: withMax(times),
      lb_cpu_percent_1000: scale.lb_cpu_percent,
      probes: scale.probes ?? 0,
      false_downs: scale.false_downs,
    });
  }
  return out;
}
