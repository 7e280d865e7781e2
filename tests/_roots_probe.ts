/**
 * Run as its own process by quic_native_test.ts (a process's TLS root store
 * is built once): a native-stack client, with or without `onlyGivenCa`,
 * dials a server whose certificate comes from a CA the process's root store
 * trusts (SSL_CERT_FILE with DENO_TLS_CA_STORE=system stands in for Deno's
 * public roots), giving only our own CA to the dial. Prints "accepted" or
 * "refused".
 *
 * @module
 */

import { generateDevCertificates } from "../lib/security/certs.ts";
import { createNativeTransport } from "../lib/transport/native.ts";

const onlyGivenCa = Deno.args[0] === "only";
const ours = await generateDevCertificates({ hosts: ["127.0.0.1"] });
const other = await generateDevCertificates({ hosts: ["127.0.0.1"], caName: "Stand-in public CA" });
// The "public" root this process trusts unless the transport pins its roots.
const roots = await Deno.makeTempFile({ suffix: ".pem" });
await Deno.writeTextFile(roots, other.caCertPem);
Deno.env.set("SSL_CERT_FILE", roots);
Deno.env.set("SSL_CERT_DIR", `${roots}.none`);
if (!onlyGivenCa) Deno.env.set("DENO_TLS_CA_STORE", "system");
const server = createNativeTransport();
const listener = await server.listen(
  { host: "127.0.0.1", port: 0, certPem: other.serverCertPem, keyPem: other.serverKeyPem },
  () => {},
);
const client = createNativeTransport({ onlyGivenCa });
try {
  const ch = await client.dial({
    host: "127.0.0.1",
    port: listener.port,
    caPem: ours.caCertPem,
    timeoutMs: 3000,
  });
  console.log("accepted");
  await ch.abort(0, "done");
} catch (e) {
  console.log(`refused: ${(e as Error).message}`);
}
await listener.close();
await client.close();
await server.close();
await Deno.remove(roots);
