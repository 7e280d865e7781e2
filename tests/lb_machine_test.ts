/**
 * Unit tests of the pure LB-side state machine, {@linkcode LbSession}.
 *
 * Time is an argument; no timers. Every message the machine asks to send is
 * pushed through the codec (`encodeMessage` then `decodeFrame`) by {@linkcode wire}.
 */

import assert from "node:assert/strict";
import { CodecError, decodeFrame, decodeMessage, encodeMessage } from "../lib/protocol/codec.ts";
import {
  type LbAction,
  LbSession,
  type LbSessionOptions,
  type LbSessionState,
} from "../lib/protocol/lb_session.ts";
import {
  CLOSE_CODES,
  type ErrorCode,
  type Message,
  MESSAGE_TYPES,
  type MessageOf,
  type MessageType,
  type UnsequencedMessage,
} from "../lib/protocol/wire.ts";

// --- fixtures ---------------------------------------------------------------

const T0 = 1_700_000_000_000;
const TIMEOUT = 2000;
const ACK_METRICS = ["cpu_percent", "mem_percent"];

interface Fixture {
  lb: LbSession;
  /** Every message the session asked to send, in order. */
  sent: Message[];
  /** The seq of the server's next message. */
  peerSeq: number;
}

function makeLb(options: Partial<LbSessionOptions> = {}): Fixture {
  return {
    lb: new LbSession({ lbId: "lb-1", timeoutMs: TIMEOUT, ...options }),
    sent: [],
    peerSeq: 1,
  };
}

/** Asserts every `send` encodes and decodes to itself, records it, returns the actions. */
function wire(f: Fixture, actions: LbAction[]): LbAction[] {
  for (const action of actions) {
    if (action.kind !== "send") continue;
    assert.deepEqual(decodeFrame(encodeMessage(action.message)), action.message);
    f.sent.push(action.message);
  }
  return actions;
}

/** Delivers a server message with an explicit seq. */
function recv(f: Fixture, message: Message, now: number): LbAction[] {
  return wire(f, f.lb.receive(message, now));
}

type Unseq<T extends MessageType> = Omit<MessageOf<T>, "seq">;

/** Delivers a server message, stamping the server's next seq. */
function fromServer(f: Fixture, message: UnsequencedMessage, now: number): LbAction[] {
  return recv(f, { ...message, seq: f.peerSeq++ } as unknown as Message, now);
}

function ack(re = 1): Unseq<"ACK"> {
  return { type: "ACK", re, version: 1, server_id: "web-1", metrics: ACK_METRICS };
}

function response(re: number): Unseq<"HEALTH_RESPONSE"> {
  return {
    type: "HEALTH_RESPONSE",
    re,
    status: "UP",
    metrics: { cpu_percent: 10, mem_percent: 20 },
    ts: T0,
  };
}

function configAck(re: number, interval = 2000): Unseq<"CONFIG_ACK"> {
  return { type: "CONFIG_ACK", re, config: { interval_ms: interval, metrics: ACK_METRICS } };
}

function error(code: ErrorCode, re?: number): Unseq<"ERROR"> {
  return re === undefined
    ? { type: "ERROR", code, message: `server says ${code}` }
    : { type: "ERROR", re, code, message: `server says ${code}` };
}

/** CONNECTING: connecting() at T0. */
function connecting(options: Partial<LbSessionOptions> = {}): Fixture {
  const f = makeLb(options);
  assert.deepEqual(f.lb.connecting(T0), []);
  return f;
}

/** HELLO_SENT: connected() at T0 + 5 sent HELLO seq 1. */
function helloSent(options: Partial<LbSessionOptions> = {}): Fixture {
  const f = connecting(options);
  wire(f, f.lb.connected("tok", T0 + 5));
  assert.equal(f.lb.state, "HELLO_SENT");
  return f;
}

/** READY: ACK (server seq 1) at T0 + 20. The LB's next seq is 2. */
function ready(options: Partial<LbSessionOptions> = {}): Fixture {
  const f = helloSent(options);
  fromServer(f, ack(), T0 + 20);
  assert.equal(f.lb.state, "READY");
  return f;
}

/** TERMINATING: READY, then terminate() at T0 + 100 sent TERMINATE seq 2. */
function terminating(options: Partial<LbSessionOptions> = {}): Fixture {
  const f = ready(options);
  wire(f, f.lb.terminate("lb stopping", T0 + 100));
  assert.equal(f.lb.state, "TERMINATING");
  return f;
}

function sendOf(action: LbAction | undefined): Message {
  assert.ok(action?.kind === "send", `expected a send, got ${JSON.stringify(action)}`);
  return action.message;
}

function closeOf(action: LbAction | undefined): Extract<LbAction, { kind: "close" }> {
  assert.ok(action?.kind === "close", `expected a close, got ${JSON.stringify(action)}`);
  return action;
}

/**
 * Asserts the tail `[ERROR code re, failed protocol code, close]` of a
 * protocol failure and that the session is DISCONNECTED.
 */
function assertProtocolFailure(
  f: Fixture,
  actions: LbAction[],
  code: ErrorCode,
  re: number | undefined,
  seq: number,
): void {
  assert.ok(actions.length >= 3, JSON.stringify(actions));
  const [send, failed, close] = actions.slice(-3);
  const e = sendOf(send) as MessageOf<"ERROR">;
  assert.equal(e.type, "ERROR");
  assert.equal(e.code, code);
  assert.equal(e.seq, seq);
  assert.equal(e.re, re);
  assert.ok(failed?.kind === "failed");
  assert.equal(failed.failure.kind, "protocol");
  assert.equal(failed.failure.code, code);
  const c = closeOf(close);
  assert.equal(c.code, CLOSE_CODES[code]);
  assert.equal(c.error?.code, code);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
  assert.equal(f.lb.checkPending, false);
}

function payload(value: unknown): Uint8Array {
  return new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
}

function codecError(value: unknown): CodecError {
  try {
    decodeMessage(payload(value));
  } catch (e) {
    assert.ok(e instanceof CodecError);
    return e;
  }
  throw new Error(`expected ${JSON.stringify(value)} not to decode`);
}

