/**
 * Hostile input over real QUIC on loopback: bad tokens, certificates from the
 * wrong CA, fuzzed frames through live sessions, and a flood of connections
 * that never authenticate. Throughout, an LB's checks of the same server
 * must keep succeeding on time.
 */

import assert from "node:assert/strict";
import { Agent } from "../lib/agent/agent.ts";
import {
  createEd25519Signer,
  createEd25519Verifier,
  generateEd25519KeyPair,
} from "../lib/security/jwt.ts";
import { CodecError, decodeMessage, encodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { createLogger } from "../lib/util/log.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { CLOSE_CODES, type Message } from "../lib/protocol/wire.ts";
import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import { type ServerAction, ServerSession } from "../lib/protocol/server_session.ts";
import type { Channel, Transport } from "../lib/transport/transport.ts";
import { FakeMetrics, hmacPair, mulberry32, sleep, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const certs = await generateDevCertificates();
const enc = new TextEncoder();
const secret = enc.encode("hostile-test-secret-0123456789-abcdef");

interface Fixture {
  transport: Transport;
  agent: Agent;
  logs: string[];
  monitor: Monitor;
  rtts: number[];
  failures: number;
  close(): Promise<void>;
}

/** An agent, and an LB checking it every 100 ms whose round trips are recorded. */
async function fixture(
  agentOptions: Partial<Parameters<typeof Agent.start>[0]> = {},
): Promise<Fixture> {
  const transport = createMatrixaiTransport();
  const logs: string[] = [];
  const agent = await Agent.start({
    transport,
    host: "127.0.0.1",
    port: 0,
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
    serverId: "target",
    verifier: hmacPair(secret, "lb-good").verifier,
    metrics: new FakeMetrics(),
    log: createLogger({ level: "debug", sink: (l) => logs.push(l) }),
    ...agentOptions,
  });
  const f: Fixture = {
    transport,
    agent,
    logs,
    rtts: [],
    failures: 0,
    monitor: undefined as unknown as Monitor,
    async close() {
      await f.monitor.stop();
      await agent.shutdown("done", 200);
      await transport.close();
    },
  };
  f.monitor = new Monitor({
    transport,
    signer: hmacPair(secret, "lb-good").signer,
    servers: [{ host: "127.0.0.1", port: agent.port }],
    caPem: certs.caCertPem,
    checkIntervalMs: 100,
    checkTimeoutMs: 1000,
    events: {
      onCheck: (_a, ok, rtt) => {
        if (ok && rtt !== null) f.rtts.push(rtt);
        else f.failures++;
      },
    },
  });
  f.monitor.start();
  await waitFor("UP", () => f.monitor.status()[0]?.state === "UP");
  return f;
}

function frame(value: unknown): Uint8Array {
  const body = enc.encode(typeof value === "string" ? value : JSON.stringify(value));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** Reads messages until the connection ends or `quietMs` pass without one. */
async function replies(ch: Channel, quietMs: number): Promise<Message[]> {
  const out: Message[] = [];
  const frames = new FrameDecoder();
  while (true) {
    const chunk = await Promise.race([ch.read(), sleep(quietMs).then(() => "quiet" as const)]);
    if (chunk === null || chunk === "quiet") return out;
    frames.push(chunk);
    for (let p = frames.next(); p; p = frames.next()) out.push(decodeMessage(p));
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
}

// --- tokens -------------------------------------------------------------------------

const b64url = (data: Uint8Array | string) =>
  btoa(String.fromCharCode(...(typeof data === "string" ? enc.encode(data) : data)))
    .replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");

async function hs256(header: object, payload: object, key = secret): Promise<string> {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const k = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return `${input}.${
    b64url(new Uint8Array(await crypto.subtle.sign("HMAC", k, enc.encode(input))))
  }`;
}

Deno.test({
  ...opts,
  name:
    "Bad tokens over the wire are refused with UNAUTHORIZED and logged without the token or secret",
  async fn() {
    const f = await fixture();
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: "lb-evil", aud: ["qhcp"], iat: now, exp: now + 600 };
    const hs = { alg: "HS256", typ: "JWT" };
    const ed = await generateEd25519KeyPair();
    const edToken =
      (await (await createEd25519Signer(ed.privateKeyPem, { lbId: "lb-evil" })).sign(Date.now()))
        .token;
    const good = await hs256(hs, claims);
    const [h, , s] = good.split(".");
    const cases: Record<string, string> = {
      "bad signature": await hs256(
        hs,
        claims,
        enc.encode("some-other-secret-of-32-bytes-or-more!"),
      ),
      "alg none": `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${
        b64url(JSON.stringify(claims))
      }.`,
      "EdDSA token to an HS256 server": edToken,
      "tampered payload": `${h}.${b64url(JSON.stringify({ ...claims, exp: now + 99_999 }))}.${s}`,
      "expired": await hs256(hs, { ...claims, iat: now - 3600, exp: now - 120 }),
      "not yet valid": await hs256(hs, { ...claims, nbf: now + 600 }),
      "wrong aud": await hs256(hs, { ...claims, aud: ["other"] }),
      "missing exp": await hs256(hs, { iss: "lb-evil", aud: ["qhcp"], iat: now }),
      "not a JWT": "definitely-not-a-jwt",
    };
    try {
      for (const [name, token] of Object.entries(cases)) {
        const ch = await f.transport.dial({
          host: "127.0.0.1",
          port: f.agent.port,
          caPem: certs.caCertPem,
          timeoutMs: 5000,
        });
        await ch.write(frame({ type: "HELLO", seq: 1, version: 1, token, lb_id: "lb-evil" }));
        const got = await replies(ch, 2000);
        assert.equal(got.length, 1, `${name}: ${JSON.stringify(got)}`);
        const e = got[0]!;
        assert.ok(
          e.type === "ERROR" && e.code === "UNAUTHORIZED" && e.re === 1,
          `${name}: ${JSON.stringify(e)}`,
        );
        const info = await ch.closed;
        assert.equal(info.code, CLOSE_CODES.UNAUTHORIZED, name);
        const log = f.logs.join("\n");
        assert.ok(!log.includes(token), `${name}: token in the log`);
      }
      // The EdDSA case the other way: an HS256 token to a server holding an Ed25519 key.
      const edAgent = await Agent.start({
        transport: f.transport,
        host: "127.0.0.1",
        port: 0,
        certPem: certs.serverCertPem,
        keyPem: certs.serverKeyPem,
        serverId: "ed",
        verifier: await createEd25519Verifier(ed.publicKeyPem),
        metrics: new FakeMetrics(),
      });
      const ch = await f.transport.dial({
        host: "127.0.0.1",
        port: edAgent.port,
        caPem: certs.caCertPem,
        timeoutMs: 5000,
      });
      await ch.write(frame({ type: "HELLO", seq: 1, version: 1, token: good, lb_id: "lb-evil" }));
      const [e] = await replies(ch, 2000);
      assert.ok(e?.type === "ERROR" && e.code === "UNAUTHORIZED", JSON.stringify(e));
      await edAgent.shutdown("done", 100);
      const log = f.logs.join("\n");
      assert.equal((log.match(/LB refused/g) ?? []).length, Object.keys(cases).length);
      assert.ok(!log.includes(new TextDecoder().decode(secret)), "secret in the log");
      assert.equal(f.failures, 0);
    } finally {
      await f.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "The LB refuses a server certificate from another CA, unless insecure",
  async fn() {
    const other = await generateDevCertificates({ caName: "Impostor CA" });
    const transport = createMatrixaiTransport();
    const agent = await Agent.start({
      transport,
      host: "127.0.0.1",
      port: 0,
      certPem: other.serverCertPem,
      keyPem: other.serverKeyPem,
      serverId: "impostor",
      verifier: hmacPair(secret, "lb-good").verifier,
      metrics: new FakeMetrics(),
    });
    const lines: string[] = [];
    const make = (insecure: boolean) =>
      new Monitor({
        log: createLogger({ sink: (l) => lines.push(l) }),
        transport,
        signer: hmacPair(secret, "lb-good").signer,
        servers: [{ host: "127.0.0.1", port: agent.port }],
        ...(insecure ? { insecure: true } : { caPem: certs.caCertPem }),
        checkIntervalMs: 100,
        checkTimeoutMs: 1000,
        fastIntervalMs: 100,
      });
    const strict = make(false);
    const lax = make(true);
    try {
      strict.start();
      lax.start();
      await waitFor("strict DOWN", () => strict.status()[0]?.state === "DOWN", 10_000);
      assert.match(
        strict.status()[0]!.last_error!,
        /certificate of 127\.0\.0\.1:\d+ rejected: .*does not lead to a trusted CA/,
      );
      assert.equal(strict.status()[0]!.checks_ok, 0);
      // The verdict change is logged once, with the cause.
      assert.equal(lines.filter((l) => /server DOWN .*cause=certificate /.test(l)).length, 1);
      await waitFor("insecure UP", () => lax.status()[0]?.state === "UP", 10_000);
    } finally {
      await strict.stop();
      await lax.stop();
      await agent.shutdown("done", 100);
      await transport.close();
    }
  },
});

// --- fuzzing live sessions ---------------------------------------------------------------

const SAMPLES: Message[] = [
  { type: "HEALTH_REQUEST", seq: 2 },
  { type: "HEALTH_REQUEST", seq: 2, metrics: ["load_1"] },
  { type: "CONFIG_UPDATE", seq: 2, config: { interval_ms: 500 } },
  { type: "TERMINATE", seq: 2, reason: "bye" },
  { type: "ACK", seq: 2, re: 1, version: 1, server_id: "x", metrics: [] },
  { type: "HELLO", seq: 2, version: 1, token: "t", lb_id: "l" },
];

/** A mutated or random input: what a hostile LB could send after its HELLO. */
function fuzzInput(rand: () => number): Uint8Array {
  const base = encodeMessage(SAMPLES[Math.floor(rand() * SAMPLES.length)]!);
  const kind = Math.floor(rand() * 7);
  const copy = base.slice();
  switch (kind) {
    case 0: // bit flips anywhere
      for (let i = 0; i < 1 + rand() * 3; i++) {
        const at = Math.floor(rand() * copy.length);
        copy[at] = copy[at]! ^ (1 << Math.floor(rand() * 8));
      }
      return copy;
    case 1: // an oversize or zero length
      new DataView(copy.buffer).setUint32(0, rand() < 0.5 ? 0 : 65_537 + Math.floor(rand() * 1e6));
      return copy;
    case 2: // a wrong field type
      return frame({ ...SAMPLES[0], metrics: rand() < 0.5 ? 7 : [""] });
    case 3: // not JSON / not an object
      return frame(["{not json", "[1,2]", "42", "null", '"x"'][Math.floor(rand() * 5)]!);
    case 4: // out-of-order seq
      return frame({ type: "HEALTH_REQUEST", seq: 2 + 1 + Math.floor(rand() * 5) });
    case 5: // random bytes with a plausible length
      return frame(
        String.fromCharCode(
          ...Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Math.floor(rand() * 256)),
        ),
      );
    default: // a valid message that is unexpected or bad in READY
      return base;
  }
}

/** What the pure state machine says the server replies to HELLO then `input`. */
function expected(hello: Uint8Array, input: Uint8Array): string[] {
  const m = new ServerSession({
    serverId: "target",
    availableMetrics: new FakeMetrics().names,
    health: () => ({ status: "UP", metrics: new FakeMetrics().values }),
  }, Date.now());
  const out: string[] = [];
  const run = (actions: ServerAction[]) => {
    for (const a of actions) {
      if (a.kind === "send") {
        out.push(a.message.type === "ERROR" ? `ERROR ${a.message.code}` : a.message.type);
      } else if (a.kind === "authenticate") {
        run(m.authenticated({ ok: true, expiresAt: Date.now() + 600_000 }, Date.now()));
      }
    }
  };
  const frames = new FrameDecoder();
  for (const bytes of [hello, input]) {
    frames.push(bytes);
    while (m.state !== "CLOSED") {
      let payload: Uint8Array | null;
      try {
        payload = frames.next();
      } catch (e) {
        run(m.receiveInvalid(e as CodecError, Date.now()));
        break;
      }
      if (!payload) break;
      try {
        run(m.receive(decodeMessage(payload), Date.now()));
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        run(m.receiveInvalid(e, Date.now()));
      }
    }
  }
  return out;
}

Deno.test({
  ...opts,
  name:
    "300 fuzzed inputs through live QUIC sessions get the replies the state machine prescribes; the LB's checks stay on time",
  async fn() {
    const f = await fixture();
    const rand = mulberry32(0x5eed_0003);
    // A fresh token per session, as an LB signs one per dial: a token backs one session at a time.
    const signer = hmacPair(secret, "lb-fuzz").signer;
    const helloFor = async () =>
      encodeMessage({
        type: "HELLO",
        seq: 1,
        version: 1,
        token: (await signer.sign(Date.now(), "127.0.0.1")).token,
        lb_id: "lb-fuzz",
      });
    const inputs = Array.from({ length: 300 }, () => fuzzInput(rand));
    const baseline = f.rtts.length;
    const p50Before = percentile(f.rtts, 0.5);
    let mismatches = 0;
    try {
      for (let i = 0; i < inputs.length; i += 20) {
        await Promise.all(
          inputs.slice(i, i + 10).map(async (input, j) => {
            const ch = await f.transport.dial({
              host: "127.0.0.1",
              port: f.agent.port,
              caPem: certs.caCertPem,
              timeoutMs: 5000,
            });
            const hello = await helloFor();
            await ch.write(hello);
            await ch.write(input);
            const got = (await replies(ch, 300)).map((m) =>
              m.type === "ERROR" ? `ERROR ${m.code}` : m.type
            );
            const want = expected(hello, input);
            if (JSON.stringify(got) !== JSON.stringify(want)) {
              mismatches++;
              console.error(`input ${i + j}: got ${got} want ${want}`);
            }
            await ch.abort(0, "fuzz done");
          }),
        );
      }
      assert.equal(mismatches, 0);
      const during = f.rtts.slice(baseline);
      assert.equal(f.failures, 0, "no failed check while the server was fuzzed");
      assert.ok(during.length > 20, `${during.length} checks during the fuzz`);
      const p99 = percentile(during, 0.99);
      record(
        "hostile input",
        "LB check round trip p50 before the fuzzed sessions",
        p50Before,
        "ms",
      );
      record(
        "hostile input",
        "LB check round trip p99 during 300 fuzzed sessions",
        p99,
        "ms",
        "< 250 ms",
      );
      assert.ok(p99 < 250, `p99 ${p99} ms`);
    } finally {
      await f.close();
    }
  },
});

// --- flood -------------------------------------------------------------------------------

Deno.test({
  ...opts,
  name: "500 QUIC connections that never send HELLO do not slow an authenticated LB's checks",
  async fn() {
    const f = await fixture({ helloTimeoutMs: 3000, maxUnauthenticated: 100 });
    try {
      await waitFor("20 baseline checks", () => f.rtts.length >= 20, 10_000);
      const baseline = f.rtts.slice(0, 20);
      const before = f.rtts.length;
      const flood = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--config",
          new URL("../deno.json", import.meta.url).pathname,
          new URL("./_flood.ts", import.meta.url).pathname,
          String(f.agent.port),
          "500",
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      // Watch the server's count of unauthenticated connections while the flood runs.
      let maxPending = 0;
      const poll = setInterval(() => {
        maxPending = Math.max(maxPending, f.agent.stats().unauthenticated);
      }, 10);
      const reader = flood.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("done")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      clearInterval(poll);
      await sleep(3500); // past the hello timeout: the held connections are closed
      const after = f.agent.stats();
      await flood.stdin.close();
      await reader.cancel();
      await flood.status;
      const during = f.rtts.slice(before);
      const m = /opened=(\d+) refused=(\d+)/.exec(text);
      assert.ok(m, text);
      const opened = Number(m[1]);
      const refused = Number(m[2]);
      assert.equal(opened, 500, text);
      assert.ok(maxPending <= 100, `${maxPending} unauthenticated connections held at once`);
      assert.ok(maxPending >= 50, `the flood reached the server (${maxPending} held at most)`);
      assert.ok(refused > 0 && f.agent.stats().refused >= refused, `${refused} refused`);
      assert.equal(after.unauthenticated, 0, "held connections closed after the hello timeout");
      assert.equal(f.failures, 0, "no check failed during the flood");
      const p50 = percentile(baseline, 0.5);
      const p99 = percentile(during, 0.99);
      const max = Math.max(...during);
      record("hostile input", "LB check round trip p50 before the flood", p50, "ms");
      record(
        "hostile input",
        "LB check round trip p99 during 500 unauthenticated connections",
        p99,
        "ms",
        "< 250 ms",
      );
      record("hostile input", "LB check round trip max during the flood", max, "ms");
      record(
        "hostile input",
        "most unauthenticated connections held at once (cap 100)",
        maxPending,
        "",
      );
      record("hostile input", "connections refused by the cap", f.agent.stats().refused, "of 500");
      assert.ok(p99 < 250, `p99 ${p99} ms during the flood (baseline p50 ${p50} ms)`);
    } finally {
      await f.close();
    }
  },
});
