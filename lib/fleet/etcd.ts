/**
 * The {@linkcode Store} over etcd v3's JSON gateway (HTTP/1.1 and JSON on the
 * client port, keys and values base64): the only module that talks to etcd.
 * Chosen over the npm `etcd3` package (gRPC through grpc-js) for how each
 * behaved when etcd members were killed, stopped and restarted here (see
 * docs/FLEET.md): plain `fetch` with a timeout per request, no HTTP/2 layer.
 *
 * Every request goes to the current member; one that does not answer in time
 * (or answers 5xx) makes the next member current, and the request is tried
 * there, each member once. Watches are bound to a member: when it stops
 * being current they resume on the new one from the next revision, so no
 * event is lost or repeated.
 *
 * @module
 */

import { toBase64 } from "../util/bytes.ts";
import {
  type Compare,
  type KeyValue,
  type Operation,
  type Store,
  StoreError,
  type WatchEvent,
  type Watching,
} from "./store.ts";

/** Options of {@linkcode createEtcdStore}. */
export interface EtcdOptions {
  /** Client URLs of the members, e.g. `http://10.0.0.1:2379`. */
  endpoints: readonly string[];
  /** Each request must be answered within this, ms. Default 1000. */
  requestTimeoutMs?: number;
  /**
   * Keys per request of a listing, default 500: a fleet of thousands of
   * servers is listed in pages, each small enough for the request timeout
   * on a loaded etcd, all read at the first page's revision.
   */
  listPageSize?: number;
}

interface _RawKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

const _enc = new TextEncoder();
const _dec = new TextDecoder();

const _b64 = (text: string): string => toBase64(_enc.encode(text));
const _unb64 = (b64: string | undefined): string =>
  b64 ? _dec.decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))) : "";

/** etcd's range_end for every key under `prefix`: the prefix with its last byte + 1. */
function _rangeEnd(prefix: string): string {
  const bytes = _enc.encode(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = bytes.slice(0, i + 1);
      end[i]!++;
      return toBase64(end);
    }
  }
  return toBase64(new Uint8Array([0]));
}

const _revision = (r: Record<string, unknown>): number =>
  Number((r.header as { revision?: string } | undefined)?.revision ?? 0);

const _kv = (raw: _RawKv): KeyValue => ({
  key: _unb64(raw.key),
  value: _unb64(raw.value),
  createRevision: Number(raw.create_revision ?? 0),
  modRevision: Number(raw.mod_revision ?? 0),
  lease: raw.lease ?? "0",
});

const _op = (op: Operation) =>
  "put" in op
    ? {
      request_put: {
        key: _b64(op.put),
        value: _b64(op.value),
        ...(op.lease ? { lease: op.lease } : {}),
      },
    }
    : {
      request_delete_range: {
        key: _b64(op.delete),
        ...(op.prefix ? { range_end: _rangeEnd(op.delete) } : {}),
      },
    };

const _compare = (c: Compare) => {
  const key = _b64(c.key);
  switch (c.target) {
    case "create_revision":
      return { key, target: "CREATE", result: "EQUAL", create_revision: String(c.equals) };
    case "mod_revision":
      return { key, target: "MOD", result: "EQUAL", mod_revision: String(c.equals) };
    case "value":
      return { key, target: "VALUE", result: "EQUAL", value: _b64(c.equals) };
  }
};

/**
 * Creates a store over an etcd cluster.
 *
 * @example
 * ```ts
 * import { createEtcdStore } from "./etcd.ts";
 * const store = createEtcdStore({ endpoints: ["http://127.0.0.1:2379"] });
 * const lease = await store.grant(3);
 * await store.put("/qhcp/members/lb-1", "{}", lease);
 * ```
 */
export function createEtcdStore(options: EtcdOptions): Store {
  return new _EtcdStore(options);
}

class _EtcdStore implements Store {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #pageSize: number;
  #current = 0;
  readonly #watches = new Set<_Watch>();
  #closed = false;

  constructor(options: EtcdOptions) {
    if (options.endpoints.length === 0) throw new RangeError("etcd: no endpoint given");
    this.#endpoints = options.endpoints.map((e) => e.replace(/\/+$/, ""));
    this.#timeoutMs = options.requestTimeoutMs ?? 1000;
    this.#pageSize = options.listPageSize ?? 500;
  }

  /** The member requests go to now. */
  get current(): string {
    return this.#endpoints[this.#current]!;
  }

  async grant(ttlSec: number): Promise<string> {
    const r = await this.#call("/v3/lease/grant", { TTL: ttlSec });
    return String(r.ID);
  }

  async keepAlive(lease: string): Promise<number> {
    const r = await this.#call("/v3/lease/keepalive", { ID: lease });
    const result = (r.result ?? {}) as { TTL?: string };
    return Number(result.TTL ?? 0);
  }

  async revoke(lease: string): Promise<void> {
    await this.#call("/v3/lease/revoke", { ID: lease }, true);
  }

