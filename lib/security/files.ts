/**
 * The default files both programs use when none are named: a development CA,
 * a server certificate signed by it, a random JWT secret and the LB's admin
 * token for its mutating HTTP endpoints, in `./certs/`
 * (or `--certs-dir` / `QHCP_CERTS_DIR`). Each program creates what it uses
 * and is missing; a lock file keeps two programs starting together from
 * creating two different CAs; an existing CA is never replaced.
 *
 * @module
 */

import { COMMON_DEFAULTS } from "../util/defaults.ts";
import { generateSecret } from "./jwt.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { GenerateCertificatesOptions } from "./certs.ts";

/** Environment variable that moves the default directory. */
export const CERTS_DIR_ENV = "QHCP_CERTS_DIR";

/** Paths of the default files. */
export interface DefaultFiles {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  jwtSecret: string;
  /** Bearer token for the LB's mutating HTTP endpoints. */
  adminToken: string;
}

/** Returns the default directory: the flag, else $QHCP_CERTS_DIR, else ./certs. */
export function defaultCertsDir(flag?: string): string {
  if (flag) return flag;
  try {
    const env = Deno.env.get(CERTS_DIR_ENV);
    if (env) return env;
  } catch { /* no env permission: use the built-in default */ }
  return COMMON_DEFAULTS.certsDir;
}

/** Paths of the default files inside `dir`. */
export function defaultFiles(dir: string): DefaultFiles {
  const j = (name: string) => `${dir.replace(/\/+$/, "")}/${name}`;
  return {
    dir,
    caCert: j("ca.pem"),
    caKey: j("ca.key"),
    serverCert: j("server.pem"),
    serverKey: j("server.key"),
    jwtSecret: j("jwt.secret"),
    adminToken: j("admin.token"),
  };
}

/** What a program needs from the default directory. */
export type DefaultNeed =
  /** `ca.pem`: the LB verifies servers against it. */
  | "ca"
  /** `server.pem` and `server.key`: the agent's certificate (and the LB's with --http-tls). */
  | "server"
  /** `jwt.secret`. */
  | "jwt"
  /** `admin.token`: the LB's bearer token. */
  | "admin";

/** Options of {@linkcode ensureDefaultFiles}. */
export interface EnsureOptions {
  /** What the program uses. Default: everything. Only these files are required or created. */
  need?: readonly DefaultNeed[];
  /** Names and addresses for a new server certificate. Default: localhost, 127.0.0.1, ::1, the host name and interface addresses. */
  hosts?: readonly string[];
  log?: Logger;
}

/** How long a program waits for another one's lock on the directory. */
const _LOCK_WAIT_MS = 15_000;

/** What is missing and cannot be created here; the message says how to provide it. */
export class DefaultFilesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DefaultFilesError";
  }
}

/**
 * Makes sure the files a program uses exist in `dir`, creating the missing
 * ones, and returns every default path. When everything needed is there,
 * nothing is written and no lock is taken, so a read-only directory (a
 * Kubernetes secret mount) works. An existing CA certificate is never
 * replaced: with `ca.pem` but no `ca.key`, this host cannot issue its own
 * server certificate, and the error says what to copy or run instead.
 * Private keys and secrets are written with mode 0600, atomically (write to
 * a temporary name, then rename), under a lock so that programs starting
 * together agree on one CA.
 */
