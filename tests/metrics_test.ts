/**
 * The agent's host metrics: the /proc and cgroup parsers, the pure view
 * (container against host), SystemMetrics on fixture directories that mirror
 * cgroup v2 and v1, and, where this machine allows it, a real cgroup v1 with a
 * CPU quota and a memory limit around a real agent and a burner.
 */

import assert from "node:assert/strict";
import { Cgroup } from "../lib/agent/cgroup.ts";
import { diskPercent, hostMetrics, type HostReading } from "../lib/agent/host_view.ts";
import { SYSTEM_METRICS, SystemMetrics } from "../lib/agent/metrics.ts";
import {
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parsePressure,
  parseProcCgroup,
  parseProcStat,
  parseUptime,
} from "../lib/agent/procfs.ts";
import { computeWeight } from "../lib/lb/weights.ts";
import { askedMetrics } from "../lib/lb/settings.ts";
import { record } from "./_report.ts";
import {
  fetchStatus,
  type Program,
  startLbProcess,
  startServerProcess,
  tempDir,
  waitFor,
} from "./_helpers.ts";

const MiB = 2 ** 20;

Deno.test("parseProcStat() counts busy and total jiffies of the aggregate cpu line", () => {
  const text = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
  assert.deepEqual(parseProcStat(text), { busy: 170, total: 990 });
  assert.equal(parseProcStat("cpu0 1 2 3 4\n"), undefined);
  assert.equal(parseProcStat("cpu  1 x 3 4\n"), undefined);
});

Deno.test("parseNetDev() sums every interface but loopback", () => {
  const text = "Inter-|   Receive\n face |bytes packets\n" +
    "    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n" +
    "  eth0: 1000 10 0 0 0 0 0 0 400 4 0 0 0 0 0 0\n" +
    "  eth1:24 1 0 0 0 0 0 0 6 1 0 0 0 0 0 0\n";
  assert.deepEqual(parseNetDev(text), { rx: 1024, tx: 406 });
});

Deno.test("parseMeminfo() reads kB as bytes and falls back to free plus cache without MemAvailable", () => {
  const m = parseMeminfo(
    "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nSwapTotal: 0 kB\n",
  );
  assert.deepEqual(m, { total: 1024000, available: 614400, swapTotal: 0, swapFree: 0 });
  const old = parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nCached: 200 kB\n");
  assert.equal(old?.available, 300 * 1024);
  assert.equal(parseMeminfo("nothing here"), undefined);
});

Deno.test("parsePressure() reads some and full, and a CPU file without full", () => {
  const both = parsePressure(
    "some avg10=1.50 avg60=2.00 avg300=0.10 total=123\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=4\n",
  );
  assert.deepEqual(both, {
    some: { avg10: 1.5, avg60: 2, avg300: 0.1 },
    full: { avg10: 0.25, avg60: 0, avg300: 0 },
  });
  assert.equal(parsePressure("some avg10=3.00 avg60=1.00 avg300=0.00 total=1\n")?.full, undefined);
  assert.equal(parsePressure(""), undefined);
});

Deno.test("parseProcCgroup() separates the v2 path from v1 controllers, split on commas", () => {
  const g = parseProcCgroup(
    "12:memory:/docker/a\n4:cpu,cpuacct:/docker/a\n1:name=systemd:/x\n0::/user.slice\n",
  );
  assert.equal(g.unified, "/user.slice");
  assert.equal(g.v1.get("memory"), "/docker/a");
  assert.equal(g.v1.get("cpu"), "/docker/a");
  assert.equal(g.v1.get("cpuacct"), "/docker/a");
  assert.deepEqual(parseLoadavg("0.50 1.25 2.00 1/100 42\n"), [0.5, 1.25, 2]);
  assert.equal(parseUptime("123.45 200.00\n"), 123.45);
});

