/**
 * One LB's session with the fleet's etcd: a lease with its member key,
 * renewed every third of the TTL; a listing of every key under the prefix
 * and a watch from the next revision; and how long since etcd last
 * answered. What the keys mean is the {@linkcode Fleet}'s (`fleet.ts`).
 *
 * A join (lease, member key, listing) or a listing runs beside the
 * renewals, one at a time: on a slow etcd the LB does not ask for a new
 * lease at every renewal tick, and a listing of thousands of servers that
 * takes longer than a lease does not hold renewals back.
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import { settlesWithin } from "../util/timeout.ts";
import type { FleetKeys } from "./keys.ts";
import type { KeyValue, Store, StoreError, WatchEvent, Watching } from "./store.ts";

/** What a {@linkcode FleetSession} tells its fleet. */
export interface SessionEvents {
  /** A new lease is about to be taken: whatever the old one held is gone. */
  leaseGone(): void;
  /**
   * Every key under the prefix (the watch follows from the next revision);
   * `joined`: the listing of a new lease.
   */
  listed(kvs: readonly KeyValue[], joined: boolean): void;
  /** Changes the watch saw, in revision order. */
  changed(events: WatchEvent[]): void;
  /** etcd stopped answering for longer than a lease, or answered again. */
  staleChanged(): void;
  /** A renewal went through: write what waited for etcd. */
  renewed(): Promise<void>;
}

/** Options of {@linkcode FleetSession}. */
export interface FleetSessionOptions {
  store: Store;
  keys: FleetKeys;
  lbId: string;
  ttlSec: number;
  /** What the member key says about this LB. */
  info: Record<string, string>;
  log: Logger;
  now: () => number;
  isoNow: () => string;
  events: SessionEvents;
}

/**
 * The lease, the listing and the watch of one LB.
 *
 * @example
 * ```ts
 * import { FleetSession } from "./session.ts";
 * import { FleetKeys } from "./keys.ts";
 * import { MemoryStore } from "./memory_store.ts";
 * import { silentLogger } from "../util/log.ts";
 * const session = new FleetSession({
 *   store: new MemoryStore(),
 *   keys: new FleetKeys("/qhcp/"),
 *   lbId: "lb-a",
 *   ttlSec: 3,
 *   info: {},
 *   log: silentLogger,
 *   now: Date.now,
 *   isoNow: () => new Date().toISOString(),
 *   events: {
 *     leaseGone: () => {},
 *     listed: (kvs, joined) => console.log(kvs.length, "keys", joined ? "(joined)" : ""),
 *     changed: (events) => console.log(events.length, "changes"),
 *     staleChanged: () => {},
 *     renewed: () => Promise.resolve(),
 *   },
 * });
 * await session.start();
 * await session.stop();
 * ```
 */
export class FleetSession {
  readonly #o: FleetSessionOptions;
  #lease: string | undefined;
  #listed = false;
  #watching: Watching | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** A renewal in flight. */
  #renewing = false;
  /** A join or a listing in flight. */
  #syncing: Promise<void> | undefined;
  /** When etcd last answered. */
  #contact = 0;
  #staleLogged = false;
  #stopped = false;

  constructor(options: FleetSessionOptions) {
    this.#o = options;
  }

  /** The lease this LB's keys live under, once joined. */
  get lease(): string | undefined {
    return this.#lease;
  }

  /**
   * How long since etcd last answered, ms, once that is longer than a lease
   * (what the fleet shows may be out of date); undefined while in touch.
   */
  get staleMs(): number | undefined {
    const since = this.#o.now() - this.#contact;
    return since > this.#o.ttlSec * 1000 ? since : undefined;
  }

