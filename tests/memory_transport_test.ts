import { generateDevCertificates } from "../lib/security/certs.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { transportSuite } from "./_transport_suite.ts";

// The in-memory network checks no certificate, but the agent still reads its
// names from one: the LB binds its tokens to the host it dials.
const certs = await generateDevCertificates({ hosts: ["10.0.0.1"] });

transportSuite("memory", () => {
  const transport = new MemoryTransport();
  return Promise.resolve({
    transport,
    host: "10.0.0.1",
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
    caPem: certs.caCertPem,
    close: () => transport.close(),
  });
  // Every timer, promise and handle a test starts must be gone when it ends.
}, { sanitize: true });
