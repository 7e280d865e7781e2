/**
 * Unit tests of the QHCP/1 codec (`lib/protocol/codec.ts`): framing, message
 * validation, error reporting, truncation, mutation and a seeded fuzz loop.
 */

import assert from "node:assert/strict";
import {
  CodecError,
  decodeFrame,
  decodeMessage,
  encodeMessage,
  FrameDecoder,
  validateConfigUpdate,
} from "../lib/protocol/codec.ts";
import {
  FRAME_HEADER_LENGTH,
  MAX_FRAME_LENGTH,
  MAX_SERVICE_TAGS,
  MAX_SERVICES,
  type Message,
  MESSAGE_TYPES,
  type MessageType,
} from "../lib/protocol/wire.ts";
import { concat, mulberry32 } from "./_helpers.ts";

// --- helpers -----------------------------------------------------------------

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A frame with a correct length header around `payload`. */
function frameOf(payload: Uint8Array | string): Uint8Array {
  const p = typeof payload === "string" ? enc.encode(payload) : payload;
  const out = new Uint8Array(FRAME_HEADER_LENGTH + p.length);
  new DataView(out.buffer).setUint32(0, p.length);
  out.set(p, FRAME_HEADER_LENGTH);
  return out;
}

/** A frame holding `JSON.stringify(value)`, built without the codec. */
function jsonFrame(value: unknown): Uint8Array {
  return frameOf(JSON.stringify(value));
}

/** A bare 4-byte length header. */
function headerOf(length: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LENGTH);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

interface Expected {
  code: CodecError["code"];
  side?: CodecError["side"];
  message?: RegExp;
  messageType?: MessageType | undefined;
  seq?: number | undefined;
}

/** Runs `fn`, asserts it throws a CodecError matching `expected`, returns it. */
function assertCodecError(fn: () => unknown, expected: Expected): CodecError {
  let caught: unknown = undefined;
  let returned: unknown = undefined;
  try {
    returned = fn();
  } catch (e) {
    caught = e;
  }
  if (caught === undefined) {
    assert.fail(`expected CodecError ${expected.code}, got ${JSON.stringify(returned)}`);
  }
  assert.ok(caught instanceof CodecError, `expected a CodecError, got ${String(caught)}`);
  assert.equal(caught.code, expected.code, caught.message);
  assert.equal(caught.side, expected.side ?? "remote");
  if (expected.message) assert.match(caught.message, expected.message);
  if ("messageType" in expected) assert.equal(caught.messageType, expected.messageType);
  if ("seq" in expected) assert.equal(caught.seq, expected.seq);
  return caught;
}

/** Asserts `bytes` are a frame whose decoding is `message`. */
function assertDecodesTo(bytes: Uint8Array, message: unknown): void {
  assert.deepEqual(decodeFrame(bytes), message);
}

/** Every message type with all optional fields present. */
const FULL: readonly Message[] = [
  {
    type: "HELLO",
    seq: 1,
    version: 1,
    token: "aaa.bbb.ccc",
    lb_id: "lb-1",
    interval_ms: 1000,
    metrics: ["cpu_percent", "mem_percent", "load1"],
    capabilities: ["push", "heartbeat", "datagram", "later-extension"],
    heartbeat_ms: 250,
  },
  {
    type: "ACK",
    seq: 1,
    re: 1,
    version: 1,
    server_id: "srv-1",
    metrics: ["cpu_percent", "mem_percent"],
    capabilities: ["push", "heartbeat"],
    heartbeat_ms: 250,
  },
  { type: "HEALTH_REQUEST", seq: 2, metrics: ["load1"] },
  {
    type: "HEALTH_RESPONSE",
    seq: 2,
    re: 2,
    status: "UP",
    metrics: { cpu_percent: 12.5, mem_percent: 40, load1: 0.25 },
    ts: 1_700_000_000_000,
  },
  { type: "CONFIG_UPDATE", seq: 3, config: { interval_ms: 500, metrics: ["load1"] } },
  {
    type: "CONFIG_ACK",
    seq: 3,
    re: 3,
    config: { interval_ms: 500, metrics: ["load1"], heartbeat_ms: 100 },
  },
  { type: "ERROR", seq: 4, re: 3, code: "BAD_CONFIG", message: 'unknown metric "gpu"' },
  { type: "TERMINATE", seq: 5, reason: "shutting down" },
  { type: "TERMINATE_ACK", seq: 5, re: 5 },
  {
    type: "STATUS",
    seq: 6,
    status: "FAILING",
    metrics: { cpu_percent: 3, mem_percent: 4 },
    ts: 1_700_000_000_001,
    checks: [{ name: "tcp 127.0.0.1:5432", ok: false, detail: "connection refused" }],
  },
  { type: "HEARTBEAT", seq: 7, hb: 12, status: "DRAINING", cpu_percent: 99.5, mem_percent: 0 },
];

/** Every message type with the optional fields absent (and minimal values). */
const MINIMAL: readonly Message[] = [
  { type: "HELLO", seq: 1, version: 1, token: "", lb_id: "l" },
  { type: "ACK", seq: 1, re: 1, version: 1, server_id: "s", metrics: [] },
  { type: "HEALTH_REQUEST", seq: 1 },
  {
    type: "HEALTH_RESPONSE",
    seq: 1,
    re: 1,
    status: "DRAINING",
    metrics: { cpu_percent: 0, mem_percent: 100 },
    ts: 0,
  },
  { type: "CONFIG_UPDATE", seq: 1, config: {} },
  { type: "CONFIG_ACK", seq: 1, re: 1, config: { interval_ms: 100, metrics: [] } },
  { type: "ERROR", seq: 1, code: "INTERNAL", message: "" },
  { type: "TERMINATE", seq: 1 },
  { type: "TERMINATE_ACK", seq: 1, re: 1 },
  { type: "STATUS", seq: 1, status: "UP", metrics: { cpu_percent: 0, mem_percent: 0 }, ts: 0 },
  { type: "HEARTBEAT", seq: 1, hb: 1, status: "UP", cpu_percent: 0, mem_percent: 100 },
];

const SAMPLES: readonly Message[] = [...FULL, ...MINIMAL];
const SAMPLE_FRAMES: readonly Uint8Array[] = SAMPLES.map((m) => encodeMessage(m));

function fullOf(type: MessageType): Record<string, unknown> {
  const m = FULL.find((x) => x.type === type)!;
  return structuredClone(m) as unknown as Record<string, unknown>;
}

// --- round trips ---------------------------------------------------------------

Deno.test("encodeMessage() and decodeFrame() round-trip all types with optional fields", () => {
  assert.deepEqual(FULL.map((m) => m.type), [...MESSAGE_TYPES]);
  for (const m of FULL) {
    assertDecodesTo(encodeMessage(m), m);
  }
});

Deno.test("encodeMessage() and decodeFrame() round-trip all types without optional fields", () => {
  assert.deepEqual(MINIMAL.map((m) => m.type), [...MESSAGE_TYPES]);
  for (const m of MINIMAL) {
    const decoded = decodeFrame(encodeMessage(m));
    assert.deepEqual(decoded, m);
    // Absent optional fields stay absent rather than becoming undefined/null.
    assert.deepEqual(Object.keys(decoded), Object.keys(m));
  }
});

