/**
 * The container the agent runs in, as Linux accounts for it: the limits of
 * its cgroup (a CPU quota, a memory limit) and its usage, from cgroup v2
 * (`cpu.max`, `cpu.stat`, `memory.max`, `memory.current`, `memory.stat`,
 * `*.pressure`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`,
 * `cpuacct.usage`, `memory.limit_in_bytes`, `memory.usage_in_bytes`,
 * `memory.stat`). Files are read through a small reader, so that tests run
 * the same code on a fixture directory.
 *
 * The smallest limit on the path from the process's cgroup up to the root
 * applies (a limit set on a parent binds its children). Inside a container
 * whose cgroup is mounted as the root of `/sys/fs/cgroup`, the path from
 * `/proc/self/cgroup` may not exist there: then the root itself is read.
 *
 * @module
 */

import { parseKeyValues, parsePressure, parseProcCgroup, type Pressure } from "./procfs.ts";

/** Reads a file as text, or undefined when it is not there. */
export type ReadFile = (path: string) => string | undefined;

/** What limits the agent's cgroup. */
export interface CgroupLimits {
  version: 1 | 2;
  /** The CPU quota in cores (0.5 for 50 ms per 100 ms), or null without one. */
  cpuCores: number | null;
  /** The memory limit in bytes, or null without one. */
  memBytes: number | null;
  /** Where the limits were read, for the log. */
  cpuPath: string | undefined;
  memPath: string | undefined;
}

/** One reading of the cgroup's usage. */
export interface CgroupUsage {
  /** CPU time used by the cgroup so far, µs. */
  cpuUsec: number | undefined;
  /** Memory in use, less the inactive file cache (what the kernel reclaims first), bytes. */
  memBytes: number | undefined;
}

/** A limit above this is "no limit" (v1 writes 2^63 rounded to a page). */
const _UNLIMITED = 2 ** 60;

/** The agent's cgroup: its limits and its usage, read on demand. */
export class Cgroup {
  readonly limits: CgroupLimits;
  readonly #read: ReadFile;
  readonly #cpuDir: string | undefined;
  readonly #cpuacctDir: string | undefined;
  readonly #memDir: string | undefined;
  readonly #v2Dir: string | undefined;

  private constructor(
    read: ReadFile,
    dirs: { v2?: string; cpu?: string; cpuacct?: string; mem?: string },
    limits: CgroupLimits,
  ) {
    this.#read = read;
    this.#v2Dir = dirs.v2;
    this.#cpuDir = dirs.cpu;
    this.#cpuacctDir = dirs.cpuacct;
    this.#memDir = dirs.mem;
    this.limits = limits;
  }

  /**
   * Finds the process's cgroup under `root` (default `/sys/fs/cgroup`) from
   * `procCgroup` (the text of `/proc/self/cgroup`). Undefined when there is
   * no cgroup file system to read.
   */
  static detect(read: ReadFile, procCgroup: string, root = "/sys/fs/cgroup"): Cgroup | undefined {
    const groups = parseProcCgroup(procCgroup);
    const v1 = (controller: string, file: string) => {
      // cpu and cpuacct are mounted apart or together, under either name.
      const mounts = controller === "memory"
        ? ["memory"]
        : [controller, "cpu,cpuacct", "cpuacct,cpu"];
      for (const mount of mounts) {
        for (const dir of _candidates(`${root}/${mount}`, groups.v1.get(controller))) {
          if (read(`${dir}/${file}`) !== undefined) return dir;
        }
      }
      return undefined;
    };
    const cpu = v1("cpu", "cpu.cfs_quota_us");
    const cpuacct = v1("cpuacct", "cpuacct.usage");
    const mem = v1("memory", "memory.limit_in_bytes");
    if (cpu || mem) {
      const cpuCores = cpu ? _v1Quota(read, cpu, root) : null;
      const memBytes = mem ? _v1Memory(read, mem, root) : null;
      return new Cgroup(read, {
        ...(cpu ? { cpu } : {}),
        ...(cpuacct ? { cpuacct } : {}),
        ...(mem ? { mem } : {}),
      }, {
        version: 1,
        cpuCores,
        memBytes,
        cpuPath: cpu,
        memPath: mem,
      });
    }
    if (read(`${root}/cgroup.controllers`) === undefined) return undefined;
    const v2 = _candidates(root, groups.unified).find((d) =>
      read(`${d}/cgroup.controllers`) !== undefined
    );
    if (!v2) return undefined;
    return new Cgroup(read, { v2 }, {
      version: 2,
      cpuCores: _v2Quota(read, v2, root),
      memBytes: _v2Memory(read, v2, root),
      cpuPath: v2,
      memPath: v2,
    });
  }

