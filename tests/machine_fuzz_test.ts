/**
 * Seeded fuzz tests of the two session state machines, {@linkcode ServerSession}
 * and {@linkcode LbSession}, against docs/PROTOCOL.md.
 *
 * Every input is driven the way the real peers drive it (lib/transport/read_messages.ts):
 * bytes go into one {@linkcode FrameDecoder} per session, each payload through
 * {@linkcode decodeMessage}, then to `receive()` or, on a CodecError, to
 * `receiveInvalid()`; a bad length ends reading. Beside each machine runs a small
 * model written from the spec alone (its own deframer, field checks and the §4
 * check order) that predicts the complete action list of every call.
 *
 * Only the spec's answer passes. Five disagreements found by this fuzz
 * ({@linkcode KNOWN}) are fixed; the model still knows each old answer, so a
 * regression is named in the failure, and each has a test at the end of this
 * file. Time is an argument: no timers.
 */

import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  CodecError,
  decodeFrame,
  decodeMessage,
  encodeMessage,
  FrameDecoder,
} from "../lib/protocol/codec.ts";
import { type LbAction, LbSession } from "../lib/protocol/lb_session.ts";
import type { ErrorCode, Message, MessageType } from "../lib/protocol/wire.ts";
import {
  type AuthResult,
  type ServerAction,
  ServerSession,
} from "../lib/protocol/server_session.ts";
import { concat, mulberry32 } from "./_helpers.ts";

// --- seeded randomness --------------------------------------------------------

