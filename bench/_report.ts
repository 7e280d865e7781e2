/**
 * The benchmarks' records and their Markdown: the tables printed at the end
 * of a run and the generated parts of docs/PERFORMANCE.md, which sit between
 * `<!-- bench:begin -->` / `<!-- bench:end -->` and `<!-- scale:begin -->` /
 * `<!-- scale:end -->`; the prose around them is written by hand.
 *
 * @module
 */

import type { QuicStack } from "../lib/transport/stacks.ts";
import { percentile, type Summary } from "./_measure.ts";

/** Round trip of one kind of check, with CPU per call on each side. */
export interface RoundTrip {
  rtt: Summary;
  client_cpu_us: number;
  server_cpu_us: number;
}

import type { Detection, HeartbeatCost, PushLatency } from "./detection.ts";
export type { Detection, HeartbeatCost, PushLatency };

/** What `bench/main.ts` measured for one QUIC stack. */
export interface StackResult {
  check?: RoundTrip & { frames: { request: number; response: number } };
  echo?: RoundTrip;
  /** check p50 / echo p50, check p99 / echo p99. */
  check_over_echo?: { p50: number; p99: number };
  setup?: Summary;
  server_rss_mb?: {
    idle: number;
    three_lbs_peak: number;
    three_lbs_end: number;
    /**
     * Where the idle RSS is (part `memory` since the footprint work); since
     * the page-cache control, with the Deno binary's pages faulted in by
     * the agent (`_page_cache.ts`).
     */
    idle_detail?: { rss: number; anon: number; file: number; pss: number };
    /** The same with the binary's pages as a write left them (just installed). */
    idle_written_detail?: { rss: number; anon: number; file: number; pss: number };
  };
  /** The agent's CPU, % of one core: idle over `idle_window_s`, and under 3 LBs at 1 s. */
  server_cpu?: { idle_percent: number; idle_window_s: number; three_lbs_percent: number };
  detection?: Detection[];
  push?: PushLatency;
  lb?: {
    servers: number;
    interval_s: number;
    lb_cpu_us_per_check: number;
    lb_cpu_percent: number;
    lb_rss_mb: number;
    holds: boolean;
  };
}

/** One run of `bench/main.ts`. */
export interface BenchRecord {
  when: string;
  quick: boolean;
  n: number;
  warmup: number;
  took_s: number;
  machine: Record<string, string | number>;
  stacks: Partial<Record<QuicStack, StackResult>>;
  peers: { http?: RoundTrip; grpc?: RoundTrip };
  /** Per heartbeat interval: detection against the LB's CPU (part `heartbeats`). */
  heartbeat_costs?: HeartbeatCost[];
  /** One metrics sample of the agent, p50, µs (part `memory`). */
  agent_sample_us?: number;
}

/** One scale run (`bench/scale.ts`). */
export interface ScaleResult {
  quic: QuicStack;
  servers: number;
  interval_s: number;
  duration_s: number;
  endpoint_processes: number;
  /** From the LB's start to every server UP. */
  all_up_s: number | null;
  expected_checks_per_s: number;
  checks_per_s: number;
  lb_cpu_percent: number;
  lb_cpu_us_per_check: number;
  lb_rss_mb: number;
  lb_fds: number;
  endpoints_cpu_percent: number;
  endpoints_rss_mb: number;
  late_checks: number;
  failed_checks: number;
  /** DOWN verdicts, all false (no endpoint fails), since the LB started. */
  false_downs: number;
  udp_rcvbuf_drops: number;
  /** The heartbeat interval the LB asked (after its budget), ms; 0 or absent: none. */
  heartbeat_ms?: number;
  heartbeats_per_s?: number;
  /** Probes sent on suspicion during the measurement (none may fail). */
  probes?: number;
  /**
   * Zero false DOWN, zero failed checks or probes, at least 95 % of the
   * expected rate, under 1 % late.
   */
  holds: boolean;
  when?: string;
}

