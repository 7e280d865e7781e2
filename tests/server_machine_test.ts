/**
 * Unit tests of the pure server-side state machine, {@linkcode ServerSession}.
 *
 * Every call carries its own `now`; nothing here uses timers or the clock.
 * Every message the machine asks to send is pushed through the codec
 * (`encodeMessage` then `decodeFrame`) by {@linkcode wire}.
 */

import assert from "node:assert/strict";
import { CodecError, decodeFrame, decodeMessage, encodeMessage } from "../lib/protocol/codec.ts";
import { ProtocolError } from "../lib/protocol/errors.ts";
import {
  CLOSE_CODES,
  ERROR_CODES,
  type ErrorCode,
  type Message,
  MESSAGE_TYPES,
  type MessageOf,
  type MessageType,
  type ServerStatus,
  type SessionConfig,
} from "../lib/protocol/wire.ts";
import {
  type AuthResult,
  type ServerAction,
  ServerSession,
  type ServerSessionOptions,
  type ServerSessionState,
} from "../lib/protocol/server_session.ts";

// --- fixtures ---------------------------------------------------------------

const T0 = 1_700_000_000_000;
const EXPIRES = T0 + 3_600_000;
const OK: AuthResult = { ok: true, expiresAt: EXPIRES };

const AVAILABLE = ["cpu_percent", "mem_percent", "load_1", "disk_percent", "uptime_s"] as const;
const VALUES = {
  cpu_percent: 12.5,
  mem_percent: 40,
  load_1: 0.75,
  disk_percent: 55,
  uptime_s: 1234,
};

interface Fixture {
  session: ServerSession;
  /** The names passed to each `health()` call, in order. */
  healthCalls: string[][];
  /** Every message the session asked to send, in order. */
  sent: Message[];
  /** Status returned by `health()`; tests may change it. */
  status: { value: ServerStatus };
}

type Options = Partial<ServerSessionOptions>;

function makeServer(options: Options = {}, now = T0): Fixture {
  const healthCalls: string[][] = [];
  const status = { value: "UP" as ServerStatus };
  const session = new ServerSession({
    serverId: "web-1",
    availableMetrics: AVAILABLE,
    health: (names) => {
      healthCalls.push([...names]);
      return { status: status.value, metrics: { ...VALUES } };
    },
    ...options,
  }, now);
  return { session, healthCalls, sent: [], status };
}

/**
 * Checks that every `send` action encodes and decodes to the same message,
 * records it in `f.sent`, and returns the actions unchanged.
 */
function wire(f: Fixture, actions: ServerAction[]): ServerAction[] {
  for (const action of actions) {
    if (action.kind !== "send") continue;
    const frame = encodeMessage(action.message);
    assert.deepEqual(decodeFrame(frame), action.message);
    f.sent.push(action.message);
  }
  return actions;
}

function recv(f: Fixture, message: Message, now = T0): ServerAction[] {
  return wire(f, f.session.receive(message, now));
}

function hello(seq = 1, extra: Partial<MessageOf<"HELLO">> = {}): Message {
  return { type: "HELLO", seq, version: 1, token: "tok", lb_id: "lb-1", ...extra };
}

/** A session in READY after HELLO (seq 1) and a good token; ACK was seq 1. */
function readyServer(
  options: Options = {},
  helloExtra: Partial<MessageOf<"HELLO">> = {},
  auth: AuthResult = OK,
): Fixture {
  const f = makeServer(options);
  recv(f, hello(1, helloExtra));
  wire(f, f.session.authenticated(auth, T0 + 1));
  assert.equal(f.session.state, "READY");
  return f;
}

/** A session in TERMINATING: READY, then terminate() sent TERMINATE seq 2. */
function terminatingServer(options: Options = {}): Fixture {
  const f = readyServer(options);
  wire(f, f.session.terminate("shutdown", T0 + 10));
  assert.equal(f.session.state, "TERMINATING");
  return f;
}

/** A valid instance of each message type. */
function sample(type: MessageType, seq: number, re = 1): Message {
  switch (type) {
    case "HELLO":
      return { type, seq, version: 1, token: "tok", lb_id: "lb-1" };
    case "ACK":
      return { type, seq, re, version: 1, server_id: "x", metrics: ["cpu_percent", "mem_percent"] };
    case "HEALTH_REQUEST":
      return { type, seq };
    case "HEALTH_RESPONSE":
      return { type, seq, re, status: "UP", metrics: { cpu_percent: 1, mem_percent: 2 }, ts: 0 };
    case "CONFIG_UPDATE":
      return { type, seq, config: { interval_ms: 2000 } };
    case "CONFIG_ACK":
      return {
        type,
        seq,
        re,
        config: { interval_ms: 1000, metrics: ["cpu_percent", "mem_percent"] },
      };
    case "ERROR":
      return { type, seq, code: "INTERNAL", message: "boom" };
    case "TERMINATE":
      return { type, seq, reason: "bye" };
    case "TERMINATE_ACK":
      return { type, seq, re };
    case "STATUS":
      return { type, seq, status: "UP", metrics: { cpu_percent: 1, mem_percent: 2 }, ts: 0 };
    case "HEARTBEAT":
      return { type, seq, hb: 1, status: "UP", cpu_percent: 1, mem_percent: 2 };
  }
}

function sendOf(action: ServerAction | undefined): Message {
  assert.ok(action, "expected an action");
  assert.equal(action.kind, "send");
  return (action as { message: Message }).message;
}

/** Asserts `[ERROR code re, close CLOSE_CODES[code]]` and that the session is CLOSED. */
function assertFatal(
  f: Fixture,
  actions: ServerAction[],
  code: ErrorCode,
  re: number | undefined,
  seq: number,
): void {
  assert.equal(actions.length, 2, JSON.stringify(actions));
  const error = sendOf(actions[0]);
  assert.equal(error.type, "ERROR");
  const e = error as MessageOf<"ERROR">;
  assert.equal(e.code, code);
  assert.equal(e.seq, seq);
  assert.equal(e.re, re);
  assert.equal("re" in e, re !== undefined);
  assert.ok(e.message.length > 0);
  const close = actions[1];
  assert.ok(close && close.kind === "close");
  assert.equal(close.code, CLOSE_CODES[code]);
  assert.ok(close.error, "close carries the error");
  assert.equal(close.error.code, code);
  assert.equal(close.error.side, "remote");
  assert.equal(f.session.state, "CLOSED");
  assert.equal(f.session.deadline, undefined);
}

