/**
 * The fleet's store: the shared suite on the in-memory fake and on a real
 * single-member etcd (Debian's etcd-server, over its JSON gateway).
 */

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
  name: "[etcd] the test cluster stops",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await etcd?.[Symbol.asyncDispose]();
  },
});
