/**
 * The native stack's own answer to "does this key belong to this
 * certificate": rustls refuses such a pair when a listener is made. Asked at
 * start on a throwaway loopback endpoint, so that a bad pair is named by its
 * flags before the agent listens, and the agent runs no other certificate
 * code than the stack's (docs/PERFORMANCE.md, agent footprint).
 *
 * @module
 */

import { type KeyCheck, keyMismatch } from "../security/names.ts";
import { ALPN } from "../protocol/wire.ts";

/**
 * A {@linkcode KeyCheck} by the native QUIC stack (needs `--unstable-net`).
 *
 * @example
 * ```ts ignore
 * import { checkCertificatePair } from "../security/names.ts";
 * import { nativeKeyCheck } from "./native_keys.ts";
 * await checkCertificatePair(certPem, keyPem, Date.now(), nativeKeyCheck);
 * ```
 */
export const nativeKeyCheck: KeyCheck = (cert, certPem, keyPem) => {
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  try {
    endpoint.listen({ alpnProtocols: [ALPN], cert: certPem, key: keyPem }).stop();
    return Promise.resolve(undefined);
  } catch (e) {
    const message = (e as Error).message;
    return Promise.resolve(
      /KeyMismatch|keys may not be consistent/.test(message)
        ? keyMismatch(cert)
        : { file: "key", reason: `the private key does not parse: ${message}` },
    );
  } finally {
    endpoint.close();
  }
};