Deno.test("encodeMessage() writes a big-endian length header and the JSON payload", () => {
  const bytes = encodeMessage({ type: "HEALTH_REQUEST", seq: 2 });
  const json = '{"type":"HEALTH_REQUEST","seq":2}';
  assert.deepEqual([...bytes.subarray(0, 4)], [0, 0, 0, json.length]);
  assert.equal(dec.decode(bytes.subarray(4)), json);
  assert.equal(bytes.length, 4 + json.length);
});

Deno.test("encodeMessage() writes fields in a fixed order whatever the input order", () => {
  for (const m of SAMPLES) {
    const reversed = Object.fromEntries(Object.entries(m).reverse()) as unknown as Message;
    assert.deepEqual(encodeMessage(reversed), encodeMessage(m));
    const text = dec.decode(encodeMessage(reversed).subarray(4));
    assert.ok(text.startsWith(`{"type":"${m.type}","seq":${m.seq}`), text);
  }
});

Deno.test("FrameDecoder round-trips all nine types with and without optional fields", () => {
  for (const m of SAMPLES) {
    const frames = new FrameDecoder();
    frames.push(encodeMessage(m));
    const payload = frames.next();
    assert.ok(payload !== null);
    assert.deepEqual(decodeMessage(payload), m);
    assert.equal(frames.next(), null);
    assert.equal(frames.buffered, 0);
  }
});

Deno.test("encodeMessage() drops unknown properties of every message type", () => {
  for (const m of SAMPLES) {
    const withExtra = { ...m, extra: "leak", token2: 42, nested: { a: 1 } } as unknown as Message;
    const bytes = encodeMessage(withExtra);
    assert.deepEqual(bytes, encodeMessage(m));
    const text = dec.decode(bytes.subarray(4));
    assert.doesNotMatch(text, /leak|token2|nested/);
    assert.deepEqual(decodeFrame(bytes), m);
  }
});

Deno.test({
  name: "encodeMessage() drops unknown properties inside CONFIG_ACK's config",
  fn() {
    const m = {
      type: "CONFIG_ACK",
      seq: 1,
      re: 1,
      config: { interval_ms: 1000, metrics: [], secret: "leak" },
    } as unknown as Message;
    const text = dec.decode(encodeMessage(m).subarray(4));
    assert.doesNotMatch(text, /leak/);
  },
});

Deno.test("decodeFrame() ignores unknown fields and leaves them out of the message", () => {
  for (const m of SAMPLES) {
    const decoded = decodeFrame(jsonFrame({ ...m, future_field: [1, 2], zz: null }));
    assert.deepEqual(decoded, m);
  }
});

Deno.test("decodeFrame() treats a __proto__ key of config as an unknown field, not a prototype", () => {
  const payload =
    '{"type":"CONFIG_UPDATE","seq":1,"config":{"__proto__":{"interval_ms":5,"polluted":true}}}';
  assertCodecError(() => decodeFrame(frameOf(payload)), {
    code: "BAD_CONFIG",
    message: /unknown field '__proto__'/,
  });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("decodeFrame() reports a bad CONFIG_UPDATE config as BAD_CONFIG with type and seq", () => {
  for (
    const config of [
      '{"interval_ms":50}',
      '{"interval_ms":"1000"}',
      '{"metrics":"cpu_percent"}',
      '{"metrics":[""]}',
      '{"color":"blue"}',
    ]
  ) {
    const e = assertCodecError(
      () => decodeFrame(frameOf(`{"type":"CONFIG_UPDATE","seq":4,"config":${config}}`)),
      { code: "BAD_CONFIG" },
    );
    assert.equal(e.messageType, "CONFIG_UPDATE");
    assert.equal(e.seq, 4);
  }
  assertCodecError(() => decodeFrame(frameOf('{"type":"CONFIG_UPDATE","seq":4,"config":[]}')), {
    code: "BAD_MESSAGE",
  });
});

// --- framing errors ------------------------------------------------------------

Deno.test("decodeFrame() rejects a zero length", () => {
  assertCodecError(() => decodeFrame(headerOf(0)), {
    code: "BAD_FRAME",
    message: /length 0 is below 1/,
    messageType: undefined,
    seq: undefined,
  });
  assertCodecError(() => decodeFrame(concat(headerOf(0), enc.encode("{}"))), {
    code: "BAD_FRAME",
  });
});

Deno.test("decodeMessage() rejects an empty payload", () => {
  assertCodecError(() => decodeMessage(new Uint8Array(0)), {
    code: "BAD_FRAME",
    message: /length 0 is below 1/,
  });
});

Deno.test("decodeFrame() rejects lengths 65537, 70000 and 0xFFFFFFFF", () => {
  for (const length of [MAX_FRAME_LENGTH + 1, 70000, 0xFFFFFFFF]) {
    assertCodecError(() => decodeFrame(headerOf(length)), {
      code: "BAD_FRAME",
      message: new RegExp(`length ${length} exceeds 65536`),
    });
  }
  const full = concat(headerOf(70000), new Uint8Array(70000).fill(0x20));
  assertCodecError(() => decodeFrame(full), {
    code: "BAD_FRAME",
    message: /length 70000 exceeds 65536/,
  });
});

Deno.test("decodeMessage() rejects a payload longer than 65536 bytes", () => {
  const payload = enc.encode(`{"type":"TERMINATE","seq":1,"reason":"${"x".repeat(70000)}"}`);
  assertCodecError(() => decodeMessage(payload), {
    code: "BAD_FRAME",
    message: new RegExp(`length ${payload.length} exceeds 65536`),
  });
});

Deno.test("FrameDecoder.next() rejects a bad length as soon as the 4 header bytes are in", () => {
  for (const length of [0, MAX_FRAME_LENGTH + 1, 70000, 0xFFFFFFFF]) {
    const frames = new FrameDecoder();
    const header = headerOf(length);
    for (let i = 0; i < 3; i++) {
      frames.push(header.subarray(i, i + 1));
      assert.equal(frames.next(), null);
      assert.ok(frames.buffered <= FRAME_HEADER_LENGTH);
    }
    frames.push(header.subarray(3));
    assert.equal(frames.buffered, FRAME_HEADER_LENGTH);
    assertCodecError(() => frames.next(), {
      code: "BAD_FRAME",
      message: length === 0 ? /length 0 is below 1/ : new RegExp(`length ${length} exceeds 65536`),
    });
    assert.ok(frames.buffered <= FRAME_HEADER_LENGTH);
  }
});

Deno.test("FrameDecoder.next() waits for the payload of a maximal 65536-byte frame", () => {
  const frames = new FrameDecoder();
  frames.push(headerOf(MAX_FRAME_LENGTH));
  assert.equal(frames.next(), null);
  frames.push(new Uint8Array(MAX_FRAME_LENGTH - 1));
  assert.equal(frames.next(), null);
  frames.push(new Uint8Array(1));
  assert.equal(frames.next()?.length, MAX_FRAME_LENGTH);
  assert.equal(frames.buffered, 0);
});

Deno.test("encodeMessage() and decodeFrame() accept a message of exactly 65536 bytes", () => {
  const overhead = '{"type":"TERMINATE","seq":1,"reason":""}'.length;
  const m: Message = { type: "TERMINATE", seq: 1, reason: "r".repeat(MAX_FRAME_LENGTH - overhead) };
  const bytes = encodeMessage(m);
  assert.equal(bytes.length, FRAME_HEADER_LENGTH + MAX_FRAME_LENGTH);
  assertDecodesTo(bytes, m);
});

Deno.test("decodeFrame() rejects a payload that is not valid UTF-8", () => {
  const bad = [
    [0xff], // never valid
    [0xc0, 0xaf], // overlong "/"
    [0xed, 0xa0, 0x80], // encoded surrogate U+D800
    [0xe2, 0x82], // truncated sequence
    [0x80], // lone continuation byte
  ];
  for (const bytes of bad) {
    const payload = concat(
      enc.encode('{"type":"TERMINATE","seq":1,"reason":"'),
      Uint8Array.from(bytes),
      enc.encode('"}'),
    );
    assertCodecError(() => decodeFrame(frameOf(payload)), {
      code: "BAD_FRAME",
      message: /not valid UTF-8/,
    });
  }
});

Deno.test("decodeFrame() rejects a payload that is not JSON", () => {
  for (
    const text of [
      "{",
      "hello",
      "{type:'HELLO'}",
      '{"type":"TERMINATE","seq":1,}',
      '{"type":"TERMINATE","seq":1}{"type":"TERMINATE","seq":2}',
      '{"type":"TERMINATE","seq":NaN}',
      "\u{feff}{}",
    ]
  ) {
    assertCodecError(() => decodeFrame(frameOf(text)), {
      code: "BAD_FRAME",
      message: /payload is not JSON/,
      messageType: undefined,
    });
  }
});

Deno.test("decodeFrame() rejects JSON that is not an object", () => {
  const cases: [string, RegExp][] = [
    ["[]", /JSON an array, expected an object/],
    ['[{"type":"TERMINATE","seq":1}]', /JSON an array, expected an object/],
    ['"HELLO"', /JSON string "HELLO", expected an object/],
    ["42", /JSON number 42, expected an object/],
    ["null", /JSON null, expected an object/],
    ["true", /JSON boolean true, expected an object/],
  ];
  for (const [text, message] of cases) {
    assertCodecError(() => decodeFrame(frameOf(text)), { code: "BAD_FRAME", message });
  }
});

Deno.test("decodeFrame() rejects a truncated frame and trailing bytes", () => {
  const bytes = encodeMessage(FULL[8]!);
  assertCodecError(() => decodeFrame(bytes.subarray(0, 5)), {
    code: "BAD_FRAME",
    message: /truncated, 5 bytes hold no complete frame/,
  });
  assertCodecError(() => decodeFrame(concat(bytes, Uint8Array.of(1, 2, 3))), {
    code: "BAD_FRAME",
    message: /3 bytes follow the frame/,
  });
  assertCodecError(() => decodeFrame(concat(bytes, bytes)), { code: "BAD_FRAME" });
});

// --- message errors ------------------------------------------------------------

Deno.test("decodeFrame() rejects an unknown or missing type with BAD_MESSAGE", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ type: "PING", seq: 1 }, /type string "PING" is not a QHCP\/1 message type/],
    [{ type: "hello", seq: 1 }, /type string "hello" is not a QHCP\/1 message type/],
    [{ seq: 1 }, /type missing is not a QHCP\/1 message type/],
    [{ type: 1, seq: 1 }, /type number 1 is not a QHCP\/1 message type/],
    [{ type: null, seq: 1 }, /type null is not a QHCP\/1 message type/],
    [{ type: ["HELLO"], seq: 1 }, /type an array is not a QHCP\/1 message type/],
    [{}, /type missing/],
  ];
  for (const [obj, message] of cases) {
    assertCodecError(() => decodeFrame(jsonFrame(obj)), {
      code: "BAD_MESSAGE",
      message,
      messageType: undefined,
      // A readable seq is kept so that the ERROR can carry `re`.
      seq: obj.seq === undefined ? undefined : 1,
    });
  }
});