/** One run of `deno task bench:scale --lbs M` (`bench/fleet_scale.ts`). */
export interface FleetScaleResult {
  quic: QuicStack;
  servers: number;
  interval_s: number;
  lbs: number;
  mode: "fleet" | "standalone";
  /** LBs that check each server. */
  checkers_per_server: number;
  sessions_per_agent: number;
  checks_per_s_per_lb: number[];
  lb_cpu_percent: number[];
  lb_cpu_total_percent: number;
  /** etcd revisions per second (each a write), fleet mode. */
  etcd_writes_per_s: number;
  failed_checks: number;
  /** DOWN verdicts of the LBs' own checks of live servers, and LBs that ended not all UP. */
  false_downs: number;
  /**
   * Fleet mode: times the fleet's verdict (owners' verdicts combined, in etcd) on a live
   * server turned DOWN, start-up and takeover included. Absent in older results.
   */
  fleet_false_downs?: number;
  /** SIGKILL of one LB to K sessions per server again, fleet mode. */
  takeover_s: number | null;
  /** Every takeover timed, with `--kills N` (the first is `takeover_s`). */
  takeovers_s?: number[];
  when: string;
}

/** Fleet scale results as a Markdown table. */
export function fleetTable(rows: readonly FleetScaleResult[]): string {
  const head =
    "| stack | servers | interval | LBs | mode | checkers per server | sessions per agent | checks/s per LB | LB CPU (each) | LB CPU (all) | etcd writes/s | failed checks | false DOWN: own checks / fleet verdict | LB killed: checked again after |";
  const rule = "|" + "---|".repeat(14);
  const lines = rows.map((r) =>
    `| ${r.quic} | ${r.servers} | ${r.interval_s} s | ${r.lbs} | ${r.mode} | ${r.checkers_per_server} | ${r.sessions_per_agent} | ${
      r.checks_per_s_per_lb.join(", ")
    } | ${r.lb_cpu_percent.map((c) => `${c} %`).join(", ")} | ${r.lb_cpu_total_percent} % | ${
      r.mode === "fleet" ? r.etcd_writes_per_s : "–"
    } | ${r.failed_checks} | ${r.false_downs} / ${r.fleet_false_downs ?? "–"} | ${_takeovers(r)} |`
  );
  return [head, rule, ...lines].join("\n");
}

/** "5 s", or over several kills "p50 3.5 s, max 4.1 s (20 kills)". */
function _takeovers(r: FleetScaleResult): string {
  const all = r.takeovers_s ?? [];
  if (all.length < 2) return r.takeover_s === null ? "–" : `${r.takeover_s} s`;
  const sorted = [...all].sort((a, b) => a - b);
  return `p50 ${percentile(sorted, 50)} s, max ${sorted.at(-1)} s (${all.length} kills)`;
}

/** One soak run (`bench/soak.ts`): false DOWNs over time under loss, jitter and LB stalls. */
export interface SoakResult {
  quic: QuicStack;
  servers: number;
  minutes: number;
  drop_percent: number;
  jitter_ms: number;
  /** The LB's loop blocked this long every `stall_every_s` (0: never). */
  stall_ms: number;
  stall_every_s: number;
  stalls: number;
  heartbeat_ms: number;
  heartbeats_per_s: number;
  /** Probes on suspicion (the server was alive each time). */
  probes: number;
  probes_failed: number;
  checks_failed: number;
  false_downs: number;
  relay_dropped: number;
  relay_forwarded: number;
  lb_cpu_percent: number;
  when: string;
}

