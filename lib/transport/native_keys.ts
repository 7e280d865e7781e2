/**
 * The native stack's own answer to "does this key belong to this
 * certificate": rustls refuses such a pair when a listener is made. Asked at
 * start on a throwaway loopback endpoint, so that a bad pair is named by its
 * flags before the agent listens, and the agent runs no other certificate
 * code than the stack's (docs/PERFORMANCE.md, agent footprint).
 *
 * @module
 */

import { type KeyCheck, keyMismatch, webCryptoKeyCheck } from "../security/names.ts";
import { ALPN } from "../protocol/wire.ts";

/**
 * A {@linkcode KeyCheck} by the native QUIC stack (needs `--unstable-net`).
 * Where no loopback endpoint can be made (a network namespace without `lo`
 * up), the pair is compared through WebCrypto instead. `makeEndpoint` is
 * for tests.
 *
 * @example
 * ```ts
 * import { checkCertificatePair } from "../security/names.ts";
 * import { nativeKeyCheck } from "./native_keys.ts";
 * declare const certPem: string, keyPem: string;
 * await checkCertificatePair(certPem, keyPem, Date.now(), nativeKeyCheck);
 * ```
 */
export function createNativeKeyCheck(
  makeEndpoint: () => Deno.QuicEndpoint = () =>
    new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 }),
): KeyCheck {
  return (cert, certPem, keyPem) => {
    let endpoint: Deno.QuicEndpoint;
    try {
      endpoint = makeEndpoint();
    } catch {
      return webCryptoKeyCheck(cert, certPem, keyPem);
    }
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
}

/** {@linkcode createNativeKeyCheck} on a loopback endpoint. */
export const nativeKeyCheck: KeyCheck = createNativeKeyCheck();
