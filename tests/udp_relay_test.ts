/**
 * Tests of the fault-injecting UDP relay (`tests/_udp_relay.ts`) with plain
 * node:dgram peers, no QUIC. Timing assertions are lower bounds with
 * generous upper bounds only.
 */

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { sleep } from "./_helpers.ts";
import { UdpRelay } from "./_udp_relay.ts";

// --- helpers -----------------------------------------------------------------

/**
 * Deno 2.9 turns the sanitizers off unless asked; every test here asks, so a
 * leaked socket, receive op or timer fails the test.
 */
const SANITIZE = { sanitizeOps: true, sanitizeResources: true } as const;

const HOST = "127.0.0.1";

interface Received {
  data: Uint8Array;
  port: number;
  at: number;
}

/** A bound loopback UDP socket that records what it receives, optionally echoing it. */
class Peer {
  readonly received: Received[] = [];
  readonly port: number;
  #closed: Promise<void> | undefined;
  #sending: Promise<void> = Promise.resolve();

  private constructor(readonly socket: dgram.Socket, echo: boolean) {
    this.port = socket.address().port;
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      const data = new Uint8Array(msg);
      this.received.push({ data, port: rinfo.port, at: performance.now() });
      if (echo) void this.send(data, rinfo.port);
    });
  }

  static async open(options: { echo?: boolean; port?: number } = {}): Promise<Peer> {
    const socket = dgram.createSocket("udp4");
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(options.port ?? 0, HOST, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.on("error", () => {});
    return new Peer(socket, options.echo ?? false);
  }

  /**
   * Sends to `port` on loopback, after every earlier send has completed:
   * Deno's node:dgram completes a burst of sends in reverse order.
   */
  send(data: Uint8Array, port: number): Promise<void> {
    this.#sending = this.#sending.then(() =>
      new Promise<void>((resolve) => {
        try {
          this.socket.send(data, port, HOST, () => resolve());
        } catch {
          resolve(); // Closed.
        }
      })
    );
    return this.#sending;
  }

  /** The sequence numbers (see {@linkcode seq}) received, in arrival order. */
  seqs(): number[] {
    return this.received.map((r) => readSeq(r.data));
  }

  /** Closes the socket; safe to call more than once. */
  close(): Promise<void> {
    this.#closed ??= new Promise((resolve) => this.socket.close(() => resolve()));
    return this.#closed;
  }
}

/** A 4-byte datagram carrying `n`, padded with `pad` extra bytes. */
function seq(n: number, pad = 0): Uint8Array {
  const data = new Uint8Array(4 + pad);
  new DataView(data.buffer).setUint32(0, n);
  return data;
}

function readSeq(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
}

