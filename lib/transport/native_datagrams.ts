/**
 * The native stack's {@linkcode DatagramPort}: a connection's QUIC DATAGRAM
 * frames (RFC 9221), which never throw and go quiet once it closed.
 *
 * @module
 */

import type { DatagramPort } from "./transport.ts";

/** A connection's datagrams; `conn` is undefined once it closed. */
export class _NativeDatagrams implements DatagramPort {
  /** `conn` gives the connection, or undefined once it closed. */
  constructor(readonly conn: () => Deno.QuicConn | undefined) {}

  get maxSize(): number {
    return this.conn()?.maxDatagramSize ?? 0;
  }

  send(data: Uint8Array): void {
    const c = this.conn();
    if (!c || data.length > c.maxDatagramSize) return;
    c.sendDatagram(data).catch(() => {});
  }

  async read(): Promise<Uint8Array | null> {
    const c = this.conn();
    if (!c) return null;
    try {
      return await c.readDatagram();
    } catch {
      return null; // the connection closed
    }
  }
}
