/**
 * etcd v3's JSON gateway encoding: keys and values in base64, revisions as
 * decimal strings, prefixes as a key and a range end. Pure; the store and
 * its watches (`etcd.ts`, `etcd_watch.ts`) send and read these shapes.
 *
 * @module
 */

import { toBase64 } from "../util/bytes.ts";
import type { Compare, KeyValue, Operation } from "./store.ts";

/** A key-value as the gateway sends it. */
export interface RawKv {
  key: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  lease?: string;
}

const _enc = new TextEncoder();
const _dec = new TextDecoder();

/** Text as the gateway's base64. */
export const b64 = (text: string): string => toBase64(_enc.encode(text));

const _unb64 = (b64: string | undefined): string =>
  b64 ? _dec.decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))) : "";

/**
 * etcd's range_end for every key under `prefix` (base64): the prefix with
 * its last byte below 0xff raised by one, or "\0" (every key) when there is
 * none.
 *
 * @example
 * ```ts
 * import { rangeEnd } from "./etcd_wire.ts";
 * atob(rangeEnd("/qhcp/")); // "/qhcp0"
 * ```
 */
export function rangeEnd(prefix: string): string {
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

/** The revision in a response's header (0 without one). */
export const headerRevision = (r: Record<string, unknown>): number =>
  Number((r.header as { revision?: string } | undefined)?.revision ?? 0);

/** A gateway key-value as a {@linkcode KeyValue}. */
export const decodeKv = (raw: RawKv): KeyValue => ({
  key: _unb64(raw.key),
  value: _unb64(raw.value),
  createRevision: Number(raw.create_revision ?? 0),
  modRevision: Number(raw.mod_revision ?? 0),
  lease: raw.lease ?? "0",
});

/** One operation of a transaction, as the gateway takes it. */
export const encodeOp = (op: Operation): Record<string, unknown> =>
  "put" in op
    ? {
      request_put: {
        key: b64(op.put),
        value: b64(op.value),
        ...(op.lease ? { lease: op.lease } : {}),
      },
    }
    : {
      request_delete_range: {
        key: b64(op.delete),
        ...(op.prefix ? { range_end: rangeEnd(op.delete) } : {}),
      },
    };

/** One condition of a transaction, as the gateway takes it. */
export const encodeCompare = (c: Compare): Record<string, string> => {
  const key = b64(c.key);
  switch (c.target) {
    case "create_revision":
      return { key, target: "CREATE", result: "EQUAL", create_revision: String(c.equals) };
    case "mod_revision":
      return { key, target: "MOD", result: "EQUAL", mod_revision: String(c.equals) };
    case "value":
      return { key, target: "VALUE", result: "EQUAL", value: b64(c.equals) };
  }
};
