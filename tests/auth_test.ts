/**
 * Unit tests of JWT authentication (`lib/security/jwt.ts`, `jws.ts`). Forged tokens are
 * built by hand with base64url and WebCrypto HMAC; jose is the reference the interop test
 * holds ours against (the lib itself no longer imports it).
 */

import assert from "node:assert/strict";
import {
  AuthConfigError,
  bindingAudience,
  checkTokenBinding,
  createEd25519Signer,
  createEd25519Verifier,
  createHmacSigner,
  createHmacVerifier,
  generateEd25519KeyPair,
  generateSecret,
  MIN_SECRET_BYTES,
  readSecretFile,
  type TokenVerifier,
  type VerifyResult,
} from "../lib/security/jwt.ts";
import type { SubjectName } from "../lib/security/names.ts";

// --- helpers -----------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A fixed clock (whole seconds) so tests do not depend on the time of day. */
const NOW = 1_700_000_000_000;
const T = NOW / 1000;
const LB = "lb-1";

const SECRET_TEXT = "s3cret-for-qhcp-tests-0123456789-abcdef";
const SECRET = enc.encode(SECRET_TEXT);
const OTHER_SECRET = enc.encode("another-secret-for-qhcp-tests-0123456789");

function b64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0));
}

/** Decodes one JSON part (0 header, 1 payload) of a compact JWT. */
function part(token: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(dec.decode(fromB64url(token.split(".")[index]!)));
}

async function hmacSha256(key: Uint8Array<ArrayBuffer>, input: string): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(input)));
}

/** Builds and HMAC-SHA256-signs a JWT by hand. */
async function forgeHs256(
  payload: Record<string, unknown>,
  options: { header?: Record<string, unknown>; key?: Uint8Array<ArrayBuffer> } = {},
): Promise<string> {
  const input = `${b64url(JSON.stringify(options.header ?? { alg: "HS256", typ: "JWT" }))}.${
    b64url(JSON.stringify(payload))
  }`;
  return `${input}.${b64url(await hmacSha256(options.key ?? SECRET, input))}`;
}

/** Claims a valid token carries at NOW. */
function claims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { iss: LB, aud: ["qhcp"], iat: T, exp: T + 600 };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

/** Replaces the payload of `token`, keeping its header and signature. */
function withPayload(token: string, payload: Record<string, unknown>): string {
  const [h, , s] = token.split(".");
  return `${h}.${b64url(JSON.stringify(payload))}.${s}`;
}

/** Asserts a refusal whose reason matches `reason` and leaks neither token nor secret. */
function assertRefused(result: VerifyResult, token: string, reason: RegExp): void {
  assert.equal(result.ok, false, `expected a refusal, got ${JSON.stringify(result)}`);
  if (result.ok) return;
  assert.match(result.reason, reason);
  if (token.length > 0) assert.ok(!result.reason.includes(token), "reason contains the token");
  for (const segment of token.split(".")) {
    if (segment.length >= 8) {
      assert.ok(!result.reason.includes(segment), `reason contains token part ${segment}`);
    }
  }
  for (const secret of [SECRET_TEXT, dec.decode(OTHER_SECRET)]) {
    assert.ok(!result.reason.includes(secret), "reason contains the secret");
  }
}

function assertAccepted(result: VerifyResult, expiresAt?: number): void {
  assert.ok(result.ok, `expected acceptance, got ${JSON.stringify(result)}`);
  if (expiresAt !== undefined && result.ok) assert.equal(result.expiresAt, expiresAt);
}

const hmacVerifier = createHmacVerifier(SECRET);

let edPair: { privateKeyPem: string; publicKeyPem: string } | undefined;
async function edKeys(): Promise<{ privateKeyPem: string; publicKeyPem: string }> {
  edPair ??= await generateEd25519KeyPair();
  return edPair;
}

async function edVerifier(): Promise<TokenVerifier> {
  return await createEd25519Verifier((await edKeys()).publicKeyPem);
}

async function edToken(now = NOW): Promise<string> {
  const signer = await createEd25519Signer((await edKeys()).privateKeyPem, { lbId: LB });
  return (await signer.sign(now)).token;
}