/** Soak results as a Markdown table. */
export function soakTable(rows: readonly SoakResult[]): string {
  const head =
    "| stack | servers | minutes | loss | jitter | LB stalls | heartbeat | heartbeats/s | datagrams dropped | probes | failed probes | failed checks | false DOWN | LB CPU |";
  const rule = "|" + "---|".repeat(14);
  const lines = rows.map((r) =>
    `| ${r.quic} | ${r.servers} | ${r.minutes} | ${r.drop_percent} % | ${r.jitter_ms} ms | ${
      r.stall_ms ? `${r.stall_ms} ms every ${r.stall_every_s} s (${r.stalls})` : "none"
    } | ${r.heartbeat_ms} ms | ${r.heartbeats_per_s} | ${r.relay_dropped} | ${r.probes} | ${r.probes_failed} | ${r.checks_failed} | ${r.false_downs} | ${r.lb_cpu_percent} % |`
  );
  return [head, rule, ...lines].join("\n");
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const ms = (x: number | undefined) => (x === undefined ? "–" : `${x} ms`);
const us = (x: number | undefined) => (x === undefined ? "–" : `${x} µs`);
/** Detection times: seconds above one second, else milliseconds. */
const dur = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`);

/** The tables of one benchmark run. */
export function benchTables(b: BenchRecord): string {
  const out: string[] = [];
  const rows = Object.entries(b.stacks) as [QuicStack, StackResult][];
  if (rows.some(([, r]) => r.check)) {
    out.push(
      `Check round trip: one session, one server, loopback; ${b.n} sequential checks after ` +
        `${b.warmup} warm-up. CPU per check is each process's CPU time over the timed calls ` +
        "divided by their number.",
      "",
      "| peer | p50 | p99 | p50 vs QHCP native | client CPU/check | server CPU/check |",
      "|---|---|---|---|---|---|",
    );
    const base = b.stacks.native?.check?.rtt.p50;
    const line = (name: string, t: RoundTrip | undefined) => {
      if (!t) return;
      const ratio = base ? `${r1(t.rtt.p50 / base)}×` : "–";
      out.push(
        `| ${name} | ${ms(t.rtt.p50)} | ${ms(t.rtt.p99)} | ${ratio} | ${us(t.client_cpu_us)} | ${
          us(t.server_cpu_us)
        } |`,
      );
    };
    for (const [s, r] of rows) {
      line(`QHCP check, ${s}`, r.check);
      line(`raw QUIC echo, ${s}, same frame sizes`, r.echo);
    }
    line("HTTP/1.1 keep-alive GET /healthz, Deno.serve", b.peers.http);
    line("gRPC grpc.health.v1 Check, grpc-js", b.peers.grpc);
    out.push("");
    for (const [s, r] of rows) {
      const facts: string[] = [];
      if (r.check_over_echo) {
        facts.push(
          `check / echo ${r.check_over_echo.p50}× at p50 and ${r.check_over_echo.p99}× at p99 ` +
            `(frames of ${r.check!.frames.request} and ${r.check!.frames.response} bytes)`,
        );
      }
      const p50 = r.check?.rtt.p50;
      if (p50 && b.peers.http) facts.push(`HTTP / QHCP ${r1(b.peers.http.rtt.p50 / p50)}×`);
      if (p50 && b.peers.grpc) facts.push(`gRPC / QHCP ${r1(b.peers.grpc.rtt.p50 / p50)}×`);
      if (facts.length > 0) out.push(`- ${s}: ${facts.join("; ")} (p50).`);
    }
    out.push("");
  }
  const other = rows.filter(([, r]) => r.setup || r.server_rss_mb || r.lb);
  if (other.length > 0) {
    const lb = other.find(([, r]) => r.lb)?.[1].lb;
    out.push(
      `| stack | session setup p50 / p99 | server.ts RSS idle | server.ts RSS under 3 LBs at 1 s, peak | lb.ts CPU/check${
        lb ? ` (${lb.servers} servers at ${lb.interval_s} s)` : ""
      } | lb.ts CPU |`,
      "|---|---|---|---|---|---|",
    );
    for (const [s, r] of other) {
      out.push(
        `| ${s} | ${r.setup ? `${r.setup.p50} / ${r.setup.p99} ms` : "–"} | ${
          r.server_rss_mb ? `${r.server_rss_mb.idle} MB` : "–"
        } | ${r.server_rss_mb ? `${r.server_rss_mb.three_lbs_peak} MB` : "–"} | ${
          r.lb ? us(r.lb.lb_cpu_us_per_check) : "–"
        } | ${r.lb ? `${r.lb.lb_cpu_percent} % of a core` : "–"} |`,
      );
    }
    out.push("");
  }
  const footprint = rows.filter(([, r]) => r.server_rss_mb?.idle_detail && r.server_cpu);
  if (footprint.length > 0) {
    out.push(
      "Agent footprint: `server.ts` with its files in place (no certificate made at start), " +
        "default flags, run as a production host runs it (the Deno flags of `run_quic.sh " +
        "server`, a DENO_DIR filled by `run_quic.sh install`). RSS splits into anonymous " +
        "memory (the agent's own) and file-backed pages (the Deno binary's code). How many of " +
        "the binary's pages the kernel maps depends on how they came into the page cache, so " +
        "each agent runs on a private copy of the binary in a known state: pages faulted in " +
        "by the agent itself, as after a reboot, and pages as a write left them, as right " +
        "after an install (in large folios, mapped more widely). With a private copy no other " +
        "process shares the binary's pages (PSS, in results.json, is then close to RSS)." +
        (b.agent_sample_us !== undefined
          ? ` One metrics sample (taken at most once a second, only when an LB asks): ${
            us(b.agent_sample_us)
          } p50, no process spawned.`
          : ""),
      "",
      "| stack | idle RSS (anon + file) | idle RSS, binary just written | idle CPU | RSS under 3 LBs at 1 s, peak / end | CPU under 3 LBs |",
      "|---|---|---|---|---|---|",
    );
    for (const [s, r] of footprint) {
      const m = r.server_rss_mb!;
      const d = m.idle_detail!;
      const w = m.idle_written_detail;
      const c = r.server_cpu!;
      out.push(
        `| ${s} | ${d.rss} MB (${d.anon} + ${d.file}) | ${
          w ? `${w.rss} MB (${w.anon} + ${w.file})` : "–"
        } | ${
          c.idle_percent > 0
            ? `${c.idle_percent} %`
            // CPU time is counted in 10 ms clock ticks.
            : `under ${Math.round(1000 / c.idle_window_s) / 1000} % (not one 10 ms tick)`
        } of a core over ${c.idle_window_s} s | ${m.three_lbs_peak} / ${m.three_lbs_end} MB | ${c.three_lbs_percent} % |`,
      );
    }
    out.push("");
  }
  if (rows.some(([, r]) => r.detection)) {
    out.push(
      "Failure detection: from the signal to the LB's `server DOWN` log line, each server " +
        "signalled at a random moment. Defaults: heartbeats every 250 ms (native, DATAGRAM " +
        "frames) or 1 s (matrixai, the control stream), probe on phi 8, checks every 10 s. " +
        "Polls: `--extensions none` (checks only: every 10 s, fast interval 1 s, timeout 2 s, " +
        "fall 3). Fast polls: that with `--check-interval 1 --fast-interval 0.2`.",
      "",
      "| stack | config | signal | samples | p50 | p99 | max | decided by |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const [s, r] of rows) {
      for (const d of r.detection ?? []) {
        const by = Object.entries(d.evidence ?? {}).map(([e, n]) => `${e} ${n}`).join(", ");
        out.push(
          `| ${s} | ${d.config} | ${d.signal} | ${d.to_down.n} | ${dur(d.to_down.p50)} | ${
            dur(d.to_down.p99)
          } | ${dur(d.to_down.max)} | ${by || "–"} |`,
        );
      }
    }
    out.push("");
  }
  if (rows.some(([, r]) => r.push)) {
    out.push(
      "Pushed status: from the agent's log line (local check fails or passes, drain) to the " +
        "LB's (DOWN, UP, draining), the LB checking only every 60 s.",
      "",
      "| stack | samples | local check fails to DOWN p50 / max | passes again to UP p50 / max | drain to weight 0 p50 / max |",
      "|---|---|---|---|---|",
    );
    for (const [s, r] of rows) {
      const p = r.push;
      if (!p) continue;
      const pm = (x: { p50: number; max: number }) => `${dur(x.p50)} / ${dur(x.max)}`;
      out.push(
        `| ${s} | ${p.failing.n} | ${pm(p.failing)} | ${pm(p.recovered)} | ${pm(p.drain)} |`,
      );
    }
    out.push("");
  }
  if (b.heartbeat_costs?.length) {
    out.push(
      "Heartbeat interval against detection and cost: SIGKILL to DOWN (12 samples) and the " +
        "LB's CPU with 1,000 servers checked every 10 s (`deno task bench:scale`'s harness). " +
        "`--heartbeat-interval` chooses the row; 0 is `--extensions none`.",
      "",
      "| stack | heartbeat | SIGKILL to DOWN p50 / max | LB CPU, 1,000 servers | probes | false DOWN |",
      "|---|---|---|---|---|---|",
    );
    for (const h of b.heartbeat_costs) {
      const asked = h.asked_ms === 0
        ? "off (polls only)"
        : h.heartbeat_ms === h.asked_ms
        ? `${h.heartbeat_ms} ms`
        : `${h.asked_ms} ms asked, ${h.heartbeat_ms} ms by the budget`;
      out.push(
        `| ${h.quic} | ${asked} | ${dur(h.to_down.p50)} / ${
          dur(h.to_down.max)
        } | ${h.lb_cpu_percent_1000} % of a core | ${h.probes} | ${h.false_downs} |`,
      );
    }
    out.push("");
  }
  return out.join("\n");
}

