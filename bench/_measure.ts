/**
 * Measuring helpers shared by the benchmarks: process CPU time and resident
 * memory from /proc (Linux), percentiles, and child processes that report
 * over their stdout one JSON line at a time.
 *
 * @module
 */

const _CLK_TCK = 100; // USER_HZ on Linux x86_64 and arm64

/** CPU time (user + system, all threads) and resident memory of a process. */
export interface ProcSample {
  cpuMs: number;
  rssMb: number;
}

/** Reads /proc/{pid}/stat and /proc/{pid}/status. */
export function procSample(pid: number): ProcSample {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0");
  return { cpuMs: (ticks * 1000) / _CLK_TCK, rssMb: rssKb / 1024 };
}

/** Where a process's resident memory is, MB: anonymous (its own), file-backed (mostly the Deno binary's pages, shared with other Deno processes) and proportional (PSS: shared pages split among their users). */
export interface MemoryDetail {
  rss: number;
  anon: number;
  file: number;
  pss: number;
}

/** Reads /proc/{pid}/status and /proc/{pid}/smaps_rollup. */
export function memoryDetail(pid: number): MemoryDetail {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const mb = (text: string, key: string) =>
    Math.round(Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? "0") / 102.4) / 10;
  return {
    rss: mb(status, "VmRSS"),
    anon: mb(status, "RssAnon"),
    file: mb(status, "RssFile"),
    pss: mb(rollup, "Pss"),
  };
}

/** The p-th percentile (0..100) of sorted values, nearest rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

/** p50, p99 and mean of samples (ms), rounded to microseconds. */
export interface Summary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

/** Summarises samples in ms. */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return {
    n: sorted.length,
    p50: r(percentile(sorted, 50)),
    p99: r(percentile(sorted, 99)),
    mean: r(mean),
  };
}

/**
 * The flags of every `lb.ts` a benchmark starts: the stack, no status table,
 * the HTTP API on loopback and the QHCP port the system picks.
 */
export function benchLbFlags(quic: string): string[] {
  return [
    "--quic",
    quic,
    "--table",
    "off",
    "--http-host",
    "127.0.0.1",
    "--loadbalancer-port",
    "0",
  ];
}

/** A child process whose stdout lines are JSON messages and whose stderr lines are logs. */
export class Child {
  readonly process: Deno.ChildProcess;
  readonly #stdout: string[] = [];
  /** Every stderr line with the time it arrived (performance.now()). */
  readonly stderrLines: { at: number; line: string }[] = [];
  /** Lines dropped from the front of stderrLines (indices given out stay valid). */
  #dropped = 0;
  readonly #waiters = new Set<() => void>();
  #ended = false;

  constructor(
    script: string,
    args: readonly string[],
    env: Record<string, string> = {},
    denoFlags: readonly string[] = [],
    /** The Deno binary to run: this one unless a benchmark holds its page cache (`_page_cache.ts`). */
    deno: string = Deno.execPath(),
  ) {
    const root = new URL("..", import.meta.url);
    this.process = new Deno.Command(deno, {
      args: [
        "run",
        "-A",
        ...denoFlags,
        // A peer with a configuration of its own (or none) says so in denoFlags.
        ...(denoFlags.includes("--config") || denoFlags.includes("--no-config")
          ? []
          : ["--config", new URL("deno.json", root).pathname]),
        new URL(script, root).pathname,
        ...args,
      ],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    void this.#pump(this.process.stdout, (l) => this.#stdout.push(l)).finally(() => {
      this.#ended = true;
      this.#wake();
    });
    void this.#pump(this.process.stderr, (line) => {
      this.stderrLines.push({ at: performance.now(), line });
      // Long runs log a lot: keep the recent past only.
      if (this.stderrLines.length > 20_000) {
        this.stderrLines.splice(0, 10_000);
        this.#dropped += 10_000;
      }
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Lines of stderr so far, counting dropped ones: a `from` for {@linkcode waitForLog}. */
  get stderrCount(): number {
    return this.#dropped + this.stderrLines.length;
  }

  /** The last lines of stderr, for error messages. */
  stderr(): string {
    return this.stderrLines.slice(-20).map((l) => l.line).join("\n");
  }

  /** The next JSON line of stdout. */
  async next<T = Record<string, unknown>>(timeoutMs = 120_000): Promise<T> {
    const line = await this.#until(
      () => {
        while (this.#stdout.length > 0) {
          const l = this.#stdout.shift()!;
          if (l.startsWith("{")) return l;
        }
        if (this.#ended) throw new Error(`child ended without a reply:\n${this.stderr()}`);
        return undefined;
      },
      timeoutMs,
      "a reply",
    );
    return JSON.parse(line) as T;
  }

  /** The first stderr line from index `from` on that matches, with its arrival time. */
  async waitForLog(
    re: RegExp,
    timeoutMs: number,
    from = 0,
  ): Promise<{ at: number; match: RegExpExecArray; index: number }> {
    let i = from;
    return await this.#until(
      () => {
        for (i = Math.max(i, this.#dropped); i < this.stderrCount; i++) {
          const entry = this.stderrLines[i - this.#dropped]!;
          const m = re.exec(entry.line);
          if (m) return { at: entry.at, match: m, index: i };
        }
        if (this.#ended) throw new Error(`child ended before logging ${re}:\n${this.stderr()}`);
        return undefined;
      },
      timeoutMs,
      String(re),
    );
  }

  /** Sends a signal and waits for the exit (SIGKILL after 5 s). */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      this.process.kill(signal);
    } catch { /* gone already */ }
    const done = await Promise.race([
      this.process.status.then(() => true),
      sleep(5000).then(() => false),
    ]);
    if (!done) {
      try {
        this.process.kill("SIGKILL");
      } catch { /* gone */ }
      await this.process.status;
    }
  }

  async #until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.max(1, Math.min(1000, deadline - Date.now())));
        this.#waiters.add(wake);
      });
    }
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  async #pump(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    let rest = "";
    try {
      for await (const chunk of stream) {
        rest += decoder.decode(chunk, { stream: true });
        const parts = rest.split("\n");
        rest = parts.pop() ?? "";
        for (const p of parts) onLine(p);
        this.#wake();
      }
    } catch { /* closed */ }
    if (rest) onLine(rest);
  }
}