function toPem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

// --- HS256 round trip ----------------------------------------------------------

Deno.test("createHmacSigner() signs an HS256 token that createHmacVerifier() accepts", async () => {
  const signer = createHmacSigner(SECRET, { lbId: LB });
  assert.equal(signer.alg, "HS256");
  const signed = await signer.sign(NOW + 999);
  assert.equal(signed.expiresAt, (T + 600) * 1000);

  assert.deepEqual(part(signed.token, 0), { alg: "HS256", typ: "JWT" });
  const payload = part(signed.token, 1);
  assert.equal(payload.iss, LB);
  assert.deepEqual(payload.aud, ["qhcp"]);
  assert.equal(payload.iat, T);
  assert.equal(payload.exp, T + 600);
  assert.equal(typeof payload.jti, "string");

  assert.equal(hmacVerifier.alg, "HS256");
  assertAccepted(await hmacVerifier.verify(signed.token, LB, NOW), (T + 600 + 60) * 1000);
});

Deno.test("TokenVerifier.verify() returns expiresAt = exp + leeway", async () => {
  const signer = createHmacSigner(SECRET, { lbId: LB, ttlSec: 30 });
  const { token, expiresAt } = await signer.sign(NOW);
  assert.equal(expiresAt, (T + 30) * 1000);
  assertAccepted(await createHmacVerifier(SECRET).verify(token, LB, NOW), (T + 30 + 60) * 1000);
  assertAccepted(
    await createHmacVerifier(SECRET, { leewaySec: 5 }).verify(token, LB, NOW),
    (T + 30 + 5) * 1000,
  );
});

Deno.test("TokenVerifier.verify() accepts a hand-built HS256 token with valid claims", async () => {
  // Guards the forging helpers: every refusal below differs from this in one point.
  const token = await forgeHs256(claims());
  assertAccepted(await hmacVerifier.verify(token, LB, NOW), (T + 660) * 1000);
});

Deno.test("generateSecret() returns 64 hex characters usable as an HS256 secret", async () => {
  const secret = generateSecret();
  assert.match(secret, /^[0-9a-f]{64}$/);
  assert.notEqual(generateSecret(), secret);
  const key = enc.encode(secret);
  const { token } = await createHmacSigner(key, { lbId: LB }).sign(NOW);
  assertAccepted(await createHmacVerifier(key).verify(token, LB, NOW));
});

// --- refusals ------------------------------------------------------------------

Deno.test("TokenVerifier.verify() refuses a token signed with another secret", async () => {
  const { token } = await createHmacSigner(OTHER_SECRET, { lbId: LB }).sign(NOW);
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /signature is not valid/);
  const forged = await forgeHs256(claims(), { key: OTHER_SECRET });
  assertRefused(await hmacVerifier.verify(forged, LB, NOW), forged, /signature is not valid/);
});

Deno.test("TokenVerifier.verify() refuses a tampered payload that keeps the signature", async () => {
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  const original = part(token, 1);

  const newIss = withPayload(token, { ...original, iss: "lb-evil" });
  assertRefused(await hmacVerifier.verify(newIss, "lb-evil", NOW), newIss, /signature/);

  const newExp = withPayload(token, { ...original, exp: T + 100_000 });
  assertRefused(await hmacVerifier.verify(newExp, LB, NOW), newExp, /signature/);

  const edOriginal = await edToken();
  const edTampered = withPayload(edOriginal, { ...part(edOriginal, 1), exp: T + 100_000 });
  assertRefused(await (await edVerifier()).verify(edTampered, LB, NOW), edTampered, /signature/);
});

