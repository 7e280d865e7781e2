/**
 * A watch over etcd v3's JSON gateway: a streamed POST to `/v3/watch` on one
 * member, one JSON message per line. Bound to the store's current member;
 * when that changes, or the stream ends unasked, it resumes on the current
 * one from the next revision, so no event is lost or repeated. A compacted
 * start revision ends it with a `compacted` error (the caller lists again).
 *
 * @module
 */

import { StoreError, type WatchEvent, type Watching } from "./store.ts";
import { b64, decodeKv, rangeEnd, type RawKv } from "./etcd_wire.ts";

/** The store's side of a watch: its members, and whom to tell that one failed. */
export interface WatchHost {
  /** The member at `index` (wrapping), its client URL. */
  endpoint(index: number): string;
  /** The index of the current member. */
  readonly currentIndex: number;
  /** True once the store is closed: no watch starts again. */
  readonly closed: boolean;
  /** The member at `index` did not answer: the store moves on. */
  failed(index: number): void;
}

/** A watch bound to one member at a time, resuming from the next revision on another. */
export class EtcdWatch implements Watching {
  #next: number;
  #abort: AbortController | undefined;
  #closed = false;
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly store: WatchHost,
    readonly prefix: string,
    fromRevision: number,
    readonly onEvents: (events: WatchEvent[], revision: number) => void,
    readonly onError: (e: StoreError) => void,
    readonly onClosed: () => void,
  ) {
    this.#next = fromRevision;
  }

  /** Opens the stream on the current member, from the next revision. */
  start(): void {
    if (this.#closed || this.store.closed) return;
    const index = this.store.currentIndex;
    const abort = new AbortController();
    this.#abort = abort;
    void this.#run(index, abort).catch(() => {}).finally(() => {
      if (this.#abort !== abort || this.#closed) return;
      // The stream ended without being asked to: that member is unwell.
      this.store.failed(index);
      this.#again();
    });
  }

  /** The store moved to another member: follow it. */
  memberChanged(): void {
    if (this.#closed) return;
    this.#abort?.abort();
    this.#abort = undefined;
    this.#again();
  }

  /** Ends the watch for good. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#abort?.abort();
    this.onClosed();
  }

  #again(): void {
    clearTimeout(this.#retry);
    this.#retry = setTimeout(() => this.start(), 200);
  }

  async #run(index: number, abort: AbortController): Promise<void> {
    const res = await fetch(`${this.store.endpoint(index)}/v3/watch`, {
      method: "POST",
      body: JSON.stringify({
        create_request: {
          key: b64(this.prefix),
          range_end: rangeEnd(this.prefix),
          start_revision: String(this.#next),
        },
      }),
      signal: abort.signal,
    });
    if (!res.body) return;
    const lines = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await lines.read();
      if (done) return;
      buffered += value;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) this.#line(line, abort);
      }
    }
  }

  #line(line: string, abort: AbortController): void {
    if (this.#abort !== abort) return;
    const msg = JSON.parse(line) as {
      result?: {
        header?: { revision?: string };
        events?: { type?: string; kv: RawKv }[];
        compact_revision?: string;
        canceled?: boolean;
      };
      error?: unknown;
    };
    const r = msg.result;
    if (!r) return;
    if (r.compact_revision && Number(r.compact_revision) > 0) {
      this.#closed = true;
      abort.abort();
      this.onClosed();
      this.onError(
        new StoreError(
          "compacted",
          `revision ${this.#next} was compacted (now ${r.compact_revision})`,
        ),
      );
      return;
    }
    if (!r.events?.length) return;
    const events: WatchEvent[] = r.events.map((e) => {
      const kv = decodeKv(e.kv);
      return {
        type: e.type === "DELETE" ? "delete" : "put",
        key: kv.key,
        value: kv.value,
        modRevision: kv.modRevision,
      };
    });
    const revision = Number(r.header?.revision ?? events.at(-1)!.modRevision);
    this.#next = Math.max(this.#next, events.at(-1)!.modRevision + 1);
    this.onEvents(events, revision);
  }
}