/** A valid instance of each type. */
function sample(type: MessageType, seq: number, re: number): Message {
  switch (type) {
    case "HELLO":
      return { type, seq, version: 1, token: "tok", lb_id: "lb-9" };
    case "ACK":
      return { ...ack(re), seq };
    case "HEALTH_REQUEST":
      return { type, seq };
    case "HEALTH_RESPONSE":
      return { ...response(re), seq };
    case "CONFIG_UPDATE":
      return { type, seq, config: { interval_ms: 2000 } };
    case "CONFIG_ACK":
      return { ...configAck(re), seq };
    case "ERROR":
      return { type, seq, code: "INTERNAL", message: "boom" };
    case "TERMINATE":
      return { type, seq, reason: "maintenance" };
    case "TERMINATE_ACK":
      return { type, seq, re };
    case "STATUS":
      return { type, seq, status: "UP", metrics: { cpu_percent: 1, mem_percent: 2 }, ts: 0 };
    case "HEARTBEAT":
      return { type, seq, hb: 1, status: "UP", cpu_percent: 1, mem_percent: 2 };
  }
}

// --- happy path -----------------------------------------------------------------

Deno.test("LbSession full happy path: HELLO, ACK, check, configure, terminate", () => {
  const f = makeLb({ intervalMs: 5000, metrics: ["load_1"] });
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.deepEqual(f.lb.connecting(T0), []);
  assert.equal(f.lb.state, "CONNECTING");

  assert.deepEqual(wire(f, f.lb.connected("jwt-token", T0 + 5)), [{
    kind: "send",
    message: {
      type: "HELLO",
      seq: 1,
      version: 1,
      token: "jwt-token",
      lb_id: "lb-1",
      interval_ms: 5000,
      metrics: ["load_1"],
    },
  }]);
  assert.equal(f.lb.state, "HELLO_SENT");
  assert.equal(f.lb.deadline, T0 + 5 + TIMEOUT);

  const ackMsg = { ...ack(1), seq: 1 } as MessageOf<"ACK">;
  f.peerSeq = 2;
  assert.deepEqual(recv(f, ackMsg, T0 + 30), [
    { kind: "ready", ack: ackMsg, setupMs: 30, capabilities: [] },
  ]);
  assert.equal(f.lb.state, "READY");
  assert.equal(f.lb.deadline, undefined);

  assert.deepEqual(wire(f, f.lb.check(T0 + 100)), [
    { kind: "send", message: { type: "HEALTH_REQUEST", seq: 2 } },
  ]);
  assert.equal(f.lb.checkPending, true);
  const r = { ...response(2), seq: 2 } as MessageOf<"HEALTH_RESPONSE">;
  f.peerSeq = 3;
  assert.deepEqual(recv(f, r, T0 + 107), [{ kind: "check", ok: true, rttMs: 7, response: r }]);
  assert.equal(f.lb.checkPending, false);

  assert.deepEqual(wire(f, f.lb.configure({ interval_ms: 2000 }, T0 + 200)), [
    { kind: "send", message: { type: "CONFIG_UPDATE", seq: 3, config: { interval_ms: 2000 } } },
  ]);
  assert.deepEqual(fromServer(f, configAck(3), T0 + 210), [
    { kind: "config", seq: 3, ok: true, config: { interval_ms: 2000, metrics: ACK_METRICS } },
  ]);

  assert.deepEqual(wire(f, f.lb.terminate("bye", T0 + 300)), [
    { kind: "send", message: { type: "TERMINATE", seq: 4, reason: "bye" } },
  ]);
  assert.equal(f.lb.state, "TERMINATING");
  const done = fromServer(f, { type: "TERMINATE_ACK", re: 4 }, T0 + 305);
  assert.equal(done.length, 1);
  assert.equal(closeOf(done[0]).code, CLOSE_CODES.NO_ERROR);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
  assert.deepEqual(f.sent.map((m) => m.seq), [1, 2, 3, 4]);
});

Deno.test("LbSession.connected() omits interval_ms and metrics from HELLO when not configured", () => {
  const f = connecting();
  const hello = sendOf(wire(f, f.lb.connected("t", T0))[0]);
  assert.deepEqual(hello, { type: "HELLO", seq: 1, version: 1, token: "t", lb_id: "lb-1" });
});

Deno.test("LbSession.setInterval() and setMetrics() change the next HELLO", () => {
  const f = makeLb();
  f.lb.setInterval(750);
  const names = ["disk_percent"];
  f.lb.setMetrics(names);
  names.push("mutated");
  f.lb.connecting(T0);
  const hello = sendOf(wire(f, f.lb.connected("t", T0))[0]) as MessageOf<"HELLO">;
  assert.equal(hello.interval_ms, 750);
  assert.deepEqual(hello.metrics, ["disk_percent"]);
});

Deno.test("LbSession.check() passes per-request metrics in HEALTH_REQUEST", () => {
  const f = ready();
  const req = sendOf(wire(f, f.lb.check(T0 + 50, ["uptime_s"]))[0]);
  assert.deepEqual(req, { type: "HEALTH_REQUEST", seq: 2, metrics: ["uptime_s"] });
});

Deno.test("LbSession.connected() does nothing outside CONNECTING", () => {
  const f = makeLb();
  assert.deepEqual(f.lb.connected("t", T0), []);
  assert.equal(f.lb.state, "DISCONNECTED");
  const r = ready();
  assert.deepEqual(r.lb.connected("t", T0), []);
  assert.equal(r.lb.state, "READY");
});

// --- the transition table -----------------------------------------------------------

interface StateFixture {
  make: () => Fixture;
  /** The seq the server's next message must carry. */
  inSeq: number;
  /** The LB's next seq. */
  outSeq: number;
  /** re to use in replies, by type. */
  re: Partial<Record<MessageType, number>>;
}

