/**
 * Our DER reading of certificates (`lib/security/x509.ts`) against
 * certificates and keys made by openssl (tests/fixtures/x509: RSA 2048,
 * EC P-384 and Ed25519, keys in PKCS#8 and in the traditional PKCS#1 and
 * SEC1 forms, validity ending in 2126 so a GeneralizedTime is read).
 */

import assert from "node:assert/strict";
import { checkCertificatePair, pemToDer } from "../lib/security/names.ts";
import { DerError, formatIpBytes, readCertificate } from "../lib/security/x509.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";

const dir = new URL("./fixtures/x509/", import.meta.url);
const text = (name: string) => Deno.readTextFileSync(new URL(name, dir));
const NOW = Date.UTC(2027, 0, 1);

Deno.test("readCertificate() reads the names, validity and key algorithm openssl wrote", () => {
  for (const alg of ["rsa", "ec", "ed25519"]) {
    const facts = readCertificate(pemToDer(text(`${alg}.pem`)));
    assert.deepEqual(facts.names, [
      { type: "dns", value: `${alg}.example` },
      { type: "dns", value: `*.${alg}.example` },
      { type: "ip", value: "10.1.2.3" },
      { type: "ip", value: "2001:db8::1:0:0:1" },
    ]);
    assert.equal(new Date(facts.notAfter).getUTCFullYear(), 2126, "GeneralizedTime");
    assert.equal(new Date(facts.notBefore).getUTCFullYear(), 2026, "UTCTime");
    assert.ok(facts.keyAlgorithm, alg);
  }
});

Deno.test("checkCertificatePair() accepts each algorithm's pair in PKCS#8 and traditional PEM", async () => {
  const pairs = [
    ["rsa.pem", "rsa.key"],
    ["rsa.pem", "rsa.pkcs1.key"],
    ["ec.pem", "ec.key"],
    ["ec.pem", "ec.sec1.key"],
    ["ed25519.pem", "ed25519.key"],
  ];
  for (const [cert, key] of pairs) {
    const r = await checkCertificatePair(text(cert!), text(key!), NOW);
    assert.ok(!("file" in r), `${cert} + ${key}: ${JSON.stringify(r)}`);
  }
});

Deno.test("checkCertificatePair() refuses a key of another algorithm as not belonging", async () => {
  for (
    const [cert, key] of [["rsa.pem", "ec.key"], ["ec.pem", "ed25519.key"], [
      "ed25519.pem",
      "rsa.key",
    ]]
  ) {
    const r = await checkCertificatePair(text(cert!), text(key!), NOW);
    assert.ok("file" in r);
    assert.equal(r.file, "both", `${cert} + ${key}: ${r.reason}`);
    assert.match(r.reason, /does not belong to the certificate for DNS:/);
  }
});

Deno.test("formatIpBytes() writes IPv4 dotted and IPv6 in RFC 5952 form", () => {
  const v6 = (...groups: number[]) => new Uint8Array(groups.flatMap((g) => [g >> 8, g & 0xff]));
  assert.equal(formatIpBytes(new Uint8Array([10, 0, 0, 1])), "10.0.0.1");
  assert.equal(formatIpBytes(v6(0, 0, 0, 0, 0, 0, 0, 1)), "::1");
  assert.equal(formatIpBytes(v6(0, 0, 0, 0, 0, 0, 0, 0)), "::");
  assert.equal(formatIpBytes(v6(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1)), "2001:db8::1:0:0:1");
  assert.equal(formatIpBytes(v6(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1)), "2001:db8:0:1:1:1:1:1");
  assert.equal(formatIpBytes(v6(0xfe80, 0, 0, 0, 0xabcd, 0, 0, 0)), "fe80::abcd:0:0:0");
});

Deno.test("readCertificate() reads or throws DerError on truncated and mutated certificates, never anything else", () => {
  let seed = 11;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (const alg of ["rsa", "ec", "ed25519"]) {
    const der = pemToDer(text(`${alg}.pem`));
    for (let i = 0; i < 600; i++) {
      const bytes = i % 3 === 0 ? der.slice(0, rand(der.length)) : der.slice();
      if (i % 3 !== 0) { for (let k = 0; k <= rand(6); k++) bytes[rand(bytes.length)] = rand(256); }
      try {
        readCertificate(bytes);
      } catch (e) {
        assert.ok(e instanceof DerError, `${alg} #${i}: ${e}`);
      }
    }
  }
});

Deno.test("nativeKeyCheck() agrees with webCryptoKeyCheck() on matching and mismatched pairs", async () => {
  const { nativeKeyCheck } = await import("../lib/transport/native_keys.ts");
  const { webCryptoKeyCheck } = await import("../lib/security/names.ts");
  const c = await generateDevCertificates();
  const cases: [string, string, boolean][] = [
    [text("rsa.pem"), text("rsa.key"), true],
    [text("ec.pem"), text("ec.key"), true],
    [text("ed25519.pem"), text("ed25519.key"), true],
    [c.serverCertPem, c.serverKeyPem, true],
    [text("ec.pem"), text("rsa.key"), false],
    [text("rsa.pem"), text("ed25519.key"), false],
    [c.serverCertPem, c.caKeyPem, false],
  ];
  for (const [certPem, keyPem, matches] of cases) {
    const facts = readCertificate(pemToDer(certPem));
    for (const check of [nativeKeyCheck, webCryptoKeyCheck]) {
      const problem = await check(facts, certPem, keyPem);
      assert.equal(problem === undefined, matches, JSON.stringify(problem));
      if (problem) assert.equal(problem.file, "both");
    }
  }
  const garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  const problem = await nativeKeyCheck(
    readCertificate(pemToDer(c.serverCertPem)),
    c.serverCertPem,
    garbage,
  );
  assert.equal(problem?.file, "key");
});

Deno.test("createNativeKeyCheck() compares through WebCrypto where no loopback endpoint can be made", async () => {
  const { createNativeKeyCheck } = await import("../lib/transport/native_keys.ts");
  const check = createNativeKeyCheck(() => {
    throw new Deno.errors.AddrNotAvailable("no loopback here");
  });
  const facts = readCertificate(pemToDer(text("ec.pem")));
  assert.equal(await check(facts, text("ec.pem"), text("ec.key")), undefined);
  assert.equal((await check(facts, text("ec.pem"), text("rsa.key")))?.file, "both");
});
