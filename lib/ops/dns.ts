/**
 * The verdict by DNS: an authoritative server for one zone (`--dns-domain`,
 * default `qhcp.`), over UDP and TCP, answering from the services the agents
 * advertise (`lib/lb/services.ts`). The only importer of `dns-packet` (the
 * wire format); {@linkcode answerDns} is pure, bytes in, bytes (or nothing)
 * out, and fuzzed like the QHCP codec.
 *
 * | name                               | type     | answer                                                   |
 * | ---------------------------------- | -------- | -------------------------------------------------------- |
 * | `NAME.service.<zone>`              | A, AAAA  | the addresses of NAME's servers that should get traffic  |
 * | `_NAME._tcp.service.<zone>`        | SRV      | priority 1, weight (QHCP's), the service port, a target  |
 * | `<ip>.node.<zone>` (`10-0-0-7`)    | A, AAAA  | that address, for a server the LB knows (SRV targets)   |
 * | `<zone>`                           | SOA, NS  | the zone's                                               |
 *
 * A name of the zone that does not exist is NXDOMAIN; a service with no
 * healthy server, or another type, is an empty answer with the SOA (whose
 * minimum is the TTL, for negative caching). Names outside the zone are
 * REFUSED (this is not a resolver). A UDP answer larger than the client
 * takes (512 bytes, or its EDNS0 size up to 1232) is sent empty with TC set,
 * and the client retries over TCP. Malformed queries get FORMERR when their
 * header can be read, and nothing otherwise.
 *
 * @module
 */

import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import type { ServiceView } from "../lb/services.ts";

// The parts of dns-packet used here, typed here: its @types package pulls in
// @types/node, whose Web Crypto types clash with Deno's.
interface Question {
  type: string;
  name: string;
  class?: string;
}
type Answer =
  & { type: string; name: string; ttl?: number; data?: unknown }
  & Record<string, unknown>;
interface Packet {
  type?: "query" | "response";
  id?: number;
  flags?: number;
  questions?: Question[];
  answers?: Answer[];
  authorities?: Answer[];
  additionals?: Answer[];
}
const packet = dnsPacket as unknown as {
  encode(p: Packet): Uint8Array;
  decode(b: Uint8Array): Packet;
};

/** Options of {@linkcode answerDns}. */
export interface DnsZone {
  /** The zone, e.g. `qhcp` (any case, with or without the final dot). */
  domain: string;
  /** TTL of every answer, seconds. */
  ttlSec: number;
}

/** Largest UDP answer this server sends, whatever a client's EDNS0 size says (RFC 8467 practice). */
export const DNS_MAX_UDP = 1232;

const _RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const _AA = 1 << 10;
const _TC = 1 << 9;
const _RD = 1 << 8;

/**
 * The answer to one query, or null when there is none to send (bytes that
 * are not a DNS query at all, or a response).
 *
 * @param query the query's bytes (for TCP, without the 2-byte length)
 * @param services the services right now
 * @param via `udp` (answers can be truncated) or `tcp`
 *
 * @example
 * ```ts
 * import { answerDns } from "./dns.ts";
 * import { servicesOf } from "../lb/services.ts";
 * import type { Monitor } from "../lb/monitor.ts";
 * declare const monitor: Monitor, query: Uint8Array; // a datagram read from port 53
 * const answer = answerDns(query, servicesOf(monitor.status()), { domain: "qhcp", ttlSec: 1 }, "udp");
 * ```
 */
export function answerDns(
  query: Uint8Array,
  services: readonly ServiceView[],
  zone: DnsZone,
  via: "udp" | "tcp",
): Uint8Array | null {
  if (query.length < 12) return null;
  const view = new DataView(query.buffer, query.byteOffset, query.byteLength);
  const id = view.getUint16(0);
  const flags = view.getUint16(2);
  if (flags & 0x8000) return null; // a response: never answer those
  let q: Packet;
  try {
    q = packet.decode(_buffer(query));
  } catch {
    return _bare(id, flags, _RCODE.FORMERR);
  }
  const opcode = (flags >> 11) & 0xf;
  if (opcode !== 0) return _bare(id, flags, _RCODE.NOTIMP);
  const questions = q.questions ?? [];
  if (questions.length !== 1) return _bare(id, flags, _RCODE.FORMERR);
  const question = questions[0]!;
  const opt = (q.additionals ?? []).find((a) => a.type === "OPT") as
    | { udpPayloadSize?: number }
    | undefined;
  const limit = via === "tcp"
    ? 65_535
    : opt
    ? Math.min(DNS_MAX_UDP, Math.max(512, opt.udpPayloadSize ?? 512))
    : 512;
  const r = _resolve(question, services, _zone(zone.domain), zone.ttlSec);
  const response = (answers: Answer[], truncated: boolean) =>
    _encode({
      type: "response",
      id,
      flags: _AA | (flags & _RD) | (truncated ? _TC : 0) | r.rcode,
      questions: [question],
      answers,
      authorities: truncated ? [] : r.authorities,
      additionals: [
        ...(truncated ? [] : r.additionals),
        ...(opt
          ? [{ type: "OPT", name: ".", udpPayloadSize: DNS_MAX_UDP } as unknown as Answer]
          : []),
      ],
    });
  const full = response(r.answers, false);
  if (full.length <= limit) return full;
  return response([], true);
}

interface _Result {
  rcode: number;
  answers: Answer[];
  authorities: Answer[];
  additionals: Answer[];
}