const STATES: Record<LbSessionState, StateFixture> = {
  DISCONNECTED: { make: () => makeLb(), inSeq: 1, outSeq: 1, re: {} },
  CONNECTING: { make: () => connecting(), inSeq: 1, outSeq: 1, re: {} },
  HELLO_SENT: { make: () => helloSent(), inSeq: 1, outSeq: 2, re: { ACK: 1 } },
  READY: {
    // check() sent seq 2, configure() sent seq 3.
    make: () => {
      const f = ready();
      wire(f, f.lb.check(T0 + 100));
      wire(f, f.lb.configure({ interval_ms: 2000 }, T0 + 100));
      return f;
    },
    inSeq: 2,
    outSeq: 4,
    re: { HEALTH_RESPONSE: 2, CONFIG_ACK: 3 },
  },
  TERMINATING: { make: () => terminating(), inSeq: 2, outSeq: 3, re: { TERMINATE_ACK: 2 } },
};

const PENDING_CONFIG_CLOSED = (actions: LbAction[]) => {
  const first = actions[0];
  assert.ok(first?.kind === "config" && !first.ok, JSON.stringify(first));
  assert.equal(first.seq, 3);
  assert.equal(first.code, "CLOSED");
  return actions.slice(1);
};

type Check = (f: Fixture, actions: LbAction[], inSeq: number) => void;

function terminatedBy(outSeq: number, unwrap = (a: LbAction[]) => a): Check {
  return (f, all, inSeq) => {
    const actions = unwrap(all);
    assert.equal(actions.length, 3, JSON.stringify(actions));
    assert.deepEqual(sendOf(actions[0]), { type: "TERMINATE_ACK", seq: outSeq, re: inSeq });
    assert.deepEqual(actions[1], { kind: "terminated", reason: "maintenance" });
    assert.equal(closeOf(actions[2]).code, CLOSE_CODES.NO_ERROR);
    assert.equal(f.lb.state, "DISCONNECTED");
  };
}

function peerError(unwrap = (a: LbAction[]) => a): Check {
  return (f, all) => {
    const actions = unwrap(all);
    assert.equal(actions.length, 2, JSON.stringify(actions));
    assert.deepEqual(actions[0], {
      kind: "failed",
      failure: { kind: "peer_error", code: "INTERNAL", message: "boom" },
    });
    assert.equal(closeOf(actions[1]).code, CLOSE_CODES.INTERNAL);
    assert.equal(f.lb.state, "DISCONNECTED");
  };
}

function ignored(f: Fixture, actions: LbAction[]): void {
  assert.deepEqual(actions, []);
  assert.equal(f.lb.state, "TERMINATING");
}

const ACCEPTED: Record<LbSessionState, Partial<Record<MessageType, Check>>> = {
  DISCONNECTED: {},
  CONNECTING: {},
  HELLO_SENT: {
    ACK: (f, actions) => {
      assert.equal(actions.length, 1);
      assert.ok(actions[0]?.kind === "ready");
      assert.equal(actions[0].setupMs, 505);
      assert.equal(f.lb.state, "READY");
    },
    ERROR: peerError(),
    TERMINATE: terminatedBy(2),
  },
  READY: {
    HEALTH_RESPONSE: (f, actions) => {
      assert.equal(actions.length, 1);
      const c = actions[0];
      assert.ok(c?.kind === "check" && c.ok);
      assert.equal(c.rttMs, 405);
      assert.equal(f.lb.state, "READY");
      assert.equal(f.lb.checkPending, false);
    },
    CONFIG_ACK: (f, actions) => {
      assert.deepEqual(actions, [
        { kind: "config", seq: 3, ok: true, config: { interval_ms: 2000, metrics: ACK_METRICS } },
      ]);
      assert.equal(f.lb.state, "READY");
    },
    ERROR: peerError(PENDING_CONFIG_CLOSED),
    TERMINATE: terminatedBy(4, PENDING_CONFIG_CLOSED),
  },
  TERMINATING: {
    HEALTH_RESPONSE: ignored,
    CONFIG_ACK: ignored,
    ERROR: ignored,
    TERMINATE: terminatedBy(3),
    TERMINATE_ACK: (f, actions) => {
      assert.equal(actions.length, 1);
      assert.equal(closeOf(actions[0]).code, CLOSE_CODES.NO_ERROR);
      assert.equal(f.lb.state, "DISCONNECTED");
    },
  },
};

for (const [state, fixture] of Object.entries(STATES) as [LbSessionState, StateFixture][]) {
  for (const type of MESSAGE_TYPES) {
    const check = ACCEPTED[state][type];
    const quiet = state === "DISCONNECTED" || state === "CONNECTING";
    const verb = quiet ? "ignores" : check ? "accepts" : "rejects with ERROR UNEXPECTED_MESSAGE";
    Deno.test(`LbSession.receive() in ${state} ${verb} ${type}`, () => {
      const f = fixture.make();
      assert.equal(f.lb.accepts(type), check !== undefined);
      const message = sample(type, fixture.inSeq, fixture.re[type] ?? 1);
      const actions = recv(f, message, T0 + 505);
      if (quiet) {
        assert.deepEqual(actions, []);
        assert.equal(f.lb.state, state);
      } else if (check) {
        check(f, actions, fixture.inSeq);
      } else {
        assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", fixture.inSeq, fixture.outSeq);
        if (state === "READY") PENDING_CONFIG_CLOSED(actions);
        else assert.equal(actions.length, 3);
        assert.equal(closeOf(actions.at(-1)).error?.messageType, type);
      }
    });
  }
}

// --- sequence numbers and bad input -------------------------------------------------

Deno.test("LbSession.receive() rejects an out-of-order seq from the server with BAD_MESSAGE", () => {
  const f = ready();
  const actions = recv(f, { ...response(2), seq: 3 } as Message, T0 + 50);
  assertProtocolFailure(f, actions, "BAD_MESSAGE", 3, 2);
});

Deno.test("LbSession.receive() rejects a first ACK whose seq is not 1 with BAD_MESSAGE", () => {
  const f = helloSent();
  assertProtocolFailure(f, recv(f, { ...ack(1), seq: 2 } as Message, T0), "BAD_MESSAGE", 2, 2);
});

Deno.test("LbSession.receiveInvalid() answers BAD_FRAME with ERROR BAD_FRAME and fails", () => {
  const f = ready();
  const actions = wire(f, f.lb.receiveInvalid(codecError("\u0000garbage"), T0));
  assert.equal(actions.length, 3);
  assertProtocolFailure(f, actions, "BAD_FRAME", undefined, 2);
});

