/**
 * The fleet as this LB knows it from etcd: live members, server entries and
 * owners' verdicts (owner keys are only reported). Pure: a
 * listing and then watch events are applied to it in revision order, and it
 * says what each change touched; the `Fleet` decides what to do about it.
 *
 * @module
 */

import type { WatchEvent } from "./store.ts";
import type { FleetKeys, KeyKind } from "./keys.ts";
import { combine, type FleetVerdict, type OwnerVerdict, parseVerdict } from "./verdicts.ts";

/** What one applied change touched. */
export interface Applied {
  kind: KeyKind;
  /** The server (empty for a member). */
  address: string;
  /** The LB the key belongs to. */
  lb: string;
  put: boolean;
}

/**
 * The fleet's keys as maps.
 *
 * @example
 * ```ts
 * import { FleetKeys } from "./keys.ts";
 * import { FleetMirror } from "./mirror.ts";
 * const keys = new FleetKeys("/qhcp/");
 * const view = new FleetMirror(keys);
 * view.apply({ type: "put", key: keys.server("10.0.0.7:4243", "lb-1"), value: "{}", modRevision: 5 });
 * view.entries.get("10.0.0.7:4243"); // Set { "lb-1" }
 * ```
 */
export class FleetMirror {
  /** Live members as in etcd (the Fleet applies changes after a debounce). */
  readonly seenMembers: Set<string> = new Set();
  /** servers/<address>/<lb> entries: the LBs that list each server. */
  readonly entries: Map<string, Set<string>> = new Map();
  /** verdicts/<address>/<lb>. */
  readonly verdicts: Map<string, Map<string, OwnerVerdict>> = new Map();
  readonly #keys: FleetKeys;

  constructor(keys: FleetKeys) {
    this.#keys = keys;
  }

  /**
   * The owners' verdicts on a server combined (`verdicts.ts`), its owners
   * being `owned`. `mine`, an LB's live verdict, stands in for what that LB
   * last wrote once it has decided (until then, what it wrote still counts).
   */
  verdictOf(
    address: string,
    owned: readonly string[],
    mine?: OwnerVerdict,
  ): FleetVerdict | undefined {
    const written = [...(this.verdicts.get(address)?.values() ?? [])];
    const all = mine && mine.state !== "UNKNOWN"
      ? [...written.filter((v) => v.by !== mine.by), mine]
      : written;
    return combine(all, owned);
  }

  /** Forgets everything (before a new listing). */
  clear(): void {
    this.seenMembers.clear();
    this.entries.clear();
    this.verdicts.clear();
  }

  /**
   * Applies one change. Undefined for a key that is not the fleet's.
   */
  apply(e: WatchEvent): Applied | undefined {
    const k = this.#keys.parse(e.key);
    if (!k) return undefined;
    const put = e.type === "put";
    switch (k.kind) {
      case "members":
        if (put) this.seenMembers.add(k.lb);
        else this.seenMembers.delete(k.lb);
        break;
      case "servers": {
        const set = this.entries.get(k.address) ?? new Set();
        if (put) set.add(k.lb);
        else set.delete(k.lb);
        if (set.size > 0) this.entries.set(k.address, set);
        else this.entries.delete(k.address);
        break;
      }
      case "owners":
        // Nothing is kept of owner keys: the Fleet acts on the change itself
        // (one of its claims deleted, a reassignment).
        break;
      case "verdicts": {
        const map = this.verdicts.get(k.address) ?? new Map<string, OwnerVerdict>();
        const v = put ? parseVerdict(e.value) : undefined;
        if (v) map.set(k.lb, v);
        else map.delete(k.lb);
        this.verdicts.set(k.address, map);
        break;
      }
    }
    return { ...k, put };
  }
}
