/** Tests of lib/util building blocks that no other suite covers. */
import assert from "node:assert/strict";
import { chunks } from "../lib/util/chunks.ts";

Deno.test("chunks() cuts a list into batches of the size, the last one shorter", () => {
  assert.deepEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(chunks([1, 2, 3, 4], 2), [[1, 2], [3, 4]]);
  assert.deepEqual(chunks([1, 2], 5), [[1, 2]]);
  assert.deepEqual(chunks([], 3), []);
  const items = Array.from({ length: 130 }, (_, i) => i);
  assert.deepEqual(chunks(items, 64).flat(), items, "every item once, in order");
});

Deno.test("chunks() refuses a size that is not a positive integer", () => {
  for (const size of [0, -1, 1.5, NaN]) {
    assert.throws(() => chunks([1], size), RangeError, String(size));
  }
});