Deno.test("decodeFrame() rejects a seq that is not an integer >= 1", () => {
  const cases: [unknown, RegExp][] = [
    [0, /seq number 0 is not an integer >= 1/],
    [-1, /seq number -1 is not an integer >= 1/],
    [1.5, /seq number 1.5 is not an integer >= 1/],
    ["1", /seq string "1" is not an integer >= 1/],
    [undefined, /seq missing is not an integer >= 1/],
    [null, /seq null is not/],
    [true, /seq boolean true is not/],
    [2 ** 53, /seq number 9007199254740992 is not/],
  ];
  for (const type of MESSAGE_TYPES) {
    for (const [seq, message] of cases) {
      const obj = { ...fullOf(type), seq };
      assertCodecError(() => decodeFrame(jsonFrame(obj)), {
        code: "BAD_MESSAGE",
        message,
        messageType: type,
        seq: undefined,
      });
    }
  }
});

Deno.test("decodeFrame() accepts seq 1 and the largest safe integer", () => {
  for (const seq of [1, Number.MAX_SAFE_INTEGER]) {
    assertDecodesTo(jsonFrame({ type: "TERMINATE", seq }), { type: "TERMINATE", seq });
  }
});

/** Required and optional fields of each type, with values of the wrong type or range. */
const FIELD_CASES: Record<MessageType, { field: string; required: boolean; bad: unknown[] }[]> = {
  HELLO: [
    { field: "version", required: true, bad: ["1", 1.5, null, true, [1]] },
    { field: "token", required: true, bad: [5, null, ["t"], {}] },
    { field: "lb_id", required: true, bad: ["", 5, null, ["lb"]] },
    { field: "interval_ms", required: false, bad: [99, 3_600_001, 1000.5, "1000", null, -1] },
    { field: "metrics", required: false, bad: ["cpu_percent", [""], [1], {}, null, [null]] },
    { field: "capabilities", required: false, bad: ["push", [""], [1], {}, null] },
    { field: "heartbeat_ms", required: false, bad: [49, 60_001, 100.5, "250", null] },
  ],
  ACK: [
    { field: "re", required: true, bad: [0, -1, 1.5, "1", null] },
    { field: "version", required: true, bad: ["1", 1.5, null] },
    { field: "server_id", required: true, bad: ["", 1, null] },
    { field: "metrics", required: true, bad: ["cpu_percent", [""], [1], {}, null] },
    { field: "capabilities", required: false, bad: ["push", [""], [true], null] },
    { field: "heartbeat_ms", required: false, bad: [0, 60_001, 2.5, "1000", null] },
  ],
  HEALTH_REQUEST: [
    { field: "metrics", required: false, bad: ["cpu_percent", [""], [7], {}, null] },
  ],
  HEALTH_RESPONSE: [
    { field: "re", required: true, bad: [0, 2.5, "2", null] },
    { field: "status", required: true, bad: ["DOWN", "up", "", 1, null] },
    { field: "metrics", required: true, bad: [[], null, "x", 5, [50, 50]] },
    { field: "ts", required: true, bad: [-1, 1.5, "1", null, 2 ** 53] },
  ],
  CONFIG_UPDATE: [
    { field: "config", required: true, bad: [[], "x", null, 5, true] },
  ],
  CONFIG_ACK: [
    { field: "re", required: true, bad: [0, -1, "3"] },
    {
      field: "config",
      required: true,
      bad: [
        [],
        null,
        "x",
        {},
        { interval_ms: 1000 },
        { metrics: [] },
        { interval_ms: 99, metrics: [] },
        { interval_ms: 3_600_001, metrics: [] },
        { interval_ms: 1000.5, metrics: [] },
        { interval_ms: 1000, metrics: "cpu_percent" },
        { interval_ms: 1000, metrics: [""] },
        { interval_ms: 1000, metrics: [], heartbeat_ms: 10 },
        { interval_ms: 1000, metrics: [], heartbeat_ms: "250" },
      ],
    },
  ],
  ERROR: [
    { field: "re", required: false, bad: [0, -1, "1", null] },
    { field: "code", required: true, bad: ["NOPE", "bad_frame", "", 1, null] },
    { field: "message", required: true, bad: [5, null, ["m"], {}] },
  ],
  TERMINATE: [
    { field: "reason", required: false, bad: [5, null, ["r"], {}] },
  ],
  TERMINATE_ACK: [
    { field: "re", required: true, bad: [0, 1.5, "5", null] },
  ],
  STATUS: [
    { field: "status", required: true, bad: ["DOWN", "", 2, null] },
    { field: "metrics", required: true, bad: [[], null, { cpu_percent: 1 }] },
    { field: "ts", required: true, bad: [-1, 0.5, "0", null] },
    { field: "checks", required: false, bad: [{}, [{ name: "x", ok: "yes", detail: "" }], "x"] },
  ],
  HEARTBEAT: [
    { field: "hb", required: true, bad: [0, -1, 1.5, "1", null] },
    { field: "status", required: true, bad: ["down", 0, null] },
    { field: "cpu_percent", required: true, bad: [-0.1, 100.1, "5", null, Infinity] },
    { field: "mem_percent", required: true, bad: [-1, 101, [], null] },
  ],
};

