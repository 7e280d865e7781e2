/**
 * Unit tests of development certificates and chain verification
 * (`lib/security/certs.ts`), and of what a certificate names
 * (`lib/security/names.ts`).
 */

import assert from "node:assert/strict";
import {
  type ChainVerdict,
  type DevCertificates,
  generateDevCertificates,
  verifyServerChain,
} from "../lib/security/certs.ts";
import {
  certificateNames,
  checkCertificatePair,
  hostMatchesNames,
  pemToDer,
} from "../lib/security/names.ts";
import { parseIp } from "../lib/protocol/address.ts";

// --- helpers -----------------------------------------------------------------

const DAY_MS = 86_400_000;

/** Certificates are made once per module and shared: generation is the slow part. */
const cache = new Map<string, Promise<DevCertificates>>();
function certs(
  name: string,
  options: Parameters<typeof generateDevCertificates>[0] = {},
): Promise<DevCertificates> {
  let p = cache.get(name);
  if (!p) {
    p = generateDevCertificates(options);
    cache.set(name, p);
  }
  return p;
}

const defaults = () => certs("default");
const otherCa = () => certs("other");

function leafOf(c: DevCertificates): Uint8Array[] {
  return [pemToDer(c.serverCertPem)];
}

function assertOk(verdict: ChainVerdict, subject?: string): void {
  assert.ok(verdict.ok, `expected ok, got ${JSON.stringify(verdict)}`);
  if (subject !== undefined && verdict.ok) assert.equal(verdict.subject, subject);
}

function assertProblem(
  verdict: ChainVerdict,
  problem: "unknown_ca" | "bad_name" | "expired" | "malformed",
  reason?: RegExp,
): void {
  assert.equal(verdict.ok, false, `expected ${problem}, got ${JSON.stringify(verdict)}`);
  if (verdict.ok) return;
  assert.equal(verdict.problem, problem, verdict.reason);
  if (reason) assert.match(verdict.reason, reason);
}

/** Expected bytes of an IPv6 address from its 8 groups. */
function v6(...groups: number[]): Uint8Array {
  assert.equal(groups.length, 8);
  return Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]));
}

// --- generateDevCertificates + verifyServerChain -------------------------------

