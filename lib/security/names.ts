/**
 * What a server's certificate says about it, read with our own DER reader
 * (`x509.ts`) and WebCrypto, so that the agent loads neither the certificate
 * library of `certs.ts` nor any Node module: the subjectAltName entries,
 * whether a host matches them, and whether a certificate and key belong
 * together.
 *
 * @module
 */

import {
  type CertificateFacts,
  pkcs8AlgorithmName,
  privateKeyPkcs8,
  readCertificate,
} from "./x509.ts";
import { parseIp } from "../protocol/address.ts";
import { toBase64 } from "../util/bytes.ts";
import { isoTime } from "../util/iso_time.ts";

export type { CertificateFacts };

/** A subjectAltName entry: a DNS name (possibly a `*.` wildcard) or an IP address. */
export interface SubjectName {
  type: "dns" | "ip";
  value: string;
}

/**
 * True when a certificate naming `names` is a certificate for `host`: an IP
 * address matches an equal IP entry, a DNS name a DNS entry
 * (case-insensitive; a wildcard covers one label).
 *
 * @example
 * ```ts
 * import { hostMatchesNames } from "./names.ts";
 * hostMatchesNames("web1.example.com", [{ type: "dns", value: "*.example.com" }]); // true
 * hostMatchesNames("::1", [{ type: "ip", value: "0:0:0:0:0:0:0:1" }]); // true
 * ```
 */
export function hostMatchesNames(host: string, names: readonly SubjectName[]): boolean {
  const ip = parseIp(host);
  if (ip) {
    return names.some((n) => {
      if (n.type !== "ip") return false;
      const other = parseIp(n.value);
      return other !== undefined && other.length === ip.length &&
        other.every((v, i) => v === ip[i]);
    });
  }
  const wanted = host.toLowerCase().replace(/\.$/, "");
  return names.some((n) => n.type === "dns" && _dnsMatches(n.value.toLowerCase(), wanted));
}

function _dnsMatches(pattern: string, host: string): boolean {
  if (pattern === host) return true;
  if (!pattern.startsWith("*.")) return false;
  const dot = host.indexOf(".");
  return dot > 0 && host.slice(dot + 1) === pattern.slice(2);
}

