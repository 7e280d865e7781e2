/**
 * JWT authentication of the LB to servers: HS256 with a shared secret, or
 * EdDSA (Ed25519) where the LB signs with a private key and servers hold only
 * the public key. The signatures are `jws.ts`'s; this module holds the
 * claims.
 *
 * Claims: `iss` = the LB id, `aud` contains "qhcp", `exp` and `iat` required,
 * 60 s clock leeway by default. Only the configured algorithm is accepted, so
 * `alg: none` and algorithm confusion are refused.
 *
 * Binding: the LB adds the audience `qhcp:<host>` naming the server it dials.
 * A server that finds such an audience accepts the token only when one of
 * them names the server itself (a name or address in its own certificate),
 * so a token captured on one backend cannot be replayed to another. A token
 * without a binding (a plain QHCP/1 LB) is accepted unless the server
 * requires bound tokens.
 *
 * @module
 */

import { AGENT_DEFAULTS, LB_DEFAULTS } from "../util/defaults.ts";
import { toHex } from "../util/bytes.ts";
import {
  generateEd25519Pem,
  importEd25519Pem,
  importHmacKey,
  JwsError,
  type JwsKey,
  signJws,
  verifyJws,
} from "./jws.ts";
import { hostMatchesNames, type SubjectName } from "./names.ts";
import { TOKEN_AUDIENCE, TOKEN_BINDING_PREFIX } from "../protocol/wire.ts";

/** The two supported signature algorithms. */
export type TokenAlgorithm = "HS256" | "EdDSA";

/** Shortest accepted HS256 secret, in bytes. */
export const MIN_SECRET_BYTES = 32;

/** A bad secret or key file; the message says what to fix. */
export class AuthConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuthConfigError";
  }
}

/** A freshly signed token. */
export interface SignedToken {
  token: string;
  /** Its `exp`, in ms since epoch. */
  expiresAt: number;
}

/** Signs HELLO tokens for one LB. */
export interface TokenSigner {
  readonly alg: TokenAlgorithm;
  /** The LB id put in `iss`; the LB must send the same `lb_id` in HELLO. */
  readonly lbId: string;
  /**
   * Signs a token issued at `now` (ms since epoch); with `server`, the token
   * is bound to that server (the host as dialled) by a second audience.
   */
  sign(now: number, server?: string): Promise<SignedToken>;
}

/** The outcome of checking a HELLO token. */
export type VerifyResult =
  | {
    ok: true;
    /** When the session must end: `exp` plus the leeway (ms since epoch). */
    expiresAt: number;
    /** The servers the token is bound to (see {@linkcode checkTokenBinding}); empty: unbound. */
    boundTo: string[];
  }
  | { ok: false; reason: string };

/** Verifies HELLO tokens on a server. */
export interface TokenVerifier {
  readonly alg: TokenAlgorithm;
  /**
   * Checks `token` as presented by the LB calling itself `lbId`, at `now`.
   * Never throws; the reason names the failed check, never the token.
   */
  verify(token: string, lbId: string, now: number): Promise<VerifyResult>;
}

/** Options of the signers. */
export interface SignerOptions {
  /** The LB id, put in `iss`. */
  lbId: string;
  /** Token lifetime in seconds. Default 600 (10 minutes). */
  ttlSec?: number;
}

/** Options of the verifiers. */
export interface VerifierOptions {
  /** Clock leeway in seconds for `exp`, `nbf` and `iat`. Default 60. */
  leewaySec?: number;
}

/** The audience that binds a token to the server dialled as `host`. */
export function bindingAudience(host: string): string {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return TOKEN_BINDING_PREFIX + bare.toLowerCase();
}

/**
 * Reads an HS256 secret file: raw bytes with trailing newlines trimmed.
 *
 * @throws {AuthConfigError} when the file is missing or shorter than 32 bytes
 */
export async function readSecretFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new AuthConfigError(`Cannot read JWT secret file ${path}: ${(e as Error).message}`);
  }
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) end--;
  const secret = bytes.subarray(0, end);
  if (secret.length < MIN_SECRET_BYTES) {
    throw new AuthConfigError(
      `JWT secret in ${path} is ${secret.length} bytes, expected at least ${MIN_SECRET_BYTES}`,
    );
  }
  return secret;
}

