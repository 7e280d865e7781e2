/**
 * The small interface between QHCP and a QUIC stack, the in-memory transport,
 * Deno's native QUIC stack, and stack selection. The @matrixai/quic stack (a
 * native addon) is loaded only when chosen: import `./matrixai.ts` directly,
 * or use `createQuicTransport("matrixai")`.
 *
 * @module
 */

export * from "./transport.ts";
export * from "./memory.ts";
export * from "./native.ts";
export * from "./stacks.ts";
export * from "./read_messages.ts";