Deno.test("generateDevCertificates() returns PEM texts for a CA and a server", async () => {
  const c = await defaults();
  assert.match(c.caCertPem, /^-----BEGIN CERTIFICATE-----\n/);
  assert.match(c.serverCertPem, /^-----BEGIN CERTIFICATE-----\n/);
  assert.match(c.caKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.match(c.serverKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.notEqual(c.caCertPem, c.serverCertPem);
  assert.notEqual(c.caKeyPem, c.serverKeyPem);
});

Deno.test("verifyServerChain() accepts the default certificate for localhost, 127.0.0.1 and ::1", async () => {
  const c = await defaults();
  for (const host of ["localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"]) {
    assertOk(await verifyServerChain(leafOf(c), [c.caCertPem], host, Date.now()), "CN=localhost");
  }
});

Deno.test("verifyServerChain() accepts a chain that carries the CA after the leaf", async () => {
  const c = await defaults();
  const chain = [pemToDer(c.serverCertPem), pemToDer(c.caCertPem)];
  assertOk(await verifyServerChain(chain, [c.caCertPem], "localhost", Date.now()));
});

Deno.test("verifyServerChain() matches DNS names case-insensitively and without a trailing dot", async () => {
  const c = await defaults();
  for (const host of ["LOCALHOST", "LocalHost", "localhost."]) {
    assertOk(await verifyServerChain(leafOf(c), [c.caCertPem], host, Date.now()));
  }
});

Deno.test("verifyServerChain() reports bad_name for a host the certificate does not name", async () => {
  const c = await defaults();
  for (const host of ["10.1.2.3", "example.com", "127.0.0.2", "::2", "localhost.example"]) {
    assertProblem(
      await verifyServerChain(leafOf(c), [c.caCertPem], host, Date.now()),
      "bad_name",
      new RegExp(`does not name ${host.replace(/\./g, "\\.")}$`),
    );
  }
});

Deno.test("verifyServerChain() does not match an IP address against DNS names", async () => {
  const c = await certs("dns-only", { hosts: ["localhost"] });
  assertOk(await verifyServerChain(leafOf(c), [c.caCertPem], "localhost", Date.now()));
  assertProblem(
    await verifyServerChain(leafOf(c), [c.caCertPem], "127.0.0.1", Date.now()),
    "bad_name",
  );
});

Deno.test("verifyServerChain() reports unknown_ca against another generated CA", async () => {
  const c = await defaults();
  const other = await otherCa();
  // Both CAs have the same name; only the signature tells them apart.
  assertProblem(
    await verifyServerChain(leafOf(c), [other.caCertPem], "localhost", Date.now()),
    "unknown_ca",
    /does not lead to a trusted CA/,
  );
  // The CA sent in the chain is not trusted by itself being there.
  const chain = [pemToDer(c.serverCertPem), pemToDer(c.caCertPem)];
  assertProblem(
    await verifyServerChain(chain, [other.caCertPem], "localhost", Date.now()),
    "unknown_ca",
  );
  assertProblem(
    await verifyServerChain(leafOf(c), [], "localhost", Date.now()),
    "unknown_ca",
    /no CA certificate/,
  );
});

Deno.test("verifyServerChain() finds the right CA in a bundle of several", async () => {
  const c = await defaults();
  const other = await otherCa();
  assertOk(
    await verifyServerChain(leafOf(c), [other.caCertPem + c.caCertPem], "localhost", Date.now()),
  );
  assertOk(
    await verifyServerChain(leafOf(c), [other.caCertPem, c.caCertPem], "localhost", Date.now()),
  );
});

Deno.test("verifyServerChain() reports expired after notAfter and before notBefore", async () => {
  const notBefore = Date.UTC(2030, 0, 1);
  const c = await certs("dated", { notBefore, serverDays: 10 });
  const notAfter = notBefore + 10 * DAY_MS;
  const verify = (now: number) => verifyServerChain(leafOf(c), [c.caCertPem], "localhost", now);
  assertOk(await verify(notBefore + 1000));
  assertOk(await verify(notAfter - 1000));
  assertProblem(
    await verify(notAfter + 1000),
    "expired",
    /2030-01-01T00:00:00\.000Z to 2030-01-11/,
  );
  assertProblem(await verify(notAfter + 365 * DAY_MS), "expired");
  assertProblem(await verify(notBefore - 1000), "expired");
  assertProblem(await verify(Date.UTC(2029, 0, 1)), "expired");
});

Deno.test("generateDevCertificates() with the ca option signs with that CA", async () => {
  const c = await defaults();
  const signed = await certs("signed-by-default", {
    ca: { certPem: c.caCertPem, keyPem: c.caKeyPem },
    hosts: ["srv.internal", "192.0.2.7"],
  });
  assert.equal(signed.caCertPem, c.caCertPem);
  assert.equal(signed.caKeyPem, c.caKeyPem);
  assert.notEqual(signed.serverCertPem, c.serverCertPem);
  for (const host of ["srv.internal", "192.0.2.7"]) {
    assertOk(
      await verifyServerChain(leafOf(signed), [c.caCertPem], host, Date.now()),
      "CN=srv.internal",
    );
  }
  assertProblem(
    await verifyServerChain(
      leafOf(signed),
      [(await otherCa()).caCertPem],
      "srv.internal",
      Date.now(),
    ),
    "unknown_ca",
  );
  assertProblem(
    await verifyServerChain(leafOf(signed), [c.caCertPem], "localhost", Date.now()),
    "bad_name",
  );
});

Deno.test("verifyServerChain() matches a wildcard DNS name on one label only", async () => {
  const c = await certs("wildcard", { hosts: ["*.example.com"] });
  const verify = (host: string) => verifyServerChain(leafOf(c), [c.caCertPem], host, Date.now());
  assertOk(await verify("a.example.com"), "CN=*.example.com");
  assertOk(await verify("WWW.Example.COM"));
  for (const host of ["a.b.example.com", "example.com", ".example.com", "a.example.org"]) {
    assertProblem(await verify(host), "bad_name");
  }
});

Deno.test("verifyServerChain() reports malformed for an empty or garbage chain", async () => {
  const c = await defaults();
  const now = Date.now();
  assertProblem(
    await verifyServerChain([], [c.caCertPem], "localhost", now),
    "malformed",
    /no certificate/,
  );
  for (
    const garbage of [
      new Uint8Array([1, 2, 3]),
      new Uint8Array(0),
      new Uint8Array(64).fill(0x30),
      pemToDer(c.serverCertPem).subarray(0, 100),
    ]
  ) {
    assertProblem(
      await verifyServerChain([garbage], [c.caCertPem], "localhost", now),
      "malformed",
      /cannot parse certificate/,
    );
  }
  const badPem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assertProblem(await verifyServerChain(leafOf(c), [badPem], "localhost", now), "malformed");
});

// --- parseIp -------------------------------------------------------------------

Deno.test("parseIp() parses IPv4 addresses", () => {
  assert.deepEqual(parseIp("1.2.3.4"), Uint8Array.of(1, 2, 3, 4));
  assert.deepEqual(parseIp("0.0.0.0"), Uint8Array.of(0, 0, 0, 0));
  assert.deepEqual(parseIp("255.255.255.255"), Uint8Array.of(255, 255, 255, 255));
  assert.deepEqual(parseIp("127.0.0.1"), Uint8Array.of(127, 0, 0, 1));
});

Deno.test("parseIp() parses IPv6 forms", () => {
  const cases: [string, Uint8Array][] = [
    ["::", v6(0, 0, 0, 0, 0, 0, 0, 0)],
    ["::1", v6(0, 0, 0, 0, 0, 0, 0, 1)],
    ["2001:db8::1", v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)],
    ["2001:DB8::1", v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)],
    ["::ffff:1.2.3.4", v6(0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304)],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)],
    ["0:0:0:0:0:0:0:1", v6(0, 0, 0, 0, 0, 0, 0, 1)],
    ["fe80::", v6(0xfe80, 0, 0, 0, 0, 0, 0, 0)],
    ["1:2:3:4:5:6:7::", v6(1, 2, 3, 4, 5, 6, 7, 0)],
    ["::2:3:4:5:6:7:8", v6(0, 2, 3, 4, 5, 6, 7, 8)],
    ["1:2:3:4:5:6:1.2.3.4", v6(1, 2, 3, 4, 5, 6, 0x0102, 0x0304)],
    ["[::1]", v6(0, 0, 0, 0, 0, 0, 0, 1)],
  ];
  for (const [text, bytes] of cases) {
    assert.deepEqual(parseIp(text), bytes, text);
  }
});

