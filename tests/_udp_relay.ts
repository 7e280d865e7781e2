/**
 * An in-process, fault-injecting UDP relay for tests: it sits between a QUIC
 * client (the load balancer) and a QUIC server on loopback and can drop,
 * delay, jitter, duplicate and reorder datagrams, or cut the path entirely.
 *
 * ```ts
 * import { UdpRelay } from "./_udp_relay.ts";
 * const serverPort = 4243;
 * const relay = await UdpRelay.start({ host: "127.0.0.1", port: serverPort });
 * relay.set({ dropPercent: 10, delayMs: 20 });
 * // ... dial relay.host:relay.port instead of the server ...
 * await relay.close();
 * ```
 *
 * @module
 */

import dgram from "node:dgram";
import { isIPv6 } from "node:net";
import { mulberry32 } from "./_helpers.ts";

/**
 * Faults applied to each datagram, in both directions. Every field is
 * optional; an omitted field means that fault is off.
 */
export interface RelayFaults {
  /** Chance (0..100) that a datagram is dropped; each datagram is rolled independently. */
  dropPercent?: number;
  /** Fixed extra one-way delay in milliseconds. */
  delayMs?: number;
  /** Extra random one-way delay of 0..jitterMs milliseconds; this reorders datagrams naturally. */
  jitterMs?: number;
  /** Chance (0..100) that a datagram is sent twice. */
  duplicatePercent?: number;
  /**
   * Chance (0..100) that a datagram is held back and sent right after the
   * next datagram in the same direction. A held datagram that nothing
   * overtakes within 100 ms is sent anyway (and not counted as reordered).
   */
  reorderPercent?: number;
  /** Drop everything in both directions (a partition); `false` or omitted heals it. */
  blackhole?: boolean;
}

/** Counters of what the relay has done since it started. */
export interface RelayStats {
  /** Datagrams handed to a socket for sending; each copy of a duplicated datagram counts. */
  forwarded: number;
  /** Datagrams discarded by `dropPercent` or `blackhole`. */
  dropped: number;
  /** Datagrams that were sent twice (counted once here, twice in `forwarded`). */
  duplicated: number;
  /** Datagrams that were held back and sent after a later one. */
  reordered: number;
  /** Datagrams given an extra delay greater than zero (counted once per datagram). */
  delayed: number;
  /** Client addresses currently mapped, each to its own upstream socket. */
  clients: number;
}

/** Where the relay forwards client datagrams. */
export interface RelayTarget {
  /** IP address (or name) of the server, normally `127.0.0.1`. */
  host: string;
  /** UDP port of the server. */
  port: number;
}

/** Options of {@linkcode UdpRelay.start}. */
export interface UdpRelayOptions {
  /** Seed of the deterministic pseudo-random fault decisions; defaults to 1. */
  seed?: number;
  /** Address the relay listens on; defaults to `127.0.0.1`. */
  host?: string;
}

/** Upstream sockets of clients silent for this long are closed. */
const IDLE_TIMEOUT_MS = 60_000;
/** How often idle clients are looked for. */
const SWEEP_INTERVAL_MS = 10_000;
/** Longest time a datagram is held back for reordering. */
const REORDER_MAX_HOLD_MS = 100;

type TimerId = ReturnType<typeof setTimeout>;

/** A datagram waiting for a later one to overtake it. */
interface Held {
  data: Uint8Array;
  copies: number;
  delay: number;
  timer: TimerId;
}

/** One direction of one client's traffic, with its own random stream. */
interface Flow {
  random: () => number;
  held: Held | undefined;
  deliver: (data: Uint8Array) => void;
}

/** A client address and the upstream socket that stands for it at the target. */
interface Client {
  address: string;
  port: number;
  upstream: dgram.Socket;
  sender: OrderedSender;
  bound: boolean;
  closed: boolean;
  /** Datagrams for the target sent before the upstream socket was bound. */
  pending: Uint8Array[];
  lastActive: number;
  toTarget: Flow;
  toClient: Flow;
}

/** Derives a flow's seed from the relay seed, the client's arrival order and the direction. */
function flowSeed(seed: number, clientIndex: number, direction: 0 | 1): number {
  let h = (seed ^ Math.imul(clientIndex + 1, 0x9e3779b1) ^ Math.imul(direction + 1, 0x85ebca6b)) >>>
    0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** True with probability `percent`/100 for a roll in [0, 1). */
function hit(roll: number, percent: number | undefined): boolean {
  return percent !== undefined && roll * 100 < percent;
}

function checkPercent(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value <= 100)) {
    throw new RangeError(`${name} must be between 0 and 100, got ${value}`);
  }
}

function checkDuration(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && Number.isFinite(value))) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
  }
}

/**
 * Sends datagrams on one socket strictly in order and without ever throwing.
 *
 * Deno's node:dgram completes a burst of `send()` calls in reverse order
 * (the last datagram leaves first), so each datagram is handed to the socket
 * only once the previous send has completed. Errors (closed socket, refused,
 * unreachable) are ignored: the datagram is lost, as on a network.
 */
