/**
 * Fleet mode: several LBs share the checking and the verdict through etcd
 * (a `Store`). This is the driver of one LB in the fleet:
 *
 * - **membership**: a lease (TTL 3 s by default, renewed every third of it)
 *   and a member key under it (`session.ts`); every LB watches the member
 *   list, and a change is applied once it has held for the debounce time;
 * - **assignment**: each server is checked by its top K members by
 *   rendezvous hash (`assign.ts`); this LB claims its share with owner keys
 *   created in transactions under its lease (`assignment.ts`, `claims.ts`),
 *   and checks them with its local `Monitor`;
 * - **fencing**: every verdict write is a transaction that holds only while
 *   this LB's owner key still has the revision it was created with, so an
 *   LB that was paused or cut off past its lease cannot write over the
 *   servers' new owners; a refused write ends its claim;
 * - **shared verdict**: owners write each server's verdict on every change
 *   and every refresh interval (`verdict_writer.ts`), and every LB combines
 *   the owners' verdicts (`verdicts.ts`) for what it serves;
 * - **etcd unreachable**: the LB keeps checking what it owns and serving the
 *   last known verdicts, marked stale with their age; it writes nothing and
 *   marks no server DOWN for it; when etcd answers again it takes a new
 *   lease if its old one expired, re-lists, re-claims and resumes.
 *
 * @module
 */

import { fewOf } from "../util/text.ts";
import type { Logger } from "../util/log.ts";
import type { ServerSet } from "../lb/directory.ts";
import { formatAddress } from "../protocol/address.ts";
import { owners } from "./assign.ts";
import { Assignment } from "./assignment.ts";
import { type Applied, FleetMirror } from "./mirror.ts";
import { Claims } from "./claims.ts";
import { ENTRIES_PER_TXN, EntryWriter } from "./entries.ts";
import { chunks } from "../util/chunks.ts";
import { FleetSession } from "./session.ts";
import { VerdictWriter } from "./verdict_writer.ts";
import type { KeyValue, WatchEvent } from "./store.ts";
import { ownerVerdict, VerdictChanges } from "./verdicts.ts";
import type { FleetOptions, FleetServer, FleetState } from "./fleet_types.ts";

export type { FleetOptions, FleetServer, FleetState };

/** The driver of this LB's part in the fleet. */
export class Fleet {
  readonly lbId: string;
  readonly #o: Required<Omit<FleetOptions, "info" | "now">> & { info: Record<string, string> };
  readonly #now: () => number;
  readonly #log: Logger;
  #refreshTimer: ReturnType<typeof setInterval> | undefined;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #unsubscribe: (() => void) | undefined;
  /** The lease, the listing and the watch. */
  readonly #session: FleetSession;
  /** The fleet as listed and watched. */
  readonly #mirror: FleetMirror;
  /** Live members as applied (after the debounce). */
  #members: string[] = [];
  /** This LB's claims: owner key revision by address. */
  readonly #claims: Claims;
  /** This LB's verdicts into etcd. */
  readonly #writer: VerdictWriter;
  #listeners = new Set<(address: string) => void>();
  /** Which servers this LB claims. */
  readonly #assignment: Assignment;
  /** This LB's entries of the server set, written in batches. */
  readonly #entryWriter: EntryWriter;
  /** The fleet's verdicts as written in etcd, and their turns to DOWN. */
  readonly #verdictChanges = new VerdictChanges();

