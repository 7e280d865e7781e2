/**
 * Server addresses, written and read in one place: `host:port` with the
 * default QHCP port, IPv6 literals in brackets, IP literals as bytes (for
 * comparing certificate names), and whether a host is loopback.
 *
 * @module
 */

import { DEFAULT_SERVER_PORT } from "./wire.ts";

/** A host (name or IP literal, IPv6 without brackets) and a port. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port", "host" (port 4243), "[v6]:port" or "v6". */
export function parseServerAddress(text: string): HostPort {
  const t = text.trim();
  if (t === "") throw new Error("empty server address");
  let host: string;
  let port = DEFAULT_SERVER_PORT;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(t);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if ((t.match(/:/g) ?? []).length > 1) {
    host = t; // bare IPv6 literal, default port
  } else {
    const i = t.lastIndexOf(":");
    host = i < 0 ? t : t.slice(0, i);
    if (i >= 0) {
      const p = t.slice(i + 1);
      if (!/^\d+$/.test(p)) throw new Error(`bad port in ${JSON.stringify(text)}`);
      port = Number(p);
    }
  }
  if (!host || /[\s/]/.test(host)) throw new Error(`bad host in ${JSON.stringify(text)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`port in ${JSON.stringify(text)} is not in 1..65535`);
  }
  return { host, port };
}

/** The host of a `host:port` address as {@linkcode formatAddress} writes it (IPv6 without brackets). */
export function hostOf(address: string): string {
  const bracket = /^\[([^\]]+)\]:\d+$/.exec(address);
  if (bracket) return bracket[1]!;
  const i = address.lastIndexOf(":");
  return i < 0 ? address : address.slice(0, i);
}

/** Formats `host:port`, with brackets around IPv6 literals. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Parses an IPv4 or IPv6 literal (IPv6 optionally in brackets) into its 4 or
 * 16 bytes, or returns undefined for anything else (a host name).
 */
export function parseIp(text: string): Uint8Array | undefined {
  const bracketed = text.startsWith("[") && text.endsWith("]");
  if (!bracketed && (text.startsWith("[") || text.endsWith("]"))) return undefined;
  const t = bracketed ? text.slice(1, -1) : text;
  const v4 = _parseIpv4(t);
  if (v4) return v4;
  if (!t.includes(":")) return undefined;
  const halves = t.split("::");
  if (halves.length > 2) return undefined;
  // A dotted IPv4 tail is allowed only in the last 32 bits (RFC 4291).
  const parseGroups = (s: string, last: boolean): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (last && i === parts.length - 1 && part.includes(".")) {
        const b = _parseIpv4(part);
        if (!b) return undefined;
        out.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return undefined;
        out.push(parseInt(part, 16));
      }
    }
    return out;
  };
  const head = parseGroups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (
    (halves.length === 1 && missing !== 0) || missing < 0 || (halves.length === 2 && missing < 1)
  ) {
    return undefined;
  }
  const groups = [
    ...head,
    ...new Array<number>(halves.length === 2 ? missing : 0).fill(0),
    ...tail,
  ];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

function _parseIpv4(t: string): Uint8Array | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(t);
  if (!m) return undefined;
  const bytes = m.slice(1).map(Number);
  if (bytes.some((b) => b > 255)) return undefined;
  return Uint8Array.from(bytes);
}

/**
 * True for a loopback address or `localhost`: an endpoint bound there is not
 * reachable from other hosts.
 */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === "localhost") return true;
  const ip = parseIp(host);
  if (!ip) return false;
  if (ip.length === 4) return ip[0] === 127;
  // ::1, or an IPv4-mapped loopback address (::ffff:127.x.x.x).
  const mapped = ip.subarray(0, 10).every((b) => b === 0) && ip[10] === 0xff && ip[11] === 0xff;
  if (mapped) return ip[12] === 127;
  return ip.subarray(0, 15).every((b) => b === 0) && ip[15] === 1;
}