function assertClose(actions: ServerAction[], code: number): void {
  assert.equal(actions.length, 1, JSON.stringify(actions));
  const close = actions[0];
  assert.ok(close && close.kind === "close");
  assert.equal(close.code, code);
}

/** Bytes of one JSON value as a frame payload. */
function payload(value: unknown): Uint8Array {
  return new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
}

/** Decodes `value` and returns the CodecError it raises. */
function codecError(value: unknown): CodecError {
  try {
    decodeMessage(payload(value));
  } catch (e) {
    assert.ok(e instanceof CodecError);
    return e;
  }
  throw new Error(`expected ${JSON.stringify(value)} not to decode`);
}

// --- the transition table -----------------------------------------------------

interface StateFixture {
  make: () => Fixture;
  /** The seq the LB's next message must carry. */
  inSeq: number;
  /** The seq of the server's next message. */
  outSeq: number;
}

const STATES: Record<ServerSessionState, StateFixture> = {
  AWAIT_HELLO: { make: () => makeServer(), inSeq: 1, outSeq: 1 },
  AUTHENTICATING: {
    make: () => {
      const f = makeServer();
      recv(f, hello(1));
      assert.equal(f.session.state, "AUTHENTICATING");
      return f;
    },
    inSeq: 2,
    outSeq: 1,
  },
  READY: { make: () => readyServer(), inSeq: 2, outSeq: 2 },
  TERMINATING: { make: () => terminatingServer(), inSeq: 2, outSeq: 3 },
  CLOSED: {
    make: () => {
      const f = readyServer();
      recv(f, { type: "TERMINATE", seq: 2 });
      assert.equal(f.session.state, "CLOSED");
      return f;
    },
    inSeq: 3,
    outSeq: 3,
  },
};

/** What each state does with each type it accepts; all other types are unexpected. */
const ACCEPTED: Record<
  ServerSessionState,
  Partial<Record<MessageType, (f: Fixture, actions: ServerAction[], inSeq: number) => void>>
> = {
  AWAIT_HELLO: {
    HELLO: (f, actions) => {
      assert.deepEqual(actions, [{ kind: "authenticate", token: "tok", lbId: "lb-1" }]);
      assert.equal(f.session.state, "AUTHENTICATING");
    },
  },
  AUTHENTICATING: {},
  READY: {
    HEALTH_REQUEST: (f, actions, inSeq) => {
      assert.equal(actions.length, 1);
      assert.deepEqual(sendOf(actions[0]), {
        type: "HEALTH_RESPONSE",
        seq: 2,
        re: inSeq,
        status: "UP",
        metrics: { cpu_percent: 12.5, mem_percent: 40 },
        ts: T0 + 100,
      });
      assert.equal(f.session.state, "READY");
    },
    CONFIG_UPDATE: (f, actions, inSeq) => {
      const config: SessionConfig = { interval_ms: 2000, metrics: ["cpu_percent", "mem_percent"] };
      assert.deepEqual(actions, [
        { kind: "send", message: { type: "CONFIG_ACK", seq: 2, re: inSeq, config } },
        { kind: "configured", config },
      ]);
      assert.equal(f.session.state, "READY");
    },
    TERMINATE: (f, actions, inSeq) => {
      assert.equal(actions.length, 2);
      assert.deepEqual(sendOf(actions[0]), { type: "TERMINATE_ACK", seq: 2, re: inSeq });
      assert.ok(actions[1]?.kind === "close");
      assert.equal(actions[1].code, CLOSE_CODES.NO_ERROR);
      assert.equal(f.session.state, "CLOSED");
    },
    ERROR: (f, actions) => {
      // The peer reported a breach: close with its code and send nothing back.
      assertClose(actions, CLOSE_CODES.INTERNAL);
      assert.equal(f.session.state, "CLOSED");
    },
  },
  TERMINATING: {
    HEALTH_REQUEST: (f, actions) => {
      assert.deepEqual(actions, []);
      assert.equal(f.session.state, "TERMINATING");
    },
    CONFIG_UPDATE: (f, actions) => {
      assert.deepEqual(actions, []);
      assert.equal(f.session.state, "TERMINATING");
      assert.equal(f.session.config.interval_ms, 10_000, "ignored update is not applied");
    },
    TERMINATE: (f, actions, inSeq) => {
      assert.equal(actions.length, 2);
      assert.deepEqual(sendOf(actions[0]), { type: "TERMINATE_ACK", seq: 3, re: inSeq });
      assert.ok(actions[1]?.kind === "close");
      assert.equal(actions[1].code, CLOSE_CODES.NO_ERROR);
      assert.equal(f.session.state, "CLOSED");
    },
    TERMINATE_ACK: (f, actions) => {
      assertClose(actions, CLOSE_CODES.NO_ERROR);
      assert.equal(f.session.state, "CLOSED");
    },
    ERROR: (f, actions) => {
      assertClose(actions, CLOSE_CODES.INTERNAL);
      assert.equal(f.session.state, "CLOSED");
    },
  },
  CLOSED: {},
};