export async function ensureDefaultFiles(
  dir: string,
  options: EnsureOptions = {},
): Promise<DefaultFiles> {
  const files = defaultFiles(dir);
  const need = new Set<DefaultNeed>(options.need ?? ["ca", "server", "jwt", "admin"]);
  const log = options.log ?? silentLogger;
  if (await _missing(files, need).then((m) => m.length === 0)) return files;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const release = await _lock(`${files.dir}/.lock`, _LOCK_WAIT_MS);
  try {
    const created: string[] = [];
    const haveCaCert = await _exists(files.caCert);
    const haveCaKey = await _exists(files.caKey);
    const needServer = need.has("server") &&
      !(await _exists(files.serverCert) && await _exists(files.serverKey));
    if (haveCaKey && !haveCaCert) {
      throw new DefaultFilesError(
        `${files.caKey} is there but not ${files.caCert}: copy the CA certificate that goes with the key`,
      );
    }
    if (needServer && haveCaCert && !haveCaKey) {
      throw new DefaultFilesError(
        `cannot create ${files.serverCert} for this host: ${files.caCert} is here but not the CA's key ${files.caKey}. ` +
          `On the host that holds the CA key, run ./run_quic.sh task issue HOST-NAME-OR-IP... and copy the ` +
          `server.pem and server.key it writes into ${dir}; or give --cert-file and --key-file`,
      );
    }
    let ca = haveCaCert && haveCaKey
      ? {
        certPem: await Deno.readTextFile(files.caCert),
        keyPem: await Deno.readTextFile(files.caKey),
      }
      : undefined;
    // Loaded only to create files: a running agent never needs the certificate library.
    const generate = async (o: GenerateCertificatesOptions) =>
      (await import("./certs.ts")).generateDevCertificates(o);
    if (!haveCaCert && (need.has("ca") || needServer)) {
      const fresh = await generate({ hosts: ["localhost"] });
      await _writeAtomic(files.caKey, fresh.caKeyPem, 0o600);
      await _writeAtomic(files.caCert, fresh.caCertPem, 0o644);
      created.push(files.caCert, files.caKey);
      ca = { certPem: fresh.caCertPem, keyPem: fresh.caKeyPem };
    }
    if (needServer) {
      const certs = await generate({
        hosts: options.hosts ?? _localNames(),
        ca: ca!,
      });
      await _writeAtomic(files.serverKey, certs.serverKeyPem, 0o600);
      await _writeAtomic(files.serverCert, certs.serverCertPem, 0o644);
      created.push(files.serverCert, files.serverKey);
    }
    if (need.has("jwt") && !await _exists(files.jwtSecret)) {
      await _writeAtomic(files.jwtSecret, generateSecret() + "\n", 0o600);
      created.push(files.jwtSecret);
    }
    if (need.has("admin") && !await _exists(files.adminToken)) {
      await _writeAtomic(files.adminToken, generateSecret() + "\n", 0o600);
      created.push(files.adminToken);
    }
    if (created.length > 0) {
      log.info("created development certificates and secrets", {
        dir,
        files: created.map((f) => f.slice(f.lastIndexOf("/") + 1)).join(","),
      });
    }
  } finally {
    await release();
  }
  return files;
}

/** The needed files that are not there. */
async function _missing(f: DefaultFiles, need: ReadonlySet<DefaultNeed>): Promise<string[]> {
  const paths = [
    ...(need.has("ca") ? [f.caCert] : []),
    ...(need.has("server") ? [f.serverCert, f.serverKey] : []),
    ...(need.has("jwt") ? [f.jwtSecret] : []),
    ...(need.has("admin") ? [f.adminToken] : []),
  ];
  const out: string[] = [];
  for (const p of paths) if (!await _exists(p)) out.push(p);
  return out;
}

async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function _writeAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(tmp, text, { mode, createNew: true });
  await Deno.chmod(tmp, mode); // the umask may have narrowed or widened the create mode
  await Deno.rename(tmp, path);
}

/** Takes an exclusive lock file; a lock older than 60 s is considered abandoned. */
async function _lock(path: string, waitMs: number): Promise<() => Promise<void>> {
  const start = Date.now();
  while (true) {
    try {
      const f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
      f.close();
      return async () => {
        await Deno.remove(path).catch(() => {});
      };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    const st = await Deno.stat(path).catch(() => undefined);
    if (st?.mtime && Date.now() - st.mtime.getTime() > 60_000) {
      await Deno.remove(path).catch(() => {});
      continue;
    }
    if (Date.now() - start > waitMs) {
      throw new Error(
        `Cannot create default files: ${path} is held by another process (remove it if stale)`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function _localNames(): string[] {
  const names = new Set(["localhost", "127.0.0.1", "::1"]);
  try {
    names.add(Deno.hostname());
  } catch { /* no sys permission */ }
  try {
    for (const i of Deno.networkInterfaces()) {
      if (!i.address.startsWith("fe80")) names.add(i.address);
    }
  } catch { /* no sys permission */ }
  return [...names];
}