  /** The cgroup's usage now. */
  usage(): CgroupUsage {
    const read = this.#read;
    if (this.#v2Dir) {
      const cpu = parseKeyValues(read(`${this.#v2Dir}/cpu.stat`) ?? "").get("usage_usec");
      const current = _number(read(`${this.#v2Dir}/memory.current`));
      const inactive =
        parseKeyValues(read(`${this.#v2Dir}/memory.stat`) ?? "").get("inactive_file") ?? 0;
      return {
        cpuUsec: cpu,
        memBytes: current === undefined ? undefined : Math.max(0, current - inactive),
      };
    }
    const ns = this.#cpuacctDir ? _number(read(`${this.#cpuacctDir}/cpuacct.usage`)) : undefined;
    const used = this.#memDir ? _number(read(`${this.#memDir}/memory.usage_in_bytes`)) : undefined;
    const stat = this.#memDir
      ? parseKeyValues(read(`${this.#memDir}/memory.stat`) ?? "")
      : new Map();
    const inactive = stat.get("total_inactive_file") ?? stat.get("inactive_file") ?? 0;
    return {
      cpuUsec: ns === undefined ? undefined : ns / 1000,
      memBytes: used === undefined ? undefined : Math.max(0, used - inactive),
    };
  }

  /** The cgroup's own pressure files (v2), when there are some. */
  pressure(kind: "cpu" | "memory" | "io"): Pressure | undefined {
    if (!this.#v2Dir) return undefined;
    const text = this.#read(`${this.#v2Dir}/${kind}.pressure`);
    return text === undefined ? undefined : parsePressure(text);
  }
}

/** The cgroup's directory and, when it is not there, the mount's root. */
function _candidates(mount: string, path: string | undefined): string[] {
  const clean = (path ?? "/").replace(/\/+$/, "");
  return clean && clean !== "/" ? [`${mount}${clean}`, mount] : [mount];
}

/** The directories from `dir` up to `root`, `dir` first. */
function _upward(dir: string, root: string): string[] {
  const out = [dir];
  let d = dir;
  while (d.length > root.length && d.includes("/")) {
    d = d.slice(0, d.lastIndexOf("/"));
    if (d.length < root.length) break;
    out.push(d);
  }
  return out;
}

function _number(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
}

function _min(values: (number | null)[]): number | null {
  const real = values.filter((v): v is number => v !== null);
  return real.length > 0 ? Math.min(...real) : null;
}

function _v1Quota(read: ReadFile, dir: string, root: string): number | null {
  return _min(
    _upward(dir, root).map((d) => {
      const quota = _number(read(`${d}/cpu.cfs_quota_us`));
      const period = _number(read(`${d}/cpu.cfs_period_us`));
      return quota !== undefined && period && quota > 0 ? quota / period : null;
    }),
  );
}

function _v1Memory(read: ReadFile, dir: string, root: string): number | null {
  return _min(
    _upward(dir, root).map((d) => {
      const limit = _number(read(`${d}/memory.limit_in_bytes`));
      return limit !== undefined && limit > 0 && limit < _UNLIMITED ? limit : null;
    }),
  );
}

function _v2Quota(read: ReadFile, dir: string, root: string): number | null {
  return _min(
    _upward(dir, root).map((d) => {
      const [quota, period] = (read(`${d}/cpu.max`) ?? "").trim().split(/\s+/);
      const q = Number(quota);
      const p = Number(period);
      return quota !== "max" && q > 0 && p > 0 ? q / p : null;
    }),
  );
}

function _v2Memory(read: ReadFile, dir: string, root: string): number | null {
  return _min(
    _upward(dir, root).map((d) => {
      const text = (read(`${d}/memory.max`) ?? "").trim();
      const n = Number(text);
      return text && text !== "max" && n > 0 && n < _UNLIMITED ? n : null;
    }),
  );
}