Deno.test("LbSession.receiveInvalid() answers ACK version 2 in HELLO_SENT with UNSUPPORTED_VERSION", () => {
  const f = helloSent();
  const err = codecError({ ...ack(1), seq: 1, version: 2 });
  assert.equal(err.code, "UNSUPPORTED_VERSION");
  assertProtocolFailure(f, wire(f, f.lb.receiveInvalid(err, T0)), "UNSUPPORTED_VERSION", 1, 2);
});

Deno.test("LbSession.receiveInvalid() prefers UNEXPECTED_MESSAGE for a bad HEALTH_REQUEST in READY", () => {
  const f = ready();
  const err = codecError({ type: "HEALTH_REQUEST", seq: 2, metrics: 1 });
  assertProtocolFailure(f, wire(f, f.lb.receiveInvalid(err, T0)), "UNEXPECTED_MESSAGE", 2, 2);
});

Deno.test("LbSession.receiveInvalid() answers a bad HEALTH_RESPONSE field in READY with BAD_MESSAGE", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  const err = codecError({ ...response(2), seq: 2, metrics: { cpu_percent: 101, mem_percent: 1 } });
  assertProtocolFailure(f, wire(f, f.lb.receiveInvalid(err, T0)), "BAD_MESSAGE", 2, 3);
});

Deno.test("LbSession.receiveInvalid() does nothing while DISCONNECTED or CONNECTING", () => {
  assert.deepEqual(makeLb().lb.receiveInvalid(codecError("x"), T0), []);
  const f = connecting();
  assert.deepEqual(f.lb.receiveInvalid(codecError("x"), T0), []);
  assert.equal(f.lb.state, "CONNECTING");
});

// --- wrong re ------------------------------------------------------------------------

Deno.test("LbSession.receive() rejects an ACK whose re is not the HELLO's seq", () => {
  const f = helloSent();
  const actions = fromServer(f, ack(2), T0 + 10);
  assert.equal(actions.length, 3);
  assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", 1, 2);
});

Deno.test("LbSession.receive() rejects a HEALTH_RESPONSE whose re was never sent", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  const actions = fromServer(f, response(99), T0 + 110);
  assert.equal(actions.length, 3);
  assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", 2, 3);
});

Deno.test("LbSession.receive() rejects a HEALTH_RESPONSE when no check is pending", () => {
  const f = ready();
  assertProtocolFailure(f, fromServer(f, response(1), T0 + 110), "UNEXPECTED_MESSAGE", 2, 2);
});

Deno.test("LbSession.receive() rejects a second HEALTH_RESPONSE for an answered check", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  assert.equal(fromServer(f, response(2), T0 + 110)[0]?.kind, "check");
  assertProtocolFailure(f, fromServer(f, response(2), T0 + 111), "UNEXPECTED_MESSAGE", 3, 3);
});

Deno.test("LbSession.receive() rejects a HEALTH_RESPONSE whose re is a CONFIG_UPDATE", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  const actions = fromServer(f, response(3), T0 + 1);
  assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", 2, 4);
  assert.equal(actions.length, 4);
  const closed = actions[0];
  assert.ok(closed?.kind === "config" && !closed.ok);
  assert.deepEqual([closed.seq, closed.code], [3, "CLOSED"]);
  assert.match(closed.message, /re 3/, "the CLOSED message says why the session died");
});

Deno.test("LbSession.receive() rejects a CONFIG_ACK whose re was never sent", () => {
  const f = ready();
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  const actions = fromServer(f, configAck(7), T0 + 1);
  assert.equal(actions.length, 4, "config CLOSED, ERROR, failed, close");
  assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", 2, 3);
});

Deno.test("LbSession.receive() rejects a CONFIG_ACK whose re is a HEALTH_REQUEST", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  assertProtocolFailure(f, fromServer(f, configAck(2), T0 + 1), "UNEXPECTED_MESSAGE", 2, 3);
});

Deno.test("LbSession.receive() rejects a TERMINATE_ACK whose re is not the TERMINATE's seq", () => {
  const f = terminating();
  const actions = fromServer(f, { type: "TERMINATE_ACK", re: 1 }, T0 + 110);
  assert.equal(actions.length, 3);
  assertProtocolFailure(f, actions, "UNEXPECTED_MESSAGE", 2, 3);
});

// --- checks --------------------------------------------------------------------------

Deno.test("LbSession.check() returns [] while a check is pending", () => {
  const f = ready();
  assert.equal(wire(f, f.lb.check(T0 + 100)).length, 1);
  assert.deepEqual(f.lb.check(T0 + 150), []);
  assert.deepEqual(f.lb.check(T0 + 150, ["load_1"]), []);
  assert.equal(f.lb.deadline, T0 + 100 + TIMEOUT, "the pending check's deadline is kept");
  fromServer(f, response(2), T0 + 160);
  assert.deepEqual(wire(f, f.lb.check(T0 + 200)), [
    { kind: "send", message: { type: "HEALTH_REQUEST", seq: 3 } },
  ]);
});

Deno.test("LbSession.check() returns [] unless READY", () => {
  assert.deepEqual(makeLb().lb.check(T0), []);
  assert.deepEqual(connecting().lb.check(T0), []);
  assert.deepEqual(helloSent().lb.check(T0), []);
  assert.deepEqual(terminating().lb.check(T0), []);
});

Deno.test("LbSession.tick() reports a check timeout at now + timeoutMs and ignores the late answer", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT - 1), []);
  const actions = f.lb.tick(T0 + 100 + TIMEOUT);
  assert.equal(actions.length, 1);
  const c = actions[0];
  assert.ok(c?.kind === "check" && !c.ok);
  assert.equal(c.failure.kind, "timeout");
  assert.match(c.failure.message, /2000 ms/);
  assert.equal(f.lb.checkPending, false);
  assert.equal(f.lb.deadline, undefined);
  assert.deepEqual(fromServer(f, response(2), T0 + 100 + TIMEOUT + 5), [], "late answer ignored");
  assert.equal(f.lb.state, "READY");
  // A new check works, and its answer is matched by its own seq.
  wire(f, f.lb.check(T0 + 3000));
  const ok = fromServer(f, response(3), T0 + 3004);
  assert.ok(ok[0]?.kind === "check" && ok[0].ok);
  assert.equal(ok[0].rttMs, 4);
});