/** Scale results as a Markdown table. */
export function scaleTable(rows: readonly ScaleResult[]): string {
  const head =
    "| stack | servers | interval | heartbeat | checks/s (expected) | heartbeats/s | LB CPU | LB µs/check | LB RSS | LB fds | endpoints CPU | late | failed | probes | false DOWN | UDP drops | all UP after | holds |";
  const rule = "|" + "---|".repeat(18);
  const lines = rows.map((r) =>
    `| ${r.quic} | ${r.servers} | ${r.interval_s} s | ${
      r.heartbeat_ms ? `${r.heartbeat_ms} ms` : "–"
    } | ${r.checks_per_s} (${r.expected_checks_per_s}) | ${
      r.heartbeats_per_s ?? "–"
    } | ${r.lb_cpu_percent} % | ${r.lb_cpu_us_per_check} | ${r.lb_rss_mb} MB | ${r.lb_fds} | ${r.endpoints_cpu_percent} % | ${r.late_checks} | ${r.failed_checks} | ${
      r.probes ?? "–"
    } | ${r.false_downs} | ${r.udp_rcvbuf_drops} | ${
      r.all_up_s === null ? "never" : `${r.all_up_s} s`
    } | ${r.holds ? "yes" : "**no**"} |`
  );
  return [head, rule, ...lines].join("\n");
}

