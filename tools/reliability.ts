#!/usr/bin/env -S deno run -A
/**
 * `deno task reliability`: runs the fault, hostile-input, attack, crash-mode,
 * cycle and process tests one file at a time (so that no run skews another's
 * timings) with QHCP_REPORT set, then writes what they observed to
 * docs/RELIABILITY.md. Exits 1 if any of those tests failed.
 *
 * @module
 */

import type { Figure } from "../tests/_report.ts";

const root = new URL("..", import.meta.url).pathname;
const FILES = [
  "tests/faults_test.ts",
  "tests/hostile_test.ts",
  "tests/attacks_test.ts",
  "tests/http_attacks_test.ts",
  "tests/crash_modes_test.ts",
  "tests/cycles_test.ts",
  "tests/e2e_test.ts",
  "tests/metrics_test.ts",
  "tests/detection_e2e_test.ts",
  "tests/fleet_e2e_test.ts",
  "tests/haproxy_test.ts",
  "tests/haproxy_runtime_test.ts",
  "tests/dns_test.ts",
  "tests/integrations_e2e_test.ts",
  "tests/observability_test.ts",
];
const SECTIONS: Record<string, string> = {
  faults:
    "Faults injected with the UDP relay (`tests/_udp_relay.ts`) between the LB and a server, real QUIC on loopback (`tests/faults_test.ts`).",
  processes:
    "Real `lb.ts` and `server.ts` processes, `--check-interval 0.5 --max-fail-attempts 3 --reconnect-interval 2` (`tests/e2e_test.ts`).",
  restart: "An LB process restarted while three server processes run (`tests/e2e_test.ts`).",
  "hostile input":
    "Fuzzed sessions, bad tokens and a connection flood against a live agent while an LB checks it every 100 ms (`tests/hostile_test.ts`).",
  attacks:
    "Attacks on the agent and the LB in one process, each bounded in count and time, with an honest LB checking every 100 ms (`tests/attacks_test.ts`).",
  "http attacks":
    "Attacks on a real `lb.ts` process's HTTP port: idle and slow connections under a 300-file limit, stalled event-stream subscribers, malformed requests (`tests/http_attacks_test.ts`).",
  "crash modes":
    "The three ways @matrixai/quic throws past its caller, provoked against the session wrapper (`tests/crash_modes_test.ts`).",
  cycles:
    "80 kill/restart and 20 black-hole/heal cycles of one server watched by one LB, both in one process with the relay (`tests/cycles_test.ts`).",
  containers:
    "A real agent and a burner (one spinning core, 200 MiB held) in a cgroup v1 with a 0.5-core CPU quota and a 512 MiB memory limit, read by a real LB every second (`tests/metrics_test.ts`).",
  detection:
    "Real `lb.ts` and `server.ts` processes at the defaults (heartbeats, probes): an agent killed or stopped, found DOWN on heartbeat silence and a failed probe (`tests/detection_e2e_test.ts`).",
  fleet:
    "A 3-member etcd cluster on loopback, three fleet LB processes (K = 2, lease TTL 3 s, checks every 1 s) and real agents: an LB killed and one paused past its lease, an etcd member killed, all of etcd stopped and back, an agent killed, an LB added (`tests/fleet_e2e_test.ts`).",
  haproxy:
    "The real HAProxy in front of two HTTP backends, following the verdict through the LB's agent-check port (`tests/haproxy_test.ts`).",
  "haproxy runtime":
    "The real HAProxy 2.6 driven through its runtime API (admin socket) by the LB: a killed agent's server put in MAINT, an HAProxy restart caught up with (`tests/haproxy_runtime_test.ts`).",
  dns:
    "The real HAProxy following an SRV name served by the LB's DNS port, TTL 1 s (`tests/dns_test.ts`).",
  integrations:
    "An agent's local checks and drain file, and an LB following a servers file and a DNS name, with real programs (`tests/integrations_e2e_test.ts`).",
  observability:
    "promtool on the live `/metrics`, and the dashboard in headless Chromium while a server is killed (`tests/observability_test.ts`).",
};