Deno.test("LbSession.tick() reports each check timeout once", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  assert.equal(f.lb.tick(T0 + TIMEOUT).length, 1);
  assert.deepEqual(f.lb.tick(T0 + TIMEOUT + 1), []);
});

Deno.test("LbSession.receive() ignores late HEALTH_RESPONSEs for many timed-out checks", () => {
  const f = ready();
  let now = T0;
  const timedOut: number[] = [];
  for (let i = 0; i < 10; i++) {
    const seq = sendOf(wire(f, f.lb.check(now))[0]).seq;
    timedOut.push(seq);
    now += TIMEOUT;
    assert.equal(f.lb.tick(now).length, 1);
  }
  for (const re of timedOut) assert.deepEqual(fromServer(f, response(re), now), []);
  assert.equal(f.lb.state, "READY");
});

Deno.test("LbSession.receive() drops a late HEALTH_RESPONSE once; a second reply to it is UNEXPECTED_MESSAGE", () => {
  const f = ready();
  const seq = sendOf(wire(f, f.lb.check(T0))[0]).seq;
  assert.equal(f.lb.tick(T0 + TIMEOUT).length, 1);
  assert.deepEqual(fromServer(f, response(seq), T0 + TIMEOUT + 1), [], "first late reply dropped");
  // The server answers the same request again: it answers what was never asked.
  const again = fromServer(f, response(seq), T0 + TIMEOUT + 2);
  const failed = again.find((a) => a.kind === "failed");
  assert.ok(failed?.kind === "failed" && failed.failure.code === "UNEXPECTED_MESSAGE");
  assert.ok(again.some((a) => a.kind === "close"));
  assert.equal(f.lb.state, "DISCONNECTED");
});

// --- configure -----------------------------------------------------------------------

Deno.test("LbSession.configure() returns [] unless READY", () => {
  assert.deepEqual(makeLb().lb.configure({ interval_ms: 500 }, T0), []);
  assert.deepEqual(connecting().lb.configure({ interval_ms: 500 }, T0), []);
  assert.deepEqual(helloSent().lb.configure({ interval_ms: 500 }, T0), []);
  assert.deepEqual(terminating().lb.configure({ interval_ms: 500 }, T0), []);
});

Deno.test("LbSession.configure() copies the config it sends", () => {
  const f = ready();
  const config = { metrics: ["load_1"] };
  const msg = sendOf(wire(f, f.lb.configure(config, T0))[0]) as MessageOf<"CONFIG_UPDATE">;
  assert.notEqual(msg.config, config);
  assert.deepEqual(msg.config, { metrics: ["load_1"] });
});

Deno.test("LbSession.receive() turns ERROR BAD_CONFIG with a pending re into config ok:false and stays READY", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  const actions = fromServer(f, error("BAD_CONFIG", 3), T0 + 10);
  assert.deepEqual(actions, [
    { kind: "config", seq: 3, ok: false, code: "BAD_CONFIG", message: "server says BAD_CONFIG" },
  ]);
  assert.equal(f.lb.state, "READY");
  assert.equal(f.lb.checkPending, true, "the pending check survives");
  const ok = fromServer(f, response(2), T0 + 12);
  assert.ok(ok[0]?.kind === "check" && ok[0].ok);
});

Deno.test("LbSession.receive() fails on ERROR BAD_CONFIG whose re is no pending CONFIG_UPDATE", () => {
  const f = ready();
  const actions = fromServer(f, error("BAD_CONFIG", 9), T0);
  assert.deepEqual(actions[0], {
    kind: "failed",
    failure: { kind: "peer_error", code: "BAD_CONFIG", message: "server says BAD_CONFIG" },
  });
  // BAD_CONFIG never closes a session by itself: an unsolicited one is unexpected.
  assert.equal(closeOf(actions[1]).code, CLOSE_CODES.UNEXPECTED_MESSAGE);
  assert.equal(f.lb.state, "DISCONNECTED");
});

Deno.test("LbSession matches several pending CONFIG_UPDATEs by seq, in any order", () => {
  const f = ready();
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  wire(f, f.lb.configure({ interval_ms: 700 }, T0));
  assert.deepEqual(fromServer(f, error("BAD_CONFIG", 3), T0 + 1).map((a) => a.kind), ["config"]);
  const third = fromServer(f, configAck(4, 700), T0 + 2);
  assert.ok(third[0]?.kind === "config" && third[0].ok && third[0].seq === 4);
  const first = fromServer(f, configAck(2, 500), T0 + 3);
  assert.ok(first[0]?.kind === "config" && first[0].ok && first[0].seq === 2);
  assert.equal(f.lb.deadline, undefined);
});

Deno.test("LbSession.tick() reports config TIMEOUT at now + timeoutMs and ignores the late CONFIG_ACK", () => {
  const f = ready();
  wire(f, f.lb.configure({ interval_ms: 500 }, T0 + 100));
  assert.equal(f.lb.deadline, T0 + 100 + TIMEOUT);
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT - 1), []);
  const actions = f.lb.tick(T0 + 100 + TIMEOUT);
  assert.equal(actions.length, 1);
  const c = actions[0];
  assert.ok(c?.kind === "config" && !c.ok);
  assert.equal(c.seq, 2);
  assert.equal(c.code, "TIMEOUT");
  assert.equal(f.lb.deadline, undefined);
  assert.deepEqual(fromServer(f, configAck(2), T0 + 100 + TIMEOUT + 1), []);
  assert.equal(f.lb.state, "READY");
});

Deno.test({
  name: "LbSession.receive() ignores a late ERROR BAD_CONFIG for a timed-out CONFIG_UPDATE",
  fn: () => {
    const f = ready();
    wire(f, f.lb.configure({ interval_ms: 500 }, T0));
    const timedOut = f.lb.tick(T0 + TIMEOUT);
    assert.ok(timedOut[0]?.kind === "config" && !timedOut[0].ok);
    assert.equal(timedOut[0].code, "TIMEOUT");
    assert.deepEqual(fromServer(f, error("BAD_CONFIG", 2), T0 + TIMEOUT + 1), []);
    assert.equal(f.lb.state, "READY");
  },
});

