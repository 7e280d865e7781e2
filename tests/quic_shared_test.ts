import { createMatrixaiTransport } from "../lib/quic_matrixai.ts";
import { makeCredentials } from "./_helpers.ts";
import { transportSuite } from "./_transport_suite.ts";

const { certs } = await makeCredentials();

transportSuite("matrixai", () => {
  const transport = createMatrixaiTransport();
  return Promise.resolve({
    transport,
    host: "127.0.0.1",
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
    caPem: certs.caCertPem,
    close: () => transport.close(),
  });
});
