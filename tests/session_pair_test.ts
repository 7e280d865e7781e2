/**
 * A {@linkcode ServerSession} and an {@linkcode LbSession} wired to each other
 * through the codec, with no sockets: `send` actions are encoded with
 * `encodeMessage`, decoded with `decodeFrame` and fed to the other side;
 * `authenticate` actions are answered synchronously; `close` actions are
 * delivered as a connection close. Time is a number that the test moves.
 */

import assert from "node:assert/strict";
import { CodecError, decodeFrame, encodeMessage } from "../lib/protocol/codec.ts";
import { HealthTracker } from "../lib/lb/verdict.ts";
import { type LbAction, LbSession } from "../lib/protocol/lb_session.ts";
import {
  CLOSE_CODES,
  type Message,
  type MessageOf,
  type SessionConfig,
} from "../lib/protocol/wire.ts";
import {
  type AuthResult,
  type ServerAction,
  ServerSession,
} from "../lib/protocol/server_session.ts";

const T0 = 1_700_000_000_000;
const LATENCY = 3;
const AVAILABLE = ["cpu_percent", "mem_percent", "load_1", "disk_percent", "uptime_s"];

type CloseAction = Extract<ServerAction, { kind: "close" }>;

type Packet =
  | { to: "server" | "lb"; bytes: Uint8Array }
  | { to: "server" | "lb"; close: CloseAction };

interface LinkOptions {
  /** Token check result; default: valid for an hour. */
  auth?: (token: string, now: number) => AuthResult;
  lbIntervalMs?: number;
  lbMetrics?: readonly string[];
  timeoutMs?: number;
  /** Reuse this LB session instead of making one. */
  lb?: LbSession;
  /** Start time of this connection. Default T0. */
  start?: number;
}

/** One connection between the two machines. */
class Link {
  now: number;
  readonly server: ServerSession;
  readonly lb: LbSession;
  /** Non-send actions of each side, in order. */
  readonly lbEvents: LbAction[] = [];
  readonly serverEvents: ServerAction[] = [];
  /** Messages as they crossed the wire, decoded. */
  readonly toServer: Message[] = [];
  readonly toLb: Message[] = [];
  readonly tokens: string[] = [];
  readonly healthCalls: string[][] = [];
  /**
   * Holds back server-to-LB frames matching this (they go to `held`). Release
   * them before the server sends anything else: the stream is ordered.
   */
  hold: ((m: Message) => boolean) | undefined;
  readonly held: Uint8Array[] = [];
  readonly #queue: Packet[] = [];
  readonly #auth: (token: string, now: number) => AuthResult;

  constructor(options: LinkOptions = {}) {
    this.now = options.start ?? T0;
    this.#auth = options.auth ?? ((_t, now) => ({ ok: true, expiresAt: now + 3_600_000 }));
    this.server = new ServerSession({
      serverId: "web-1",
      availableMetrics: AVAILABLE,
      health: (names) => {
        this.healthCalls.push([...names]);
        return {
          status: "UP",
          metrics: {
            cpu_percent: 7,
            mem_percent: 31.5,
            load_1: 0.2,
            disk_percent: 64,
            uptime_s: 9,
          },
        };
      },
    }, this.now);
    this.lb = options.lb ?? new LbSession({
      lbId: "lb-1",
      timeoutMs: options.timeoutMs ?? 2000,
      ...(options.lbIntervalMs === undefined ? {} : { intervalMs: options.lbIntervalMs }),
      ...(options.lbMetrics === undefined ? {} : { metrics: options.lbMetrics }),
    });
  }

  /** Dials, sends HELLO and runs the exchange to completion. */
  connect(token = "tok-1"): void {
    this.fromLb(this.lb.connecting(this.now));
    this.now += LATENCY;
    this.fromLb(this.lb.connected(token, this.now));
    this.run();
  }

