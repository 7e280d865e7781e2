/**
 * Slicing a list into batches, for work that a peer takes a bounded amount
 * of at a time (etcd transactions, requests in flight).
 *
 * @module
 */

/**
 * `items` in consecutive batches of at most `size` (the last may be
 * shorter); none for an empty list.
 *
 * @throws {RangeError} when `size` is not a positive integer
 *
 * @example
 * ```ts
 * import { chunks } from "./chunks.ts";
 * chunks([1, 2, 3, 4, 5], 2); // [[1, 2], [3, 4], [5]]
 * ```
 */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`chunk size must be a positive integer, got ${size}`);
  }
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
