/**
 * This LB's claims in the fleet: an owner key per server it checks, created
 * in an etcd transaction under its lease, and the server added to its local
 * {@linkcode Monitor}. The key's creation revision fences every verdict the
 * LB writes about the server (`fleet.ts`). Claims and releases go many to a
 * transaction, so that taking over a dead LB's servers, or handing servers
 * to a new one, is a few round trips, not hundreds.
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import { chunks } from "../util/chunks.ts";
import type { Monitor } from "../lb/monitor.ts";
import { parseServerAddress } from "../protocol/address.ts";
import type { FleetKeys } from "./keys.ts";
import type { Store } from "./store.ts";

/** Owner keys created or deleted in one etcd transaction (etcd allows 128 operations). */
const _KEYS_PER_TXN = 64;
/** Claiming or releasing transactions in flight at once. */
const _TXNS_AT_ONCE = 4;

/** Options of {@linkcode Claims}. */
export interface ClaimsOptions {
  store: Store;
  keys: FleetKeys;
  lbId: string;
  /** The local checker: a claimed server is added, a released one removed. */
  monitor: Pick<Monitor, "addServer" | "removeServer">;
  log: Logger;
  /** Now as ISO time (the owner key's value). */
  isoNow: () => string;
  /** etcd answered. */
  contacted: () => void;
  /** A claim ended (released or lost): what was written under it no longer counts. */
  ended: (address: string) => void;
}

/**
 * The servers this LB owns, with each owner key's creation revision.
 *
 * @example
 * ```ts
 * import { Claims } from "./claims.ts";
 * import { FleetKeys } from "./keys.ts";
 * import { MemoryStore } from "./memory_store.ts";
 * import { silentLogger } from "../util/log.ts";
 * const store = new MemoryStore();
 * const claims = new Claims({
 *   store,
 *   keys: new FleetKeys("/qhcp/"),
 *   lbId: "lb-a",
 *   monitor: { addServer: () => "", removeServer: () => Promise.resolve(true) },
 *   log: silentLogger,
 *   isoNow: () => new Date().toISOString(),
 *   contacted: () => {},
 *   ended: () => {},
 * });
 * const lease = await store.grant(3);
 * await claims.claim(["10.0.0.7:4243"], lease, () => false);
 * claims.revision("10.0.0.7:4243"); // the owner key's creation revision
 * ```
 */
export class Claims {
  readonly #o: ClaimsOptions;
  readonly #revisions = new Map<string, number>();

  constructor(options: ClaimsOptions) {
    this.#o = options;
  }

  /** Servers claimed. */
  get size(): number {
    return this.#revisions.size;
  }

  /** True when this LB owns `address`. */
  has(address: string): boolean {
    return this.#revisions.has(address);
  }

  /** The creation revision of this LB's owner key of `address`, or undefined. */
  revision(address: string): number | undefined {
    return this.#revisions.get(address);
  }

  /** The servers claimed, with their owner keys' revisions. */
  entries(): [string, number][] {
    return [...this.#revisions];
  }

  /**
   * Claims `addresses` under `lease`, 64 to a transaction, four transactions
   * at a time; stops between batches once `stopped()`. Returns the ones now
   * owned. Throws what the store throws.
   */
  async claim(
    addresses: readonly string[],
    lease: string,
    stopped: () => boolean,
  ): Promise<string[]> {
    for (const now of chunks(chunks(addresses, _KEYS_PER_TXN), _TXNS_AT_ONCE)) {
      if (stopped()) break;
      await Promise.all(now.map((b) => this.#claimBatch(b, lease)));
    }
    return addresses.filter((a) => this.#revisions.has(a));
  }

  /**
   * Hands `addresses` over: no longer checked here, then their owner keys
   * deleted, 64 to a transaction, four transactions at a time. A delete that
   * fails is left to the lease: the key goes when it expires.
   */
  async release(addresses: readonly string[]): Promise<void> {
    for (const now of chunks(chunks(addresses, _KEYS_PER_TXN), _TXNS_AT_ONCE)) {
      await Promise.all(now.map((b) => this.#releaseBatch(b)));
    }
  }

  /**
   * A claim is gone (its key deleted, a fenced write refused, the lease
   * expired): stops checking the server. False when it was not held.
   */
  lose(address: string): boolean {
    if (!this.#revisions.delete(address)) return false;
    this.#o.ended(address);
    void this.#o.monitor.removeServer(address, { quiet: true });
    return true;
  }

  /**
   * One transaction that creates every owner key of the batch or none; when
   * one exists already, one by one, and a key found alone is ours from an
   * earlier pass of this lease (its revision is taken) or another's.
   */
  async #claimBatch(addresses: readonly string[], lease: string): Promise<void> {
    const { store, keys, lbId } = this.#o;
    const owned = addresses.map((a) => keys.owner(a, lbId));
    const at = this.#o.isoNow();
    const r = await store.txn(
      owned.map((key) => ({ key, target: "create_revision" as const, equals: 0 })),
      owned.map((key) => ({ put: key, value: at, lease })),
    );
    this.#o.contacted();
    if (r.succeeded) {
      // Created together: each key's creation revision is the transaction's.
      for (const a of addresses) this.#claimed(a, r.revision);
    } else if (addresses.length > 1) {
      await Promise.all(addresses.map((a) => this.#claimBatch([a], lease)));
    } else {
      const { kvs } = await store.list(owned[0]!, true);
      const mine = kvs.find((kv) => kv.lease === lease);
      if (mine) this.#claimed(addresses[0]!, mine.createRevision);
    }
  }

  #claimed(address: string, revision: number): void {
    this.#revisions.set(address, revision);
    try {
      this.#o.monitor.addServer(parseServerAddress(address), { quiet: true });
    } catch { /* already checked locally */ }
    this.#o.log.debug("checking server for the fleet", { server: address });
  }

  async #releaseBatch(addresses: readonly string[]): Promise<void> {
    const { store, keys, lbId, monitor, ended } = this.#o;
    // Checks and verdict writes stop before the keys go: the next owner's
    // claim never meets a verdict of ours written after it.
    await Promise.all(addresses.map((a) => {
      this.#revisions.delete(a);
      ended(a);
      return monitor.removeServer(a, { quiet: true });
    }));
    await store.txn([], addresses.map((a) => ({ delete: keys.owner(a, lbId) }))).catch(() => {});
  }
}