for (const [state, fixture] of Object.entries(STATES) as [ServerSessionState, StateFixture][]) {
  for (const type of MESSAGE_TYPES) {
    const check = ACCEPTED[state][type];
    const verb = state === "CLOSED"
      ? "ignores"
      : check
      ? "accepts"
      : "rejects with ERROR UNEXPECTED_MESSAGE";
    Deno.test(`ServerSession.receive() in ${state} ${verb} ${type}`, () => {
      const f = fixture.make();
      // TERMINATE_ACK must answer the TERMINATE the server sent (seq 2).
      const message = sample(type, fixture.inSeq, type === "TERMINATE_ACK" ? 2 : 1);
      assert.equal(f.session.accepts(type), check !== undefined);
      const actions = recv(f, message, T0 + 100);
      if (state === "CLOSED") {
        assert.deepEqual(actions, []);
        assert.equal(f.session.state, "CLOSED");
      } else if (check) {
        check(f, actions, fixture.inSeq);
      } else if (type === "ERROR") {
        // An ERROR is never answered with an ERROR: the session just closes.
        assertClose(actions, CLOSE_CODES.UNEXPECTED_MESSAGE);
        assert.equal(f.session.state, "CLOSED");
      } else {
        assertFatal(f, actions, "UNEXPECTED_MESSAGE", fixture.inSeq, fixture.outSeq);
        const close = actions[1] as Extract<ServerAction, { kind: "close" }>;
        assert.ok(close.error instanceof ProtocolError);
        assert.equal(close.error.messageType, type);
        assert.equal(close.error.seq, fixture.inSeq);
      }
    });
  }
}

Deno.test("ServerSession.accepts() lists exactly the types of each state's table row", () => {
  for (const [state, fixture] of Object.entries(STATES) as [ServerSessionState, StateFixture][]) {
    const f = fixture.make();
    const accepted = MESSAGE_TYPES.filter((t) => f.session.accepts(t));
    assert.deepEqual(accepted, Object.keys(ACCEPTED[state]).sort((a, b) => order(a) - order(b)));
  }
  function order(t: string): number {
    return (MESSAGE_TYPES as readonly string[]).indexOf(t);
  }
});

// --- sequence numbers -------------------------------------------------------

Deno.test("ServerSession stamps outgoing seq 1, 2, 3... across ACK, replies, ERROR and TERMINATE", () => {
  const f = readyServer();
  recv(f, { type: "HEALTH_REQUEST", seq: 2 });
  recv(f, { type: "CONFIG_UPDATE", seq: 3, config: { interval_ms: 500 } });
  recv(f, { type: "CONFIG_UPDATE", seq: 4, config: { interval_ms: 5 } });
  recv(f, { type: "HEALTH_REQUEST", seq: 5 });
  wire(f, f.session.terminate("shutdown", T0 + 50));
  assert.deepEqual(
    f.sent.map((m) => [m.type, m.seq, "re" in m ? m.re : undefined]),
    [
      ["ACK", 1, 1],
      ["HEALTH_RESPONSE", 2, 2],
      ["CONFIG_ACK", 3, 3],
      ["ERROR", 4, 4],
      ["HEALTH_RESPONSE", 5, 5],
      ["TERMINATE", 6, undefined],
    ],
  );
});

Deno.test("ServerSession.receive() rejects a first HELLO whose seq is not 1 with BAD_MESSAGE", () => {
  const f = makeServer();
  const actions = recv(f, hello(2));
  assertFatal(f, actions, "BAD_MESSAGE", 2, 1);
  const close = actions[1] as Extract<ServerAction, { kind: "close" }>;
  assert.equal(close.code, CLOSE_CODES.BAD_MESSAGE);
});

Deno.test("ServerSession.receive() rejects a skipped seq in READY with BAD_MESSAGE", () => {
  const f = readyServer();
  recv(f, { type: "HEALTH_REQUEST", seq: 2 });
  assertFatal(f, recv(f, { type: "HEALTH_REQUEST", seq: 4 }), "BAD_MESSAGE", 4, 3);
});

Deno.test("ServerSession.receive() rejects a repeated seq in READY with BAD_MESSAGE", () => {
  const f = readyServer();
  recv(f, { type: "HEALTH_REQUEST", seq: 2 });
  assertFatal(f, recv(f, { type: "HEALTH_REQUEST", seq: 2 }), "BAD_MESSAGE", 2, 3);
});

Deno.test("ServerSession.receive() checks seq before the type: out-of-order ACK is BAD_MESSAGE", () => {
  const f = readyServer();
  assertFatal(f, recv(f, sample("ACK", 7)), "BAD_MESSAGE", 7, 2);
});

Deno.test("ServerSession.receive() rejects an out-of-order HEALTH_REQUEST even while TERMINATING", () => {
  const f = terminatingServer();
  assertFatal(f, recv(f, { type: "HEALTH_REQUEST", seq: 3 }), "BAD_MESSAGE", 3, 3);
});

Deno.test("ServerSession.receive() counts ignored in-flight messages in the seq while TERMINATING", () => {
  const f = terminatingServer();
  assert.deepEqual(recv(f, { type: "HEALTH_REQUEST", seq: 2 }), []);
  assert.deepEqual(recv(f, { type: "CONFIG_UPDATE", seq: 3, config: { foo: 1 } as never }), []);
  assertClose(recv(f, { type: "TERMINATE_ACK", seq: 4, re: 2 }), CLOSE_CODES.NO_ERROR);
});

// --- HELLO negotiation --------------------------------------------------------

Deno.test("ServerSession.authenticated() sends ACK with re, version, server_id and ready", () => {
  const f = makeServer();
  assert.deepEqual(recv(f, hello(1)), [{ kind: "authenticate", token: "tok", lbId: "lb-1" }]);
  const actions = wire(f, f.session.authenticated(OK, T0 + 1));
  const config = { interval_ms: 10_000, metrics: ["cpu_percent", "mem_percent"] };
  assert.deepEqual(actions, [
    {
      kind: "send",
      message: {
        type: "ACK",
        seq: 1,
        re: 1,
        version: 1,
        server_id: "web-1",
        metrics: ["cpu_percent", "mem_percent"],
      },
    },
    { kind: "ready", lbId: "lb-1", config, capabilities: [] },
  ]);
  assert.equal(f.session.state, "READY");
  assert.equal(f.session.lbId, "lb-1");
  assert.deepEqual(f.session.config, config);
});