  constructor(options: FleetOptions) {
    if (options.lbId.includes("/")) throw new RangeError("a fleet LB id cannot contain '/'");
    this.lbId = options.lbId;
    this.#o = {
      leaseTtlSec: 3,
      checkersPerServer: 2,
      debounceMs: 500,
      refreshMs: 30_000,
      ...options,
      info: options.info ?? {},
    };
    this.#now = options.now ?? Date.now;
    this.#log = options.log.child({ fleet: options.lbId });
    this.#mirror = new FleetMirror(options.keys);
    this.#claims = new Claims({
      store: options.store,
      keys: options.keys,
      lbId: options.lbId,
      monitor: options.monitor,
      log: this.#log,
      isoNow: () => this.#isoNow(),
      contacted: () => this.#session.contacted(),
      ended: (address) => this.#writer.forget(address),
    });
    this.#writer = new VerdictWriter({
      store: options.store,
      keys: options.keys,
      lbId: options.lbId,
      claims: this.#claims,
      monitor: options.monitor,
      // Verdicts of LBs no longer members: a new owner's verdict replaces them.
      previousOwners: (address) =>
        [...(this.#mirror.verdicts.get(address)?.keys() ?? [])]
          .filter((lb) => lb !== this.lbId && !this.#members.includes(lb)),
      isoNow: () => this.#isoNow(),
      contacted: () => this.#session.contacted(),
      unreachable: (e) => this.#session.unreachable(e),
      lost: (address) => this.#lost(address),
      stopped: () => this.#stopped,
    });
    this.#assignment = new Assignment({
      lbId: options.lbId,
      checkersPerServer: this.#o.checkersPerServer,
      claims: this.#claims,
      servers: () => this.#mirror.entries.keys(),
      members: () => this.#members,
      lease: () => this.#session.lease,
      stopped: () => this.#stopped,
      failed: (e) => this.#session.unreachable(e),
      log: this.#log,
    });
    this.#entryWriter = new EntryWriter({
      store: options.store,
      keys: options.keys,
      lbId: options.lbId,
      isoNow: () => this.#isoNow(),
      log: this.#log,
      // Seen at once here; the watch brings the same change again, which changes nothing.
      written: (key, value, revision) =>
        void this.#apply({ type: "put", key, value, modRevision: revision }),
      afterBatch: () => {
        this.#session.contacted();
        this.#assignment.request();
      },
    });
    this.#session = new FleetSession({
      store: options.store,
      keys: options.keys,
      lbId: options.lbId,
      ttlSec: this.#o.leaseTtlSec,
      info: this.#o.info,
      log: this.#log,
      now: this.#now,
      isoNow: () => this.#isoNow(),
      events: {
        leaseGone: () => this.#leaseGone(),
        listed: (kvs, joined) => this.#listed(kvs, joined),
        changed: (events) => this.#onEvents(events),
        staleChanged: () => this.#notifyAll(),
        renewed: () => this.#renewed(),
      },
    });
  }

  /**
   * Joins the fleet: a lease, the member key, a full listing, a watch, the
   * first claims. When etcd cannot be reached yet, it says so and keeps
   * trying (every lease renewal interval) instead of failing.
   */
  async start(): Promise<void> {
    await this.#session.start();
    // Spread over most of the interval: a refresh ends before the next begins.
    this.#refreshTimer = setInterval(
      () => void this.#writer.refresh(this.#o.refreshMs * 0.8),
      this.#o.refreshMs,
    );
    this.#unsubscribe = this.#o.monitor.subscribe((address) => this.#changed(address));
  }

  /** Leaves the fleet: revokes the lease so that the others take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#refreshTimer);
    clearTimeout(this.#debounce);
    this.#unsubscribe?.();
    await this.#assignment.settled();
    await this.#session.stop();
  }

  /** Calls `listener` when what the fleet shows of a server changes. */
  subscribe(listener: (address: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The fleet now. */
  state(): FleetState {
    const servers = new Map<string, FleetServer>();
    const at = this.#isoNow();
    for (const address of [...this.#mirror.entries.keys()].sort()) {
      servers.set(address, this.#server(address, at));
    }
    return { lbId: this.lbId, members: [...this.#members], staleMs: this.staleMs, servers };
  }

  /**
   * How long since etcd last answered, ms, once that is longer than a lease
   * (the verdicts shown may be out of date); undefined while in touch.
   */
  get staleMs(): number | undefined {
    return this.#session.staleMs;
  }

  /** Times the fleet's verdict on a server, as written in etcd, turned DOWN since start. */
  get verdictDowns(): number {
    return this.#verdictChanges.downs;
  }

  /** Servers in the fleet's set. */
  get size(): number {
    return this.#mirror.entries.size;
  }

  /** One server, or undefined when the fleet does not know it. */
  server(address: string): FleetServer | undefined {
    return this.#mirror.entries.has(address) ? this.#server(address, this.#isoNow()) : undefined;
  }

  /**
   * This LB's entries of the fleet's set, as a {@linkcode ServerSet} for its
   * discovery sources: adding writes an entry of this LB, removing deletes
   * only that entry (the server stays while another LB lists it).
   */
  entries(): ServerSet {
    return {
      maxServers: this.#o.monitor.maxServers,
      addresses: () =>
        [...this.#mirror.entries].filter(([, lbs]) => lbs.has(this.lbId)).map(([a]) => a),
      addServer: async (address) => {
        const key = formatAddress(address.host, address.port);
        await this.addServer(key);
        return key;
      },
      removeServer: (address) => this.removeServer(address, false),
    };
  }

  /**
   * Adds a server to the fleet's set (an entry of this LB). Entries added
   * together are written together (see `entries.ts`). When etcd does not
   * answer, the entry waits and is written again at the next lease renewal.
   */
  addServer(address: string): Promise<void> {
    return this.#entryWriter.add(address);
  }

  /**
   * Removes this LB's entry of a server, or with `everywhere` every LB's
   * (the server leaves the fleet). False when the fleet does not list it.
   */
  async removeServer(address: string, everywhere: boolean): Promise<boolean> {
    const lbs = this.#mirror.entries.get(address);
    if (!lbs || (!everywhere && !lbs.has(this.lbId))) return false;
    const key = everywhere
      ? `${this.#o.keys.of("servers")}${address}/`
      : this.#o.keys.server(address, this.lbId);
    await this.#o.store.delete(key, everywhere);
    this.#session.contacted();
    for (const lb of everywhere ? [...lbs] : [this.lbId]) {
      this.#apply({
        type: "delete",
        key: this.#o.keys.server(address, lb),
        value: "",
        modRevision: 0,
      });
    }
    this.#assignment.request();
    return true;
  }

  // --- the session's events ------------------------------------------------------

  /** Claims of an older lease went with it: stop checking those servers until claimed again. */
  #leaseGone(): void {
    const dropped = this.#claims.entries().map(([address]) => address);
    for (const address of dropped) this.#claims.lose(address);
    if (dropped.length > 0) {
      this.#log.warn("the lease's claims are gone; checking them again once claimed", {
        count: dropped.length,
        servers: fewOf(dropped),
      });
    }
  }

  #listed(kvs: readonly KeyValue[], joined: boolean): void {
    this.#mirror.clear();
    for (const kv of kvs) {
      this.#apply({ type: "put", key: kv.key, value: kv.value, modRevision: kv.modRevision });
    }
    this.#members = [...this.#mirror.seenMembers].sort();
    for (const address of this.#mirror.entries.keys()) this.#recordVerdict(address, true);
    if (joined) {
      this.#log.info("joined the fleet", {
        members: this.#members.join(","),
        servers: this.#mirror.entries.size,
        lease_ttl_s: this.#o.leaseTtlSec,
      });
    }
    this.#assignment.request();
  }

  /** Entries that waited for etcd, written now that it answers, a transaction's worth at a time. */
  async #renewed(): Promise<void> {
    for (const batch of chunks([...this.#entryWriter.pending], ENTRIES_PER_TXN)) {
      await Promise.all(batch.map((address) => this.addServer(address)));
      if (batch.some((a) => this.#entryWriter.pending.has(a))) break; // still not answering
    }
  }

  #onEvents(events: WatchEvent[]): void {
    let members = false;
    let assignment = false;
    const verdicts = new Set<string>();
    for (const e of events) {
      const a = this.#apply(e);
      if (a?.kind === "members") members = true;
      // Verdicts change no assignment: most events are verdicts.
      else if (a?.kind === "servers" || a?.kind === "owners") assignment = true;
      if (a?.kind === "verdicts" || (a?.kind === "servers" && !a.put)) verdicts.add(a.address);
    }
    for (const address of verdicts) this.#recordVerdict(address);
    if (members) this.#membersChanged();
    else if (assignment) this.#assignment.request();
  }

  /** Records the fleet's verdict on a server as etcd holds it (owners' verdicts combined). */
  #recordVerdict(address: string, quiet = false): void {
    if (!this.#mirror.entries.has(address)) return this.#verdictChanges.forget(address);
    const owned = owners(address, this.#members, this.#o.checkersPerServer);
    this.#verdictChanges.record(
      address,
      this.#mirror.verdictOf(address, owned)?.state ?? "UNKNOWN",
      quiet,
    );
  }

  /** Applies one change to the view; says what it touched. */
  #apply(e: WatchEvent): Applied | undefined {
    const a = this.#mirror.apply(e);
    if (!a) return undefined;
    // Another LB removed our claim (our lease expired): it is over.
    if (a.kind === "owners" && !a.put && a.lb === this.lbId && this.#claims.has(a.address)) {
      this.#lost(a.address);
    }
    if (a.kind === "verdicts") this.#notify(a.address);
    return a;
  }

  #membersChanged(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => {
      const next = [...this.#mirror.seenMembers].sort();
      if (next.join(",") === this.#members.join(",")) return;
      this.#log.info("fleet members changed", {
        members: next.join(","),
        was: this.#members.join(","),
      });
      this.#members = next;
      // New owners may combine into another verdict.
      for (const address of this.#mirror.entries.keys()) this.#recordVerdict(address);
      this.#assignment.request();
      this.#notifyAll();
    }, this.#o.debounceMs);
  }

  // --- claims -----------------------------------------------------------------------

  /** Our claim is gone (a fenced write was refused, or the key was deleted): stop checking. */
  #lost(address: string): void {
    if (!this.#claims.lose(address)) return;
    this.#log.warn("lost the claim on a server; no longer checking it", { server: address });
    this.#assignment.request();
  }

  // --- verdicts -----------------------------------------------------------------------

  /** The local monitor's view of a server changed (after a check, most often). */
  #changed(address: string): void {
    this.#notify(address);
    if (this.#claims.has(address)) void this.#writer.write(address);
  }

  // --- reading --------------------------------------------------------------------------

  #isoNow(): string {
    return new Date(this.#now()).toISOString();
  }

  /** One server as the fleet sees it now; `at`: now as ISO time, for this LB's own verdict. */
  #server(address: string, at: string): FleetServer {
    const owned = owners(address, this.#members, this.#o.checkersPerServer);
    const mine = this.#claims.has(address);
    // This LB's own verdict is fresher than what it last wrote.
    const view = mine ? this.#o.monitor.server(address) : undefined;
    const live = view ? ownerVerdict(view, this.lbId, at) : undefined;
    return { address, owners: owned, verdict: this.#mirror.verdictOf(address, owned, live), mine };
  }

  #notify(address: string): void {
    for (const l of this.#listeners) l(address);
  }

  #notifyAll(): void {
    for (const a of this.#mirror.entries.keys()) this.#notify(a);
  }
}