/** Writes one JSON line to stdout (the child side of {@linkcode Child}). */
export function reply(value: unknown): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(value) + "\n"));
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** What {@linkcode timeCalls} measured. */
export interface TimedCalls {
  phase: "done";
  rtt: Summary;
  wallMs: number;
  /** This process's CPU time per call, microseconds. */
  clientCpuUsPerCall: number;
}

/**
 * Calls `once` `warmup` times, replies `{ phase: "warm" }` (the orchestrator
 * then reads the server's CPU time), waits 200 ms, and times `n` sequential
 * calls, reading this process's CPU time around them (10 ms ticks: run
 * long enough for that to be small).
 */
export async function timeCalls(
  once: () => Promise<unknown>,
  n: number,
  warmup: number,
): Promise<TimedCalls> {
  for (let i = 0; i < warmup; i++) await once();
  reply({ phase: "warm" });
  await sleep(200);
  const rtts = new Float64Array(n);
  const cpu0 = procSample(Deno.pid).cpuMs;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await once();
    rtts[i] = performance.now() - t;
  }
  const wallMs = performance.now() - t0;
  const cpuMs = procSample(Deno.pid).cpuMs - cpu0;
  return {
    phase: "done",
    rtt: summarize([...rtts]),
    wallMs: Math.round(wallMs),
    clientCpuUsPerCall: Math.round((cpuMs * 1000 / n) * 10) / 10,
  };
}

/** UDP receive errors of the whole machine (/proc/net/snmp): datagrams dropped for a full buffer. */
export function udpDrops(): { rcvbufErrors: number; inErrors: number } {
  const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) =>
    l.startsWith("Udp:")
  );
  const names = lines[0]!.split(/\s+/);
  const values = lines[1]!.split(/\s+/).map(Number);
  const get = (n: string) => values[names.indexOf(n)] ?? 0;
  return { rcvbufErrors: get("RcvbufErrors"), inErrors: get("InErrors") };
}

/**
 * UDP datagrams dropped for a full receive buffer by the sockets of one
 * process, summed (the `drops` column of /proc/net/udp and udp6, matched to
 * the process by socket inode). Tells which side of a loopback benchmark
 * could not keep up.
 */
export function udpDropsOf(pid: number): number {
  const inodes = new Set<string>();
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
        if (m) inodes.add(m[1]!);
      } catch { /* closed meanwhile */ }
    }
  } catch {
    return 0;
  }
  let drops = 0;
  for (const table of ["/proc/net/udp", "/proc/net/udp6"]) {
    for (const line of Deno.readTextFileSync(table).split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 13 && inodes.has(f[9]!)) drops += Number(f[f.length - 1]);
    }
  }
  return drops;
}

/** Open file descriptors of a process. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** The machine the numbers were taken on. */
export function machine(): Record<string, string | number> {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const model = /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "unknown";
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? 0);
  return {
    cpu: model.trim(),
    cores: navigator.hardwareConcurrency,
    memory_gib: Math.round(memKb / 1024 / 1024),
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
  };
}

/** Reads bench/results.json, or another file (or an empty object). */
export function readResults(path = resultsPath()): Record<string, unknown> {
  try {
    return JSON.parse(Deno.readTextFileSync(path)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** Writes bench/results.json, or another file. */
export function writeResults(results: Record<string, unknown>, path = resultsPath()): void {
  Deno.writeTextFileSync(path, JSON.stringify(results, null, 2) + "\n");
}

/** Where the results go. */
export function resultsPath(): string {
  return new URL("./results.json", import.meta.url).pathname;
}

/**
 * Starts `servers` agents in `procs` processes (children pushed to
 * `children`, so that the caller stops them); returns their UDP ports.
 */
export async function startEndpoints(
  servers: number,
  quic: string,
  procs: number,
  dir: string,
  children: Child[],
): Promise<number[]> {
  const per = Math.ceil(servers / procs);
  const counts = Array.from(
    { length: procs },
    (_, i) => Math.max(0, Math.min(per, servers - i * per)),
  )
    .filter((c) => c > 0);
  const mine: Child[] = counts.map((count) =>
    new Child("bench/_endpoints.ts", ["--count", String(count), "--quic", quic, "--certs", dir])
  );
  children.push(...mine);
  return (await Promise.all(mine.map((e) => e.next<{ ports: number[] }>(300_000))))
    .flatMap((r) => r.ports);
}