Deno.test("ServerSession HELLO metrics: unknown names dropped, cpu/mem always present, order kept", () => {
  const f = readyServer({}, { metrics: ["load_1", "bogus", "disk_percent", "load_1"] });
  const ack = f.sent[0] as MessageOf<"ACK">;
  const expected = ["cpu_percent", "mem_percent", "load_1", "disk_percent"];
  assert.deepEqual(ack.metrics, expected);
  assert.deepEqual(f.session.config.metrics, expected);
});

Deno.test("ServerSession HELLO metrics: an empty list still reports cpu_percent and mem_percent", () => {
  const f = readyServer({}, { metrics: [] });
  assert.deepEqual((f.sent[0] as MessageOf<"ACK">).metrics, ["cpu_percent", "mem_percent"]);
});

Deno.test("ServerSession HELLO metrics: naming only cpu_percent still adds mem_percent", () => {
  const f = readyServer({}, { metrics: ["cpu_percent", "uptime_s"] });
  assert.deepEqual(f.session.config.metrics, ["cpu_percent", "mem_percent", "uptime_s"]);
});

Deno.test("ServerSession HELLO without metrics uses cpu_percent and mem_percent by default", () => {
  const f = readyServer();
  assert.deepEqual((f.sent[0] as MessageOf<"ACK">).metrics, ["cpu_percent", "mem_percent"]);
});

Deno.test("ServerSession HELLO without metrics uses defaultMetrics, filtered and with cpu/mem", () => {
  const f = readyServer({ defaultMetrics: ["load_1", "not_available"] });
  const expected = ["cpu_percent", "mem_percent", "load_1"];
  assert.deepEqual((f.sent[0] as MessageOf<"ACK">).metrics, expected);
  assert.deepEqual(f.session.config.metrics, expected);
});

Deno.test("ServerSession HELLO metrics override defaultMetrics", () => {
  const f = readyServer({ defaultMetrics: ["load_1"] }, { metrics: ["uptime_s"] });
  assert.deepEqual(f.session.config.metrics, ["cpu_percent", "mem_percent", "uptime_s"]);
});

Deno.test("ServerSession HELLO interval_ms becomes the session config's interval_ms", () => {
  const f = makeServer();
  recv(f, hello(1, { interval_ms: 2500 }));
  const actions = wire(f, f.session.authenticated(OK, T0 + 1));
  const ready = actions[1];
  assert.ok(ready?.kind === "ready");
  assert.equal(ready.config.interval_ms, 2500);
  assert.equal(f.session.config.interval_ms, 2500);
});

Deno.test("ServerSession HELLO without interval_ms uses defaultIntervalMs (10000 unless set)", () => {
  assert.equal(readyServer().session.config.interval_ms, 10_000);
  assert.equal(readyServer({ defaultIntervalMs: 30_000 }).session.config.interval_ms, 30_000);
});

Deno.test("ServerSession.config returns a copy that callers cannot use to change the session", () => {
  const f = readyServer();
  const copy = f.session.config;
  copy.metrics.push("load_1");
  copy.interval_ms = 1;
  assert.deepEqual(f.session.config, {
    interval_ms: 10_000,
    metrics: ["cpu_percent", "mem_percent"],
  });
});

// --- HEALTH_REQUEST -------------------------------------------------------------

Deno.test("ServerSession.receive() calls health() with the session's metric names", () => {
  const f = readyServer({}, { metrics: ["load_1"] });
  const actions = recv(f, { type: "HEALTH_REQUEST", seq: 2 }, T0 + 500);
  assert.deepEqual(f.healthCalls, [["cpu_percent", "mem_percent", "load_1"]]);
  assert.deepEqual(sendOf(actions[0]), {
    type: "HEALTH_RESPONSE",
    seq: 2,
    re: 2,
    status: "UP",
    metrics: { cpu_percent: 12.5, mem_percent: 40, load_1: 0.75 },
    ts: T0 + 500,
  });
});

Deno.test("ServerSession.receive() uses HEALTH_REQUEST metrics for that answer only", () => {
  const f = readyServer({}, { metrics: ["load_1"] });
  const first = recv(f, { type: "HEALTH_REQUEST", seq: 2, metrics: ["uptime_s", "nope"] });
  assert.deepEqual((sendOf(first[0]) as MessageOf<"HEALTH_RESPONSE">).metrics, {
    cpu_percent: 12.5,
    mem_percent: 40,
    uptime_s: 1234,
  });
  const second = recv(f, { type: "HEALTH_REQUEST", seq: 3 });
  assert.deepEqual((sendOf(second[0]) as MessageOf<"HEALTH_RESPONSE">).metrics, {
    cpu_percent: 12.5,
    mem_percent: 40,
    load_1: 0.75,
  });
  assert.deepEqual(f.healthCalls, [
    ["cpu_percent", "mem_percent", "uptime_s"],
    ["cpu_percent", "mem_percent", "load_1"],
  ]);
  assert.deepEqual(f.session.config.metrics, ["cpu_percent", "mem_percent", "load_1"]);
});

Deno.test("ServerSession.receive() reports health()'s status and floors a fractional now in ts", () => {
  const f = readyServer();
  f.status.value = "DRAINING";
  const actions = recv(f, { type: "HEALTH_REQUEST", seq: 2 }, T0 + 123.9);
  const response = sendOf(actions[0]) as MessageOf<"HEALTH_RESPONSE">;
  assert.equal(response.status, "DRAINING");
  assert.equal(response.ts, T0 + 123);
});

Deno.test("ServerSession.receive() leaves out of HEALTH_RESPONSE values health() did not give", () => {
  const f = makeServer({
    health: () => ({ status: "UP", metrics: { cpu_percent: 1, mem_percent: 2 } }),
  });
  recv(f, hello(1, { metrics: ["load_1"] }));
  wire(f, f.session.authenticated(OK, T0));
  const actions = recv(f, { type: "HEALTH_REQUEST", seq: 2 });
  assert.deepEqual((sendOf(actions[0]) as MessageOf<"HEALTH_RESPONSE">).metrics, {
    cpu_percent: 1,
    mem_percent: 2,
  });
});

