/**
 * An owner's verdicts into etcd: written when what routing depends on
 * changes (state, status, weight, since) and rewritten every refresh with
 * the figures of the moment. Every write is a transaction fenced by the
 * writer's owner key: it holds only while that key keeps the creation
 * revision of the claim, so an LB paused or cut off past its lease writes
 * nothing over the server's new owners.
 *
 * @module
 */

import type { Monitor } from "../lb/monitor.ts";
import { chunks } from "../util/chunks.ts";
import type { Claims } from "./claims.ts";
import type { FleetKeys } from "./keys.ts";
import type { Operation, Store } from "./store.ts";
import { type OwnerVerdict, ownerVerdict, verdictChanged } from "./verdicts.ts";

/** Verdicts written in one transaction (etcd allows 128 operations of each kind). */
const _PER_TXN = 50;
/**
 * Changes are gathered this long before they are written, ms: when
 * thousands of servers turn UP at start or in a takeover, etcd gets one
 * transaction per 50 verdicts, not one each (one fsync each), and keeps
 * answering lease renewals in time. Small beside the 200 ms that LBs may
 * differ by on a verdict.
 */
const _GATHER_MS = 20;

/** Options of {@linkcode VerdictWriter}. */
export interface VerdictWriterOptions {
  store: Store;
  keys: FleetKeys;
  lbId: string;
  claims: Claims;
  monitor: Pick<Monitor, "server">;
  /** Other LBs' verdicts on a server that is now ours to replace (former owners). */
  previousOwners: (address: string) => string[];
  isoNow: () => string;
  /** etcd answered. */
  contacted: () => void;
  /** etcd did not answer. */
  unreachable: (e: Error) => void;
  /** A fenced write was refused: the claim is gone. */
  lost: (address: string) => void;
  stopped: () => boolean;
}

/**
 * Writes this LB's verdicts on the servers it owns.
 *
 * @example
 * ```ts
 * import { Claims } from "./claims.ts";
 * import { FleetKeys } from "./keys.ts";
 * import { MemoryStore } from "./memory_store.ts";
 * import { VerdictWriter } from "./verdict_writer.ts";
 * import { silentLogger } from "../util/log.ts";
 * const store = new MemoryStore();
 * const keys = new FleetKeys("/qhcp/");
 * const common = {
 *   store,
 *   keys,
 *   lbId: "lb-a",
 *   isoNow: () => new Date().toISOString(),
 *   contacted: () => {},
 * };
 * const monitor = {
 *   addServer: () => "",
 *   removeServer: () => Promise.resolve(true),
 *   server: () => undefined, // a real Monitor's view of the server
 * };
 * const claims = new Claims({ ...common, monitor, log: silentLogger, ended: () => {} });
 * const writer = new VerdictWriter({
 *   ...common,
 *   claims,
 *   monitor,
 *   previousOwners: () => [],
 *   unreachable: () => {},
 *   lost: (address) => claims.lose(address),
 *   stopped: () => false,
 * });
 * await writer.write("10.0.0.7:4243"); // after a check: writes only a change of this LB's claims
 * await writer.refresh(); // every refresh interval: all of them
 * ```
 */
export class VerdictWriter {
  readonly #o: VerdictWriterOptions;
  /** What this LB last wrote per server. */
  readonly #written = new Map<string, OwnerVerdict>();
  /** Changes waiting for the next transaction, by server. */
  readonly #pending = new Map<string, { claim: number; v: OwnerVerdict }>();
  /** The loop writing pending changes, while there are any. */
  #flushing: Promise<void> | undefined;
  #refreshing = false;

  constructor(options: VerdictWriterOptions) {
    this.#o = options;
  }

  /** Forgets what was written of a server no longer owned. */
  forget(address: string): void {
    this.#written.delete(address);
    this.#pending.delete(address);
  }