Deno.test("decodeFrame() rejects each missing required field with BAD_MESSAGE", () => {
  let checked = 0;
  for (const type of MESSAGE_TYPES) {
    for (const { field, required } of FIELD_CASES[type]) {
      const obj = fullOf(type);
      assert.ok(field in obj, `${type} sample lacks ${field}`);
      delete obj[field];
      if (!required) {
        assert.equal(decodeFrame(jsonFrame(obj)).type, type);
        continue;
      }
      assertCodecError(() => decodeFrame(jsonFrame(obj)), {
        code: "BAD_MESSAGE",
        message: new RegExp(`Cannot decode ${type}: field '${field}' is missing`),
        messageType: type,
        seq: obj.seq as number,
      });
      checked++;
    }
  }
  assert.equal(checked, 24);
});

Deno.test("decodeFrame() rejects each field of the wrong type or range with BAD_MESSAGE", () => {
  for (const type of MESSAGE_TYPES) {
    for (const { field, bad } of FIELD_CASES[type]) {
      for (const value of bad) {
        const obj = { ...fullOf(type), [field]: value };
        assertCodecError(() => decodeFrame(jsonFrame(obj)), {
          code: "BAD_MESSAGE",
          message: new RegExp(`Cannot decode ${type}: field '${field}' is .+, expected .+`),
          messageType: type,
          seq: obj.seq as number,
        });
      }
    }
  }
});

Deno.test("decodeFrame() rejects HEALTH_RESPONSE without cpu_percent or mem_percent", () => {
  for (const name of ["cpu_percent", "mem_percent"]) {
    const obj = fullOf("HEALTH_RESPONSE");
    const metrics = obj.metrics as Record<string, unknown>;
    delete metrics[name];
    assertCodecError(() => decodeFrame(jsonFrame(obj)), {
      code: "BAD_MESSAGE",
      message: new RegExp(
        `field 'metrics' is an object, expected an object with ${name} in 0..100`,
      ),
      messageType: "HEALTH_RESPONSE",
      seq: 2,
    });
  }
});

Deno.test("decodeFrame() rejects HEALTH_RESPONSE cpu_percent or mem_percent outside 0..100", () => {
  for (const name of ["cpu_percent", "mem_percent"]) {
    for (const value of [-0.001, -1, 100.001, 101, 1e9]) {
      const obj = fullOf("HEALTH_RESPONSE");
      (obj.metrics as Record<string, unknown>)[name] = value;
      assertCodecError(() => decodeFrame(jsonFrame(obj)), {
        code: "BAD_MESSAGE",
        message: new RegExp(`expected an object with ${name} in 0..100`),
      });
    }
    for (const value of [0, 100, 33.3]) {
      const obj = fullOf("HEALTH_RESPONSE");
      (obj.metrics as Record<string, unknown>)[name] = value;
      assert.deepEqual(decodeFrame(jsonFrame(obj)), obj);
    }
  }
});