// --- CONFIG_UPDATE --------------------------------------------------------------

Deno.test("ServerSession.receive() applies CONFIG_UPDATE interval_ms and acks the whole config", () => {
  const f = readyServer({}, { metrics: ["load_1"] });
  const actions = recv(f, { type: "CONFIG_UPDATE", seq: 2, config: { interval_ms: 2000 } });
  const config = { interval_ms: 2000, metrics: ["cpu_percent", "mem_percent", "load_1"] };
  assert.deepEqual(actions, [
    { kind: "send", message: { type: "CONFIG_ACK", seq: 2, re: 2, config } },
    { kind: "configured", config },
  ]);
  assert.deepEqual(f.session.config, config);
});

Deno.test("ServerSession.receive() applies CONFIG_UPDATE metrics and later answers report them", () => {
  const f = readyServer({}, { metrics: ["load_1"], interval_ms: 700 });
  const actions = recv(f, {
    type: "CONFIG_UPDATE",
    seq: 2,
    config: { metrics: ["disk_percent", "disk_percent"] },
  });
  const config = { interval_ms: 700, metrics: ["cpu_percent", "mem_percent", "disk_percent"] };
  assert.deepEqual(sendOf(actions[0]), { type: "CONFIG_ACK", seq: 2, re: 2, config });
  const response = sendOf(recv(f, { type: "HEALTH_REQUEST", seq: 3 })[0]);
  assert.deepEqual((response as MessageOf<"HEALTH_RESPONSE">).metrics, {
    cpu_percent: 12.5,
    mem_percent: 40,
    disk_percent: 55,
  });
});

Deno.test("ServerSession.receive() acks an empty CONFIG_UPDATE with the unchanged config", () => {
  const f = readyServer({}, { interval_ms: 900 });
  const actions = recv(f, { type: "CONFIG_UPDATE", seq: 2, config: {} });
  assert.deepEqual(sendOf(actions[0]), {
    type: "CONFIG_ACK",
    seq: 2,
    re: 2,
    config: { interval_ms: 900, metrics: ["cpu_percent", "mem_percent"] },
  });
});

Deno.test("ServerSession.receive() accepts CONFIG_UPDATE interval_ms at both bounds", () => {
  const f = readyServer();
  recv(f, { type: "CONFIG_UPDATE", seq: 2, config: { interval_ms: 100 } });
  assert.equal(f.session.config.interval_ms, 100);
  recv(f, { type: "CONFIG_UPDATE", seq: 3, config: { interval_ms: 3_600_000 } });
  assert.equal(f.session.config.interval_ms, 3_600_000);
  assert.deepEqual(f.sent.map((m) => m.type), ["ACK", "CONFIG_ACK", "CONFIG_ACK"]);
});

const BAD_CONFIGS: [string, Record<string, unknown>][] = [
  ["an unknown key", { foo: 1 }],
  ["interval_ms below 100", { interval_ms: 99 }],
  ["interval_ms above one hour", { interval_ms: 3_600_001 }],
  ["a fractional interval_ms", { interval_ms: 150.5 }],
  ["a string interval_ms", { interval_ms: "1000" }],
  ["an unknown metric", { metrics: ["load_1", "bogus"] }],
  ["metrics that are not a list of names", { metrics: "load_1" }],
  ["a good interval with a bad metric", { interval_ms: 2000, metrics: ["bogus"] }],
];

for (const [what, config] of BAD_CONFIGS) {
  Deno.test(`ServerSession.receive() answers CONFIG_UPDATE with ${what} with BAD_CONFIG and stays READY`, () => {
    const f = readyServer({}, { interval_ms: 1000 });
    const before = f.session.config;
    const actions = recv(f, { type: "CONFIG_UPDATE", seq: 2, config });
    assert.equal(actions.length, 1, "no close, no configured");
    const error = sendOf(actions[0]) as MessageOf<"ERROR">;
    assert.equal(error.type, "ERROR");
    assert.equal(error.code, "BAD_CONFIG");
    assert.equal(error.re, 2);
    assert.equal(error.seq, 2);
    assert.equal(f.session.state, "READY");
    assert.deepEqual(f.session.config, before, "nothing of a rejected update is applied");
    // The session keeps working and the seqs keep counting.
    const next = recv(f, { type: "HEALTH_REQUEST", seq: 3 });
    assert.deepEqual(next.map((a) => a.kind === "send" && [a.message.type, a.message.seq]), [
      ["HEALTH_RESPONSE", 3],
    ]);
  });
}

Deno.test("ServerSession BAD_CONFIG names the offending field in its message", () => {
  const f = readyServer();
  const unknownKey = sendOf(
    recv(f, { type: "CONFIG_UPDATE", seq: 2, config: { foo: 1 } as never })[0],
  );
  assert.match((unknownKey as MessageOf<"ERROR">).message, /foo/);
  const metric = sendOf(recv(f, { type: "CONFIG_UPDATE", seq: 3, config: { metrics: ["zz"] } })[0]);
  assert.match((metric as MessageOf<"ERROR">).message, /zz/);
});

// --- timeouts ---------------------------------------------------------------

Deno.test("ServerSession.tick() closes with TIMEOUT when no HELLO arrives by 5000 ms", () => {
  const f = makeServer();
  assert.equal(f.session.deadline, T0 + 5000);
  assert.deepEqual(f.session.tick(T0 + 4999), []);
  assert.equal(f.session.state, "AWAIT_HELLO");
  const actions = f.session.tick(T0 + 5000);
  assertClose(actions, CLOSE_CODES.TIMEOUT);
  assert.equal(f.session.state, "CLOSED");
  assert.equal(f.session.deadline, undefined);
  assert.deepEqual(f.session.tick(T0 + 10_000), []);
});

