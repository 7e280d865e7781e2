/**
 * The little of X.509 a server needs about its own certificate, read from
 * DER by hand: validity, subjectAltName entries and the public key, and
 * whether a private key belongs to it (through WebCrypto). It replaced
 * node:crypto's X509Certificate so that the agent loads no Node module
 * (docs/PERFORMANCE.md, agent footprint). It is not a validator of chains:
 * the QUIC stacks do that.
 *
 * @module
 */

import { toHex } from "../util/bytes.ts";

/** A DER element: its tag and the bounds of its contents in the buffer. */
interface Tlv {
  tag: number;
  /** Where the element (its tag byte) begins. */
  at: number;
  start: number;
  end: number;
}

/** A DER structure that does not parse; the message says where. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DerError";
  }
}

/** Reads the element at `at`, which must lie within `limit`. */
function _tlv(der: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw new DerError(`truncated element at byte ${at}`);
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new DerError(`bad length at byte ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new DerError(`element at byte ${at} overruns its parent`);
  return { tag, at, start, end: start + len };
}

/** The children of a constructed element. */
function _children(der: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end;) {
    const t = _tlv(der, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

function _expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t?.tag !== tag) throw new DerError(`expected ${what}`);
  return t;
}

const SEQUENCE = 0x30;
const OID_SAN = "551d11";
/** Key algorithm OIDs (hex of the OID's contents) by WebCrypto name. */
const KEY_ALGORITHMS: Record<string, string> = {
  "2a8648ce3d0201": "ECDSA",
  "2b6570": "Ed25519",
  "2a864886f70d010101": "RSASSA-PKCS1-v1_5",
};
const CURVES: Record<string, string> = {
  "2a8648ce3d030107": "P-256",
  "2b81040022": "P-384",
  "2b81040023": "P-521",
};

function _hex(der: Uint8Array, t: Tlv): string {
  return toHex(der.subarray(t.start, t.end));
}

/** What a certificate says about its subject. */
export interface CertificateFacts {
  notBefore: number;
  notAfter: number;
  /** subjectAltName entries in order: DNS names and IP addresses (RFC 5952 text for IPv6). */
  names: { type: "dns" | "ip"; value: string }[];
  /** The SubjectPublicKeyInfo, DER. */
  spki: Uint8Array<ArrayBuffer>;
  /** The key's WebCrypto algorithm, when it is one WebCrypto can import. */
  keyAlgorithm: EcKeyImportParams | RsaHashedImportParams | Algorithm | undefined;
}

/**
 * Reads a DER certificate.
 *
 * @throws {DerError} when it is not an X.509 certificate
 */
export function readCertificate(der: Uint8Array<ArrayBuffer>): CertificateFacts {
  const cert = _expect(_tlv(der, 0, der.length), SEQUENCE, "a certificate (SEQUENCE)");
  const tbs = _expect(_children(der, cert)[0], SEQUENCE, "tbsCertificate");
  const f = _children(der, tbs);
  const shift = f[0]?.tag === 0xa0 ? 1 : 0; // explicit [0] version
  const validity = _children(der, _expect(f[3 + shift], SEQUENCE, "validity"));
  const spkiTlv = _expect(f[5 + shift], SEQUENCE, "subjectPublicKeyInfo");
  const algorithm = _children(der, _expect(_children(der, spkiTlv)[0], SEQUENCE, "algorithm"));
  const kind = KEY_ALGORITHMS[_hex(der, _expect(algorithm[0], 0x06, "key algorithm OID"))];
  const curve = algorithm[1]?.tag === 0x06 ? CURVES[_hex(der, algorithm[1])] : undefined;
  return {
    notBefore: _time(der, validity[0]),
    notAfter: _time(der, validity[1]),
    names: _san(der, f.slice(6 + shift).find((t) => t.tag === 0xa3)),
    spki: der.slice(spkiTlv.at, spkiTlv.end),
    keyAlgorithm: kind === "ECDSA"
      ? (curve ? { name: kind, namedCurve: curve } : undefined)
      : kind === "RSASSA-PKCS1-v1_5"
      ? { name: kind, hash: "SHA-256" }
      : kind === "Ed25519"
      ? { name: kind }
      : undefined,
  };
}

/**
 * The WebCrypto name of a PKCS#8 private key's algorithm, or undefined when
 * it is none QHCP can use.
 *
 * @throws {DerError} when `der` is not a PrivateKeyInfo
 */
export function pkcs8AlgorithmName(der: Uint8Array): string | undefined {
  const info = _children(der, _expect(_tlv(der, 0, der.length), SEQUENCE, "PrivateKeyInfo"));
  const algorithm = _children(der, _expect(info[1], SEQUENCE, "an algorithm"));
  return KEY_ALGORITHMS[_hex(der, _expect(algorithm[0], 0x06, "an algorithm OID"))];
}

function _time(der: Uint8Array, t: Tlv | undefined): number {
  if (!t || (t.tag !== 0x17 && t.tag !== 0x18)) throw new DerError("expected a time");
  const s = new TextDecoder().decode(der.subarray(t.start, t.end));
  const m = t.tag === 0x17
    ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s)
    : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s);
  if (!m) throw new DerError(`bad time ${JSON.stringify(s)}`);
  let year = Number(m[1]);
  if (t.tag === 0x17) year += year < 50 ? 2000 : 1900;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

function _san(der: Uint8Array, extensions: Tlv | undefined): CertificateFacts["names"] {
  if (!extensions) return [];
  const list = _expect(_children(der, extensions)[0], SEQUENCE, "extensions");
  for (const ext of _children(der, list)) {
    const parts = _children(der, ext);
    if (parts[0]?.tag !== 0x06 || _hex(der, parts[0]) !== OID_SAN) continue;
    const value = _expect(parts[parts.length - 1], 0x04, "an extension value");
    const names = _expect(_tlv(der, value.start, value.end), SEQUENCE, "GeneralNames");
    return _children(der, names).flatMap((n): CertificateFacts["names"] => {
      const bytes = der.subarray(n.start, n.end);
      if (n.tag === 0x82) return [{ type: "dns", value: new TextDecoder().decode(bytes) }];
      if (n.tag === 0x87 && (bytes.length === 4 || bytes.length === 16)) {
        return [{ type: "ip", value: formatIpBytes(bytes) }];
      }
      return [];
    });
  }
  return [];
}

/**
 * IPv4 dotted or IPv6 in RFC 5952 form (lower case, the longest run of two
 * or more zero groups as `::`).
 *
 * @example
 * ```ts
 * import { formatIpBytes } from "./x509.ts";
 * formatIpBytes(new Uint8Array([127, 0, 0, 1])); // "127.0.0.1"
 * formatIpBytes(new Uint8Array([...new Array(15).fill(0), 1])); // "::1"
 * ```
 */
export function formatIpBytes(bytes: Uint8Array): string {
  if (bytes.length === 4) return [...bytes].join(".");
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(":");
  return `${hex.slice(0, best.at).join(":")}::${hex.slice(best.at + best.len).join(":")}`;
}

/**
 * A private key in PEM (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` or
 * PKCS#1 `RSA PRIVATE KEY`) as PKCS#8 DER, with the algorithm the
 * certificate says; the caller imports it.
 */
export function privateKeyPkcs8(
  der: Uint8Array<ArrayBuffer>,
  label: string,
  spki: Uint8Array,
): Uint8Array<ArrayBuffer> {
  if (label === "PRIVATE KEY") return der;
  // Wrap the bare key in a PrivateKeyInfo whose algorithm is the certificate's.
  const spkiTlv = _tlv(spki, 0, spki.length);
  const algorithm = _children(spki, spkiTlv)[0]!;
  const algorithmDer = spki.subarray(algorithm.at, algorithm.end);
  return _sequence([new Uint8Array([0x02, 0x01, 0x00]), algorithmDer, _element(0x04, der)]);
}

function _length(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return [0x80 | bytes.length, ...bytes];
}

function _element(tag: number, content: Uint8Array): Uint8Array<ArrayBuffer> {
  const head = [tag, ..._length(content.length)];
  const out = new Uint8Array(head.length + content.length);
  out.set(head);
  out.set(content, head.length);
  return out;
}

function _sequence(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const content = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    content.set(p, at);
    at += p.length;
  }
  return _element(SEQUENCE, content);
}