Deno.test("TokenVerifier.verify() refuses an alg none token", async () => {
  const verifiers = [hmacVerifier, await edVerifier()];
  for (const header of [{ alg: "none" }, { alg: "none", typ: "JWT" }, { alg: "None" }]) {
    const token = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims()))}.`;
    for (const verifier of verifiers) {
      assertRefused(await verifier.verify(token, LB, NOW), token, /algorithm|malformed/);
    }
  }
});

Deno.test("TokenVerifier.verify() refuses an HS256 token given to an EdDSA verifier", async () => {
  const verifier = await edVerifier();
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  assertRefused(
    await verifier.verify(token, LB, NOW),
    token,
    /algorithm not allowed, expected EdDSA/,
  );
  // Key confusion: an HMAC keyed with the public key PEM the server holds.
  const confused = await forgeHs256(claims(), {
    key: enc.encode((await edKeys()).publicKeyPem),
  });
  assertRefused(await verifier.verify(confused, LB, NOW), confused, /algorithm not allowed/);
});

Deno.test("TokenVerifier.verify() refuses an EdDSA token given to an HS256 verifier", async () => {
  const token = await edToken();
  assert.equal(part(token, 0).alg, "EdDSA");
  assertRefused(
    await hmacVerifier.verify(token, LB, NOW),
    token,
    /algorithm not allowed, expected HS256/,
  );
});

Deno.test("TokenVerifier.verify() refuses an HS384 token made with the right secret", async () => {
  const token = await forgeHs256(claims(), { header: { alg: "HS384", typ: "JWT" } });
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /algorithm not allowed/);
});

Deno.test("TokenVerifier.verify() refuses a token expired beyond the 60 s leeway", async () => {
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  const exp = (T + 600) * 1000;
  assertRefused(await hmacVerifier.verify(token, LB, exp + 61_000), token, /token expired/);
  assertRefused(await hmacVerifier.verify(token, LB, exp + 3_600_000), token, /token expired/);
  // expiresAt itself is the first refused instant.
  assertRefused(await hmacVerifier.verify(token, LB, exp + 60_000), token, /token expired/);
  const forged = await forgeHs256(claims({ iat: T - 1000, exp: T - 61 }));
  assertRefused(await hmacVerifier.verify(forged, LB, NOW), forged, /token expired/);
});

Deno.test("TokenVerifier.verify() accepts a token only 30 s past exp", async () => {
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  const exp = (T + 600) * 1000;
  assertAccepted(await hmacVerifier.verify(token, LB, exp + 30_000), exp + 60_000);
  const edVerify = await edVerifier();
  assertAccepted(await edVerify.verify(await edToken(), LB, exp + 30_000), exp + 60_000);
});

Deno.test("TokenVerifier.verify() refuses a token with nbf in the future beyond the leeway", async () => {
  const token = await forgeHs256(claims({ nbf: T + 120 }));
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /nbf/);
  assertAccepted(await hmacVerifier.verify(await forgeHs256(claims({ nbf: T + 30 })), LB, NOW));
});

Deno.test("TokenVerifier.verify() refuses a token with iat far in the future", async () => {
  const token = await forgeHs256(claims({ iat: T + 3600, exp: T + 4200 }));
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /issued in the future/);
  const signed = (await createHmacSigner(SECRET, { lbId: LB }).sign(NOW + 3_600_000)).token;
  assertRefused(await hmacVerifier.verify(signed, LB, NOW), signed, /issued in the future/);
  // Within the leeway a fast clock is tolerated.
  assertAccepted(await hmacVerifier.verify(await forgeHs256(claims({ iat: T + 30 })), LB, NOW));
});

Deno.test("TokenVerifier.verify() refuses a token for another audience", async () => {
  for (const aud of ["other", ["other"], [], "QHCP", ["qhcp/1"]]) {
    const token = await forgeHs256(claims({ aud }));
    assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /aud/);
  }
  const noAud = await forgeHs256(claims({ aud: undefined }));
  assertRefused(await hmacVerifier.verify(noAud, LB, NOW), noAud, /aud/);
  for (const aud of ["qhcp", ["other", "qhcp"]]) {
    assertAccepted(await hmacVerifier.verify(await forgeHs256(claims({ aud })), LB, NOW));
  }
});

Deno.test("TokenVerifier.verify() refuses a token without exp", async () => {
  const token = await forgeHs256(claims({ exp: undefined }));
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /missing required "exp"/);
});

Deno.test("TokenVerifier.verify() refuses a token without iat", async () => {
  const token = await forgeHs256(claims({ iat: undefined }));
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /missing required "iat"/);
});

Deno.test("TokenVerifier.verify() refuses a token without iss", async () => {
  const token = await forgeHs256(claims({ iss: undefined }));
  assertRefused(await hmacVerifier.verify(token, LB, NOW), token, /"iss"/);
});

Deno.test("TokenVerifier.verify() refuses a token whose iss is not the LB id", async () => {
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  assertRefused(
    await hmacVerifier.verify(token, "lb-2", NOW),
    token,
    /token issuer "lb-1" is not the LB id "lb-2"/,
  );
  assertRefused(await hmacVerifier.verify(token, "LB-1", NOW), token, /issuer/);
  assertRefused(await (await edVerifier()).verify(await edToken(), "lb-2", NOW), "", /issuer/);
});

Deno.test("TokenVerifier.verify() refuses malformed tokens without throwing", async () => {
  const verifiers = [hmacVerifier, await edVerifier()];
  for (
    const token of ["", "abc", "a.b", "a.b.c", "...", "eyJhbGciOiJIUzI1NiJ9.e30", "x".repeat(5000)]
  ) {
    for (const verifier of verifiers) {
      assertRefused(await verifier.verify(token, LB, NOW), token, /^token /);
    }
  }
});

Deno.test("TokenVerifier.verify() refusal reasons do not echo claim values", async () => {
  const marker = "MARKER-9f8e7d6c5b4a";
  const badAud = await forgeHs256(claims({ aud: [marker] }));
  const result = await hmacVerifier.verify(badAud, LB, NOW);
  assertRefused(result, badAud, /aud/);
  assert.ok(!result.ok && !result.reason.includes(marker));

  const badKey = await forgeHs256(claims({ iss: marker, jti: marker }), { key: OTHER_SECRET });
  const refused = await hmacVerifier.verify(badKey, marker, NOW);
  assertRefused(refused, badKey, /signature/);
  assert.ok(!refused.ok && !refused.reason.includes(marker));
});

// --- secret files ----------------------------------------------------------------

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qhcp_auth_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readSecretFile() trims a trailing \\n or \\r\\n", async () => {
  await withTempDir(async (dir) => {
    const body = "k".repeat(MIN_SECRET_BYTES);
    for (const ending of ["", "\n", "\r\n", "\n\n", "\r\n\r\n"]) {
      const path = `${dir}/secret`;
      await Deno.writeTextFile(path, body + ending);
      assert.deepEqual(await readSecretFile(path), enc.encode(body), JSON.stringify(ending));
    }
    // Only line endings at the end are trimmed; other bytes are kept as they are.
    const inner = " a\nb " + "k".repeat(MIN_SECRET_BYTES);
    await Deno.writeTextFile(`${dir}/inner`, `${inner}\n`);
    assert.deepEqual(await readSecretFile(`${dir}/inner`), enc.encode(inner));
  });
});

Deno.test("readSecretFile() refuses a secret shorter than 32 bytes", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/short.secret`;
    await Deno.writeTextFile(path, "k".repeat(31) + "\r\n");
    await assert.rejects(() => readSecretFile(path), (e: unknown) => {
      assert.ok(e instanceof AuthConfigError);
      assert.equal(e.name, "AuthConfigError");
      assert.match(e.message, /is 31 bytes, expected at least 32/);
      assert.ok(e.message.includes(path));
      assert.ok(!e.message.includes("k".repeat(31)), "message contains the secret");
      return true;
    });
    await Deno.writeTextFile(path, "\n".repeat(40));
    await assert.rejects(() => readSecretFile(path), /is 0 bytes, expected at least 32/);
  });
});

