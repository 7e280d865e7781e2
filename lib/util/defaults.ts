/**
 * Every default of both programs, written once. The flag tables show them in
 * `--help`, the flag parsers fall back to them, and the constructors
 * (Monitor, Agent, the session machines, the HTTP API) use them when an
 * option is left out, so no default is written twice. Times are in ms.
 * docs/PROTOCOL.md and the README state the same values for people.
 *
 * @module
 */

/** Defaults shared by the LB and the agent. */
export const COMMON_DEFAULTS = {
  /** QUIC idle timeout of a session. */
  idleTimeoutMs: 30_000,
  /** QUIC stack. */
  quic: "matrixai",
  logLevel: "info",
  logFormat: "text",
  /** Directory of the default certificates and secrets (or $QHCP_CERTS_DIR). */
  certsDir: "certs",
} as const;

/** Defaults of the load balancer (`lb.ts`, `Monitor`). */
export const LB_DEFAULTS = {
  /** Time between checks. */
  checkIntervalMs: 10_000,
  /** A check's timeout is the smaller of the interval and this. */
  maxCheckTimeoutMs: 2000,
  /** Consecutive failed checks that mark a server DOWN (HAProxy's fall). */
  maxFailAttempts: 3,
  /** Consecutive good checks that bring a DOWN server back UP. */
  rise: 2,
  /** Time between checks while a verdict is in doubt (HAProxy's fastinter). */
  fastIntervalMs: 1000,
  /** Spread of every interval, a fraction (0.1 is ±10 %). */
  jitter: 0.1,
  /** Longest wait between redials of a DOWN server. */
  reconnectIntervalMs: 30_000,
  /** Weight (0..100) of a healthy server at 100 % load. */
  weightFloor: 10,
  /** Percentage metrics whose highest value is a server's load. */
  loadMetrics: ["cpu_percent", "mem_percent"] as readonly string[],
  /** Checks due within this many ms run in one timer wake-up. */
  timerSlackMs: 25,
  /** QUIC handshakes in flight at most. */
  maxConcurrentDials: 16,
  /** Servers watched at most. */
  maxServers: 10_000,
  /** Lifetime of the tokens the LB signs, seconds. */
  jwtTtlSec: 600,
  /** The HTTP endpoint. */
  httpHost: "0.0.0.0",
  httpPort: 4242,
  httpMaxConnections: 2048,
  httpMaxPerAddress: 256,
  httpHeadTimeoutMs: 10_000,
  /** Connections at once to the agent-check port. */
  agentMaxConnections: 1024,
  /** Most dashboard events per second per subscriber, and subscribers at once. */
  eventsPerSecond: 4,
  maxSubscribers: 100,
  /** Status table mode. */
  table: "auto",
  /**
   * Heartbeat interval asked of servers (0: no heartbeats), on the native
   * stack (DATAGRAM frames) and on @matrixai/quic (the control stream, where
   * each costs about ten times the CPU).
   */
  heartbeatMs: { native: 250, matrixai: 1000 },
  /**
   * Heartbeats per second the LB takes at most from all its servers; beyond,
   * intervals grow. 4000 did not hold 10,000 servers on two shared cores
   * (docs/PERFORMANCE.md, "Detection and its cost"); 2000 did.
   */
  heartbeatBudget: { native: 2000, matrixai: 500 },
  /** Ask servers to push status changes. */
  push: true,
  /** Suspicion level (phi) of heartbeat silence at which the LB probes a server. */
  suspectPhi: 8,
  /** Shortest and longest wait for a probe's answer; between, 4 x the slowest recent round trip. */
  minProbeTimeoutMs: 100,
  maxProbeTimeoutMs: 1000,
  /** Fleet mode: the fleet's keys in etcd, LBs per server, and the lease TTL (seconds). */
  etcdPrefix: "/qhcp/",
  /** DNS: the zone served, and the TTL of every answer, seconds. */
  dnsDomain: "qhcp.",
  dnsTtlSec: 1,
  checkersPerServer: 2,
  leaseTtlSec: 3,
} as const;

