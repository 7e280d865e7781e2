/**
 * QHCP, the Quick Health Check Protocol over QUIC: the library behind
 * `lb.ts` and `server.ts`. Each folder of `lib/` is also its own entry point
 * (`@qhcp/qhcp/protocol`, `/transport`, ...; see docs/ARCHITECTURE.md).
 *
 * - Wire format: {@linkcode encodeMessage}, {@linkcode decodeMessage},
 *   {@linkcode FrameDecoder} (pure, no I/O).
 * - Protocol state machines: {@linkcode ServerSession}, {@linkcode LbSession}
 *   (pure: time in, actions out) and the verdict {@linkcode HealthTracker}.
 * - Running peers: {@linkcode Agent} (server) and {@linkcode Monitor} (LB)
 *   over any {@linkcode Transport}: {@linkcode createQuicTransport} for real
 *   QUIC (Deno's own stack, or @matrixai/quic, whose native addon is loaded
 *   only when chosen), {@linkcode MemoryTransport} for tests.
 *
 * Importing this module loads no native code.
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

export * from "./lib/util/mod.ts";
export * from "./lib/protocol/mod.ts";
export * from "./lib/security/mod.ts";
export * from "./lib/transport/mod.ts";
export * from "./lib/lb/mod.ts";
export * from "./lib/agent/mod.ts";
export * from "./lib/ops/mod.ts";
export * from "./lib/fleet/mod.ts";
export * from "./lib/cli/mod.ts";