Deno.test("readSecretFile() reports a missing file as AuthConfigError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/does-not-exist.secret`;
    await assert.rejects(() => readSecretFile(path), (e: unknown) => {
      assert.ok(e instanceof AuthConfigError);
      assert.match(e.message, /Cannot read JWT secret file/);
      assert.ok(e.message.includes(path));
      return true;
    });
  });
});

// --- key configuration -----------------------------------------------------------

Deno.test("createHmacSigner() and createHmacVerifier() refuse secrets shorter than 32 bytes", () => {
  for (const length of [0, 1, 31]) {
    const secret = new Uint8Array(length).fill(0x61);
    const check = (e: unknown) =>
      e instanceof AuthConfigError &&
      new RegExp(`is ${length} bytes, expected at least 32`).test(e.message);
    assert.throws(() => createHmacSigner(secret, { lbId: LB }), check);
    assert.throws(() => createHmacVerifier(secret), check);
  }
  const exact = new Uint8Array(32).fill(0x61);
  assert.equal(createHmacSigner(exact, { lbId: LB }).alg, "HS256");
  assert.equal(createHmacVerifier(exact).alg, "HS256");
});

Deno.test("createEd25519Signer() and createEd25519Verifier() refuse keys that are not Ed25519", async () => {
  const ec = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const ecPrivate = toPem("PRIVATE KEY", await crypto.subtle.exportKey("pkcs8", ec.privateKey));
  const ecPublic = toPem("PUBLIC KEY", await crypto.subtle.exportKey("spki", ec.publicKey));
  const { privateKeyPem, publicKeyPem } = await edKeys();

  for (const pem of [ecPrivate, publicKeyPem, "not a key", ""]) {
    await assert.rejects(
      () => createEd25519Signer(pem, { lbId: LB }),
      (e: unknown) =>
        e instanceof AuthConfigError &&
        /Cannot use the JWT private key: .*expected an Ed25519 PKCS#8 PEM key/.test(e.message),
    );
  }
  for (const pem of [ecPublic, privateKeyPem, "not a key", ""]) {
    await assert.rejects(
      () => createEd25519Verifier(pem),
      (e: unknown) =>
        e instanceof AuthConfigError &&
        /Cannot use the JWT public key: .*expected an Ed25519 SPKI PEM key/.test(e.message),
    );
  }
});