Deno.test("decodeFrame() rejects non-number and non-finite metric values", () => {
  const raw = (metrics: string) =>
    frameOf(`{"type":"HEALTH_RESPONSE","seq":1,"re":1,"status":"UP","metrics":${metrics},"ts":1}`);
  const cases: [string, RegExp][] = [
    ['{"cpu_percent":1e999,"mem_percent":1}', /"cpu_percent" is number Infinity/],
    ['{"cpu_percent":1,"mem_percent":-1e999}', /"mem_percent" is number -Infinity/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":1e999}', /"load1" is number Infinity/],
    ['{"cpu_percent":"50","mem_percent":1}', /"cpu_percent" is string "50"/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":"0.5"}', /"load1" is string "0.5"/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":null}', /"load1" is null/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":true}', /"load1" is boolean true/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":[1]}', /"load1" is an array/],
    ['{"cpu_percent":1,"mem_percent":1,"load1":{"v":1}}', /"load1" is an object/],
  ];
  for (const [metrics, message] of cases) {
    assertCodecError(() => decodeFrame(raw(metrics)), {
      code: "BAD_MESSAGE",
      message,
      messageType: "HEALTH_RESPONSE",
      seq: 1,
    });
    assertCodecError(() => decodeFrame(raw(metrics)), {
      code: "BAD_MESSAGE",
      message: /expected an object of finite numbers/,
    });
  }
  // Other metrics may hold any finite number, negative or large.
  assert.equal(
    decodeFrame(raw('{"cpu_percent":1,"mem_percent":1,"temp":-40,"bytes":1e15}')).type,
    "HEALTH_RESPONSE",
  );
});

Deno.test("decodeFrame() rejects an unknown ERROR code", () => {
  for (const code of ["NOT_A_CODE", "bad_frame", "TIMEOUT", "NO_ERROR"]) {
    assertCodecError(
      () => decodeFrame(jsonFrame({ type: "ERROR", seq: 7, code, message: "m" })),
      {
        code: "BAD_MESSAGE",
        message: new RegExp(`field 'code' is string "${code}", expected a known error code`),
        messageType: "ERROR",
        seq: 7,
      },
    );
  }
});

Deno.test("decodeFrame() rejects a HEALTH_RESPONSE status other than UP, DRAINING or FAILING", () => {
  for (const status of ["DOWN", "Up", "draining", "failing", ""]) {
    const obj = { ...fullOf("HEALTH_RESPONSE"), status };
    assertCodecError(() => decodeFrame(jsonFrame(obj)), {
      code: "BAD_MESSAGE",
      message: /field 'status' is string .*, expected "UP", "DRAINING" or "FAILING"/,
    });
  }
});

Deno.test("decodeFrame() enforces HELLO interval_ms in 100..3600000", () => {
  for (const interval_ms of [0, 99, 3_600_001, 100.5]) {
    assertCodecError(() => decodeFrame(jsonFrame({ ...fullOf("HELLO"), interval_ms })), {
      code: "BAD_MESSAGE",
      message: new RegExp(
        `field 'interval_ms' is number ${interval_ms}, expected an integer in 100..3600000`,
      ),
      messageType: "HELLO",
      seq: 1,
    });
  }
  for (const interval_ms of [100, 3_600_000]) {
    const obj = { ...fullOf("HELLO"), interval_ms };
    assertDecodesTo(jsonFrame(obj), obj);
  }
});

Deno.test("decodeFrame() reports UNSUPPORTED_VERSION for HELLO version 2 even with fields missing", () => {
  assertCodecError(() => decodeFrame(jsonFrame({ type: "HELLO", seq: 1, version: 2 })), {
    code: "UNSUPPORTED_VERSION",
    message: /HELLO: version 2 is not supported, expected 1/,
    messageType: "HELLO",
    seq: 1,
  });
  assertCodecError(() => decodeFrame(jsonFrame({ ...fullOf("HELLO"), version: 2 })), {
    code: "UNSUPPORTED_VERSION",
  });
  // Bad other fields do not mask the version.
  assertCodecError(
    () => decodeFrame(jsonFrame({ type: "HELLO", seq: 3, version: 2, token: 5, lb_id: "" })),
    { code: "UNSUPPORTED_VERSION", messageType: "HELLO", seq: 3 },
  );
});

Deno.test("decodeFrame() reports UNSUPPORTED_VERSION for ACK version 2 and other integers", () => {
  assertCodecError(() => decodeFrame(jsonFrame({ ...fullOf("ACK"), version: 2 })), {
    code: "UNSUPPORTED_VERSION",
    message: /ACK: version 2 is not supported, expected 1/,
    messageType: "ACK",
    seq: 1,
  });
  assertCodecError(() => decodeFrame(jsonFrame({ type: "ACK", seq: 4, version: 2 })), {
    code: "UNSUPPORTED_VERSION",
    seq: 4,
  });
  for (const version of [0, -1, 3, 1000]) {
    assertCodecError(() => decodeFrame(jsonFrame({ ...fullOf("HELLO"), version })), {
      code: "UNSUPPORTED_VERSION",
    });
  }
  // A version that is not an integer is malformed, not unsupported.
  assertCodecError(() => decodeFrame(jsonFrame({ ...fullOf("HELLO"), version: "2" })), {
    code: "BAD_MESSAGE",
  });
});

Deno.test("CodecError from decoding carries messageType and seq when they could be read", () => {
  const bad = assertCodecError(
    () => decodeFrame(jsonFrame({ type: "TERMINATE_ACK", seq: 41, re: "x" })),
    { code: "BAD_MESSAGE", messageType: "TERMINATE_ACK", seq: 41 },
  );
  assert.ok(bad instanceof Error);
  assert.equal(bad.name, "CodecError");
  // seq unreadable: only the type is known.
  assertCodecError(() => decodeFrame(jsonFrame({ type: "TERMINATE_ACK", seq: "41", re: 1 })), {
    code: "BAD_MESSAGE",
    messageType: "TERMINATE_ACK",
    seq: undefined,
  });
  // Framing errors know neither.
  assertCodecError(() => decodeFrame(frameOf('{"type":"TERMINATE","seq":41')), {
    code: "BAD_FRAME",
    messageType: undefined,
    seq: undefined,
  });
});

Deno.test("decodeFrame() error messages say what was wrong and what was expected", () => {
  const cases: [Uint8Array, CodecError["code"], RegExp][] = [
    [headerOf(70000), "BAD_FRAME", /^Cannot decode frame: length 70000 exceeds 65536$/],
    [headerOf(0), "BAD_FRAME", /^Cannot decode frame: length 0 is below 1$/],
    [
      frameOf("[1]"),
      "BAD_FRAME",
      /^Cannot decode frame: payload is JSON an array, expected an object$/,
    ],
    [
      jsonFrame({ type: "HELLO", seq: 1, version: 1, token: "t" }),
      "BAD_MESSAGE",
      /^Cannot decode HELLO: field 'lb_id' is missing$/,
    ],
    [
      jsonFrame({ ...fullOf("HELLO"), interval_ms: 99 }),
      "BAD_MESSAGE",
      /^Cannot decode HELLO: field 'interval_ms' is number 99, expected an integer in 100\.\.3600000$/,
    ],
    [
      jsonFrame({ type: "HEALTH_REQUEST", seq: "1" }),
      "BAD_MESSAGE",
      /^Cannot decode HEALTH_REQUEST: seq string "1" is not an integer >= 1$/,
    ],
    [
      jsonFrame({ ...fullOf("ACK"), version: 2 }),
      "UNSUPPORTED_VERSION",
      /^Cannot accept ACK: version 2 is not supported, expected 1$/,
    ],
    [
      jsonFrame({ type: "TERMINATE", seq: 1, reason: 5 }),
      "BAD_MESSAGE",
      /^Cannot decode TERMINATE: field 'reason' is number 5, expected a string$/,
    ],
  ];
  for (const [bytes, code, message] of cases) {
    assertCodecError(() => decodeFrame(bytes), { code, message });
  }
  // Long strings are shortened in messages.
  const e = assertCodecError(
    () => decodeFrame(jsonFrame({ type: "x".repeat(1000), seq: 1 })),
    { code: "BAD_MESSAGE" },
  );
  assert.ok(e.message.length < 150, e.message);
});

// --- truncation --------------------------------------------------------------

Deno.test("decodeFrame() rejects every truncation of a valid frame with BAD_FRAME", () => {
  for (const bytes of SAMPLE_FRAMES) {
    for (let n = 0; n < bytes.length; n++) {
      assertCodecError(() => decodeFrame(bytes.subarray(0, n)), { code: "BAD_FRAME" });
    }
  }
});

Deno.test("FrameDecoder.next() returns null for every strict prefix, then the message", () => {
  for (let k = 0; k < SAMPLES.length; k++) {
    const bytes = SAMPLE_FRAMES[k]!;
    const frames = new FrameDecoder();
    for (let n = 0; n < bytes.length; n++) {
      assert.equal(frames.next(), null, `prefix ${n} of ${SAMPLES[k]!.type}`);
      frames.push(bytes.subarray(n, n + 1));
    }
    const payload = frames.next();
    assert.ok(payload !== null);
    assert.deepEqual(decodeMessage(payload), SAMPLES[k]);
    assert.equal(frames.buffered, 0);
  }
});

Deno.test("FrameDecoder decodes a frame split into two chunks at every point", () => {
  for (let k = 0; k < SAMPLES.length; k++) {
    const bytes = SAMPLE_FRAMES[k]!;
    for (let cut = 0; cut <= bytes.length; cut++) {
      const frames = new FrameDecoder();
      frames.push(bytes.slice(0, cut));
      if (cut < bytes.length) assert.equal(frames.next(), null);
      frames.push(bytes.slice(cut));
      const payload = frames.next();
      assert.ok(payload !== null, `cut ${cut} of ${SAMPLES[k]!.type}`);
      assert.deepEqual(decodeMessage(payload), SAMPLES[k]);
      assert.equal(frames.next(), null);
      assert.equal(frames.buffered, 0);
    }
  }
});

Deno.test("FrameDecoder decodes a frame split into three chunks at every pair of points", () => {
  for (const m of MINIMAL) {
    const bytes = encodeMessage(m);
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b++) {
        const frames = new FrameDecoder();
        frames.push(bytes.subarray(0, a));
        if (a < bytes.length) assert.equal(frames.next(), null);
        frames.push(bytes.subarray(a, b));
        if (b < bytes.length) assert.equal(frames.next(), null);
        frames.push(bytes.subarray(b));
        const payload = frames.next();
        assert.ok(payload !== null);
        assert.deepEqual(decodeMessage(payload), m);
      }
    }
  }
});