/** Polls `condition` until it holds; fails after `timeoutMs`. */
async function waitUntil(what: string, condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Datagrams the relay has taken in (sent on, or dropped), counting each duplicate once. */
function processed(relay: UdpRelay): number {
  const s = relay.stats;
  return s.forwarded - s.duplicated + s.dropped;
}

/** Runs `fn` with a relay in front of a fresh target, closing everything afterwards. */
async function withRelay(
  options: { echo?: boolean; seed?: number },
  fn: (relay: UdpRelay, target: Peer) => Promise<void>,
): Promise<void> {
  const target = await Peer.open({ echo: options.echo ?? false });
  const relay = await UdpRelay.start(
    { host: HOST, port: target.port },
    options.seed === undefined ? {} : { seed: options.seed },
  );
  try {
    await fn(relay, target);
  } finally {
    await relay.close();
    await target.close();
  }
}

/** Runs `fn` with `n` client peers, closing them afterwards. */
async function withClients(n: number, fn: (clients: Peer[]) => Promise<void>): Promise<void> {
  const clients: Peer[] = [];
  try {
    for (let i = 0; i < n; i++) clients.push(await Peer.open());
    await fn(clients);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

function one<T>(items: readonly T[]): T {
  const [item] = items;
  assert.ok(item !== undefined && items.length === 1, `expected one item, got ${items.length}`);
  return item;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

// --- forwarding --------------------------------------------------------------

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.start() forwards datagrams both ways unchanged",
  async fn() {
    await withRelay({ echo: true }, async (relay, target) => {
      assert.equal(relay.host, "127.0.0.1");
      assert.ok(relay.port > 0 && relay.port !== target.port);
      await withClients(1, async ([client]) => {
        assert.ok(client);
        const payloads = [0, 1, 100, 1200, 1472].map((size, i) => {
          const data = new Uint8Array(size);
          for (let j = 0; j < size; j++) data[j] = (j * 31 + i * 7) & 0xff;
          return data;
        });
        for (const data of payloads) client.send(data, relay.port);
        await waitUntil("echoes", () => client.received.length === payloads.length);

        const key = (d: Uint8Array) => `${d.length}:${d.join(",")}`;
        assert.deepEqual(target.received.map((r) => key(r.data)).sort(), payloads.map(key).sort());
        assert.deepEqual(client.received.map((r) => key(r.data)).sort(), payloads.map(key).sort());
        // NAT-like: the target sees the upstream socket, the client sees the relay.
        for (const r of target.received) {
          assert.notEqual(r.port, client.port);
          assert.notEqual(r.port, relay.port);
        }
        for (const r of client.received) assert.equal(r.port, relay.port);
        assert.deepEqual(relay.stats, {
          forwarded: 10,
          dropped: 0,
          duplicated: 0,
          reordered: 0,
          delayed: 0,
          clients: 1,
        });
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay gives each client address its own upstream address at the target",
  async fn() {
    await withRelay({ echo: true }, async (relay, target) => {
      await withClients(3, async (clients) => {
        clients.forEach((c, i) => c.send(seq(i), relay.port));
        await waitUntil("echoes", () => clients.every((c) => c.received.length === 1));

        const upstreamPorts = new Map(target.received.map((r) => [readSeq(r.data), r.port]));
        assert.equal(new Set(upstreamPorts.values()).size, 3, "one upstream port per client");
        for (const port of upstreamPorts.values()) {
          assert.ok(!clients.some((c) => c.port === port) && port !== relay.port);
        }
        // Each reply reached only the client that sent the request.
        clients.forEach((c, i) => assert.deepEqual(c.seqs(), [i]));
        assert.equal(relay.stats.clients, 3);

        // A client keeps its upstream address.
        const first = clients[0];
        assert.ok(first);
        first.send(seq(0), relay.port);
        await waitUntil("second echo", () => first.received.length === 2);
        const last = target.received.at(-1);
        assert.equal(last?.port, upstreamPorts.get(0));
        assert.equal(relay.stats.clients, 3);
      });
    });
  },
});

// --- loss --------------------------------------------------------------------

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with dropPercent 100 drops every datagram and 0 drops none",
  async fn() {
    await withRelay({}, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ dropPercent: 100 });
        for (const n of range(50)) client.send(seq(n), relay.port);
        await waitUntil("50 drops", () => relay.stats.dropped === 50);
        await sleep(20);
        assert.equal(target.received.length, 0);
        assert.equal(relay.stats.forwarded, 0);

        relay.set({ dropPercent: 0 });
        for (const n of range(50)) client.send(seq(n), relay.port);
        await waitUntil("50 arrivals", () => target.received.length === 50);
        assert.deepEqual(target.seqs().sort((a, b) => a - b), range(50));
        assert.equal(relay.stats.dropped, 50);
        assert.equal(relay.stats.forwarded, 50);
      });
    });
  },
});

/** Sends 2000 numbered datagrams at 30% loss; returns the numbers that arrived. */
async function deliveredAtThirtyPercent(seed: number): Promise<number[]> {
  let delivered: number[] = [];
  await withRelay({ seed }, async (relay, target) => {
    await withClients(1, async ([client]) => {
      assert.ok(client);
      relay.set({ dropPercent: 30 });
      // Batches keep socket buffers from overflowing, so only the relay loses datagrams.
      for (let sent = 0; sent < 2000;) {
        for (let i = 0; i < 100; i++) client.send(seq(sent++), relay.port);
        await waitUntil(`relay to take ${sent}`, () => processed(relay) === sent);
      }
      await waitUntil("arrivals", () => target.received.length === relay.stats.forwarded);
      assert.equal(relay.stats.dropped + relay.stats.forwarded, 2000);
      delivered = target.seqs();
    });
  });
  return delivered;
}

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with dropPercent 30 drops about 30% and repeats exactly for a seed",
  async fn() {
    const a = await deliveredAtThirtyPercent(7);
    const dropped = 2000 - a.length;
    assert.ok(dropped >= 400 && dropped <= 800, `dropped ${dropped} of 2000`);
    assert.deepEqual(a, [...a].sort((x, y) => x - y), "loss alone keeps order");

    assert.deepEqual(await deliveredAtThirtyPercent(7), a, "same seed, same losses");
    assert.notDeepEqual(await deliveredAtThirtyPercent(8), a, "another seed, other losses");
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with blackhole drops every datagram in both directions until healed",
  async fn() {
    await withRelay({}, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        client.send(seq(0), relay.port);
        await waitUntil("first arrival", () => target.received.length === 1);
        const upstreamPort = one(target.received).port;

        relay.set({ blackhole: true });
        for (const n of range(5)) client.send(seq(1 + n), relay.port);
        await waitUntil("5 drops toward the target", () => relay.stats.dropped === 5);
        for (const n of range(5)) target.send(seq(100 + n), upstreamPort);
        await waitUntil("5 drops toward the client", () => relay.stats.dropped === 10);
        await sleep(20);
        assert.equal(target.received.length, 1);
        assert.equal(client.received.length, 0);

        relay.set({ blackhole: false });
        client.send(seq(6), relay.port);
        target.send(seq(200), upstreamPort);
        await waitUntil("traffic after healing", () => {
          return target.received.length === 2 && client.received.length === 1;
        });
        assert.deepEqual(target.seqs(), [0, 6]);
        assert.deepEqual(client.seqs(), [200]);
        assert.equal(relay.stats.dropped, 10);
      });
    });
  },
});

