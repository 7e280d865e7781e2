/**
 * QHCP, the Quick Health Check Protocol over QUIC: the library behind
 * `lb.ts` and `server.ts`.
 *
 * - Wire format: {@linkcode encodeMessage}, {@linkcode decodeMessage},
 *   {@linkcode FrameDecoder} (pure, no I/O).
 * - Protocol state machines: {@linkcode ServerSession}, {@linkcode LbSession}
 *   (pure: time in, actions out) and the verdict {@linkcode HealthTracker}.
 * - Running peers: {@linkcode Agent} (server) and {@linkcode Monitor} (LB)
 *   over any {@linkcode Transport}: {@linkcode createMatrixaiTransport}
 *   (@matrixai/quic) or {@linkcode createNativeTransport} (Deno's own QUIC,
 *   `--unstable-net`) for real QUIC, {@linkcode MemoryTransport} for tests.
 *
 * @example
 * ```ts
 * import { decodeFrame, encodeMessage } from "./mod.ts";
 * const frame = encodeMessage({ type: "TERMINATE", seq: 7, reason: "shutdown" });
 * decodeFrame(frame); // { type: "TERMINATE", seq: 7, reason: "shutdown" }
 * ```
 *
 * @module
 */

export * from "./lib/protocol/wire.ts";
export * from "./lib/protocol/errors.ts";
export * from "./lib/protocol/codec.ts";
export * from "./lib/protocol/server_session.ts";
export * from "./lib/protocol/lb_session.ts";
export * from "./lib/lb/verdict.ts";
export * from "./lib/transport/transport.ts";
export * from "./lib/transport/memory.ts";
export * from "./lib/transport/matrixai.ts";
export * from "./lib/transport/native.ts";
export * from "./lib/transport/stacks.ts";
export * from "./lib/security/jwt.ts";
export * from "./lib/security/certs.ts";
export * from "./lib/agent/metrics.ts";
export * from "./lib/agent/agent.ts";
export * from "./lib/lb/watch.ts";
export * from "./lib/lb/monitor.ts";
export * from "./lib/util/log.ts";
export * from "./lib/util/guard.ts";
export * from "./lib/security/files.ts";
export * from "./lib/ops/http_api.ts";
export * from "./lib/ops/status_table.ts";
export * from "./lib/lb/schedule.ts";
export * from "./lib/lb/timers.ts";
export * from "./lib/lb/dial_gate.ts";
export * from "./lib/lb/weights.ts";
export * from "./lib/lb/select.ts";
export * from "./lib/lb/history.ts";
export * from "./lib/ops/prometheus.ts";
export * from "./lib/ops/dashboard.ts";
export * from "./lib/ops/agent_check.ts";
export * from "./lib/lb/discovery.ts";
export * from "./lib/agent/drain.ts";
export * from "./lib/agent/local_checks.ts";
export { VERSION } from "./lib/util/version.ts";
