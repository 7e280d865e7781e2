/**
 * The benchmark harness stays runnable: its statistics, its report, and one
 * short real run of `bench/main.ts` (native stack, a few hundred checks,
 * results to a temporary file). The numbers themselves are not asserted
 * beyond sanity: timing belongs to `deno task bench`.
 */

import assert from "node:assert/strict";
import { percentile, summarize } from "../bench/_measure.ts";
import { denoCopy, evictable, filesystemOf, residentBytes } from "../bench/_page_cache.ts";
import {
  type BenchRecord,
  benchTables,
  type FleetScaleResult,
  fleetTable,
  type ScaleResult,
  scaleTable,
} from "../bench/_report.ts";

Deno.test("percentile() uses the nearest rank and clamps to the ends", () => {
  const v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(percentile(v, 50), 5);
  assert.equal(percentile(v, 99), 10);
  assert.equal(percentile(v, 0), 1);
  assert.equal(percentile(v, 100), 10);
  assert.ok(Number.isNaN(percentile([], 50)));
});

Deno.test("summarize() sorts, rounds to microseconds and counts", () => {
  const s = summarize([3.0004, 1, 2]);
  assert.deepEqual(s, { n: 3, p50: 2, p99: 3, mean: 2 });
});

Deno.test("benchTables() shows every stack and peer with the ratios against QHCP native", () => {
  const rt = (p50: number, p99 = p50 * 3) => ({
    rtt: { n: 3000, p50, p99, mean: p50 },
    client_cpu_us: 100,
    server_cpu_us: 50,
  });
  const record: BenchRecord = {
    when: "2026-11-21T00:00:00Z",
    quick: false,
    n: 3000,
    warmup: 500,
    took_s: 1,
    machine: {},
    stacks: {
      native: {
        check: { ...rt(0.2, 0.6), frames: { request: 40, response: 135 } },
        echo: rt(0.1),
        check_over_echo: { p50: 2, p99: 2 },
      },
      matrixai: { check: { ...rt(0.8, 2.4), frames: { request: 40, response: 135 } } },
    },
    peers: { http: rt(0.4, 1.2), grpc: rt(0.6, 1.8) },
  };
  const text = benchTables(record);
  assert.match(text, /\| QHCP check, native \| 0\.2 ms \| 0\.6 ms \| 1× \|/);
  assert.match(text, /\| QHCP check, matrixai \| 0\.8 ms \| 2\.4 ms \| 4× \|/);
  assert.match(text, /gRPC grpc\.health\.v1 Check, grpc-js \| 0\.6 ms \| 1\.8 ms \| 3× \|/);
  assert.match(text, /- native: check \/ echo 2× at p50 .*HTTP \/ QHCP 2×; gRPC \/ QHCP 3×/);
});

Deno.test("benchTables() gives the agent's idle RSS in both page-cache states of the binary", () => {
  const detail = (rss: number, anon: number) => ({ rss, anon, file: rss - anon, pss: rss - 1 });
  const record: BenchRecord = {
    when: "2026-11-29T00:00:00Z",
    quick: false,
    n: 0,
    warmup: 0,
    took_s: 1,
    machine: {},
    stacks: {
      native: {
        server_rss_mb: {
          idle: 45,
          three_lbs_peak: 51,
          three_lbs_end: 50,
          idle_detail: detail(44.6, 12.3),
          idle_written_detail: detail(49.5, 12.3),
        },
        server_cpu: { idle_percent: 0.011, idle_window_s: 180, three_lbs_percent: 0.8 },
      },
    },
    peers: {},
  };
  assert.match(
    benchTables(record),
    /\| native \| 44\.6 MB \(12\.3 \+ 32\.3\) \| 49\.5 MB \(12\.3 \+ 37\.2\) \| 0\.011 % of a core over 180 s \| 51 \/ 50 MB \| 0\.8 % \|/,
  );
});

Deno.test("filesystemOf() finds the root filesystem and /proc", () => {
  assert.equal(filesystemOf("/proc/self/status"), "proc");
  assert.notEqual(filesystemOf("/"), "");
});

