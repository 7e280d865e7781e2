/**
 * An in-memory {@linkcode Store} for tests, with etcd's semantics where the
 * fleet relies on them: one revision counter, create and mod revisions per
 * key, leases that expire by an injected clock and take their keys along,
 * transactions, and watches that deliver every change in revision order. A
 * switch makes it unreachable, as a stopped etcd is.
 *
 * @module
 */

import type { Compare, KeyValue, Operation, Store, WatchEvent, Watching } from "./store.ts";
import { StoreError } from "./store.ts";

interface _Lease {
  ttlSec: number;
  expires: number;
}

interface _Watcher {
  prefix: string;
  onEvents: (events: WatchEvent[], revision: number) => void;
}

/**
 * A store in memory.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./memory_store.ts";
 * const store = new MemoryStore();
 * const lease = await store.grant(3);
 * await store.put("/a", "1", lease);
 * store.down = true; // every call now fails with StoreError "unavailable"
 * ```
 */
export class MemoryStore implements Store {
  /** While true, every call fails as if no member answered. */
  down = false;
  /** Every call answers this much later, ms: a loaded etcd. */
  latencyMs = 0;
  readonly #now: () => number;
  #revision = 1;
  #nextLease = 1;
  readonly #kvs = new Map<string, KeyValue>();
  readonly #leases = new Map<string, _Lease>();
  readonly #watchers = new Set<_Watcher>();
  /** Every event so far, for watches that start in the past. */
  readonly #log: WatchEvent[] = [];

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** The current revision. */
  get revision(): number {
    return this.#revision;
  }

  grant(ttlSec: number): Promise<string> {
    return this.#op(() => {
      const id = String(this.#nextLease++);
      this.#leases.set(id, { ttlSec, expires: this.#now() + ttlSec * 1000 });
      return id;
    });
  }

  keepAlive(lease: string): Promise<number> {
    return this.#op(() => {
      const l = this.#leases.get(lease);
      if (!l) return 0;
      l.expires = this.#now() + l.ttlSec * 1000;
      return l.ttlSec;
    });
  }

  revoke(lease: string): Promise<void> {
    return this.#op(() => this.#expire(lease));
  }

  list(prefix: string, exact = false): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.#op(() => ({
      kvs: [...this.#kvs.values()]
        .filter((kv) => (exact ? kv.key === prefix : kv.key.startsWith(prefix)))
        .sort((a, b) => (a.key < b.key ? -1 : 1))
        .map((kv) => ({ ...kv })),
      revision: this.#revision,
    }));
  }

  put(key: string, value: string, lease?: string): Promise<number> {
    return this.#op(() => {
      this.#apply([{ put: key, value, ...(lease ? { lease } : {}) }]);
      return this.#revision;
    });
  }

  delete(key: string, prefix = false): Promise<void> {
    return this.#op(() => this.#apply([{ delete: key, prefix }]));
  }

  txn(
    compare: readonly Compare[],
    success: readonly Operation[],
    failure: readonly Operation[] = [],
  ): Promise<{ succeeded: boolean; revision: number }> {
    return this.#op(() => {
      const ok = compare.every((c) => {
        const kv = this.#kvs.get(c.key);
        if (c.target === "create_revision") return (kv?.createRevision ?? 0) === c.equals;
        if (c.target === "mod_revision") return (kv?.modRevision ?? 0) === c.equals;
        return kv !== undefined && kv.value === c.equals;
      });
      this.#apply(ok ? success : failure);
      return { succeeded: ok, revision: this.#revision };
    });
  }

  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    _onError: (e: StoreError) => void,
  ): Watching {
    const watcher: _Watcher = { prefix, onEvents };
    const past = this.#log.filter((e) => e.modRevision >= fromRevision && e.key.startsWith(prefix));
    if (past.length > 0) queueMicrotask(() => onEvents(past, this.#revision));
    this.#watchers.add(watcher);
    return { close: () => void this.#watchers.delete(watcher) };
  }

  close(): Promise<void> {
    this.#watchers.clear();
    return Promise.resolve();
  }

  /** Expires leases whose time has come (call after moving the clock). */
  tick(): void {
    for (const [id, l] of this.#leases) if (l.expires <= this.#now()) this.#expire(id);
  }

  async #op<T>(fn: () => T): Promise<T> {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    if (this.down) throw new StoreError("unavailable", "etcd unreachable: store down");
    this.tick();
    return fn();
  }

  #expire(lease: string): void {
    if (!this.#leases.delete(lease)) return;
    const keys = [...this.#kvs.values()].filter((kv) => kv.lease === lease).map((kv) => kv.key);
    this.#apply(keys.map((k) => ({ delete: k })));
  }

  /** Applies operations as one revision (etcd's transaction), telling watchers. */
  #apply(ops: readonly Operation[]): void {
    const events: WatchEvent[] = [];
    const revision = this.#revision + 1;
    for (const op of ops) {
      if ("put" in op) {
        if (op.lease && !this.#leases.has(op.lease)) {
          throw new StoreError("rejected", "etcdserver: requested lease not found");
        }
        const old = this.#kvs.get(op.put);
        this.#kvs.set(op.put, {
          key: op.put,
          value: op.value,
          createRevision: old?.createRevision ?? revision,
          modRevision: revision,
          lease: op.lease ?? "0",
        });
        events.push({ type: "put", key: op.put, value: op.value, modRevision: revision });
      } else {
        for (const key of [...this.#kvs.keys()]) {
          if (op.prefix ? key.startsWith(op.delete) : key === op.delete) {
            this.#kvs.delete(key);
            events.push({ type: "delete", key, value: "", modRevision: revision });
          }
        }
      }
    }
    if (events.length === 0) return;
    this.#revision = revision;
    this.#log.push(...events);
    for (const w of this.#watchers) {
      const mine = events.filter((e) => e.key.startsWith(w.prefix));
      if (mine.length > 0) queueMicrotask(() => w.onEvents(mine, revision));
    }
  }
}
