/** The shared end-to-end suite on real QUIC over loopback, once per QUIC stack. */

import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import { createNativeTransport } from "../lib/transport/native.ts";
import type { Transport } from "../lib/transport/transport.ts";
import { makeCredentials } from "./_helpers.ts";
import { transportSuite } from "./_transport_suite.ts";

const { certs } = await makeCredentials();

const stacks: [string, () => Transport][] = [
  ["matrixai", createMatrixaiTransport],
  ["native", createNativeTransport],
];

for (const [name, make] of stacks) {
  transportSuite(name, () => {
    const transport = make();
    return Promise.resolve({
      transport,
      host: "127.0.0.1",
      certPem: certs.serverCertPem,
      keyPem: certs.serverKeyPem,
      caPem: certs.caCertPem,
      close: () => transport.close(),
    });
  });
}
