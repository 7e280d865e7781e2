/**
 * An in-memory {@linkcode Transport} for tests: listeners and dialers in one
 * process meet through a shared registry, and byte chunks travel between
 * paired channels. It keeps the semantics QHCP relies on (ordered bytes,
 * FIN, close codes seen by the peer, dial timeouts to nobody) and adds fault
 * switches (black-holing a listener) so that the shared suite can run on it
 * and on real QUIC alike.
 *
 * @module
 */

import {
  type Channel,
  type CloseInfo,
  type DatagramPort,
  type DialOptions,
  type Listener,
  type ListenOptions,
  type Transport,
  TransportError,
  type TransportStats,
} from "./transport.ts";
import { formatAddress } from "../protocol/address.ts";

interface _Endpoint {
  host: string;
  port: number;
  onChannel: (ch: Channel) => void;
  channels: Set<_MemoryChannel>;
  blackholed: boolean;
}

/**
 * Creates a fresh in-memory network. Pass the same instance to the LB and
 * the servers of one test.
 *
 * @example
 * ```ts
 * import { MemoryTransport } from "./memory.ts";
 * const net = new MemoryTransport();
 * const listener = await net.listen({ host: "10.0.0.1", port: 4243, certPem: "", keyPem: "" }, (ch) => {});
 * const ch = await net.dial({ host: "10.0.0.1", port: 4243, insecure: true, timeoutMs: 100 });
 * ```
 */
export class MemoryTransport implements Transport {
  readonly name = "memory";
  readonly datagrams = true;
  readonly #endpoints = new Map<string, _Endpoint>();
  readonly #dialled = new Set<_MemoryChannel>();
  #nextPort = 40000;

  listen(options: ListenOptions, onChannel: (channel: Channel) => void): Promise<Listener> {
    const port = options.port === 0 ? this.#nextPort++ : options.port;
    const key = formatAddress(options.host, port);
    if (this.#endpoints.has(key)) {
      return Promise.reject(new TransportError("io", `cannot listen on ${key}: address in use`));
    }
    const ep: _Endpoint = {
      host: options.host,
      port,
      onChannel,
      channels: new Set(),
      blackholed: false,
    };
    this.#endpoints.set(key, ep);
    return Promise.resolve({
      host: options.host,
      port,
      get connections() {
        return ep.channels.size;
      },
      close: async (code = 0x12, reason = "server closing") => {
        this.#endpoints.delete(key);
        await Promise.all([...ep.channels].map((ch) => ch.abort(code, reason)));
      },
    });
  }