class OrderedSender {
  readonly #socket: dgram.Socket;
  readonly #queue: { data: Uint8Array; port: number; host: string }[] = [];
  #busy = false;

  constructor(socket: dgram.Socket) {
    this.#socket = socket;
  }

  send(data: Uint8Array, port: number, host: string): void {
    this.#queue.push({ data, port, host });
    if (!this.#busy) this.#next();
  }

  /** Forgets queued datagrams (the socket is closing). */
  clear(): void {
    this.#queue.length = 0;
  }

  #next(): void {
    const item = this.#queue.shift();
    if (item === undefined) {
      this.#busy = false;
      return;
    }
    this.#busy = true;
    try {
      this.#socket.send(item.data, item.port, item.host, () => this.#next());
    } catch {
      // Not running any more: nothing queued can be sent.
      this.#queue.length = 0;
      this.#busy = false;
    }
  }
}

/** Closes a socket and resolves once it is closed; never rejects. */
function closeQuietly(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // Already closed.
    }
  });
}

/**
 * A NAT-like UDP relay with fault injection, for tests on loopback.
 *
 * It listens on one socket. Each distinct client address (ip:port) gets its
 * own upstream socket, bound to an ephemeral loopback port, that talks to the
 * target; so the target sees one distinct address per client, and its
 * replies go back to that client from the listening socket.
 *
 * Faults ({@linkcode RelayFaults}) apply per datagram in both directions.
 * Decisions come from a seeded PRNG with one stream per client and direction
 * (clients numbered in order of first datagram), and every datagram consumes
 * the same number of rolls whatever the settings: for a given seed, the fate
 * of the n-th datagram of a flow is reproducible. Without faults, datagrams
 * keep their order in each direction. Upstream sockets of clients idle for
 * 60 s are closed. Send errors are swallowed.
 */
export class UdpRelay {
  /** Address the relay listens on. */
  readonly host: string;
  /** Port clients dial. */
  readonly port: number;

  readonly #target: RelayTarget;
  readonly #upstreamHost: string;
  readonly #seed: number;
  readonly #socket: dgram.Socket;
  readonly #sender: OrderedSender;
  readonly #clients = new Map<string, Client>();
  readonly #timers = new Set<TimerId>();
  readonly #sweep: ReturnType<typeof setInterval>;
  #clientCount = 0;
  #faults: RelayFaults = {};
  #closing: Promise<void> | undefined;
  readonly #stats = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0, delayed: 0 };

