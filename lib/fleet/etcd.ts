/**
 * The {@linkcode Store} over etcd v3's JSON gateway (HTTP/1.1 and JSON on the
 * client port, keys and values base64): the only module that talks to etcd.
 * Chosen over the npm `etcd3` package (gRPC through grpc-js) for how each
 * behaved when etcd members were killed, stopped and restarted here (see
 * docs/FLEET.md): plain `fetch` with a timeout per request, no HTTP/2 layer.
 *
 * Every request goes to the current member; one that does not answer in time
 * (or answers 5xx) makes the next member current, and the request is tried
 * there, each member once. Watches (`etcd_watch.ts`) are bound to a member:
 * when it stops being current they resume on the new one from the next
 * revision, so no event is lost or repeated. The gateway's encoding is in
 * `etcd_wire.ts`; these three files are all that talk to etcd.
 *
 * @module
 */

import {
  type Compare,
  type KeyValue,
  type Operation,
  type Store,
  StoreError,
  type WatchEvent,
  type Watching,
} from "./store.ts";
import {
  b64,
  decodeKv,
  encodeCompare,
  encodeOp,
  headerRevision,
  rangeEnd,
  type RawKv,
} from "./etcd_wire.ts";
import { EtcdWatch, type WatchHost } from "./etcd_watch.ts";

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

class _EtcdStore implements Store, WatchHost {
  readonly #endpoints: string[];
  readonly #timeoutMs: number;
  readonly #pageSize: number;
  #current = 0;
  readonly #watches = new Set<EtcdWatch>();
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
      const r = await this.#call("/v3/kv/range", { key: b64(prefix) });
      return { kvs: ((r.kvs ?? []) as RawKv[]).map(decodeKv), revision: headerRevision(r) };
    }
    // Pages in key order, each from just after the last key, all at the first one's revision.
    const kvs: KeyValue[] = [];
    let from = prefix;
    let revision = 0;
    for (;;) {
      const r = await this.#call("/v3/kv/range", {
        key: b64(from),
        range_end: rangeEnd(prefix),
        limit: this.#pageSize,
        ...(revision > 0 ? { revision } : {}),
      });
      if (revision === 0) revision = headerRevision(r);
      const page = ((r.kvs ?? []) as RawKv[]).map(decodeKv);
      kvs.push(...page);
      if (r.more !== true || page.length === 0) return { kvs, revision };
      from = page[page.length - 1]!.key + "\0";
    }
  }

  async put(key: string, value: string, lease?: string): Promise<number> {
    const r = await this.#call("/v3/kv/put", {
      key: b64(key),
      value: b64(value),
      ...(lease ? { lease } : {}),
    });
    return headerRevision(r);
  }

  async delete(key: string, prefix = false): Promise<void> {
    await this.#call("/v3/kv/deleterange", {
      key: b64(key),
      ...(prefix ? { range_end: rangeEnd(key) } : {}),
    });
  }

  async txn(
    compare: readonly Compare[],
    success: readonly Operation[],
    failure: readonly Operation[] = [],
  ): Promise<{ succeeded: boolean; revision: number }> {
    const r = await this.#call("/v3/kv/txn", {
      compare: compare.map(encodeCompare),
      success: success.map(encodeOp),
      failure: failure.map(encodeOp),
    });
    return {
      succeeded: r.succeeded === true,
      revision: headerRevision(r),
    };
  }

  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[], revision: number) => void,
    onError: (e: StoreError) => void,
  ): Watching {
    const w = new EtcdWatch(
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
