/**
 * What a server's certificate says about it, read with the runtime's own
 * X.509 (node:crypto, its only importer) so that the agent never loads the
 * certificate library of `certs.ts`: the subjectAltName entries, whether a
 * host matches them, and whether a certificate and key belong together.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { parseIp } from "../protocol/address.ts";

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
 * checkCertificatePair(c.serverCertPem, c.serverKeyPem, Date.now()); // { names: [{ type: "dns", value: "localhost" }, …], … }
 * checkCertificatePair(c.serverCertPem, c.caKeyPem, Date.now()); // { file: "both", reason: … }
 * ```
 */
export function checkCertificatePair(
  certPem: string,
  keyPem: string,
  now: number,
): PairInfo | PairProblem {
  const first = splitPem(certPem)[0];
  if (!first) {
    return { file: "cert", reason: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)" };
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(first);
  } catch (e) {
    return {
      file: "cert",
      reason: `the first certificate does not parse: ${(e as Error).message}`,
    };
  }
  if (!/-----BEGIN ((RSA|EC) )?PRIVATE KEY-----/.test(keyPem)) {
    return { file: "key", reason: "holds no PEM private key (-----BEGIN PRIVATE KEY-----)" };
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    return { file: "key", reason: `the private key does not parse: ${(e as Error).message}` };
  }
  if (!cert.checkPrivateKey(key)) {
    return {
      file: "both",
      reason: `the private key does not belong to the certificate for ${
        cert.subjectAltName ?? cert.subject
      }`,
    };
  }
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (now < notBefore || now > notAfter) {
    return {
      file: "cert",
      reason: `the certificate is valid from ${cert.validFrom} to ${cert.validTo}, not now`,
    };
  }
  return { names: _sanEntries(cert.subjectAltName), notAfter };
}

/**
 * The subjectAltName entries of the first certificate in `certPem`; empty
 * when it holds none or does not parse.
 */
export function certificateNames(certPem: string): SubjectName[] {
  const first = splitPem(certPem)[0];
  if (!first) return [];
  try {
    return _sanEntries(new X509Certificate(first).subjectAltName);
  } catch {
    return [];
  }
}

/** node:crypto's subjectAltName text ("DNS:a, IP Address:10.0.0.1") as entries. */
function _sanEntries(san: string | undefined): SubjectName[] {
  return (san ?? "").split(/,\s*/).flatMap((entry): SubjectName[] => {
    const m = /^(DNS|IP Address):(.+)$/.exec(entry.trim());
    return m ? [{ type: m[1] === "DNS" ? "dns" : "ip", value: m[2]! }] : [];
  });
}