/** A reading with everything at rest, to change field by field. */
function reading(atMs: number, over: Partial<HostReading> = {}): HostReading {
  return {
    atMs,
    cpu: { busy: 100, total: 1000 },
    mem: { total: 4000 * MiB, available: 3000 * MiB, swapTotal: 0, swapFree: 0 },
    net: { rx: 0, tx: 0 },
    load: [1, 0.5, 0.25],
    uptimeS: 100,
    cgroup: undefined,
    pressure: {},
    ...over,
  };
}

Deno.test("hostMetrics() without a cgroup limit reports the host's view in both places", () => {
  const shape = { cpuCount: 4, limits: undefined };
  const first = hostMetrics(shape, undefined, reading(0), 25);
  assert.equal(first.cpu_percent, 25, "before a rate: load_1 over the CPUs");
  const m = hostMetrics(
    shape,
    reading(0),
    reading(2000, { cpu: { busy: 400, total: 2000 }, net: { rx: 4000, tx: 1000 } }),
    25,
  );
  assert.equal(m.cpu_percent, 30);
  assert.equal(m.host_cpu_percent, 30);
  assert.equal(m.mem_percent, 25);
  assert.equal(m.host_mem_percent, 25);
  assert.equal(m.cpu_limit_cores, 0);
  assert.equal(m.mem_limit_bytes, 0);
  assert.equal(m.net_rx_bytes_per_s, 2000);
  assert.equal(m.net_tx_bytes_per_s, 500);
  assert.deepEqual(Object.keys(m).sort(), Object.keys(SYSTEM_METRICS).sort());
});

Deno.test("hostMetrics() measures CPU against the quota and memory against the limit; a limit above the host binds nothing", () => {
  const limits = {
    version: 2 as const,
    cpuCores: 0.5,
    memBytes: 1000 * MiB,
    cpuPath: "c",
    memPath: "m",
  };
  const prev = reading(0, { cgroup: { cpuUsec: 1_000_000, memBytes: 100 * MiB } });
  const now = reading(1000, {
    cpu: { busy: 200, total: 1400 },
    cgroup: { cpuUsec: 1_450_000, memBytes: 800 * MiB },
  });
  const m = hostMetrics({ cpuCount: 4, limits }, prev, now, 0);
  assert.equal(m.cpu_percent, 90, "450 ms of CPU in 1 s against half a core");
  assert.equal(m.host_cpu_percent, 25);
  assert.equal(m.mem_percent, 80);
  assert.equal(m.mem_used_bytes, 800 * MiB);
  assert.equal(m.mem_total_bytes, 1000 * MiB);
  assert.equal(m.host_mem_percent, 25);
  assert.equal(m.cpu_limit_cores, 0.5);
  assert.equal(m.mem_limit_bytes, 1000 * MiB);
  const loose = { ...limits, cpuCores: 8, memBytes: 64000 * MiB };
  const h = hostMetrics({ cpuCount: 4, limits: loose }, prev, now, 0);
  assert.equal(h.cpu_percent, 25);
  assert.equal(h.mem_percent, 25);
  assert.equal(h.cpu_limit_cores, 0);
  assert.equal(h.mem_limit_bytes, 0);
  const over = hostMetrics(
    { cpuCount: 4, limits },
    prev,
    reading(1000, { cgroup: { cpuUsec: 9e9, memBytes: 2e9 } }),
    0,
  );
  assert.equal(over.cpu_percent, 100, "clamped");
  assert.equal(over.mem_percent, 100, "clamped");
  assert.equal(diskPercent({ blocks: 100, bfree: 40, bavail: 30 }), 60 / 90 * 100);
});