  private constructor(target: RelayTarget, host: string, socket: dgram.Socket, seed: number) {
    this.#target = { host: target.host, port: target.port };
    this.#upstreamHost = isIPv6(target.host) ? "::1" : "127.0.0.1";
    this.#seed = seed;
    this.#socket = socket;
    this.#sender = new OrderedSender(socket);
    this.host = host;
    this.port = socket.address().port;
    socket.on("error", () => {
      // Swallowed: a relay on a lossy path must not crash the test.
    });
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      if (this.#closing) return;
      const client = this.#clientFor(rinfo.address, rinfo.port);
      client.lastActive = Date.now();
      this.#process(client.toTarget, new Uint8Array(msg));
    });
    this.#sweep = setInterval(() => this.#closeIdleClients(), SWEEP_INTERVAL_MS);
  }

  /**
   * Starts a relay to `target`, listening on `options.host` (default
   * `127.0.0.1`) at an ephemeral port. Rejects if the listening socket cannot
   * be bound.
   */
  static async start(target: RelayTarget, options: UdpRelayOptions = {}): Promise<UdpRelay> {
    if (!Number.isInteger(target.port) || target.port < 1 || target.port > 65535) {
      throw new RangeError(`target port must be 1..65535, got ${target.port}`);
    }
    const host = options.host ?? "127.0.0.1";
    const socket = dgram.createSocket(isIPv6(host) ? "udp6" : "udp4");
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error) => {
          socket.off("listening", onListening);
          reject(error);
        };
        const onListening = () => {
          socket.off("error", onError);
          resolve();
        };
        socket.once("error", onError);
        socket.once("listening", onListening);
        socket.bind(0, host);
      });
    } catch (error) {
      await closeQuietly(socket);
      throw error;
    }
    return new UdpRelay(target, host, socket, options.seed ?? 1);
  }

  /**
   * Replaces the fault settings; omitted fields are off. Takes effect for
   * datagrams arriving from now on (delayed datagrams already in flight
   * are still delivered). Throws a RangeError for out-of-range values.
   */
  set(faults: RelayFaults): void {
    checkPercent("dropPercent", faults.dropPercent);
    checkPercent("duplicatePercent", faults.duplicatePercent);
    checkPercent("reorderPercent", faults.reorderPercent);
    checkDuration("delayMs", faults.delayMs);
    checkDuration("jitterMs", faults.jitterMs);
    this.#faults = { ...faults };
  }

  /** A snapshot of the counters. */
  get stats(): RelayStats {
    return { ...this.#stats, clients: this.#clients.size };
  }

  /**
   * Closes every socket and clears every pending timer; datagrams still
   * delayed or held are discarded. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#sweep);
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      this.#sender.clear();
      const sockets = [this.#socket];
      for (const client of this.#clients.values()) {
        client.closed = true;
        client.sender.clear();
        sockets.push(client.upstream);
      }
      this.#clients.clear();
      await Promise.all(sockets.map(closeQuietly));
    })();
    return this.#closing;
  }

  #clientFor(address: string, port: number): Client {
    const key = `${address}|${port}`;
    const existing = this.#clients.get(key);
    if (existing) return existing;

    const index = this.#clientCount++;
    const upstream = dgram.createSocket(this.#upstreamHost === "::1" ? "udp6" : "udp4");
    const sender = new OrderedSender(upstream);
    const client: Client = {
      address,
      port,
      upstream,
      sender,
      bound: false,
      closed: false,
      pending: [],
      lastActive: Date.now(),
      toTarget: {
        random: mulberry32(flowSeed(this.#seed, index, 0)),
        held: undefined,
        deliver: (data) => {
          if (client.closed) return;
          if (client.bound) sender.send(data, this.#target.port, this.#target.host);
          else client.pending.push(data);
        },
      },
      toClient: {
        random: mulberry32(flowSeed(this.#seed, index, 1)),
        held: undefined,
        deliver: (data) => this.#sender.send(data, port, address),
      },
    };
    upstream.on("error", () => {
      // A failed bind leaves the client unusable: forget it so the next datagram retries.
      if (!client.bound) this.#dropClient(key, client);
    });
    upstream.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      if (this.#closing || client.closed || rinfo.port !== this.#target.port) return;
      client.lastActive = Date.now();
      this.#process(client.toClient, new Uint8Array(msg));
    });
    upstream.bind(0, this.#upstreamHost, () => {
      if (client.closed) return;
      client.bound = true;
      for (const data of client.pending.splice(0)) {
        sender.send(data, this.#target.port, this.#target.host);
      }
    });
    this.#clients.set(key, client);
    return client;
  }

  #dropClient(key: string, client: Client): void {
    if (client.closed) return;
    client.closed = true;
    client.pending.length = 0;
    client.sender.clear();
    for (const flow of [client.toTarget, client.toClient]) {
      if (flow.held) this.#clearTimer(flow.held.timer);
      flow.held = undefined;
    }
    if (this.#clients.get(key) === client) this.#clients.delete(key);
    void closeQuietly(client.upstream);
  }

  #closeIdleClients(): void {
    const cutoff = Date.now() - IDLE_TIMEOUT_MS;
    for (const [key, client] of this.#clients) {
      if (client.lastActive < cutoff) this.#dropClient(key, client);
    }
  }

  /** Applies the faults to one datagram arriving on `flow`. */
  #process(flow: Flow, data: Uint8Array): void {
    const faults = this.#faults;
    // Always four rolls, so one fault's settings never shift another's decisions.
    const dropRoll = flow.random();
    const duplicateRoll = flow.random();
    const reorderRoll = flow.random();
    const jitterRoll = flow.random();

    if (faults.blackhole === true || hit(dropRoll, faults.dropPercent)) {
      this.#stats.dropped++;
      return;
    }
    const copies = hit(duplicateRoll, faults.duplicatePercent) ? 2 : 1;
    if (copies === 2) this.#stats.duplicated++;
    const delay = (faults.delayMs ?? 0) + jitterRoll * (faults.jitterMs ?? 0);

    const held = flow.held;
    if (held === undefined && hit(reorderRoll, faults.reorderPercent)) {
      const timer = this.#after(REORDER_MAX_HOLD_MS, () => {
        if (flow.held?.timer !== timer) return;
        flow.held = undefined;
        this.#transmit(flow, data, copies, delay);
      });
      flow.held = { data, copies, delay, timer };
      return;
    }
    this.#transmit(flow, data, copies, delay);
    if (held !== undefined) {
      flow.held = undefined;
      this.#clearTimer(held.timer);
      this.#stats.reordered++;
      this.#transmit(flow, held.data, held.copies, held.delay);
    }
  }

  #transmit(flow: Flow, data: Uint8Array, copies: number, delay: number): void {
    const send = () => {
      for (let i = 0; i < copies; i++) {
        this.#stats.forwarded++;
        flow.deliver(data);
      }
    };
    if (delay > 0) {
      this.#stats.delayed++;
      this.#after(delay, send);
    } else {
      send();
    }
  }

  /** A tracked timeout: close() clears whatever has not fired. */
  #after(ms: number, fn: () => void): TimerId {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#closing) fn();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  #clearTimer(timer: TimerId): void {
    clearTimeout(timer);
    this.#timers.delete(timer);
  }
}