  async list(prefix: string, exact = false): Promise<{ kvs: KeyValue[]; revision: number }> {
    if (exact) {
      const r = await this.#call("/v3/kv/range", { key: _b64(prefix) });
      return { kvs: ((r.kvs ?? []) as _RawKv[]).map(_kv), revision: _revision(r) };
    }
    // Pages in key order, each from just after the last key, all at the first one's revision.
    const kvs: KeyValue[] = [];
    let from = prefix;
    let revision = 0;
    for (;;) {
      const r = await this.#call("/v3/kv/range", {
        key: _b64(from),
        range_end: _rangeEnd(prefix),
        limit: this.#pageSize,
        ...(revision > 0 ? { revision } : {}),
      });
      if (revision === 0) revision = _revision(r);
      const page = ((r.kvs ?? []) as _RawKv[]).map(_kv);
      kvs.push(...page);
      if (r.more !== true || page.length === 0) return { kvs, revision };
      from = page[page.length - 1]!.key + "\0";
    }
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const r = await this.#call("/v3/kv/put", {
      key: _b64(key),
      value: _b64(value),
      ...(lease ? { lease } : {}),
    });
    return _revision(r);
  }

  async delete(key: string, prefix = false): Promise<void> {
    await this.#call("/v3/kv/deleterange", {
      key: _b64(key),
      ...(prefix ? { range_end: _rangeEnd(key) } : {}),
    });
  }

  async txn(
    compare: readonly Compare[],
    success: readonly Operation[],
    failure: readonly Operation[] = [],
  ): Promise<{ succeeded: boolean; revision: number }> {
    const r = await this.#call("/v3/kv/txn", {
      compare: compare.map(_compare),
      success: success.map(_op),
      failure: failure.map(_op),
    });
    return {
      succeeded: r.succeeded === true,
      revision: _revision(r),
    };
  }

  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    onError: (e: StoreError) => void,
  ): Watching {
    const w = new _Watch(
      this,
      prefix,
      fromRevision,
      onEvents,
      onError,
      () => this.#watches.delete(w),
    );
    this.#watches.add(w);
    w.start();
    return w;
  }

  close(): Promise<void> {
    this.#closed = true;
    for (const w of [...this.#watches]) w.close();
    return Promise.resolve();
  }

  /** The member at `index`, for a watch. */
  endpoint(index: number): string {
    return this.#endpoints[index % this.#endpoints.length]!;
  }

  get currentIndex(): number {
    return this.#current;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A member did not answer: the next one becomes current, and watches move to it. */
  failed(index: number): void {
    if (index !== this.#current) return;
    this.#current = (this.#current + 1) % this.#endpoints.length;
    for (const w of this.#watches) w.memberChanged();
  }

  /**
   * POSTs to the current member, then to each other one in turn. A 4xx is
   * the request's own fault (`rejected`, or `{}` with `notFoundOk`); no
   * answer from any member is `unavailable`.
   */
  async #call(
    path: string,
    body: unknown,
    notFoundOk = false,
  ): Promise<Record<string, unknown>> {
    let last = "";
    for (let tried = 0; tried < this.#endpoints.length; tried++) {
      const index = this.#current;
      const url = this.#endpoints[index]! + path;
      let res: Response;
      try {
        res = await fetch(url, {
          method: "POST",
          body: JSON.stringify(body),
          headers: { "content-type": "application/json" },
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      } catch (e) {
        last = `${url}: ${
          (e as Error).name === "TimeoutError"
            ? `no answer within ${this.#timeoutMs} ms`
            : (e as Error).message
        }`;
        this.failed(index);
        continue;
      }
      const text = await res.text().catch(() => "");
      if (res.status >= 500) {
        last = `${url}: HTTP ${res.status} ${text.slice(0, 200)}`;
        this.failed(index);
        continue;
      }
      let json: Record<string, unknown>;
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        throw new StoreError("rejected", `${url}: not JSON: ${text.slice(0, 200)}`);
      }
      if (!res.ok || typeof json.error === "string") {
        const message = String(json.message ?? json.error ?? `HTTP ${res.status}`);
        if (notFoundOk && /not found/i.test(message)) return {};
        throw new StoreError("rejected", `${url}: ${message}`);
      }
      return json;
    }
    throw new StoreError("unavailable", `etcd unreachable: ${last}`);
  }
}

/** A watch bound to one member at a time, resuming from the next revision on another. */
class _Watch implements Watching {
  #next: number;
  #abort: AbortController | undefined;
  #closed = false;
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly store: _EtcdStore,
    readonly prefix: string,
    fromRevision: number,
    readonly onEvents: (events: WatchEvent[], revision: number) => void,
    readonly onError: (e: StoreError) => void,
    readonly onClosed: () => void,
  ) {
    this.#next = fromRevision;
  }

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
          key: _b64(this.prefix),
          range_end: _rangeEnd(this.prefix),
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
        events?: { type?: string; kv: _RawKv }[];
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
      const kv = _kv(e.kv);
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