  /**
   * Joins (a lease, the member key, the listing, the watch) and renews from
   * then on. When etcd cannot be reached yet, it says so and keeps trying at
   * every renewal instead of failing.
   */
  async start(): Promise<void> {
    try {
      await this.#join();
    } catch (e) {
      this.#o.log.warn("etcd unreachable at start; joining the fleet when it answers", {
        error: (e as Error).message,
      });
    }
    this.#timer = setInterval(
      () => void this.#renew(),
      Math.max(200, (this.#o.ttlSec * 1000) / 3),
    );
  }

  /** Stops renewing and watching, and revokes the lease so that the others take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#watching?.close();
    await this.#syncing;
    // Bounded: with etcd away the lease just expires on its own.
    if (this.#lease) {
      await settlesWithin(this.#o.store.revoke(this.#lease).catch(() => {}), 1000);
    }
  }

  /** etcd answered. */
  contacted(): void {
    this.#contact = this.#o.now();
    if (this.#staleLogged) {
      this.#staleLogged = false;
      this.#o.log.info("etcd reachable again");
      this.#o.events.staleChanged();
    }
  }

  /** etcd did not answer: once that has lasted a lease, what is served is marked stale. */
  unreachable(e: Error): void {
    const ms = this.staleMs;
    if (ms !== undefined && !this.#staleLogged) {
      this.#staleLogged = true;
      // Checking goes on; what is served from etcd is marked stale.
      this.#o.log.warn("etcd unreachable: serving the last known fleet verdicts, marked stale", {
        error: e.message,
        since_ms: ms,
      });
      this.#o.events.staleChanged();
    }
  }

  async #join(): Promise<void> {
    const { store, keys } = this.#o;
    this.#lease = undefined;
    this.#listed = false;
    this.#o.events.leaseGone();
    const lease = await store.grant(this.#o.ttlSec);
    await store.put(
      keys.member(this.#o.lbId),
      JSON.stringify({ ...this.#o.info, since: this.#o.isoNow() }),
      lease,
    );
    this.#lease = lease;
    await this.#list(true);
  }

  async #list(joined = false): Promise<void> {
    const { store, keys } = this.#o;
    const { kvs, revision } = await store.list(keys.prefix);
    this.contacted();
    if (this.#stopped) return; // no watch left behind by a listing that outlived stop()
    this.#listed = true;
    // Applied before the watch starts: its first events come after the listing.
    this.#o.events.listed(kvs, joined);
    this.#watching?.close();
    this.#watching = store.watch(
      keys.prefix,
      revision + 1,
      (events) => {
        this.contacted();
        this.#o.events.changed(events);
      },
      (e: StoreError) => {
        // Its revision was compacted: list again.
        this.#o.log.warn("fleet watch ended; listing again", { error: e.message });
        this.#listed = false;
        this.#sync();
      },
    );
  }

  /** Every renewal interval: renews the lease, and starts a join or a listing when one is due. */
  async #renew(): Promise<void> {
    if (this.#stopped || this.#renewing) return;
    this.#renewing = true;
    try {
      if (!this.#lease) return this.#sync();
      const ttl = await this.#o.store.keepAlive(this.#lease);
      this.contacted();
      if (ttl > 0) {
        if (!this.#listed) this.#sync();
        await this.#o.events.renewed();
        return;
      }
      // The lease expired while etcd could not be reached (or this LB was paused):
      // what it held went with it. Join again.
      this.#o.log.warn("fleet lease expired; joining again", { lease: this.#lease });
      this.#lease = undefined;
      this.#sync();
    } catch (e) {
      this.unreachable(e as Error);
    } finally {
      this.#renewing = false;
    }
  }

  /** Joins (without a lease) or lists (not listed under this lease), unless one is running. */
  #sync(): void {
    if (this.#syncing || this.#stopped) return;
    this.#syncing = (async () => {
      try {
        if (!this.#lease) await this.#join();
        else if (!this.#listed) await this.#list();
      } catch (e) {
        this.unreachable(e as Error);
      } finally {
        this.#syncing = undefined;
      }
    })();
  }
}