  async dial(options: DialOptions): Promise<Channel> {
    const key = formatAddress(options.host, options.port);
    const ep = this.#endpoints.get(key);
    if (!ep || ep.blackholed) {
      // Real QUIC gets no answer from a dead port: the handshake times out.
      await _sleep(options.timeoutMs, options.signal);
      if (options.signal?.aborted) throw new TransportError("aborted", `dial ${key} aborted`);
      throw new TransportError(
        "timeout",
        `no QUIC handshake with ${key} within ${options.timeoutMs} ms`,
      );
    }
    await Promise.resolve();
    const client = new _MemoryChannel(key, () => ep.blackholed);
    const server = new _MemoryChannel(`memory-client:${this.#nextPort++}`, () => ep.blackholed);
    client._pair(server);
    server._pair(client);
    this.#dialled.add(client);
    void client.closed.then(() => this.#dialled.delete(client));
    ep.channels.add(server);
    void server.closed.then(() => ep.channels.delete(server));
    queueMicrotask(() => ep.onChannel(server));
    return client;
  }

  /** Drops every byte to and from a listener (true) or lets them pass again (false). */
  blackhole(host: string, port: number, on: boolean): void {
    const ep = this.#endpoints.get(formatAddress(host, port));
    if (ep) ep.blackholed = on;
  }

  stats(): TransportStats {
    return { connections: this.#dialled.size, listeners: this.#endpoints.size };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#dialled].map((ch) => ch.abort(0x12, "transport closed")));
  }
}

/** Datagrams the peer has not read yet, at most; more are dropped, as a full socket drops them. */
const _DATAGRAM_QUEUE = 256;

class _MemoryChannel implements Channel {
  readonly remoteAddress: string;
  readonly closed: Promise<CloseInfo>;
  readonly datagrams: DatagramPort;
  #datagrams: Uint8Array[] = [];
  #datagramWaiter: ((d: Uint8Array | null) => void) | undefined;
  readonly #dropping: () => boolean;
  #peer: _MemoryChannel | undefined;
  #queue: (Uint8Array | null)[] = [];
  #waiter: ((v: Uint8Array | null) => void) | undefined;
  #resolveClosed!: (info: CloseInfo) => void;
  #info: CloseInfo | undefined;
  #finSent = false;
  #finReceived = false;
  #finWaiters: (() => void)[] = [];

  constructor(remote: string, dropping: () => boolean) {
    this.remoteAddress = remote;
    this.#dropping = dropping;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.datagrams = {
      maxSize: 1200,
      send: (data) => {
        if (this.#info || this.#dropping() || data.length > 1200) return;
        const copy = data.slice();
        const peer = this.#peer;
        queueMicrotask(() => peer?._deliverDatagram(copy));
      },
      read: () => {
        if (this.#datagrams.length > 0) return Promise.resolve(this.#datagrams.shift()!);
        if (this.#info) return Promise.resolve(null);
        return new Promise((resolve) => (this.#datagramWaiter = resolve));
      },
    };
  }

  /** A datagram from the peer. */
  _deliverDatagram(data: Uint8Array): void {
    if (this.#info) return;
    const waiter = this.#datagramWaiter;
    this.#datagramWaiter = undefined;
    if (waiter) waiter(data);
    else if (this.#datagrams.length < _DATAGRAM_QUEUE) this.#datagrams.push(data);
  }

  _pair(peer: _MemoryChannel): void {
    this.#peer = peer;
  }

  /** Delivers bytes (or FIN as null) from the peer. */
  _deliver(chunk: Uint8Array | null): void {
    if (this.#info) return;
    if (chunk === null) {
      this.#finReceived = true;
      for (const w of this.#finWaiters.splice(0)) w();
    }
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w(chunk);
    } else {
      this.#queue.push(chunk);
    }
  }

  /** The peer closed the connection. */
  _peerClosed(info: CloseInfo): void {
    this.#end({ ...info, by: "remote" });
  }

  read(): Promise<Uint8Array | null> {
    if (this.#queue.length > 0) return Promise.resolve(this.#queue.shift()!);
    if (this.#info || this.#finReceived) return Promise.resolve(null);
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  async write(data: Uint8Array): Promise<void> {
    await Promise.resolve();
    if (this.#info || this.#finSent) {
      throw new TransportError("closed", `cannot write to ${this.remoteAddress}: closed`);
    }
    if (this.#dropping()) return;
    const copy = data.slice();
    const peer = this.#peer;
    queueMicrotask(() => peer?._deliver(copy));
  }

  async close(code: number, reason: string, lingerMs = 250): Promise<void> {
    if (this.#info) return;
    if (!this.#finSent) {
      this.#finSent = true;
      if (!this.#dropping()) {
        const peer = this.#peer;
        queueMicrotask(() => peer?._deliver(null));
      }
    }
    if (!this.#finReceived && lingerMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, lingerMs);
        this.#finWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
        void this.closed.then(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.abort(code, reason);
  }

  abort(code: number, reason: string): Promise<void> {
    if (this.#info) return Promise.resolve();
    const info: CloseInfo = { by: "local", code, reason };
    this.#end(info);
    if (!this.#dropping()) {
      const peer = this.#peer;
      queueMicrotask(() => peer?._peerClosed(info));
    }
    return Promise.resolve();
  }

  #end(info: CloseInfo): void {
    if (this.#info) return;
    this.#info = info;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w(null);
    }
    this.#datagramWaiter?.(null);
    this.#datagramWaiter = undefined;
    this.#datagrams = [];
    for (const w of this.#finWaiters.splice(0)) w();
    this.#resolveClosed(info);
  }
}

function _sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
