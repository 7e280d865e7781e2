/**
 * The DNS server of the LB (`--dns-port`): UDP and TCP on one port, each
 * query answered by {@linkcode answerDns} from the services as they are at
 * that moment. TCP carries 2-byte length prefixes, several queries per
 * connection, and ends connections idle for 10 s; connections at once are
 * capped, the UDP loop never stops on a bad datagram.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { servicesOf } from "../lb/services.ts";
import { type Logger, rateLimited, silentLogger } from "../util/log.ts";
import { acceptLoop } from "./accept_loop.ts";
import { answerDns, type DnsZone } from "./dns.ts";

/** Options of {@linkcode startDnsServer}. */
export interface DnsServerOptions extends DnsZone {
  directory: ServerDirectory;
  /** Address to bind. Default "0.0.0.0". */
  host?: string;
  /** UDP and TCP port (0: any free one, the same for both). */
  port: number;
  /** TCP connections at once. Default 256. */
  maxConnections?: number;
  log?: Logger;
}

/** A running DNS server. */
export interface DnsServer {
  readonly port: number;
  close(): Promise<void>;
}

const _IDLE_MS = 10_000;

/** Starts the DNS server on UDP and TCP. @throws when the port cannot be bound */
export function startDnsServer(options: DnsServerOptions): DnsServer {
  const host = options.host ?? "0.0.0.0";
  const log = rateLimited(options.log ?? silentLogger, 10_000, 5);
  const zone: DnsZone = { domain: options.domain, ttlSec: options.ttlSec };
  const answer = (q: Uint8Array, via: "udp" | "tcp") =>
    answerDns(q, servicesOf(options.directory.status()), zone, via);
  // TCP first with the port asked for; UDP on the same port.
  const tcp = Deno.listen({ hostname: host, port: options.port });
  const port = (tcp.addr as Deno.NetAddr).port;
  let udp: Deno.DatagramConn;
  try {
    udp = Deno.listenDatagram({ hostname: host, port, transport: "udp" });
  } catch (e) {
    tcp.close();
    throw e;
  }
  let closed = false;
  const udpLoop = (async () => {
    while (!closed) {
      let data: Uint8Array;
      let from: Deno.Addr;
      try {
        [data, from] = await udp.receive();
      } catch (e) {
        if (closed) return;
        log.warn("DNS UDP receive failed", { error: (e as Error).message });
        continue;
      }
      try {
        const out = answer(data, "udp");
        if (out) await udp.send(out, from);
      } catch (e) {
        log.warn("DNS answer failed", { error: (e as Error).message });
      }
    }
  })();
  const tcpLoop = acceptLoop(tcp, {
    what: "DNS over TCP",
    maxConnections: options.maxConnections ?? 256,
    maxPerAddress: Math.max(1, Math.floor((options.maxConnections ?? 256) / 4)),
    log,
    serve: (conn) => _serveTcp(conn, (q) => answer(q, "tcp")).catch(() => {}),
  });
  return {
    port,
    async close() {
      if (closed) return;
      closed = true;
      udp.close();
      tcp.close();
      for (const c of tcpLoop.connections()) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await Promise.allSettled([udpLoop, tcpLoop.done]);
    },
  };
}

/** Length-prefixed queries on one TCP connection until it ends or idles. */
async function _serveTcp(
  conn: Deno.Conn,
  answer: (q: Uint8Array) => Uint8Array | null,
): Promise<void> {
  let buffered = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  for (;;) {
    const n = await Promise.race([
      conn.read(chunk),
      new Promise<"idle">((r) => setTimeout(() => r("idle"), _IDLE_MS)),
    ]);
    if (n === null || n === "idle") return;
    const next = new Uint8Array(buffered.length + n);
    next.set(buffered);
    next.set(chunk.subarray(0, n), buffered.length);
    buffered = next;
    while (buffered.length >= 2) {
      const length = (buffered[0]! << 8) | buffered[1]!;
      if (buffered.length < 2 + length) break;
      const q = buffered.slice(2, 2 + length);
      buffered = buffered.slice(2 + length);
      const out = answer(q);
      if (!out) return;
      const framed = new Uint8Array(2 + out.length);
      framed[0] = out.length >> 8;
      framed[1] = out.length & 0xff;
      framed.set(out, 2);
      for (let off = 0; off < framed.length;) off += await conn.write(framed.subarray(off));
    }
  }
}
