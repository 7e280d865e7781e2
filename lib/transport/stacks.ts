/**
 * Choosing a QUIC stack (`--quic matrixai|native`). The @matrixai/quic
 * wrapper is loaded only when chosen, so a native-stack process never maps
 * its native addon (about 13 MB of resident memory, and its crash modes).
 *
 * @module
 */

import { createNativeTransport, isNativeQuicError } from "./native.ts";
import type { QuicStack, Transport } from "./transport.ts";

export { QUIC_STACKS, type QuicStack } from "./transport.ts";

/** A transport on one stack, with the guard predicate for that stack's escaped errors. */
export interface QuicStackHandle {
  transport: Transport;
  /** Recognises errors raised inside the stack (see {@linkcode installProcessGuard}). */
  isLibraryError: (reason: unknown) => boolean;
}

/**
 * Creates a transport on `stack`. With `onlyGivenCa`, the native stack
 * trusts only the CA its dials are given (see
 * `NativeTransportOptions.onlyGivenCa`); the matrixai stack always
 * does.
 *
 * @throws {TransportError} for `native` when Deno runs without `--unstable-net`
 *
 * @example
 * ```ts
 * import { createQuicTransport } from "./stacks.ts";
 * const { transport } = await createQuicTransport("native");
 * ```
 */
export async function createQuicTransport(
  stack: QuicStack,
  options: { onlyGivenCa?: boolean } = {},
): Promise<QuicStackHandle> {
  if (stack === "native") {
    return {
      transport: createNativeTransport({ onlyGivenCa: options.onlyGivenCa ?? false }),
      isLibraryError: isNativeQuicError,
    };
  }
  const { createMatrixaiTransport, isTransportLibraryError } = await import("./matrixai.ts");
  return { transport: createMatrixaiTransport(), isLibraryError: isTransportLibraryError };
}
