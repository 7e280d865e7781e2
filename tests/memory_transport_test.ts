import { MemoryTransport } from "../lib/memory_transport.ts";
import { transportSuite } from "./_transport_suite.ts";

transportSuite("memory", () => {
  const transport = new MemoryTransport();
  return Promise.resolve({
    transport,
    host: "10.0.0.1",
    certPem: "",
    keyPem: "",
    caPem: "unused",
    close: () => transport.close(),
  });
});