Deno.test("ServerSession honours helloTimeoutMs", () => {
  const f = makeServer({ helloTimeoutMs: 200 });
  assert.equal(f.session.deadline, T0 + 200);
  assert.deepEqual(f.session.tick(T0 + 199), []);
  assertClose(f.session.tick(T0 + 200), CLOSE_CODES.TIMEOUT);
});

Deno.test("ServerSession.tick() closes with TIMEOUT when the token check outlasts the hello timeout", () => {
  const f = makeServer();
  recv(f, hello(1), T0 + 100);
  assert.equal(f.session.deadline, T0 + 5000);
  assertClose(f.session.tick(T0 + 5000), CLOSE_CODES.TIMEOUT);
  assert.deepEqual(f.session.authenticated(OK, T0 + 5001), [], "a late result is ignored");
  assert.equal(f.session.state, "CLOSED");
});

Deno.test("ServerSession a HELLO in time clears the hello timeout; the deadline becomes expiresAt", () => {
  const f = readyServer();
  assert.equal(f.session.deadline, EXPIRES);
  assert.deepEqual(f.session.tick(T0 + 5000), []);
  assert.equal(f.session.state, "READY");
});

Deno.test("ServerSession.tick() sends TERMINATE token_expired when READY reaches expiresAt", () => {
  const f = readyServer({}, {}, { ok: true, expiresAt: T0 + 60_000 });
  assert.equal(f.session.deadline, T0 + 60_000);
  assert.deepEqual(f.session.tick(T0 + 59_999), []);
  const actions = wire(f, f.session.tick(T0 + 60_000));
  assert.deepEqual(actions, [
    { kind: "send", message: { type: "TERMINATE", seq: 2, reason: "token_expired" } },
  ]);
  assert.equal(f.session.state, "TERMINATING");
  assert.equal(f.session.deadline, T0 + 61_000);
  assertClose(recv(f, { type: "TERMINATE_ACK", seq: 2, re: 2 }), CLOSE_CODES.NO_ERROR);
});

Deno.test("ServerSession.tick() after token expiry closes with TIMEOUT if TERMINATE is not acked", () => {
  const f = readyServer({}, {}, { ok: true, expiresAt: T0 + 60_000 });
  wire(f, f.session.tick(T0 + 60_500));
  assert.equal(f.session.deadline, T0 + 61_500);
  assert.deepEqual(f.session.tick(T0 + 61_499), []);
  assertClose(f.session.tick(T0 + 61_500), CLOSE_CODES.TIMEOUT);
  assert.equal(f.session.state, "CLOSED");
});

// --- authentication failures -------------------------------------------------

Deno.test("ServerSession.authenticated() answers a bad token with ERROR UNAUTHORIZED and closes", () => {
  const f = makeServer();
  recv(f, hello(1));
  const actions = wire(f, f.session.authenticated({ ok: false, reason: "bad signature" }, T0));
  assertFatal(f, actions, "UNAUTHORIZED", 1, 1);
  assert.match((sendOf(actions[0]) as MessageOf<"ERROR">).message, /bad signature/);
  assert.equal(f.session.lbId, undefined);
});

Deno.test("ServerSession.authenticated() rejects a token with expiresAt == now as UNAUTHORIZED", () => {
  const f = makeServer();
  recv(f, hello(1));
  const actions = wire(f, f.session.authenticated({ ok: true, expiresAt: T0 + 10 }, T0 + 10));
  assertFatal(f, actions, "UNAUTHORIZED", 1, 1);
});

Deno.test("ServerSession.authenticated() rejects a token that expired before now as UNAUTHORIZED", () => {
  const f = makeServer();
  recv(f, hello(1));
  const actions = wire(f, f.session.authenticated({ ok: true, expiresAt: T0 - 1 }, T0));
  assertFatal(f, actions, "UNAUTHORIZED", 1, 1);
});

Deno.test("ServerSession.authenticated() accepts a token expiring 1 ms after now", () => {
  const f = makeServer();
  recv(f, hello(1));
  const actions = wire(f, f.session.authenticated({ ok: true, expiresAt: T0 + 11 }, T0 + 10));
  assert.deepEqual(actions.map((a) => a.kind), ["send", "ready"]);
  assert.equal(f.session.deadline, T0 + 11);
});

Deno.test("ServerSession.authenticated() does nothing outside AUTHENTICATING", () => {
  const f = makeServer();
  assert.deepEqual(f.session.authenticated(OK, T0), []);
  assert.equal(f.session.state, "AWAIT_HELLO");
  const r = readyServer();
  assert.deepEqual(r.session.authenticated(OK, T0 + 2), [], "a second result is ignored");
  assert.equal(r.sent.length, 1);
  assert.equal(r.session.state, "READY");
});

// --- terminate() ------------------------------------------------------------

Deno.test("ServerSession.terminate() in READY sends TERMINATE and closes on its TERMINATE_ACK", () => {
  const f = readyServer({ terminateAckTimeoutMs: 250 });
  const actions = wire(f, f.session.terminate("shutdown", T0 + 1000));
  assert.deepEqual(actions, [
    { kind: "send", message: { type: "TERMINATE", seq: 2, reason: "shutdown" } },
  ]);
  assert.equal(f.session.state, "TERMINATING");
  assert.equal(f.session.deadline, T0 + 1250);
  const done = recv(f, { type: "TERMINATE_ACK", seq: 2, re: 2 }, T0 + 1010);
  assertClose(done, CLOSE_CODES.NO_ERROR);
  assert.equal(f.session.state, "CLOSED");
  assert.equal(f.session.deadline, undefined);
});

Deno.test("ServerSession.tick() closes with TIMEOUT 1000 ms after terminate() without TERMINATE_ACK", () => {
  const f = readyServer();
  wire(f, f.session.terminate("shutdown", T0 + 1000));
  assert.equal(f.session.deadline, T0 + 2000);
  assert.deepEqual(f.session.tick(T0 + 1999), []);
  assertClose(f.session.tick(T0 + 2000), CLOSE_CODES.TIMEOUT);
  assert.equal(f.session.state, "CLOSED");
  assert.deepEqual(recv(f, { type: "TERMINATE_ACK", seq: 2, re: 2 }), [], "late ack ignored");
});