Deno.test("LbSession reports pending configs as CLOSED when the session dies", () => {
  const cases: [string, (f: Fixture) => LbAction[]][] = [
    ["ERROR", (f) => fromServer(f, error("INTERNAL"), T0 + 1)],
    ["TERMINATE", (f) => fromServer(f, { type: "TERMINATE", reason: "x" }, T0 + 1)],
    ["closed()", (f) => f.lb.closed("reset", T0 + 1)],
    ["abandon()", (f) => f.lb.abandon(CLOSE_CODES.CHECK_FAILED, "down")],
    ["terminate()", (f) => wire(f, f.lb.terminate("bye", T0 + 1))],
    ["protocol error", (f) => fromServer(f, ack(), T0 + 1)],
  ];
  for (const [what, kill] of cases) {
    const f = ready();
    wire(f, f.lb.configure({ interval_ms: 500 }, T0));
    wire(f, f.lb.configure({ metrics: ["load_1"] }, T0));
    const actions = kill(f);
    const closed = actions.filter((a) => a.kind === "config");
    assert.deepEqual(
      closed.map((a) => a.kind === "config" && !a.ok && [a.seq, a.code]),
      [[2, "CLOSED"], [3, "CLOSED"]],
      what,
    );
    const later = f.lb.tick(T0 + 10 * TIMEOUT).filter((a) => a.kind === "config");
    assert.deepEqual(later, [], `${what}: no later config TIMEOUT`);
  }
});

// --- TERMINATE from the server, ERROR, closed() ---------------------------------------

Deno.test("LbSession.receive() acks TERMINATE in HELLO_SENT and reports terminated", () => {
  const f = helloSent();
  const actions = fromServer(f, { type: "TERMINATE", reason: "draining" }, T0 + 10);
  assert.deepEqual(actions.slice(0, 2), [
    { kind: "send", message: { type: "TERMINATE_ACK", seq: 2, re: 1 } },
    { kind: "terminated", reason: "draining" },
  ]);
  assert.equal(closeOf(actions[2]).code, CLOSE_CODES.NO_ERROR);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.deepEqual(f.lb.tick(T0 + 5 + TIMEOUT), [], "no ACK timeout afterwards");
});

Deno.test("LbSession.receive() acks TERMINATE in READY, dropping a pending check silently", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  const actions = fromServer(f, { type: "TERMINATE", reason: "token_expired" }, T0 + 110);
  assert.equal(actions.length, 3);
  assert.deepEqual(sendOf(actions[0]), { type: "TERMINATE_ACK", seq: 3, re: 2 });
  assert.deepEqual(actions[1], { kind: "terminated", reason: "token_expired" });
  assert.equal(closeOf(actions[2]).code, CLOSE_CODES.NO_ERROR);
  assert.equal(f.lb.checkPending, false);
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT), []);
});

Deno.test("LbSession.receive() reports TERMINATE without reason with reason ''", () => {
  const f = ready();
  const actions = fromServer(f, { type: "TERMINATE" }, T0);
  assert.deepEqual(actions[1], { kind: "terminated", reason: "" });
});

Deno.test("LbSession.receive() surfaces ERROR UNAUTHORIZED in HELLO_SENT as failed peer_error", () => {
  const f = helloSent();
  const actions = fromServer(f, error("UNAUTHORIZED", 1), T0 + 10);
  assert.deepEqual(actions[0], {
    kind: "failed",
    failure: { kind: "peer_error", code: "UNAUTHORIZED", message: "server says UNAUTHORIZED" },
  });
  assert.equal(actions.length, 2, "no ERROR is sent back");
  assert.equal(closeOf(actions[1]).code, CLOSE_CODES.UNAUTHORIZED);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
  assert.equal(f.sent.length, 1);
});

Deno.test("LbSession.receive() closes with the code of any non-BAD_CONFIG ERROR in READY", () => {
  const codes: ErrorCode[] = [
    "BAD_FRAME",
    "BAD_MESSAGE",
    "UNEXPECTED_MESSAGE",
    "UNSUPPORTED_VERSION",
    "UNAUTHORIZED",
    "INTERNAL",
  ];
  for (const code of codes) {
    const f = ready();
    const actions = fromServer(f, error(code, 1), T0);
    assert.equal(actions.length, 2);
    assert.ok(actions[0]?.kind === "failed");
    assert.equal(actions[0].failure.kind, "peer_error");
    assert.equal(actions[0].failure.code, code);
    assert.equal(closeOf(actions[1]).code, CLOSE_CODES[code]);
  }
});

Deno.test("LbSession.closed() in DISCONNECTED does nothing", () => {
  assert.deepEqual(makeLb().lb.closed("gone", T0), []);
});

Deno.test("LbSession.closed() in CONNECTING fails with kind connect", () => {
  const f = connecting();
  assert.deepEqual(f.lb.closed("refused", T0), [
    { kind: "failed", failure: { kind: "connect", message: "refused" } },
  ]);
  assert.equal(f.lb.state, "DISCONNECTED");
});

Deno.test("LbSession.closed() in HELLO_SENT fails with kind closed and clears the ACK deadline", () => {
  const f = helloSent();
  assert.deepEqual(f.lb.closed("reset", T0 + 10), [
    { kind: "failed", failure: { kind: "closed", message: "reset" } },
  ]);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
  assert.deepEqual(f.lb.tick(T0 + 5 + TIMEOUT), []);
});

Deno.test("LbSession.closed() in READY fails with kind closed and drops a pending check", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  assert.deepEqual(f.lb.closed("idle timeout", T0 + 110), [
    { kind: "failed", failure: { kind: "closed", message: "idle timeout" } },
  ]);
  assert.equal(f.lb.checkPending, false);
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT), []);
});

Deno.test("LbSession.closed() in TERMINATING is not a failure", () => {
  const f = terminating();
  assert.deepEqual(f.lb.closed("closed by peer", T0 + 110), []);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT), [], "no terminate timeout afterwards");
});

