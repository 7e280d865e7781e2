/**
 * Interop: the shared end-to-end suite with the LB on one QUIC stack and the
 * server agent on the other, both ways (quiche via @matrixai/quic, quinn via
 * Deno's built-in QUIC).
 */

import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import { createNativeTransport } from "../lib/transport/native.ts";
import type { Transport } from "../lib/transport/transport.ts";
import { makeCredentials } from "./_helpers.ts";
import { transportSuite } from "./_transport_suite.ts";

const { certs } = await makeCredentials();

const pairs: [string, () => Transport, () => Transport][] = [
  ["LB matrixai, server native", createMatrixaiTransport, createNativeTransport],
  ["LB native, server matrixai", createNativeTransport, createMatrixaiTransport],
];

for (const [name, makeLb, makeServer] of pairs) {
  transportSuite(name, () => {
    const transport = makeLb();
    const serverTransport = makeServer();
    return Promise.resolve({
      transport,
      serverTransport,
      host: "127.0.0.1",
      certPem: certs.serverCertPem,
      keyPem: certs.serverKeyPem,
      caPem: certs.caCertPem,
      close: async () => {
        await transport.close();
        await serverTransport.close();
      },
    });
  });
}
