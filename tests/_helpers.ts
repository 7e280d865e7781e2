/**
 * Test helpers: polling, credentials, fake metrics, and child processes of
 * the real programs with their log lines captured.
 *
 * @module
 */

import { Agent, type AgentOptions } from "../lib/agent/agent.ts";
import { createHmacSigner, createHmacVerifier, generateSecret } from "../lib/security/jwt.ts";
import type { CloseInfo, Listener, ListenOptions, Transport } from "../lib/transport/transport.ts";
import { decodeMessage, encodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import { type DevCertificates, generateDevCertificates } from "../lib/security/certs.ts";
import type { MetricsSource } from "../lib/agent/metrics.ts";
import type { MetricValues } from "../lib/protocol/wire.ts";
import { agentDenoFlags } from "../lib/util/defaults.ts";

/** mulberry32: a small deterministic PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The bytes of `parts`, one after another. */
export { concatBytes as concat } from "../lib/util/bytes.ts";

/** Open file descriptors of this process. */
export function fds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A steady stream of HTTP requests to `url` (one every 10 ms, 20 ms more
 * after a failure), recording which backend answered each one (the body) and
 * when. `stop()` ends it.
 */
export function startTraffic(url: string): {
  served: { at: number; by: string }[];
  stop(): Promise<void>;
} {
  const served: { at: number; by: string }[] = [];
  let sending = true;
  const loop = (async () => {
    while (sending) {
      try {
        const res = await fetch(url);
        served.push({ at: performance.now(), by: await res.text() });
      } catch {
        await sleep(20);
      }
      await sleep(10);
    }
  })();
  return {
    served,
    stop: async () => {
      sending = false;
      await loop;
    },
  };
}

/**
 * Runs `fixture` (a script under tests/fixtures/) with both output streams
 * piped and reads the first chunk of `stream` only, leaving the other unread;
 * a child that gives nothing within `timeoutMs` is killed and the test fails
 * with `stalled`. Returns the child, the chunk as text and the reader.
 */
export async function firstOutputWhileOtherUnread(
  fixture: string,
  stream: "stdout" | "stderr",
  stalled: string,
  timeoutMs = 30_000,
): Promise<
  { child: Deno.ChildProcess; text: string; reader: ReadableStreamDefaultReader<Uint8Array> }
> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`./fixtures/${fixture}`, import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child[stream].getReader();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    reader.read(),
    new Promise<never>((_, reject) =>
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(stalled));
      }, timeoutMs)
    ),
  ]).finally(() => clearTimeout(timer));
  return { child, text: new TextDecoder().decode(first.value), reader };
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<Exclude<T, false | 0 | "" | null | undefined>> {
  const start = performance.now();
  let last: unknown;
  while (performance.now() - start < timeoutMs) {
    try {
      const v = await check();
      if (v) return v as Exclude<T, false | 0 | "" | null | undefined>;
      last = v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
}

/** Certificates and a shared secret for one test file. */
export interface Credentials {
  certs: DevCertificates;
  secret: Uint8Array;
}

/** Makes a CA, a server certificate for localhost/127.0.0.1/::1 and a secret. */
export async function makeCredentials(): Promise<Credentials> {
  return {
    certs: await generateDevCertificates(),
    secret: new TextEncoder().encode(generateSecret()),
  };
}

/** HS256 signer and verifier over a secret. */
export function hmacPair(secret: Uint8Array, lbId = "lb-test", ttlSec = 600, leewaySec = 60) {
  return {
    signer: createHmacSigner(secret, { lbId, ttlSec }),
    verifier: createHmacVerifier(secret, { leewaySec }),
  };
}

/** A metrics source with values the test controls. */
export class FakeMetrics implements MetricsSource {
  readonly names = ["cpu_percent", "mem_percent", "load_1", "disk_percent"] as const;
  values: MetricValues = { cpu_percent: 12.5, mem_percent: 40, load_1: 0.5, disk_percent: 70 };
  snapshot(): MetricValues {
    return this.values;
  }
}

/** A running child process of lb.ts or server.ts with its stderr lines. */
export class Program {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly done: Promise<Deno.CommandStatus>;
  #pumped: Promise<void>;

  constructor(
    script: "lb.ts" | "server.ts",
    args: readonly string[],
    env: Record<string, string> = {},
    launcher: readonly string[] = [],
  ) {
    const root = new URL("..", import.meta.url);
    // A launcher (`sh -c '...; exec "$@"' sh`) runs first and execs Deno.
    const [command, ...before] = [...launcher, Deno.execPath()];
    // The agent runs as run_quic.sh and the benchmarks run it (no project config).
    const flags = script === "server.ts"
      ? agentDenoFlags(new URL(".", root).pathname.replace(/\/$/, ""))
      : ["--config", new URL("deno.json", root).pathname];
    this.child = new Deno.Command(command!, {
      args: [
        ...before,
        "run",
        "-A",
        ...flags,
        new URL(script, root).pathname,
        ...args,
      ],
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumped = Promise.all([
      this.#pump(this.child.stderr),
      this.#pump(this.child.stdout),
    ]).then(() => {});
    this.done = this.child.status;
  }

  /** Waits for a log line matching `re` and returns its match. */
  async waitForLine(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return await waitFor(`a line matching ${re}`, () => {
      for (const l of this.lines) {
        const m = l.match(re);
        if (m) return m;
      }
      return undefined;
    }, timeoutMs);
  }

  /** Sends a signal (ignores a process that is gone). */
  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch { /* already exited */ }
  }

  /** Ends the process (SIGKILL if it does not exit on `signal` in time) and drains output. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 5000): Promise<Deno.CommandStatus> {
    this.kill(signal);
    const timer = setTimeout(() => this.kill("SIGKILL"), timeoutMs);
    const status = await this.done;
    clearTimeout(timer);
    await this.#pumped;
    return status;
  }

  /** All captured output, for failure messages. */
  output(): string {
    return this.lines.join("\n");
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += value;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
    } catch { /* process gone */ }
    if (rest) this.lines.push(rest);
  }
}

/** Starts a server agent process on 127.0.0.1 and returns it with its UDP port. */
export async function startServerProcess(
  args: readonly string[],
  env: Record<string, string> = {},
  launcher: readonly string[] = [],
): Promise<{ program: Program; port: number }> {
  const program = new Program("server.ts", ["--server-ip", "127.0.0.1", ...args], env, launcher);
  try {
    const m = await program.waitForLine(/server listening .*port=(\d+)/);
    return { program, port: Number(m[1]) };
  } catch (e) {
    await program.stop("SIGKILL");
    throw new Error(`server did not start: ${(e as Error).message}\n${program.output()}`);
  }
}

/** Starts an LB process and returns it with its HTTP port. */
export async function startLbProcess(
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<{ program: Program; httpPort: number }> {
  const program = new Program("lb.ts", [
    "--http-host",
    "127.0.0.1",
    "--loadbalancer-port",
    "0",
    ...args,
  ], env);
  try {
    const m = await program.waitForLine(/HTTP status endpoint listening .*port=(\d+)/);
    return { program, httpPort: Number(m[1]) };
  } catch (e) {
    await program.stop("SIGKILL");
    throw new Error(`LB did not start: ${(e as Error).message}\n${program.output()}`);
  }
}

/** One server's entry in GET /status. */
export interface StatusEntry {
  address: string;
  state: string;
  consecutive_failures: number;
  last_rtt_ms: number | null;
  metrics: Record<string, number> | null;
  status: string | null;
  last_error: string | null;
  last_change: string;
  weight: number;
  checks: { name: string; ok: boolean; detail: string }[] | null;
}

/** GET /status from an LB process. */
export async function fetchStatus(httpPort: number): Promise<StatusEntry[]> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/status`);
  const body = await res.json() as { servers: StatusEntry[] };
  return body.servers;
}

/** Makes an empty temporary directory (for certs and files), shared by the processes of one test. */
export async function tempDir(prefix: string): Promise<string> {
  return await Deno.makeTempDir({ prefix: `qhcp-${prefix}-` });
}

/** A TCP port that was free a moment ago (bind port 0, read it, release it). */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * A clock and a timer that move only when told: hand `now` and `timer` to a
 * Scheduler (and `now` to what reads the time), then `advance()`.
 */
export class ManualClock {
  #t: number;
  #next = 1;
  readonly #due = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.now()) {
    this.#t = start;
  }

  /** The clock, ms. */
  readonly now = (): number => this.#t;

  /** Timer functions for `new Scheduler({ now, timer })`. */
  readonly timer = {
    set: (fn: () => void, ms: number): unknown => {
      const id = this.#next++;
      this.#due.set(id, { at: this.#t + Math.max(0, ms), fn });
      return id;
    },
    clear: (handle: unknown): void => void this.#due.delete(handle as number),
  };

  /** Timers waiting. */
  get pending(): number {
    return this.#due.size;
  }

  /**
   * Moves the clock `ms` forward, firing due timers in time order, and lets
   * the promises they start run (real I/O too: `settleMs` of real time after
   * each firing).
   */
  async advance(ms: number, settleMs = 5): Promise<void> {
    const end = this.#t + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#due) if (e[1].at <= end && (!first || e[1].at < first[1].at)) first = e;
      if (!first) break;
      this.#due.delete(first[0]);
      this.#t = Math.max(this.#t, first[1].at);
      first[1].fn();
      await sleep(settleMs);
    }
    this.#t = end;
    await sleep(settleMs);
  }
}

/**
 * An agent on port 4243 of an in-memory network, verifying HS256 tokens
 * made with `secret`. No certificate is checked there; the agent reads its
 * names (for token binding) from `certPem` when given.
 */
export async function startMemoryAgent(
  transport: Transport,
  host: string,
  options: Partial<AgentOptions> & { secret: Uint8Array },
): Promise<Agent> {
  const { secret, ...rest } = options;
  return await Agent.start({
    transport,
    host,
    port: 4243,
    certPem: "",
    keyPem: "",
    serverId: `agent-${host}`,
    verifier: hmacPair(secret).verifier,
    metrics: new FakeMetrics(),
    ...rest,
  });
}

/** A peer that answers HELLO with ACK and then ignores every request, counting them. */
export interface MutePeer {
  listener: Listener;
  /** HEALTH_REQUESTs received. */
  requests: number;
  /** Each accepted connection's close. */
  closes: Promise<CloseInfo>[];
}

/** Starts a {@linkcode MutePeer} on `transport`. */
export async function startMutePeer(
  transport: Transport,
  options: ListenOptions,
): Promise<MutePeer> {
  const peer = { requests: 0, closes: [] as Promise<CloseInfo>[] } as MutePeer;
  peer.listener = await transport.listen(options, (channel) => {
    peer.closes.push(channel.closed);
    void (async () => {
      const frames = new FrameDecoder();
      for (let chunk = await channel.read(); chunk; chunk = await channel.read()) {
        frames.push(chunk);
        for (let p = frames.next(); p; p = frames.next()) {
          const m = decodeMessage(p);
          if (m.type === "HELLO") {
            await channel.write(encodeMessage({
              type: "ACK",
              seq: 1,
              re: m.seq,
              version: 1,
              server_id: "mute",
              metrics: ["cpu_percent", "mem_percent"],
            })).catch(() => {});
          } else if (m.type === "HEALTH_REQUEST") {
            peer.requests++;
          }
        }
      }
    })().catch(() => {});
  });
  return peer;
}

/**
 * Real `server.ts` and `lb.ts` processes sharing one temporary certificates
 * directory; `close()` (or `await using`) kills them all and removes it.
 *
 * @example
 * ```ts
 * import { Fleet } from "./_helpers.ts";
 * await using fleet = await Fleet.create("e2e");
 * const a = await fleet.server(["--server-port", "0"]);
 * const lb = await fleet.lb(["--servers", `127.0.0.1:${a.port}`]);
 * ```
 */
export class Fleet implements AsyncDisposable {
  readonly programs: Program[] = [];

  private constructor(readonly dir: string) {}

  /** A fleet with a fresh certificates directory. */
  static async create(prefix: string): Promise<Fleet> {
    return new Fleet(await tempDir(prefix));
  }

  /** The environment every program of the fleet runs with. */
  get env(): Record<string, string> {
    return { QHCP_CERTS_DIR: this.dir };
  }

  /** Starts a server process (on 127.0.0.1) of the fleet. */
  async server(
    args: readonly string[],
    env: Record<string, string> = {},
  ): Promise<{ program: Program; port: number }> {
    const s = await startServerProcess(args, { ...this.env, ...env });
    this.programs.push(s.program);
    return s;
  }

  /** Starts an LB process of the fleet (HTTP on 127.0.0.1, any port). */
  async lb(
    args: readonly string[],
    env: Record<string, string> = {},
  ): Promise<{ program: Program; httpPort: number }> {
    const l = await startLbProcess(args, { ...this.env, ...env });
    this.programs.push(l.program);
    return l;
  }

  /** Stops every program with `signal` and removes the directory. */
  async close(signal: Deno.Signal = "SIGKILL"): Promise<void> {
    await Promise.all(this.programs.map((p) => p.stop(signal)));
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
