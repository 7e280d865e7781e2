/** Server discovery: servers files, DNS names, and the reconciler that applies them. */

import assert from "node:assert/strict";
import {
  Discovery,
  parseServersFile,
  watchDnsName,
  watchServersFile,
} from "../lib/lb/discovery.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { hmacPair, makeCredentials, sleep, tempDir, waitFor } from "./_helpers.ts";
import { startTestDns } from "./_dns_server.ts";

const { secret } = await makeCredentials();

function monitor(servers: { host: string; port: number }[] = []): Monitor {
  const m = new Monitor({
    transport: new MemoryTransport(),
    signer: hmacPair(secret).signer,
    servers,
    insecure: true,
    checkIntervalMs: 1000,
  });
  m.start();
  return m;
}

Deno.test("parseServersFile() reads one address per line with comments and blank lines", () => {
  const parsed = parseServersFile(
    "# web tier\n\n10.0.0.7:4243\n  10.0.0.8   # canary\n[2001:db8::1]:5000\nweb-3\r\n",
  );
  assert.deepEqual(parsed.errors, []);
  assert.deepEqual(parsed.servers, [
    { host: "10.0.0.7", port: 4243 },
    { host: "10.0.0.8", port: 4243 },
    { host: "2001:db8::1", port: 5000 },
    { host: "web-3", port: 4243 },
  ]);
  assert.deepEqual(parseServersFile("10.0.0.7:99999\nok:1\n").errors, [
    'line 1: port in "10.0.0.7:99999" is not in 1..65535',
  ]);
});

Deno.test("Discovery.update() adds new servers, removes unlisted ones it added, and leaves others alone", async () => {
  const m = monitor([{ host: "10.0.0.1", port: 4243 }]);
  const d = new Discovery(m);
  try {
    assert.deepEqual(
      await d.update("a", [{ host: "10.0.0.1", port: 4243 }, { host: "10.0.0.2", port: 4243 }]),
      {
        added: ["10.0.0.2:4243"],
        removed: [],
      },
    );
    await d.update("b", [{ host: "10.0.0.2", port: 4243 }, { host: "10.0.0.3", port: 4243 }]);
    assert.deepEqual(m.addresses(), ["10.0.0.1:4243", "10.0.0.2:4243", "10.0.0.3:4243"]);
    // Source a drops everything: 10.0.0.2 is still listed by b; 10.0.0.1 came from the command line.
    assert.deepEqual(await d.update("a", []), { added: [], removed: [] });
    assert.deepEqual(await d.update("b", []), {
      added: [],
      removed: ["10.0.0.2:4243", "10.0.0.3:4243"],
    });
    assert.deepEqual(m.addresses(), ["10.0.0.1:4243"]);
  } finally {
    await m.stop();
  }
});

Deno.test("watchServersFile() follows the file as it is rewritten, replaced and broken, and on reload()", async () => {
  const dir = await tempDir("servers-file");
  const path = `${dir}/servers.txt`;
  await Deno.writeTextFile(path, "10.0.0.1:4243\n10.0.0.2:4243\n");
  const m = monitor();
  const lines: string[] = [];
  const { createLogger } = await import("../lib/util/log.ts");
  const log = createLogger({ sink: (l) => lines.push(l) });
  const w = await watchServersFile(path, new Discovery(m, log), log);
  try {
    assert.deepEqual(m.addresses(), ["10.0.0.1:4243", "10.0.0.2:4243"]);
    // Rewritten in place.
    await Deno.writeTextFile(path, "10.0.0.2:4243\n10.0.0.3:4243 # new\n");
    await waitFor(
      "rewrite seen",
      () => m.addresses().join() === "10.0.0.2:4243,10.0.0.3:4243",
      5000,
    );
    // Replaced by rename, as editors and config tools do.
    await Deno.writeTextFile(`${dir}/servers.tmp`, "10.0.0.4:4243\n");
    await Deno.rename(`${dir}/servers.tmp`, path);
    await waitFor("replacement seen", () => m.addresses().join() === "10.0.0.4:4243", 5000);
    // A bad line keeps the current list and says why.
    await Deno.writeTextFile(path, "10.0.0.5:4243\nnot an address\n");
    await waitFor(
      "error logged",
      () => lines.some((l) => /bad servers file.*line 2/.test(l)),
      5000,
    );
    assert.deepEqual(m.addresses(), ["10.0.0.4:4243"]);
    // A vanished file also keeps the list.
    await Deno.remove(path);
    await sleep(300);
    assert.deepEqual(m.addresses(), ["10.0.0.4:4243"]);
    // reload() (SIGHUP) reads it again at once.
    w.close();
    await Deno.writeTextFile(path, "10.0.0.6:4243\n");
    await w.reload();
    assert.deepEqual(m.addresses(), ["10.0.0.6:4243"]);
  } finally {
    w.close();
    await m.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "watchDnsName() follows A and AAAA records and empties the list only after three empty answers in a row",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dns = await startTestDns();
    dns.set("fleet.test", ["10.0.0.1", "10.0.0.2", "fd00::7"]);
    const m = monitor();
    const w = await watchDnsName("fleet.test", 4243, new Discovery(m), {
      intervalMs: 60_000,
      nameServer: { ipAddr: "127.0.0.1", port: dns.port },
    });
    try {
      assert.deepEqual(m.addresses().sort(), ["10.0.0.1:4243", "10.0.0.2:4243", "[fd00::7]:4243"]);
      dns.set("fleet.test", ["10.0.0.2", "10.0.0.3"]);
      await w.refresh();
      assert.deepEqual(m.addresses().sort(), ["10.0.0.2:4243", "10.0.0.3:4243"]);
      // SERVFAIL, NXDOMAIN and no records look alike through Deno.resolveDns: two in a row keep
      // the list, a third one (three reconnect intervals) empties it; an answer resets the count.
      dns.fail("fleet.test");
      await w.refresh();
      await w.refresh();
      assert.deepEqual(
        m.addresses().sort(),
        ["10.0.0.2:4243", "10.0.0.3:4243"],
        "a failing name keeps the list",
      );
      dns.set("fleet.test", ["10.0.0.3"]);
      await w.refresh();
      assert.deepEqual(m.addresses(), ["10.0.0.3:4243"]);
      dns.set("fleet.test", []);
      await w.refresh();
      await w.refresh();
      assert.deepEqual(m.addresses(), ["10.0.0.3:4243"]);
      await w.refresh();
      assert.deepEqual(m.addresses(), [], "the third empty answer in a row empties the list");
      assert.ok(dns.queries >= 8);
    } finally {
      w.close();
      await m.stop();
      await dns.close();
    }
  },
});
