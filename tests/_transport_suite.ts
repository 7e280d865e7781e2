/**
 * The shared end-to-end suite: an Agent and a Monitor talking over a
 * Transport. Run once per transport (in-memory and real QUIC on loopback) so
 * every stack is held to the same behaviour.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Agent, type AgentOptions } from "../lib/agent/agent.ts";
import {
  createEd25519Signer,
  createEd25519Verifier,
  generateEd25519KeyPair,
} from "../lib/security/jwt.ts";
import { decodeMessage, FrameDecoder } from "../lib/protocol/codec.ts";
import type { Transition } from "../lib/lb/verdict.ts";
import { Monitor, type MonitorOptions } from "../lib/lb/monitor.ts";
import { CLOSE_CODES, type Message } from "../lib/protocol/wire.ts";
import type { Channel, Listener, Transport } from "../lib/transport/transport.ts";
import { within } from "../lib/util/timeout.ts";
import {
  concat,
  FakeMetrics,
  hmacPair,
  makeCredentials,
  sleep,
  startMutePeer,
  waitFor,
} from "./_helpers.ts";

/** What a transport brings to the suite. */
export interface SuiteEnv {
  /** The LB side: what monitors and raw test clients dial with. */
  transport: Transport;
  /** The server side, when it is another stack (interop); default `transport`. */
  serverTransport?: Transport;
  /** Address servers bind and LBs dial. */
  host: string;
  certPem: string;
  keyPem: string;
  caPem: string;
  /** Releases the transport. */
  close(): Promise<void>;
}

/** Options for one test's servers and LB. */
interface Fixture {
  env: SuiteEnv;
  secret: Uint8Array;
  agents: Agent[];
  monitors: Monitor[];
  listeners: Listener[];
  transitions: { address: string; t: Transition }[];
}