// --- mutation ------------------------------------------------------------------

/** decodeFrame() gives a message that re-encodes, or a CodecError; never another error. */
function decodeOrCodecError(bytes: Uint8Array): "accepted" | "rejected" {
  let m: Message;
  try {
    m = decodeFrame(bytes);
  } catch (e) {
    if (!(e instanceof CodecError)) {
      const shown = JSON.stringify(dec.decode(bytes.subarray(0, 120)));
      assert.fail(`non-CodecError ${String(e)} for ${bytes.length} bytes starting ${shown}`);
    }
    assert.equal(e.side, "remote");
    assert.ok(
      ["BAD_FRAME", "BAD_MESSAGE", "UNSUPPORTED_VERSION", "BAD_CONFIG"].includes(e.code),
      e.code,
    );
    return "rejected";
  }
  const again = encodeMessage(m);
  assert.deepEqual(encodeMessage(decodeFrame(again)), again);
  return "accepted";
}

Deno.test("decodeFrame() decodes or throws CodecError for every single-bit flip of a frame", () => {
  const seen = { accepted: 0, rejected: 0 };
  for (const bytes of SAMPLE_FRAMES) {
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const mutated = bytes.slice();
      mutated[bit >> 3]! ^= 1 << (bit & 7);
      const outcome = decodeOrCodecError(mutated);
      seen[outcome]++;
      if (bit < FRAME_HEADER_LENGTH * 8) assert.equal(outcome, "rejected", `header bit ${bit}`);
    }
  }
  assert.ok(seen.accepted > 0 && seen.rejected > 0, JSON.stringify(seen));
});

Deno.test("decodeFrame() and FrameDecoder never yield the message for a changed length byte", () => {
  for (let k = 0; k < SAMPLES.length; k++) {
    const bytes = SAMPLE_FRAMES[k]!;
    for (let pos = 0; pos < FRAME_HEADER_LENGTH; pos++) {
      for (let value = 0; value < 256; value++) {
        if (value === bytes[pos]) continue;
        const mutated = bytes.slice();
        mutated[pos] = value;
        assertCodecError(() => decodeFrame(mutated), { code: "BAD_FRAME" });

        const frames = new FrameDecoder();
        frames.push(mutated);
        let payload: Uint8Array | null;
        try {
          payload = frames.next();
        } catch (e) {
          assert.ok(e instanceof CodecError && e.code === "BAD_FRAME", String(e));
          continue;
        }
        if (payload === null) continue;
        // A shorter length cuts the JSON object short: never a message.
        assert.ok(payload.length < bytes.length - FRAME_HEADER_LENGTH);
        const cut = payload;
        assertCodecError(() => decodeMessage(cut), { code: "BAD_FRAME" });
      }
    }
  }
});

// --- fuzz ----------------------------------------------------------------------

const FUZZ_SEED = 0x5eed_0001;
const FUZZ_INPUTS = 12_000;

