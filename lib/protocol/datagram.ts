/**
 * The DATAGRAM form of heartbeats and probes (docs/PROTOCOL.md §10.3): small
 * fixed binary records in QUIC DATAGRAM frames (RFC 9221), used when a
 * session negotiated `datagram`. Pure: bytes in, a typed datagram or a
 * {@linkcode CodecError} out.
 *
 * ```
 *  0        1        2        3        4                 8        10       12
 * +--------+--------+--------+--------+-----------------+--------+--------+
 * | 0x51   | ver 1  | kind   | status | counter (u32 BE)| cpu    | mem    |  heartbeat, 12 bytes
 * +--------+--------+--------+--------+-----------------+--------+--------+
 * | 0x51   | ver 1  | kind 2 | 0      | nonce (u32 BE)  |                    probe, 8 bytes
 * ```
 *
 * cpu and mem are u16 big-endian hundredths of a percent (0..10000). Bytes
 * after a record are ignored (room for later fields); a datagram of an
 * unknown kind decodes to null and is ignored.
 *
 * @module
 */

import { CodecError } from "./errors.ts";
import type { ServerStatus } from "./wire.ts";

/** First byte of every QHCP datagram ('Q'). */
export const DATAGRAM_MAGIC = 0x51;
/** Second byte: the datagram format's version. */
export const DATAGRAM_VERSION = 1;

/** Kind byte of a heartbeat (server to LB). */
const _HEARTBEAT = 1;
/** Kind byte of a probe (LB to server: "send a heartbeat now"). */
const _PROBE = 2;
const _HEARTBEAT_LENGTH = 12;
const _PROBE_LENGTH = 8;
const _STATUSES: readonly ServerStatus[] = ["UP", "DRAINING", "FAILING"];
const _MAX_COUNTER = 0xffff_ffff;

/** A heartbeat: the server's counter, status and a compact load summary. */
export interface HeartbeatDatagram {
  kind: "heartbeat";
  /** 1 for the session's first heartbeat, then +1 (after 2^32 - 1 comes 1). */
  counter: number;
  status: ServerStatus;
  /** 0..100, to 0.01. */
  cpuPercent: number;
  /** 0..100, to 0.01. */
  memPercent: number;
}

/** A probe: the LB asks for a heartbeat at once. */
export interface ProbeDatagram {
  kind: "probe";
  nonce: number;
}

/** Any QHCP datagram. */
export type Datagram = HeartbeatDatagram | ProbeDatagram;

/**
 * Encodes one datagram.
 *
 * @throws {CodecError} `BAD_MESSAGE` (side `local`) for a counter, nonce or
 * percentage out of range
 *
 * @example
 * ```ts
 * import { encodeDatagram } from "./datagram.ts";
 * encodeDatagram({ kind: "heartbeat", counter: 7, status: "UP", cpuPercent: 12.5, memPercent: 40 });
 * // 51 01 01 00 00 00 00 07 04 e2 0f a0
 * ```
 */
export function encodeDatagram(d: Datagram): Uint8Array {
  const bad = (what: string) =>
    new CodecError("BAD_MESSAGE", "local", `Cannot encode ${d.kind} datagram: ${what}`);
  const n = d.kind === "heartbeat" ? d.counter : d.nonce;
  const min = d.kind === "heartbeat" ? 1 : 0;
  if (!Number.isInteger(n) || n < min || n > _MAX_COUNTER) {
    throw bad(
      `${d.kind === "heartbeat" ? "counter" : "nonce"} ${n} is not in ${min}..${_MAX_COUNTER}`,
    );
  }
  const out = new Uint8Array(d.kind === "heartbeat" ? _HEARTBEAT_LENGTH : _PROBE_LENGTH);
  const view = new DataView(out.buffer);
  out[0] = DATAGRAM_MAGIC;
  out[1] = DATAGRAM_VERSION;
  out[2] = d.kind === "heartbeat" ? _HEARTBEAT : _PROBE;
  view.setUint32(4, n);
  if (d.kind === "heartbeat") {
    const status = _STATUSES.indexOf(d.status);
    if (status < 0) throw bad(`status ${JSON.stringify(d.status)} is not UP, DRAINING or FAILING`);
    out[3] = status;
    for (
      const [offset, name, value] of [[8, "cpu", d.cpuPercent], [10, "mem", d.memPercent]] as const
    ) {
      if (!(value >= 0 && value <= 100)) throw bad(`${name} ${value} is not in 0..100`);
      view.setUint16(offset, Math.round(value * 100));
    }
  }
  return out;
}

/**
 * Decodes one datagram from the peer.
 *
 * @returns the datagram, or null for a kind this implementation does not know
 * @throws {CodecError} `BAD_FRAME` (side `remote`) for a datagram too short,
 * with another first byte or version, or a bad status or percentage
 */
export function decodeDatagram(bytes: Uint8Array): Datagram | null {
  const bad = (what: string) =>
    new CodecError("BAD_FRAME", "remote", `Cannot decode datagram: ${what}`);
  if (bytes.length < _PROBE_LENGTH) {
    throw bad(`${bytes.length} bytes, expected at least ${_PROBE_LENGTH}`);
  }
  if (bytes[0] !== DATAGRAM_MAGIC) {
    throw bad(`first byte 0x${bytes[0]!.toString(16)}, expected 0x51`);
  }
  if (bytes[1] !== DATAGRAM_VERSION) {
    throw bad(`version ${bytes[1]}, expected ${DATAGRAM_VERSION}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getUint32(4);
  switch (bytes[2]) {
    case _PROBE:
      return { kind: "probe", nonce: n };
    case _HEARTBEAT: {
      if (bytes.length < _HEARTBEAT_LENGTH) {
        throw bad(`heartbeat of ${bytes.length} bytes, expected at least ${_HEARTBEAT_LENGTH}`);
      }
      const status = _STATUSES[bytes[3]!];
      if (status === undefined) throw bad(`heartbeat status ${bytes[3]}, expected 0, 1 or 2`);
      if (n === 0) throw bad("heartbeat counter 0, expected at least 1");
      const cpu = view.getUint16(8);
      const mem = view.getUint16(10);
      if (cpu > 10_000 || mem > 10_000) {
        throw bad(`heartbeat load ${cpu}/${mem} hundredths, expected at most 10000`);
      }
      return {
        kind: "heartbeat",
        counter: n,
        status,
        cpuPercent: cpu / 100,
        memPercent: mem / 100,
      };
    }
    default:
      return null;
  }
}