/** Splits a PEM bundle into single-certificate PEM texts. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Writes DER as a PEM block with `label` ("CERTIFICATE", "PRIVATE KEY", ...). */
export function derToPem(label: string, der: Uint8Array): string {
  const b64 = toBase64(der).match(/.{1,64}/g)!.join("\n");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** Converts one PEM certificate to DER. */
export function pemToDer(pem: string): Uint8Array<ArrayBuffer> {
  const b64 = pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** What is wrong with a certificate and key pair, by the file at fault. */
export type PairProblem =
  | { file: "cert"; reason: string }
  | { file: "key"; reason: string }
  | { file: "both"; reason: string };

/** What {@linkcode checkCertificatePair} learned of a good pair. */
export interface PairInfo {
  /** The certificate's subjectAltName entries (DNS names and IP addresses). */
  names: SubjectName[];
  /** End of the leaf certificate's validity (ms since epoch). */
  notAfter: number;
}

/**
 * Checks a server's certificate chain and private key before they are handed
 * to a QUIC stack, which would otherwise accept them and fail every
 * handshake later: the chain's first certificate must parse, be valid at
 * `now`, and carry the public key of the private key.
 *
 * @example
 * ```ts
 * import { checkCertificatePair } from "./names.ts";
 * import { generateDevCertificates } from "./certs.ts";
 * const c = await generateDevCertificates();
 * await checkCertificatePair(c.serverCertPem, c.serverKeyPem, Date.now()); // { names: [{ type: "dns", value: "localhost" }, …], … }
 * await checkCertificatePair(c.serverCertPem, c.caKeyPem, Date.now()); // { file: "both", reason: … }
 * ```
 */
export async function checkCertificatePair(
  certPem: string,
  keyPem: string,
  now: number,
  keyCheck: KeyCheck = webCryptoKeyCheck,
): Promise<PairInfo | PairProblem> {
  const first = splitPem(certPem)[0];
  if (!first) {
    return { file: "cert", reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)" };
  }
  let cert: CertificateFacts;
  try {
    cert = readCertificate(pemToDer(first));
  } catch (e) {
    return {
      file: "cert",
      reason: `the first certificate does not parse: ${(e as Error).message}`,
    };
  }
  if (!PRIVATE_KEY_PEM.test(keyPem)) {
    return { file: "key", reason: "holds no PEM private key (-----BEGIN PRIVATE KEY-----)" };
  }
  const problem = await keyCheck(cert, certPem, keyPem);
  if (problem) return problem;
  if (now < cert.notBefore || now > cert.notAfter) {
    return {
      file: "cert",
      reason: `the certificate is valid from ${isoTime(cert.notBefore)} to ${
        isoTime(cert.notAfter)
      }, not now`,
    };
  }
  return { names: cert.names, notAfter: cert.notAfter };
}

const PRIVATE_KEY_PEM = /-----BEGIN ((RSA |EC )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

/**
 * Whether a private key (PEM) belongs to a certificate: undefined when it
 * does, else the problem. {@linkcode webCryptoKeyCheck} by default; the
 * native QUIC stack brings its own (rustls refuses a pair that does not
 * match), which costs the agent no code it does not run anyway.
 */
export type KeyCheck = (
  cert: CertificateFacts,
  certPem: string,
  keyPem: string,
) => Promise<PairProblem | undefined>;

/** The problem of a key that belongs to another certificate than `cert`. */
export function keyMismatch(cert: CertificateFacts): PairProblem {
  return {
    file: "both",
    reason: `the private key does not belong to the certificate for ${_namesText(cert.names)}`,
  };
}

/**
 * Compares the public key of the certificate with the one of the private key
 * through WebCrypto (JWK export of both). Keys: PKCS#8, SEC1 (`EC PRIVATE
 * KEY`) or PKCS#1 (`RSA PRIVATE KEY`); EC P-256/384/521, Ed25519 or RSA.
 */
export const webCryptoKeyCheck: KeyCheck = async (
  cert,
  _certPem,
  keyPem,
): Promise<PairProblem | undefined> => {
  const algorithm = cert.keyAlgorithm;
  if (!algorithm) {
    return {
      file: "cert",
      reason: "its public key is not EC (P-256, P-384, P-521), Ed25519 or RSA",
    };
  }
  const block = PRIVATE_KEY_PEM.exec(keyPem)!;
  let theirs: JsonWebKey;
  try {
    const certKey = await crypto.subtle.importKey("spki", cert.spki, algorithm, true, ["verify"]);
    theirs = await crypto.subtle.exportKey("jwk", certKey);
  } catch (e) {
    return { file: "cert", reason: `its public key does not parse: ${(e as Error).message}` };
  }
  let mine: JsonWebKey;
  try {
    const der = privateKeyPkcs8(pemToDer(block[0]), block[1]!, cert.spki);
    const key = await crypto.subtle.importKey("pkcs8", der, algorithm, true, ["sign"]);
    mine = await crypto.subtle.exportKey("jwk", key);
  } catch (e) {
    const other = _keyAlgorithm(block[1]!, block[0]);
    return other !== undefined && other !== algorithm.name
      ? keyMismatch(cert)
      : { file: "key", reason: `the private key does not parse: ${(e as Error).message}` };
  }
  const same = (["kty", "crv", "x", "y", "n", "e"] as const).every((k) => mine[k] === theirs[k]);
  return same ? undefined : keyMismatch(cert);
};

/**
 * The subjectAltName entries of the first certificate in `certPem`; empty
 * when it holds none or does not parse.
 */
export function certificateNames(certPem: string): SubjectName[] {
  const first = splitPem(certPem)[0];
  if (!first) return [];
  try {
    return readCertificate(pemToDer(first)).names;
  } catch {
    return [];
  }
}

/** Names as `openssl` prints them: "DNS:a, IP Address:10.0.0.1". */
function _namesText(names: readonly SubjectName[]): string {
  if (names.length === 0) return "(no subjectAltName)";
  return names.map((n) => `${n.type === "dns" ? "DNS" : "IP Address"}:${n.value}`).join(", ");
}

/** The WebCrypto name of a private key's algorithm, from its PEM label or its PKCS#8 header. */
function _keyAlgorithm(label: string, block: string): string | undefined {
  if (label === "RSA PRIVATE KEY") return "RSASSA-PKCS1-v1_5";
  if (label === "EC PRIVATE KEY") return "ECDSA";
  try {
    return pkcs8AlgorithmName(pemToDer(block));
  } catch {
    return undefined;
  }
}
