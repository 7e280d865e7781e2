#!/usr/bin/env -S deno run -A
/**
 * `./run_quic.sh task issue [--certs-dir DIR] HOST...`: on the host that holds
 * the development CA (`DIR/ca.pem` and `DIR/ca.key`, created here when there
 * is no CA yet), issues a server certificate for another host, naming every
 * HOST (DNS names and IP addresses), and writes it with its key to
 * `DIR/issued/<first HOST>/server.pem` and `server.key`. Copy those two files
 * and `jwt.secret` into the other host's certificates directory: its agent
 * then needs no CA key. Existing files are never overwritten.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { defaultCertsDir, DefaultFilesError, ensureDefaultFiles } from "../lib/security/files.ts";

const usage = `Usage: ./run_quic.sh task issue [--certs-dir DIR] HOST...

Issues a server certificate for HOST (names and addresses) from the CA in DIR
(default: $QHCP_CERTS_DIR or ./certs) and writes DIR/issued/<HOST>/server.pem and
server.key. Copy them, with DIR/jwt.secret, into the other host's certs directory.`;

let parsed: ReturnType<
  typeof parseArgs<{
    options: { "certs-dir": { type: "string" }; help: { type: "boolean"; short: "h" } };
    allowPositionals: true;
  }>
>;
try {
  parsed = parseArgs({
    args: Deno.args,
    options: { "certs-dir": { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
  });
} catch (e) {
  console.error(`issue: ${(e as Error).message.split("\n")[0]}`);
  Deno.exit(2);
}
if (parsed.values.help) {
  console.log(usage);
  Deno.exit(0);
}
const hosts = parsed.positionals;
if (hosts.length === 0 || hosts.some((h) => !/^[A-Za-z0-9.:*-]+$/.test(h))) {
  console.error(
    `issue: expected one or more host names or IP addresses, got ${JSON.stringify(hosts)}`,
  );
  Deno.exit(2);
}
const dir = defaultCertsDir(parsed.values["certs-dir"]);
let files;
try {
  files = await ensureDefaultFiles(dir, { need: ["ca", "jwt"] });
  await Deno.stat(files.caKey);
} catch (e) {
  const why = e instanceof DefaultFilesError
    ? e.message
    : `no CA key in ${dir}: ${(e as Error).message}`;
  console.error(`issue: ${why}`);
  Deno.exit(2);
}
const certs = await generateDevCertificates({
  hosts,
  ca: {
    certPem: await Deno.readTextFile(files.caCert),
    keyPem: await Deno.readTextFile(files.caKey),
  },
});
const out = `${dir}/issued/${hosts[0]!.replaceAll(":", "_")}`;
await Deno.mkdir(out, { recursive: true, mode: 0o700 });
try {
  await Deno.writeTextFile(`${out}/server.key`, certs.serverKeyPem, {
    mode: 0o600,
    createNew: true,
  });
  await Deno.writeTextFile(`${out}/server.pem`, certs.serverCertPem, {
    mode: 0o644,
    createNew: true,
  });
} catch (e) {
  if (e instanceof Deno.errors.AlreadyExists) {
    console.error(`issue: ${out}/server.pem or server.key already exists; not overwriting`);
    Deno.exit(1);
  }
  throw e;
}
console.log(`wrote ${out}/server.pem and ${out}/server.key for ${hosts.join(", ")}`);
console.log(`copy them and ${files.jwtSecret} into the certificates directory on that host`);
