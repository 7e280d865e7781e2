/**
 * Who may hold the agent's session slots. One valid token, or one client
 * address, must not be able to take every slot and lock honest LBs out:
 *
 * - connections from one client address are capped;
 * - authenticated sessions of one LB id are capped, so LB ids that are not
 *   abusing the agent keep room;
 * - a token backs at most one live session (the LB signs a fresh token for
 *   every dial);
 * - at that cap, a new session of an LB id replaces its oldest session from
 *   the same address rather than being refused: that is the same LB,
 *   reconnected after a restart while its old sessions linger until their
 *   idle timeout, and it must never be locked out by its own ghosts.
 *
 * Pure bookkeeping: the agent asks and acts.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
/** Limits of {@linkcode Admission}. */
export interface AdmissionLimits {
  /** Connections at once from one client address. Default 64. */
  maxPerAddress?: number;
  /** Authenticated sessions at once of one LB id. Default 16. */
  maxPerLb?: number;
}

/** What to do with a session that just proved its token. */
export type AdmitDecision<K> =
  | {
    ok: true; /** Older sessions of the same LB from the same address: close them. */
    supersede: K[];
  }
  | { ok: false; reason: string };

interface _Held {
  address: string;
  lbId?: string;
  token?: string;
}

/**
 * Tracks the sessions of one agent by a key of the caller's choosing.
 *
 * @example
 * ```ts
 * import { Admission } from "./admission.ts";
 * const a = new Admission<string>({ maxPerAddress: 2, maxPerLb: 1 });
 * a.connect("s1", "10.0.0.9"); // undefined: accepted
 * a.admit("s1", "lb-1", "token-1"); // { ok: true, supersede: [] }
 * a.connect("s2", "10.0.0.9");
 * a.admit("s2", "lb-1", "token-1"); // { ok: false, reason: "token already backs another session" }
 * ```
 */
export class Admission<K> {
  readonly #maxPerAddress: number;
  readonly #maxPerLb: number;
  readonly #held = new Map<K, _Held>();
  readonly #perAddress = new Map<string, number>();
  readonly #tokens = new Set<string>();

  constructor(limits: AdmissionLimits = {}) {
    this.#maxPerAddress = limits.maxPerAddress ?? AGENT_DEFAULTS.maxConnectionsPerAddress;
    this.#maxPerLb = limits.maxPerLb ?? AGENT_DEFAULTS.maxSessionsPerLb;
  }

  /** A new connection from `address` (the client's IP): the reason to refuse it, or undefined. */
  connect(key: K, address: string): string | undefined {
    const n = this.#perAddress.get(address) ?? 0;
    if (n >= this.#maxPerAddress) {
      return `too many connections from ${address} (${this.#maxPerAddress})`;
    }
    this.#perAddress.set(address, n + 1);
    this.#held.set(key, { address });
    return undefined;
  }

  /** The session `key` presented a valid `token` as `lbId`. */
  admit(key: K, lbId: string, token: string): AdmitDecision<K> {
    const me = this.#held.get(key);
    if (!me) return { ok: false, reason: "unknown session" };
    if (this.#tokens.has(token)) {
      return { ok: false, reason: "token already backs another session" };
    }
    // Sessions of this LB id, oldest first (a Map keeps insertion order).
    const same: K[] = [];
    const sameAddress: K[] = [];
    for (const [k, h] of this.#held) {
      if (k === key || h.lbId !== lbId) continue;
      same.push(k);
      if (h.address === me.address) sameAddress.push(k);
    }
    const supersede: K[] = [];
    if (same.length >= this.#maxPerLb) {
      // At the cap: the LB's own older sessions from this address (ghosts
      // of a restart) make room; another address's never do.
      const excess = same.length - this.#maxPerLb + 1;
      if (sameAddress.length < excess) {
        return {
          ok: false,
          reason: `too many sessions of LB ${JSON.stringify(lbId)} (${this.#maxPerLb})`,
        };
      }
      supersede.push(...sameAddress.slice(0, excess));
      for (const k of supersede) this.release(k);
    }
    me.lbId = lbId;
    me.token = token;
    this.#tokens.add(token);
    return { ok: true, supersede };
  }

  /** The session `key` ended. */
  release(key: K): void {
    const h = this.#held.get(key);
    if (!h) return;
    this.#held.delete(key);
    if (h.token !== undefined) this.#tokens.delete(h.token);
    const n = (this.#perAddress.get(h.address) ?? 1) - 1;
    if (n <= 0) this.#perAddress.delete(h.address);
    else this.#perAddress.set(h.address, n);
  }

  /** Sessions tracked. */
  get size(): number {
    return this.#held.size;
  }
}