const report = await Deno.makeTempFile({ prefix: "qhcp-report-" });
const outcomes: { file: string; ok: boolean; summary: string }[] = [];
for (const file of FILES) {
  console.log(`running ${file} ...`);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--v8-flags=--expose-gc", file],
    cwd: root,
    env: { QHCP_REPORT: report, NO_COLOR: "1", QHCP_CYCLES: "80" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  // "ok | 3 passed | 0 failed (20s)" becomes "ok: 3 passed, 0 failed (20s)" (no table pipes).
  const line = text.match(/^(ok|FAILED) \|.*$/m)?.[0];
  const summary = line
    ? line.replace(/ \| /, ": ").replaceAll(" | ", ", ")
    : `exited with ${out.signal ?? out.code}`;
  outcomes.push({ file, ok: out.success, summary });
  console.log(`  ${summary}`);
  if (!out.success) console.log(text);
}

const figures = (await Deno.readTextFile(report)).trim().split("\n").filter((l) => l)
  .map((l) => JSON.parse(l) as Figure);
await Deno.remove(report);

const cpu =
  (await Deno.readTextFile("/proc/cpuinfo").catch(() => "")).match(/model name\s*:\s*(.+)/)
    ?.[1] ?? "unknown CPU";
const memGiB = (Deno.systemMemoryInfo().total / 2 ** 30).toFixed(0);
const lines: string[] = [
  "# Reliability: what the fault tests observed",
  "",
  "Generated by `deno task reliability` (tools/reliability.ts), which runs the tests below one file",
  "at a time and records the figures they measured. The same tests run, with the same assertions,",
  "in the normal suite (`./run_quic.sh test`); this page only keeps their numbers. Bounds are what",
  "the tests assert; margins for a busy machine are stated in each bound.",
  "",
  `- Run: ${new Date().toISOString()}`,
  `- Machine: ${cpu}, ${navigator.hardwareConcurrency} cores, ${memGiB} GiB; ${Deno.build.target}`,
  `- Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); @matrixai/quic 1.2.12`,
  "",
  "| test file | result |",
  "| --- | --- |",
  ...outcomes.map((o) => `| \`${o.file}\` | ${o.summary} |`),
  "",
];
for (const section of Object.keys(SECTIONS)) {
  const rows = figures.filter((f) => f.section === section);
  if (rows.length === 0) continue;
  lines.push(`## ${section[0]!.toUpperCase()}${section.slice(1)}`, "", SECTIONS[section]!, "");
  lines.push("| figure | observed | asserted bound |", "| --- | --- | --- |");
  for (const f of rows) {
    const value = typeof f.value === "number" ? _fmt(f.value) : f.value;
    lines.push(
      `| ${f.name} | ${value}${f.unit ? ` ${f.unit}` : ""} | ${f.bound ?? "(recorded only)"} |`,
    );
  }
  lines.push("");
}
lines.push(
  "## Native crashes under heavy churn (fixed)",
  "",
  "Deno 2.9.6 with the @matrixai/quic 1.2.12 native addon used to die of a segmentation fault inside",
  "the addon under heavy connection churn: 3 of 20 runs of `tests/cycles_test.ts` on 2026-11-21.",
  "The core dumps showed the fault in a getter of the packet `Header` the library keeps across an",
  "`await` while it validates a retry token; by then the N-API wrap of that native object was gone.",
  "The transport now copies the header before the library's first `await`",
  "(`lib/transport/matrixai.ts`). Side by side under the same load, the old code crashed in 8 of 25",
  "runs and the fixed one in none of 25; the current code ran the test 50 times, two processes at",
  "a time on two cores, without a crash. The test runner still runs a file that dies of a native",
  "crash once more and names it in its summary line, and the systemd units restart a program that",
  "dies.",
  "",
  "## What the numbers mean",
  "",
  "- Detection times are measured from the fault (the black hole, the signal) to the LB's verdict,",
  "  polled every 5-25 ms. The schedule's promise is one check interval (jittered by up to 10 %),",
  "  then the check timeout, then (fall - 1) fast intervals; the bounds add a margin of 1 to 1.5 s",
  "  for a loaded 2-core machine.",
  "- Round trips are the LB's view of HEALTH_REQUEST to HEALTH_RESPONSE over @matrixai/quic.",
  "- Memory: the JavaScript heap after a full GC is the leak signal. Resident memory also holds",
  "  pages the allocator keeps for reuse, which shows as a one-time step now and then (150-200 MB",
  "  in 4 of 100 runs, with the heap and every count at baseline); a leak grows in every block of",
  "  cycles, so the bound is on the median block.",
  "",
);
await Deno.writeTextFile(`${root}docs/RELIABILITY.md`, lines.join("\n"));
console.log(`wrote docs/RELIABILITY.md (${figures.length} figures)`);
Deno.exit(outcomes.every((o) => o.ok) ? 0 : 1);

function _fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}
