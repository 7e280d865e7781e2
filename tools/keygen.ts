#!/usr/bin/env -S deno run -A
/**
 * `deno task keygen [DIR]`: writes an Ed25519 key pair for EdDSA tokens:
 * DIR/lb-ed25519.key (PKCS#8, mode 0600, for the LB's --jwt-private-key-file)
 * and DIR/lb-ed25519.pub (SPKI, for the servers' --jwt-public-key-file).
 * DIR defaults to the certs directory. Existing files are never overwritten.
 *
 * @module
 */

import { generateEd25519KeyPair } from "../lib/security/jwt.ts";
import { defaultCertsDir } from "../lib/security/files.ts";

const arg = Deno.args[0];
if (arg === "-h" || arg === "--help") {
  console.log(
    "Usage: deno task keygen [DIR]\n\nWrites DIR/lb-ed25519.key (LB: --jwt-private-key-file) and",
  );
  console.log(
    "DIR/lb-ed25519.pub (servers: --jwt-public-key-file). DIR defaults to the certs directory.",
  );
  Deno.exit(0);
}
if (arg?.startsWith("-") || Deno.args.length > 1) {
  console.error(`keygen: expected at most one argument, a directory; got ${Deno.args.join(" ")}`);
  Deno.exit(2);
}
const dir = arg ?? defaultCertsDir();
await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
const { privateKeyPem, publicKeyPem } = await generateEd25519KeyPair();
try {
  await Deno.writeTextFile(`${dir}/lb-ed25519.key`, privateKeyPem, {
    mode: 0o600,
    createNew: true,
  });
  await Deno.writeTextFile(`${dir}/lb-ed25519.pub`, publicKeyPem, { mode: 0o644, createNew: true });
} catch (e) {
  if (e instanceof Deno.errors.AlreadyExists) {
    console.error(`keygen: ${dir}/lb-ed25519.key or .pub already exists; not overwriting`);
    Deno.exit(1);
  }
  throw e;
}
console.log(`wrote ${dir}/lb-ed25519.key (LB: --jwt-private-key-file)`);
console.log(`wrote ${dir}/lb-ed25519.pub (servers: --jwt-public-key-file)`);