// --- duplication, delay, reordering ------------------------------------------

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with duplicatePercent 100 delivers each datagram twice in each direction",
  async fn() {
    await withRelay({ echo: true }, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ duplicatePercent: 100 });
        for (const n of range(10)) client.send(seq(n), relay.port);
        // Each request arrives twice, each of its two echoes arrives twice.
        await waitUntil("40 echoes", () => client.received.length === 40);
        await sleep(20);
        const count = (seqs: number[], n: number) => seqs.filter((s) => s === n).length;
        for (const n of range(10)) {
          assert.equal(count(target.seqs(), n), 2, `target copies of ${n}`);
          assert.equal(count(client.seqs(), n), 4, `client copies of ${n}`);
        }
        assert.equal(relay.stats.duplicated, 10 + 20);
        assert.equal(relay.stats.forwarded, 20 + 40);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with delayMs adds at least that delay in each direction",
  async fn() {
    await withRelay({ echo: true }, async (relay) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        const delayMs = 100;
        relay.set({ delayMs });
        const start = performance.now();
        for (const n of range(3)) client.send(seq(n), relay.port);
        await waitUntil("echoes", () => client.received.length === 3);
        for (const r of client.received) {
          const rtt = r.at - start;
          // Timers may round by a millisecond; the upper bound is only a sanity check.
          assert.ok(rtt >= 2 * delayMs - 4, `round trip ${rtt} ms`);
          assert.ok(rtt < 2 * delayMs + 1500, `round trip ${rtt} ms`);
        }
        assert.deepEqual(client.seqs(), [0, 1, 2], "a fixed delay keeps order");
        assert.equal(relay.stats.delayed, 6);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with jitterMs delays by at least delayMs and reorders a burst",
  async fn() {
    await withRelay({}, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ delayMs: 20, jitterMs: 60 });
        const start = performance.now();
        for (const n of range(50)) client.send(seq(n), relay.port);
        await waitUntil("50 arrivals", () => target.received.length === 50);
        for (const r of target.received) assert.ok(r.at - start >= 20 - 2, `${r.at - start} ms`);
        const seqs = target.seqs();
        assert.deepEqual([...seqs].sort((a, b) => a - b), range(50));
        assert.notDeepEqual(seqs, range(50), "60 ms of jitter over a burst reorders it");
        assert.equal(relay.stats.delayed, 50);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with reorderPercent 100 swaps each pair of datagrams and counts them",
  async fn() {
    await withRelay({}, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ reorderPercent: 100 });
        for (const n of range(20)) client.send(seq(n), relay.port);
        await waitUntil("20 arrivals", () => target.received.length === 20);
        // Each datagram is held and the next one overtakes it: 1, 0, 3, 2, ...
        assert.deepEqual(target.seqs(), range(20).map((n) => n ^ 1));
        assert.equal(relay.stats.reordered, 10);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with reorderPercent 50 reorders some datagrams and loses none",
  async fn() {
    await withRelay({ seed: 3 }, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ reorderPercent: 50 });
        for (const n of range(200)) client.send(seq(n), relay.port);
        await waitUntil("200 arrivals", () => target.received.length === 200);
        const seqs = target.seqs();
        assert.deepEqual([...seqs].sort((a, b) => a - b), range(200));
        const inversions = seqs.filter((s, i) => i > 0 && s < (seqs[i - 1] ?? 0)).length;
        assert.ok(inversions > 0, "out of order");
        assert.equal(relay.stats.reordered, inversions);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() with reorderPercent still delivers a held datagram nothing overtakes",
  async fn() {
    await withRelay({}, async (relay, target) => {
      await withClients(1, async ([client]) => {
        assert.ok(client);
        relay.set({ reorderPercent: 100 });
        client.send(seq(42), relay.port);
        await waitUntil("the held datagram", () => target.received.length === 1);
        assert.deepEqual(target.seqs(), [42]);
        assert.equal(relay.stats.reordered, 0);
        assert.equal(relay.stats.forwarded, 1);
      });
    });
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.set() rejects out-of-range values and keeps the previous faults",
  async fn() {
    await withRelay({}, async (relay, target) => {
      relay.set({ dropPercent: 100 });
      assert.throws(() => relay.set({ dropPercent: 101 }), RangeError);
      assert.throws(() => relay.set({ duplicatePercent: -1 }), RangeError);
      assert.throws(() => relay.set({ reorderPercent: Number.NaN }), RangeError);
      assert.throws(() => relay.set({ delayMs: -5 }), RangeError);
      assert.throws(() => relay.set({ jitterMs: Infinity }), RangeError);
      await withClients(1, async ([client]) => {
        assert.ok(client);
        client.send(seq(1), relay.port);
        await waitUntil("the drop", () => relay.stats.dropped === 1);
        assert.equal(target.received.length, 0);
      });
    });
  },
});

// --- errors and shutdown ------------------------------------------------------

Deno.test({
  ...SANITIZE,
  name: "UdpRelay swallows send errors when either side has gone away",
  async fn() {
    let target = await Peer.open({ echo: true });
    const targetPort = target.port;
    const relay = await UdpRelay.start({ host: HOST, port: targetPort });
    try {
      await withClients(2, async ([client, doomed]) => {
        assert.ok(client && doomed);
        client.send(seq(1), relay.port);
        await waitUntil("first echo", () => client.received.length === 1);

        // The target goes away: datagrams toward it vanish quietly.
        await target.close();
        for (const n of range(5)) client.send(seq(10 + n), relay.port);
        await waitUntil("relay to take 5 more", () => relay.stats.forwarded === 2 + 5);
        await sleep(30);

        // It comes back on the same port: the same mapping works again.
        target = await Peer.open({ echo: true, port: targetPort });
        client.send(seq(2), relay.port);
        await waitUntil("echo after restart", () => client.received.length === 2);
        assert.deepEqual(client.seqs(), [1, 2]);

        // A client goes away: replies toward it vanish quietly.
        doomed.send(seq(3), relay.port);
        await waitUntil("doomed's request", () => target.received.length === 2);
        const doomedUpstream = target.received.at(-1)?.port;
        assert.ok(doomedUpstream !== undefined);
        await waitUntil("doomed's echo", () => doomed.received.length === 1);
        await doomed.close();
        const before = relay.stats.forwarded;
        for (const n of range(5)) target.send(seq(20 + n), doomedUpstream);
        await waitUntil("relay to send 5 more", () => relay.stats.forwarded === before + 5);
        await sleep(30);
        assert.equal(relay.stats.clients, 2);
      });
    } finally {
      await relay.close();
      await target.close();
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "UdpRelay.close() closes every socket and clears every pending timer",
  async fn() {
    const target = await Peer.open();
    const relay = await UdpRelay.start({ host: HOST, port: target.port });
    const upstreamPorts: number[] = [];
    try {
      await withClients(2, async (clients) => {
        clients.forEach((c, i) => c.send(seq(i), relay.port));
        await waitUntil("both clients mapped", () => target.received.length === 2);
        upstreamPorts.push(...target.received.map((r) => r.port));

        // Leave datagrams delayed and held inside the relay.
        relay.set({ delayMs: 10_000, reorderPercent: 100 });
        clients.forEach((c, i) => {
          c.send(seq(10 + i), relay.port);
          c.send(seq(20 + i), relay.port);
          c.send(seq(30 + i), relay.port);
        });
        await waitUntil("pending datagrams", () => relay.stats.delayed === 4);
        // Two delayed per client plus one held per client remain pending.
        await relay.close();
        await relay.close(); // Idempotent.
        assert.equal(relay.stats.clients, 0);
      });
    } finally {
      await relay.close();
      await target.close();
    }
    assert.equal(target.received.length, 2, "nothing pending was delivered");

    // Every port the relay held can be bound again.
    for (const port of [relay.port, ...upstreamPorts]) {
      const probe = await Peer.open({ port });
      await probe.close();
    }
  },
});
