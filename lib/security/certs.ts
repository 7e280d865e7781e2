/**
 * X.509 certificates: a development CA and server certificate made with
 * WebCrypto, and verification of a server's chain against a CA bundle and
 * the name it was dialed by (DNS name or IP address).
 *
 * @module
 */

// Full npm specifiers: the agent, which creates missing development files,
// runs without the project's deno.json (agentDenoFlags in util/defaults.ts).
// deno-lint-ignore no-import-prefix
import "npm:reflect-metadata@0.2.2"; // @peculiar/x509 needs the Reflect polyfill loaded first
// deno-lint-ignore no-import-prefix
import * as x509 from "npm:@peculiar/x509@2.2.0";
import { parseIp } from "../protocol/address.ts";
import { derToPem, hostMatchesNames, pemToDer, splitPem, type SubjectName } from "./names.ts";
import { toHex } from "../util/bytes.ts";

const _ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const _DAY_MS = 86_400_000;
/** Lifetime of a development CA, days (10 years). */
const _CA_DAYS = 3650;

/** PEM texts of a development CA and a server certificate it signed. */
export interface DevCertificates {
  caCertPem: string;
  caKeyPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

/** Options of {@linkcode generateDevCertificates}. */
export interface GenerateCertificatesOptions {
  /** DNS names and IP addresses the server certificate names. Default: localhost, 127.0.0.1, ::1. */
  hosts?: readonly string[];
  /** Validity start (ms since epoch). Default: now minus one hour. */
  notBefore?: number;
  /** Server certificate lifetime in days. Default 825. */
  serverDays?: number;
  /** Common name of the CA. Default "QHCP development CA". */
  caName?: string;
  /** Sign with this existing CA (PEM certificate and PKCS#8 ECDSA P-256 key) instead of a new one. */
  ca?: { certPem: string; keyPem: string };
}

/**
 * Creates a CA (ECDSA P-256) and a server certificate signed by it for the
 * given host names and addresses.
 *
 * @example
 * ```ts
 * import { generateDevCertificates } from "./certs.ts";
 * const certs = await generateDevCertificates({ hosts: ["localhost", "127.0.0.1"] });
 * certs.serverCertPem.startsWith("-----BEGIN CERTIFICATE-----"); // true
 * ```
 */
export async function generateDevCertificates(
  options: GenerateCertificatesOptions = {},
): Promise<DevCertificates> {
  const hosts = options.hosts ?? ["localhost", "127.0.0.1", "::1"];
  const notBefore = new Date(options.notBefore ?? Date.now() - 3_600_000);
  const { ca, caKey } = options.ca
    ? {
      ca: new x509.X509Certificate(options.ca.certPem),
      caKey: await crypto.subtle.importKey("pkcs8", pemToDer(options.ca.keyPem), _ALG, true, [
        "sign",
      ]),
    }
    : await _newCa(options, notBefore);
  const leafKeys = await crypto.subtle.generateKey(_ALG, true, ["sign", "verify"]);
  const names = hosts.map((h) =>
    parseIp(h) ? { type: "ip" as const, value: h } : { type: "dns" as const, value: h }
  );
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: _serial(),
    subject: `CN=${hosts[0] ?? "localhost"}`,
    issuer: ca.subject,
    notBefore,
    notAfter: new Date(notBefore.getTime() + (options.serverDays ?? 825) * _DAY_MS),
    signingKey: caKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: _ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });
  return {
    caCertPem: options.ca?.certPem ?? ca.toString("pem") + "\n",
    caKeyPem: options.ca?.keyPem ??
      _pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", caKey)),
    serverCertPem: leaf.toString("pem") + "\n",
    serverKeyPem: _pem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", leafKeys.privateKey)),
  };
}

