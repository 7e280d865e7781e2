/**
 * Host metrics for HEALTH_RESPONSE and STATUS, sampled when an answer needs
 * them and at most once per sample interval: an agent no LB talks to samples
 * nothing. A sample reads a few small files of `/proc` and of the agent's
 * cgroup, in well under a millisecond, and spawns no process; the disk is a
 * `statvfs` at most every slow interval, and only once an LB asks for
 * `disk_percent` (the foreign call costs the agent resident memory, and the
 * default metrics do not include it). Rates (CPU, network) are over the
 * time since the previous sample, so an LB that checks every 10 s sees the
 * CPU use of those 10 s.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import type { MetricValues } from "../protocol/wire.ts";
import { Cgroup, type ReadFile } from "./cgroup.ts";
import { type FsBlocks, statvfs } from "./statvfs.ts";
import {
  clampPercent,
  diskPercent,
  hostMetrics,
  type HostReading,
  type HostShape,
  SYSTEM_METRICS,
} from "./host_view.ts";
import {
  parseLoadavg,
  parseMeminfo,
  parseNetDev,
  parsePressure,
  parseProcStat,
  parseUptime,
} from "./procfs.ts";

export { SYSTEM_METRICS };

/** A source of the latest metric values. */
export interface MetricsSource {
  /** Every name this source can report. */
  readonly names: readonly string[];
  /**
   * The latest values (cached; never blocks). With `wanted`, only those names
   * need be current: a source may skip probes nobody asked for.
   */
  snapshot(wanted?: readonly string[]): MetricValues;
}

/** Where the host's files are; tests point these at a fixture directory. */
export interface HostFiles {
  /** Reads a file as text, undefined when it is not there. Default: the file system. */
  read?: ReadFile;
  /** Where `/proc` is. Default `/proc`. */
  proc?: string;
  /** Where cgroup file systems are mounted. Default `/sys/fs/cgroup`. */
  cgroupRoot?: string;
  /** Blocks of the file system holding `/`. Default: `statvfs("/")` through libc. */
  statfs?: () => FsBlocks;
  /** Logical CPUs. Default: `navigator.hardwareConcurrency`. */
  cpuCount?: number;
  /** A monotonic clock, ms. Default `performance.now`. */
  now?: () => number;
}

/** Options of {@linkcode SystemMetrics}. */
export interface SystemMetricsOptions {
  /** Youngest age of a sample that is taken again, ms: at most one sample per interval. Default 1000. */
  intervalMs?: number;
  /** The same for the disk, ms. Default 10000. */
  slowIntervalMs?: number;
  /** Called when a probe fails; the previous value is kept. */
  onError?: (error: unknown) => void;
  /** Where to read; the real host by default. */
  files?: HostFiles;
}

/**
 * Samples the host, and the container it runs in, on demand.
 *
 * The first reading is taken at construction; until a second one, at least an
 * interval later, `cpu_percent` is estimated from the 1-minute load average
 * (a rate needs two readings).
 *
 * @example
 * ```ts
 * import { SystemMetrics } from "./metrics.ts";
 * const metrics = new SystemMetrics();
 * metrics.snapshot().cpu_percent; // a number in 0..100
 * metrics.describeLimits(); // which limits cpu_percent and mem_percent are against
 * ```
 */
export class SystemMetrics implements MetricsSource {
  readonly names: readonly string[] = Object.keys(SYSTEM_METRICS);
  readonly #intervalMs: number;
  readonly #slowIntervalMs: number;
  readonly #onError: (error: unknown) => void;
  readonly #read: ReadFile;
  readonly #proc: string;
  readonly #statfs: () => FsBlocks;
  readonly #cgroup: Cgroup | undefined;
  readonly #shape: HostShape;
  readonly #now: () => number;
  #prev: HostReading | undefined;
  #disk = 0;
  #lastSlow = -Infinity;
  #values: MetricValues;

