/**
 * The recent check history of one server: what `GET /api/servers/{address}`
 * and the dashboard's charts show. A time window (default 5 minutes) with a
 * cap on entries, so memory stays bounded whatever the interval.
 *
 * @module
 */

/** One check as remembered. */
export interface CheckRecord {
  /** When the outcome arrived (ms since epoch). */
  time: number;
  result: "ok" | "fail";
  rtt_ms: number | null;
  cpu: number | null;
  mem: number | null;
  /** Why it failed. */
  error?: string;
}

/** Most entries kept: one per 100 ms (the shortest interval) over 5 minutes. */
const _MAX_ENTRIES = 3000;

/** Options of {@linkcode CheckHistory}. */
export interface CheckHistoryOptions {
  /** How far back to keep, ms. Default 300000 (5 minutes). */
  windowMs?: number;
}

/** Remembers the checks of the last few minutes. */
export class CheckHistory {
  readonly #windowMs: number;
  readonly #max: number;
  #entries: CheckRecord[] = [];

  constructor(options: CheckHistoryOptions = {}) {
    this.#windowMs = options.windowMs ?? 300_000;
    this.#max = _MAX_ENTRIES;
  }

  /** Adds a record (records arrive in time order). */
  add(record: CheckRecord): void {
    this.#entries.push(record);
    if (this.#entries.length > this.#max * 1.25) this.#entries = this.#entries.slice(-this.#max);
  }

  /** The records of the window ending at `now`, oldest first; only the last `limit` if given. */
  entries(now: number, limit: number = this.#max): CheckRecord[] {
    const from = now - this.#windowMs;
    let i = 0;
    while (i < this.#entries.length && this.#entries[i]!.time < from) i++;
    if (i > 0) this.#entries = this.#entries.slice(i);
    return this.#entries.slice(-Math.min(limit, this.#max));
  }
}
