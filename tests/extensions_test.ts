/**
 * The negotiated extensions of docs/PROTOCOL.md §10 (push, heartbeats,
 * datagrams), pure: the datagram codec, each machine's negotiation and its
 * new calls, and the two machines wired to each other through the codecs,
 * extended against plain in both directions. No sockets, no timers.
 */

import assert from "node:assert/strict";
import { CodecError, decodeFrame, encodeMessage } from "../lib/protocol/codec.ts";
import { type Datagram, decodeDatagram, encodeDatagram } from "../lib/protocol/datagram.ts";
import { type LbAction, LbSession } from "../lib/protocol/lb_session.ts";
import {
  type HealthSnapshot,
  type ServerAction,
  ServerSession,
  type ServerSessionOptions,
} from "../lib/protocol/server_session.ts";
import {
  type Capability,
  CLOSE_CODES,
  type Message,
  type MessageOf,
} from "../lib/protocol/wire.ts";
import { mulberry32 } from "./_helpers.ts";

const T0 = 1_700_000_000_000;
const ALL: Capability[] = ["push", "heartbeat", "datagram"];

// --- the datagram codec -----------------------------------------------------------

Deno.test("encodeDatagram() lays a heartbeat out as §10.3 says", () => {
  const bytes = encodeDatagram({
    kind: "heartbeat",
    counter: 7,
    status: "UP",
    cpuPercent: 12.5,
    memPercent: 40,
  });
  assert.deepEqual([...bytes], [0x51, 1, 1, 0, 0, 0, 0, 7, 0x04, 0xe2, 0x0f, 0xa0]);
  assert.deepEqual([...encodeDatagram({ kind: "probe", nonce: 258 })], [0x51, 1, 2, 0, 0, 0, 1, 2]);
});

Deno.test("decodeDatagram() round-trips every status, the counter's range and load to 0.01 %", () => {
  const cases: Datagram[] = [
    { kind: "heartbeat", counter: 1, status: "UP", cpuPercent: 0, memPercent: 100 },
    {
      kind: "heartbeat",
      counter: 0xffff_ffff,
      status: "DRAINING",
      cpuPercent: 99.99,
      memPercent: 0.01,
    },
    { kind: "heartbeat", counter: 42, status: "FAILING", cpuPercent: 50, memPercent: 50 },
    { kind: "probe", nonce: 0 },
    { kind: "probe", nonce: 0xffff_ffff },
  ];
  for (const d of cases) assert.deepEqual(decodeDatagram(encodeDatagram(d)), d);
  // Bytes after a record are room for later fields.
  const longer = new Uint8Array(20);
  longer.set(encodeDatagram(cases[0]!));
  assert.deepEqual(decodeDatagram(longer), cases[0]);
});

Deno.test("decodeDatagram() returns null for an unknown kind, to be ignored", () => {
  assert.equal(decodeDatagram(new Uint8Array([0x51, 1, 9, 0, 0, 0, 0, 1])), null);
});