async function _newCa(
  options: GenerateCertificatesOptions,
  notBefore: Date,
): Promise<{ ca: x509.X509Certificate; caKey: CryptoKey }> {
  const caKeys = await crypto.subtle.generateKey(_ALG, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: _serial(),
    name: `CN=${options.caName ?? "QHCP development CA"}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + _CA_DAYS * _DAY_MS),
    keys: caKeys,
    signingAlgorithm: _ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  return { ca, caKey: caKeys.privateKey };
}

/** The outcome of {@linkcode verifyServerChain}. */
export type ChainVerdict =
  | { ok: true; subject: string }
  | { ok: false; problem: "unknown_ca" | "bad_name" | "expired" | "malformed"; reason: string };

/**
 * Verifies a server's certificate chain: every link's signature and validity
 * period, a trust anchor from `caPems` at the end, and a subjectAltName that
 * matches `host` (an IP address against IP entries, a DNS name against DNS
 * entries with single-label wildcards).
 *
 * @param chain DER certificates, leaf first, as the server sent them
 * @param caPems PEM texts, each holding one or more trusted CA certificates
 * @param host the name or address the server was dialed by
 * @param now the time to check validity at (ms since epoch)
 */
export async function verifyServerChain(
  chain: readonly Uint8Array[],
  caPems: readonly string[],
  host: string,
  now: number,
): Promise<ChainVerdict> {
  let certs: x509.X509Certificate[];
  let anchors: x509.X509Certificate[];
  try {
    certs = chain.map((der) => new x509.X509Certificate(der as Uint8Array<ArrayBuffer>));
    anchors = caPems.flatMap((p) => splitPem(p)).map((p) => new x509.X509Certificate(p));
  } catch (e) {
    return {
      ok: false,
      problem: "malformed",
      reason: `cannot parse certificate: ${(e as Error).message}`,
    };
  }
  const leaf = certs[0];
  if (!leaf) return { ok: false, problem: "malformed", reason: "the server sent no certificate" };
  if (anchors.length === 0) {
    return { ok: false, problem: "unknown_ca", reason: "no CA certificate to verify against" };
  }
  const date = new Date(now);
  if (!_nameMatches(leaf, host)) {
    return {
      ok: false,
      problem: "bad_name",
      reason: `certificate for ${_sanList(leaf)} does not name ${host}`,
    };
  }
  let current = leaf;
  const pool = certs.slice(1);
  for (let depth = 0; depth < 8; depth++) {
    if (date < current.notBefore || date > current.notAfter) {
      return {
        ok: false,
        problem: "expired",
        reason:
          `certificate "${current.subject}" has expired or is not yet valid: valid ${current.notBefore.toISOString()} to ${current.notAfter.toISOString()}`,
      };
    }
    if (anchors.some((a) => _sameCert(a, current))) return { ok: true, subject: leaf.subject };
    for (const anchor of anchors) {
      if (anchor.subject !== current.issuer || !_isCa(anchor)) continue;
      if (date < anchor.notBefore || date > anchor.notAfter) continue;
      if (await _signedBy(current, anchor)) return { ok: true, subject: leaf.subject };
    }
    let next: x509.X509Certificate | undefined;
    for (const candidate of pool) {
      if (candidate.subject !== current.issuer || !_isCa(candidate)) continue;
      if (await _signedBy(current, candidate)) {
        next = candidate;
        break;
      }
    }
    if (!next) break;
    current = next;
  }
  return {
    ok: false,
    problem: "unknown_ca",
    reason: `certificate "${leaf.subject}" (issuer "${leaf.issuer}") does not lead to a trusted CA`,
  };
}

async function _signedBy(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer, signatureOnly: true });
  } catch {
    return false;
  }
}

function _isCa(cert: x509.X509Certificate): boolean {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  return bc?.ca === true;
}

function _sameCert(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  const x = new Uint8Array(a.rawData);
  const y = new Uint8Array(b.rawData);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function _names(cert: x509.X509Certificate): SubjectName[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return san
    ? san.names.items.flatMap((n) =>
      n.type === "dns" || n.type === "ip" ? [{ type: n.type, value: n.value }] : []
    )
    : [];
}

function _sanList(cert: x509.X509Certificate): string {
  const names = _names(cert).map((n) => n.value);
  return names.length ? names.join(", ") : `"${cert.subject}" (no subjectAltName)`;
}

function _nameMatches(cert: x509.X509Certificate, host: string): boolean {
  return hostMatchesNames(host, _names(cert));
}

function _serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f; // positive
  return toHex(bytes);
}

function _pem(label: string, der: ArrayBuffer): string {
  return derToPem(label, new Uint8Array(der));
}
