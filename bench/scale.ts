#!/usr/bin/env -S deno run -A
/**
 * `deno task bench:scale --servers N --interval S [--quic matrixai|native]`:
 * N QHCP server endpoints in a few processes and one real LB (`lb.ts`)
 * checking all of them for a fixed time. Reports the LB's CPU and memory,
 * checks per second achieved against the N / S expected, late checks
 * (answered more than one interval after they were due), failed checks and
 * DOWNs (every DOWN is false: no endpoint ever fails), UDP receive-buffer
 * drops and descriptors. Appends the run to bench/results.json (`scale`).
 *
 * Flags: --servers N (100) --interval S (1) --quic STACK (native) --duration S
 * (max(30, 3 intervals)) --procs P (endpoint processes; default N / 2000,
 * at least 2) --warmup S (2 intervals, at least 5 s) --profile FILE (a V8
 * profile of the LB; read it with `node --prof-process FILE`),
 * --heartbeat-interval S, --heartbeat-budget N and --extensions LIST (passed to lb.ts; the
 * endpoints accept every extension, as agents do by default).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import type { MonitorTotals } from "../lib/lb/monitor.ts";
import type { QuicStack } from "../lib/transport/stacks.ts";
import {
  benchLbFlags,
  Child,
  fdCount,
  machine,
  procSample,
  readResults,
  sleep,
  startEndpoints,
  udpDrops,
  writeResults,
} from "./_measure.ts";
import {
  type FleetScaleResult,
  fleetTable,
  type ScaleResult,
  scaleTable,
  updatePerformanceDoc,
} from "./_report.ts";

export type { ScaleResult };

/** Options of {@linkcode runScale}. */
export interface ScaleOptions {
  servers: number;
  intervalS: number;
  quic: QuicStack;
  durationS?: number;
  procs?: number;
  warmupS?: number;
  /** Write a V8 CPU profile of the LB to this file (`node --prof-process` reads it). */
  profile?: string;
  /** More flags for lb.ts (heartbeat interval, extensions, ...). */
  lbArgs?: readonly string[];
  /** Progress lines (default: stderr). */
  say?: (line: string) => void;
}