Deno.test("ServerSession.receive() rejects a TERMINATE_ACK with the wrong re as UNEXPECTED_MESSAGE", () => {
  const f = terminatingServer();
  const actions = recv(f, { type: "TERMINATE_ACK", seq: 2, re: 1 });
  assertFatal(f, actions, "UNEXPECTED_MESSAGE", 2, 3);
});

Deno.test("ServerSession.receive() ignores HEALTH_REQUEST and CONFIG_UPDATE in flight during TERMINATING", () => {
  const f = terminatingServer();
  assert.deepEqual(recv(f, { type: "HEALTH_REQUEST", seq: 2 }), []);
  assert.deepEqual(recv(f, { type: "CONFIG_UPDATE", seq: 3, config: { interval_ms: 500 } }), []);
  assert.deepEqual(f.healthCalls, [], "health() is not called");
  assert.equal(f.session.config.interval_ms, 10_000);
  assert.equal(f.session.state, "TERMINATING");
});

Deno.test("ServerSession.terminate() twice sends one TERMINATE", () => {
  const f = terminatingServer();
  assert.deepEqual(f.session.terminate("again", T0 + 20), []);
  assert.deepEqual(f.sent.map((m) => m.type), ["ACK", "TERMINATE"]);
});

Deno.test("ServerSession.terminate() before READY closes with GOING_AWAY and sends nothing", () => {
  const waiting = makeServer();
  assertClose(waiting.session.terminate("shutdown", T0), CLOSE_CODES.GOING_AWAY);
  assert.equal(waiting.session.state, "CLOSED");
  const authenticating = makeServer();
  recv(authenticating, hello(1));
  const actions = authenticating.session.terminate("shutdown", T0);
  assertClose(actions, CLOSE_CODES.GOING_AWAY);
  assert.equal(authenticating.session.state, "CLOSED");
});

Deno.test("ServerSession.receive() acks the LB's TERMINATE in READY and closes with NO_ERROR", () => {
  const f = readyServer();
  const actions = recv(f, { type: "TERMINATE", seq: 2, reason: "lb stopping" });
  assert.equal(actions.length, 2);
  assert.deepEqual(sendOf(actions[0]), { type: "TERMINATE_ACK", seq: 2, re: 2 });
  const close = actions[1];
  assert.ok(close?.kind === "close");
  assert.equal(close.code, CLOSE_CODES.NO_ERROR);
  assert.match(close.reason, /lb stopping/);
});

Deno.test("ServerSession.receive() closes with the peer's code on ERROR in READY and sends nothing", () => {
  for (const code of ERROR_CODES) {
    const f = readyServer();
    const actions = recv(f, { type: "ERROR", seq: 2, code, message: "x" });
    // BAD_CONFIG never closes a session by itself: an unsolicited one is unexpected.
    assertClose(
      actions,
      code === "BAD_CONFIG" ? CLOSE_CODES.UNEXPECTED_MESSAGE : CLOSE_CODES[code],
    );
    assert.equal(f.session.state, "CLOSED");
  }
});

// --- receiveInvalid() -----------------------------------------------------------

Deno.test("ServerSession.receiveInvalid() answers BAD_FRAME with ERROR BAD_FRAME without re", () => {
  const f = makeServer();
  const err = codecError("{not json");
  assert.equal(err.code, "BAD_FRAME");
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_FRAME", undefined, 1);
});

Deno.test("ServerSession.receiveInvalid() answers a non-object frame with BAD_FRAME", () => {
  const f = readyServer();
  assertFatal(f, wire(f, f.session.receiveInvalid(codecError([1]), T0)), "BAD_FRAME", undefined, 2);
});

Deno.test("ServerSession.receiveInvalid() prefers UNEXPECTED_MESSAGE for a bad HEALTH_REQUEST in AWAIT_HELLO", () => {
  const f = makeServer();
  const err = codecError({ type: "HEALTH_REQUEST", seq: 1, metrics: 5 });
  assert.equal(err.code, "BAD_MESSAGE");
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "UNEXPECTED_MESSAGE", 1, 1);
});

Deno.test("ServerSession.receiveInvalid() answers HELLO version 2 with UNSUPPORTED_VERSION", () => {
  const f = makeServer();
  const err = codecError({ type: "HELLO", seq: 1, version: 2, token: "t", lb_id: "lb" });
  assert.equal(err.code, "UNSUPPORTED_VERSION");
  const actions = wire(f, f.session.receiveInvalid(err, T0));
  assertFatal(f, actions, "UNSUPPORTED_VERSION", 1, 1);
  assert.equal((actions[1] as { code: number }).code, CLOSE_CODES.UNSUPPORTED_VERSION);
});

Deno.test("ServerSession.receiveInvalid() answers a CONFIG_UPDATE with a bad config with ERROR BAD_CONFIG and stays READY", () => {
  const f = readyServer();
  const err = codecError({ type: "CONFIG_UPDATE", seq: 2, config: { interval_ms: 50 } });
  assert.equal(err.code, "BAD_CONFIG");
  const actions = wire(f, f.session.receiveInvalid(err, T0));
  assert.equal(actions.length, 1);
  const sent = actions[0];
  assert.ok(sent?.kind === "send" && sent.message.type === "ERROR");
  assert.equal(sent.message.code, "BAD_CONFIG");
  assert.equal(sent.message.re, 2);
  assert.match(sent.message.message, /interval_ms number 50 is not an integer in 100\.\.3600000/);
  assert.equal(f.session.state, "READY");
  assert.equal(f.session.config.interval_ms, 10_000);
  const next = wire(f, recv(f, { type: "HEALTH_REQUEST", seq: 3 }));
  assert.ok(next[0]?.kind === "send" && next[0].message.type === "HEALTH_RESPONSE");
});