/** Reads a PEM key file. */
export async function readKeyFile(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new AuthConfigError(`Cannot read ${what} ${path}: ${(e as Error).message}`);
  }
}

/** Returns a new random HS256 secret as 64 hex characters (32 random bytes). */
export function generateSecret(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

/** Creates an Ed25519 key pair as PKCS#8 and SPKI PEM texts. */
export async function generateEd25519KeyPair(): Promise<
  { privateKeyPem: string; publicKeyPem: string }
> {
  return await generateEd25519Pem();
}

/**
 * Creates an HS256 signer.
 *
 * @example
 * ```ts
 * import { createHmacSigner, generateSecret } from "./jwt.ts";
 * const signer = createHmacSigner(new TextEncoder().encode(generateSecret()), { lbId: "lb-1" });
 * const { token } = await signer.sign(Date.now());
 * ```
 */
export function createHmacSigner(secret: Uint8Array, options: SignerOptions): TokenSigner {
  _checkSecret(secret);
  return _signer("HS256", importHmacKey(secret), options);
}

/**
 * Creates an EdDSA signer from a PKCS#8 PEM Ed25519 private key.
 *
 * @throws {AuthConfigError} when the key is not an Ed25519 private key
 */
export async function createEd25519Signer(
  privateKeyPem: string,
  options: SignerOptions,
): Promise<TokenSigner> {
  let key: CryptoKey;
  try {
    key = await importEd25519Pem(privateKeyPem, "private");
  } catch (e) {
    throw new AuthConfigError(
      `Cannot use the JWT private key: ${(e as Error).message}; expected an Ed25519 PKCS#8 PEM key`,
    );
  }
  return _signer("EdDSA", Promise.resolve(key), options);
}

/** Creates an HS256 verifier. */
export function createHmacVerifier(
  secret: Uint8Array,
  options: VerifierOptions = {},
): TokenVerifier {
  _checkSecret(secret);
  return _verifier("HS256", importHmacKey(secret), options);
}

/**
 * Creates an EdDSA verifier from an SPKI PEM Ed25519 public key.
 *
 * @throws {AuthConfigError} when the key is not an Ed25519 public key
 */
export async function createEd25519Verifier(
  publicKeyPem: string,
  options: VerifierOptions = {},
): Promise<TokenVerifier> {
  let key: CryptoKey;
  try {
    key = await importEd25519Pem(publicKeyPem, "public");
  } catch (e) {
    throw new AuthConfigError(
      `Cannot use the JWT public key: ${(e as Error).message}; expected an Ed25519 SPKI PEM key`,
    );
  }
  return _verifier("EdDSA", Promise.resolve(key), options);
}

function _checkSecret(secret: Uint8Array): void {
  if (secret.length < MIN_SECRET_BYTES) {
    throw new AuthConfigError(
      `JWT secret is ${secret.length} bytes, expected at least ${MIN_SECRET_BYTES}`,
    );
  }
}

function _signer(
  alg: TokenAlgorithm,
  key: Promise<JwsKey>,
  options: SignerOptions,
): TokenSigner {
  const ttlSec = options.ttlSec ?? LB_DEFAULTS.jwtTtlSec;
  return {
    alg,
    lbId: options.lbId,
    async sign(now: number, server?: string): Promise<SignedToken> {
      const iat = Math.floor(now / 1000);
      const exp = iat + ttlSec;
      const aud = server === undefined
        ? [TOKEN_AUDIENCE]
        : [TOKEN_AUDIENCE, bindingAudience(server)];
      const claims = { iss: options.lbId, aud, iat, exp, jti: crypto.randomUUID() };
      return { token: await signJws(alg, await key, claims), expiresAt: exp * 1000 };
    },
  };
}

function _verifier(
  alg: TokenAlgorithm,
  key: Promise<JwsKey>,
  options: VerifierOptions,
): TokenVerifier {
  const leewaySec = options.leewaySec ?? AGENT_DEFAULTS.jwtLeewaySec;
  return {
    alg,
    async verify(token: string, lbId: string, now: number): Promise<VerifyResult> {
      let payload: Record<string, unknown>;
      try {
        payload = await verifyJws(token, alg, await key);
      } catch (e) {
        return { ok: false, reason: _reason(e, alg) };
      }
      const refused = _checkClaims(payload, lbId, now / 1000, leewaySec);
      if (refused !== undefined) return { ok: false, reason: refused };
      return {
        ok: true,
        expiresAt: ((payload.exp as number) + leewaySec) * 1000,
        boundTo: _boundTo(payload.aud),
      };
    },
  };
}

/**
 * The claim checks, in jose's order and words: required claims are numbers
 * (`exp`, `iat`) or a string (`iss`), the audience includes "qhcp", `nbf`
 * and `iat` are not beyond the leeway ahead, `exp` not beyond it behind.
 * Reasons name the claim, never its value.
 */
function _checkClaims(
  p: Record<string, unknown>,
  lbId: string,
  nowSec: number,
  leewaySec: number,
): string | undefined {
  for (const claim of ["exp", "iat", "iss"] as const) {
    if (!(claim in p)) return `token rejected: missing required "${claim}" claim`;
  }
  if (typeof p.iss !== "string") return `token rejected: "iss" claim must be a string`;
  for (const claim of ["exp", "iat", "nbf"] as const) {
    if (claim in p && (typeof p[claim] !== "number" || !Number.isFinite(p[claim]))) {
      return `token rejected: "${claim}" claim must be a number`;
    }
  }
  const aud = Array.isArray(p.aud) ? p.aud : [p.aud];
  if (!aud.includes(TOKEN_AUDIENCE)) return `token rejected: unexpected "aud" claim value`;
  if (typeof p.nbf === "number" && p.nbf > nowSec + leewaySec) {
    return `token rejected: "nbf" claim timestamp check failed`;
  }
  if ((p.exp as number) <= nowSec - leewaySec) return "token expired";
  if (p.iss !== lbId) {
    return `token issuer ${JSON.stringify(p.iss.slice(0, 64))} is not the LB id ${
      JSON.stringify(lbId)
    }`;
  }
  if ((p.iat as number) > nowSec + leewaySec) {
    return "token issued in the future (iat beyond the clock leeway)";
  }
  return undefined;
}

function _boundTo(aud: unknown): string[] {
  const all = Array.isArray(aud) ? aud : [aud];
  return all.filter((a): a is string => typeof a === "string" && a.startsWith(TOKEN_BINDING_PREFIX))
    .map((a) => a.slice(TOKEN_BINDING_PREFIX.length));
}

/**
 * Whether a server may accept a token bound to `boundTo` (the hosts of its
 * `qhcp:` audiences). A bound token must name the server: one of `self`,
 * the names and addresses in the server's own certificate. An unbound token
 * (from an LB that does not bind) is accepted unless `requireBound`. Returns
 * the reason to refuse, or undefined.
 *
 * @example
 * ```ts
 * import { checkTokenBinding } from "./jwt.ts";
 * const self = [{ type: "ip" as const, value: "10.0.0.7" }];
 * checkTokenBinding(["10.0.0.7"], self, false); // undefined: accepted
 * checkTokenBinding(["10.0.0.8"], self, false); // "token is bound to \"10.0.0.8\", …"
 * checkTokenBinding([], self, true); // "token is not bound to a server, …"
 * ```
 */
export function checkTokenBinding(
  boundTo: readonly string[],
  self: readonly SubjectName[],
  requireBound: boolean,
): string | undefined {
  if (boundTo.length === 0) {
    return requireBound
      ? "token is not bound to a server, and this server requires bound tokens"
      : undefined;
  }
  if (boundTo.some((host) => hostMatchesNames(host, self))) return undefined;
  const shown = boundTo.slice(0, 3).map((h) => JSON.stringify(h.slice(0, 64))).join(", ");
  return `token is bound to ${shown}, which this server's certificate does not name`;
}

/** A signature-level refusal as a short reason that never contains the token. */
function _reason(e: unknown, alg: TokenAlgorithm): string {
  if (!(e instanceof JwsError)) return "token rejected";
  if (e.failure === "algorithm") return `token algorithm not allowed, expected ${alg}`;
  if (e.failure === "signature") return "token signature is not valid";
  return "token is malformed";
}