function _machineLine(m: Record<string, string | number> | undefined): string {
  if (!m) return "";
  return `Machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, Linux ${m.kernel}; ` +
    `Deno ${m.deno} (V8 ${m.v8}).`;
}

/** Where the report lives. */
export function performanceDocPath(): string {
  return new URL("../docs/PERFORMANCE.md", import.meta.url).pathname;
}

/**
 * Replaces the generated sections of docs/PERFORMANCE.md with the results
 * (`bench` and `scale` of bench/results.json) and formats the file.
 * Returns false when the file or its markers are missing.
 */
export async function updatePerformanceDoc(results: Record<string, unknown>): Promise<boolean> {
  const path = performanceDocPath();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return false;
  }
  const bench = results.bench as BenchRecord | undefined;
  const scale = results.scale as ScaleResult[] | undefined;
  if (bench && !bench.quick) {
    const body = [
      `Run ${bench.when} in ${bench.took_s} s (\`deno task bench\`). ${
        _machineLine(bench.machine)
      }`,
      "",
      benchTables(bench),
    ].join("\n");
    text = _replace(text, "bench", body);
  }
  if (scale && scale.length > 0) {
    const body = [
      `Latest run of each row by \`deno task bench:scale\`. ${
        _machineLine(results.scale_machine as Record<string, string | number> | undefined)
      }`,
      "",
      scaleTable(scale),
      "",
    ].join("\n");
    text = _replace(text, "scale", body);
  }
  const fleet = results.fleet_scale as FleetScaleResult[] | undefined;
  if (fleet && fleet.length > 0) {
    const body = [
      `Latest run of each row by \`deno task bench:scale --lbs M\`. ${
        _machineLine(results.fleet_machine as Record<string, string | number> | undefined)
      }`,
      "",
      fleetTable(fleet),
      "",
    ].join("\n");
    text = _replace(text, "fleet", body);
  }
  const soak = results.soak as SoakResult[] | undefined;
  if (soak && soak.length > 0) {
    const body = [
      `Latest run of each row by \`deno task bench:soak\`. ${
        _machineLine(results.soak_machine as Record<string, string | number> | undefined)
      }`,
      "",
      soakTable(soak),
      "",
    ].join("\n");
    text = _replace(text, "soak", body);
  }
  await Deno.writeTextFile(path, text);
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", path], stdout: "null" }).output();
  return true;
}

if (import.meta.main) {
  // `deno run -A bench/_report.ts`: rewrite docs/PERFORMANCE.md from bench/results.json.
  const { readResults } = await import("./_measure.ts");
  if (!await updatePerformanceDoc(readResults())) {
    throw new Error("docs/PERFORMANCE.md or its markers missing");
  }
  console.log(`updated ${performanceDocPath()}`);
}

function _replace(text: string, name: string, body: string): string {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i < 0 || j < i) return text;
  return text.slice(0, i + begin.length) + "\n\n" + body.trimEnd() + "\n\n" + text.slice(j);
}
