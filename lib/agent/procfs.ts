/**
 * Readers of Linux's own accounting files, pure: text in, numbers out. The
 * agent samples the host with these instead of a library that spawns
 * processes (`df`, `cat`) or keeps its own caches.
 *
 * - `/proc/stat` (first line): CPU time in jiffies, busy and total;
 * - `/proc/net/dev`: bytes received and sent per interface;
 * - `/proc/meminfo`, `/proc/loadavg`, `/proc/uptime`: memory, load, uptime;
 * - `/proc/pressure/*` and cgroup v2 `*.pressure`: pressure stall information;
 * - `/proc/self/cgroup`: the process's cgroups, v1 and v2;
 * - cgroup `key value` files (`cpu.stat`, `memory.stat`).
 *
 * @module
 */

/** CPU time so far, in jiffies: busy (all but idle and iowait) and total. */
export interface CpuTimes {
  busy: number;
  total: number;
}

/** The aggregate `cpu` line of `/proc/stat`; undefined when it is not there. */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split("\n").find((l) => l.startsWith("cpu "));
  if (!line) return undefined;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  if (v.length < 4 || v.some((x) => !Number.isFinite(x))) return undefined;
  // user nice system idle iowait irq softirq steal (guest and guest_nice are in user and nice)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Bytes received and sent by every interface but loopback, from `/proc/net/dev`. */
export function parseNetDev(text: string): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const line of text.split("\n").slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === "lo") continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    rx += f[0] ?? 0;
    tx += f[8] ?? 0;
  }
  return { rx, tx };
}

/** One line of a pressure file: the share of time (%) some (or all) tasks stalled. */
export interface PressureLine {
  avg10: number;
  avg60: number;
  avg300: number;
}

/** A pressure file (`some` and, except for CPU on older kernels, `full`). */
export interface Pressure {
  some: PressureLine;
  full: PressureLine | undefined;
}

/** Parses a PSI file; undefined when it holds no `some` line. */
export function parsePressure(text: string): Pressure | undefined {
  const line = (kind: string): PressureLine | undefined => {
    const m = new RegExp(
      `^${kind} avg10=([\\d.]+) avg60=([\\d.]+) avg300=([\\d.]+)`,
      "m",
    ).exec(text);
    return m ? { avg10: Number(m[1]), avg60: Number(m[2]), avg300: Number(m[3]) } : undefined;
  };
  const some = line("some");
  return some ? { some, full: line("full") } : undefined;
}

/** The cgroups of a process, from `/proc/<pid>/cgroup`. */
export interface ProcCgroups {
  /** The v2 (unified) path, from the `0::` line. */
  unified: string | undefined;
  /** v1 paths by controller (`cpu`, `cpuacct`, `memory`, ...). */
  v1: Map<string, string>;
}

/** Parses `/proc/self/cgroup`. */
export function parseProcCgroup(text: string): ProcCgroups {
  const out: ProcCgroups = { unified: undefined, v1: new Map() };
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") out.unified = m[3]!;
    else for (const c of m[2]!.split(",")) if (c) out.v1.set(c, m[3]!);
  }
  return out;
}

/** A `key value` file (cgroup `cpu.stat`, `memory.stat`) as a map. */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

/** Memory as `/proc/meminfo` tells it, bytes. */
export interface MemInfo {
  total: number;
  available: number;
  swapTotal: number;
  swapFree: number;
}

/** Parses `/proc/meminfo` (values in kB); undefined without `MemTotal`. */
export function parseMeminfo(text: string): MemInfo | undefined {
  const kb = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m) kb.set(m[1]!, Number(m[2]) * 1024);
  }
  const total = kb.get("MemTotal");
  if (!total) return undefined;
  return {
    total,
    // Kernels before 3.14 have no MemAvailable: free plus page cache is the old estimate.
    available: kb.get("MemAvailable") ?? (kb.get("MemFree") ?? 0) + (kb.get("Cached") ?? 0),
    swapTotal: kb.get("SwapTotal") ?? 0,
    swapFree: kb.get("SwapFree") ?? 0,
  };
}

/** The three load averages of `/proc/loadavg`, or undefined. */
export function parseLoadavg(text: string): [number, number, number] | undefined {
  const [a, b, c] = text.trim().split(/\s+/).map(Number);
  return [a, b, c].every((x) => x !== undefined && Number.isFinite(x)) ? [a!, b!, c!] : undefined;
}

/** Seconds since boot, from `/proc/uptime`, or undefined. */
export function parseUptime(text: string): number | undefined {
  const s = Number(text.trim().split(/\s+/)[0]);
  return Number.isFinite(s) ? s : undefined;
}