Deno.test("generateEd25519KeyPair() keys sign and verify EdDSA tokens end to end", async () => {
  const { privateKeyPem, publicKeyPem } = await generateEd25519KeyPair();
  assert.match(privateKeyPem, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n?$/);
  assert.match(publicKeyPem, /^-----BEGIN PUBLIC KEY-----\n[\s\S]+-----END PUBLIC KEY-----\n?$/);

  const signer = await createEd25519Signer(privateKeyPem, { lbId: LB, ttlSec: 120 });
  assert.equal(signer.alg, "EdDSA");
  const { token, expiresAt } = await signer.sign(NOW);
  assert.equal(expiresAt, (T + 120) * 1000);
  assert.equal(part(token, 0).alg, "EdDSA");

  const verifier = await createEd25519Verifier(publicKeyPem);
  assert.equal(verifier.alg, "EdDSA");
  assertAccepted(await verifier.verify(token, LB, NOW), (T + 120 + 60) * 1000);

  // Another key pair's public key does not verify it.
  const other = await createEd25519Verifier((await generateEd25519KeyPair()).publicKeyPem);
  assertRefused(await other.verify(token, LB, NOW), token, /signature is not valid/);
});

// --- binding a token to the server it is for ------------------------------------

Deno.test("TokenSigner.sign() with a server adds the qhcp:<host> audience, which verify() reports", async () => {
  const signer = createHmacSigner(SECRET, { lbId: LB });
  const bound = await signer.sign(NOW, "Web1.Example.com");
  assert.deepEqual(part(bound.token, 1).aud, ["qhcp", "qhcp:web1.example.com"]);
  const v6 = await signer.sign(NOW, "[::1]");
  assert.deepEqual(part(v6.token, 1).aud, ["qhcp", "qhcp:::1"]);
  const r = await hmacVerifier.verify(bound.token, LB, NOW);
  assert.ok(r.ok);
  assert.deepEqual(r.ok && r.boundTo, ["web1.example.com"]);
  const plain = await hmacVerifier.verify((await signer.sign(NOW)).token, LB, NOW);
  assert.deepEqual(plain.ok && plain.boundTo, []);
  assert.equal(bindingAudience("10.0.0.7"), "qhcp:10.0.0.7");
});