Deno.test("LbSession.connectFailed() fails with kind connect only while CONNECTING", () => {
  const f = connecting();
  assert.deepEqual(f.lb.connectFailed("no route", T0), [
    { kind: "failed", failure: { kind: "connect", message: "no route" } },
  ]);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.deepEqual(f.lb.connectFailed("again", T0), []);
  const r = ready();
  assert.deepEqual(r.lb.connectFailed("late", T0), []);
  assert.equal(r.lb.state, "READY");
});

// --- terminate(), abandon() ---------------------------------------------------------

Deno.test("LbSession.terminate() in HELLO_SENT sends TERMINATE and replaces the ACK deadline", () => {
  const f = helloSent();
  const actions = wire(f, f.lb.terminate("cancel", T0 + 50));
  assert.deepEqual(actions, [
    { kind: "send", message: { type: "TERMINATE", seq: 2, reason: "cancel" } },
  ]);
  assert.equal(f.lb.state, "TERMINATING");
  assert.equal(f.lb.deadline, T0 + 50 + TIMEOUT);
  assert.deepEqual(f.lb.tick(T0 + 5 + TIMEOUT), [], "the ACK deadline no longer applies");
  assert.equal(f.lb.state, "TERMINATING");
});

Deno.test("LbSession.terminate() in READY drops a pending check and fails pending configs as CLOSED", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  wire(f, f.lb.configure({ interval_ms: 500 }, T0 + 100));
  const actions = wire(f, f.lb.terminate("bye", T0 + 150));
  assert.deepEqual(actions, [
    { kind: "config", seq: 3, ok: false, code: "CLOSED", message: "session terminated" },
    { kind: "send", message: { type: "TERMINATE", seq: 4, reason: "bye" } },
  ]);
  assert.equal(f.lb.checkPending, false);
  assert.equal(f.lb.deadline, T0 + 150 + TIMEOUT);
});

Deno.test("LbSession.tick() closes with TIMEOUT when TERMINATE_ACK does not come", () => {
  const f = terminating();
  assert.equal(f.lb.deadline, T0 + 100 + TIMEOUT);
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT - 1), []);
  const actions = f.lb.tick(T0 + 100 + TIMEOUT);
  assert.equal(actions.length, 1, "a close, no failure");
  assert.equal(closeOf(actions[0]).code, CLOSE_CODES.TIMEOUT);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
});

Deno.test("LbSession.terminate() in CONNECTING closes with GOING_AWAY; elsewhere idle it does nothing", () => {
  const f = connecting();
  const actions = f.lb.terminate("stop", T0);
  assert.equal(actions.length, 1);
  assert.equal(closeOf(actions[0]).code, CLOSE_CODES.GOING_AWAY);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.deepEqual(f.lb.terminate("stop", T0), []);
  const t = terminating();
  assert.deepEqual(t.lb.terminate("again", T0 + 200), []);
  assert.equal(t.sent.length, 2);
});

Deno.test("LbSession.abandon() closes without TERMINATE and drops a pending check silently", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  const actions = wire(f, f.lb.abandon(CLOSE_CODES.CHECK_FAILED, "marked down"));
  assert.deepEqual(actions, [
    { kind: "close", code: CLOSE_CODES.CHECK_FAILED, reason: "marked down" },
  ]);
  assert.equal(f.sent.length, 2, "HELLO and HEALTH_REQUEST only");
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.checkPending, false);
  assert.equal(f.lb.deadline, undefined);
  assert.deepEqual(f.lb.tick(T0 + 100 + TIMEOUT), []);
  assert.deepEqual(fromServer(f, response(2), T0 + 200), [], "late replies are ignored");
});

Deno.test("LbSession.abandon() works in HELLO_SENT and does nothing when DISCONNECTED", () => {
  const f = helloSent();
  const actions = f.lb.abandon(CLOSE_CODES.GOING_AWAY, "shutdown");
  assert.deepEqual(actions, [{ kind: "close", code: CLOSE_CODES.GOING_AWAY, reason: "shutdown" }]);
  assert.deepEqual(f.lb.tick(T0 + 5 + TIMEOUT), [], "no ACK timeout after abandon");
  assert.deepEqual(f.lb.abandon(CLOSE_CODES.GOING_AWAY, "again"), []);
});

// --- reconnect ------------------------------------------------------------------------

Deno.test("LbSession.connecting() starts a fresh session: seq 1 out, seq 1 expected in", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  fromServer(f, response(2), T0 + 101);
  wire(f, f.lb.configure({ interval_ms: 500 }, T0 + 102));
  f.lb.abandon(CLOSE_CODES.CHECK_FAILED, "down");

  f.lb.connecting(T0 + 10_000);
  const hello = sendOf(wire(f, f.lb.connected("tok2", T0 + 10_010))[0]);
  assert.equal(hello.seq, 1);
  f.peerSeq = 1;
  const actions = fromServer(f, ack(1), T0 + 10_030);
  assert.ok(actions[0]?.kind === "ready");
  assert.equal(actions[0].setupMs, 30);
  assert.equal(sendOf(wire(f, f.lb.check(T0 + 10_100))[0]).seq, 2);
});

Deno.test("LbSession.connecting() while READY discards the old session's pending work", () => {
  const f = ready();
  wire(f, f.lb.check(T0 + 100));
  assert.deepEqual(f.lb.connecting(T0 + 200), []);
  assert.equal(f.lb.state, "CONNECTING");
  assert.equal(f.lb.checkPending, false);
  assert.equal(f.lb.deadline, undefined);
  assert.equal(sendOf(wire(f, f.lb.connected("t", T0 + 210))[0]).seq, 1);
});

Deno.test("LbSession after a failure reconnects with seq 1 and forgets old late seqs", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  f.lb.tick(T0 + TIMEOUT); // seq 2 is now a remembered late seq
  fromServer(f, error("INTERNAL"), T0 + TIMEOUT + 1);
  assert.equal(f.lb.state, "DISCONNECTED");
  f.lb.connecting(T0 + 5000);
  wire(f, f.lb.connected("t", T0 + 5000));
  f.peerSeq = 1;
  fromServer(f, ack(1), T0 + 5001);
  // In the new session nothing with seq 2 was ever sent, so re 2 is a breach.
  assertProtocolFailure(f, fromServer(f, response(2), T0 + 5002), "UNEXPECTED_MESSAGE", 2, 2);
});