Deno.test({
  name: "denoCopy() leaves a faulted copy out of the page cache and a written one in it",
  // Temporary files must be on a disk for a copy to be evicted.
  ignore: !evictable(Deno.env.get("TMPDIR") ?? "/tmp"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "qhcp-page-cache-test-" });
  try {
    const size = (await Deno.stat(Deno.execPath())).size;
    const faulted = await denoCopy(dir, "faulted");
    assert.equal(await residentBytes(faulted), 0);
    const written = await denoCopy(dir, "written");
    assert.ok(await residentBytes(written) >= size);
    // The copy runs: it is the binary, not a part of it.
    const out = await new Deno.Command(faulted, { args: ["--version"], stdout: "piped" }).output();
    assert.match(new TextDecoder().decode(out.stdout), new RegExp(`^deno ${Deno.version.deno} `));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fleetTable() shows one takeover, or the p50 and maximum of several kills", () => {
  const row: FleetScaleResult = {
    quic: "native",
    servers: 60,
    interval_s: 1,
    lbs: 3,
    mode: "fleet",
    checkers_per_server: 2,
    sessions_per_agent: 2,
    checks_per_s_per_lb: [40, 40, 40],
    lb_cpu_percent: [2, 2, 2],
    lb_cpu_total_percent: 6,
    etcd_writes_per_s: 0.1,
    failed_checks: 0,
    false_downs: 0,
    fleet_false_downs: 0,
    takeover_s: 3.3,
    when: "2026-11-29T00:00:00.000Z",
  };
  assert.match(fleetTable([row]), /\| 0 \/ 0 \| 3\.3 s \|$/m);
  const kills = fleetTable([{ ...row, takeovers_s: [3.3, 2.8, 3.8, 3] }]);
  assert.match(kills, /\| p50 3 s, max 3\.8 s \(4 kills\) \|$/m);
  assert.match(fleetTable([{ ...row, takeover_s: null, mode: "standalone" }]), /\| – \|$/m);
});

Deno.test("scaleTable() marks a row that does not hold", () => {
  const row: ScaleResult = {
    quic: "native",
    servers: 5000,
    interval_s: 1,
    duration_s: 30,
    endpoint_processes: 3,
    all_up_s: null,
    expected_checks_per_s: 5000,
    checks_per_s: 3100,
    lb_cpu_percent: 66,
    lb_cpu_us_per_check: 210,
    lb_rss_mb: 945,
    lb_fds: 30,
    endpoints_cpu_percent: 78,
    endpoints_rss_mb: 2000,
    late_checks: 318,
    failed_checks: 18540,
    false_downs: 4635,
    udp_rcvbuf_drops: 228018,
    holds: false,
  };
  const text = scaleTable([row]);
  assert.match(text, /\| native \| 5000 \| 1 s \| – \| 3100 \(5000\) \|/);
  assert.match(text, /\| never \| \*\*no\*\* \|$/);
});

Deno.test({
  name: "bench/main.ts --quick measures a native check, its echo floor and session setup",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qhcp-bench-test-" });
    const results = `${dir}/results.json`;
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../bench/main.ts", import.meta.url).pathname,
          "--quick",
          "--only",
          "rtt,setup",
          "--stacks",
          "native",
          "--n",
          "300",
          "--results",
          results,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const table = new TextDecoder().decode(out.stdout);
      assert.match(table, /\| QHCP check, native \| [\d.]+ ms \|/);
      const record = JSON.parse(await Deno.readTextFile(results)).bench as BenchRecord;
      const native = record.stacks.native!;
      assert.equal(native.check!.rtt.n, 300);
      assert.equal(native.echo!.rtt.n, 300);
      // The request frame is a HEALTH_REQUEST: a 4-byte length and a small JSON object.
      assert.ok(native.check!.frames.request > 20 && native.check!.frames.request < 200);
      assert.ok(native.check!.rtt.p50 > 0 && native.check!.rtt.p50 < 1000);
      assert.ok(native.setup!.n > 0 && native.setup!.p50 > 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
