/**
 * The metrics an agent reports, computed from two readings of the host's
 * counters, pure: no file, no clock. Inside a container with a CPU quota or a
 * memory limit, `cpu_percent` and `mem_percent` are against that limit; the
 * host's view stays in `host_cpu_percent` and `host_mem_percent`.
 *
 * @module
 */

import type { MetricValues } from "../protocol/wire.ts";
import type { CgroupLimits, CgroupUsage } from "./cgroup.ts";
import type { CpuTimes, MemInfo, Pressure } from "./procfs.ts";

/** What each metric means, for `--help`, the README and ACK. */
export const SYSTEM_METRICS: Readonly<Record<string, string>> = {
  cpu_percent:
    "CPU busy over the last sample, 0..100: of the container's CPU quota when it has one, else of the host",
  mem_percent:
    "memory in use, 0..100: of the container's memory limit when it has one, else of the host",
  mem_used_bytes: "memory in use, bytes (the container's working set when it has a limit)",
  mem_total_bytes: "memory available to use, bytes (the container's limit when it has one)",
  host_cpu_percent: "CPU busy on the whole host over the last sample, 0..100",
  host_mem_percent: "memory in use on the whole host (total minus available), 0..100",
  cpu_limit_cores: "the container's CPU quota in cores (0.5 for 50 ms per 100 ms), 0 without one",
  mem_limit_bytes: "the container's memory limit, bytes, 0 without one",
  cpu_pressure_some_avg10: "share of the last 10 s some runnable task waited for a CPU, %",
  cpu_pressure_some_avg60: "the same over 60 s, %",
  memory_pressure_some_avg10:
    "share of the last 10 s some task stalled on memory (reclaim, swap-in), %",
  memory_pressure_full_avg10:
    "share of the last 10 s all non-idle tasks stalled on memory at once, %",
  memory_pressure_some_avg60: "memory_pressure_some over 60 s, %",
  io_pressure_some_avg10: "share of the last 10 s some task waited for I/O, %",
  io_pressure_full_avg10: "share of the last 10 s all non-idle tasks waited for I/O at once, %",
  io_pressure_some_avg60: "io_pressure_some over 60 s, %",
  swap_percent: "swap in use, 0..100 (0 without swap)",
  load_1: "1-minute load average",
  load_5: "5-minute load average",
  load_15: "15-minute load average",
  cpu_count: "logical CPUs of the host",
  disk_percent: "use of the file system holding /, 0..100 (as df shows it)",
  net_rx_bytes_per_s: "bytes received per second, all non-loopback interfaces",
  net_tx_bytes_per_s: "bytes sent per second, all non-loopback interfaces",
  uptime_s: "host uptime, seconds",
};

/** One reading of the host's counters; a field is undefined when its file was not there. */
export interface HostReading {
  /** When it was taken, ms on a monotonic clock. */
  atMs: number;
  cpu: CpuTimes | undefined;
  mem: MemInfo | undefined;
  net: { rx: number; tx: number } | undefined;
  load: [number, number, number] | undefined;
  uptimeS: number | undefined;
  /** The container's usage, when the agent runs in a cgroup that can be read. */
  cgroup: CgroupUsage | undefined;
  /** Pressure: the cgroup's own files where present, else the host's. */
  pressure: {
    cpu?: Pressure | undefined;
    memory?: Pressure | undefined;
    io?: Pressure | undefined;
  };
}

/** What stays the same between readings. */
export interface HostShape {
  /** Logical CPUs of the host. */
  cpuCount: number;
  /** The container's limits, when there is a cgroup. */
  limits: CgroupLimits | undefined;
}

/** The limits that bind: a quota above the host's CPUs or a limit above its memory does not. */
export function effectiveLimits(
  shape: HostShape,
  memTotal: number | undefined,
): { cpuCores: number | null; memBytes: number | null } {
  const cpu = shape.limits?.cpuCores ?? null;
  const mem = shape.limits?.memBytes ?? null;
  return {
    cpuCores: cpu !== null && cpu < shape.cpuCount ? cpu : null,
    memBytes: mem !== null && (memTotal === undefined || mem < memTotal) ? mem : null,
  };
}

/**
 * The metrics from the reading `now` and the one before it (`prev`, for the
 * rates: CPU and network). Without `prev`, CPU is estimated from the 1-minute
 * load average and the network rates are 0.
 */