// --- deadlines ------------------------------------------------------------------------

Deno.test("LbSession.deadline is the ACK deadline in HELLO_SENT and tick() fails with timeout there", () => {
  const f = helloSent();
  assert.equal(f.lb.deadline, T0 + 5 + TIMEOUT);
  assert.deepEqual(f.lb.tick(T0 + 5 + TIMEOUT - 1), []);
  const actions = f.lb.tick(T0 + 5 + TIMEOUT);
  assert.equal(actions.length, 2);
  assert.ok(actions[0]?.kind === "failed");
  assert.equal(actions[0].failure.kind, "timeout");
  assert.equal(closeOf(actions[1]).code, CLOSE_CODES.TIMEOUT);
  assert.equal(f.lb.state, "DISCONNECTED");
  assert.equal(f.lb.deadline, undefined);
  assert.equal(f.sent.length, 1, "no ERROR or TERMINATE is sent");
});

Deno.test("LbSession.deadline is undefined when idle and the earliest pending deadline otherwise", () => {
  const f = ready();
  assert.equal(f.lb.deadline, undefined);
  wire(f, f.lb.configure({ interval_ms: 500 }, T0 + 300)); // T0 + 2300
  assert.equal(f.lb.deadline, T0 + 300 + TIMEOUT);
  wire(f, f.lb.check(T0 + 400)); // T0 + 2400
  assert.equal(f.lb.deadline, T0 + 300 + TIMEOUT);
  wire(f, f.lb.configure({ interval_ms: 600 }, T0 + 200)); // T0 + 2200
  assert.equal(f.lb.deadline, T0 + 200 + TIMEOUT);
  // Timing out the earliest two leaves the check as the next deadline.
  const first = f.lb.tick(T0 + 300 + TIMEOUT);
  assert.deepEqual(
    first.map((a) => a.kind === "config" && !a.ok && [a.seq, a.code]),
    [[2, "TIMEOUT"], [4, "TIMEOUT"]],
  );
  assert.equal(f.lb.deadline, T0 + 400 + TIMEOUT);
});

Deno.test("LbSession.tick() reports a check timeout and config timeouts due at the same time", () => {
  const f = ready();
  wire(f, f.lb.check(T0));
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  const actions = f.lb.tick(T0 + TIMEOUT);
  assert.deepEqual(actions.map((a) => a.kind), ["check", "config"]);
});

Deno.test("LbSession.setTimeout() applies to requests sent afterwards", () => {
  const f = ready();
  wire(f, f.lb.configure({ interval_ms: 500 }, T0));
  f.lb.setTimeout(300);
  wire(f, f.lb.check(T0));
  assert.equal(f.lb.deadline, T0 + 300);
  const actions = f.lb.tick(T0 + 300);
  assert.deepEqual(actions.map((a) => a.kind), ["check"], "the config still has 2000 ms");
  assert.equal(f.lb.deadline, T0 + TIMEOUT);
  wire(f, f.lb.terminate("bye", T0 + 500));
  assert.equal(f.lb.deadline, T0 + 800);
});

Deno.test("LbSession the ACK deadline follows timeoutMs from connected(), not connecting()", () => {
  const f = connecting({ timeoutMs: 750 });
  assert.equal(f.lb.deadline, undefined);
  wire(f, f.lb.connected("t", T0 + 1000));
  assert.equal(f.lb.deadline, T0 + 1750);
});

// --- every message goes through the codec ------------------------------------------------

Deno.test("LbSession every message it sends in a long session round-trips through the codec", () => {
  const f = ready({ intervalMs: 1000, metrics: ["load_1", "disk_percent"] });
  let now = T0 + 100;
  for (let i = 0; i < 30; i++) {
    const req = sendOf(wire(f, f.lb.check(now, i % 5 === 0 ? ["uptime_s"] : undefined))[0]);
    now += 3;
    fromServer(f, response(req.seq), now);
    now += 1000;
  }
  const cfg = sendOf(wire(f, f.lb.configure({ interval_ms: 100, metrics: [] }, now))[0]);
  fromServer(f, configAck(cfg.seq, 100), now + 1);
  wire(f, f.lb.receiveInvalid(codecError("]["), now + 2));
  assert.equal(f.lb.state, "DISCONNECTED");
  const types = f.sent.map((m) => m.type);
  assert.deepEqual(new Set(types), new Set(["HELLO", "HEALTH_REQUEST", "CONFIG_UPDATE", "ERROR"]));
  assert.deepEqual(f.sent.map((m) => m.seq), f.sent.map((_, i) => i + 1));
  for (const m of f.sent) assert.deepEqual(decodeFrame(encodeMessage(m)), m);
});

Deno.test("LbSession TERMINATE and TERMINATE_ACK it sends round-trip through the codec", () => {
  const a = terminating();
  const b = ready();
  fromServer(b, { type: "TERMINATE", reason: "x" }, T0);
  const sent = [...a.sent, ...b.sent];
  assert.deepEqual(sent.map((m) => m.type), ["HELLO", "TERMINATE", "HELLO", "TERMINATE_ACK"]);
  for (const m of sent) assert.deepEqual(decodeFrame(encodeMessage(m)), m);
});

Deno.test("LbSession reports a FAILING HEALTH_RESPONSE as a failed check of kind failing, with the reply and the failing checks named", () => {
  const f = ready();
  const seq = sendOf(wire(f, f.lb.check(T0))[0]).seq;
  const actions = fromServer(f, {
    ...response(seq),
    status: "FAILING",
    checks: [
      { name: "tcp 127.0.0.1:5432", ok: false, detail: "connection refused" },
      { name: "http http://127.0.0.1:8080/", ok: true, detail: "HTTP 200" },
    ],
  }, T0 + 3);
  const c = actions[0];
  assert.ok(c?.kind === "check" && !c.ok);
  assert.equal(c.failure.kind, "failing");
  assert.equal(c.failure.message, "server FAILING: tcp 127.0.0.1:5432: connection refused");
  assert.equal(c.reply?.rttMs, 3);
  assert.equal(c.reply?.response.status, "FAILING");
  assert.equal(f.lb.state, "READY", "the session stays up");
});