  constructor(options: SystemMetricsOptions = {}) {
    this.#intervalMs = options.intervalMs ?? AGENT_DEFAULTS.sampleIntervalMs;
    this.#slowIntervalMs = options.slowIntervalMs ?? AGENT_DEFAULTS.slowSampleIntervalMs;
    this.#onError = options.onError ?? (() => {});
    const files = options.files ?? {};
    this.#read = files.read ?? _readFile;
    this.#proc = files.proc ?? "/proc";
    this.#statfs = files.statfs ?? (() => statvfs("/"));
    this.#now = files.now ?? (() => performance.now());
    this.#cgroup = Cgroup.detect(
      this.#read,
      this.#read(`${this.#proc}/self/cgroup`) ?? "",
      files.cgroupRoot,
    );
    this.#shape = {
      cpuCount: files.cpuCount ?? (navigator.hardwareConcurrency || 1),
      limits: this.#cgroup?.limits,
    };
    this.#values = this.#sample(false);
  }

  /**
   * The values of a sample at most an interval old: a new one when the last
   * is older. The disk is read only when `wanted` names it (or is absent).
   */
  snapshot(wanted?: readonly string[]): MetricValues {
    const wantDisk = wanted === undefined || wanted.includes("disk_percent");
    const last = this.#prev?.atMs ?? -Infinity;
    if (this.#now() - last >= this.#intervalMs) this.#values = this.#sample(wantDisk);
    else if (wantDisk && this.#readDisk(this.#now())) {
      this.#values = { ...this.#values, disk_percent: clampPercent(this.#disk) };
    }
    return this.#values;
  }

  /** Takes a sample now, however young the last one, and returns it (tests, benchmarks). */
  sampleNow(): MetricValues {
    return this.#values = this.#sample(true);
  }

  /** Which limits `cpu_percent` and `mem_percent` are against, for the agent's log. */
  describeLimits(): string {
    const mem = this.#values.mem_total_bytes;
    const cg = this.#cgroup?.limits;
    if (!cg) return "no cgroup found: cpu_percent and mem_percent are the host's";
    const cpu = this.#values.cpu_limit_cores
      ? `cpu_percent is of a ${this.#values.cpu_limit_cores}-core quota (${cg.cpuPath})`
      : "cpu_percent is the host's (no CPU quota)";
    const memory = this.#values.mem_limit_bytes
      ? `mem_percent is of a ${Math.round((mem ?? 0) / 2 ** 20)} MiB limit (${cg.memPath})`
      : "mem_percent is the host's (no memory limit)";
    return `cgroup v${cg.version}: ${cpu}; ${memory}`;
  }

  /** Reads the disk when the last reading is a slow interval old; true when it did. */
  #readDisk(atMs: number): boolean {
    if (atMs - this.#lastSlow < this.#slowIntervalMs) return false;
    this.#lastSlow = atMs;
    try {
      this.#disk = diskPercent(this.#statfs());
    } catch (e) {
      this.#onError(e);
    }
    return true;
  }

  #sample(wantDisk: boolean): MetricValues {
    const proc = this.#proc;
    const text = (name: string) => this.#read(`${proc}/${name}`) ?? "";
    const pressure = (kind: "cpu" | "memory" | "io") =>
      this.#cgroup?.pressure(kind) ?? parsePressure(text(`pressure/${kind}`));
    const now: HostReading = {
      atMs: this.#now(),
      cpu: parseProcStat(text("stat")),
      mem: parseMeminfo(text("meminfo")),
      net: parseNetDev(text("net/dev")),
      load: parseLoadavg(text("loadavg")),
      uptimeS: parseUptime(text("uptime")),
      cgroup: this.#cgroup?.usage(),
      pressure: { cpu: pressure("cpu"), memory: pressure("memory"), io: pressure("io") },
    };
    if (wantDisk) this.#readDisk(now.atMs);
    const values = hostMetrics(this.#shape, this.#prev, now, this.#disk);
    this.#prev = now;
    return values;
  }
}

/** A file's text, or undefined when it cannot be read (a kernel without PSI, say). */
function _readFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}