Deno.test("decodeDatagram() refuses bad datagrams with a remote BAD_FRAME that says what was expected", () => {
  const cases: [number[], RegExp][] = [
    [[], /0 bytes, expected at least 8/],
    [[0x51, 1, 1, 0, 0, 0, 0], /7 bytes, expected at least 8/],
    [[0x52, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0], /first byte 0x52, expected 0x51/],
    [[0x51, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0], /version 2, expected 1/],
    [[0x51, 1, 1, 0, 0, 0, 0, 1, 0, 0], /heartbeat of 10 bytes, expected at least 12/],
    [[0x51, 1, 1, 3, 0, 0, 0, 1, 0, 0, 0, 0], /status 3, expected 0, 1 or 2/],
    [[0x51, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], /counter 0, expected at least 1/],
    [[0x51, 1, 1, 0, 0, 0, 0, 1, 0x27, 0x11, 0, 0], /load 10001\/0 hundredths/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(() => decodeDatagram(new Uint8Array(bytes)), (e: unknown) => {
      assert.ok(e instanceof CodecError);
      assert.equal(e.code, "BAD_FRAME");
      assert.equal(e.side, "remote");
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("encodeDatagram() refuses values out of range with a local error", () => {
  const bad: Datagram[] = [
    { kind: "heartbeat", counter: 0, status: "UP", cpuPercent: 0, memPercent: 0 },
    { kind: "heartbeat", counter: 2 ** 32, status: "UP", cpuPercent: 0, memPercent: 0 },
    { kind: "heartbeat", counter: 1, status: "UP", cpuPercent: 100.5, memPercent: 0 },
    { kind: "heartbeat", counter: 1, status: "UP", cpuPercent: 0, memPercent: NaN },
    { kind: "heartbeat", counter: 1, status: "DOWN" as "UP", cpuPercent: 0, memPercent: 0 },
    { kind: "probe", nonce: -1 },
  ];
  for (const d of bad) {
    assert.throws(() => encodeDatagram(d), (e: unknown) => {
      assert.ok(e instanceof CodecError);
      assert.equal(e.side, "local");
      return true;
    });
  }
});

Deno.test("decodeDatagram() on 20,000 random and mutated datagrams decodes or throws BAD_FRAME, never anything else (seed 0xda7a0001)", () => {
  const random = mulberry32(0xda7a0001);
  const int = (n: number) => Math.floor(random() * n);
  const seen = { decoded: 0, ignored: 0, refused: 0 };
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 2 === 0) {
      bytes = new Uint8Array(int(24));
      for (let k = 0; k < bytes.length; k++) bytes[k] = int(256);
      if (bytes.length > 1 && random() < 0.5) bytes.set([0x51, 1]);
    } else {
      bytes = encodeDatagram({
        kind: "heartbeat",
        counter: 1 + int(1000),
        status: "UP",
        cpuPercent: int(101),
        memPercent: int(101),
      });
      bytes[int(bytes.length)] = int(256);
      if (random() < 0.2) bytes = bytes.subarray(0, int(bytes.length + 1));
    }
    try {
      const d = decodeDatagram(bytes);
      if (d === null) seen.ignored++;
      else {
        seen.decoded++;
        // Whatever decodes re-encodes to the same record.
        const again = encodeDatagram(d);
        assert.deepEqual(decodeDatagram(again), d);
      }
    } catch (e) {
      assert.ok(e instanceof CodecError && e.code === "BAD_FRAME", String(e));
      seen.refused++;
    }
  }
  for (const [k, n] of Object.entries(seen)) assert.ok(n > 100, `only ${n} ${k}`);
});

// --- the server machine -------------------------------------------------------------

let health: HealthSnapshot = { status: "UP", metrics: { cpu_percent: 10, mem_percent: 20 } };

function server(options: Partial<ServerSessionOptions> = {}): ServerSession {
  return new ServerSession({
    serverId: "web-1",
    availableMetrics: ["cpu_percent", "mem_percent", "load_1"],
    health: () => health,
    ...options,
  }, T0);
}

/** A server session READY after this HELLO; returns it with its ACK. */
function readyServer(
  hello: Partial<MessageOf<"HELLO">>,
  options: Partial<ServerSessionOptions> = { capabilities: ALL },
): { s: ServerSession; ack: MessageOf<"ACK">; actions: ServerAction[] } {
  health = { status: "UP", metrics: { cpu_percent: 10, mem_percent: 20 } };
  const s = server(options);
  s.receive({ type: "HELLO", seq: 1, version: 1, token: "t", lb_id: "lb-1", ...hello }, T0);
  const actions = s.authenticated({ ok: true, expiresAt: T0 + 3_600_000 }, T0 + 1);
  const ack = (actions[0] as { message: MessageOf<"ACK"> }).message;
  return { s, ack, actions };
}

Deno.test("ServerSession answers a plain QHCP/1 HELLO with a plain ACK, even when it supports every extension", () => {
  const { s, ack } = readyServer({});
  assert.deepEqual(Object.keys(ack).sort(), [
    "metrics",
    "re",
    "seq",
    "server_id",
    "type",
    "version",
  ]);
  assert.deepEqual(s.capabilities, []);
  assert.deepEqual(s.push(T0 + 2), []);
  assert.deepEqual(s.heartbeat(T0 + 2), []);
  assert.equal(s.config.heartbeat_ms, undefined);
});

Deno.test("ServerSession accepts the offered capabilities it supports, ignores unknown ones and keeps its heartbeat bounds", () => {
  const { ack, actions } = readyServer({
    capabilities: ["later-thing", "heartbeat", "push"],
    heartbeat_ms: 60,
  });
  assert.deepEqual(ack.capabilities, ["push", "heartbeat"]);
  assert.equal(ack.heartbeat_ms, 100, "clamped to the server's shortest");
  assert.deepEqual(actions[1], {
    kind: "ready",
    lbId: "lb-1",
    config: { interval_ms: 10_000, metrics: ["cpu_percent", "mem_percent"], heartbeat_ms: 100 },
    capabilities: ["push", "heartbeat"],
  });
  // A server that supports none answers an offer with an empty list.
  assert.deepEqual(readyServer({ capabilities: ALL }, {}).ack.capabilities, []);
  // datagram alone means nothing: it is a carrier for heartbeats.
  const lone = readyServer({ capabilities: ["datagram", "push"] }).ack;
  assert.deepEqual(lone.capabilities, ["push"]);
  assert.equal(lone.heartbeat_ms, undefined);
  // heartbeat offered without an interval gets the server's default.
  assert.equal(readyServer({ capabilities: ["heartbeat"] }).ack.heartbeat_ms, 1000);
});

Deno.test("ServerSession.push() sends STATUS only when the status or the failing checks change", () => {
  const { s } = readyServer({ capabilities: ["push"] });
  const sent = (a: ServerAction[]) => a.map((x) => x.kind === "send" ? x.message.type : x.kind);
  assert.deepEqual(sent(s.push(T0 + 2)), ["STATUS"], "the first push says where things stand");
  assert.deepEqual(s.push(T0 + 3), []);
  health = {
    status: "FAILING",
    metrics: { cpu_percent: 10, mem_percent: 20 },
    checks: [{ name: "tcp :5432", ok: false, detail: "refused" }],
  };
  const failing = s.push(T0 + 4);
  assert.deepEqual((failing[0] as { message: Message }).message, {
    type: "STATUS",
    seq: 3,
    status: "FAILING",
    metrics: { cpu_percent: 10, mem_percent: 20 },
    ts: T0 + 4,
    checks: [{ name: "tcp :5432", ok: false, detail: "refused" }],
  });
  health = { ...health, metrics: { cpu_percent: 90, mem_percent: 20 } };
  assert.deepEqual(s.push(T0 + 5), [], "a load change alone is not news");
  health = {
    ...health,
    checks: [
      { name: "tcp :5432", ok: false, detail: "refused" },
      { name: "http /healthz", ok: false, detail: "HTTP 503" },
    ],
  };
  assert.deepEqual(sent(s.push(T0 + 6)), ["STATUS"], "another check failing is news");
  // A HEALTH_RESPONSE tells the LB too: a push right after it says nothing new.
  health = { status: "DRAINING", metrics: { cpu_percent: 1, mem_percent: 2 } };
  assert.deepEqual(sent(s.receive({ type: "HEALTH_REQUEST", seq: 2 }, T0 + 7)), [
    "HEALTH_RESPONSE",
  ]);
  assert.deepEqual(s.push(T0 + 8), []);
});

Deno.test("ServerSession.heartbeat() sends a HEARTBEAT message, or a DATAGRAM when datagram was negotiated", () => {
  const stream = readyServer({ capabilities: ["heartbeat"], heartbeat_ms: 250 }).s;
  const first = stream.heartbeat(T0 + 2);
  assert.deepEqual(first, [{
    kind: "send",
    message: { type: "HEARTBEAT", seq: 2, hb: 1, status: "UP", cpu_percent: 10, mem_percent: 20 },
  }]);
  assert.equal((stream.heartbeat(T0 + 3)[0] as { message: { hb: number } }).message.hb, 2);

  const dgram = readyServer({ capabilities: ALL, heartbeat_ms: 250 }).s;
  health = { status: "DRAINING", metrics: { cpu_percent: 150, mem_percent: -3 } };
  const [action] = dgram.heartbeat(T0 + 2);
  assert.equal(action?.kind, "datagram");
  assert.deepEqual(decodeDatagram((action as { bytes: Uint8Array }).bytes), {
    kind: "heartbeat",
    counter: 1,
    status: "DRAINING",
    cpuPercent: 100,
    memPercent: 0,
  });
  dgram.terminate("shutdown", T0 + 3);
  assert.deepEqual(dgram.heartbeat(T0 + 4), [], "only READY sessions beat");
});

Deno.test("ServerSession.receiveDatagram() answers a probe with a heartbeat at once", () => {
  const { s } = readyServer({ capabilities: ALL, heartbeat_ms: 250 });
  const [a] = s.receiveDatagram(encodeDatagram({ kind: "probe", nonce: 5 }), T0 + 2);
  assert.equal(a?.kind, "datagram");
  assert.equal(decodeDatagram((a as { bytes: Uint8Array }).bytes)?.kind, "heartbeat");
  assert.deepEqual(s.receiveDatagram(new Uint8Array([0x51, 1, 77, 0, 0, 0, 0, 0]), T0), []);
});

Deno.test("ServerSession.receiveDatagram() closes on a datagram it did not negotiate, a malformed one, or a heartbeat from the LB", () => {
  const cases: [Partial<MessageOf<"HELLO">>, Uint8Array, string, number][] = [
    [
      { capabilities: ["heartbeat"] },
      encodeDatagram({ kind: "probe", nonce: 1 }),
      "UNEXPECTED_MESSAGE",
      0x03,
    ],
    [{ capabilities: ALL }, new Uint8Array([0x51, 1, 1]), "BAD_FRAME", 0x01],
    [
      { capabilities: ALL },
      encodeDatagram({ kind: "heartbeat", counter: 1, status: "UP", cpuPercent: 0, memPercent: 0 }),
      "UNEXPECTED_MESSAGE",
      0x03,
    ],
  ];
  for (const [hello, bytes, code, close] of cases) {
    const { s } = readyServer(hello);
    const actions = s.receiveDatagram(bytes, T0 + 2);
    assert.equal(actions.length, 2);
    const error = (actions[0] as { message: MessageOf<"ERROR"> }).message;
    assert.equal(error.code, code);
    assert.equal(error.re, undefined);
    assert.deepEqual([actions[1]?.kind, (actions[1] as { code: number }).code], ["close", close]);
    assert.equal(s.state, "CLOSED");
  }
  // Before READY a datagram is simply dropped: it may overtake the stream.
  assert.deepEqual(server({ capabilities: ALL }).receiveDatagram(new Uint8Array(1), T0), []);
});

Deno.test("ServerSession CONFIG_UPDATE heartbeat_ms: BAD_CONFIG without heartbeat, clamped CONFIG_ACK with it", () => {
  const plain = readyServer({ capabilities: ["push"] }).s;
  const [refused] = plain.receive(
    { type: "CONFIG_UPDATE", seq: 2, config: { heartbeat_ms: 500 } },
    T0 + 2,
  );
  const error = (refused as { message: MessageOf<"ERROR"> }).message;
  assert.equal(error.code, "BAD_CONFIG");
  assert.match(error.message, /heartbeat_ms needs the heartbeat capability/);
  assert.equal(plain.state, "READY");

  const beating = readyServer({ capabilities: ["heartbeat"], heartbeat_ms: 250 }).s;
  const [ack] = beating.receive(
    { type: "CONFIG_UPDATE", seq: 2, config: { heartbeat_ms: 50, interval_ms: 2000 } },
    T0 + 2,
  );
  assert.deepEqual((ack as { message: MessageOf<"CONFIG_ACK"> }).message.config, {
    interval_ms: 2000,
    metrics: ["cpu_percent", "mem_percent"],
    heartbeat_ms: 100,
  });
});

// --- the LB machine -----------------------------------------------------------------

function readyLb(
  offer: Capability[],
  ack: Partial<MessageOf<"ACK">>,
): { lb: LbSession; ready: LbAction[] } {
  const lb = new LbSession({
    lbId: "lb-1",
    timeoutMs: 2000,
    capabilities: offer,
    heartbeatMs: 250,
  });
  lb.connecting(T0);
  lb.connected("t", T0);
  const ready = lb.receive(
    { type: "ACK", seq: 1, re: 1, version: 1, server_id: "s", metrics: [], ...ack },
    T0 + 5,
  );
  return { lb, ready };
}

Deno.test("LbSession offers its capabilities in HELLO and reports those the ACK accepts", () => {
  const lb = new LbSession({ lbId: "lb-1", timeoutMs: 2000, capabilities: ALL, heartbeatMs: 250 });
  lb.connecting(T0);
  const [hello] = lb.connected("t", T0);
  assert.deepEqual((hello as { message: Message }).message, {
    type: "HELLO",
    seq: 1,
    version: 1,
    token: "t",
    lb_id: "lb-1",
    capabilities: ["push", "heartbeat", "datagram"],
    heartbeat_ms: 250,
  });
  const { lb: ready, ready: actions } = readyLb(ALL, {
    capabilities: ["heartbeat", "datagram"],
    heartbeat_ms: 300,
  });
  assert.deepEqual(
    actions.map((a) => a.kind === "ready" ? [a.capabilities, a.heartbeatMs] : a.kind),
    [[["heartbeat", "datagram"], 300]],
  );
  assert.deepEqual([...ready.capabilities], ["heartbeat", "datagram"]);
});

Deno.test("LbSession closes on an ACK that accepts what HELLO did not offer or pairs heartbeat_ms wrongly", () => {
  const cases: [Capability[], Partial<MessageOf<"ACK">>, RegExp][] = [
    [
      ["push"],
      { capabilities: ["push", "heartbeat"], heartbeat_ms: 250 },
      /"heartbeat", which HELLO did not offer/,
    ],
    [[], { capabilities: ["push"] }, /"push", which HELLO did not offer/],
    [ALL, { capabilities: ["heartbeat"] }, /heartbeat_ms must come with the heartbeat capability/],
    [ALL, { capabilities: ["push"], heartbeat_ms: 250 }, /heartbeat_ms must come with/],
    [ALL, { capabilities: ["datagram"] }, /datagram without heartbeat/],
  ];
  for (const [offer, ack, message] of cases) {
    const { lb, ready } = readyLb(offer, ack);
    const error = (ready[0] as { message: MessageOf<"ERROR"> }).message;
    assert.equal(error.code, "BAD_MESSAGE");
    assert.equal(error.re, 1);
    assert.match(error.message, message);
    assert.equal(lb.state, "DISCONNECTED");
  }
  // A plain ACK to an offer is a plain QHCP/1 session.
  const { lb, ready } = readyLb(ALL, {});
  assert.equal(ready[0]?.kind, "ready");
  assert.deepEqual([...lb.capabilities], []);
});

Deno.test("LbSession takes heartbeats in order, counts the missed ones and drops repeats and stale ones", () => {
  const { lb } = readyLb(ALL, { capabilities: ALL, heartbeat_ms: 250 });
  const beat = (counter: number) =>
    lb.receiveDatagram(
      encodeDatagram({ kind: "heartbeat", counter, status: "UP", cpuPercent: 5, memPercent: 6 }),
      T0 + 10,
    );
  assert.deepEqual(beat(1), [{
    kind: "heartbeat",
    counter: 1,
    missed: 0,
    status: "UP",
    cpuPercent: 5,
    memPercent: 6,
  }]);
  assert.equal((beat(4)[0] as { missed: number }).missed, 2);
  assert.deepEqual(beat(4), []);
  assert.deepEqual(beat(3), []);
  assert.equal((beat(5)[0] as { counter: number }).counter, 5);
  // Stream heartbeats go through the same rule.
  const [hb] = lb.receive(
    { type: "HEARTBEAT", seq: 2, hb: 9, status: "DRAINING", cpu_percent: 1, mem_percent: 2 },
    T0 + 11,
  );
  assert.deepEqual(hb, {
    kind: "heartbeat",
    counter: 9,
    missed: 3,
    status: "DRAINING",
    cpuPercent: 1,
    memPercent: 2,
  });
});

Deno.test("LbSession ignores datagrams before READY and closes on one its session did not negotiate", () => {
  const lb = new LbSession({ lbId: "lb-1", timeoutMs: 2000, capabilities: ALL, heartbeatMs: 250 });
  lb.connecting(T0);
  lb.connected("t", T0);
  const heartbeat = encodeDatagram({
    kind: "heartbeat",
    counter: 1,
    status: "UP",
    cpuPercent: 0,
    memPercent: 0,
  });
  assert.deepEqual(lb.receiveDatagram(heartbeat, T0 + 1), [], "it overtook the ACK");
  const { lb: plain } = readyLb(ALL, { capabilities: ["heartbeat"], heartbeat_ms: 250 });
  const actions = plain.receiveDatagram(heartbeat, T0 + 10);
  assert.deepEqual(actions.map((a) => a.kind), ["send", "failed", "close"]);
  assert.equal((actions[2] as { code: number }).code, CLOSE_CODES.UNEXPECTED_MESSAGE);
  const { lb: extended } = readyLb(ALL, { capabilities: ALL, heartbeat_ms: 250 });
  const probe = extended.receiveDatagram(encodeDatagram({ kind: "probe", nonce: 1 }), T0 + 10);
  assert.match(
    (probe[0] as { message: MessageOf<"ERROR"> }).message.message,
    /only an LB sends probes/,
  );
});

Deno.test("LbSession.probe() sends a HEALTH_REQUEST held to the probe timeout and a probe datagram", () => {
  const { lb } = readyLb(ALL, { capabilities: ALL, heartbeat_ms: 250 });
  const actions = lb.probe(T0 + 100, 300);
  assert.deepEqual(actions.map((a) => a.kind === "send" ? a.message.type : a.kind), [
    "HEALTH_REQUEST",
    "datagram",
  ]);
  assert.equal(lb.deadline, T0 + 400);
  const [timeout] = lb.tick(T0 + 400);
  assert.deepEqual(timeout && timeout.kind === "check" && [timeout.ok, timeout.probe], [
    false,
    true,
  ]);
});

Deno.test("LbSession.probe() while a check is pending holds that check to the probe timeout", () => {
  const { lb } = readyLb(["push"], { capabilities: ["push"] });
  lb.check(T0 + 100);
  assert.equal(lb.deadline, T0 + 2100);
  assert.deepEqual(lb.probe(T0 + 200, 300), [], "no second request, no datagram without datagram");
  assert.equal(lb.deadline, T0 + 500);
  const [ok] = lb.receive(
    {
      type: "HEALTH_RESPONSE",
      seq: 2,
      re: 2,
      status: "UP",
      metrics: { cpu_percent: 1, mem_percent: 2 },
      ts: T0,
    },
    T0 + 250,
  );
  assert.deepEqual(ok && ok.kind === "check" && [ok.ok, ok.probe], [true, true]);
});

// --- both machines, through the codecs ----------------------------------------------

/** Runs HELLO and ACK between an LB and a server; returns both and what crossed the wire. */
function pair(offer: Capability[], supported: Capability[]) {
  health = { status: "UP", metrics: { cpu_percent: 10, mem_percent: 20 } };
  const lb = new LbSession({
    lbId: "lb-1",
    timeoutMs: 2000,
    capabilities: offer,
    heartbeatMs: 250,
  });
  const srv = server({ capabilities: supported });
  const wire: Message[] = [];
  const lbEvents: LbAction[] = [];
  const toServer = (actions: LbAction[]) => {
    for (const a of actions) {
      if (a.kind === "datagram") toLb(srv.receiveDatagram(a.bytes, T0));
      if (a.kind !== "send") {
        if (a.kind !== "datagram") lbEvents.push(a);
        continue;
      }
      const m = decodeFrame(encodeMessage(a.message));
      wire.push(m);
      toLb(srv.receive(m, T0));
    }
  };
  const toLb = (actions: ServerAction[]) => {
    for (const a of actions) {
      if (a.kind === "authenticate") toLb(srv.authenticated({ ok: true, expiresAt: T0 + 1e6 }, T0));
      if (a.kind === "datagram") toServer(lb.receiveDatagram(a.bytes, T0));
      if (a.kind !== "send") continue;
      const m = decodeFrame(encodeMessage(a.message));
      wire.push(m);
      toServer(lb.receive(m, T0));
    }
  };
  lb.connecting(T0);
  toServer(lb.connected("t", T0));
  return { lb, srv, wire, lbEvents, toLb, toServer };
}

Deno.test("extended LB against a plain QHCP/1 server: plain ACK, no pushes, no heartbeats, checks as before", () => {
  const p = pair(ALL, []);
  const [hello, ack] = p.wire;
  assert.equal(hello?.type, "HELLO");
  assert.deepEqual(ack, {
    type: "ACK",
    seq: 1,
    re: 1,
    version: 1,
    server_id: "web-1",
    metrics: ["cpu_percent", "mem_percent"],
    capabilities: [],
  });
  assert.equal(p.lb.state, "READY");
  assert.deepEqual([...p.lb.capabilities], []);
  assert.deepEqual(p.srv.push(T0), []);
  assert.deepEqual(p.srv.heartbeat(T0), []);
  p.toServer(p.lb.check(T0));
  assert.deepEqual(p.lbEvents.map((e) => e.kind), ["ready", "check"]);
});

Deno.test("plain QHCP/1 LB against an extended server: the HELLO and ACK are QHCP/1's, nothing unasked arrives", () => {
  const p = pair([], ALL);
  assert.deepEqual(p.wire.map((m) => Object.keys(m)), [
    ["type", "seq", "version", "token", "lb_id"],
    ["type", "seq", "re", "version", "server_id", "metrics"],
  ]);
  assert.deepEqual(p.srv.push(T0), []);
  assert.deepEqual(p.srv.heartbeat(T0), []);
  health = { status: "FAILING", metrics: { cpu_percent: 10, mem_percent: 20 } };
  assert.deepEqual(p.srv.push(T0), []);
});

Deno.test("extended LB and server: pushes and datagram heartbeats reach the LB, a probe is answered", () => {
  const p = pair(ALL, ALL);
  assert.deepEqual([...p.lb.capabilities], ["push", "heartbeat", "datagram"]);
  p.toLb(p.srv.heartbeat(T0));
  p.toLb(p.srv.heartbeat(T0));
  health = { status: "DRAINING", metrics: { cpu_percent: 10, mem_percent: 20 } };
  p.toLb(p.srv.push(T0));
  p.toServer(p.lb.probe(T0, 200));
  assert.deepEqual(p.lbEvents.map((e) => e.kind === "heartbeat" ? `hb${e.counter}` : e.kind), [
    "ready",
    "hb1",
    "hb2",
    "status",
    "check",
    "hb3",
  ]);
  const status = p.lbEvents[3] as Extract<LbAction, { kind: "status" }>;
  assert.equal(status.message.status, "DRAINING");
});