/**
 * Deno flags the agent runs with (`run_quic.sh server`, the benchmarks), from
 * a checkout at `dir` (a directory path without a trailing slash). Each one
 * keeps resident memory down (docs/PERFORMANCE.md, agent footprint):
 * - `--no-config`: the project's deno.json brings its import map and
 *   node_modules set-up into every process, and the agent uses neither. It
 *   needs only what follows: QUIC, which is unstable (`--unstable-net`,
 *   deno.json's `unstable` list), and its npm packages at the versions in
 *   deno.lock, checked and never rewritten (`--lock`, `--frozen`);
 * - `--v8-flags=--lite-mode`: V8 without its compilers to machine code
 *   (`--jitless`), with feedback allocated lazily and code optimised for
 *   size: the agent interprets its few checks a second, and holds less for it
 *   (much less with matrixai, whose library is mostly JavaScript);
 * - `--no-code-cache`: V8's code cache is a memory-mapped database, and
 *   compiling the agent's modules again costs little at start.
 *
 * A test holds run_quic.sh to this list.
 *
 * @example
 * ```ts
 * import { agentDenoFlags } from "./defaults.ts";
 * agentDenoFlags("/opt/qhcp");
 * // ["--no-config", "--unstable-net", "--lock=/opt/qhcp/deno.lock", "--frozen",
 * //  "--v8-flags=--lite-mode", "--no-code-cache"]
 * ```
 */
export function agentDenoFlags(dir: string): string[] {
  return [...agentGraphFlags(dir), "--v8-flags=--lite-mode", "--no-code-cache"];
}

/**
 * The part of {@linkcode agentDenoFlags} that decides which modules and
 * packages the agent loads: what `run_quic.sh install` caches them with.
 *
 * @example
 * ```ts
 * import { agentGraphFlags } from "./defaults.ts";
 * agentGraphFlags("/opt/qhcp"); // ["--no-config", "--unstable-net", "--lock=/opt/qhcp/deno.lock", "--frozen"]
 * ```
 */
export function agentGraphFlags(dir: string): string[] {
  return ["--no-config", "--unstable-net", `--lock=${dir}/deno.lock`, "--frozen"];
}

/** Defaults of the server agent (`server.ts`, `Agent`, `ServerSession`). */
export const AGENT_DEFAULTS = {
  host: "0.0.0.0",
  port: 4243,
  /** Close a connection that sends no HELLO within this. */
  helloTimeoutMs: 5000,
  /** Wait this long for TERMINATE_ACK after sending TERMINATE. */
  terminateAckTimeoutMs: 1000,
  /** `interval_ms` assumed when HELLO names none. */
  sessionIntervalMs: 10_000,
  /** Clock leeway for token times, seconds. */
  jwtLeewaySec: 60,
  /** Connections at once before their HELLO is accepted. */
  maxUnauthenticated: 100,
  /** Connections at once in all, and from one client address. */
  maxConnections: 10_000,
  maxConnectionsPerAddress: 64,
  /** Authenticated sessions at once per LB id. */
  maxSessionsPerLb: 16,
  /** Messages per second one session may send. */
  sessionRate: 20,
  /** Local checks of the application: time between rounds, and each one's timeout. */
  localCheckIntervalMs: 2000,
  localCheckTimeoutMs: 1000,
  /** Background metric sampling, and the slower disk sampling. */
  sampleIntervalMs: 1000,
  slowSampleIntervalMs: 10_000,
  /** How often the drain file is looked for. */
  drainPollMs: 1000,
  /** Metrics reported when an LB asks for none. */
  metrics: ["cpu_percent", "mem_percent"] as readonly string[],
  /** Heartbeat interval when an LB offers heartbeats without naming one, and the shortest kept. */
  heartbeatMs: 1000,
  minHeartbeatMs: 100,
} as const;

/** `ms` as seconds for `--help` ("10", "0.5"). */
export function seconds(ms: number): string {
  return String(ms / 1000);
}