Deno.test(
  `decodeFrame() and FrameDecoder only return valid messages or throw CodecError (fuzz, seed 0x${
    FUZZ_SEED.toString(16)
  }, ${FUZZ_INPUTS} inputs)`,
  () => {
    const rand = mulberry32(FUZZ_SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
    const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));

    const NUMBERS = [
      0,
      -0,
      1,
      -1,
      1.5,
      2,
      99,
      100,
      101,
      3_600_000,
      3_600_001,
      2 ** 53,
      1e308,
      5e-324,
    ];
    const STRINGS = [
      "",
      "UP",
      "DRAINING",
      "HELLO",
      "ACK",
      "cpu_percent",
      "mem_percent",
      "BAD_FRAME",
      "\u0000",
      "é",
      "\ud800",
      "x".repeat(60),
    ];
    const randomJson = (depth: number): unknown => {
      switch (int(depth >= 3 ? 6 : 8)) {
        case 0:
          return null;
        case 1:
          return rand() < 0.5;
        case 2:
          return pick(NUMBERS);
        case 3:
          return (rand() - 0.5) * 10 ** int(20);
        case 4:
          return pick(STRINGS);
        case 5:
          return String.fromCharCode(...randomBytes(int(8)));
        case 6:
          return Array.from({ length: int(4) }, () => randomJson(depth + 1));
        default: {
          const o: Record<string, unknown> = {};
          for (let i = int(4); i > 0; i--) {
            o[pick(["a", "interval_ms", "metrics", "cpu_percent", "mem_percent", "type", "seq"])] =
              randomJson(depth + 1);
          }
          return o;
        }
      }
    };
    const TOKENS = [
      "{",
      "}",
      "[",
      "]",
      ":",
      ",",
      '"type"',
      '"seq"',
      '"HELLO"',
      '"TERMINATE"',
      "1",
      "-0",
      "1e999",
      "null",
      " ",
      '"',
      "\\",
    ];

    const generators: (() => Uint8Array)[] = [
      // random bytes
      () => randomBytes(int(64)),
      // random-length frames with random payloads
      () => concat(headerOf(int(300)), randomBytes(int(300))),
      // frames with a correct length over random bytes
      () => frameOf(randomBytes(1 + int(100))),
      // oversize lengths
      () =>
        concat(
          headerOf(MAX_FRAME_LENGTH + 1 + int(0xFFFFFFFF - MAX_FRAME_LENGTH)),
          randomBytes(int(20)),
        ),
      // bit flips
      () => {
        const b = pick(SAMPLE_FRAMES).slice();
        for (let i = 1 + int(4); i > 0; i--) b[int(b.length)]! ^= 1 << int(8);
        return b;
      },
      // byte insertions
      () => {
        const b = pick(SAMPLE_FRAMES);
        const at = int(b.length + 1);
        return concat(b.subarray(0, at), randomBytes(1 + int(3)), b.subarray(at));
      },
      // byte deletions
      () => {
        const b = pick(SAMPLE_FRAMES);
        const at = int(b.length);
        return concat(b.subarray(0, at), b.subarray(at + 1 + int(3)));
      },
      // truncations
      () => {
        const b = pick(SAMPLE_FRAMES);
        return b.subarray(0, int(b.length));
      },
      // splices of two frames
      () => {
        const a = pick(SAMPLE_FRAMES);
        const b = pick(SAMPLE_FRAMES);
        return concat(a.subarray(0, int(a.length + 1)), b.subarray(int(b.length + 1)));
      },
      // a frame whose payload keeps the length but gets a new header
      () => {
        const b = pick(SAMPLE_FRAMES).slice();
        new DataView(b.buffer).setUint32(0, int(2) ? int(b.length * 2) : int(0x100000000));
        return b;
      },
      // valid JSON objects with a field set to a random value, removed, or the type swapped
      () => {
        const obj = structuredClone(pick(SAMPLES)) as unknown as Record<string, unknown>;
        for (let i = 1 + int(2); i > 0; i--) {
          const keys = [...Object.keys(obj), "extra", "version", "re", "metrics", "config"];
          const key = pick(keys);
          const r = int(4);
          if (r === 0) delete obj[key];
          else if (r === 1) obj.type = pick(MESSAGE_TYPES);
          else if (r === 2 && typeof obj.metrics === "object" && obj.metrics !== null) {
            (obj.metrics as Record<string, unknown>)[pick(["cpu_percent", "mem_percent", "x"])] =
              randomJson(2);
          } else obj[key] = randomJson(1);
        }
        return jsonFrame(obj);
      },
      // valid messages with another seq and unknown extra fields
      () => jsonFrame({ ...pick(SAMPLES), seq: 1 + int(1e6), [pick(STRINGS)]: randomJson(1) }),
      // valid JSON of random shape
      () => jsonFrame(randomJson(0) ?? null),
      // token soup
      () => frameOf(Array.from({ length: 1 + int(20) }, () => pick(TOKENS)).join("")),
    ];

    const seen = { accepted: 0, rejected: 0 };
    for (let i = 0; i < FUZZ_INPUTS; i++) {
      const input = pick(generators)();
      seen[decodeOrCodecError(input)]++;

      // decodeMessage() on whatever follows the header.
      const payload = input.subarray(Math.min(FRAME_HEADER_LENGTH, input.length));
      try {
        const m = decodeMessage(payload);
        encodeMessage(m);
      } catch (e) {
        if (!(e instanceof CodecError)) assert.fail(`decodeMessage threw ${String(e)}`);
      }

      // FrameDecoder fed in random chunks.
      const frames = new FrameDecoder();
      let failed = false;
      for (let at = 0; at < input.length && !failed;) {
        const next = Math.min(input.length, at + 1 + int(input.length));
        frames.push(input.subarray(at, next));
        at = next;
        for (;;) {
          let p: Uint8Array | null;
          try {
            p = frames.next();
          } catch (e) {
            assert.ok(e instanceof CodecError && e.code === "BAD_FRAME", String(e));
            failed = true;
            break;
          }
          if (p === null) break;
          try {
            encodeMessage(decodeMessage(p));
          } catch (e) {
            if (!(e instanceof CodecError)) assert.fail(`decodeMessage threw ${String(e)}`);
          }
        }
      }
      if (failed) assertCodecError(() => frames.next(), { code: "BAD_FRAME" });
    }
    assert.ok(seen.accepted > 1000, JSON.stringify(seen));
    assert.ok(seen.rejected > 5000, JSON.stringify(seen));
  },
);

Deno.test({
  name: "decodeMessage() throws only CodecError for deeply nested JSON",
  fn() {
    for (const depth of [5_000, 30_000]) {
      const text = `{"type":"CONFIG_UPDATE","seq":1,"config":{"a":${"[".repeat(depth)}${
        "]".repeat(depth)
      }}}`;
      try {
        decodeFrame(frameOf(text));
      } catch (e) {
        assert.ok(e instanceof CodecError, `depth ${depth}: ${String(e)}`);
      }
    }
  },
});

Deno.test({
  name: "decodeFrame() keeps no unknown config content that could grow when re-encoded",
  fn() {
    const values = Array.from({ length: 13_000 }, () => "1e20").join(",");
    assertCodecError(
      () => decodeFrame(frameOf(`{"type":"CONFIG_UPDATE","seq":1,"config":{"a":[${values}]}}`)),
      { code: "BAD_CONFIG" },
    );
  },
});

// --- FrameDecoder streams -------------------------------------------------------

Deno.test("FrameDecoder returns many frames pushed in one chunk, in order", () => {
  const all = concat(...SAMPLE_FRAMES, ...SAMPLE_FRAMES);
  const frames = new FrameDecoder();
  frames.push(all);
  assert.equal(frames.buffered, all.length);
  const out: Message[] = [];
  for (let p = frames.next(); p !== null; p = frames.next()) out.push(decodeMessage(p));
  assert.deepEqual(out, [...SAMPLES, ...SAMPLES]);
  assert.equal(frames.buffered, 0);
});

Deno.test("FrameDecoder keeps a partial frame that follows complete ones", () => {
  const a = SAMPLE_FRAMES[0]!;
  const b = SAMPLE_FRAMES[1]!;
  const frames = new FrameDecoder();
  frames.push(concat(a, b.subarray(0, 6)));
  assert.deepEqual(decodeMessage(frames.next()!), SAMPLES[0]);
  assert.equal(frames.next(), null);
  assert.equal(frames.buffered, 6);
  frames.push(b.subarray(6));
  assert.deepEqual(decodeMessage(frames.next()!), SAMPLES[1]);
});

Deno.test("FrameDecoder reassembles a maximal frame from 1-byte chunks", () => {
  const overhead = '{"type":"TERMINATE","seq":9,"reason":""}'.length;
  const m: Message = { type: "TERMINATE", seq: 9, reason: "z".repeat(MAX_FRAME_LENGTH - overhead) };
  const bytes = encodeMessage(m);
  const frames = new FrameDecoder();
  let payload: Uint8Array | null = null;
  for (let i = 0; i < bytes.length; i++) {
    frames.push(bytes.subarray(i, i + 1));
    payload = frames.next();
    if (i < bytes.length - 1) assert.equal(payload, null);
  }
  assert.ok(payload !== null);
  assert.deepEqual(decodeMessage(payload), m);
});

Deno.test("FrameDecoder ignores empty chunks", () => {
  const frames = new FrameDecoder();
  frames.push(new Uint8Array(0));
  assert.equal(frames.buffered, 0);
  assert.equal(frames.next(), null);
  frames.push(SAMPLE_FRAMES[2]!);
  frames.push(new Uint8Array(0));
  assert.deepEqual(decodeMessage(frames.next()!), SAMPLES[2]);
});

Deno.test("FrameDecoder stays failed after a BAD_FRAME", () => {
  const frames = new FrameDecoder();
  frames.push(concat(SAMPLE_FRAMES[0]!, headerOf(0)));
  assert.deepEqual(decodeMessage(frames.next()!), SAMPLES[0]);
  const first = assertCodecError(() => frames.next(), { code: "BAD_FRAME" });
  frames.push(SAMPLE_FRAMES[1]!);
  const second = assertCodecError(() => frames.next(), { code: "BAD_FRAME" });
  assert.equal(second.message, first.message);
  assertCodecError(() => frames.next(), { code: "BAD_FRAME", message: /length 0 is below 1/ });
});