/** Runs one scale measurement. */
export async function runScale(o: ScaleOptions): Promise<ScaleResult> {
  const say = o.say ?? ((l: string) => console.error(l));
  const procs = o.procs ?? Math.max(2, Math.ceil(o.servers / 2000));
  const durationS = o.durationS ?? Math.max(30, 3 * o.intervalS);
  const warmupS = o.warmupS ?? Math.max(5, 2 * o.intervalS);
  const dir = await Deno.makeTempDir({ prefix: "qhcp-scale-" });
  const endpoints: Child[] = [];
  let lb: Child | undefined;
  try {
    await ensureDefaultFiles(dir);
    say(`scale: ${o.servers} endpoints (${o.quic}) in ${procs} processes ...`);
    const ports = await startEndpoints(o.servers, o.quic, procs, dir, endpoints);
    const serversFile = `${dir}/servers.txt`;
    await Deno.writeTextFile(serversFile, ports.map((p) => `127.0.0.1:${p}`).join("\n") + "\n");

    say(`scale: LB checking ${ports.length} servers every ${o.intervalS} s ...`);
    const started = performance.now();
    lb = new Child(
      "lb.ts",
      [
        "--servers-file",
        serversFile,
        "--check-interval",
        String(o.intervalS),
        ...benchLbFlags(o.quic),
        "--lb-id",
        "lb-scale",
        ...(o.lbArgs ?? []),
      ],
      { QHCP_CERTS_DIR: dir },
      o.profile ? [`--v8-flags=--prof,--logfile=${o.profile},--no-logfile-per-isolate`] : [],
    );
    const http = await lb.waitForLog(/HTTP status endpoint listening .*port=(\d+)/, 60_000);
    const base = `http://127.0.0.1:${http.match[1]}`;
    const totals = async () => (await (await fetch(`${base}/api/totals`)).json()) as MonitorTotals;

    let allUpS: number | null = null;
    const upDeadline = performance.now() + Math.max(60_000, o.servers * 20);
    for (;;) {
      const t = await totals();
      if (t.up === o.servers) {
        allUpS = (performance.now() - started) / 1000;
        break;
      }
      if (performance.now() > upDeadline) {
        say(`scale: only ${t.up} of ${o.servers} UP after ${(upDeadline - started) / 1000} s`);
        break;
      }
      await sleep(250);
    }
    await sleep(warmupS * 1000);

    const endpointSample = () => {
      const s = endpoints.map((e) => procSample(e.pid));
      return {
        cpuMs: s.reduce((a, b) => a + b.cpuMs, 0),
        rssMb: s.reduce((a, b) => a + b.rssMb, 0),
      };
    };
    const t0 = await totals();
    const lb0 = procSample(lb.pid);
    const ep0 = endpointSample();
    const udp0 = udpDrops();
    const w0 = performance.now();
    say(`scale: measuring for ${durationS} s ...`);
    let rssPeak = lb0.rssMb;
    while (performance.now() - w0 < durationS * 1000) {
      await sleep(1000);
      rssPeak = Math.max(rssPeak, procSample(lb.pid).rssMb);
    }
    const t1 = await totals();
    const lb1 = procSample(lb.pid);
    const ep1 = endpointSample();
    const udp1 = udpDrops();
    const wallS = (performance.now() - w0) / 1000;
    const fds = fdCount(lb.pid);

    const checks = t1.checks_ok - t0.checks_ok;
    const failed = t1.checks_failed - t0.checks_failed;
    const late = t1.checks_late - t0.checks_late;
    const expected = o.servers / o.intervalS;
    const perS = checks / wallS;
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const result: ScaleResult = {
      quic: o.quic,
      servers: o.servers,
      interval_s: o.intervalS,
      duration_s: Math.round(wallS),
      endpoint_processes: endpoints.length,
      all_up_s: allUpS === null ? null : r1(allUpS),
      expected_checks_per_s: r1(expected),
      checks_per_s: r1(perS),
      lb_cpu_percent: r1(((lb1.cpuMs - lb0.cpuMs) / (wallS * 1000)) * 100),
      lb_cpu_us_per_check: checks > 0 ? Math.round(((lb1.cpuMs - lb0.cpuMs) * 1000) / checks) : 0,
      lb_rss_mb: Math.round(rssPeak),
      lb_fds: fds,
      endpoints_cpu_percent: r1(((ep1.cpuMs - ep0.cpuMs) / (wallS * 1000)) * 100),
      endpoints_rss_mb: Math.round(ep1.rssMb),
      late_checks: late,
      failed_checks: failed,
      false_downs: t1.downs,
      udp_rcvbuf_drops: udp1.rcvbufErrors - udp0.rcvbufErrors,
      heartbeat_ms: t1.heartbeat_ms,
      heartbeats_per_s: r1((t1.heartbeats - t0.heartbeats) / wallS),
      probes: t1.probes - t0.probes,
      when: new Date().toISOString(),
      holds: allUpS !== null && t1.downs === 0 && failed === 0 && perS >= 0.95 * expected &&
        late <= 0.01 * checks && t1.probes_failed === 0,
    };
    return result;
  } finally {
    await lb?.stop("SIGTERM");
    await Promise.all(endpoints.map((e) => e.stop("SIGTERM")));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      servers: { type: "string", default: "100" },
      interval: { type: "string", default: "1" },
      quic: { type: "string", default: "native" },
      duration: { type: "string" },
      procs: { type: "string" },
      warmup: { type: "string" },
      profile: { type: "string" },
      "heartbeat-interval": { type: "string" },
      "heartbeat-budget": { type: "string" },
      extensions: { type: "string" },
      lbs: { type: "string" },
      standalone: { type: "boolean", default: false },
      "checkers-per-server": { type: "string" },
      kills: { type: "string" },
    },
  });
  // Flags for every lb.ts of the run.
  const lbExtra = [
    ...(values["heartbeat-interval"] ? ["--heartbeat-interval", values["heartbeat-interval"]] : []),
    ...(values["heartbeat-budget"] ? ["--heartbeat-budget", values["heartbeat-budget"]] : []),
    ...(values.extensions ? ["--extensions", values.extensions] : []),
  ];
  if (values.lbs) {
    // M LBs: a fleet through etcd, or M standalone LBs (bench/fleet_scale.ts).
    const { runFleetScale } = await import("./fleet_scale.ts");
    const r = await runFleetScale({
      servers: Number(values.servers),
      intervalS: Number(values.interval),
      quic: values.quic as QuicStack,
      lbs: Number(values.lbs),
      standalone: values.standalone,
      ...(values["checkers-per-server"]
        ? { checkersPerServer: Number(values["checkers-per-server"]) }
        : {}),
      ...(values.duration ? { durationS: Number(values.duration) } : {}),
      ...(values.kills ? { kills: Number(values.kills) } : {}),
      lbArgs: [
        ...lbExtra,
      ],
    });
    const results = readResults();
    const previous = (results.fleet_scale as FleetScaleResult[] | undefined) ?? [];
    const fleet_scale = [
      ...previous.filter((x) =>
        !(x.quic === r.quic && x.servers === r.servers && x.lbs === r.lbs && x.mode === r.mode &&
          x.interval_s === r.interval_s &&
          (x.takeovers_s?.length ?? 1) === (r.takeovers_s?.length ?? 1))
      ),
      r,
    ];
    const all = { ...results, fleet_scale, fleet_machine: machine() };
    writeResults(all);
    await updatePerformanceDoc(all);
    console.log(fleetTable([r]));
    Deno.exit(0);
  }
  const quic = values.quic as QuicStack;
  if (quic !== "native" && quic !== "matrixai") throw new Error("--quic: matrixai or native");
  const result = await runScale({
    servers: Number(values.servers),
    intervalS: Number(values.interval),
    quic,
    ...(values.duration ? { durationS: Number(values.duration) } : {}),
    ...(values.procs ? { procs: Number(values.procs) } : {}),
    ...(values.warmup ? { warmupS: Number(values.warmup) } : {}),
    ...(values.profile ? { profile: values.profile } : {}),
    lbArgs: [
      ...lbExtra,
    ],
  });
  const results = readResults();
  const previous = (results.scale as ScaleResult[] | undefined) ?? [];
  // One row per stack, size and interval: the latest run replaces an older one.
  const scale = [
    ...previous.filter((r) =>
      !(r.quic === result.quic && r.servers === result.servers &&
        r.interval_s === result.interval_s && (r.heartbeat_ms ?? 0) === (result.heartbeat_ms ?? 0))
    ),
    result,
  ].sort((a, b) =>
    a.quic.localeCompare(b.quic) || a.interval_s - b.interval_s || a.servers - b.servers
  );
  const all = { ...results, scale, scale_machine: machine() };
  writeResults(all);
  await updatePerformanceDoc(all);
  console.log(scaleTable([result]));
}