Deno.test("checkTokenBinding() accepts a token bound to one of the server's own names and refuses a replay elsewhere", () => {
  const self: SubjectName[] = [
    { type: "dns", value: "web1.example.com" },
    { type: "dns", value: "*.pool.example.com" },
    { type: "ip", value: "10.0.0.7" },
    { type: "ip", value: "fd00::7" },
  ];
  assert.equal(checkTokenBinding(["10.0.0.7"], self, false), undefined);
  assert.equal(checkTokenBinding(["WEB1.example.com"], self, false), undefined);
  assert.equal(checkTokenBinding(["a.pool.example.com"], self, false), undefined);
  assert.equal(checkTokenBinding(["fd00:0:0:0::7"], self, false), undefined);
  assert.equal(checkTokenBinding(["10.0.0.8", "10.0.0.7"], self, false), undefined);
  // Bound to another server: a replay.
  assert.match(
    checkTokenBinding(["10.0.0.8"], self, false)!,
    /token is bound to "10\.0\.0\.8", which this server's certificate does not name/,
  );
  assert.match(checkTokenBinding(["b.a.pool.example.com"], self, false)!, /bound to/);
  // An IP address never matches a DNS entry that spells it.
  assert.match(
    checkTokenBinding(["10.0.0.9"], [{ type: "dns", value: "10.0.0.9" }], false)!,
    /bound/,
  );
  // Unbound (a plain QHCP/1 LB): accepted unless the server requires a binding.
  assert.equal(checkTokenBinding([], self, false), undefined);
  assert.match(checkTokenBinding([], self, true)!, /not bound to a server/);
  // A server that cannot name itself accepts no bound token.
  assert.match(checkTokenBinding(["10.0.0.7"], [], false)!, /bound to/);
});

// --- interoperability with jose, the reference implementation -----------------

Deno.test("TokenSigner and TokenVerifier interoperate with jose both ways (HS256 and EdDSA)", async () => {
  const jose = await import("jose");
  // Ours signed, jose verifies.
  const { token: hs } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW, "10.0.0.7");
  const hsClaims = await jose.jwtVerify(hs, SECRET, {
    algorithms: ["HS256"],
    audience: "qhcp",
    currentDate: new Date(NOW),
  });
  assert.equal(hsClaims.payload.iss, LB);
  assert.deepEqual(hsClaims.payload.aud, ["qhcp", bindingAudience("10.0.0.7")]);
  const keys = await edKeys();
  const edSigned = await edToken();
  const edClaims = await jose.jwtVerify(
    edSigned,
    await jose.importSPKI(keys.publicKeyPem, "EdDSA"),
    {
      algorithms: ["EdDSA"],
      currentDate: new Date(NOW),
    },
  );
  assert.equal(edClaims.payload.iss, LB);
  // jose signed, ours verifies; and our keys are what jose reads.
  for (
    const [alg, signKey, verifier] of [
      ["HS256", SECRET, hmacVerifier],
      ["EdDSA", await jose.importPKCS8(keys.privateKeyPem, "EdDSA"), await edVerifier()],
    ] as const
  ) {
    const token = await new jose.SignJWT({})
      .setProtectedHeader({ alg })
      .setIssuer(LB)
      .setAudience("qhcp")
      .setIssuedAt(T)
      .setExpirationTime(T + 60)
      .sign(signKey);
    assertAccepted(await verifier.verify(token, LB, NOW), (T + 120) * 1000);
  }
});

Deno.test("TokenVerifier.verify() returns a refusal for random and mutated tokens, never throws", async () => {
  const verifiers = [hmacVerifier, await edVerifier()];
  const { token } = await createHmacSigner(SECRET, { lbId: LB }).sign(NOW);
  const alphabet = 'ABCxyz019-_.=+/ \u00e9{}"';
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 400; i++) {
    const chars = [...token];
    for (let k = 0; k <= rand(4); k++) chars[rand(chars.length)] = alphabet[rand(alphabet.length)]!;
    const mutated = i % 2 === 0 ? chars.join("") : chars.slice(0, rand(chars.length)).join("");
    for (const verifier of verifiers) {
      const result = await verifier.verify(mutated, LB, NOW);
      // Only the last character's spare bits may change and still verify.
      if (result.ok) assert.equal(mutated.slice(0, -1), token.slice(0, -1), mutated);
    }
  }
});