// --- validateConfigUpdate ------------------------------------------------------

const KNOWN = ["cpu_percent", "mem_percent", "load1"] as const;

Deno.test("validateConfigUpdate() accepts interval_ms and metrics", () => {
  assert.deepEqual(validateConfigUpdate({}, KNOWN), {});
  assert.deepEqual(validateConfigUpdate({ interval_ms: 100 }, KNOWN), { interval_ms: 100 });
  assert.deepEqual(validateConfigUpdate({ interval_ms: 3_600_000 }, KNOWN), {
    interval_ms: 3_600_000,
  });
  assert.deepEqual(validateConfigUpdate({ metrics: ["load1"] }, KNOWN), { metrics: ["load1"] });
  assert.deepEqual(validateConfigUpdate({ metrics: [] }, KNOWN), { metrics: [] });
  assert.deepEqual(
    validateConfigUpdate({ interval_ms: 2000, metrics: ["load1", "cpu_percent", "load1"] }, KNOWN),
    { interval_ms: 2000, metrics: ["load1", "cpu_percent"] },
  );
});

Deno.test("validateConfigUpdate() rejects unknown keys with BAD_CONFIG", () => {
  for (const key of ["foo", "interval", "Metrics", "status"]) {
    assertCodecError(() => validateConfigUpdate({ [key]: 1 }, KNOWN), {
      code: "BAD_CONFIG",
      message: new RegExp(`unknown field '${key}', expected interval_ms, metrics or heartbeat_ms`),
    });
  }
  assertCodecError(() => validateConfigUpdate({ interval_ms: 1000, extra: true }, KNOWN), {
    code: "BAD_CONFIG",
  });
});

Deno.test("validateConfigUpdate() rejects out-of-range and non-integer intervals with BAD_CONFIG", () => {
  for (const interval_ms of [0, 99, -100, 3_600_001, 1e12, 1000.5, "1000", null, true, [1000]]) {
    assertCodecError(() => validateConfigUpdate({ interval_ms }, KNOWN), {
      code: "BAD_CONFIG",
      message: /interval_ms .* is not an integer in 100\.\.3600000/,
    });
  }
});

Deno.test("validateConfigUpdate() rejects unknown metric names with BAD_CONFIG", () => {
  assertCodecError(() => validateConfigUpdate({ metrics: ["cpu_percent", "gpu"] }, KNOWN), {
    code: "BAD_CONFIG",
    message: /unknown metric "gpu", expected one of cpu_percent, mem_percent, load1/,
  });
});

Deno.test("validateConfigUpdate() rejects metrics that are not an array of names with BAD_CONFIG", () => {
  for (const metrics of ["cpu_percent", { cpu_percent: true }, [1], [""], null, 5, [["load1"]]]) {
    assertCodecError(() => validateConfigUpdate({ metrics }, KNOWN), {
      code: "BAD_CONFIG",
      message: /metrics must be an array of non-empty strings/,
    });
  }
});

// --- encode errors -------------------------------------------------------------

Deno.test("encodeMessage() rejects invalid messages with a local BAD_MESSAGE", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ type: "TERMINATE", seq: 0 }, /Cannot encode TERMINATE: .*seq number 0/],
    [{ type: "TERMINATE_ACK", seq: 1 }, /Cannot encode TERMINATE_ACK: .*'re' is missing/],
    [{ type: "PING", seq: 1 }, /Cannot encode PING/],
    [{ ...fullOf("HEALTH_RESPONSE"), status: "DOWN" }, /Cannot encode HEALTH_RESPONSE/],
    [
      { ...fullOf("HEALTH_RESPONSE"), metrics: { cpu_percent: NaN, mem_percent: 1 } },
      /"cpu_percent" is number NaN/,
    ],
    [
      { ...fullOf("HEALTH_RESPONSE"), metrics: { cpu_percent: 1, mem_percent: Infinity } },
      /"mem_percent" is number Infinity/,
    ],
    [{ ...fullOf("HELLO"), lb_id: "" }, /Cannot encode HELLO: .*'lb_id'/],
    [{ ...fullOf("HELLO"), interval_ms: 50 }, /Cannot encode HELLO: .*'interval_ms'/],
    [{ ...fullOf("ERROR"), code: "NOPE" }, /Cannot encode ERROR/],
  ];
  for (const [m, message] of bad) {
    assertCodecError(() => encodeMessage(m as unknown as Message), {
      code: "BAD_MESSAGE",
      side: "local",
      message,
    });
  }
});

Deno.test("encodeMessage() rejects HELLO version 2 with a local error", () => {
  const e = assertCodecError(
    () => encodeMessage({ ...fullOf("HELLO"), version: 2 } as unknown as Message),
    { code: "BAD_MESSAGE", side: "local" },
  );
  assert.match(e.message, /version 2/);
});

Deno.test("encodeMessage() rejects a message whose JSON exceeds 65536 bytes", () => {
  const overhead = '{"type":"TERMINATE","seq":1,"reason":""}'.length;
  const reason = "r".repeat(MAX_FRAME_LENGTH - overhead + 1);
  assertCodecError(() => encodeMessage({ type: "TERMINATE", seq: 1, reason }), {
    code: "BAD_MESSAGE",
    side: "local",
    message: /Cannot encode TERMINATE: length 65537 exceeds 65536/,
  });
  // Multi-byte characters count as bytes, not as UTF-16 units.
  const wide = "é".repeat(40_000);
  assertCodecError(() => encodeMessage({ type: "TERMINATE", seq: 1, reason: wide }), {
    code: "BAD_MESSAGE",
    side: "local",
    message: new RegExp(`length ${80_000 + overhead} exceeds 65536`),
  });
});

Deno.test("decodeFrame() accepts ACK services and rejects each malformed one as BAD_MESSAGE", () => {
  const ack = { type: "ACK", seq: 1, re: 1, version: 1, server_id: "s", metrics: [] };
  const good = [
    { name: "web", port: 8080 },
    { name: "db-2", port: 5432, tags: ["primary", "eu"] },
  ];
  assertDecodesTo(jsonFrame({ ...ack, services: good }), { ...ack, services: good });
  const bad: unknown[] = [
    "web:8080",
    [{ name: "web" }],
    [{ name: "-web", port: 80 }],
    [{ name: "a".repeat(64), port: 80 }],
    [{ name: "web.x", port: 80 }],
    [{ name: "web", port: 0 }],
    [{ name: "web", port: 65536 }],
    [{ name: "web", port: 80.5 }],
    [{ name: "web", port: 80, tags: "primary" }],
    [{ name: "web", port: 80, tags: [""] }],
    [{ name: "web", port: 80, tags: ["x".repeat(64)] }],
    [{
      name: "web",
      port: 80,
      tags: Array.from({ length: MAX_SERVICE_TAGS + 1 }, (_, i) => `t${i}`),
    }],
    Array.from({ length: MAX_SERVICES + 1 }, (_, i) => ({ name: `s${i}`, port: 80 })),
    [null],
  ];
  for (const services of bad) {
    assertCodecError(() => decodeFrame(jsonFrame({ ...ack, services })), {
      code: "BAD_MESSAGE",
      message: /services/,
      messageType: "ACK",
      seq: 1,
    });
  }
});
