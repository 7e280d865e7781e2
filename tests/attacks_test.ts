/**
 * Attacks on the agent and on the LB, each bounded in count and time, with an
 * honest LB watching: what the attacker can take is capped, the honest
 * checks stay on time with no false DOWN, and memory stays under a stated
 * ceiling. The figures go to docs/RELIABILITY.md (`deno task reliability`).
 */

import assert from "node:assert/strict";
import { Agent, type AgentOptions } from "../lib/agent/agent.ts";
import { encodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { createLogger, type LogRecord } from "../lib/util/log.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { CLOSE_CODES, type Message } from "../lib/protocol/wire.ts";
import { createQuicTransport, type QuicStack } from "../lib/transport/stacks.ts";
import type { Channel, Transport } from "../lib/transport/transport.ts";
import { FakeMetrics, hmacPair, sleep, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";

const certs = await generateDevCertificates({ hosts: ["localhost", "127.0.0.1", "10.0.0.1"] });
const secret = new TextEncoder().encode("attacks-test-secret-0123456789-abcdefgh");
const opts = { sanitizeOps: false, sanitizeResources: false };

function heapMb(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return Deno.memoryUsage().heapUsed / 1e6;
}

/** An agent and an honest LB checking it every 100 ms, on one transport. */
async function fixture(transport: Transport, host: string, options: Partial<AgentOptions> = {}) {
  const lines: LogRecord[] = [];
  const agent = await Agent.start({
    transport,
    host,
    port: 0,
    certPem: certs.serverCertPem,
    keyPem: certs.serverKeyPem,
    serverId: "attacked",
    verifier: hmacPair(secret).verifier,
    metrics: new FakeMetrics(),
    log: createLogger({ level: "debug", sink: (_l, r) => lines.push(r) }),
    ...options,
  });
  let failures = 0;
  const monitor = new Monitor({
    transport,
    signer: hmacPair(secret, "lb-honest").signer,
    servers: [{ host, port: agent.port }],
    caPem: certs.caCertPem,
    checkIntervalMs: 100,
    checkTimeoutMs: 1000,
    events: { onCheck: (_a, ok) => void (ok || failures++) },
  });
  monitor.start();
  await waitFor("the honest LB's first checks", () => (monitor.status()[0]?.checks_ok ?? 0) >= 3);
  return {
    agent,
    monitor,
    lines,
    failures: () => failures,
    okChecks: () => monitor.status()[0]?.checks_ok ?? 0,
    async close() {
      await monitor.stop();
      await agent.shutdown("test over", 200);
      await transport.close();
    },
  };
}

/** A raw session that authenticated as `lbId` with a fresh bound token (or `token`). */
async function session(
  transport: Transport,
  host: string,
  port: number,
  lbId: string,
  token?: string,
): Promise<{ channel: Channel; first: Message | undefined }> {
  const channel = await transport.dial({ host, port, caPem: certs.caCertPem, timeoutMs: 3000 });
  const t = token ?? (await hmacPair(secret, lbId).signer.sign(Date.now(), host)).token;
  await channel.write(encodeMessage({ type: "HELLO", seq: 1, version: 1, token: t, lb_id: lbId }));
  const frames = new FrameDecoder();
  let first: Message | undefined;
  const deadline = Date.now() + 3000;
  while (!first && Date.now() < deadline) {
    const chunk = await Promise.race([channel.read(), sleep(3000).then(() => null)]);
    if (!chunk) break;
    frames.push(chunk);
    const p = frames.next();
    if (p) first = JSON.parse(new TextDecoder().decode(p)) as Message;
  }
  return { channel, first };
}

for (const stack of ["native", "matrixai"] as const) {
  Deno.test({
    ...opts,
    name:
      `[${stack}] A session pipelining HEALTH_REQUESTs far beyond an LB's pace is closed with REFUSED; memory stays bounded and the honest checks stay on time`,
    async fn() {
      const { transport } = await createQuicTransport(stack as QuicStack);
      const f = await fixture(transport, "127.0.0.1");
      try {
        const heapBefore = heapMb();
        const okBefore = f.okChecks();
        const { channel, first } = await session(transport, "127.0.0.1", f.agent.port, "lb-evil");
        assert.equal(first?.type, "ACK");
        // 64 requests per write, as fast as the stream takes them, for at most 5 s.
        let seq = 2;
        let written = 0;
        const t0 = Date.now();
        const flooding = (async () => {
          while (Date.now() - t0 < 5000) {
            const batch = [];
            for (let i = 0; i < 64; i++) {
              batch.push(encodeMessage({ type: "HEALTH_REQUEST", seq: seq++ }));
            }
            try {
              await channel.write(new Uint8Array(batch.flatMap((b) => [...b])));
            } catch {
              return;
            }
            written += 64;
          }
        })();
        const info = await Promise.race([channel.closed, sleep(6000).then(() => undefined)]);
        await flooding;
        const closedAfterMs = Date.now() - t0;
        assert.ok(info, "the agent closed the flooding session");
        assert.equal(info.by, "remote");
        assert.equal(info.code, CLOSE_CODES.REFUSED, info.reason);
        const heapGrowth = heapMb() - heapBefore;
        await sleep(500);
        assert.equal(f.failures(), 0, "no failed honest check");
        assert.ok(f.okChecks() > okBefore, "honest checks went on");
        assert.equal(f.monitor.status()[0]?.state, "UP");
        assert.ok(heapGrowth < 50, `heap grew ${heapGrowth.toFixed(1)} MB`);
        record(
          "attacks",
          `${stack}: pipelined flood closed after`,
          closedAfterMs,
          "ms",
          "< 6000 ms",
        );
        record("attacks", `${stack}: requests written before the close`, written, "requests");
        record("attacks", `${stack}: heap growth during the flood`, heapGrowth, "MB", "< 50 MB");
      } finally {
        await f.close();
      }
    },
  });
}

Deno.test({
  ...opts,
  name:
    "One token backs one session, one LB id holds at most 16, and another LB id still gets in and stays UP",
  async fn() {
    const transport = new MemoryTransport();
    const f = await fixture(transport, "10.0.0.1");
    try {
      const { token } = await hmacPair(secret, "lb-evil").signer.sign(Date.now(), "10.0.0.1");
      const replay = await Promise.all(
        Array.from(
          { length: 30 },
          () => session(transport, "10.0.0.1", f.agent.port, "lb-evil", token),
        ),
      );
      const acked = replay.filter((s) => s.first?.type === "ACK").length;
      const closes = await Promise.all(
        replay.filter((s) => s.first?.type !== "ACK").map((s) => s.channel.closed),
      );
      assert.equal(acked, 1, "one session per token");
      assert.ok(closes.every((c) => c.code === CLOSE_CODES.REFUSED));
      for (const s of replay) await s.channel.abort(0, "done");
      // Fresh tokens of one LB id: never more than 16 sessions of it at once.
      const fresh = [];
      let most = 0;
      for (let i = 0; i < 40; i++) {
        fresh.push(await session(transport, "10.0.0.1", f.agent.port, "lb-evil"));
        const live = f.agent.sessions().filter((s) => s.lbId === "lb-evil" && s.state === "READY");
        most = Math.max(most, live.length);
      }
      assert.ok(most <= 16, `${most} sessions of one LB id`);
      // The honest LB's session was never touched.
      assert.equal(f.failures(), 0);
      assert.equal(f.monitor.status()[0]?.state, "UP");
      const other = await session(transport, "10.0.0.1", f.agent.port, "lb-other");
      assert.equal(other.first?.type, "ACK", "another LB id still gets in");
      record("attacks", "sessions one token opened of 30 tries", acked, "sessions", "1");
      record(
        "attacks",
        "most sessions of one LB id at once (40 fresh tokens)",
        most,
        "sessions",
        "<= 16",
      );
      for (const s of [...fresh, other]) await s.channel.abort(0, "done");
    } finally {
      await f.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "A CONFIG_UPDATE flood is closed after its burst and logs the change once; a connection flood from one address holds at most its cap",
  async fn() {
    const transport = new MemoryTransport();
    const f = await fixture(transport, "10.0.0.1", { maxConnectionsPerAddress: 20 });
    try {
      const { channel, first } = await session(transport, "10.0.0.1", f.agent.port, "lb-config");
      assert.equal(first?.type, "ACK");
      let sent = 0;
      for (let seq = 2; seq < 400; seq++) {
        try {
          await channel.write(
            encodeMessage({ type: "CONFIG_UPDATE", seq, config: { interval_ms: 100 } }),
          );
          sent++;
        } catch {
          break;
        }
      }
      const info = await channel.closed;
      assert.equal(info.code, CLOSE_CODES.REFUSED);
      const changes = f.lines.filter((l) =>
        l.message === "LB changed session config" && l.level === "info" &&
        l.fields.lb === "lb-config"
      );
      assert.equal(changes.length, 1, "one info line for one change");
      // Unauthenticated connections from one address: at most 20 held.
      const held: Channel[] = [];
      for (let i = 0; i < 60; i++) {
        held.push(
          await transport.dial({
            host: "10.0.0.1",
            port: f.agent.port,
            timeoutMs: 1000,
            caPem: "",
          }),
        );
      }
      await sleep(50);
      const open = f.agent.stats().connections;
      assert.ok(open <= 20 + 1, `${open} connections held`); // + the honest LB's
      assert.equal(f.failures(), 0);
      record("attacks", "CONFIG_UPDATEs accepted before the close", sent, "messages");
      record(
        "attacks",
        "connections held from one address (cap 20)",
        open - 1,
        "connections",
        "<= 20",
      );
      for (const c of held) await c.abort(0, "done");
    } finally {
      await f.close();
    }
  },
});

/** A fake agent on the memory transport: ACKs HELLO and answers each request with `answer`. */
async function fakeAgent(
  transport: MemoryTransport,
  answer: (re: number, seq: () => number) => Message[],
) {
  const listener = await transport.listen(
    { host: "10.0.0.2", port: 4243, certPem: "", keyPem: "" },
    (channel) => {
      let next = 1;
      const seq = () => next++;
      const frames = new FrameDecoder();
      void (async () => {
        for (let chunk = await channel.read(); chunk; chunk = await channel.read()) {
          frames.push(chunk);
          for (let p = frames.next(); p; p = frames.next()) {
            const m = JSON.parse(new TextDecoder().decode(p)) as Message;
            const out: Message[] = m.type === "HELLO"
              ? [{
                type: "ACK",
                seq: seq(),
                re: m.seq,
                version: 1,
                server_id: "evil",
                metrics: ["cpu_percent", "mem_percent"],
              }]
              : m.type === "HEALTH_REQUEST"
              ? answer(m.seq, seq)
              : [];
            for (const o of out) await channel.write(encodeMessage(o)).catch(() => {});
          }
        }
      })();
    },
  );
  return listener;
}

Deno.test({
  ...opts,
  name:
    "A malicious agent that answers a request twice is closed as a protocol breach; 400 local checks are stored as 32 of 200 characters",
  async fn() {
    const transport = new MemoryTransport();
    const long = (c: string) => c.repeat(60);
    const failing = (re: number, seq: () => number): Message[] => [{
      type: "HEALTH_RESPONSE",
      seq: seq(),
      re,
      status: "FAILING",
      metrics: { cpu_percent: 1, mem_percent: 1 },
      ts: Date.now(),
      checks: Array.from(
        { length: 400 },
        (_, i) => ({ name: long("n"), ok: i > 0, detail: long("d") }),
      ),
    }];
    const twice = (re: number, seq: () => number): Message[] => [
      ...failing(re, seq).map((m) => ({ ...m, status: "UP" as const, checks: [] })),
      ...failing(re, seq).map((m) => ({ ...m, status: "UP" as const, checks: [] })),
    ];
    let mode: "failing" | "twice" = "failing";
    const listener = await fakeAgent(
      transport,
      (re, seq) => mode === "failing" ? failing(re, seq) : twice(re, seq),
    );
    const transitions: string[] = [];
    const monitor = new Monitor({
      transport,
      signer: hmacPair(secret).signer,
      servers: [{ host: "10.0.0.2", port: 4243 }],
      insecure: true,
      checkIntervalMs: 100,
      checkTimeoutMs: 500,
      fastIntervalMs: 100,
      events: { onTransition: (_a, t) => transitions.push(t.to) },
    });
    monitor.start();
    try {
      await waitFor("checks kept", () => monitor.status()[0]?.checks !== null, 5000);
      const view = monitor.status()[0]!;
      assert.ok(view.checks!.length <= 32, `${view.checks!.length} checks kept`);
      assert.ok(view.checks!.every((c) => c.name.length <= 200 && c.detail.length <= 200));
      await waitFor("DOWN (FAILING)", () => monitor.status()[0]?.state === "DOWN", 5000);
      assert.ok((monitor.status()[0]!.last_error ?? "").length <= 300);
      const history = monitor.history("10.0.0.2:4243") ?? [];
      assert.ok(history.every((h) => (h.error ?? "").length <= 300));
      mode = "twice";
      await waitFor(
        "a protocol failure",
        () =>
          (monitor.history("10.0.0.2:4243") ?? []).some((h) =>
            /UNEXPECTED_MESSAGE/.test(h.error ?? "")
          ),
        5000,
      );
      record(
        "attacks",
        "local checks kept of 400 reported",
        view.checks!.length,
        "checks",
        "<= 32",
      );
    } finally {
      await monitor.stop();
      await listener.close();
      await transport.close();
    }
  },
});