/** The suite's seeded PRNG (mulberry32), with the draws the fuzz needs. */
class Rng {
  readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  subset<T>(items: readonly T[]): T[] {
    return items.filter(() => this.chance(0.4));
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

// --- the spec, restated independently of lib/ ---------------------------------

const T0 = 1_700_000_000_000;
const EXPIRES = T0 + 3_600_000;
const LB_TIMEOUT = 2000;
const SERVER_ID = "web-1";
const MAX_FRAME = 65_536;
const MAX_INT = 2 ** 53 - 1;

/** §3: the nine message types, and §10's two. */
const TYPES: readonly MessageType[] = [
  "HELLO",
  "ACK",
  "HEALTH_REQUEST",
  "HEALTH_RESPONSE",
  "CONFIG_UPDATE",
  "CONFIG_ACK",
  "ERROR",
  "TERMINATE",
  "TERMINATE_ACK",
  "STATUS",
  "HEARTBEAT",
];
/** §10: the capabilities. */
const CAPS = ["push", "heartbeat", "datagram"] as const;
type Cap = typeof CAPS[number];
const STATUSES = ["UP", "DRAINING", "FAILING"];

/** §4: the seven error codes. */
const CODES: readonly ErrorCode[] = [
  "BAD_FRAME",
  "BAD_MESSAGE",
  "UNEXPECTED_MESSAGE",
  "UNSUPPORTED_VERSION",
  "UNAUTHORIZED",
  "BAD_CONFIG",
  "INTERNAL",
];

/** §6: the CONNECTION_CLOSE code that follows each ERROR code. */
const CLOSE_AFTER: Record<ErrorCode, number> = {
  BAD_FRAME: 0x01,
  BAD_MESSAGE: 0x02,
  UNEXPECTED_MESSAGE: 0x03,
  UNSUPPORTED_VERSION: 0x04,
  UNAUTHORIZED: 0x05,
  BAD_CONFIG: 0x06,
  INTERNAL: 0x07,
};
const NO_ERROR = 0x00;

const REQUIRED = ["cpu_percent", "mem_percent"];
/** What the fuzzed server can report; swap_percent is a spec name it does not know. */
const AVAILABLE = ["cpu_percent", "mem_percent", "load_1", "disk_percent", "uptime_s"];
const VALUES: Record<string, number> = {
  cpu_percent: 12.5,
  mem_percent: 40,
  load_1: 0.75,
  disk_percent: 55,
  uptime_s: 1234,
};
const METRIC_POOL = [...AVAILABLE, "swap_percent", "zz", "net_rx_bytes_per_s"];

type Obj = Record<string, unknown>;
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const enc = new TextEncoder();

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
/** §3: "Integers are JSON numbers without fraction, at most 2^53 - 1." */
const isInt = (v: unknown, min = -MAX_INT, max = MAX_INT): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
const isSeq = (v: unknown): v is number => isInt(v, 1);
const isStr = (v: unknown): v is string => typeof v === "string";
const isName = (v: unknown): boolean => isStr(v) && v.length > 0;
const isNames = (v: unknown): v is string[] => Array.isArray(v) && v.every(isName);
const isInterval = (v: unknown): boolean => isInt(v, 100, 3_600_000);
const isHeartbeatMs = (v: unknown): boolean => isInt(v, 50, 60_000);
const isPercent = (v: unknown): boolean => typeof v === "number" && v >= 0 && v <= 100;
const isCheckList = (v: unknown): boolean =>
  Array.isArray(v) &&
  v.every((c) => isObj(c) && isStr(c.name) && typeof c.ok === "boolean" && isStr(c.detail));
const req = (o: Obj, k: string, ok: (v: unknown) => boolean) => o[k] !== undefined && ok(o[k]);
const opt = (o: Obj, k: string, ok: (v: unknown) => boolean) => o[k] === undefined || ok(o[k]);
const isMetricValues = (v: unknown): boolean =>
  isObj(v) &&
  Object.values(v).every((x) => typeof x === "number" && Number.isFinite(x)) &&
  REQUIRED.every((n) => typeof v[n] === "number" && v[n] >= 0 && v[n] <= 100);

/** §3 field table: true when every field of the type is present and well typed. */
function fieldsOk(type: MessageType, o: Obj): boolean {
  switch (type) {
    case "HELLO":
      return req(o, "version", (v) => v === 1) && req(o, "token", isStr) &&
        req(o, "lb_id", isName) && opt(o, "interval_ms", isInterval) &&
        opt(o, "metrics", isNames) && opt(o, "capabilities", isNames) &&
        opt(o, "heartbeat_ms", isHeartbeatMs);
    case "ACK":
      return req(o, "re", isSeq) && req(o, "version", (v) => v === 1) &&
        req(o, "server_id", isName) && req(o, "metrics", isNames) &&
        opt(o, "capabilities", isNames) && opt(o, "heartbeat_ms", isHeartbeatMs);
    case "HEALTH_REQUEST":
      return opt(o, "metrics", isNames);
    case "HEALTH_RESPONSE":
      return req(o, "re", isSeq) && req(o, "status", (v) => STATUSES.includes(v as string)) &&
        req(o, "metrics", isMetricValues) && req(o, "ts", (v) => isInt(v, 0)) &&
        opt(o, "checks", isCheckList);
    case "CONFIG_UPDATE":
      return req(o, "config", isObj);
    case "CONFIG_ACK":
      return req(o, "re", isSeq) &&
        req(o, "config", (c) =>
          isObj(c) && isInterval(c.interval_ms) && isNames(c.metrics) &&
          opt(c, "heartbeat_ms", isHeartbeatMs));
    case "ERROR":
      return opt(o, "re", isSeq) && req(o, "code", (v) => CODES.includes(v as ErrorCode)) &&
        req(o, "message", isStr);
    case "TERMINATE":
      return opt(o, "reason", isStr);
    case "TERMINATE_ACK":
      return req(o, "re", isSeq);
    case "STATUS":
      return req(o, "status", (v) => STATUSES.includes(v as string)) &&
        req(o, "metrics", isMetricValues) && req(o, "ts", (v) => isInt(v, 0)) &&
        opt(o, "checks", isCheckList);
    case "HEARTBEAT":
      return req(o, "hb", isSeq) && req(o, "status", (v) => STATUSES.includes(v as string)) &&
        req(o, "cpu_percent", isPercent) && req(o, "mem_percent", isPercent);
  }
}

/** §3 CONFIG_UPDATE and the BAD_CONFIG row of §4, for this server's metric names. */
function configBad(c: Obj): boolean {
  return Object.keys(c).some((k) =>
    k !== "interval_ms" && k !== "metrics" && k !== "heartbeat_ms"
  ) ||
    (c.interval_ms !== undefined && !isInterval(c.interval_ms)) ||
    (c.heartbeat_ms !== undefined && !isHeartbeatMs(c.heartbeat_ms)) ||
    (c.metrics !== undefined &&
      (!isNames(c.metrics) || c.metrics.some((n) => !AVAILABLE.includes(n))));
}

/** The step of §4's check order that a payload fails at, or "ok". */
type Stage = "frame" | "head" | "seq" | "state" | "version" | "fields" | "config" | "ok";
const STAGE_CODE: Record<Exclude<Stage, "ok">, ErrorCode> = {
  frame: "BAD_FRAME",
  head: "BAD_MESSAGE",
  seq: "BAD_MESSAGE",
  state: "UNEXPECTED_MESSAGE",
  version: "UNSUPPORTED_VERSION",
  fields: "BAD_MESSAGE",
  config: "BAD_CONFIG",
};

interface Verdict {
  stage: Stage;
  /** The `type` field as parsed, whatever it is. */
  rawType: unknown;
  /** The `seq` when it could be read (an integer >= 1). */
  seq: number | undefined;
  type: MessageType | undefined;
  o: Obj;
}

/** Runs §4 steps 1-6 on one payload (null: a bad length header). */
function judge(payload: Uint8Array | null, inSeq: number, accepts: readonly string[]): Verdict {
  const at = (stage: Stage, o: Obj = {}, seq?: number, type?: MessageType): Verdict => ({
    stage,
    rawType: o.type,
    seq,
    type,
    o,
  });
  if (payload === null) return at("frame");
  let value: unknown;
  try {
    value = JSON.parse(UTF8.decode(payload));
  } catch {
    return at("frame");
  }
  if (!isObj(value)) return at("frame");
  const o = value;
  const seq = isSeq(o.seq) ? o.seq : undefined;
  if (!TYPES.includes(o.type as MessageType) || seq === undefined) return at("head", o, seq);
  const type = o.type as MessageType;
  if (seq !== inSeq) return at("seq", o, seq, type);
  if (!accepts.includes(type)) return at("state", o, seq, type);
  if ((type === "HELLO" || type === "ACK") && isInt(o.version) && o.version !== 1) {
    return at("version", o, seq, type);
  }
  if (!fieldsOk(type, o)) return at("fields", o, seq, type);
  if (type === "CONFIG_UPDATE" && configBad(o.config as Obj)) return at("config", o, seq, type);
  return at("ok", o, seq, type);
}

/** §2 deframing, independent of FrameDecoder. A bad length ends the stream. */
type SpecEvent = { kind: "payload"; bytes: Uint8Array } | { kind: "badLength"; length: number };

class SpecDeframer {
  #buf: Uint8Array = new Uint8Array(0);
  #dead = false;

  push(bytes: Uint8Array): SpecEvent[] {
    const out: SpecEvent[] = [];
    if (this.#dead) return out;
    let buf = concat(this.#buf, bytes);
    while (buf.length >= 4) {
      const length = buf[0]! * 2 ** 24 + buf[1]! * 2 ** 16 + buf[2]! * 2 ** 8 + buf[3]!;
      if (length < 1 || length > MAX_FRAME) {
        this.#dead = true;
        out.push({ kind: "badLength", length });
        buf = new Uint8Array(0);
        break;
      }
      if (buf.length < 4 + length) break;
      out.push({ kind: "payload", bytes: buf.slice(4, 4 + length) });
      buf = buf.slice(4 + length);
    }
    this.#buf = buf;
    return out;
  }
}

// --- disagreements with the spec (each has an ignored test below) ----------------

/** Disagreements the fuzz found, now fixed; the fuzz names them if the old answer returns. */
const KNOWN = {
  D1: "LbSession answers a malformed or out-of-order ERROR with an ERROR (§4: never)",
  D2: "ServerSession answers an ERROR (wrong state, malformed, out of order) with an ERROR",
  D3: "a received ERROR BAD_CONFIG that ends the session closes with 0x06 (§6: never to close)",
  D4: "ERROR for an unknown type has no re although its seq could be read (§4)",
  C: "ServerSession answers ERROR BAD_CONFIG while TERMINATING, where §7 ignores CONFIG_UPDATE",
} as const;
type BugId = keyof typeof KNOWN;

// --- expectations ---------------------------------------------------------------

/** An action with the parts the spec fixes (no human-readable text). */
type Norm = Record<string, unknown>;

interface Outcome {
  desc: string;
  test: (actions: Norm[]) => boolean;
}

interface Expect {
  main: Outcome;
  /** The machine's current, known-wrong answer, accepted and counted. */
  alt?: Outcome & { bug: BugId };
  /** Moves the model to its next state. */
  apply: () => void;
}

const exact = (want: Norm[]): Outcome => ({
  desc: JSON.stringify(want),
  test: (n) => isDeepStrictEqual(n, want),
});
const send = (message: Norm): Norm => ({ kind: "send", message });
const close = (code: number): Norm => ({ kind: "close", code });
const errorMessage = (seq: number, code: ErrorCode, re: number | undefined): Norm =>
  re === undefined
    ? { type: "ERROR", seq, code, message: "<text>" }
    : { type: "ERROR", seq, re, code, message: "<text>" };

function normalize(a: ServerAction | LbAction): Norm {
  switch (a.kind) {
    case "send": {
      const m = a.message;
      const text = m.type === "ERROR" && typeof m.message === "string" && m.message.length > 0;
      return { kind: "send", message: text ? { ...m, message: "<text>" } : m };
    }
    case "close":
      return { kind: "close", code: a.code };
    case "failed":
      return {
        kind: "failed",
        failure: a.failure.code === undefined
          ? { kind: a.failure.kind }
          : { kind: a.failure.kind, code: a.failure.code },
      };
    case "config":
      return a.ok
        ? { kind: "config", seq: a.seq, ok: true, config: a.config }
        : { kind: "config", seq: a.seq, ok: false, code: a.code };
    case "check":
      return a.ok
        ? { kind: "check", ok: true, rttMs: a.rttMs, re: a.response.re }
        : { kind: "check", ok: false, failure: a.failure.kind };
    case "ready":
      if (!("ack" in a)) return { ...a };
      return {
        kind: "ready",
        re: a.ack.re,
        setupMs: a.setupMs,
        capabilities: a.capabilities,
        ...(a.heartbeatMs === undefined ? {} : { heartbeatMs: a.heartbeatMs }),
      };
    case "status":
      return { kind: "status", status: a.message.status };
    case "heartbeat":
      return { kind: "heartbeat", counter: a.counter, missed: a.missed };
    default:
      return { ...a };
  }
}

// --- bytes ------------------------------------------------------------------------

function frameOf(payload: Uint8Array, length = payload.length): Uint8Array {
  const head = new Uint8Array([length >>> 24, (length >>> 16) & 255, (length >>> 8) & 255, length]);
  return concat(head, payload);
}

const frameText = (text: string): Uint8Array => frameOf(enc.encode(text));

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Exact hex (first 160 bytes) and a readable rendering, for reproductions. */
function show(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 160);
  const hex = Array.from(head, (b) => b.toString(16).padStart(2, "0")).join("");
  const text = new TextDecoder().decode(head);
  const more = bytes.length > 160 ? "…" : "";
  return `${bytes.length} bytes 0x${hex}${more} ${JSON.stringify(text)}${more}`;
}

/** Chunks as a stream may deliver them: whole, cut at random points, or byte by byte. */
function split(rng: Rng, bytes: Uint8Array): Uint8Array[] {
  const mode = rng.int(10);
  if (bytes.length < 2 || mode < 5) return [bytes];
  if (mode === 9 && bytes.length <= 256) return Array.from(bytes, (b) => new Uint8Array([b]));
  const cuts = [
    ...new Set(Array.from({ length: 1 + rng.int(3) }, () => 1 + rng.int(bytes.length - 1))),
  ]
    .sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(bytes.subarray(from, cut));
    from = cut;
  }
  return out;
}

// --- the harness: one machine, its model and its byte stream -----------------------

abstract class Harness<A extends ServerAction | LbAction> {
  now = T0 + 10;
  /** The seq the peer's next message must carry. */
  inSeq = 1;
  /** The seq this machine's next message must carry. */
  outSeq = 1;
  readonly log: string[] = [];
  readonly #decoder = new FrameDecoder();
  readonly #deframer = new SpecDeframer();
  #readerDone = false;

  constructor(name: string, readonly cover: Set<string>) {
    this.log.push(name);
  }

  abstract receive(message: Message, now: number): A[];
  abstract receiveInvalid(error: CodecError, now: number): A[];
  abstract tick(now: number): A[];
  /** The model's prediction for one delivered payload (null: a bad length). */
  abstract expect(payload: Uint8Array | null): Expect;
  abstract fatalWant(code: ErrorCode, re: number | undefined): Norm[];
  /** §4: "a receiver that gets a fatal ERROR records it and closes" (sends nothing). */
  abstract quietClose(): Outcome;
  abstract closeModel(): void;
  abstract get modelState(): string;
  abstract get machineState(): string;
  abstract get closed(): boolean;
  abstract readonly errorBug: BugId;
  abstract readonly stateName: string;

  fail(message: string): never {
    assert.fail(`${message}\n--- reproduction ---\n${this.log.join("\n")}`);
  }

  /** Feeds bytes through FrameDecoder as _readMessages does; returns every action. */
  feed(bytes: Uint8Array, label: string, rng: Rng): A[] {
    this.log.push(`feed ${label}: ${show(bytes)}`);
    const expected = this.#deframer.push(bytes);
    const all: A[] = [];
    let i = 0;
    for (const chunk of split(rng, bytes)) {
      if (this.#readerDone) break;
      this.#decoder.push(chunk);
      for (;;) {
        let payload: Uint8Array | null;
        try {
          payload = this.#decoder.next();
        } catch (e) {
          if (!(e instanceof CodecError) || e.code !== "BAD_FRAME") {
            this.fail(`FrameDecoder.next() threw ${String(e)}`);
          }
          if (expected[i++]?.kind !== "badLength") this.fail("FrameDecoder failed a good length");
          this.#readerDone = true;
          all.push(...this.#deliver(null, e));
          break;
        }
        if (payload === null) break;
        const ev = expected[i++];
        if (ev?.kind !== "payload" || !bytesEqual(ev.bytes, payload)) {
          this.fail(`FrameDecoder cut ${show(payload)}, the spec deframer ${JSON.stringify(ev)}`);
        }
        all.push(...this.#deliver(payload, undefined));
      }
    }
    if (i !== expected.length) {
      this.fail(`FrameDecoder delivered ${i} frames, the spec deframer ${expected.length}`);
    }
    return all;
  }

  #deliver(payload: Uint8Array | null, frameError: CodecError | undefined): A[] {
    const expect = this.expect(payload);
    let input: Message | CodecError;
    if (payload === null) input = frameError!;
    else {
      try {
        input = decodeMessage(payload);
      } catch (e) {
        if (!(e instanceof CodecError)) this.fail(`decodeMessage() threw ${String(e)}`);
        input = e;
      }
    }
    const what = payload === null ? "bad length" : `payload ${show(payload)}`;
    const actions = this.call(
      what,
      expect,
      () =>
        input instanceof CodecError
          ? this.receiveInvalid(input, this.now)
          : this.receive(input, this.now),
    );
    this.now += 1;
    return actions;
  }

  /** Runs one call into the machine and checks its actions against `expect`. */
  call(what: string, expect: Expect, run: () => A[]): A[] {
    let actions: A[];
    try {
      actions = run();
    } catch (e) {
      this.fail(`${what}: threw past the machine boundary: ${String(e)}`);
    }
    for (const a of actions) {
      if (a.kind !== "send") continue;
      let frame: Uint8Array;
      try {
        frame = encodeMessage(a.message);
      } catch (e) {
        this.fail(`${what}: emitted a message encodeMessage() refuses: ${String(e)}`);
      }
      if (!isDeepStrictEqual(decodeFrame(frame), a.message)) {
        this.fail(`${what}: ${JSON.stringify(a.message)} does not survive the codec`);
      }
      if (a.message.seq !== this.outSeq) {
        this.fail(`${what}: sent seq ${a.message.seq}, its next seq is ${this.outSeq}`);
      }
      this.outSeq++;
    }
    const n = actions.map(normalize);
    if (!expect.main.test(n)) {
      // The five disagreements once tolerated here (KNOWN) are fixed: only the
      // documented answer passes now; a match of the old answer says which one came back.
      const alt = expect.alt?.test(n) ? `\n  (this is the old answer of ${expect.alt.bug})` : "";
      this.fail(
        `${what} in ${this.stateName}:\n  expected ${expect.main.desc}${alt}\n  actual   ${
          JSON.stringify(n)
        }`,
      );
    }
    expect.apply();
    if (this.modelState !== this.machineState) {
      this.fail(`${what}: machine is ${this.machineState}, the spec says ${this.modelState}`);
    }
    this.log.push(`  -> ${JSON.stringify(n)}`);
    return actions;
  }

  none(): Expect {
    return { main: exact([]), apply: () => {} };
  }

  /** §4 step 7: a reply whose re answers nothing pending. */
  wrongRe(seq: number): Expect {
    this.cover.add("reply with a wrong re");
    return this.fatal("UNEXPECTED_MESSAGE", seq);
  }

  /** §4 step 7: a reply to a request that already timed out is silently dropped. */
  late(what: string): Expect {
    this.cover.add(`late ${what} dropped`);
    return {
      main: exact([]),
      apply: () => {
        this.inSeq++;
      },
    };
  }

  fatal(code: ErrorCode, re: number | undefined): Expect {
    return { main: exact(this.fatalWant(code, re)), apply: () => this.closeModel() };
  }

  /** The answer to a payload that fails §4 steps 1-5 (or the field check of step 6). */
  failure(v: Verdict): Expect {
    const code = STAGE_CODE[v.stage as Exclude<Stage, "ok">];
    const base = this.fatal(code, v.seq);
    if (v.rawType === "ERROR") {
      return {
        main: this.quietClose(),
        alt: { bug: this.errorBug, ...base.main },
        apply: base.apply,
      };
    }
    if (v.stage === "head" && v.seq !== undefined) {
      return { ...base, alt: { bug: "D4", ...exact(this.fatalWant(code, undefined)) } };
    }
    return base;
  }

  note(v: Verdict): void {
    this.cover.add(`stage:${v.stage}`);
    if (v.stage !== "frame" && v.stage !== "head" && v.stage !== "seq") {
      this.cover.add(`${this.stateName}:${v.type}`);
    }
    if (v.stage === "ok") this.cover.add(`ok:${this.stateName}:${v.type}`);
  }

  /** No deadline is due during the fuzz: tick() must do nothing. */
  afterInput(): void {
    this.call(`tick(${this.now - T0})`, this.none(), () => this.tick(this.now));
  }

  /** After a close, every further input is ignored. */
  finish(): void {
    if (!this.closed) return;
    const seq = this.inSeq;
    this.call(
      "receive() after close",
      this.none(),
      () => this.receive({ type: "TERMINATE", seq }, this.now),
    );
    this.call(
      "receiveInvalid() after close",
      this.none(),
      () => this.receiveInvalid(new CodecError("BAD_FRAME", "remote", "late"), this.now),
    );
    this.call("tick() an hour after close", this.none(), () => this.tick(this.now + 3_600_000));
  }
}

// --- input generation ------------------------------------------------------------

interface GenCtx {
  inSeq: number;
  /** Types the receiver's state accepts (all nine when none). */
  accepts: readonly MessageType[];
  /** `re` values that answer something pending, per reply type. */
  rightRe: Partial<Record<MessageType, number[]>>;
  /** Seqs of requests that timed out: their replies are dropped (§4 step 7). */
  late: number[];
  /** Other seqs worth trying as `re`: late, answered, the receiver's own. */
  reHints: number[];
}

const ABSENT = Symbol("absent");
const KEY_POOL = [
  "type",
  "seq",
  "re",
  "version",
  "token",
  "lb_id",
  "metrics",
  "config",
  "code",
  "message",
  "reason",
  "status",
  "ts",
  "interval_ms",
  "server_id",
  "capabilities",
  "heartbeat_ms",
  "hb",
  "cpu_percent",
  "mem_percent",
  "checks",
  "extra",
  "",
];
const ODD_NUMBERS = [0, -0, 1, 2, -1, 1.5, 99, 100, 3_600_000, 3_600_001, MAX_INT, 2 ** 53, 1e21];
const ODD_STRINGS = ["", "x", "UP", "HELLO", "ERROR", "BAD_CONFIG", "cpu_percent", "zz", "\u0000"];

function randJson(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth >= 2 ? 4 : 6)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick(ODD_NUMBERS);
    case 3:
      return rng.pick(ODD_STRINGS);
    case 4:
      return Array.from({ length: rng.int(4) }, () => randJson(rng, depth + 1));
    default: {
      const o: Obj = {};
      for (let k = rng.int(4); k > 0; k--) o[rng.pick(KEY_POOL)] = randJson(rng, depth + 1);
      return o;
    }
  }
}

function set(o: Obj, key: string, value: unknown): void {
  if (value === ABSENT) delete o[key];
  else o[key] = value;
}

function goodConfig(rng: Rng): Obj {
  const c: Obj = {};
  if (rng.chance(0.5)) c.interval_ms = rng.pick([100, 500, 2000, 3_600_000]);
  if (rng.chance(0.5)) c.metrics = rng.subset(AVAILABLE);
  return c;
}

const BAD_CONFIGS: readonly Obj[] = [
  { foo: 1 },
  { INTERVAL_MS: 1000 },
  { interval_ms: 99 },
  { interval_ms: 3_600_001 },
  { interval_ms: 0 },
  { interval_ms: 1000.5 },
  { interval_ms: "1000" },
  { interval_ms: null },
  { metrics: "cpu_percent" },
  { metrics: [""] },
  { metrics: [1] },
  { metrics: ["zz"] },
  { metrics: ["cpu_percent", "swap_percent"] },
  { metrics: null },
  { metrics: {} },
  { interval_ms: 1000, extra: true },
  { metrics: ["load_1"], interval_ms: 50 },
];
const NOT_OBJECTS: readonly unknown[] = [null, [], "x", 5, true, [{ interval_ms: 1000 }]];

/** A well-formed message of `type` with `seq`; replies mostly answer something pending. */
function validMessage(rng: Rng, type: MessageType, seq: number, ctx: GenCtx): Obj {
  const re = (): number => {
    const right = ctx.rightRe[type] ?? [];
    if (ctx.late.length > 0 && rng.chance(0.2)) return rng.pick(ctx.late);
    if (right.length > 0 && rng.chance(0.8)) return rng.pick(right);
    return rng.pick([1, seq, ...ctx.reHints, 1 + rng.int(20)]);
  };
  switch (type) {
    case "HELLO": {
      const o: Obj = {
        type,
        seq,
        version: 1,
        token: rng.pick(["tok", "", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"]),
        lb_id: rng.pick(["lb-1", "x"]),
      };
      if (rng.chance(0.4)) o.interval_ms = rng.pick([100, 1000, 10_000, 3_600_000]);
      if (rng.chance(0.4)) o.metrics = rng.subset(METRIC_POOL);
      return o;
    }
    case "ACK": {
      const o: Obj = {
        type,
        seq,
        re: re(),
        version: 1,
        server_id: SERVER_ID,
        metrics: [...REQUIRED],
      };
      if (rng.chance(0.5)) {
        // Mostly what §10 allows; sometimes a stray name or a lone heartbeat_ms.
        const caps = rng.subset([...CAPS, ...(rng.chance(0.1) ? ["later"] : [])]);
        o.capabilities = caps;
        if (caps.includes("heartbeat") !== rng.chance(0.1)) {
          o.heartbeat_ms = rng.pick([50, 250, 60_000]);
        }
      }
      return o;
    }
    case "HEALTH_REQUEST":
      return rng.chance(0.3) ? { type, seq, metrics: rng.subset(METRIC_POOL) } : { type, seq };
    case "HEALTH_RESPONSE": {
      const metrics: Obj = { cpu_percent: rng.int(101), mem_percent: rng.pick([0, 40.5, 100]) };
      if (rng.chance(0.3)) metrics.load_1 = 0.5;
      const status = rng.pick(["UP", "DRAINING"]);
      return { type, seq, re: re(), status, metrics, ts: rng.pick([0, T0]) };
    }
    case "CONFIG_UPDATE":
      return { type, seq, config: goodConfig(rng) };
    case "CONFIG_ACK":
      return { type, seq, re: re(), config: { interval_ms: 1000, metrics: rng.subset(AVAILABLE) } };
    case "ERROR": {
      const badConfigRe = [...(ctx.rightRe.ERROR ?? []), ...ctx.late];
      if (badConfigRe.length > 0 && rng.chance(0.5)) {
        return { type, seq, re: rng.pick(badConfigRe), code: "BAD_CONFIG", message: "no" };
      }
      const o: Obj = { type, seq, code: rng.pick(CODES), message: rng.pick(["boom", ""]) };
      if (rng.chance(0.4)) o.re = re();
      return o;
    }
    case "TERMINATE":
      return rng.chance(0.7)
        ? { type, seq, reason: rng.pick(["shutdown", "token_expired", ""]) }
        : { type, seq };
    case "TERMINATE_ACK":
      return { type, seq, re: re() };
    case "STATUS": {
      const o: Obj = {
        type,
        seq,
        status: rng.pick(STATUSES),
        metrics: { cpu_percent: rng.int(101), mem_percent: 3 },
        ts: T0,
      };
      if (rng.chance(0.3)) o.checks = [{ name: "tcp :5432", ok: false, detail: "refused" }];
      return o;
    }
    case "HEARTBEAT":
      return {
        type,
        seq,
        hb: rng.pick([1, 2, 3, 5, 9, 1 + rng.int(12)]),
        status: rng.pick(STATUSES),
        cpu_percent: rng.pick([0, 12.5, 100]),
        mem_percent: rng.pick([0, 50, 100]),
      };
  }
}

/** One mutation of a message object: a field removed, retyped, added or changed inside. */
function mutate(rng: Rng, o: Obj): string {
  const all = Object.keys(o);
  const fields = all.filter((k) => k !== "type" && k !== "seq");
  const keys = fields.length > 0 && rng.chance(0.8) ? fields : all;
  const kind = keys.length === 0 ? 2 : rng.int(4);
  if (kind === 0) {
    const k = rng.pick(keys);
    delete o[k];
    return `-${k}`;
  }
  if (kind === 2) {
    const k = rng.pick(KEY_POOL);
    o[k] = randJson(rng);
    return `+${k}`;
  }
  const nested = keys.filter((k) => typeof o[k] === "object" && o[k] !== null);
  if (kind === 3 && nested.length > 0) {
    const k = rng.pick(nested);
    const inner = o[k];
    if (Array.isArray(inner)) {
      if (inner.length > 0 && rng.chance(0.5)) inner[rng.int(inner.length)] = randJson(rng);
      else inner.push(randJson(rng));
    } else {
      const io = inner as Obj;
      const ik = Object.keys(io);
      if (ik.length > 0 && rng.chance(0.5)) delete io[rng.pick(ik)];
      else io[rng.pick([...KEY_POOL, "cpu_percent", "interval_ms", "metrics"])] = randJson(rng);
    }
    return `${k}.*`;
  }
  const k = rng.pick(keys);
  o[k] = randJson(rng);
  return `${k}=?`;
}

/** One field of the message's own type set to a value at or just past its bounds (§3). */
function edge(rng: Rng, o: Obj): string {
  const percents = [-1, -0.001, 0, 100, 100.001, 101, "50", null];
  const ints = [-1, 0, 1, 1.5, MAX_INT, 2 ** 53];
  const intervals = [99, 100, 3_600_000, 3_600_001, 1000.5];
  const names = [[""], ["cpu_percent", 1], "cpu_percent", {}, []];
  const edits: [string, () => unknown][] = [];
  const metrics = o.metrics;
  if (isObj(metrics)) {
    edits.push(
      ["metrics.cpu_percent", () => metrics.cpu_percent = rng.pick(percents)],
      ["metrics.mem_percent", () => metrics.mem_percent = rng.pick(percents)],
      ["-metrics.mem_percent", () => delete metrics.mem_percent],
      ["metrics.load_1", () => metrics.load_1 = rng.pick(["x", null, 1e308, -5])],
    );
  } else if ("metrics" in o) edits.push(["metrics", () => o.metrics = rng.pick(names)]);
  const config = o.config;
  if (isObj(config)) {
    edits.push(
      ["config.interval_ms", () => config.interval_ms = rng.pick(intervals)],
      ["config.metrics", () => config.metrics = rng.pick([...names, ["zz"]])],
    );
  }
  if (o.type === "HELLO") edits.push(["interval_ms", () => o.interval_ms = rng.pick(intervals)]);
  if (o.type === "TERMINATE") edits.push(["reason", () => o.reason = rng.pick([1, null, ""])]);
  for (const k of ["ts", "re"]) if (k in o) edits.push([k, () => o[k] = rng.pick(ints)]);
  for (const k of ["server_id", "lb_id", "token", "message"]) {
    if (k in o) edits.push([k, () => o[k] = rng.pick(["", 1, null, ["x"]])]);
  }
  if ("status" in o) edits.push(["status", () => o.status = rng.pick(["up", "DOWN", "", null])]);
  if ("code" in o) edits.push(["code", () => o.code = rng.pick(["bad_frame", "TIMEOUT", "", 1])]);
  if (edits.length === 0) return mutate(rng, o);
  const [label, run] = rng.pick(edits);
  run();
  return `edge ${label}`;
}

const payloadOf = (o: unknown): Uint8Array => enc.encode(JSON.stringify(o));
const byteLength = (s: string): number => enc.encode(s).length;

/** Textual tricks JSON.stringify cannot produce; each returns a payload. */
function textual(rng: Rng, ctx: GenCtx): { payload: Uint8Array; label: string } {
  const type = rng.pick(ctx.accepts);
  const s = ctx.inSeq;
  const o = validMessage(rng, type, s, ctx);
  const t = JSON.stringify(o);
  const open = t.slice(0, -1);
  const withByte = (byte: number[]): Uint8Array => {
    const b = enc.encode(t);
    const at = 2 + rng.int(b.length - 3);
    return concat(b.subarray(0, at), new Uint8Array(byte), b.subarray(at));
  };
  const tricks: [string, () => string | Uint8Array][] = [
    ["seq as N.0", () => t.replace(`"seq":${s}`, `"seq":${s}.0`)],
    ["seq as Ne0", () => t.replace(`"seq":${s}`, `"seq":${s}e0`)],
    ["seq 1e400", () => t.replace(`"seq":${s}`, `"seq":1e400`)],
    ["seq -0", () => t.replace(`"seq":${s}`, `"seq":-0`)],
    ["seq hex", () => t.replace(`"seq":${s}`, `"seq":0x${s}`)],
    ["duplicate seq", () => `${open},"seq":${s + 1}}`],
    ["duplicate type", () => `${open},"type":"PING"}`],
    [
      "escaped type",
      () =>
        t.replace(
          `"type":"${type}"`,
          `"type":"\\u00${type.charCodeAt(0).toString(16)}${type.slice(1)}"`,
        ),
    ],
    ["pretty", () => JSON.stringify(o, null, 2)],
    ["trailing garbage", () => `${t}x`],
    ["trailing space", () => `${t} \r\n\t`],
    ["two values", () => t + t],
    ["BOM", () => `\ufeff${t}`],
    ["in array", () => `[${t}]`],
    ["null", () => "null"],
    ["string", () => '"x"'],
    ["number", () => "42"],
    ["true", () => "true"],
    ["empty", () => ""],
    ["space", () => " "],
    ["cut", () => t.slice(0, 1 + rng.int(t.length - 1))],
    ["single quotes", () => t.replaceAll('"', "'")],
    ["raw control char", () => t.replace('"type"', '"ty\u0001pe"')],
    ["lone surrogate escape", () => `${open},"note":"\\ud800"}`],
    ["utf-8 text", () => `${open},"note":"héllo 😀"}`],
    ["__proto__ field", () => `${open},"__proto__":{"metrics":5,"re":0}}`],
    ["config __proto__", () => `{"type":"CONFIG_UPDATE","seq":${s},"config":{"__proto__":{}}}`],
    ["deep nesting", () => `${open},"deep":${"[".repeat(1500)}${"]".repeat(1500)}}`],
    ["invalid utf-8", () => withByte([0xff])],
    ["overlong utf-8", () => withByte([0xc0, 0xaf])],
    ["lone continuation", () => withByte([0x80])],
    ["truncated sequence", () => withByte([0xe2, 0x82])],
    ["exactly 65536 bytes", () => t + " ".repeat(MAX_FRAME - byteLength(t))],
    ["65537 bytes", () => t + " ".repeat(MAX_FRAME + 1 - byteLength(t))],
  ];
  const [label, make] = rng.pick(tricks);
  const made = make();
  return { payload: typeof made === "string" ? enc.encode(made) : made, label: `${label} ${type}` };
}

/** JSON-level input: valid, wrong seq, wrong re, wrong fields, wrong type, bad config... */
function genJsonInput(rng: Rng, ctx: GenCtx): { bytes: Uint8Array; label: string } {
  const out = (o: unknown, label: string) => ({
    bytes: frameOf(payloadOf(o)),
    label: `${label} ${JSON.stringify(o).slice(0, 300)}`,
  });
  const anyType = () => rng.chance(0.6) ? rng.pick(ctx.accepts) : rng.pick(TYPES);
  const s = ctx.inSeq;
  const r = rng.int(100);
  if (r < 22) {
    const type = anyType();
    return out(validMessage(rng, type, s, ctx), `valid ${type}`);
  }
  if (r < 32) {
    const o = validMessage(rng, anyType(), s, ctx);
    const seqs = [s - 1, s + 1, s + 2 + rng.int(5), 1, 0, -1, s + 0.5, String(s), null, ABSENT];
    set(o, "seq", rng.pick([...seqs, MAX_INT, 2 ** 53, [s], true, -s]));
    return out(o, "seq");
  }
  if (r < 42) {
    const type = rng.pick(
      ["ACK", "HEALTH_RESPONSE", "CONFIG_ACK", "TERMINATE_ACK", "ERROR"] as const,
    );
    const o = validMessage(rng, type, s, ctx);
    if (type === "ERROR" && rng.chance(0.5)) o.code = "BAD_CONFIG";
    const right = Object.values(ctx.rightRe).flat();
    const odd = [0, -1, 1.5, "1", null, ABSENT, 1, s, 999, MAX_INT, 2 ** 53];
    const pool = [odd, ctx.reHints, right].filter((p) => p.length > 0);
    set(o, "re", rng.pick(rng.pick(pool)));
    return out(o, "re");
  }
  if (r < 58) {
    const o = validMessage(rng, anyType(), s, ctx);
    const how = Array.from(
      { length: 1 + rng.int(2) },
      () => rng.chance(0.5) ? edge(rng, o) : mutate(rng, o),
    ).join(" ");
    return out(o, `fields ${how}`);
  }
  if (r < 63) {
    const o = validMessage(rng, anyType(), s, ctx);
    const types = ["PING", "hello", "Hello", "HELLO ", "", "ERRORS", 1, null, [], {}, true, ABSENT];
    set(o, "type", rng.pick(types));
    return out(o, "type");
  }
  if (r < 68) {
    const type = ctx.accepts.includes("HELLO")
      ? "HELLO"
      : ctx.accepts.includes("ACK")
      ? "ACK"
      : rng.pick(["HELLO", "ACK"] as const);
    const o = validMessage(rng, type, s, ctx);
    const unsupported = [0, 2, 3, -1, 255, MAX_INT];
    const versions = [
      ...unsupported,
      ...unsupported,
      1.5,
      "1",
      null,
      2 ** 53,
      [1],
      ABSENT,
      1,
      1e21,
    ];
    set(o, "version", rng.pick(versions));
    return out(o, "version");
  }
  if (r < 78) {
    const pool = rng.int(10);
    const config = pool < 3
      ? goodConfig(rng)
      : pool < 8
      ? structuredClone(rng.pick(BAD_CONFIGS))
      : pool < 9
      ? rng.pick(NOT_OBJECTS)
      : randJson(rng);
    const seq = rng.chance(0.85) ? s : rng.pick([s - 1, s + 1]);
    const o: Obj = { type: "CONFIG_UPDATE", seq };
    if (config !== undefined) o.config = config;
    return out(o, "config");
  }
  if (r < 83) {
    const seq = rng.pick([s, s, 1, s - 1]);
    return out(validMessage(rng, "HELLO", seq, ctx), "repeated HELLO");
  }
  if (r < 92) {
    const { payload, label } = textual(rng, ctx);
    return { bytes: frameOf(payload), label: `text ${label}` };
  }
  if (rng.chance(0.5)) return out(randJson(rng), "random JSON");
  const o: Obj = { type: rng.chance(0.8) ? rng.pick(TYPES) : randJson(rng) };
  o.seq = rng.chance(0.8) ? s : randJson(rng);
  for (let k = rng.int(4); k > 0; k--) o[rng.pick(KEY_POOL)] = randJson(rng);
  return out(o, "random object");
}

/** Byte-level input: random bytes and frames truncated, flipped, cut, spliced, resized. */
function genByteInput(rng: Rng, ctx: GenCtx): { bytes: Uint8Array; label: string } {
  const r = rng.int(100);
  if (r < 12) {
    const b = rng.bytes(rng.int(48));
    if (b.length >= 2 && rng.chance(0.5)) b[0] = b[1] = 0;
    return { bytes: b, label: "random bytes" };
  }
  if (r < 20) {
    const lengths = [0, 1, 2, MAX_FRAME, MAX_FRAME + 1, 0x7fffffff, 0xffffffff, rng.int(2 ** 32)];
    const length = rng.pick(lengths);
    return { bytes: frameOf(rng.bytes(rng.int(40)), length), label: `header ${length}` };
  }
  const base = (): Uint8Array =>
    rng.chance(0.6)
      ? frameOf(payloadOf(validMessage(rng, rng.pick(ctx.accepts), ctx.inSeq, ctx)))
      : genJsonInput(rng, ctx).bytes;
  const f = base();
  const at = () => rng.int(f.length + 1);
  switch (rng.int(9)) {
    case 0:
      return { bytes: f.slice(0, rng.int(f.length)), label: "truncated" };
    case 1: {
      const b = f.slice();
      for (let k = 1 + rng.int(4); k > 0; k--) {
        const i = rng.int(b.length);
        b[i] = b[i]! ^ (1 << rng.int(8));
      }
      return { bytes: b, label: "bit-flipped" };
    }
    case 2: {
      const i = at();
      return {
        bytes: concat(f.subarray(0, i), rng.bytes(1 + rng.int(4)), f.subarray(i)),
        label: "inserted",
      };
    }
    case 3: {
      const i = rng.int(f.length);
      return { bytes: concat(f.subarray(0, i), f.subarray(i + 1 + rng.int(4))), label: "deleted" };
    }
    case 4: {
      const g = base();
      const bytes = concat(f.subarray(0, at()), g.subarray(rng.int(g.length + 1)));
      return { bytes, label: "spliced" };
    }
    case 5: {
      const length = rng.pick([
        0,
        MAX_FRAME + 1,
        0x00100000,
        0xffffffff,
        MAX_FRAME + 1 + rng.int(1e6),
      ]);
      return { bytes: frameOf(f.subarray(4), length), label: `oversize header ${length}` };
    }
    case 6: {
      const delta = rng.pick([-3, -2, -1, 1, 2, 3]);
      return {
        bytes: frameOf(f.subarray(4), Math.max(0, f.length - 4 + delta)),
        label: `length ${delta}`,
      };
    }
    case 7: {
      const parts = [f, base()];
      if (rng.chance(0.5)) parts.push(base());
      return { bytes: concat(...parts), label: `${parts.length} frames` };
    }
    default: {
      const b = f.slice();
      if (b.length > 4) b[4 + rng.int(b.length - 4)] = rng.pick([0x80, 0xbf, 0xc0, 0xf5, 0xff]);
      return { bytes: b, label: "bad payload byte" };
    }
  }
}

// --- the server model (§7) --------------------------------------------------------

type ServerState = "AWAIT_HELLO" | "AUTHENTICATING" | "READY" | "TERMINATING" | "CLOSED";
const SERVER_STATES = ["AWAIT_HELLO", "AUTHENTICATING", "READY", "TERMINATING"] as const;
const SERVER_ACCEPTS: Record<ServerState, readonly MessageType[]> = {
  AWAIT_HELLO: ["HELLO"],
  AUTHENTICATING: [],
  READY: ["HEALTH_REQUEST", "CONFIG_UPDATE", "TERMINATE", "ERROR"],
  TERMINATING: ["TERMINATE_ACK", "TERMINATE", "ERROR", "HEALTH_REQUEST", "CONFIG_UPDATE"],
  CLOSED: [],
};

/** §3: cpu_percent and mem_percent, then the known requested names, each once. */
function withRequired(names: readonly string[]): string[] {
  const out = [...REQUIRED];
  for (const n of names) if (AVAILABLE.includes(n) && !out.includes(n)) out.push(n);
  return out;
}

class ServerHarness extends Harness<ServerAction> {
  readonly session: ServerSession;
  st: ServerState = "AWAIT_HELLO";
  status: "UP" | "DRAINING" = "UP";
  hello: Obj = {};
  config = { interval_ms: 10_000, metrics: [...REQUIRED] };
  termSeq = 0;
  override readonly errorBug = "D2";

  constructor(name: string, cover: Set<string>) {
    super(name, cover);
    this.session = new ServerSession({
      serverId: SERVER_ID,
      availableMetrics: AVAILABLE,
      health: () => ({ status: this.status, metrics: { ...VALUES } }),
    }, T0);
  }

  override receive(m: Message, now: number) {
    return this.session.receive(m, now);
  }
  override receiveInvalid(e: CodecError, now: number) {
    return this.session.receiveInvalid(e, now);
  }
  override tick(now: number) {
    return this.session.tick(now);
  }
  override get modelState() {
    return this.st;
  }
  override get machineState() {
    return this.session.state;
  }
  override get stateName() {
    return this.st;
  }
  override get closed() {
    return this.st === "CLOSED";
  }
  override closeModel() {
    this.st = "CLOSED";
  }
  override fatalWant(code: ErrorCode, re: number | undefined): Norm[] {
    return [send(errorMessage(this.outSeq, code, re)), close(CLOSE_AFTER[code])];
  }
  override quietClose(): Outcome {
    return { desc: "[close] and no ERROR", test: (n) => n.length === 1 && n[0]!.kind === "close" };
  }

  ctx(): GenCtx {
    const accepts = SERVER_ACCEPTS[this.st];
    return {
      inSeq: this.inSeq,
      accepts: accepts.length > 0 ? accepts : TYPES,
      rightRe: { TERMINATE_ACK: this.st === "TERMINATING" ? [this.termSeq] : [] },
      late: [],
      reHints: [this.outSeq - 1, this.outSeq, this.inSeq].filter((x) => x >= 1),
    };
  }

  /** ERROR from the LB: close without reply (§7), never with 0x06 (§6). */
  peerError(code: ErrorCode): Expect {
    const apply = () => this.closeModel();
    if (code !== "BAD_CONFIG") return { main: exact([close(CLOSE_AFTER[code])]), apply };
    return {
      main: {
        desc: "[close with a code other than 0x06]",
        test: (n) => n.length === 1 && n[0]!.kind === "close" && n[0]!.code !== 0x06,
      },
      alt: { bug: "D3", ...exact([close(0x06)]) },
      apply,
    };
  }

  override expect(payload: Uint8Array | null): Expect {
    if (this.st === "CLOSED") return this.none();
    const v = judge(payload, this.inSeq, SERVER_ACCEPTS[this.st]);
    this.note(v);
    const step = () => {
      this.inSeq++;
    };
    if (v.stage === "config") {
      const want = [send(errorMessage(this.outSeq, "BAD_CONFIG", v.seq))];
      this.cover.add(`BAD_CONFIG in ${this.st}`);
      if (this.st === "READY") return { main: exact(want), apply: step };
      return { main: exact([]), alt: { bug: "C", ...exact(want) }, apply: step };
    }
    if (v.stage !== "ok") return this.failure(v);
    const { o } = v;
    const type = v.type!;
    const seq = v.seq!;
    if (type === "HELLO") {
      return {
        main: exact([{ kind: "authenticate", token: o.token, lbId: o.lb_id }]),
        apply: () => {
          step();
          this.st = "AUTHENTICATING";
          this.hello = o;
        },
      };
    }
    if (type === "TERMINATE") {
      return {
        main: exact([send({ type: "TERMINATE_ACK", seq: this.outSeq, re: seq }), close(NO_ERROR)]),
        apply: () => this.closeModel(),
      };
    }
    if (type === "ERROR") return this.peerError(o.code as ErrorCode);
    if (this.st === "TERMINATING") {
      if (type !== "TERMINATE_ACK") return { main: exact([]), apply: step };
      if (o.re !== this.termSeq) return this.wrongRe(seq);
      return { main: exact([close(NO_ERROR)]), apply: () => this.closeModel() };
    }
    if (type === "HEALTH_REQUEST") {
      const names = o.metrics === undefined
        ? this.config.metrics
        : withRequired(o.metrics as string[]);
      const metrics = Object.fromEntries(names.map((n) => [n, VALUES[n]]));
      const response = {
        type: "HEALTH_RESPONSE",
        seq: this.outSeq,
        re: seq,
        status: this.status,
        metrics,
        ts: Math.floor(this.now),
      };
      return { main: exact([send(response)]), apply: step };
    }
    // CONFIG_UPDATE in READY with a good config.
    const c = o.config as Obj;
    const config = {
      interval_ms: (c.interval_ms as number | undefined) ?? this.config.interval_ms,
      metrics: c.metrics === undefined ? this.config.metrics : withRequired(c.metrics as string[]),
    };
    return {
      main: exact([
        send({ type: "CONFIG_ACK", seq: this.outSeq, re: seq, config }),
        { kind: "configured", config },
      ]),
      apply: () => {
        step();
        this.config = config;
      },
    };
  }

  authenticate(result: AuthResult): void {
    let e: Expect = this.none();
    if (this.st === "AUTHENTICATING") {
      const h = this.hello;
      if (!result.ok || result.expiresAt <= this.now) {
        this.cover.add("UNAUTHORIZED");
        e = this.fatal("UNAUTHORIZED", h.seq as number);
      } else {
        const config = {
          interval_ms: (h.interval_ms as number | undefined) ?? 10_000,
          metrics: withRequired((h.metrics as string[] | undefined) ?? REQUIRED),
        };
        const ack = {
          type: "ACK",
          seq: this.outSeq,
          re: h.seq,
          version: 1,
          server_id: SERVER_ID,
          metrics: config.metrics,
        };
        e = {
          main: exact([send(ack), { kind: "ready", lbId: h.lb_id, config, capabilities: [] }]),
          apply: () => {
            this.st = "READY";
            this.config = config;
          },
        };
      }
    }
    this.call(
      `authenticated(${JSON.stringify(result)})`,
      e,
      () => this.session.authenticated(result, this.now),
    );
  }

  terminate(): void {
    const seq = this.outSeq;
    const e: Expect = {
      main: exact([send({ type: "TERMINATE", seq, reason: "shutdown" })]),
      apply: () => {
        this.st = "TERMINATING";
        this.termSeq = seq;
      },
    };
    this.call("terminate(shutdown)", e, () => this.session.terminate("shutdown", this.now));
  }

  /** Driver calls between inputs: the token verdict, a shutdown, a stray verdict. */
  randomOp(rng: Rng): void {
    if (this.st === "AUTHENTICATING") {
      this.authenticate(rng.pick<AuthResult>([
        { ok: true, expiresAt: EXPIRES },
        { ok: false, reason: "token signature is not valid" },
        { ok: true, expiresAt: this.now },
      ]));
    } else if (this.st === "READY" && rng.chance(0.3)) this.terminate();
    else this.authenticate({ ok: true, expiresAt: EXPIRES });
  }
}

/** A server session put into `state` with valid traffic. */
function serverIn(state: ServerState, rng: Rng, name: string, cover: Set<string>): ServerHarness {
  const h = new ServerHarness(`${name}: ServerSession driven to ${state}`, cover);
  h.status = rng.chance(0.2) ? "DRAINING" : "UP";
  if (state !== "AWAIT_HELLO") {
    h.feed(frameOf(payloadOf(validMessage(rng, "HELLO", 1, h.ctx()))), "HELLO", rng);
  }
  if (state === "READY" || state === "TERMINATING") {
    h.authenticate({ ok: true, expiresAt: EXPIRES });
    for (let k = rng.int(4); k > 0; k--) {
      const type = rng.pick(["HEALTH_REQUEST", "CONFIG_UPDATE"] as const);
      h.feed(frameOf(payloadOf(validMessage(rng, type, h.inSeq, h.ctx()))), type, rng);
    }
  }
  if (state === "TERMINATING") h.terminate();
  assert.equal(h.st, state);
  return h;
}

// --- the LB model (§8) ------------------------------------------------------------

type LbState = "HELLO_SENT" | "READY" | "TERMINATING" | "CLOSED";
const LB_STATES = ["HELLO_SENT", "READY", "TERMINATING"] as const;
const LB_ACCEPTS: Record<LbState, readonly MessageType[]> = {
  HELLO_SENT: ["ACK", "ERROR", "TERMINATE"],
  READY: ["HEALTH_RESPONSE", "CONFIG_ACK", "ERROR", "TERMINATE"],
  TERMINATING: ["TERMINATE_ACK", "TERMINATE", "HEALTH_RESPONSE", "CONFIG_ACK", "ERROR"],
  CLOSED: [],
};

class LbHarness extends Harness<LbAction> {
  readonly lb: LbSession;
  /** §10: what HELLO offers, and what the ACK accepted. */
  readonly offer: readonly Cap[];
  caps = new Set<string>();
  lastHeartbeat = 0;
  st: LbState = "HELLO_SENT";
  check: { seq: number; sentAt: number } | undefined;
  configs: number[] = [];
  lateChecks: number[] = [];
  lateConfigs: number[] = [];
  termSeq = 0;
  override readonly errorBug = "D1";

  constructor(name: string, cover: Set<string>, offer: readonly Cap[] = []) {
    super(name, cover);
    this.offer = offer;
    this.lb = new LbSession({
      lbId: "lb-1",
      timeoutMs: LB_TIMEOUT,
      capabilities: offer,
      heartbeatMs: 250,
    });
    assert.deepEqual(this.lb.connecting(T0), []);
    // §10: offering nothing leaves HELLO exactly as QHCP/1 has it.
    const hello: Obj = { type: "HELLO", seq: 1, version: 1, token: "tok", lb_id: "lb-1" };
    if (offer.length > 0) hello.capabilities = [...offer];
    if (offer.includes("heartbeat")) hello.heartbeat_ms = 250;
    this.call(
      "connected(tok)",
      { main: exact([send(hello)]), apply: () => {} },
      () => this.lb.connected("tok", T0),
    );
  }

  override receive(m: Message, now: number) {
    return this.lb.receive(m, now);
  }
  override receiveInvalid(e: CodecError, now: number) {
    return this.lb.receiveInvalid(e, now);
  }
  override tick(now: number) {
    return this.lb.tick(now);
  }
  override get modelState() {
    return this.st === "CLOSED" ? "DISCONNECTED" : this.st;
  }
  override get machineState() {
    return this.lb.state;
  }
  override get stateName() {
    return this.st;
  }
  override get closed() {
    return this.st === "CLOSED";
  }
  override closeModel() {
    this.st = "CLOSED";
    this.check = undefined;
    this.configs = [];
  }
  aborted(): Norm[] {
    return this.configs.map((seq) => ({ kind: "config", seq, ok: false, code: "CLOSED" }));
  }
  override fatalWant(code: ErrorCode, re: number | undefined): Norm[] {
    return [
      ...this.aborted(),
      send(errorMessage(this.outSeq, code, re)),
      { kind: "failed", failure: { kind: "protocol", code } },
      close(CLOSE_AFTER[code]),
    ];
  }
  override quietClose(): Outcome {
    return {
      desc: "[failed, close] and no ERROR",
      test: (n) =>
        n.every((a) => a.kind !== "send") && n.at(-1)?.kind === "close" &&
        n.some((a) => a.kind === "failed"),
    };
  }

  ctx(): GenCtx {
    return {
      inSeq: this.inSeq,
      accepts: this.st === "CLOSED" ? TYPES : this.acceptsNow(),
      rightRe: {
        ACK: [1],
        HEALTH_RESPONSE: this.check ? [this.check.seq] : [],
        CONFIG_ACK: this.configs,
        ERROR: this.configs,
        TERMINATE_ACK: this.st === "TERMINATING" ? [this.termSeq] : [],
      },
      late: [...this.lateChecks, ...this.lateConfigs],
      reHints: [...this.lateChecks, ...this.lateConfigs, this.outSeq - 1, this.inSeq],
    };
  }

  /** §8's table, with §10's types in READY and TERMINATING once negotiated. */
  acceptsNow(): readonly MessageType[] {
    const base = LB_ACCEPTS[this.st];
    if (this.st !== "READY" && this.st !== "TERMINATING") return base;
    return [
      ...base,
      ...(this.caps.has("push") ? ["STATUS" as const] : []),
      ...(this.caps.has("heartbeat") ? ["HEARTBEAT" as const] : []),
    ];
  }

  /** ERROR from the server: failure and close, never with 0x06 (§6), never answered. */
  peerError(code: ErrorCode): Expect {
    const want = [
      ...this.aborted(),
      { kind: "failed", failure: { kind: "peer_error", code } },
      close(CLOSE_AFTER[code]),
    ];
    const apply = () => this.closeModel();
    if (code !== "BAD_CONFIG") return { main: exact(want), apply };
    const head = want.slice(0, -1);
    return {
      main: {
        desc: `${JSON.stringify(head)} + close with a code other than 0x06`,
        test: (n) =>
          n.length === want.length && isDeepStrictEqual(n.slice(0, -1), head) &&
          n.at(-1)?.kind === "close" && n.at(-1)?.code !== 0x06,
      },
      alt: { bug: "D3", ...exact(want) },
      apply,
    };
  }

  override expect(payload: Uint8Array | null): Expect {
    if (this.st === "CLOSED") return this.none();
    const v = judge(payload, this.inSeq, this.acceptsNow());
    this.note(v);
    assert.notEqual(v.stage, "config", "the LB never accepts CONFIG_UPDATE");
    if (v.stage !== "ok") return this.failure(v);
    const { o } = v;
    const type = v.type!;
    const seq = v.seq!;
    const step = () => {
      this.inSeq++;
    };
    if (type === "TERMINATE") {
      return {
        main: exact([
          ...this.aborted(),
          send({ type: "TERMINATE_ACK", seq: this.outSeq, re: seq }),
          { kind: "terminated", reason: o.reason ?? "" },
          close(NO_ERROR),
        ]),
        apply: () => this.closeModel(),
      };
    }
    if (this.st === "TERMINATING") {
      if (type !== "TERMINATE_ACK") return { main: exact([]), apply: step };
      if (o.re !== this.termSeq) return this.wrongRe(seq);
      return { main: exact([close(NO_ERROR)]), apply: () => this.closeModel() };
    }
    if (type === "ERROR") {
      const re = o.re as number | undefined;
      if (this.st === "READY" && o.code === "BAD_CONFIG" && re !== undefined) {
        if (this.configs.includes(re)) {
          this.cover.add("ERROR BAD_CONFIG refuses a pending CONFIG_UPDATE");
          return {
            main: exact([{ kind: "config", seq: re, ok: false, code: "BAD_CONFIG" }]),
            apply: () => {
              step();
              this.configs = this.configs.filter((x) => x !== re);
            },
          };
        }
        if (this.lateConfigs.includes(re)) return this.late("ERROR BAD_CONFIG");
      }
      return this.peerError(o.code as ErrorCode);
    }
    if (type === "ACK") {
      if (o.re !== 1) return this.wrongRe(seq);
      // §10: only what was offered, heartbeat_ms with heartbeat only, datagram only with heartbeat.
      const accepted = (o.capabilities ?? []) as string[];
      if (
        accepted.some((c) => !(this.offer as readonly string[]).includes(c)) ||
        accepted.includes("heartbeat") !== (o.heartbeat_ms !== undefined) ||
        (accepted.includes("datagram") && !accepted.includes("heartbeat"))
      ) {
        this.cover.add("ACK breaks §10");
        return this.fatal("BAD_MESSAGE", seq);
      }
      const caps = [...new Set(accepted)];
      if (caps.length > 0) this.cover.add("extended READY");
      return {
        main: exact([{
          kind: "ready",
          re: 1,
          setupMs: this.now - T0,
          capabilities: caps,
          ...(o.heartbeat_ms === undefined ? {} : { heartbeatMs: o.heartbeat_ms }),
        }]),
        apply: () => {
          step();
          this.st = "READY";
          this.caps = new Set(caps);
        },
      };
    }
    if (type === "STATUS") {
      return { main: exact([{ kind: "status", status: o.status }]), apply: step };
    }
    if (type === "HEARTBEAT") {
      const hb = o.hb as number;
      if (hb <= this.lastHeartbeat) {
        this.cover.add("stale heartbeat dropped");
        return { main: exact([]), apply: step };
      }
      const missed = hb - this.lastHeartbeat - 1;
      return {
        main: exact([{ kind: "heartbeat", counter: hb, missed }]),
        apply: () => {
          step();
          this.lastHeartbeat = hb;
        },
      };
    }
    const re = o.re as number;
    if (type === "HEALTH_RESPONSE") {
      const check = this.check;
      if (check && re === check.seq) {
        return {
          main: exact([{ kind: "check", ok: true, rttMs: this.now - check.sentAt, re }]),
          apply: () => {
            step();
            this.check = undefined;
          },
        };
      }
      if (this.lateChecks.includes(re)) return this.late("HEALTH_RESPONSE");
      return this.wrongRe(seq);
    }
    // CONFIG_ACK in READY.
    if (this.configs.includes(re)) {
      const c = o.config as Obj;
      const config = { interval_ms: c.interval_ms, metrics: c.metrics };
      return {
        main: exact([{ kind: "config", seq: re, ok: true, config }]),
        apply: () => {
          step();
          this.configs = this.configs.filter((x) => x !== re);
        },
      };
    }
    if (this.lateConfigs.includes(re)) return this.late("CONFIG_ACK");
    return this.wrongRe(seq);
  }

  checkNow(): void {
    const seq = this.outSeq;
    const e: Expect = this.st === "READY" && !this.check
      ? {
        main: exact([send({ type: "HEALTH_REQUEST", seq })]),
        apply: () => {
          this.check = { seq, sentAt: this.now };
        },
      }
      : this.none();
    this.call("check()", e, () => this.lb.check(this.now));
  }

  configure(config: { interval_ms?: number; metrics?: string[] }): void {
    const seq = this.outSeq;
    const e: Expect = this.st === "READY"
      ? {
        main: exact([send({ type: "CONFIG_UPDATE", seq, config })]),
        apply: () => {
          this.configs = [...this.configs, seq];
        },
      }
      : this.none();
    this.call(`configure(${JSON.stringify(config)})`, e, () => this.lb.configure(config, this.now));
  }

  /** Lets every pending request time out. */
  timeout(): void {
    this.now += LB_TIMEOUT;
    const want: Norm[] = [
      ...(this.check ? [{ kind: "check", ok: false, failure: "timeout" }] : []),
      ...this.configs.map((seq) => ({ kind: "config", seq, ok: false, code: "TIMEOUT" })),
    ];
    const apply = () => {
      if (this.check) this.lateChecks.push(this.check.seq);
      this.lateConfigs.push(...this.configs);
      this.check = undefined;
      this.configs = [];
    };
    this.call(
      `tick(${this.now - T0}) after the timeout`,
      { main: exact(want), apply },
      () => this.lb.tick(this.now),
    );
  }

  terminate(): void {
    const seq = this.outSeq;
    const e: Expect = {
      main: exact([...this.aborted(), send({ type: "TERMINATE", seq, reason: "shutdown" })]),
      apply: () => {
        this.st = "TERMINATING";
        this.termSeq = seq;
        this.check = undefined;
        this.configs = [];
      },
    };
    this.call("terminate(shutdown)", e, () => this.lb.terminate("shutdown", this.now));
  }

  /** Valid LB-side traffic between inputs: checks, config changes, timeouts, answers. */
  randomOp(rng: Rng, allowTerminate = true): void {
    if (this.st !== "READY") return this.checkNow();
    if (this.caps.has("heartbeat") && rng.chance(0.3)) {
      // Heartbeats in order, repeated, or after a gap.
      const hb = Math.max(1, this.lastHeartbeat + rng.pick([0, 1, 1, 3]));
      const o = { ...validMessage(rng, "HEARTBEAT", this.inSeq, this.ctx()), hb };
      this.feed(frameOf(payloadOf(o)), "HEARTBEAT", rng);
      return;
    }
    const op = rng.int(allowTerminate ? 10 : 9);
    if (op < 3) this.checkNow();
    else if (op < 5) this.configure(rng.pick([{ interval_ms: 1000 }, { metrics: ["load_1"] }, {}]));
    else if (op < 6) this.timeout();
    else if (op < 9) {
      const ctx = this.ctx();
      const type = this.check ? "HEALTH_RESPONSE" : this.configs.length ? "CONFIG_ACK" : undefined;
      if (!type) return this.checkNow();
      const o = validMessage(rng, type, this.inSeq, ctx);
      o.re = ctx.rightRe[type]![0];
      this.feed(frameOf(payloadOf(o)), `answer ${type}`, rng);
    } else this.terminate();
  }
}

/** An LB session put into `state` with valid traffic. */
function lbIn(state: LbState, rng: Rng, name: string, cover: Set<string>): LbHarness {
  const offer = rng.chance(0.5) ? [] : rng.chance(0.5) ? [...CAPS] : rng.subset(CAPS);
  const h = new LbHarness(`${name}: LbSession driven to ${state}`, cover, offer);
  if (state !== "HELLO_SENT") {
    const ack: Obj = {
      type: "ACK",
      seq: 1,
      re: 1,
      version: 1,
      server_id: SERVER_ID,
      metrics: REQUIRED,
    };
    if (offer.length > 0 && rng.chance(0.8)) {
      const caps = rng.chance(0.6) ? [...offer] : rng.subset(offer);
      ack.capabilities = caps.includes("heartbeat") ? caps : caps.filter((c) => c !== "datagram");
      if (caps.includes("heartbeat")) ack.heartbeat_ms = 250;
    }
    h.feed(frameOf(payloadOf(ack)), "ACK", rng);
    if (rng.chance(0.3)) {
      h.checkNow();
      h.configure({ interval_ms: 1000 });
      h.timeout();
    }
    for (let k = rng.int(6); k > 0; k--) h.randomOp(rng, false);
  }
  if (state === "TERMINATING") h.terminate();
  assert.equal(h.st, state);
  return h;
}

// --- the fuzz loops ---------------------------------------------------------------

type Gen = (rng: Rng, ctx: GenCtx) => { bytes: Uint8Array; label: string };

interface FuzzHarness {
  ctx(): GenCtx;
  feed(bytes: Uint8Array, label: string, rng: Rng): unknown;
  randomOp(rng: Rng): void;
  afterInput(): void;
  finish(): void;
}

/** Feeds `inputs` generated inputs, 1-3 per fresh machine, each machine in a random state. */
function fuzz(
  seed: number,
  inputs: number,
  gen: Gen,
  make: (rng: Rng, name: string, cover: Set<string>) => FuzzHarness,
): Set<string> {
  const rng = new Rng(seed);
  const cover = new Set<string>();
  let fed = 0;
  for (let c = 0; fed < inputs; c++) {
    const h = make(rng, `seed 0x${seed.toString(16)} case ${c}`, cover);
    for (let k = 1 + rng.int(3); k > 0 && fed < inputs; k--) {
      if (rng.chance(0.15)) h.randomOp(rng);
      const input = gen(rng, h.ctx());
      h.feed(input.bytes, input.label, rng);
      fed++;
      h.afterInput();
    }
    h.finish();
  }
  assert.equal(fed, inputs);
  return cover;
}

const makeServer = (rng: Rng, name: string, cover: Set<string>) =>
  serverIn(rng.pick(SERVER_STATES), rng, name, cover);
const makeLb = (rng: Rng, name: string, cover: Set<string>) =>
  lbIn(rng.pick(LB_STATES), rng, name, cover);

function assertCovered(cover: Set<string>, keys: readonly string[]): void {
  const missing = keys.filter((k) => !cover.has(k));
  assert.deepEqual(missing, [], `the fuzz never reached ${missing.join(", ")}`);
}

/** Every type with the right seq in every state, each accepted type answered, every §4 step. */
function everyTypeInEveryState(accepts: Record<string, readonly MessageType[]>): string[] {
  return Object.entries(accepts).filter(([s]) => s !== "CLOSED").flatMap(([s, ok]) => [
    ...TYPES.map((t) => `${s}:${t}`),
    ...ok.map((t) => `ok:${s}:${t}`),
  ]);
}
const STAGES = ["frame", "head", "seq", "state", "version", "fields", "ok"].map((s) =>
  `stage:${s}`
);

const SERVER_JSON_SEED = 0x5e4e0001;
const SERVER_BYTES_SEED = 0x5e4e0002;
const LB_JSON_SEED = 0x1b000001;
const LB_BYTES_SEED = 0x1b000002;
const PAIR_SEED = 0x1de90001;
const JSON_INPUTS = 6000;
const BYTE_INPUTS = 5000;

Deno.test(
  `ServerSession.receive()/receiveInvalid() answer ${JSON_INPUTS} JSON-level inputs in every state as §4 and §7 say (seed 0x${
    SERVER_JSON_SEED.toString(16)
  })`,
  () => {
    const cover = fuzz(SERVER_JSON_SEED, JSON_INPUTS, genJsonInput, makeServer);
    assertCovered(cover, [
      ...everyTypeInEveryState(SERVER_ACCEPTS),
      ...STAGES,
      "stage:config",
      "BAD_CONFIG in READY",
      "BAD_CONFIG in TERMINATING",
      "reply with a wrong re",
      "UNAUTHORIZED",
    ]);
  },
);

Deno.test(
  `ServerSession answers ${BYTE_INPUTS} random, truncated, bit-flipped, spliced and oversize frames as §2 and §4 say (seed 0x${
    SERVER_BYTES_SEED.toString(16)
  })`,
  () => {
    const cover = fuzz(SERVER_BYTES_SEED, BYTE_INPUTS, genByteInput, makeServer);
    assertCovered(cover, ["stage:frame", "stage:head", "stage:fields", "stage:ok"]);
  },
);

Deno.test(
  `LbSession.receive()/receiveInvalid() answer ${JSON_INPUTS} JSON-level inputs in every state as §4 and §8 say (seed 0x${
    LB_JSON_SEED.toString(16)
  })`,
  () => {
    const cover = fuzz(LB_JSON_SEED, JSON_INPUTS, genJsonInput, makeLb);
    assertCovered(cover, [
      ...everyTypeInEveryState(LB_ACCEPTS),
      ...STAGES,
      "reply with a wrong re",
      "late HEALTH_RESPONSE dropped",
      "late CONFIG_ACK dropped",
      "late ERROR BAD_CONFIG dropped",
      "ERROR BAD_CONFIG refuses a pending CONFIG_UPDATE",
      "ACK breaks §10",
      "extended READY",
      "stale heartbeat dropped",
      "ok:READY:STATUS",
      "ok:READY:HEARTBEAT",
      "ok:TERMINATING:HEARTBEAT",
    ]);
  },
);

Deno.test(
  `LbSession answers ${BYTE_INPUTS} random, truncated, bit-flipped, spliced and oversize frames as §2 and §4 say (seed 0x${
    LB_BYTES_SEED.toString(16)
  })`,
  () => {
    const cover = fuzz(LB_BYTES_SEED, BYTE_INPUTS, genByteInput, makeLb);
    assertCovered(cover, ["stage:frame", "stage:head", "stage:fields", "stage:ok"]);
  },
);

Deno.test(
  `ServerSession sessions are independent: garbage into one never stops another answering HEALTH_REQUEST (seed 0x${
    PAIR_SEED.toString(16)
  })`,
  () => {
    const rng = new Rng(PAIR_SEED);
    const cover = new Set<string>();
    const healthy = serverIn("READY", rng, "healthy", cover);
    let victim = serverIn("READY", rng, "victim 0", cover);
    let victims = 1;
    for (let i = 0; i < 2000; i++) {
      const garbage = (rng.chance(0.5) ? genByteInput : genJsonInput)(rng, victim.ctx());
      victim.feed(garbage.bytes, garbage.label, rng);
      if (victim.closed) {
        victim.finish();
        victim = serverIn(rng.pick(SERVER_STATES), rng, `victim ${victims++}`, cover);
      }
      const seq = healthy.inSeq;
      const out = healthy.outSeq;
      const request = validMessage(rng, "HEALTH_REQUEST", seq, healthy.ctx());
      const actions = healthy.feed(frameOf(payloadOf(request)), "HEALTH_REQUEST", rng);
      assert.equal(actions.length, 1);
      const first = actions[0];
      assert.ok(first?.kind === "send" && first.message.type === "HEALTH_RESPONSE");
      assert.equal(first.message.seq, out);
      assert.equal(first.message.re, seq);
      assert.equal(healthy.session.state, "READY");
      healthy.log.length = 1; // keep the reproduction short: only the last request matters
    }
    assert.ok(victims > 100, `only ${victims} victim sessions were closed`);
  },
);

// --- disagreements with docs/PROTOCOL.md ----------------------------------------------

/** Drives complete frames through FrameDecoder and decodeMessage, as the peers do. */
function drive<A>(
  m: { receive(x: Message, now: number): A[]; receiveInvalid(e: CodecError, now: number): A[] },
  frames: readonly string[],
  now: number,
): A[] {
  const decoder = new FrameDecoder();
  const out: A[] = [];
  for (const text of frames) {
    decoder.push(frameText(text));
    for (let p = decoder.next(); p !== null; p = decoder.next()) {
      let input: Message | CodecError;
      try {
        input = decodeMessage(p);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        input = e;
      }
      out.push(
        ...(input instanceof CodecError ? m.receiveInvalid(input, now) : m.receive(input, now)),
      );
    }
  }
  return out;
}

const HELLO_1 = '{"type":"HELLO","seq":1,"version":1,"token":"tok","lb_id":"lb-1"}';
const ACK_1 =
  '{"type":"ACK","seq":1,"re":1,"version":1,"server_id":"web-1","metrics":["cpu_percent"]}';

function plainServer(): ServerSession {
  return new ServerSession({
    serverId: SERVER_ID,
    availableMetrics: AVAILABLE,
    health: () => ({ status: "UP", metrics: { ...VALUES } }),
  }, T0);
}

/** READY: HELLO seq 1 in, token accepted, ACK seq 1 out. */
function plainReadyServer(): ServerSession {
  const s = plainServer();
  drive(s, [HELLO_1], T0);
  s.authenticated({ ok: true, expiresAt: EXPIRES }, T0);
  return s;
}

/** READY: HELLO seq 1 out, ACK seq 1 re 1 in. */
function plainReadyLb(): LbSession {
  const lb = new LbSession({ lbId: "lb-1", timeoutMs: LB_TIMEOUT });
  lb.connecting(T0);
  lb.connected("tok", T0);
  drive(lb, [ACK_1], T0);
  return lb;
}

const sendsOf = (actions: readonly (ServerAction | LbAction)[]) =>
  actions.flatMap((a) => a.kind === "send" ? [a.message] : []);

// Was BUG D1 (fixed): LbSession in READY (sent HELLO seq 1, received ACK seq 1 re 1) receives
//   {"type":"ERROR","seq":2,"code":"NOT_A_CODE","message":"x"}      (unknown code)
//   {"type":"ERROR","seq":5,"code":"INTERNAL","message":"x"}        (seq out of order)
// Expected (§4): "An ERROR is never answered with an ERROR: a receiver that gets a fatal ERROR
// records it and closes": a failed action and a close, no send.
// Actual: [send ERROR {seq 2, re 2, code BAD_MESSAGE}, failed protocol BAD_MESSAGE, close 0x02]
// (re 5 for the second). The fuzz hits this for every ERROR that fails §4 steps 2-6.
Deno.test({
  name: "LbSession.receiveInvalid() closes without answering a malformed ERROR from the server",
  fn: () => {
    for (
      const frame of [
        '{"type":"ERROR","seq":2,"code":"NOT_A_CODE","message":"x"}',
        '{"type":"ERROR","seq":5,"code":"INTERNAL","message":"x"}',
      ]
    ) {
      const lb = plainReadyLb();
      const actions = drive(lb, [frame], T0 + 1);
      assert.deepEqual(sendsOf(actions), [], frame);
      assert.equal(actions.at(-1)?.kind, "close");
      assert.equal(lb.state, "DISCONNECTED");
    }
  },
});

// Was BUG D2 (fixed): ServerSession receives an ERROR it cannot take:
//   new session (AWAIT_HELLO), then {"type":"ERROR","seq":1,"code":"INTERNAL","message":"x"}
//   READY (HELLO seq 1, ACK seq 1), then {"type":"ERROR","seq":2,"code":"NOPE","message":"x"}
// Expected (§4): no ERROR in answer, just the close.
// Actual: [send ERROR {seq 1, re 1, UNEXPECTED_MESSAGE}, close 0x03], and
// [send ERROR {seq 2, re 2, BAD_MESSAGE}, close 0x02]. (§7's AWAIT_HELLO row, "Anything else:
// ERROR UNEXPECTED_MESSAGE", contradicts §4 for the first case; the docs should say which wins.)
Deno.test({
  name: "ServerSession.receive()/receiveInvalid() close without answering an ERROR with an ERROR",
  fn: () => {
    const cases: [() => ServerSession, string][] = [
      [plainServer, '{"type":"ERROR","seq":1,"code":"INTERNAL","message":"x"}'],
      [plainReadyServer, '{"type":"ERROR","seq":2,"code":"NOPE","message":"x"}'],
    ];
    for (const [make, frame] of cases) {
      const s = make();
      const actions = drive(s, [frame], T0 + 1);
      assert.deepEqual(sendsOf(actions), [], frame);
      assert.equal(actions.at(-1)?.kind, "close");
      assert.equal(s.state, "CLOSED");
    }
  },
});

// Was BUG D3 (fixed): A received ERROR BAD_CONFIG that ends the session closes with 0x06:
//   LbSession READY, no CONFIG_UPDATE pending, then
//     {"type":"ERROR","seq":2,"re":9,"code":"BAD_CONFIG","message":"x"}  -> [failed, close 0x06]
//   ServerSession READY, then {"type":"ERROR","seq":2,"code":"BAD_CONFIG","message":"x"}
//     -> [close 0x06]
// Expected (§6 table): "0x06 BAD_CONFIG (not used to close: BAD_CONFIG is not fatal)".
Deno.test({
  name: "LbSession and ServerSession never close with 0x06 after a received ERROR BAD_CONFIG",
  fn: () => {
    const lb = plainReadyLb();
    const lbActions = drive(lb, [
      '{"type":"ERROR","seq":2,"re":9,"code":"BAD_CONFIG","message":"x"}',
    ], T0);
    const lbClose = lbActions.at(-1);
    assert.ok(lbClose?.kind === "close");
    assert.notEqual(lbClose.code, 0x06);
    const s = plainReadyServer();
    const sActions = drive(s, ['{"type":"ERROR","seq":2,"code":"BAD_CONFIG","message":"x"}'], T0);
    const sClose = sActions.at(-1);
    assert.ok(sClose?.kind === "close");
    assert.notEqual(sClose.code, 0x06);
  },
});

// Was BUG D4 (fixed): ServerSession READY (HELLO seq 1, ACK seq 1), then {"type":"PING","seq":2}.
// Expected (§4): "An ERROR carries re = the offending message's seq whenever that could be
// read": ERROR {seq 2, re 2, code BAD_MESSAGE}, close 0x02.
// Actual: ERROR {seq 2, code BAD_MESSAGE} without re (the codec drops the seq of an unknown
// type). Same in LbSession.
Deno.test({
  name: "ServerSession.receiveInvalid() answers an unknown type with re = its readable seq",
  fn: () => {
    const actions = drive(plainReadyServer(), ['{"type":"PING","seq":2}'], T0);
    assert.deepEqual(sendsOf(actions).map((m) => m.type === "ERROR" && [m.code, m.re]), [
      ["BAD_MESSAGE", 2],
    ]);
  },
});

// Was BUG C (fixed): ServerSession TERMINATING (HELLO seq 1, ACK seq 1, terminate() sent TERMINATE seq 2):
//   {"type":"CONFIG_UPDATE","seq":2,"config":{"interval_ms":50}}
// Expected (§7 TERMINATING row: "HEALTH_REQUEST and CONFIG_UPDATE are ignored"; §6: messages
// in flight are ignored): [] as for {"type":"CONFIG_UPDATE","seq":2,"config":{"metrics":["zz"]}},
// which is ignored today.
// Actual: [send ERROR {seq 3, re 2, code BAD_CONFIG}] - a config the codec rejects goes through
// receiveInvalid(), which answers BAD_CONFIG in any state that accepts CONFIG_UPDATE. (§4 step 6
// could be read as allowing the ERROR; either way both bad configs should get the same answer.)
Deno.test({
  name:
    "ServerSession.receiveInvalid() ignores a CONFIG_UPDATE with a bad config while TERMINATING",
  fn: () => {
    const s = plainReadyServer();
    s.terminate("shutdown", T0);
    const actions = drive(s, ['{"type":"CONFIG_UPDATE","seq":2,"config":{"interval_ms":50}}'], T0);
    assert.deepEqual(actions, []);
    assert.equal(s.state, "TERMINATING");
  },
});