Deno.test("ServerSession.receiveInvalid() treats a bad CONFIG_UPDATE in AWAIT_HELLO as UNEXPECTED_MESSAGE", () => {
  const f = makeServer();
  const err = codecError({ type: "CONFIG_UPDATE", seq: 1, config: { bogus: 1 } });
  assert.equal(err.code, "BAD_CONFIG");
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "UNEXPECTED_MESSAGE", 1, 1);
});

Deno.test("ServerSession.receiveInvalid() answers a HELLO missing its token with BAD_MESSAGE re 1", () => {
  const f = makeServer();
  const err = codecError({ type: "HELLO", seq: 1, version: 1, lb_id: "lb" });
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_MESSAGE", 1, 1);
});

for (const seq of [0, -1, 1.5, "1", null]) {
  Deno.test(`ServerSession.receiveInvalid() answers a bad seq (${JSON.stringify(seq)}) with BAD_MESSAGE`, () => {
    const f = makeServer();
    const err = codecError({ type: "HELLO", seq, version: 1, token: "t", lb_id: "lb" });
    assert.equal(err.code, "BAD_MESSAGE");
    assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_MESSAGE", undefined, 1);
  });
}

Deno.test("ServerSession.receiveInvalid() answers an unknown type with BAD_MESSAGE and re = its seq", () => {
  const f = readyServer();
  const err = codecError({ type: "PING", seq: 2 });
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_MESSAGE", 2, 2);
});

Deno.test("ServerSession.receiveInvalid() answers an unknown type with an unreadable seq without re", () => {
  const f = readyServer();
  const err = codecError({ type: "PING", seq: "two" });
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_MESSAGE", undefined, 2);
});

Deno.test("ServerSession.receiveInvalid() answers a bad field of an accepted type in READY with BAD_MESSAGE", () => {
  const f = readyServer();
  const err = codecError({ type: "HEALTH_REQUEST", seq: 2, metrics: [""] });
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "BAD_MESSAGE", 2, 2);
});

Deno.test("ServerSession.receiveInvalid() prefers UNEXPECTED_MESSAGE over UNSUPPORTED_VERSION for HELLO in READY", () => {
  const f = readyServer();
  const err = codecError({ type: "HELLO", seq: 2, version: 2, token: "t", lb_id: "lb" });
  assertFatal(f, wire(f, f.session.receiveInvalid(err, T0)), "UNEXPECTED_MESSAGE", 2, 2);
});

Deno.test("ServerSession.receiveInvalid() prefers an out-of-order seq (BAD_MESSAGE) over the type check", () => {
  const f = makeServer();
  const err = codecError({ type: "HEALTH_REQUEST", seq: 3, metrics: 5 });
  const actions = wire(f, f.session.receiveInvalid(err, T0));
  assertFatal(f, actions, "BAD_MESSAGE", 3, 1);
  assert.match((sendOf(actions[0]) as MessageOf<"ERROR">).message, /out of order/);
});

Deno.test("ServerSession.receiveInvalid() does nothing once CLOSED", () => {
  const f = readyServer();
  f.session.closed();
  assert.deepEqual(f.session.receiveInvalid(codecError("nope"), T0), []);
});

Deno.test("ServerSession.receive() rejects a repeated HELLO in READY with UNEXPECTED_MESSAGE", () => {
  const f = readyServer();
  const actions = recv(f, hello(2));
  assertFatal(f, actions, "UNEXPECTED_MESSAGE", 2, 2);
  assert.deepEqual(f.healthCalls, []);
});

// --- after close --------------------------------------------------------------

Deno.test("ServerSession ignores every call after closed()", () => {
  const f = readyServer();
  f.session.closed();
  assert.equal(f.session.state, "CLOSED");
  assert.equal(f.session.deadline, undefined);
  assert.deepEqual(f.session.receive({ type: "HEALTH_REQUEST", seq: 2 }, T0), []);
  assert.deepEqual(f.session.receive({ type: "HEALTH_REQUEST", seq: 99 }, T0), []);
  assert.deepEqual(f.session.tick(EXPIRES + 1), []);
  assert.deepEqual(f.session.terminate("x", T0), []);
  assert.deepEqual(f.session.authenticated(OK, T0), []);
  assert.deepEqual(f.healthCalls, []);
});

Deno.test("ServerSession ignores every message after closing on a protocol error", () => {
  const f = makeServer();
  assertFatal(f, recv(f, sample("ACK", 1)), "UNEXPECTED_MESSAGE", 1, 1);
  assert.deepEqual(recv(f, hello(2)), []);
  assert.deepEqual(f.session.tick(T0 + 5000), [], "no hello timeout after close");
});

// --- every message goes through the codec ---------------------------------------

Deno.test("ServerSession every message it sends in a long session round-trips through the codec", () => {
  const f = readyServer({ defaultMetrics: ["uptime_s"] }, {
    interval_ms: 250,
    metrics: ["load_1"],
  });
  let seq = 2;
  let now = T0 + 10;
  for (let i = 0; i < 20; i++) {
    now += 250;
    recv(f, {
      type: "HEALTH_REQUEST",
      seq: seq++,
      ...(i % 3 === 0 ? { metrics: ["uptime_s"] } : {}),
    }, now);
  }
  recv(f, { type: "CONFIG_UPDATE", seq: seq++, config: { metrics: ["disk_percent"] } }, now);
  recv(f, { type: "CONFIG_UPDATE", seq: seq++, config: { bogus: true } as never }, now);
  wire(f, f.session.terminate("bye", now));
  recv(f, { type: "TERMINATE_ACK", seq: seq++, re: f.sent.at(-1)!.seq }, now);
  assert.equal(f.session.state, "CLOSED");
  assert.equal(f.sent.length, 1 + 20 + 2 + 1);
  assert.deepEqual(f.sent.map((m) => m.seq), f.sent.map((_, i) => i + 1));
  // The wire() helper already asserted each round-trip; re-check explicitly.
  for (const m of f.sent) assert.deepEqual(decodeFrame(encodeMessage(m)), m);
});