function _zone(domain: string): string {
  return domain.toLowerCase().replace(/\.+$/, "");
}

/** The answer records for one question. */
function _resolve(
  q: Question,
  services: readonly ServiceView[],
  zone: string,
  ttl: number,
): _Result {
  const name = q.name.toLowerCase().replace(/\.+$/, "");
  const out: _Result = { rcode: _RCODE.NOERROR, answers: [], authorities: [], additionals: [] };
  const soa = (): Answer => ({
    type: "SOA",
    name: zone,
    ttl,
    data: {
      mname: `ns.${zone}`,
      rname: `hostmaster.${zone}`,
      serial: Math.floor(Date.now() / 1000) >>> 0,
      refresh: 60,
      retry: 10,
      expire: 600,
      minimum: ttl,
    },
  });
  if (name !== zone && !name.endsWith(`.${zone}`)) {
    out.rcode = _RCODE.REFUSED;
    return out;
  }
  const nodata = () => {
    out.authorities.push(soa());
    return out;
  };
  const nxdomain = () => {
    out.rcode = _RCODE.NXDOMAIN;
    return nodata();
  };
  const type = q.type as string;
  const addresses = (ip: string, owner: string): Answer[] => {
    const v = isIP(ip);
    if ((type === "A" || type === "ANY") && v === 4) {
      return [{ type: "A", name: owner, ttl, data: ip }];
    }
    if ((type === "AAAA" || type === "ANY") && v === 6) {
      return [{ type: "AAAA", name: owner, ttl, data: ip }];
    }
    return [];
  };
  if (name === zone) {
    if (type === "SOA" || type === "ANY") out.answers.push(soa());
    if (type === "NS" || type === "ANY") {
      out.answers.push({ type: "NS", name: zone, ttl, data: `ns.${zone}` });
    }
    return out.answers.length > 0 ? out : nodata();
  }
  const rest = name.slice(0, -(zone.length + 1));
  const labels = rest.split(".");
  // NAME.service and _NAME._tcp.service
  if (labels.at(-1) === "service" && labels.length >= 2) {
    const srv = labels.length === 3 && labels[1] === "_tcp" && labels[0]!.startsWith("_");
    const svcName = srv ? labels[0]!.slice(1) : labels.length === 2 ? labels[0]! : undefined;
    const service = services.find((s) => s.name.toLowerCase() === svcName);
    if (!service) return nxdomain();
    const healthy = service.instances.filter((i) => i.healthy);
    if (srv) {
      if (type !== "SRV" && type !== "ANY") return nodata();
      for (const i of healthy) {
        const target = `${_nodeLabel(i.host)}.node.${zone}`;
        out.answers.push({
          type: "SRV",
          name: q.name,
          ttl,
          data: { priority: 1, weight: Math.max(1, Math.round(i.weight)), port: i.port, target },
        });
      }
      // The targets' addresses go along whatever type the SRV asked.
      out.additionals = _unique(
        healthy.flatMap((i) => _both(i.host, `${_nodeLabel(i.host)}.node.${zone}`, ttl)),
      );
      return out.answers.length > 0 ? out : nodata();
    }
    const seen = new Set<string>();
    for (const i of healthy) {
      if (seen.has(i.host)) continue;
      seen.add(i.host);
      out.answers.push(...addresses(i.host, q.name));
    }
    return out.answers.length > 0 ? out : nodata();
  }
  // <ip>.node: a server the LB knows
  if (labels.length === 2 && labels[1] === "node") {
    const ip = _ipOfLabel(labels[0]!);
    const known = ip !== undefined &&
      services.some((s) => s.instances.some((i) => i.host.toLowerCase() === ip));
    if (!known) return nxdomain();
    out.answers.push(...addresses(ip!, q.name));
    return out.answers.length > 0 ? out : nodata();
  }
  // Names between: service and node themselves exist (empty non-terminals).
  if (labels.length === 1 && (labels[0] === "service" || labels[0] === "node")) return nodata();
  return nxdomain();
}

/** A and AAAA records of an address. */
function _both(ip: string, owner: string, ttl: number): Answer[] {
  const v = isIP(ip);
  if (v === 4) return [{ type: "A", name: owner, ttl, data: ip }];
  if (v === 6) return [{ type: "AAAA", name: owner, ttl, data: ip }];
  return [];
}

function _unique(answers: Answer[]): Answer[] {
  const seen = new Set<string>();
  return answers.filter((a) => {
    const key = `${a.type} ${a.name}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** A DNS label for an address: `10.0.0.7` is `10-0-0-7`, `fd00::1` is `fd00--1`. */
export function nodeLabel(host: string): string {
  return _nodeLabel(host);
}

function _nodeLabel(host: string): string {
  return host.toLowerCase().replace(/[.:]/g, "-");
}

function _ipOfLabel(label: string): string | undefined {
  const v4 = label.replace(/-/g, ".");
  if (isIP(v4) === 4) return v4;
  const v6 = label.replace(/-/g, ":");
  return isIP(v6) === 6 ? v6 : undefined;
}

/** A header-only answer (FORMERR, NOTIMP) to a query whose header could be read. */
function _bare(id: number, flags: number, rcode: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  v.setUint16(0, id);
  v.setUint16(2, 0x8000 | (flags & 0x7800) | (flags & _RD) | rcode);
  return out;
}

function _encode(p: Packet): Uint8Array {
  const b = packet.encode(p);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** dns-packet wants a Buffer: a view of the same bytes. */
function _buffer(bytes: Uint8Array): Uint8Array {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
