/**
 * Fleet mode: several LBs share the checking and the verdict through etcd
 * (a {@linkcode Store}). This is the driver of one LB in the fleet:
 *
 * - **membership**: a lease (TTL 3 s by default, renewed every third of it)
 *   and a member key under it; every LB watches the member list, and a
 *   change is applied once it has held for the debounce time;
 * - **assignment**: each server is checked by its top K members by
 *   rendezvous hash (`assign.ts`); this LB claims its servers with an owner
 *   key created in a transaction under its lease, and checks them with its
 *   local {@linkcode Monitor};
 * - **fencing**: every verdict write is a transaction that holds only while
 *   this LB's owner key still has the revision it was created with, so an
 *   LB that was paused or cut off past its lease cannot write over the
 *   servers' new owners; a refused write ends its claim;
 * - **shared verdict**: owners write each server's verdict on every change
 *   and every refresh interval (with the figures of that moment), and every
 *   LB combines the owners' verdicts (`verdicts.ts`) for what it serves;
 * - **etcd unreachable**: the LB keeps checking what it owns and serving the
 *   last known verdicts, marked stale with their age; it writes nothing and
 *   marks no server DOWN for it; when etcd answers again it takes a new
 *   lease if its old one expired, re-lists, re-claims and resumes.
 *
 * @module
 */

import { fewOf } from "../util/text.ts";
import type { Logger } from "../util/log.ts";
import { settlesWithin } from "../util/timeout.ts";
import type { Monitor } from "../lb/monitor.ts";
import type { ServerSet } from "../lb/directory.ts";
import { formatAddress, parseServerAddress } from "../protocol/address.ts";
import { owners } from "./assign.ts";
import type { FleetKeys } from "./keys.ts";
import { FleetMirror } from "./mirror.ts";
import { EntryWriter } from "./entries.ts";
import type { Store, StoreError, WatchEvent, Watching } from "./store.ts";
import {
  combine,
  type FleetVerdict,
  type OwnerVerdict,
  ownerVerdict,
  verdictChanged,
} from "./verdicts.ts";

/** Releases in flight at once (etcd deletes). */
const _CLAIMS_AT_ONCE = 32;
/**
 * Owner keys created in one etcd transaction (etcd allows 128 operations):
 * a takeover of hundreds of servers is a few round trips, not hundreds.
 */
const _CLAIMS_PER_TXN = 64;
/** Claiming transactions in flight at once. */
const _CLAIM_TXNS_AT_ONCE = 4;
/** Options of {@linkcode Fleet}. */
export interface FleetOptions {
  store: Store;
  keys: FleetKeys;
  /** This LB's id (unique in the fleet). */
  lbId: string;
  /** The local checker: the fleet adds and removes the servers this LB owns. */
  monitor: Monitor;
  /** Lease TTL, seconds. Default 3. */
  leaseTtlSec?: number;
  /** LBs that check each server (K). Default 2. */
  checkersPerServer?: number;
  /** A member change is applied once it has held this long, ms. Default 500. */
  debounceMs?: number;
  /** Owners rewrite their verdicts this often, ms (figures for the other LBs). Default 30000. */
  refreshMs?: number;
  /** What this LB tells the others about itself (its HTTP address, version). */
  info?: Record<string, string>;
  log: Logger;
  /** Clock, ms. Default Date.now. */
  now?: () => number;
}

/** What the fleet knows of one server. */
export interface FleetServer {
  address: string;
  /** The LBs that should check it now (top K of the live members). */
  owners: string[];
  /** The combined verdict, or undefined before any owner wrote one. */
  verdict: FleetVerdict | undefined;
  /** True when this LB checks it. */
  mine: boolean;
}

/** The fleet as this LB sees it. */
export interface FleetState {
  lbId: string;
  members: string[];
  /** Milliseconds since etcd last answered, when that is longer than a lease renewal should take. */
  staleMs: number | undefined;
  servers: Map<string, FleetServer>;
}