  /**
   * Rewrites every owned server's verdict with the figures of the moment,
   * 50 to a transaction, the transactions spread evenly over `spreadMs`:
   * thousands rewritten at once by every LB would hit etcd, and every LB's
   * watch, with a burst each interval. A batch refused because one claim is
   * gone is redone one by one, which finds the lost claim. One refresh at a
   * time.
   */
  async refresh(spreadMs = 0): Promise<void> {
    if (this.#refreshing) return;
    this.#refreshing = true;
    try {
      const owned = this.#o.claims.entries();
      const batches = chunks(owned, _PER_TXN);
      const pause = spreadMs / batches.length;
      for (const [i, owners] of batches.entries()) {
        if (this.#o.stopped()) break;
        if (i > 0 && pause > 0) await new Promise((r) => setTimeout(r, pause));
        const at = this.#o.isoNow();
        const batch = owners.flatMap(([address, claim]) => {
          const view = this.#o.monitor.server(address);
          // Released or lost meanwhile, or not decided: nothing to say.
          return view && view.state !== "UNKNOWN" && this.#o.claims.revision(address) === claim
            ? [{ address, claim, v: ownerVerdict(view, this.#o.lbId, at) }]
            : [];
        });
        if (batch.length > 0 && !(await this.#write(batch))) return;
      }
    } finally {
      this.#refreshing = false;
    }
  }

  /**
   * Writes this LB's verdict on a server it owns when it changed, fenced by
   * the owner key's revision, gathered with other changes into one
   * transaction; resolves once it was written (or refused, or etcd did not
   * answer: the next check tries again).
   */
  write(address: string): Promise<void> {
    const claim = this.#o.claims.revision(address);
    const view = this.#o.monitor.server(address);
    if (claim === undefined || !view || this.#o.stopped()) return Promise.resolve();
    // An owner that has not decided yet has nothing to say (and must not hide a decided verdict).
    if (view.state === "UNKNOWN") return Promise.resolve();
    // Called after every check: most change nothing routing depends on, and build nothing.
    const { state, status, weight, last_change: since } = view;
    const last = this.#pending.get(address)?.v ?? this.#written.get(address);
    if (!verdictChanged(last, { state, status, weight, since })) {
      return this.#pending.has(address) ? this.#flush() : Promise.resolve();
    }
    this.#pending.set(address, { claim, v: ownerVerdict(view, this.#o.lbId, this.#o.isoNow()) });
    return this.#flush();
  }

  /** The loop that writes pending changes, started by the first of them. */
  #flush(): Promise<void> {
    this.#flushing ??= (async () => {
      await new Promise((r) => setTimeout(r, _GATHER_MS));
      while (this.#pending.size > 0 && !this.#o.stopped()) {
        const batch: [string, { claim: number; v: OwnerVerdict }][] = [];
        for (const entry of this.#pending) {
          batch.push(entry);
          if (batch.length === _PER_TXN) break;
        }
        for (const [address] of batch) this.#pending.delete(address);
        // Not answered: dropped; the next check that finds a change writes it.
        await this.#write(batch.map(([address, p]) => ({ address, ...p })));
      }
      this.#pending.clear();
      this.#flushing = undefined;
    })();
    return this.#flushing;
  }

  /**
   * One transaction for the batch, fenced by each server's claim. Refused as
   * a whole when one claim is gone: then one by one, and the one refused
   * alone ends its claim. False when etcd did not answer.
   */
  async #write(batch: { address: string; claim: number; v: OwnerVerdict }[]): Promise<boolean> {
    const { store, keys, lbId } = this.#o;
    let succeeded: boolean;
    try {
      ({ succeeded } = await store.txn(
        batch.map((b) => ({
          key: keys.owner(b.address, lbId),
          target: "create_revision" as const,
          equals: b.claim,
        })),
        batch.flatMap((b) => this.#puts(b.address, b.v)),
      ));
    } catch (e) {
      this.#o.unreachable(e as Error);
      return false;
    }
    this.#o.contacted();
    if (succeeded) {
      for (const b of batch) this.#written.set(b.address, b.v);
    } else if (batch.length === 1) {
      this.#o.lost(batch[0]!.address);
    } else {
      for (const b of batch) if (!(await this.#write([b]))) return false;
    }
    return true;
  }

  /** The verdict's put, and the deletes of verdicts it replaces (former owners'). */
  #puts(address: string, v: OwnerVerdict): Operation[] {
    const { keys, lbId } = this.#o;
    return [
      { put: keys.verdict(address, lbId), value: JSON.stringify(v) },
      ...this.#o.previousOwners(address).map((lb) => ({ delete: keys.verdict(address, lb) })),
    ];
  }
}