Deno.test("parseIp() rejects invalid addresses", () => {
  for (
    const text of [
      "1.2.3.256",
      "1.2.3",
      "1.2.3.4.5",
      "1.2.3.-4",
      " 1.2.3.4",
      "1::2::3",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "::1:2:3:4:5:6:7:8",
      "12345::",
      "g::1",
      ":1",
      "1:",
      ":::",
      "1::2:",
      "::ffff:1.2.3.256",
      "::1.2.3.4:5",
      "fe80::1%eth0",
      "abc",
      "localhost",
      "",
    ]
  ) {
    assert.equal(parseIp(text), undefined, JSON.stringify(text));
  }
});

Deno.test({
  name: "parseIp() rejects a dotted IPv4 part that is not at the end",
  fn() {
    for (const text of ["1.2.3.4::", "1.2.3.4::5", "1:1.2.3.4::"]) {
      assert.equal(parseIp(text), undefined, text);
    }
  },
});

Deno.test({
  name: "parseIp() rejects unbalanced brackets",
  fn() {
    for (const text of ["[::1", "::1]", "[1.2.3.4", "1.2.3.4]"]) {
      assert.equal(parseIp(text), undefined, text);
    }
  },
});

// --- checkCertificatePair, certificateNames ------------------------------------

Deno.test("checkCertificatePair() accepts a matching pair and returns the certificate's names", async () => {
  const c = await defaults();
  const info = await checkCertificatePair(c.serverCertPem, c.serverKeyPem, Date.now());
  assert.ok(!("file" in info), JSON.stringify(info));
  assert.deepEqual(info.names, [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ]);
  assert.deepEqual(certificateNames(c.serverCertPem), info.names);
  assert.deepEqual(certificateNames("not a certificate"), []);
});

Deno.test("checkCertificatePair() names the file at fault: not PEM, garbage, a key of another certificate, expired", async () => {
  const c = await defaults();
  const now = Date.now();
  const problem = async (cert: string, key: string, at = now) => {
    const r = await checkCertificatePair(cert, key, at);
    assert.ok("file" in r, "expected a problem");
    return r;
  };
  assert.deepEqual((await problem("hello", c.serverKeyPem)).file, "cert");
  assert.match((await problem("hello", c.serverKeyPem)).reason, /no PEM certificate/);
  const garbageCert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assert.equal((await problem(garbageCert, c.serverKeyPem)).file, "cert");
  assert.equal((await problem(c.serverCertPem, "hello")).file, "key");
  assert.equal(
    (await problem(c.serverCertPem, c.serverCertPem)).file,
    "key",
    "a certificate is no key",
  );
  const garbageKey = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  assert.match((await problem(c.serverCertPem, garbageKey)).reason, /does not parse/);
  const mismatch = await problem(c.serverCertPem, c.caKeyPem);
  assert.equal(mismatch.file, "both");
  assert.match(mismatch.reason, /does not belong to the certificate/);
  const expired = await problem(c.serverCertPem, c.serverKeyPem, now + 3000 * DAY_MS);
  assert.equal(expired.file, "cert");
  assert.match(expired.reason, /valid from .* to .*, not now/);
});

Deno.test("hostMatchesNames() matches IPs by value and DNS names case-insensitively with one-label wildcards", () => {
  const names = [
    { type: "dns" as const, value: "*.example.com" },
    { type: "ip" as const, value: "0:0:0:0:0:0:0:1" },
  ];
  assert.ok(hostMatchesNames("A.Example.COM.", names));
  assert.ok(!hostMatchesNames("a.b.example.com", names));
  assert.ok(hostMatchesNames("::1", names));
  assert.ok(hostMatchesNames("[::1]", names));
  assert.ok(!hostMatchesNames("127.0.0.1", names));
});
