/**
 * The fleet's store: the shared suite on the in-memory fake and on a real
 * single-member etcd (Debian's etcd-server, over its JSON gateway).
 */

import assert from "node:assert/strict";
import { createEtcdStore } from "../lib/fleet/etcd.ts";
import { MemoryStore } from "../lib/fleet/memory_store.ts";
import { EtcdCluster } from "../tools/etcd_cluster.ts";
import { storeSuite } from "./_store_suite.ts";

storeSuite("memory", () => {
  let now = Date.now();
  const store = new MemoryStore({ now: () => now });
  return Promise.resolve({
    store,
    expire: (ttlSec) => {
      now += ttlSec * 1000 + 1;
      store.tick();
      return Promise.resolve();
    },
    close: () => store.close(),
  });
});

let etcd: EtcdCluster | undefined;
storeSuite("etcd", async () => {
  etcd ??= await EtcdCluster.start(1);
  const store = createEtcdStore({ endpoints: etcd.endpoints });
  return {
    store,
    // etcd checks expiry every 500 ms.
    expire: (ttlSec) => new Promise((r) => setTimeout(r, ttlSec * 1000 + 800)),
    close: () => store.close(),
  };
});

Deno.test({
  name:
    "createEtcdStore().list() reads a prefix in pages, every key once, at the first page's revision",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    etcd ??= await EtcdCluster.start(1);
    const store = createEtcdStore({ endpoints: etcd.endpoints, listPageSize: 7 });
    try {
      const keys = Array.from({ length: 30 }, (_, i) => `/paged/${String(i).padStart(2, "0")}`);
      let last = 0;
      for (const key of keys) last = await store.put(key, key);
      await store.put("/paged0", "outside the prefix");
      const { kvs, revision } = await store.list("/paged/");
      assert.deepEqual(kvs.map((kv) => kv.key), keys, "30 keys over 5 pages, in order, once each");
      assert.ok(revision > last, "the revision of the first page, after every put");
      assert.deepEqual((await store.list("/paged/07", true)).kvs.map((kv) => kv.value), [
        "/paged/07",
      ]);
    } finally {
      await store.delete("/paged", true);
      await store.close();
    }
  },
});

Deno.test({
  name: "[etcd] the test cluster stops",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await etcd?.[Symbol.asyncDispose]();
  },
});
