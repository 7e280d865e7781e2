/**
 * One suite for every {@linkcode Store}: the in-memory fake (fleet_test.ts)
 * and a real etcd (etcd_test.ts) must behave alike wherever the fleet relies
 * on them.
 */

import assert from "node:assert/strict";
import type { Store, WatchEvent } from "../lib/fleet/store.ts";
import { waitFor } from "./_helpers.ts";

/** A store to test, and how to let a lease of `ttlSec` run out on it. */
export interface StoreUnderTest {
  store: Store;
  /** Lets leases granted with `ttlSec` expire (a real store: wait). */
  expire(ttlSec: number): Promise<void>;
  close(): Promise<void>;
}

/** Registers the shared store tests under `name`. */
export function storeSuite(name: string, make: () => Promise<StoreUnderTest>): void {
  const test = (title: string, fn: (s: StoreUnderTest, p: string) => Promise<void>) =>
    Deno.test({
      name: `[${name}] ${title}`,
      sanitizeOps: false,
      sanitizeResources: false,
      async fn() {
        const s = await make();
        try {
          await fn(s, `/test-${crypto.randomUUID()}/`);
        } finally {
          await s.close();
        }
      },
    });

  test("Store.put() and list() by prefix and exactly, with revisions", async ({ store }, p) => {
    const r1 = await store.put(`${p}a`, "1");
    const r2 = await store.put(`${p}b/x`, "2");
    await store.put(`${p}a`, "3");
    await store.put(`${p.slice(0, -1)}-other/c`, "9");
    const { kvs, revision } = await store.list(p);
    assert.deepEqual(kvs.map((kv) => [kv.key.slice(p.length), kv.value]), [["a", "3"], [
      "b/x",
      "2",
    ]]);
    assert.ok(r2 > r1 && revision > r2);
    const a = kvs[0]!;
    assert.equal(a.createRevision, r1, "an update keeps the creation revision");
    assert.ok(a.modRevision > r2);
    assert.deepEqual((await store.list(`${p}a`, true)).kvs.map((kv) => kv.value), ["3"]);
    assert.deepEqual((await store.list(`${p}zz`, true)).kvs, []);
  });

  test(
    "Store.txn() creates a key only once and fences on a creation revision",
    async ({ store }, p) => {
      const key = `${p}owner`;
      const create = () =>
        store.txn([{ key, target: "create_revision", equals: 0 }], [{ put: key, value: "mine" }]);
      const first = await create();
      assert.equal(first.succeeded, true);
      assert.equal((await create()).succeeded, false);
      const rev = (await store.list(key, true)).kvs[0]!.createRevision;
      assert.equal(rev, first.revision);
      const fenced = (equals: number) =>
        store.txn([{ key, target: "create_revision", equals }], [{
          put: `${p}verdict`,
          value: String(equals),
        }]);
      assert.equal((await fenced(rev)).succeeded, true);
      // The key is deleted and created anew (a new owner): the old revision no longer holds.
      await store.delete(key);
      await create();
      assert.equal((await fenced(rev)).succeeded, false);
      assert.equal((await store.list(`${p}verdict`, true)).kvs[0]!.value, String(rev));
      assert.equal(
        (await store.txn([{ key, target: "value", equals: "mine" }], [{ delete: key }])).succeeded,
        true,
      );
      assert.deepEqual((await store.list(key, true)).kvs, []);
    },
  );

  test(
    "Store leases: keys go with a revoked or expired lease; keepAlive says 0 after",
    async (s, p) => {
      const { store } = s;
      const lease = await store.grant(2);
      await store.put(`${p}member`, "x", lease);
      assert.equal((await store.list(`${p}member`, true)).kvs[0]!.lease, lease);
      assert.ok((await store.keepAlive(lease)) >= 1);
      await store.revoke(lease);
      assert.deepEqual((await store.list(p)).kvs, []);
      assert.equal(await store.keepAlive(lease), 0);
      const short = await store.grant(2);
      await store.put(`${p}gone`, "x", short);
      await s.expire(2);
      await waitFor("the key gone", async () => (await store.list(p)).kvs.length === 0, 5000, 100);
      assert.equal(await store.keepAlive(short), 0);
    },
  );

  test(
    "Store.watch() from a revision sees every change in order, past ones included",
    async ({ store }, p) => {
      const before = await store.put(`${p}a`, "1");
      const seen: WatchEvent[] = [];
      const w = store.watch(p, before, (events) => seen.push(...events), () => {});
      try {
        await store.put(`${p}b`, "2");
        await store.delete(`${p}a`);
        await store.put(`${p.slice(0, -1)}x`, "not under the prefix");
        await store.delete(p, true);
        await waitFor("4 events", () => seen.length >= 4, 5000, 20);
        assert.deepEqual(
          seen.map((e) => `${e.type} ${e.key.slice(p.length)} ${e.value}`),
          ["put a 1", "put b 2", "delete a ", "delete b "],
        );
        for (let i = 1; i < seen.length; i++) {
          assert.ok(
            seen[i]!.modRevision > seen[i - 1]!.modRevision,
          );
        }
      } finally {
        w.close();
      }
    },
  );

  test(
    "Store.txn() creates 64 keys together at one revision, or none when one exists",
    async ({ store }, p) => {
      const lease = await store.grant(30);
      const keys = Array.from({ length: 64 }, (_, i) => `${p}owner/${i}`);
      const create = (which: string[]) =>
        store.txn(
          which.map((key) => ({ key, target: "create_revision" as const, equals: 0 })),
          which.map((key) => ({ put: key, value: "x", lease })),
        );
      const r = await create(keys);
      assert.ok(r.succeeded);
      const { kvs } = await store.list(`${p}owner/`);
      assert.equal(kvs.length, 64);
      assert.ok(kvs.every((kv) => kv.createRevision === r.revision), "one revision, the txn's");
      const more = [...Array.from({ length: 10 }, (_, i) => `${p}owner/new-${i}`), keys[5]!];
      assert.equal((await create(more)).succeeded, false);
      assert.equal((await store.list(`${p}owner/new-`)).kvs.length, 0, "all or nothing");
    },
  );

  test(
    "Store.txn() with no compare deletes 64 keys at one revision, missing ones included",
    async ({ store }, p) => {
      const keys = Array.from({ length: 70 }, (_, i) => `${p}gone/${i}`);
      for (const key of keys) await store.put(key, "x");
      // 63 that exist and one that never did: the branch runs all the same.
      const r = await store.txn([], [
        ...keys.slice(0, 63).map((key) => ({ delete: key })),
        { delete: `${p}gone/never` },
      ]);
      assert.ok(r.succeeded);
      const { kvs, revision } = await store.list(`${p}gone/`);
      assert.deepEqual(kvs.map((kv) => kv.key).sort(), keys.slice(63).sort());
      assert.equal(revision, r.revision, "one revision for every delete");
    },
  );
}
