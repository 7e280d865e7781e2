/**
 * The one credential loader of both programs: it creates the default files
 * a program uses when they are missing, reads the files its flags name,
 * checks certificate and key pairs, and builds the token signer or verifier.
 * Every problem is a {@linkcode CliError} naming the flag (exit 2).
 *
 * @module
 */

import {
  AuthConfigError,
  createEd25519Signer,
  createEd25519Verifier,
  createHmacSigner,
  createHmacVerifier,
  readKeyFile,
  readSecretFile,
  type TokenSigner,
  type TokenVerifier,
} from "../security/jwt.ts";
import { checkCertificatePair, type KeyCheck } from "../security/names.ts";
import { nativeKeyCheck } from "../transport/native_keys.ts";
import {
  defaultCertsDir,
  type DefaultFiles,
  type DefaultNeed,
  ensureDefaultFiles,
} from "../security/files.ts";
import type { Logger } from "../util/log.ts";
import { CliError } from "./flags.ts";
import type { LbConfig } from "./lb_flags.ts";
import type { ServerConfig } from "./server_flags.ts";

/** Reads the file a flag names; failure is a CliError naming the flag. */
export async function readFlagFile(flag: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new CliError(`--${flag}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/**
 * Reads a certificate chain and its key and checks that they belong
 * together; `flags` name them in errors (`["cert-file", "key-file"]`).
 */
export async function readCertificatePair(
  certPath: string,
  keyPath: string,
  [certFlag, keyFlag]: readonly [string, string],
  keyCheck?: KeyCheck,
): Promise<{ certPem: string; keyPem: string }> {
  const certPem = await readFlagFile(certFlag, certPath);
  const keyPem = await readFlagFile(keyFlag, keyPath);
  // A QUIC or TLS stack takes a bad pair and fails every handshake later: check it now.
  const pair = await checkCertificatePair(certPem, keyPem, Date.now(), keyCheck);
  if ("file" in pair) {
    const where = pair.file === "cert"
      ? `--${certFlag}: ${certPath}`
      : pair.file === "key"
      ? `--${keyFlag}: ${keyPath}`
      : certFlag === keyFlag
      ? `--${certFlag}: ${certPath} and ${keyPath}`
      : `--${certFlag} and --${keyFlag}: ${certPath} and ${keyPath}`;
    throw new CliError(`${where}: ${pair.reason}`);
  }
  return { certPem, keyPem };
}

async function _defaults(
  certsDir: string | undefined,
  need: DefaultNeed[],
  log: Logger,
): Promise<DefaultFiles | undefined> {
  return need.length > 0
    ? await ensureDefaultFiles(defaultCertsDir(certsDir), { need, log })
    : undefined;
}

/** `what` failed because of its flag's file or key: a CliError naming the flag. */
function _asFlag<T>(flag: string, p: Promise<T>): Promise<T> {
  return p.catch((e) => {
    if (e instanceof AuthConfigError || e instanceof Error) {
      throw new CliError(`--${flag}: ${e.message}`);
    }
    throw e;
  });
}

/** What the LB signs tokens with, verifies servers against, and guards its API with. */
export interface LbCredentials {
  /** CA bundle servers must chain to; undefined with `--insecure`. */
  caPem: string | undefined;
  signer: TokenSigner;
  adminToken: string;
  /** The HTTP endpoint's certificate and key, with TLS on. */
  httpTls: { cert: string; key: string } | undefined;
}

/** Loads the LB's credentials. */
export async function loadLbCredentials(config: LbConfig, log: Logger): Promise<LbCredentials> {
  // Only what this LB reads is required, or created when missing.
  const files = await _defaults(config.certsDir, [
    ...(config.caFile || config.insecure ? [] : ["ca" as const]),
    ...(config.jwtSecretFile || config.jwtPrivateKeyFile ? [] : ["jwt" as const]),
    ...(config.adminTokenFile ? [] : ["admin" as const]),
    ...(config.httpTls && !config.httpTls.certFile ? ["server" as const] : []),
  ], log);
  let caPem: string | undefined;
  if (!config.insecure) {
    const path = config.caFile ?? files!.caCert;
    caPem = await readFlagFile("cert-file", path);
    if (!caPem.includes("-----BEGIN CERTIFICATE-----")) {
      throw new CliError(`--cert-file: ${path} holds no PEM certificate`);
    }
  }
  const signerOptions = { lbId: config.lbId, ttlSec: config.jwtTtlSec };
  const signer = config.jwtPrivateKeyFile
    ? await _asFlag(
      "jwt-private-key-file",
      readKeyFile(config.jwtPrivateKeyFile, "JWT private key").then((pem) =>
        createEd25519Signer(pem, signerOptions)
      ),
    )
    : await _asFlag(
      "jwt-secret-file",
      readSecretFile(config.jwtSecretFile ?? files!.jwtSecret).then((secret) =>
        createHmacSigner(secret, signerOptions)
      ),
    );
  const tokenPath = config.adminTokenFile ?? files!.adminToken;
  const adminToken = (await readFlagFile("admin-token-file", tokenPath)).trim();
  if (adminToken.length < 16 || /\s/.test(adminToken)) {
    throw new CliError(
      `--admin-token-file: the token in ${tokenPath} must be at least 16 characters without spaces`,
    );
  }
  let httpTls: { cert: string; key: string } | undefined;
  if (config.httpTls) {
    const flags = config.httpTls.certFile
      ? ["http-cert-file", "http-key-file"] as const
      : ["http-tls", "http-tls"] as const;
    const pair = await readCertificatePair(
      config.httpTls.certFile ?? files!.serverCert,
      config.httpTls.keyFile ?? files!.serverKey,
      flags,
    );
    httpTls = { cert: pair.certPem, key: pair.keyPem };
  }
  return { caPem, signer, adminToken, httpTls };
}

/** What the agent presents and verifies tokens with. */
export interface AgentCredentials {
  certPem: string;
  keyPem: string;
  verifier: TokenVerifier;
}

/** Loads the agent's credentials. */
export async function loadAgentCredentials(
  config: ServerConfig,
  log: Logger,
): Promise<AgentCredentials> {
  // Only what this agent reads is required, or created when missing.
  const files = await _defaults(config.certsDir, [
    ...(config.certFile ? [] : ["server" as const]),
    ...(config.jwtSecretFile || config.jwtPublicKeyFile ? [] : ["jwt" as const]),
  ], log);
  const { certPem, keyPem } = await readCertificatePair(
    config.certFile ?? files!.serverCert,
    config.keyFile ?? files!.serverKey,
    ["cert-file", "key-file"],
    // The native stack checks the pair itself, with code the agent runs anyway.
    config.quic === "native" ? nativeKeyCheck : undefined,
  );
  const verifierOptions = { leewaySec: config.jwtLeewaySec };
  const verifier = config.jwtPublicKeyFile
    ? await _asFlag(
      "jwt-public-key-file",
      readKeyFile(config.jwtPublicKeyFile, "JWT public key").then((pem) =>
        createEd25519Verifier(pem, verifierOptions)
      ),
    )
    : await _asFlag(
      "jwt-secret-file",
      readSecretFile(config.jwtSecretFile ?? files!.jwtSecret).then((secret) =>
        createHmacVerifier(secret, verifierOptions)
      ),
    );
  return { certPem, keyPem, verifier };
}
