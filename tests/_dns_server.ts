/**
 * A tiny authoritative DNS server for tests: answers A and AAAA questions
 * over UDP from a table the test changes at will, NXDOMAIN for other names.
 * The LB is pointed at it with `--dns-server 127.0.0.1:PORT`.
 *
 * @module
 */

import dgram from "node:dgram";
import { parseIp } from "../lib/protocol/address.ts";

/** A running test DNS server. */
export interface TestDns {
  readonly port: number;
  /** Sets the addresses a name resolves to (IPv4 and IPv6 literals); [] for no records. */
  set(name: string, addresses: string[]): void;
  /** Makes a name fail (SERVFAIL) until set again. */
  fail(name: string): void;
  /** Queries answered. */
  readonly queries: number;
  close(): Promise<void>;
}

/** Starts the server on 127.0.0.1 and a free port. */
export async function startTestDns(): Promise<TestDns> {
  const records = new Map<string, string[] | "fail">();
  const socket = dgram.createSocket("udp4");
  let queries = 0;
  socket.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
    const reply = _answer(msg, records);
    if (!reply) return;
    queries++;
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return {
    port: socket.address().port,
    set: (name, addresses) => void records.set(name.toLowerCase().replace(/\.$/, ""), addresses),
    fail: (name) => void records.set(name.toLowerCase().replace(/\.$/, ""), "fail"),
    get queries() {
      return queries;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function _answer(msg: Uint8Array, records: Map<string, string[] | "fail">): Uint8Array | undefined {
  if (msg.length < 12) return undefined;
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const labels: string[] = [];
  let off = 12;
  while (off < msg.length && msg[off] !== 0) {
    const len = msg[off]!;
    labels.push(new TextDecoder().decode(msg.subarray(off + 1, off + 1 + len)));
    off += 1 + len;
  }
  off++; // the root label
  if (off + 4 > msg.length) return undefined;
  const qtype = view.getUint16(off);
  const question = msg.subarray(12, off + 4);
  const name = labels.join(".").toLowerCase();
  const entry = records.get(name);
  const wanted = qtype === 1 ? 4 : qtype === 28 ? 16 : 0;
  const answers = entry === undefined || entry === "fail"
    ? []
    : entry.map((a) => parseIp(a)).filter((b): b is Uint8Array =>
      b !== undefined && b.length === wanted
    );
  const rcode = entry === undefined ? 3 : entry === "fail" ? 2 : 0;
  const out = new Uint8Array(12 + question.length + answers.length * (12 + wanted));
  const o = new DataView(out.buffer);
  o.setUint16(0, view.getUint16(0)); // id
  o.setUint16(2, 0x8000 | (view.getUint16(2) & 0x0100) | 0x0400 | 0x0080 | rcode); // QR, RD copied, AA, RA
  o.setUint16(4, 1);
  o.setUint16(6, answers.length);
  out.set(question, 12);
  let p = 12 + question.length;
  for (const rdata of answers) {
    o.setUint16(p, 0xc00c); // name: pointer to the question
    o.setUint16(p + 2, qtype);
    o.setUint16(p + 4, 1); // IN
    o.setUint32(p + 6, 1); // TTL 1 s
    o.setUint16(p + 10, rdata.length);
    out.set(rdata, p + 12);
    p += 12 + rdata.length;
  }
  return out;
}
