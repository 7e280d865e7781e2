/**
 * This LB's share of the fleet's servers, kept in step: each pass computes
 * the servers whose top K members include this LB (`assign.ts`), hands over
 * the claims it should no longer hold and claims the new ones (`claims.ts`).
 *
 * One pass runs at a time, and requests made during a pass fold into one
 * more pass after it: queueing a pass per request let a busy fleet fall ever
 * further behind (at 1,000 servers ownership never settled).
 *
 * @module
 */

import { fewOf } from "../util/text.ts";
import type { Logger } from "../util/log.ts";
import { assigned } from "./assign.ts";
import type { Claims } from "./claims.ts";

/** What an {@linkcode Assignment} reads and whom it tells. */
export interface AssignmentOptions {
  lbId: string;
  /** LBs that check each server (K). */
  checkersPerServer: number;
  claims: Claims;
  /** The fleet's servers. */
  servers: () => Iterable<string>;
  /** Live members as applied, sorted. */
  members: () => readonly string[];
  /** This LB's lease; no pass runs without one. */
  lease: () => string | undefined;
  stopped: () => boolean;
  /** A pass failed (etcd did not answer); the next request tries again. */
  failed: (e: Error) => void;
  log: Logger;
}

/** Claims and releases servers so that this LB checks its share. */
export class Assignment {
  readonly #o: AssignmentOptions;
  #passes: Promise<void> = Promise.resolve();
  #running = false;
  #again = false;

  constructor(options: AssignmentOptions) {
    this.#o = options;
  }

  /** Asks for a pass: now, or once after the one running. */
  request(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#passes = (async () => {
      try {
        do {
          this.#again = false;
          await this.#pass();
        } while (this.#again && !this.#o.stopped());
      } catch (e) {
        this.#o.failed(e as Error);
      } finally {
        this.#running = false;
      }
    })();
  }

  /** Resolves when no pass runs (the last requested one has ended). */
  settled(): Promise<void> {
    return this.#passes;
  }

  async #pass(): Promise<void> {
    const { claims, lbId, log } = this.#o;
    const lease = this.#o.lease();
    if (this.#o.stopped() || !lease) return;
    // Only members that are live count; this LB counts once its own key is seen.
    const seen = this.#o.members();
    const members = seen.includes(lbId) ? seen : [...seen, lbId].sort();
    const want = assigned(lbId, this.#o.servers(), members, this.#o.checkersPerServer);
    // Many at a time: a dead LB's servers are taken over by claiming hundreds.
    const release = claims.entries().map(([a]) => a).filter((a) => !want.has(a));
    await claims.release(release);
    // One line per pass, not per server: a takeover claims hundreds.
    if (release.length > 0) {
      log.info("servers handed over", {
        count: release.length,
        servers: fewOf(release),
        checking: claims.size,
      });
    }
    const claim = [...want].filter((a) => !claims.has(a));
    const claimed = await claims.claim(claim, lease, this.#o.stopped);
    if (claimed.length > 0) {
      log.info("checking servers for the fleet", {
        count: claimed.length,
        servers: fewOf(claimed),
        checking: claims.size,
      });
    }
  }
}