  fromLb(actions: LbAction[]): void {
    for (const a of actions) {
      if (a.kind === "send") this.#queue.push({ to: "server", bytes: encodeMessage(a.message) });
      else if (a.kind === "close") {
        this.lbEvents.push(a);
        this.#queue.push({ to: "server", close: a });
      } else this.lbEvents.push(a);
    }
  }

  fromServer(actions: ServerAction[]): void {
    for (const a of actions) {
      if (a.kind === "send") {
        this.#queue.push({ to: "lb", bytes: encodeMessage(a.message) });
      } else if (a.kind === "authenticate") {
        assert.equal(a.lbId, "lb-1");
        this.tokens.push(a.token);
        this.fromServer(this.server.authenticated(this.#auth(a.token, this.now), this.now));
      } else if (a.kind === "close") {
        this.serverEvents.push(a);
        this.#queue.push({ to: "lb", close: a });
      } else this.serverEvents.push(a);
    }
  }

  /** Delivers queued packets, each after LATENCY ms, until none is left. */
  run(): void {
    for (let guard = 0; this.#queue.length > 0; guard++) {
      assert.ok(guard < 10_000, "the exchange does not settle");
      const p = this.#queue.shift()!;
      if ("close" in p) {
        if (p.to === "server") this.server.closed();
        else this.fromLb(this.lb.closed(p.close.reason, this.now));
        continue;
      }
      let message: Message;
      try {
        message = decodeFrame(p.bytes);
      } catch (e) {
        assert.ok(e instanceof CodecError);
        throw new Error(`a machine sent an undecodable frame: ${e.message}`);
      }
      if (p.to === "lb" && this.hold?.(message)) {
        this.held.push(p.bytes);
        continue;
      }
      this.now += LATENCY;
      if (p.to === "server") {
        this.toServer.push(message);
        this.fromServer(this.server.receive(message, this.now));
      } else {
        this.toLb.push(message);
        this.fromLb(this.lb.receive(message, this.now));
      }
    }
  }

  /** Moves the clock to `t`, ticks both sides and runs what follows. */
  advanceTo(t: number): void {
    this.now = t;
    this.fromServer(this.server.tick(t));
    this.fromLb(this.lb.tick(t));
    this.run();
  }

  /** Re-injects held frames toward the LB. */
  release(): void {
    for (const bytes of this.held.splice(0)) this.#queue.push({ to: "lb", bytes });
    this.run();
  }

  /** Removes and returns the recorded LB events. */
  takeLb(): LbAction[] {
    return this.lbEvents.splice(0);
  }

  /** Removes and returns the recorded server events. */
  takeServer(): ServerAction[] {
    return this.serverEvents.splice(0);
  }
}

function readyLink(options: LinkOptions = {}): Link {
  const link = new Link(options);
  link.connect();
  assert.equal(link.lb.state, "READY");
  assert.equal(link.server.state, "READY");
  link.takeLb();
  link.takeServer();
  return link;
}

function assertSeqs(messages: Message[]): void {
  assert.deepEqual(messages.map((m) => m.seq), messages.map((_, i) => i + 1));
}

// --- tests ------------------------------------------------------------------------

Deno.test("ServerSession + LbSession: HELLO and ACK bring both sides to READY", () => {
  const link = new Link({ lbIntervalMs: 1500, lbMetrics: ["load_1", "bogus"] });
  link.connect("jwt-abc");
  assert.deepEqual(link.tokens, ["jwt-abc"]);
  assert.deepEqual(link.toServer.map((m) => m.type), ["HELLO"]);
  assert.deepEqual(link.toLb.map((m) => m.type), ["ACK"]);

  const config: SessionConfig = {
    interval_ms: 1500,
    metrics: ["cpu_percent", "mem_percent", "load_1"],
  };
  assert.deepEqual(link.takeServer(), [{ kind: "ready", lbId: "lb-1", config, capabilities: [] }]);
  const lbEvents = link.takeLb();
  assert.equal(lbEvents.length, 1);
  const ready = lbEvents[0];
  assert.ok(ready?.kind === "ready");
  assert.equal(ready.setupMs, 3 * LATENCY, "dial + HELLO + ACK");
  assert.deepEqual(ready.ack, {
    type: "ACK",
    seq: 1,
    re: 1,
    version: 1,
    server_id: "web-1",
    metrics: config.metrics,
  });
  assert.equal(link.lb.deadline, undefined);
  assert.equal(link.server.lbId, "lb-1");
});

Deno.test("ServerSession + LbSession: 100 checks all succeed with seqs in step", () => {
  const link = readyLink();
  const health = new HealthTracker({ fall: 3 }, link.now);
  const rtts: number[] = [];
  for (let i = 0; i < 100; i++) {
    link.advanceTo(link.now + 1000);
    link.fromLb(link.lb.check(link.now));
    link.run();
    const events = link.takeLb();
    assert.equal(events.length, 1, `check ${i}`);
    const c = events[0];
    assert.ok(c?.kind === "check" && c.ok, `check ${i}: ${JSON.stringify(c)}`);
    assert.deepEqual(c.response.metrics, { cpu_percent: 7, mem_percent: 31.5 });
    assert.equal(c.response.re, i + 2);
    assert.equal(c.response.seq, i + 2);
    rtts.push(c.rttMs);
    health.success(link.now);
  }
  assert.deepEqual(new Set(rtts), new Set([2 * LATENCY]));
  assert.equal(health.state, "UP");
  assert.equal(health.consecutiveSuccesses, 100);
  assert.equal(link.healthCalls.length, 100);
  assert.equal(link.toServer.length, 101);
  assert.equal(link.toLb.length, 101);
  assertSeqs(link.toServer);
  assertSeqs(link.toLb);
  assert.deepEqual(link.takeServer(), []);
  assert.equal(link.server.state, "READY");
  assert.equal(link.lb.state, "READY");
});

Deno.test("ServerSession + LbSession: CONFIG_UPDATE changes the metrics later checks report", () => {
  const link = readyLink();
  link.fromLb(
    link.lb.configure({ metrics: ["load_1", "disk_percent"], interval_ms: 500 }, link.now),
  );
  link.run();
  const config: SessionConfig = {
    interval_ms: 500,
    metrics: ["cpu_percent", "mem_percent", "load_1", "disk_percent"],
  };
  assert.deepEqual(link.takeLb(), [{ kind: "config", seq: 2, ok: true, config }]);
  assert.deepEqual(link.takeServer(), [{ kind: "configured", config }]);
  assert.deepEqual(link.server.config, config);

  link.fromLb(link.lb.check(link.now));
  link.run();
  const c = link.takeLb()[0];
  assert.ok(c?.kind === "check" && c.ok);
  assert.deepEqual(c.response.metrics, {
    cpu_percent: 7,
    mem_percent: 31.5,
    load_1: 0.2,
    disk_percent: 64,
  });
  assert.deepEqual(link.healthCalls.at(-1), config.metrics);
});

Deno.test("ServerSession + LbSession: a per-check metrics list overrides the session's once", () => {
  const link = readyLink();
  link.fromLb(link.lb.check(link.now, ["uptime_s"]));
  link.run();
  link.fromLb(link.lb.check(link.now));
  link.run();
  const [first, second] = link.takeLb();
  assert.ok(first?.kind === "check" && first.ok && second?.kind === "check" && second.ok);
  assert.deepEqual(Object.keys(first.response.metrics), ["cpu_percent", "mem_percent", "uptime_s"]);
  assert.deepEqual(Object.keys(second.response.metrics), ["cpu_percent", "mem_percent"]);
});

Deno.test("ServerSession + LbSession: BAD_CONFIG fails the update and keeps the session", () => {
  const link = readyLink();
  link.fromLb(link.lb.configure({ metrics: ["gpu_percent"] }, link.now));
  link.fromLb(link.lb.configure({ metrics: ["no_such_metric"] }, link.now));
  link.run();
  const events = link.takeLb();
  assert.deepEqual(
    events.map((e) => e.kind === "config" && !e.ok && [e.seq, e.code]),
    [[2, "BAD_CONFIG"], [3, "BAD_CONFIG"]],
  );
  assert.match((events[1] as { message: string }).message, /no_such_metric/);
  assert.deepEqual(link.takeServer(), [], "no configured, no close");
  assert.equal(link.server.state, "READY");
  assert.equal(link.lb.state, "READY");
  assert.equal(link.server.config.interval_ms, 10_000);

  link.fromLb(link.lb.check(link.now));
  link.run();
  const c = link.takeLb()[0];
  assert.ok(c?.kind === "check" && c.ok);
  assert.equal(c.response.re, 4);
});

Deno.test("ServerSession + LbSession: server-initiated terminate ends both sides cleanly", () => {
  const link = readyLink();
  link.fromServer(link.server.terminate("maintenance", link.now));
  link.run();
  assert.deepEqual(link.toLb.map((m) => m.type), ["ACK", "TERMINATE"]);
  assert.deepEqual(link.toServer.map((m) => m.type), ["HELLO", "TERMINATE_ACK"]);
  const lbEvents = link.takeLb();
  assert.deepEqual(lbEvents.map((e) => e.kind), ["terminated", "close"]);
  assert.deepEqual(lbEvents[0], { kind: "terminated", reason: "maintenance" });
  assert.equal((lbEvents[1] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  const serverEvents = link.takeServer();
  assert.equal(serverEvents.length, 1);
  assert.equal((serverEvents[0] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  assert.equal(link.server.state, "CLOSED");
  assert.equal(link.lb.state, "DISCONNECTED");
});

Deno.test("ServerSession + LbSession: a HEALTH_REQUEST crossing the server's TERMINATE is dropped", () => {
  const link = readyLink();
  // Both are on the wire before either side sees the other's message.
  link.fromLb(link.lb.check(link.now));
  link.fromServer(link.server.terminate("shutdown", link.now));
  link.run();
  assert.deepEqual(link.toServer.map((m) => m.type), ["HELLO", "HEALTH_REQUEST", "TERMINATE_ACK"]);
  assert.deepEqual(link.toLb.map((m) => m.type), ["ACK", "TERMINATE"], "no HEALTH_RESPONSE");
  assert.deepEqual(link.healthCalls, []);
  assert.deepEqual(link.takeLb().map((e) => e.kind), ["terminated", "close"]);
  assert.equal((link.takeServer()[0] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  link.advanceTo(link.now + 10_000);
  assert.deepEqual(link.takeLb(), [], "no check timeout afterwards");
});

Deno.test("ServerSession + LbSession: LB-initiated terminate ends both sides cleanly", () => {
  const link = readyLink();
  link.fromLb(link.lb.terminate("lb shutdown", link.now));
  link.run();
  assert.deepEqual(link.toServer.map((m) => m.type), ["HELLO", "TERMINATE"]);
  assert.deepEqual(link.toLb.map((m) => m.type), ["ACK", "TERMINATE_ACK"]);
  const serverEvents = link.takeServer();
  assert.equal(serverEvents.length, 1);
  assert.equal((serverEvents[0] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  assert.match((serverEvents[0] as CloseAction).reason, /lb shutdown/);
  const lbEvents = link.takeLb();
  assert.deepEqual(lbEvents.map((e) => e.kind), ["close"], "no failure");
  assert.equal((lbEvents[0] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  assert.equal(link.server.state, "CLOSED");
  assert.equal(link.lb.state, "DISCONNECTED");
});

Deno.test("ServerSession + LbSession: token expiry makes the server terminate the session", () => {
  const link = readyLink({ auth: (_t, now) => ({ ok: true, expiresAt: now + 30_000 }) });
  const expiresAt = link.server.deadline!;
  let checks = 0;
  while (link.now + 10_000 < expiresAt) {
    link.advanceTo(link.now + 10_000);
    link.fromLb(link.lb.check(link.now));
    link.run();
    const c = link.takeLb()[0];
    assert.ok(c?.kind === "check" && c.ok);
    checks++;
  }
  assert.equal(checks, 2);
  link.advanceTo(expiresAt - 1);
  assert.equal(link.server.state, "READY");
  link.advanceTo(expiresAt);
  const terminate = link.toLb.at(-1) as MessageOf<"TERMINATE">;
  assert.equal(terminate.type, "TERMINATE");
  assert.equal(terminate.reason, "token_expired");
  const lbEvents = link.takeLb();
  assert.deepEqual(lbEvents[0], { kind: "terminated", reason: "token_expired" });
  assert.equal(link.server.state, "CLOSED");
  assert.equal((link.takeServer()[0] as CloseAction).code, CLOSE_CODES.NO_ERROR);
  assert.equal(link.lb.state, "DISCONNECTED");
});

Deno.test("ServerSession + LbSession: an LB whose token is rejected sees failed peer_error UNAUTHORIZED", () => {
  const link = new Link({ auth: () => ({ ok: false, reason: "bad signature" }) });
  link.connect();
  const lbEvents = link.takeLb();
  assert.equal(lbEvents[0]?.kind, "failed");
  assert.deepEqual(
    lbEvents[0]?.kind === "failed" && [lbEvents[0].failure.kind, lbEvents[0].failure.code],
    ["peer_error", "UNAUTHORIZED"],
  );
  assert.equal((lbEvents[1] as CloseAction).code, CLOSE_CODES.UNAUTHORIZED);
  assert.equal(lbEvents.length, 2, "the server's close adds no second failure");
  assert.equal((link.takeServer()[0] as CloseAction).code, CLOSE_CODES.UNAUTHORIZED);
  assert.deepEqual(link.toLb.map((m) => m.type), ["ERROR"]);
  assert.deepEqual(link.toServer.map((m) => m.type), ["HELLO"], "the LB sends nothing back");
});

Deno.test("ServerSession + LbSession: a response delayed past the timeout is ignored and checks go on", () => {
  const link = readyLink({ timeoutMs: 500 });
  link.hold = (m) => m.type === "HEALTH_RESPONSE";
  link.fromLb(link.lb.check(link.now));
  link.run();
  link.hold = undefined;
  link.advanceTo(link.now + 500);
  const timeout = link.takeLb();
  assert.ok(timeout[0]?.kind === "check" && !timeout[0].ok);
  assert.equal(timeout[0].failure.kind, "timeout");
  link.release();
  assert.deepEqual(link.takeLb(), [], "late HEALTH_RESPONSE ignored");
  assert.equal(link.lb.state, "READY");
  link.fromLb(link.lb.check(link.now));
  link.run();
  const c = link.takeLb()[0];
  assert.ok(c?.kind === "check" && c.ok);
  assert.equal(c.response.re, 3);
});

Deno.test("ServerSession + LbSession: the same LbSession reconnects to a new server session at seq 1", () => {
  const first = readyLink();
  first.fromLb(first.lb.check(first.now));
  first.run();
  first.fromServer(first.server.terminate("restart", first.now));
  first.run();
  assert.equal(first.lb.state, "DISCONNECTED");
  assert.deepEqual(first.toServer.map((m) => m.seq), [1, 2, 3]);

  const second = new Link({ lb: first.lb, start: first.now + 1000 });
  second.connect("tok-2");
  assert.deepEqual(second.tokens, ["tok-2"]);
  assert.deepEqual(second.toServer.map((m) => [m.type, m.seq]), [["HELLO", 1]]);
  assert.equal(second.lb.state, "READY");
  assert.equal(second.server.state, "READY");
  second.fromLb(second.lb.check(second.now));
  second.run();
  const c = second.takeLb().find((e) => e.kind === "check");
  assert.ok(c?.kind === "check" && c.ok);
  assert.equal(c.response.re, 2);
});
