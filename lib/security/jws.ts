/**
 * JSON Web Signatures in compact form (RFC 7515) for the two algorithms QHCP
 * uses, HS256 and EdDSA (Ed25519, RFC 8037), on the runtime's WebCrypto. It
 * replaced jose so that the agent loads no npm package and with it no Node
 * compatibility layer (docs/PERFORMANCE.md, agent footprint); jose remains
 * the reference the tests hold it against.
 *
 * Verification accepts only the one algorithm it is given and refuses a
 * `crit` header (no extension is understood), so `alg: none` and algorithm
 * confusion cannot pass.
 *
 * @module
 */

/** The signature algorithms QHCP accepts. */
export type JwsAlgorithm = "HS256" | "EdDSA";

/** A key for one algorithm: an HMAC secret or an Ed25519 CryptoKey. */
export type JwsKey = CryptoKey;

/** Why a token was refused, before any claim is read. */
export type JwsFailure = "malformed" | "algorithm" | "signature";

/** A token that is not a valid JWS for the expected algorithm and key. */
export class JwsError extends Error {
  constructor(readonly failure: JwsFailure, message: string) {
    super(message);
    this.name = "JwsError";
  }
}

import { derToPem, pemToDer } from "./names.ts";
import { toBase64 } from "../util/bytes.ts";

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes bytes (or a string's UTF-8) as unpadded base64url. */
export function base64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decodes unpadded base64url; undefined when `text` is not base64url. */
export function fromBase64url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!B64URL.test(text) || text.length % 4 === 1) return undefined;
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  try {
    return Uint8Array.from(
      atob(b64 + "=".repeat((4 - b64.length % 4) % 4)),
      (c) => c.charCodeAt(0),
    );
  } catch {
    return undefined;
  }
}

/** An HMAC-SHA-256 key for HS256 from a shared secret. */
export function importHmacKey(secret: Uint8Array): Promise<JwsKey> {
  return crypto.subtle.importKey(
    "raw",
    new Uint8Array(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/**
 * An Ed25519 key from PEM: PKCS#8 (`PRIVATE KEY`) for signing, SPKI
 * (`PUBLIC KEY`) for verifying.
 *
 * @throws {Error} when the PEM does not hold an Ed25519 key of that kind
 */
export async function importEd25519Pem(pem: string, kind: "private" | "public"): Promise<JwsKey> {
  const label = kind === "private" ? "PRIVATE KEY" : "PUBLIC KEY";
  const block = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`).exec(pem);
  let der: Uint8Array<ArrayBuffer> | undefined;
  try {
    der = block ? pemToDer(block[0]) : undefined;
  } catch {
    der = undefined;
  }
  if (!der) throw new Error(`expected a PEM block "-----BEGIN ${label}-----"`);
  try {
    return await crypto.subtle.importKey(
      kind === "private" ? "pkcs8" : "spki",
      der,
      { name: "Ed25519" },
      true,
      [kind === "private" ? "sign" : "verify"],
    );
  } catch (e) {
    throw new Error(`not an Ed25519 ${kind} key (${(e as Error).message})`);
  }
}

/** A new Ed25519 key pair as PKCS#8 and SPKI PEM texts. */
export async function generateEd25519Pem(): Promise<
  { privateKeyPem: string; publicKeyPem: string }
> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const pem = async (key: CryptoKey, format: "pkcs8" | "spki", label: string) =>
    derToPem(label, new Uint8Array(await crypto.subtle.exportKey(format, key)));
  return {
    privateKeyPem: await pem(pair.privateKey, "pkcs8", "PRIVATE KEY"),
    publicKeyPem: await pem(pair.publicKey, "spki", "PUBLIC KEY"),
  };
}

function _params(alg: JwsAlgorithm): AlgorithmIdentifier {
  return alg === "HS256" ? "HMAC" : "Ed25519";
}

/**
 * Signs `payload` as a compact JWS with header `{alg, typ: "JWT"}`.
 *
 * @example
 * ```ts
 * import { importHmacKey, signJws } from "./jws.ts";
 * const key = await importHmacKey(new TextEncoder().encode("a secret of at least 32 bytes....."));
 * const token = await signJws("HS256", key, { iss: "lb-1" }); // "eyJhbGciOiJIUzI1NiIs…"
 * ```
 */
export async function signJws(
  alg: JwsAlgorithm,
  key: JwsKey,
  payload: Record<string, unknown>,
): Promise<string> {
  const input = `${base64url(JSON.stringify({ alg, typ: "JWT" }))}.${
    base64url(JSON.stringify(payload))
  }`;
  const sig = await crypto.subtle.sign(_params(alg), key, enc.encode(input));
  return `${input}.${base64url(new Uint8Array(sig))}`;
}

/**
 * Verifies a compact JWS made with `alg` and `key` and returns its payload,
 * a JSON object.
 *
 * @throws {JwsError} `malformed` (not three base64url parts of JSON objects),
 * `algorithm` (another `alg`, or a `crit` header), `signature` (wrong key or
 * altered content)
 */
export async function verifyJws(
  token: string,
  alg: JwsAlgorithm,
  key: JwsKey,
): Promise<Record<string, unknown>> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new JwsError("malformed", "expected three parts");
  const [h, p, s] = parts as [string, string, string];
  const header = _json(h, "header");
  if (typeof header.alg !== "string") throw new JwsError("malformed", "header has no alg");
  if (header.alg !== alg) throw new JwsError("algorithm", `alg is not ${alg}`);
  if ("crit" in header) throw new JwsError("algorithm", "crit extensions are not supported");
  const signature = fromBase64url(s);
  if (!signature || signature.length === 0) {
    throw new JwsError("malformed", "signature is not base64url");
  }
  const payload = _json(p, "payload");
  const ok = await crypto.subtle.verify(_params(alg), key, signature, enc.encode(`${h}.${p}`))
    .catch(() => false);
  if (!ok) throw new JwsError("signature", "signature does not verify");
  return payload;
}

function _json(part: string, what: string): Record<string, unknown> {
  const bytes = fromBase64url(part);
  let value: unknown;
  try {
    value = bytes && bytes.length > 0 ? JSON.parse(dec.decode(bytes)) : undefined;
  } catch {
    value = undefined;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JwsError("malformed", `${what} is not a base64url JSON object`);
  }
  return value as Record<string, unknown>;
}
