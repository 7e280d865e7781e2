/**
 * Run as its own process by quic_native_test.ts (a process's TLS root store
 * is built once): a native-stack client, with or without `onlyGivenCa`,
 * dials a server whose certificate comes from a CA the process's root store
 * trusts (SSL_CERT_FILE with DENO_TLS_CA_STORE=system stands in for Deno's
 * public roots), giving only our own CA to the dial. Prints "accepted" or
 * "refused".
 *
 * The root store is read when Deno starts building it, which may be before
 * any line of this script runs (seen under load): so the certificates are
 * made first, and the dial runs in a second process started with that
 * environment already in place.
 *
 * @module
 */

import { generateDevCertificates } from "../lib/security/certs.ts";
import { createNativeTransport } from "../lib/transport/native.ts";

const [mode, dir] = Deno.args;
const onlyGivenCa = mode === "only";

if (dir === undefined) {
  const work = await Deno.makeTempDir({ prefix: "qhcp-roots-" });
  try {
    const ours = await generateDevCertificates({ hosts: ["127.0.0.1"] });
    const other = await generateDevCertificates({
      hosts: ["127.0.0.1"],
      caName: "Stand-in public CA",
    });
    await Deno.writeTextFile(`${work}/ours-ca.pem`, ours.caCertPem);
    // The "public" root the dialling process trusts unless the transport pins its roots.
    await Deno.writeTextFile(`${work}/roots.pem`, other.caCertPem);
    await Deno.writeTextFile(`${work}/server.pem`, other.serverCertPem);
    await Deno.writeTextFile(`${work}/server.key`, other.serverKeyPem);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL(import.meta.url).pathname, mode ?? "default", work],
      env: {
        SSL_CERT_FILE: `${work}/roots.pem`,
        SSL_CERT_DIR: `${work}/none`,
        ...(onlyGivenCa ? {} : { DENO_TLS_CA_STORE: "system" }),
      },
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!out.success) console.log(`refused: the dialling process exited with ${out.code}`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
} else {
  const server = createNativeTransport();
  const listener = await server.listen(
    {
      host: "127.0.0.1",
      port: 0,
      certPem: await Deno.readTextFile(`${dir}/server.pem`),
      keyPem: await Deno.readTextFile(`${dir}/server.key`),
    },
    () => {},
  );
  const client = createNativeTransport({ onlyGivenCa });
  try {
    const ch = await client.dial({
      host: "127.0.0.1",
      port: listener.port,
      caPem: await Deno.readTextFile(`${dir}/ours-ca.pem`),
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
}