Deno.test("computeWeight() follows pressure when --weight-metrics names it, and the LB asks for it", () => {
  const metrics = { cpu_percent: 20, mem_percent: 10, cpu_pressure_some_avg10: 60 };
  const opts = { floor: 10, loadMetrics: ["cpu_percent", "cpu_pressure_some_avg10"] };
  assert.equal(computeWeight({ state: "UP", status: "UP", metrics }, opts), 46);
  assert.deepEqual(askedMetrics(undefined, opts.loadMetrics), [
    "cpu_percent",
    "mem_percent",
    "cpu_pressure_some_avg10",
  ]);
  assert.deepEqual(askedMetrics(["load_1"], opts.loadMetrics), [
    "cpu_percent",
    "mem_percent",
    "load_1",
    "cpu_pressure_some_avg10",
  ]);
  assert.equal(
    askedMetrics(undefined, ["cpu_percent", "mem_percent"]),
    undefined,
    "the server's default",
  );
});

/** Writes `files` (path → text) under `dir`. */
async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(full, text);
  }
}

/** A /proc with an idle-ish host of 4 CPUs and 4000 MiB. */
function procFiles(self: string, busy: number, total: number, rx: number): Record<string, string> {
  return {
    "proc/self/cgroup": self,
    "proc/stat": `cpu  ${busy} 0 0 ${total - busy} 0 0 0 0 0 0\n`,
    "proc/meminfo": `MemTotal: ${4000 * 1024} kB\nMemFree: 0 kB\nMemAvailable: ${3000 * 1024} kB\n`,
    "proc/net/dev": `h\nh\n  eth0: ${rx} 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n`,
    "proc/loadavg": "0.40 0.30 0.20 1/10 5\n",
    "proc/uptime": "5000.5 100\n",
    "proc/pressure/cpu": "some avg10=1.00 avg60=1.00 avg300=1.00 total=1\n",
    "proc/pressure/memory":
      "some avg10=2.00 avg60=2.50 avg300=0.00 total=1\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=1\n",
    "proc/pressure/io":
      "some avg10=3.00 avg60=3.50 avg300=0.00 total=1\nfull avg10=1.50 avg60=0.00 avg300=0.00 total=1\n",
  };
}

/** SystemMetrics over the fixture `dir`, on a clock the test moves. */
function fixtureMetrics(dir: string, clock: { t: number }): SystemMetrics {
  return new SystemMetrics({
    files: {
      proc: `${dir}/proc`,
      cgroupRoot: `${dir}/cg`,
      cpuCount: 4,
      now: () => clock.t,
      statfs: () => ({ blocks: 100, bfree: 50, bavail: 50 }),
    },
  });
}

