/**
 * The default files both programs use when none are named: a development CA,
 * a server certificate signed by it, a random JWT secret and the LB's admin
 * token for its mutating HTTP endpoints, in `./certs/`
 * (or `--certs-dir` / `QHCP_CERTS_DIR`). The first program to start creates
 * what is missing; a lock file keeps two programs starting together from
 * creating two different CAs.
 *
 * @module
 */

import { generateSecret } from "./auth.ts";
import { generateDevCertificates } from "./certs.ts";
import type { Logger } from "./log.ts";
import { silentLogger } from "./log.ts";

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
  return "certs";
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

/** Options of {@linkcode ensureDefaultFiles}. */
export interface EnsureOptions {
  /** Names and addresses for a new server certificate. Default: localhost, 127.0.0.1, ::1, the host name and interface addresses. */
  hosts?: readonly string[];
  log?: Logger;
  /** Give up waiting for another program's lock after this long, ms. Default 15000. */
  lockWaitMs?: number;
}

/**
 * Creates whichever default files are missing in `dir` and returns their
 * paths. Private keys and the secret are written with mode 0600, atomically
 * (write to a temporary name, then rename).
 */
export async function ensureDefaultFiles(
  dir: string,
  options: EnsureOptions = {},
): Promise<DefaultFiles> {
  const files = defaultFiles(dir);
  const log = options.log ?? silentLogger;
  if (await _allExist(files)) return files;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const release = await _lock(`${files.dir}/.lock`, options.lockWaitMs ?? 15_000);
  try {
    const created: string[] = [];
    const haveCa = await _exists(files.caCert) && await _exists(files.caKey);
    const haveServer = await _exists(files.serverCert) && await _exists(files.serverKey);
    if (!haveCa || !haveServer) {
      const hosts = options.hosts ?? _localNames();
      const certs = await generateDevCertificates(
        haveCa
          ? {
            hosts,
            ca: {
              certPem: await Deno.readTextFile(files.caCert),
              keyPem: await Deno.readTextFile(files.caKey),
            },
          }
          : { hosts },
      );
      if (!haveCa) {
        await _writeAtomic(files.caKey, certs.caKeyPem, 0o600);
        await _writeAtomic(files.caCert, certs.caCertPem, 0o644);
        created.push(files.caCert, files.caKey);
      }
      await _writeAtomic(files.serverKey, certs.serverKeyPem, 0o600);
      await _writeAtomic(files.serverCert, certs.serverCertPem, 0o644);
      created.push(files.serverCert, files.serverKey);
    }
    if (!await _exists(files.jwtSecret)) {
      await _writeAtomic(files.jwtSecret, generateSecret() + "\n", 0o600);
      created.push(files.jwtSecret);
    }
    if (!await _exists(files.adminToken)) {
      await _writeAtomic(files.adminToken, generateSecret() + "\n", 0o600);
      created.push(files.adminToken);
    }
    if (created.length > 0) {
      log.info("created development certificates and secret", { dir, files: created.length });
    }
  } finally {
    await release();
  }
  return files;
}

async function _allExist(f: DefaultFiles): Promise<boolean> {
  for (const p of [f.caCert, f.caKey, f.serverCert, f.serverKey, f.jwtSecret, f.adminToken]) {
    if (!await _exists(p)) return false;
  }
  return true;
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