/** Registers the suite's tests for one transport. */
export function transportSuite(
  name: string,
  makeEnv: () => Promise<SuiteEnv>,
  options: { sanitize?: boolean } = {},
): void {
  const test = (title: string, fn: (f: Fixture) => Promise<void>) =>
    Deno.test({
      name: `[${name}] ${title}`,
      sanitizeOps: options.sanitize ?? false,
      sanitizeResources: options.sanitize ?? false,
      async fn() {
        const env = await makeEnv();
        const { secret } = await makeCredentials();
        const f: Fixture = {
          env,
          secret,
          agents: [],
          monitors: [],
          listeners: [],
          transitions: [],
        };
        try {
          await fn(f);
        } finally {
          await Promise.all(f.monitors.map((m) => m.stop()));
          await Promise.all(f.agents.map((a) => a.shutdown("test over", 200)));
          await Promise.all(f.listeners.map((l) => l.close()));
          await env.close();
        }
      },
    });

  const startAgent = async (f: Fixture, options: Partial<AgentOptions> = {}) => {
    const agent = await Agent.start({
      transport: f.env.serverTransport ?? f.env.transport,
      host: f.env.host,
      port: 0,
      certPem: f.env.certPem,
      keyPem: f.env.keyPem,
      serverId: `server-${f.agents.length + 1}`,
      verifier: hmacPair(f.secret).verifier,
      metrics: new FakeMetrics(),
      ...options,
    });
    f.agents.push(agent);
    return agent;
  };

  const startMonitor = (f: Fixture, ports: number[], options: Partial<MonitorOptions> = {}) => {
    const monitor = new Monitor({
      transport: f.env.transport,
      signer: hmacPair(f.secret).signer,
      lbId: "lb-test",
      servers: ports.map((port) => ({ host: f.env.host, port })),
      caPem: f.env.caPem,
      checkIntervalMs: 100,
      checkTimeoutMs: 300,
      maxFailAttempts: 3,
      reconnectIntervalMs: 300,
      events: {
        onTransition: (address, t) => f.transitions.push({ address, t }),
      },
      ...options,
    });
    f.monitors.push(monitor);
    monitor.start();
    return monitor;
  };

  /** A peer that answers HELLO with ACK and then ignores every request. */
  const mutePeer = async (f: Fixture) => {
    const peer = await startMutePeer(f.env.serverTransport ?? f.env.transport, {
      host: f.env.host,
      port: 0,
      certPem: f.env.certPem,
      keyPem: f.env.keyPem,
    });
    f.listeners.push(peer.listener);
    return Object.assign(peer, { port: peer.listener.port });
  };

  const stateOf = (m: Monitor, port: number) =>
    m.status().find((s) => s.address.endsWith(`:${port}`));

  test("Monitor marks a server UP after its first good check and reports its metrics", async (f) => {
    const agent = await startAgent(f);
    const monitor = startMonitor(f, [agent.port]);
    const s = await waitFor(
      "UP",
      () => stateOf(monitor, agent.port)?.state === "UP" && stateOf(monitor, agent.port),
    );
    assert.equal(s.status, "UP");
    assert.equal(s.server_id, "server-1");
    assert.deepEqual(s.metrics, { cpu_percent: 12.5, mem_percent: 40 });
    assert.equal(s.consecutive_failures, 0);
    assert.ok(
      s.last_rtt_ms !== null && s.last_rtt_ms >= 0 && s.last_rtt_ms < 300,
      `rtt ${s.last_rtt_ms}`,
    );
    assert.equal(f.transitions[0]?.t.from, "UNKNOWN");
    // Checks keep flowing on one session: the agent sees exactly one.
    await waitFor("5 good checks", () => (stateOf(monitor, agent.port)?.checks_ok ?? 0) >= 5);
    assert.equal(agent.sessions().length, 1);
    assert.equal(agent.sessions()[0]?.state, "READY");
  });

  test("Monitor marks a server DOWN at once on TERMINATE and UP again after a restart on the same port", async (f) => {
    const agent = await startAgent(f);
    const port = agent.port;
    const monitor = startMonitor(f, [port], { reconnectIntervalMs: 400 });
    await waitFor("UP", () => stateOf(monitor, port)?.state === "UP");
    const t0 = performance.now();
    const shutdown = agent.shutdown("shutdown", 1000);
    f.agents.splice(f.agents.indexOf(agent), 1);
    await waitFor("DOWN", () => stateOf(monitor, port)?.state === "DOWN", 2000);
    const downMs = performance.now() - t0;
    const shutdownMs = await shutdown.then(() => performance.now() - t0);
    assert.ok(shutdownMs < 3000, `agent shutdown took ${shutdownMs} ms`);
    // The TERMINATE exchange alone marks it DOWN: no failed checks are needed.
    assert.ok(downMs < 1000, `DOWN after ${downMs} ms`);
    // The transition's reason (last_error may already show a later redial's failure).
    const down = f.transitions.find((x) => x.t.to === "DOWN");
    assert.match(down?.t.reason ?? "", /terminated the session: shutdown/);
    const again = await startAgent(f, { port });
    assert.equal(again.port, port);
    const t1 = performance.now();
    await waitFor("UP again", () => stateOf(monitor, port)?.state === "UP", 5000);
    // One reconnect interval (400 ms) plus a handshake and a check, with margin for a busy machine.
    assert.ok(performance.now() - t1 < 3000, `UP again after ${performance.now() - t1} ms`);
  });

  test("Monitor marks a server that stops answering DOWN after max-fail-attempts timeouts", async (f) => {
    const mute = await mutePeer(f);
    const monitor = startMonitor(f, [mute.port], {
      checkIntervalMs: 100,
      checkTimeoutMs: 150,
      maxFailAttempts: 3,
    });
    await waitFor("DOWN", () => stateOf(monitor, mute.port)?.state === "DOWN", 5000);
    const s = stateOf(monitor, mute.port)!;
    assert.match(s.last_error ?? "", /timeout: no HEALTH_RESPONSE within/);
    assert.equal(s.consecutive_failures, 3);
    assert.ok(mute.requests >= 3, `${mute.requests} HEALTH_REQUESTs`);
  });

  test("A dead address is DOWN after max-fail-attempts failed dials and keeps being redialled", async (f) => {
    // Bind and release a port so that nobody answers on it.
    const agent = await startAgent(f);
    const port = agent.port;
    await agent.shutdown("gone", 0);
    f.agents.pop();
    const monitor = startMonitor(f, [port], { checkTimeoutMs: 150, reconnectIntervalMs: 200 });
    await waitFor("DOWN", () => stateOf(monitor, port)?.state === "DOWN", 5000);
    assert.match(stateOf(monitor, port)!.last_error ?? "", /connect failed/);
    const failures = stateOf(monitor, port)!.consecutive_failures;
    await waitFor(
      "more redials",
      () => stateOf(monitor, port)!.consecutive_failures > failures,
      3000,
    );
  });

  test("Agent refuses a token signed with another secret: ERROR UNAUTHORIZED, and the LB reports why", async (f) => {
    const agent = await startAgent(f);
    const wrong = hmacPair(new TextEncoder().encode("another-secret-that-is-long-enough-32+"));
    const monitor = startMonitor(f, [agent.port], { signer: wrong.signer });
    await waitFor("DOWN", () => stateOf(monitor, agent.port)?.state === "DOWN", 5000);
    const s = stateOf(monitor, agent.port)!;
    assert.match(s.last_error ?? "", /^UNAUTHORIZED: .*signature/);
    assert.equal(s.checks_ok, 0);
  });

  test("EdDSA: a server holding only the LB's public key accepts its tokens and refuses HS256 ones", async (f) => {
    const keys = await generateEd25519KeyPair();
    const agent = await startAgent(f, { verifier: await createEd25519Verifier(keys.publicKeyPem) });
    const signer = await createEd25519Signer(keys.privateKeyPem, { lbId: "lb-test" });
    const good = startMonitor(f, [agent.port], { signer });
    await waitFor("UP", () => stateOf(good, agent.port)?.state === "UP");
    const hs = startMonitor(f, [agent.port]);
    await waitFor("DOWN", () => stateOf(hs, agent.port)?.state === "DOWN", 5000);
    assert.match(stateOf(hs, agent.port)!.last_error ?? "", /^UNAUTHORIZED: .*algorithm/);
    assert.equal(stateOf(good, agent.port)!.state, "UP");
  });

  test("CONFIG_UPDATE changes what HEALTH_RESPONSE reports and the LB's own interval", async (f) => {
    const agent = await startAgent(f);
    const monitor = startMonitor(f, [agent.port], { checkIntervalMs: 200 });
    await waitFor("UP", () => stateOf(monitor, agent.port)?.state === "UP");
    assert.deepEqual(Object.keys(stateOf(monitor, agent.port)!.metrics!), [
      "cpu_percent",
      "mem_percent",
    ]);
    const [outcome] = await monitor.configure({
      metrics: ["load_1", "disk_percent"],
      interval_ms: 150,
    });
    assert.ok(outcome?.ok, JSON.stringify(outcome));
    // The effective config; heartbeat_ms too, as the session negotiated heartbeats.
    assert.deepEqual(outcome.config, {
      interval_ms: 150,
      metrics: ["cpu_percent", "mem_percent", "load_1", "disk_percent"],
      heartbeat_ms: monitor.heartbeatMs,
    });
    assert.equal(monitor.settings.checkIntervalMs, 150);
    await waitFor(
      "new metrics reported",
      () => stateOf(monitor, agent.port)?.metrics?.disk_percent === 70,
    );
    assert.deepEqual(stateOf(monitor, agent.port)!.metrics, {
      cpu_percent: 12.5,
      mem_percent: 40,
      load_1: 0.5,
      disk_percent: 70,
    });
    // An unknown metric is refused with BAD_CONFIG and the session survives.
    const [bad] = await monitor.configure({ metrics: ["gpu_percent"] });
    assert.ok(bad && !bad.ok && bad.code === "BAD_CONFIG", JSON.stringify(bad));
    const before = stateOf(monitor, agent.port)!.checks_ok;
    await waitFor("checks continue", () => stateOf(monitor, agent.port)!.checks_ok > before + 2);
    assert.equal(stateOf(monitor, agent.port)!.state, "UP");
  });

  test("Checks of a silent server never delay checks of a healthy one", async (f) => {
    const agent = await startAgent(f);
    const mute = await mutePeer(f);
    const monitor = startMonitor(f, [agent.port, mute.port], {
      checkIntervalMs: 100,
      checkTimeoutMs: 1000,
      maxFailAttempts: 50,
    });
    await waitFor("UP", () => stateOf(monitor, agent.port)?.state === "UP");
    const start = stateOf(monitor, agent.port)!.checks_ok;
    const t0 = performance.now();
    await sleep(1000);
    const done = stateOf(monitor, agent.port)!.checks_ok - start;
    const elapsed = performance.now() - t0;
    // About one check per 100 ms while the silent server's checks hang for 1 s each.
    assert.ok(done >= (elapsed / 100) * 0.5, `${done} checks in ${elapsed} ms`);
    assert.equal(stateOf(monitor, mute.port)?.state, "UNKNOWN");
  });

  test("Agent serves several LBs at once, each with its own config", async (f) => {
    const agent = await startAgent(f);
    const a = startMonitor(f, [agent.port]);
    const b = startMonitor(f, [agent.port], { lbId: "lb-test", metrics: ["load_1"] });
    await waitFor(
      "both UP",
      () => stateOf(a, agent.port)?.state === "UP" && stateOf(b, agent.port)?.state === "UP",
    );
    await waitFor("b sees load_1", () => stateOf(b, agent.port)?.metrics?.load_1 === 0.5);
    assert.equal(stateOf(a, agent.port)!.metrics!.load_1, undefined);
    assert.equal(agent.sessions().filter((s) => s.state === "READY").length, 2);
  });

  test("An expired session token ends with TERMINATE token_expired and the LB reconnects without going DOWN", async (f) => {
    const agent = await startAgent(f, { verifier: hmacPair(f.secret, "lb-test", 600, 0).verifier });
    const monitor = startMonitor(f, [agent.port], {
      signer: hmacPair(f.secret, "lb-test", 1).signer,
    });
    await waitFor("UP", () => stateOf(monitor, agent.port)?.state === "UP");
    // A token issued late in a second can expire within milliseconds, so the
    // first session may already be gone here: then any READY session is a new one.
    const firstSince = agent.sessions()[0]?.since ?? -1;
    // The token lives 1 s (whole seconds): the server ends the session within about 2 s.
    await waitFor(
      "a new session",
      () => agent.sessions().some((s) => s.since > firstSince && s.state === "READY"),
      6000,
    );
    await sleep(200);
    assert.equal(stateOf(monitor, agent.port)!.state, "UP");
    assert.deepEqual(f.transitions.map((x) => x.t.to), ["UP"]);
  });

  test("Monitor.stop() ends sessions with TERMINATE; the agent sees them close", async (f) => {
    const agent = await startAgent(f);
    const monitor = startMonitor(f, [agent.port]);
    await waitFor("UP", () => stateOf(monitor, agent.port)?.state === "UP");
    await monitor.stop();
    await waitFor("agent has no sessions", () => agent.sessions().length === 0, 3000);
  });

  test("A peer sending garbage gets ERROR BAD_FRAME and is closed; other sessions keep their checks", async (f) => {
    const agent = await startAgent(f);
    const monitor = startMonitor(f, [agent.port]);
    await waitFor("UP", () => stateOf(monitor, agent.port)?.state === "UP");
    const before = stateOf(monitor, agent.port)!.checks_ok;
    const channel = await f.env.transport.dial({
      host: f.env.host,
      port: agent.port,
      caPem: f.env.caPem,
      timeoutMs: 2000,
    });
    await channel.write(new Uint8Array([0, 1, 0, 1, 0xff, 0xff])); // length 65537
    const replies = await readMessages(channel, 2000);
    assert.equal(replies[0]?.type, "ERROR");
    assert.equal(replies[0]?.type === "ERROR" && replies[0].code, "BAD_FRAME");
    const info = await channel.closed;
    assert.equal(info.code, CLOSE_CODES.BAD_FRAME);
    await waitFor("checks continue", () => stateOf(monitor, agent.port)!.checks_ok > before + 3);
    assert.equal(stateOf(monitor, agent.port)!.state, "UP");
  });

  test("A bad CONFIG_UPDATE and a HEALTH_REQUEST in one write get ERROR BAD_CONFIG, then HEALTH_RESPONSE", async (f) => {
    const agent = await startAgent(f);
    const channel = await f.env.transport.dial({
      host: f.env.host,
      port: agent.port,
      caPem: f.env.caPem,
      timeoutMs: 2000,
    });
    const { token } = await hmacPair(f.secret).signer.sign(Date.now());
    await channel.write(rawFrame({ type: "HELLO", seq: 1, version: 1, token, lb_id: "lb-test" }));
    await channel.write(concat(
      rawFrame({ type: "CONFIG_UPDATE", seq: 2, config: { interval_ms: 50 } }),
      rawFrame({ type: "HEALTH_REQUEST", seq: 3 }),
    ));
    const replies = await readMessages(channel, 1500);
    assert.deepEqual(replies.map((m) => m.type), ["ACK", "ERROR", "HEALTH_RESPONSE"]);
    const [, error, response] = replies;
    assert.ok(error?.type === "ERROR" && error.code === "BAD_CONFIG" && error.re === 2);
    assert.ok(response?.type === "HEALTH_RESPONSE" && response.re === 3);
    await channel.close(CLOSE_CODES.NO_ERROR, "done", 0);
  });

  /** Opens a raw session with `token` and returns what the agent answered to HELLO. */
  const helloWith = async (f: Fixture, port: number, token: string) => {
    const channel = await f.env.transport.dial({
      host: f.env.host,
      port,
      caPem: f.env.caPem,
      timeoutMs: 2000,
    });
    await channel.write(rawFrame({ type: "HELLO", seq: 1, version: 1, token, lb_id: "lb-test" }));
    const [reply] = await readMessages(channel, 1500, 1);
    await channel.close(CLOSE_CODES.NO_ERROR, "done", 0);
    return reply;
  };

  test("A token bound to another server is refused (a replay); an unbound one only where bound tokens are not required", async (f) => {
    const signer = hmacPair(f.secret).signer;
    const agent = await startAgent(f);
    // The LB's own sessions carry tokens bound to the host it dials: accepted.
    const mine = await helloWith(f, agent.port, (await signer.sign(Date.now(), f.env.host)).token);
    assert.equal(mine?.type, "ACK", JSON.stringify(mine));
    // A token the LB made for another backend, replayed here.
    const replayed = await helloWith(
      f,
      agent.port,
      (await signer.sign(Date.now(), "10.9.9.9")).token,
    );
    assert.ok(
      replayed?.type === "ERROR" && replayed.code === "UNAUTHORIZED",
      JSON.stringify(replayed),
    );
    assert.match(
      replayed.message,
      /bound to "10\.9\.9\.9", which this server's certificate does not name/,
    );
    // A plain QHCP/1 LB's token names no server: accepted by default...
    const plain = (await signer.sign(Date.now())).token;
    assert.equal((await helloWith(f, agent.port, plain))?.type, "ACK");
    // ...and refused by an agent that requires bound tokens, which still serves the LB.
    const strict = await startAgent(f, { requireBoundTokens: true });
    const refused = await helloWith(f, strict.port, plain);
    assert.ok(
      refused?.type === "ERROR" && refused.code === "UNAUTHORIZED",
      JSON.stringify(refused),
    );
    assert.match(refused.message, /not bound to a server/);
    const monitor = startMonitor(f, [strict.port]);
    await waitFor("UP with bound tokens", () => stateOf(monitor, strict.port)?.state === "UP");
  });

  test("A peer that never sends HELLO is closed after the hello timeout", async (f) => {
    const agent = await startAgent(f, { helloTimeoutMs: 300 });
    const channel = await f.env.transport.dial({
      host: f.env.host,
      port: agent.port,
      caPem: f.env.caPem,
      timeoutMs: 2000,
    });
    const t0 = performance.now();
    const info = await channel.closed;
    const elapsed = performance.now() - t0;
    assert.equal(info.by, "remote");
    assert.equal(info.code, CLOSE_CODES.TIMEOUT);
    assert.ok(elapsed >= 250 && elapsed < 3000, `closed after ${elapsed} ms`);
  });
}

/** Reads messages from a channel until it closes, `ms` pass or `max` arrived. */
async function readMessages(channel: Channel, ms: number, max = Infinity): Promise<Message[]> {
  const out: Message[] = [];
  const frames = new FrameDecoder();
  const deadline = performance.now() + ms;
  while (performance.now() < deadline && out.length < max) {
    const r = await within(channel.read(), deadline - performance.now());
    const chunk = r.ok ? r.value : null;
    if (!chunk) break;
    frames.push(chunk);
    for (let p = frames.next(); p; p = frames.next()) out.push(decodeMessage(p));
  }
  return out;
}

/** Frames any JSON value, valid message or not. */
function rawFrame(value: unknown): Uint8Array {
  const body = new TextEncoder().encode(JSON.stringify(value));
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}