Deno.test("SystemMetrics on a cgroup v2 fixture: the tightest limit up the path, usage less inactive file cache, the cgroup's own pressure", async () => {
  const dir = await tempDir("cgv2");
  try {
    const ctr = "cg/kubepods/pod1/ctr";
    await writeTree(dir, {
      ...procFiles("0::/kubepods/pod1/ctr\n", 100, 1000, 0),
      "cg/cgroup.controllers": "cpu memory io\n",
      "cg/kubepods/cgroup.controllers": "cpu memory io\n",
      "cg/kubepods/pod1/cgroup.controllers": "cpu memory io\n",
      "cg/kubepods/pod1/cpu.max": "50000 100000\n",
      "cg/kubepods/pod1/memory.max": `${256 * MiB}\n`,
      [`${ctr}/cgroup.controllers`]: "cpu memory io\n",
      [`${ctr}/cpu.max`]: "max 100000\n",
      [`${ctr}/memory.max`]: `${512 * MiB}\n`,
      [`${ctr}/cpu.stat`]: "usage_usec 1000000\nuser_usec 900000\n",
      [`${ctr}/memory.current`]: `${100 * MiB}\n`,
      [`${ctr}/memory.stat`]: `anon ${80 * MiB}\ninactive_file ${20 * MiB}\n`,
      [`${ctr}/cpu.pressure`]:
        "some avg10=42.00 avg60=30.00 avg300=1.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    });
    const clock = { t: 0 };
    const m = fixtureMetrics(dir, clock);
    assert.match(
      m.describeLimits(),
      /cgroup v2: cpu_percent is of a 0.5-core quota .*mem_percent is of a 256 MiB limit/,
    );
    await writeTree(dir, {
      ...procFiles("0::/kubepods/pod1/ctr\n", 300, 1800, 5000),
      [`${ctr}/cpu.stat`]: "usage_usec 1400000\n",
      [`${ctr}/memory.current`]: `${220 * MiB}\n`,
    });
    clock.t = 1000;
    const s = m.sampleNow();
    assert.equal(s.cpu_percent, 80, "400 ms in 1 s against 0.5 core");
    assert.equal(s.host_cpu_percent, 25);
    assert.equal(s.cpu_limit_cores, 0.5);
    assert.equal(s.mem_limit_bytes, 256 * MiB, "the parent's limit binds the container");
    assert.equal(s.mem_used_bytes, 200 * MiB);
    assert.equal(s.mem_percent, 78.13);
    assert.equal(s.host_mem_percent, 25);
    assert.equal(s.cpu_pressure_some_avg10, 42, "the cgroup's own file");
    assert.equal(s.cpu_pressure_some_avg60, 30);
    assert.equal(
      s.memory_pressure_some_avg10,
      2,
      "the host's, with no memory.pressure in the cgroup",
    );
    assert.equal(s.memory_pressure_full_avg10, 0.5);
    assert.equal(s.io_pressure_full_avg10, 1.5);
    assert.equal(s.net_rx_bytes_per_s, 5000);
    assert.equal(s.disk_percent, 50);
    assert.equal(s.uptime_s, 5001);

    // Inside a container's namespace, /proc/self/cgroup says "/" and the mount is the container's own.
    const inner = await tempDir("cgv2-ns");
    try {
      await writeTree(inner, {
        ...procFiles("0::/\n", 100, 1000, 0),
        "cg/cgroup.controllers": "cpu memory\n",
        "cg/cpu.max": "200000 100000\n",
        "cg/memory.max": "max\n",
      });
      const ns = fixtureMetrics(inner, { t: 0 });
      assert.match(
        ns.describeLimits(),
        /cgroup v2: cpu_percent is of a 2-core quota .*mem_percent is the host's/,
      );
    } finally {
      await Deno.remove(inner, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SystemMetrics on cgroup v1 fixtures: cpu and cpuacct mounted apart or together, a parent's memory limit", async () => {
  for (const together of [false, true]) {
    const dir = await tempDir("cgv1");
    try {
      const cpu = together ? "cg/cpu,cpuacct" : "cg/cpu";
      const acct = together ? "cg/cpu,cpuacct" : "cg/cpuacct";
      const self = together
        ? "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
        : "5:memory:/docker/abc\n3:cpuacct:/docker/abc\n2:cpu:/docker/abc\n0::/\n";
      await writeTree(dir, {
        ...procFiles(self, 100, 1000, 0),
        [`${cpu}/cpu.cfs_quota_us`]: "-1\n",
        [`${cpu}/cpu.cfs_period_us`]: "100000\n",
        [`${cpu}/docker/abc/cpu.cfs_quota_us`]: "150000\n",
        [`${cpu}/docker/abc/cpu.cfs_period_us`]: "100000\n",
        [`${acct}/docker/abc/cpuacct.usage`]: "5000000000\n",
        "cg/memory/memory.limit_in_bytes": "9223372036854771712\n",
        "cg/memory/docker/memory.limit_in_bytes": `${1024 * MiB}\n`,
        "cg/memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
        "cg/memory/docker/abc/memory.usage_in_bytes": `${600 * MiB}\n`,
        "cg/memory/docker/abc/memory.stat": `cache 1\ntotal_inactive_file ${88 * MiB}\n`,
      });
      const clock = { t: 0 };
      const m = fixtureMetrics(dir, clock);
      assert.match(m.describeLimits(), /cgroup v1: cpu_percent is of a 1.5-core quota/);
      await writeTree(dir, { [`${acct}/docker/abc/cpuacct.usage`]: "5750000000\n" });
      clock.t = 1000;
      const s = m.sampleNow();
      assert.equal(s.cpu_percent, 50, `750 ms in 1 s against 1.5 cores (together=${together})`);
      assert.equal(s.mem_limit_bytes, 1024 * MiB);
      assert.equal(s.mem_percent, 50, "600 MiB less 88 MiB of inactive file cache, of 1024 MiB");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("Cgroup.detect() finds nothing without a cgroup file system", () => {
  assert.equal(Cgroup.detect(() => undefined, "0::/\n", "/nonexistent"), undefined);
});

/** Where this machine's cgroup v1 controllers are, when they are there and writable. */
function cgroupV1(): string | undefined {
  try {
    for (const c of ["cpu", "cpuacct", "memory"]) {
      Deno.statSync(`/sys/fs/cgroup/${c}/cgroup.procs`);
    }
    const probe = `/sys/fs/cgroup/cpu/qhcp-probe-${Deno.pid}`;
    Deno.mkdirSync(probe);
    Deno.removeSync(probe);
    return "/sys/fs/cgroup";
  } catch {
    return undefined;
  }
}

const V1 = cgroupV1();

Deno.test({
  name:
    "a real agent in a cgroup v1 with half a core and 512 MiB reports against the container while the host stays idle",
  ignore: V1 === undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const name = `qhcp-test-${Deno.pid}`;
    const dirs = ["cpu", "cpuacct", "memory"].map((c) => `${V1}/${c}/${name}`);
    const [cpu, , memory] = dirs as [string, string, string];
    for (const d of dirs) await Deno.mkdir(d);
    const programs: Program[] = [];
    let burner: Deno.ChildProcess | undefined;
    const certs = await tempDir("cgroup");
    try {
      await Deno.writeTextFile(`${cpu}/cpu.cfs_period_us`, "100000");
      await Deno.writeTextFile(`${cpu}/cpu.cfs_quota_us`, "50000");
      await Deno.writeTextFile(`${memory}/memory.limit_in_bytes`, String(512 * MiB));
      // Each process joins the cgroup before it execs, so that it starts inside it.
      const join = dirs.map((d) => `echo $$ > ${d}/cgroup.procs`).join("; ");
      const launcher = ["sh", "-c", `${join}; exec "$@"`, "sh"];
      const env = { QHCP_CERTS_DIR: certs };
      const server = await startServerProcess(["--server-port", "0"], env, launcher);
      programs.push(server.program);
      await server.program.waitForLine(/metrics: cgroup v1: cpu_percent is of a 0.5-core quota/);
      const lb = await startLbProcess([
        "--servers",
        `127.0.0.1:${server.port}`,
        "--check-interval",
        "1",
        "--table",
        "off",
        "--metrics",
        "host_cpu_percent,host_mem_percent,cpu_limit_cores,mem_limit_bytes,mem_total_bytes",
      ], env);
      programs.push(lb.program);
      // The burner spins one core and holds 200 MiB, inside the same limits.
      burner = new Deno.Command("sh", {
        args: [
          "-c",
          `${join}; exec "$@"`,
          "sh",
          Deno.execPath(),
          "eval",
          "const b = new Uint8Array(200 * 2 ** 20).fill(1); while (b[0] === 1) {}",
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      // Three readings in a row near the quota: past the start-up of the processes.
      const reads: Record<string, number>[] = [];
      await waitFor("three readings of cpu_percent near the quota", async () => {
        await new Promise((r) => setTimeout(r, 1000));
        const m = (await fetchStatus(lb.httpPort))[0]?.metrics;
        if (m && m.cpu_percent! >= 80 && m.mem_percent! >= 40) reads.push(m);
        else reads.length = 0;
        return reads.length >= 3 ? true : undefined;
      }, 25_000);
      const usage = () => Number(Deno.readTextFileSync(`${dirs[1]}/cpuacct.usage`));
      const [u0, t0] = [usage(), performance.now()];
      await new Promise((r) => setTimeout(r, 1000));
      const cores = (usage() - u0) / 1e6 / (performance.now() - t0);
      assert.ok(cores > 0.35 && cores < 0.6, `the quota binds the burner: ${cores} cores`);
      for (const m of reads) {
        assert.equal(m.cpu_limit_cores, 0.5);
        assert.equal(m.mem_limit_bytes, 512 * MiB);
        assert.equal(m.mem_total_bytes, 512 * MiB);
        assert.ok(m.mem_percent! <= 100 && m.host_mem_percent! < m.mem_percent!, JSON.stringify(m));
      }
      // The same sample read the host too: a fallback to the host's view would make them equal.
      assert.ok(reads.some((m) => m.cpu_percent !== m.host_cpu_percent), JSON.stringify(reads));
      const last = reads[reads.length - 1]!;
      record(
        "containers",
        "cpu_percent of a 0.5-core quota, burner spinning",
        last.cpu_percent!,
        "%",
        ">= 80",
      );
      record("containers", "host_cpu_percent at the same time", last.host_cpu_percent!, "%");
      record(
        "containers",
        "mem_percent of a 512 MiB limit, burner holding 200 MiB",
        last.mem_percent!,
        "%",
        ">= 40",
      );
      record("containers", "host_mem_percent at the same time", last.host_mem_percent!, "%");
    } finally {
      try {
        burner?.kill("SIGKILL");
        await burner?.status;
      } catch { /* gone */ }
      for (const p of programs.reverse()) await p.stop("SIGKILL");
      // The processes are gone; the empty cgroups can go.
      for (const d of dirs) {
        await waitFor(`${d} removed`, () => {
          try {
            Deno.removeSync(d);
            return true;
          } catch {
            return undefined;
          }
        }, 5000).catch(() => {});
      }
      await Deno.remove(certs, { recursive: true });
    }
  },
});

Deno.test("statvfs() through libc reads the blocks node:fs statfsSync reads", async () => {
  const { statvfs } = await import("../lib/agent/statvfs.ts");
  const { statfsSync } = await import("node:fs");
  for (const path of ["/", "/proc", Deno.cwd()]) {
    const ours = statvfs(path);
    const node = statfsSync(path);
    // Free blocks move with other writers; the size does not.
    assert.equal(ours.blocks, node.blocks, path);
    assert.ok(Math.abs(ours.bavail - node.bavail) < 1024 * 256, path);
    assert.ok(ours.bfree >= ours.bavail, path);
  }
  assert.throws(() => statvfs("/no/such/path"), /statvfs\("\/no\/such\/path"\) failed/);
});

Deno.test("SystemMetrics reads the disk only once an LB asks for disk_percent, then at most every slow interval", () => {
  let calls = 0;
  let clock = 0;
  const metrics = new SystemMetrics({
    intervalMs: 1000,
    slowIntervalMs: 10_000,
    files: {
      statfs: () => (calls++, { blocks: 100, bfree: 40, bavail: 20 }),
      now: () => clock,
    },
  });
  assert.equal(calls, 0, "nothing at start");
  clock = 2000;
  metrics.snapshot(["cpu_percent", "mem_percent"]);
  assert.equal(calls, 0, "not asked for");
  const asked = metrics.snapshot(["disk_percent"]);
  assert.equal(calls, 1, "asked for, within a young sample");
  assert.equal(asked.disk_percent, 75); // 60 used of 80 usable
  clock = 5000;
  metrics.snapshot(["disk_percent"]);
  assert.equal(calls, 1, "the slow interval holds");
  clock = 13_000;
  metrics.snapshot(["disk_percent"]);
  assert.equal(calls, 2);
  metrics.snapshot(["disk_percent"]);
  assert.equal(calls, 2);
});
