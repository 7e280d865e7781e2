/**
 * The small interface between QHCP and a QUIC stack. The rest of the library
 * sees only these types, so a second stack, or an in-memory fake for tests,
 * can stand beside the real one and run the same suite.
 *
 * A {@linkcode Channel} is one QUIC connection together with its control
 * stream: the only stream QHCP/1 uses.
 *
 * @module
 */

import { DEFAULT_SERVER_PORT } from "./protocol.ts";

/**
 * The QUIC stacks QHCP can run on (named here, away from the modules that
 * load them, so that naming one loads no native code).
 */
export const QUIC_STACKS = ["matrixai", "native"] as const;

/** A QUIC stack: `matrixai` (quiche through @matrixai/quic, the default) or `native` (Deno's quinn). */
export type QuicStack = typeof QUIC_STACKS[number];

/** How a connection ended. */
export interface CloseInfo {
  /** Who closed it: this process, the peer, or the transport (idle timeout, socket error). */
  by: "local" | "remote" | "transport";
  /** The QUIC application error code, when the close carried one. */
  code?: number;
  /** Human-readable reason. */
  reason: string;
}

/** One QUIC connection and its control stream. */
export interface Channel {
  /** The peer's address as `host:port` (IPv6 in brackets). */
  readonly remoteAddress: string;
  /**
   * The next bytes from the control stream, or null once the peer finished
   * the stream or the connection closed. Never rejects.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Writes bytes to the control stream.
   *
   * @throws {TransportError} when the stream or connection is closed
   */
  write(data: Uint8Array): Promise<void>;
  /**
   * Closes gracefully: finishes our side of the control stream so written
   * bytes are delivered, waits up to `lingerMs` for the peer to do the same,
   * then closes the connection with `code` and `reason`. Never rejects.
   */
  close(code: number, reason: string, lingerMs?: number): Promise<void>;
  /** Closes the connection at once, dropping unsent bytes. Never rejects. */
  abort(code: number, reason: string): Promise<void>;
  /** Resolves once the connection is gone. Never rejects. */
  readonly closed: Promise<CloseInfo>;
}

/** Options for listening as a QHCP server. */
export interface ListenOptions {
  /** Address to bind, e.g. "0.0.0.0", "::" or "127.0.0.1". */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  /** Server certificate chain, PEM. */
  certPem: string;
  /** Server private key, PEM. */
  keyPem: string;
  /** Close connections silent for this long, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Bidirectional streams a peer may have open at once. Default 4. */
  maxStreamsPerConnection?: number;
}

/** A listening server endpoint. */
export interface Listener {
  /** The bound host. */
  readonly host: string;
  /** The bound port (useful after binding port 0). */
  readonly port: number;
  /** Connections currently open. */
  readonly connections: number;
  /** Stops listening and closes every connection with `code`. */
  close(code?: number, reason?: string): Promise<void>;
}

/** Options for dialing a server. */
export interface DialOptions {
  /** Host name or IP address of the server. */
  host: string;
  /** UDP port of the server. */
  port: number;
  /**
   * CA certificates (PEM bundle) the server's chain must lead to. The server
   * certificate must also name `host`: a DNS name, or an IP address.
   */
  caPem?: string;
  /** Skip certificate verification entirely. */
  insecure?: boolean;
  /** Give up on the handshake after this long, ms. */
  timeoutMs: number;
  /** Close the connection when silent this long, ms. Default 30000. */
  idleTimeoutMs?: number;
  /** Send keep-alive pings at this interval, ms. Default idleTimeoutMs / 3. */
  keepAliveMs?: number;
  /** Aborts the dial. */
  signal?: AbortSignal;
}

/** A QUIC stack seen through the interface QHCP needs. */
export interface Transport {
  /** Short name, e.g. "matrixai" or "memory". */
  readonly name: string;
  /** Starts a server; `onChannel` is called once per accepted connection. */
  listen(options: ListenOptions, onChannel: (channel: Channel) => void): Promise<Listener>;
  /**
   * Connects to a server and opens the control stream.
   *
   * @throws {TransportError} when the connection cannot be set up
   */
  dial(options: DialOptions): Promise<Channel>;
  /** What this transport holds right now (for leak checks). */
  stats(): TransportStats;
  /** Releases shared resources (sockets). */
  close(): Promise<void>;
}

/** Resources a transport holds. */
export interface TransportStats {
  /** Dialled connections still open. */
  connections: number;
  /** Listeners still open. */
  listeners: number;
}

/** Why a transport operation failed. */
export type TransportErrorKind =
  /** The server's host name did not resolve to an address. */
  | "unresolved"
  | "timeout"
  | "certificate"
  | "refused"
  | "closed"
  | "aborted"
  | "io";

/** A failure of the transport (not of the QHCP protocol). */
export class TransportError extends Error {
  /** What kind of failure. */
  readonly kind: TransportErrorKind;

  constructor(kind: TransportErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TransportError";
    this.kind = kind;
  }
}

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
