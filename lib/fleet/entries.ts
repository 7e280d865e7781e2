/**
 * This LB's entries of the fleet's server set, written to etcd in batches:
 * entries added together are written together, 64 to a transaction, so a
 * servers file of thousands is a few writes (one put each made every LB
 * reassign thousands of times, and took minutes at 3,000 servers). When
 * etcd does not answer, an entry waits in `pending` for the caller to add
 * again later: a slow etcd must not cost the LB its servers file.
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import type { FleetKeys } from "./keys.ts";
import { type Store, StoreError } from "./store.ts";

/** Server entries written in one etcd transaction. */
export const ENTRIES_PER_TXN = 64;

/** What {@linkcode EntryWriter} needs. */
export interface EntryWriterOptions {
  store: Store;
  keys: FleetKeys;
  lbId: string;
  /** Now as ISO time (the entry's value). */
  isoNow: () => string;
  log: Logger;
  /** One entry written, at `revision` (before `afterBatch`). */
  written(key: string, value: string, revision: number): void;
  /** After each transaction that wrote entries. */
  afterBatch(): void;
}

/**
 * Writes server entries of one LB in batches.
 *
 * @example
 * ```ts
 * import { EntryWriter } from "./entries.ts";
 * import { FleetKeys } from "./keys.ts";
 * import { MemoryStore } from "./memory_store.ts";
 * import { silentLogger } from "../util/log.ts";
 * const writer = new EntryWriter({
 *   store: new MemoryStore(),
 *   keys: new FleetKeys("/qhcp/"),
 *   lbId: "lb-1",
 *   isoNow: () => new Date().toISOString(),
 *   log: silentLogger,
 *   written: () => {},
 *   afterBatch: () => {},
 * });
 * await Promise.all(["10.0.0.7:4243", "10.0.0.8:4243"].map((a) => writer.add(a))); // one transaction
 * ```
 */
export class EntryWriter {
  /** Entries etcd did not take (unavailable): add them again when it answers. */
  readonly pending: Set<string> = new Set();
  readonly #o: EntryWriterOptions;
  readonly #queue: { address: string; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #writing = false;

  constructor(options: EntryWriterOptions) {
    this.#o = options;
  }

  /**
   * Writes an entry for `address`, with whatever else is added meanwhile.
   * Resolves once written, or once kept in `pending` because etcd did not
   * answer; rejects on any other store error.
   */
  add(address: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ address, resolve, reject });
      if (!this.#writing) void this.#write();
    });
  }

  async #write(): Promise<void> {
    this.#writing = true;
    // Let the rest of a burst of additions join the first transaction.
    await new Promise((r) => setTimeout(r, 0));
    try {
      while (this.#queue.length > 0) {
        await this.#writeBatch(this.#queue.splice(0, ENTRIES_PER_TXN));
      }
    } finally {
      this.#writing = false;
    }
  }

  async #writeBatch(
    batch: { address: string; resolve: () => void; reject: (e: unknown) => void }[],
  ): Promise<void> {
    const { store, keys, lbId } = this.#o;
    const value = JSON.stringify({ at: this.#o.isoNow() });
    const puts = batch.map((b) => ({ put: keys.server(b.address, lbId), value }));
    let revision: number;
    try {
      revision = (await store.txn([], puts)).revision;
    } catch (e) {
      if (!(e instanceof StoreError) || e.kind !== "unavailable") {
        for (const b of batch) b.reject(e);
        return;
      }
      if (this.pending.size === 0) {
        this.#o.log.warn("etcd did not answer: servers join the fleet's set when it does", {
          error: e.message,
        });
      }
      for (const b of batch) {
        this.pending.add(b.address);
        b.resolve();
      }
      return;
    }
    for (const [i, b] of batch.entries()) {
      this.pending.delete(b.address);
      this.#o.written(puts[i]!.put, value, revision);
      b.resolve();
    }
    this.#o.afterBatch();
  }
}
