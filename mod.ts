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

export * from "./lib/protocol.ts";
export * from "./lib/errors.ts";
export * from "./lib/codec.ts";
export * from "./lib/server_machine.ts";
export * from "./lib/lb_machine.ts";
export * from "./lib/health.ts";
export * from "./lib/transport.ts";
export * from "./lib/memory_transport.ts";
export * from "./lib/quic_matrixai.ts";
export * from "./lib/quic_native.ts";
export * from "./lib/quic_stacks.ts";
export * from "./lib/auth.ts";
export * from "./lib/certs.ts";
export * from "./lib/metrics.ts";
export * from "./lib/agent.ts";
export * from "./lib/watch.ts";
export * from "./lib/monitor.ts";
export * from "./lib/log.ts";
export * from "./lib/guard.ts";
export * from "./lib/defaults.ts";
export * from "./lib/http_api.ts";
export * from "./lib/status_table.ts";
export * from "./lib/schedule.ts";
export * from "./lib/scheduler.ts";
export * from "./lib/dial_gate.ts";
export * from "./lib/weights.ts";
export * from "./lib/select.ts";
export * from "./lib/history.ts";
export * from "./lib/prometheus.ts";
export * from "./lib/dashboard.ts";
export * from "./lib/agent_check.ts";
export * from "./lib/discovery.ts";
export * from "./lib/drain.ts";
export * from "./lib/local_checks.ts";
export { VERSION } from "./lib/version.ts";
