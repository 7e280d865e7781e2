/**
 * The small interface the fleet sees of its store: etcd's key-value API
 * reduced to what fleet mode uses (leases, ranges by prefix, transactions
 * with compares, watches from a revision). `etcd.ts` implements it over
 * etcd's JSON gateway; `memory_store.ts` is the fake that runs the same
 * shared suite.
 *
 * @module
 */

/** One key with its value and etcd's revisions. */
export interface KeyValue {
  key: string;
  value: string;
  /** Revision of the key's creation: the fencing token of an owner key. */
  createRevision: number;
  modRevision: number;
  /** Lease the key is attached to ("0": none). Lease ids are 64-bit: kept as text. */
  lease: string;
}

/** A comparison of a transaction: all must hold for the success branch. */
export type Compare =
  | { key: string; target: "create_revision"; equals: number }
  | { key: string; target: "mod_revision"; equals: number }
  | { key: string; target: "value"; equals: string };

/** An operation of a transaction branch. */
export type Operation =
  | { put: string; value: string; lease?: string }
  | { delete: string; prefix?: boolean };

/** A change seen by a watch. */
export interface WatchEvent {
  type: "put" | "delete";
  key: string;
  /** The new value (empty for a delete). */
  value: string;
  modRevision: number;
}

/** A running watch. */
export interface Watching {
  /** Stops it. */
  close(): void;
}

/** What can go wrong talking to the store. */
export class StoreError extends Error {
  constructor(
    /** `unavailable`: no member answered in time; `compacted`: a watch's start revision is gone. */
    readonly kind: "unavailable" | "compacted" | "rejected",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** The store: etcd, or its fake. Every method may throw {@linkcode StoreError}. */
export interface Store {
  /** Grants a lease of `ttlSec` seconds; returns its id. */
  grant(ttlSec: number): Promise<string>;
  /** Renews a lease; returns its remaining TTL in seconds, 0 when it has expired. */
  keepAlive(lease: string): Promise<number>;
  /** Revokes a lease (its keys go). */
  revoke(lease: string): Promise<void>;
  /** The keys under `prefix` (or exactly `prefix` with `exact`), with the store's revision. */
  list(prefix: string, exact?: boolean): Promise<{ kvs: KeyValue[]; revision: number }>;
  /** Writes one key (under a lease when given); returns the new revision. */
  put(key: string, value: string, lease?: string): Promise<number>;
  /** Deletes a key, or every key under it with `prefix`. */
  delete(key: string, prefix?: boolean): Promise<void>;
  /** Runs `success` if every compare holds, else `failure`; returns which and the revision. */
  txn(
    compare: readonly Compare[],
    success: readonly Operation[],
    failure?: readonly Operation[],
  ): Promise<{ succeeded: boolean; revision: number }>;
  /**
   * Watches the keys under `prefix` from `fromRevision` on (inclusive).
   * `onEvents` gets each batch in revision order. A watch outlives a member
   * going away (it resumes from the next revision on another one); it ends
   * on its own only when its revision was compacted, and then `onError` is
   * called once: list and watch again.
   */
  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    onError: (e: StoreError) => void,
  ): Watching;
  /** Releases connections. */
  close(): Promise<void>;
}
