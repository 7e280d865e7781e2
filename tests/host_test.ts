/** Tests of the host-side pieces: default files, metrics sampling, logging, the process guard. */

import assert from "node:assert/strict";
import { verifyServerChain } from "../lib/security/certs.ts";
import { pemToDer, splitPem } from "../lib/security/names.ts";
import { defaultCertsDir, ensureDefaultFiles } from "../lib/security/files.ts";
import { installProcessGuard } from "../lib/util/guard.ts";
import { createLogger, formatLogRecord, type LogRecord } from "../lib/util/log.ts";
import { SYSTEM_METRICS, SystemMetrics } from "../lib/agent/metrics.ts";
import { readSecretFile } from "../lib/security/jwt.ts";
import { tempDir } from "./_helpers.ts";

Deno.test("ensureDefaultFiles() creates a CA, a server certificate it signed and a secret, private files 0600", async () => {
  const dir = await tempDir("defaults");
  try {
    const files = await ensureDefaultFiles(`${dir}/certs`, { hosts: ["localhost", "127.0.0.1"] });
    for (const p of [files.caKey, files.serverKey, files.jwtSecret]) {
      assert.equal((await Deno.stat(p)).mode! & 0o777, 0o600, p);
    }
    assert.equal((await Deno.stat(`${dir}/certs`)).mode! & 0o777, 0o700);
    const chain = splitPem(await Deno.readTextFile(files.serverCert)).map(pemToDer);
    const verdict = await verifyServerChain(
      chain,
      [await Deno.readTextFile(files.caCert)],
      "127.0.0.1",
      Date.now(),
    );
    assert.ok(verdict.ok, JSON.stringify(verdict));
    assert.equal((await readSecretFile(files.jwtSecret)).length, 64);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ensureDefaultFiles() called concurrently makes one CA and leaves existing files alone", async () => {
  const dir = await tempDir("defaults-race");
  try {
    const results = await Promise.all([1, 2, 3, 4].map(() => ensureDefaultFiles(dir)));
    const ca = await Deno.readTextFile(results[0]!.caCert);
    const secret = await Deno.readTextFile(results[0]!.jwtSecret);
    const chain = splitPem(await Deno.readTextFile(results[0]!.serverCert)).map(pemToDer);
    assert.ok((await verifyServerChain(chain, [ca], "localhost", Date.now())).ok);
    await ensureDefaultFiles(dir);
    assert.equal(await Deno.readTextFile(results[0]!.caCert), ca);
    assert.equal(await Deno.readTextFile(results[0]!.jwtSecret), secret);
    // A missing server certificate is re-issued by the existing CA.
    await Deno.remove(results[0]!.serverCert);
    await ensureDefaultFiles(dir);
    const again = splitPem(await Deno.readTextFile(results[0]!.serverCert)).map(pemToDer);
    assert.ok((await verifyServerChain(again, [ca], "localhost", Date.now())).ok);
    assert.equal(await Deno.readTextFile(results[0]!.caCert), ca);
    await assert.rejects(Deno.stat(`${dir}/.lock`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("defaultCertsDir() prefers the flag, then QHCP_CERTS_DIR, then ./certs", () => {
  const old = Deno.env.get("QHCP_CERTS_DIR");
  try {
    Deno.env.delete("QHCP_CERTS_DIR");
    assert.equal(defaultCertsDir(), "certs");
    Deno.env.set("QHCP_CERTS_DIR", "/tmp/x");
    assert.equal(defaultCertsDir(), "/tmp/x");
    assert.equal(defaultCertsDir("/etc/qhcp"), "/etc/qhcp");
  } finally {
    if (old === undefined) Deno.env.delete("QHCP_CERTS_DIR");
    else Deno.env.set("QHCP_CERTS_DIR", old);
  }
});

Deno.test("SystemMetrics samples the real host on demand, at most once per interval, every documented metric in range", async () => {
  const m = new SystemMetrics({ intervalMs: 200 });
  const first = m.snapshot();
  assert.deepEqual(Object.keys(first).sort(), Object.keys(SYSTEM_METRICS).sort());
  assert.equal(m.snapshot(), first, "a young sample is reused");
  await new Promise((r) => setTimeout(r, 250));
  const s = m.snapshot();
  assert.notEqual(s, first, "an old one is taken again");
  for (
    const name of [
      "cpu_percent",
      "mem_percent",
      "host_cpu_percent",
      "host_mem_percent",
      "swap_percent",
      "disk_percent",
    ]
  ) {
    assert.ok(s[name]! >= 0 && s[name]! <= 100, `${name}=${s[name]}`);
  }
  assert.ok(s.mem_total_bytes! > 0);
  assert.ok(s.mem_used_bytes! > 0 && s.mem_used_bytes! <= s.mem_total_bytes!);
  assert.ok(s.cpu_count! >= 1);
  assert.ok(s.uptime_s! > 0);
  assert.ok(s.disk_percent! > 0, "disk sampled on the first round");
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) m.sampleNow();
  assert.ok(performance.now() - t0 < 1000, "a sample takes well under 10 ms");
});

Deno.test("createLogger() writes text and JSON lines, filters by level, and never formats undefined fields", () => {
  const lines: string[] = [];
  const log = createLogger({
    level: "info",
    sink: (l) => lines.push(l),
    now: () => Date.UTC(2026, 10, 21),
  });
  log.debug("hidden");
  log.child({ server: "10.0.0.1:4243" }).warn("server DOWN", {
    reason: "timeout: no reply",
    code: undefined,
  });
  assert.deepEqual(lines, [
    '2026-11-21T00:00:00.000Z WARN server DOWN server=10.0.0.1:4243 reason="timeout: no reply"',
  ]);
  const json: string[] = [];
  createLogger({ format: "json", sink: (l) => json.push(l), now: () => 0 }).error("x", { n: 1 });
  assert.deepEqual(JSON.parse(json[0]!), {
    time: "1970-01-01T00:00:00.000Z",
    level: "error",
    msg: "x",
    n: 1,
  });
  const r: LogRecord = { time: 0, level: "info", message: "m", fields: { empty: "" } };
  assert.equal(formatLogRecord(r), '1970-01-01T00:00:00.000Z INFO m empty=""');
});

Deno.test("installProcessGuard() absorbs library errors, counts others, and can keep the process alive", async () => {
  const lines: string[] = [];
  const log = createLogger({ sink: (l) => lines.push(l) });
  const guard = installProcessGuard({
    log,
    isLibraryError: (e) => e instanceof Error && e.message === "from the library",
    swallowAll: true,
  });
  try {
    Promise.reject(new Error("from the library"));
    Promise.reject(new TypeError("ours"));
    setTimeout(() => {
      throw new Error("from the library");
    }, 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(guard.library, 2);
    assert.equal(guard.other, 1);
    assert.ok(
      lines.some((l) => /ERROR unhandled rejection \(bug\) error="TypeError: ours"/.test(l)),
    );
    assert.ok(lines.some((l) => /WARN absorbed uncaught exception from the QUIC library/.test(l)));
  } finally {
    guard.uninstall();
  }
});