export function hostMetrics(
  shape: HostShape,
  prev: HostReading | undefined,
  now: HostReading,
  diskPercent: number,
): MetricValues {
  const limits = effectiveLimits(shape, now.mem?.total);
  const cpus = Math.max(1, shape.cpuCount);
  const load = now.load ?? [0, 0, 0];
  const hostCpu = prev?.cpu && now.cpu && now.cpu.total > prev.cpu.total
    ? ((now.cpu.busy - prev.cpu.busy) / (now.cpu.total - prev.cpu.total)) * 100
    : (load[0] / cpus) * 100;
  let cpu = hostCpu;
  if (limits.cpuCores !== null) {
    const used = prev?.cgroup?.cpuUsec !== undefined && now.cgroup?.cpuUsec !== undefined
      ? now.cgroup.cpuUsec - prev.cgroup.cpuUsec
      : undefined;
    const wallUs = prev ? (now.atMs - prev.atMs) * 1000 : 0;
    // Before the second reading there is no rate of the container's own: the host's stands in.
    if (used !== undefined && wallUs > 0) cpu = (used / (wallUs * limits.cpuCores)) * 100;
  }
  const mem = now.mem;
  const hostUsed = mem ? mem.total - mem.available : 0;
  const hostMem = mem ? (hostUsed / mem.total) * 100 : 0;
  const limited = limits.memBytes !== null && now.cgroup?.memBytes !== undefined;
  const memUsed = limited ? now.cgroup!.memBytes! : hostUsed;
  const memTotal = limited ? limits.memBytes! : mem?.total ?? 0;
  const seconds = prev ? (now.atMs - prev.atMs) / 1000 : 0;
  const rate = (a: number | undefined, b: number | undefined) =>
    a !== undefined && b !== undefined && seconds > 0 && b >= a ? Math.round((b - a) / seconds) : 0;
  const psi = now.pressure;
  return {
    cpu_percent: clampPercent(cpu),
    mem_percent: clampPercent(memTotal > 0 ? (memUsed / memTotal) * 100 : 0),
    mem_used_bytes: memUsed,
    mem_total_bytes: memTotal,
    host_cpu_percent: clampPercent(hostCpu),
    host_mem_percent: clampPercent(hostMem),
    cpu_limit_cores: _round(limits.cpuCores ?? 0),
    mem_limit_bytes: limits.memBytes ?? 0,
    cpu_pressure_some_avg10: psi.cpu?.some.avg10 ?? 0,
    cpu_pressure_some_avg60: psi.cpu?.some.avg60 ?? 0,
    memory_pressure_some_avg10: psi.memory?.some.avg10 ?? 0,
    memory_pressure_full_avg10: psi.memory?.full?.avg10 ?? 0,
    memory_pressure_some_avg60: psi.memory?.some.avg60 ?? 0,
    io_pressure_some_avg10: psi.io?.some.avg10 ?? 0,
    io_pressure_full_avg10: psi.io?.full?.avg10 ?? 0,
    io_pressure_some_avg60: psi.io?.some.avg60 ?? 0,
    swap_percent: mem && mem.swapTotal > 0
      ? clampPercent(((mem.swapTotal - mem.swapFree) / mem.swapTotal) * 100)
      : 0,
    load_1: _round(load[0]),
    load_5: _round(load[1]),
    load_15: _round(load[2]),
    cpu_count: cpus,
    disk_percent: clampPercent(diskPercent),
    net_rx_bytes_per_s: rate(prev?.net?.rx, now.net?.rx),
    net_tx_bytes_per_s: rate(prev?.net?.tx, now.net?.tx),
    uptime_s: Math.round(now.uptimeS ?? 0),
  };
}

/** Use of a file system as df shows it: used over what a non-root user could have. */
export function diskPercent(s: { blocks: number; bfree: number; bavail: number }): number {
  const used = s.blocks - s.bfree;
  const usable = used + s.bavail;
  return usable > 0 ? (used / usable) * 100 : 0;
}

/** A percentage as reported: 0 when not finite, else clamped to 0..100 with two decimals. */
export function clampPercent(v: number): number {
  if (!Number.isFinite(v)) return 0;
  return _round(Math.min(100, Math.max(0, v)));
}

function _round(v: number): number {
  return Math.round(v * 100) / 100;
}