/** The driver of this LB's part in the fleet. */
export class Fleet {
  readonly lbId: string;
  readonly #o: Required<Omit<FleetOptions, "info" | "now">> & { info: Record<string, string> };
  readonly #now: () => number;
  readonly #log: Logger;
  #lease: string | undefined;
  #watching: Watching | undefined;
  #keepAliveTimer: ReturnType<typeof setInterval> | undefined;
  #refreshTimer: ReturnType<typeof setInterval> | undefined;
  #debounce: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  #unsubscribe: (() => void) | undefined;
  /** When etcd last answered. */
  #contact = 0;
  #staleLogged = false;
  /** The fleet as listed and watched. */
  readonly #mirror: FleetMirror;
  /** Live members as applied (after the debounce). */
  #members: string[] = [];
  /** This LB's claims: owner key revision by address. */
  #claims = new Map<string, number>();
  /** What this LB last wrote per server. */
  #written = new Map<string, OwnerVerdict>();
  #listeners = new Set<(address: string) => void>();
  #assigning: Promise<void> = Promise.resolve();
  #assignRunning = false;
  /** This LB's entries of the server set, written in batches. */
  readonly #entryWriter: EntryWriter;
  #assignAgain = false;
  /** True once the fleet was listed under the current lease. */
  #listed = false;

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
    this.#entryWriter = new EntryWriter({
      store: options.store,
      keys: options.keys,
      lbId: options.lbId,
      now: this.#now,
      log: this.#log,
      // Seen at once here; the watch brings the same change again, which changes nothing.
      written: (key, value, revision) =>
        void this.#apply({ type: "put", key, value, modRevision: revision }, revision),
      afterBatch: () => {
        this.#contacted();
        this.#reassign();
      },
    });
  }

  /**
   * Joins the fleet: a lease, the member key, a full listing, a watch, the
   * first claims. When etcd cannot be reached yet, it says so and keeps
   * trying (every lease renewal interval) instead of failing.
   */
  async start(): Promise<void> {
    try {
      await this.#join();
    } catch (e) {
      this.#log.warn("etcd unreachable at start; joining the fleet when it answers", {
        error: (e as Error).message,
      });
    }
    this.#keepAliveTimer = setInterval(
      () => void this.#keepAlive(),
      Math.max(200, (this.#o.leaseTtlSec * 1000) / 3),
    );
    this.#refreshTimer = setInterval(() => void this.#refresh(), this.#o.refreshMs);
    this.#unsubscribe = this.#o.monitor.subscribe((address) => void this.#changed(address));
  }

  /** Leaves the fleet: revokes the lease so that the others take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#keepAliveTimer);
    clearInterval(this.#refreshTimer);
    clearTimeout(this.#debounce);
    this.#unsubscribe?.();
    this.#watching?.close();
    await this.#assigning;
    // Bounded: with etcd away the lease just expires on its own.
    if (this.#lease) await settlesWithin(this.#o.store.revoke(this.#lease).catch(() => {}), 1000);
  }

  /** Calls `listener` when what the fleet shows of a server changes. */
  subscribe(listener: (address: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The fleet now. */
  state(): FleetState {
    const servers = new Map<string, FleetServer>();
    for (const address of this.#addresses()) servers.set(address, this.#server(address));
    const since = this.#now() - this.#contact;
    return {
      lbId: this.lbId,
      members: [...this.#members],
      staleMs: since > this.#o.leaseTtlSec * 1000 ? since : undefined,
      servers,
    };
  }

  /** One server, or undefined when the fleet does not know it. */
  server(address: string): FleetServer | undefined {
    return this.#mirror.entries.has(address) ? this.#server(address) : undefined;
  }

  /** Servers in the fleet's set, sorted. */
  addresses(): string[] {
    return this.#addresses();
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
    this.#contacted();
    for (const lb of everywhere ? [...lbs] : [this.lbId]) {
      this.#apply({
        type: "delete",
        key: this.#o.keys.server(address, lb),
        value: "",
        modRevision: 0,
      }, 0);
    }
    this.#reassign();
    return true;
  }

  // --- membership ---------------------------------------------------------------

  async #join(): Promise<void> {
    const { store, keys } = this.#o;
    this.#lease = undefined;
    this.#listed = false;
    // Claims of an older lease went with it: stop checking those servers until claimed again.
    for (const address of [...this.#claims.keys()]) this.#lost(address);
    const lease = await store.grant(this.#o.leaseTtlSec);
    await store.put(
      keys.member(this.lbId),
      JSON.stringify({ ...this.#o.info, since: new Date(this.#now()).toISOString() }),
      lease,
    );
    this.#lease = lease;
    await this.#relist();
    this.#log.info("joined the fleet", {
      members: this.#members.join(","),
      servers: this.#mirror.entries.size,
      lease_ttl_s: this.#o.leaseTtlSec,
    });
  }

  async #keepAlive(): Promise<void> {
    if (this.#stopped) return;
    if (!this.#lease) {
      await this.#join().catch((e) => this.#unreachable(e as Error));
      return;
    }
    try {
      const ttl = await this.#o.store.keepAlive(this.#lease);
      this.#contacted();
      if (ttl > 0) {
        if (!this.#listed) await this.#relist();
        for (const address of [...this.#entryWriter.pending]) {
          await this.addServer(address);
          if (this.#entryWriter.pending.has(address)) break; // still not answering
        }
        return;
      }
      // The lease expired while etcd could not be reached (or this LB was paused):
      // the claims went with it. Join again.
      this.#log.warn("fleet lease expired; joining again", { lease: this.#lease });
      this.#lease = undefined;
      await this.#join();
    } catch (e) {
      this.#unreachable(e as Error);
    }
  }

  #contacted(): void {
    this.#contact = this.#now();
    if (this.#staleLogged) {
      this.#staleLogged = false;
      this.#log.info("etcd reachable again");
      this.#notifyAll();
    }
  }

  #unreachable(e: Error): void {
    const ms = this.#now() - this.#contact;
    if (ms > this.#o.leaseTtlSec * 1000 && !this.#staleLogged) {
      this.#staleLogged = true;
      // Checking goes on; what is served from etcd is marked stale.
      this.#log.warn("etcd unreachable: serving the last known fleet verdicts, marked stale", {
        error: e.message,
        since_ms: ms,
      });
      this.#notifyAll();
    }
  }

  // --- the fleet's state, from a listing and a watch ------------------------------

  async #relist(): Promise<void> {
    const { kvs, revision } = await this.#o.store.list(this.#o.keys.prefix);
    this.#contacted();
    this.#mirror.clear();
    for (const kv of kvs) {
      this.#apply(
        { type: "put", key: kv.key, value: kv.value, modRevision: kv.modRevision },
        kv.createRevision,
      );
    }
    this.#members = [...this.#mirror.seenMembers].sort();
    this.#listed = true;
    this.#watching?.close();
    this.#watching = this.#o.store.watch(
      this.#o.keys.prefix,
      revision + 1,
      (events) => this.#onEvents(events),
      (e) => this.#onWatchError(e),
    );
    this.#reassign();
  }

  #onWatchError(e: StoreError): void {
    this.#log.warn("fleet watch ended; listing again", { error: e.message });
    void this.#relist().catch((err) => this.#unreachable(err as Error));
  }

  #onEvents(events: WatchEvent[]): void {
    this.#contacted();
    let members = false;
    let assignment = false;
    for (const e of events) {
      const kind = this.#apply(e, e.modRevision);
      if (kind === "members") members = true;
      // Verdicts change no assignment: most events are verdicts.
      else if (kind === "servers" || kind === "owners") assignment = true;
    }
    if (members) this.#membersChanged();
    else if (assignment) this.#reassign();
  }

  /** Applies one change to the view; returns its family. */
  #apply(e: WatchEvent, created: number): string | undefined {
    const a = this.#mirror.apply(e, created);
    if (!a) return undefined;
    // Another LB removed our claim (our lease expired): it is over.
    if (a.kind === "owners" && !a.put && a.lb === this.lbId && this.#claims.has(a.address)) {
      this.#lost(a.address);
    }
    if (a.kind === "verdicts") this.#notify(a.address);
    return a.kind;
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
      this.#reassign();
      this.#notifyAll();
    }, this.#o.debounceMs);
  }

  // --- claims -----------------------------------------------------------------------

  /**
   * Claims the servers this LB should check and releases the others: one
   * pass at a time, and requests made during a pass are folded into one more
   * pass after it. (Queueing a pass per request let a busy fleet fall ever
   * further behind: at 1,000 servers ownership never settled.)
   */
  #reassign(): void {
    if (this.#assignRunning) {
      this.#assignAgain = true;
      return;
    }
    this.#assignRunning = true;
    this.#assigning = (async () => {
      try {
        do {
          this.#assignAgain = false;
          await this.#assign();
        } while (this.#assignAgain && !this.#stopped);
      } catch (e) {
        this.#unreachable(e as Error);
      } finally {
        this.#assignRunning = false;
      }
    })();
  }

  async #assign(): Promise<void> {
    if (this.#stopped || !this.#lease) return;
    const k = this.#o.checkersPerServer;
    // Only members that are live count; this LB counts once its own key is seen.
    const members = this.#members.includes(this.lbId)
      ? this.#members
      : [...this.#members, this.lbId].sort();
    const want = new Set<string>();
    for (const address of this.#mirror.entries.keys()) {
      if (owners(address, members, k).includes(this.lbId)) want.add(address);
    }
    // Many at a time: a dead LB's servers are taken over by claiming hundreds.
    const release = [...this.#claims.keys()].filter((a) => !want.has(a));
    for (let i = 0; i < release.length; i += _CLAIMS_AT_ONCE) {
      await Promise.all(release.slice(i, i + _CLAIMS_AT_ONCE).map((a) => this.#release(a)));
    }
    // One line per pass, not per server: a takeover claims hundreds.
    if (release.length > 0) {
      this.#log.info("servers handed over", {
        count: release.length,
        servers: fewOf(release),
        checking: this.#claims.size,
      });
    }
    const claim = [...want].filter((a) => !this.#claims.has(a));
    const batches: string[][] = [];
    for (let i = 0; i < claim.length; i += _CLAIMS_PER_TXN) {
      batches.push(claim.slice(i, i + _CLAIMS_PER_TXN));
    }
    for (let i = 0; i < batches.length; i += _CLAIM_TXNS_AT_ONCE) {
      if (this.#stopped) return;
      await Promise.all(batches.slice(i, i + _CLAIM_TXNS_AT_ONCE).map((b) => this.#claimMany(b)));
    }
    const claimed = claim.filter((a) => this.#claims.has(a));
    if (claimed.length > 0) {
      this.#log.info("checking servers for the fleet", {
        count: claimed.length,
        servers: fewOf(claimed),
        checking: this.#claims.size,
      });
    }
  }

  /**
   * Claims servers in one transaction that creates every owner key or none;
   * when one exists already (ours from an earlier pass), one by one.
   */
  async #claimMany(addresses: readonly string[]): Promise<void> {
    if (addresses.length === 1) return await this.#claim(addresses[0]!);
    const { store, keys } = this.#o;
    const owned = addresses.map((a) => keys.owner(a, this.lbId));
    const at = new Date(this.#now()).toISOString();
    const r = await store.txn(
      owned.map((key) => ({ key, target: "create_revision" as const, equals: 0 })),
      owned.map((key) => ({ put: key, value: at, lease: this.#lease! })),
    );
    this.#contacted();
    if (!r.succeeded) {
      await Promise.all(addresses.map((a) => this.#claim(a)));
      return;
    }
    // Created together: each key's creation revision is the transaction's.
    for (const a of addresses) this.#claimed(a, r.revision);
  }

  async #claim(address: string): Promise<void> {
    const { store, keys } = this.#o;
    const key = keys.owner(address, this.lbId);
    const r = await store.txn(
      [{ key, target: "create_revision", equals: 0 }],
      [{ put: key, value: new Date(this.#now()).toISOString(), lease: this.#lease! }],
    );
    this.#contacted();
    let revision = r.revision;
    if (!r.succeeded) {
      // Our key from an earlier pass of this lease: take its revision.
      const { kvs } = await store.list(key, true);
      const mine = kvs.find((kv) => kv.lease === this.#lease);
      if (!mine) return;
      revision = mine.createRevision;
    }
    this.#claimed(address, revision);
  }

  /** Checks a server whose owner key this LB now holds, created at `revision`. */
  #claimed(address: string, revision: number): void {
    this.#claims.set(address, revision);
    try {
      this.#o.monitor.addServer(parseServerAddress(address));
    } catch { /* already checked locally */ }
    this.#log.debug("checking server for the fleet", { server: address });
  }

  async #release(address: string): Promise<void> {
    this.#claims.delete(address);
    this.#written.delete(address);
    await this.#o.monitor.removeServer(address);
    await this.#o.store.delete(this.#o.keys.owner(address, this.lbId)).catch(() => {});
    this.#log.debug("server handed over", { server: address });
  }

  /** Our claim is gone (a fenced write was refused, or the key was deleted): stop checking. */
  #lost(address: string): void {
    if (!this.#claims.delete(address)) return;
    this.#written.delete(address);
    void this.#o.monitor.removeServer(address);
    this.#log.warn("lost the claim on a server; no longer checking it", { server: address });
    this.#reassign();
  }

  // --- verdicts -----------------------------------------------------------------------

  async #changed(address: string): Promise<void> {
    if (this.#claims.has(address)) await this.#write(address, false);
    this.#notify(address);
  }

  /**
   * Rewrites every owned server's verdict (the figures others show), 50 to
   * a transaction; a batch refused because one claim is gone is redone one
   * by one, which finds the lost claim.
   */
  async #refresh(): Promise<void> {
    const { store, keys } = this.#o;
    const owned = [...this.#claims.entries()];
    for (let i = 0; i < owned.length && !this.#stopped; i += 50) {
      const batch = owned.slice(i, i + 50).flatMap(([address, claim]) => {
        const view = this.#o.monitor.server(address);
        return view && view.state !== "UNKNOWN"
          ? [{ address, claim, v: ownerVerdict(view, this.lbId, this.#now()) }]
          : [];
      });
      if (batch.length === 0) continue;
      try {
        const r = await store.txn(
          batch.map((b) => ({
            key: keys.owner(b.address, this.lbId),
            target: "create_revision" as const,
            equals: b.claim,
          })),
          batch.map((b) => ({
            put: keys.verdict(b.address, this.lbId),
            value: JSON.stringify(b.v),
          })),
        );
        this.#contacted();
        if (r.succeeded) { for (const b of batch) this.#written.set(b.address, b.v); }
        else for (const b of batch) await this.#write(b.address, true);
      } catch (e) {
        this.#unreachable(e as Error);
        return;
      }
    }
  }

  /** Writes this LB's verdict on a server it owns, fenced by its owner key's revision. */
  async #write(address: string, refresh: boolean): Promise<void> {
    const claim = this.#claims.get(address);
    const view = this.#o.monitor.server(address);
    if (claim === undefined || !view || this.#stopped) return;
    const v = ownerVerdict(view, this.lbId, this.#now());
    // An owner that has not decided yet has nothing to say (and must not hide a decided verdict).
    if (v.state === "UNKNOWN") return;
    const before = this.#written.get(address);
    if (!refresh && !verdictChanged(before, v)) return;
    const { store, keys } = this.#o;
    const previous = [...(this.#mirror.verdicts.get(address)?.keys() ?? [])]
      .filter((lb) => lb !== this.lbId && !this.#members.includes(lb));
    try {
      const r = await store.txn(
        [{ key: keys.owner(address, this.lbId), target: "create_revision", equals: claim }],
        [
          { put: keys.verdict(address, this.lbId), value: JSON.stringify(v) },
          // A previous owner's verdict stood until now; this one replaces it.
          ...previous.map((lb) => ({ delete: keys.verdict(address, lb) })),
        ],
      );
      this.#contacted();
      if (r.succeeded) this.#written.set(address, v);
      else this.#lost(address);
    } catch (e) {
      this.#unreachable(e as Error);
    }
  }

  // --- reading --------------------------------------------------------------------------

  #addresses(): string[] {
    const all = new Set([...this.#mirror.entries.keys()]);
    return [...all].sort();
  }

  #server(address: string): FleetServer {
    const owned = owners(address, this.#members, this.#o.checkersPerServer);
    const verdicts = [...(this.#mirror.verdicts.get(address)?.values() ?? [])];
    // This LB's own verdict is fresher than what it last wrote.
    const view = this.#claims.has(address) ? this.#o.monitor.server(address) : undefined;
    const mine = view ? ownerVerdict(view, this.lbId, this.#now()) : undefined;
    // Until its own check decides, what this LB last wrote still counts.
    const all = mine && mine.state !== "UNKNOWN"
      ? [...verdicts.filter((v) => v.by !== this.lbId), mine]
      : verdicts;
    return {
      address,
      owners: owned,
      verdict: combine(all, owned),
      mine: this.#claims.has(address),
    };
  }

  #notify(address: string): void {
    for (const l of this.#listeners) l(address);
  }

  #notifyAll(): void {
    for (const a of this.#mirror.entries.keys()) this.#notify(a);
  }
}
