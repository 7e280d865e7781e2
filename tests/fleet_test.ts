/**
 * Fleet mode without processes: the pure parts (rendezvous assignment, the
 * key layout, combining verdicts), then three LBs in this process sharing an
 * in-memory store and an in-memory network of agents: one verdict on every
 * LB, exactly K sessions per agent, a departure taken over, a claim lost to
 * fencing, and an unreachable store that marks verdicts stale and takes no
 * server out.
 */

import assert from "node:assert/strict";
import type { Agent } from "../lib/agent/agent.ts";
import { assigned, owners } from "../lib/fleet/assign.ts";
import { Claims } from "../lib/fleet/claims.ts";
import { FleetDirectory } from "../lib/fleet/directory.ts";
import * as wire from "../lib/fleet/etcd_wire.ts";
import { Fleet } from "../lib/fleet/fleet.ts";
import { FleetKeys } from "../lib/fleet/keys.ts";
import { FleetMirror } from "../lib/fleet/mirror.ts";
import { MemoryStore } from "../lib/fleet/memory_store.ts";
import { VerdictWriter } from "../lib/fleet/verdict_writer.ts";
import { combine, type OwnerVerdict, parseVerdict, VerdictChanges } from "../lib/fleet/verdicts.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import type { WatchView } from "../lib/lb/record.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { silentLogger } from "../lib/util/log.ts";
import { hmacPair, startMemoryAgent, waitFor } from "./_helpers.ts";

// --- pure ------------------------------------------------------------------------------

const SERVERS = Array.from({ length: 600 }, (_, i) => `10.0.${i >> 8}.${i & 255}:4243`);

Deno.test("owners() picks K members per server, the same everywhere, spread evenly", () => {
  const members = ["lb-a", "lb-b", "lb-c"];
  const load = new Map<string, number>();
  for (const s of SERVERS) {
    const o = owners(s, members, 2);
    assert.equal(o.length, 2);
    assert.equal(new Set(o).size, 2);
    assert.deepEqual(owners(s, [...members].reverse(), 2), o, "order of the list does not matter");
    for (const m of o) load.set(m, (load.get(m) ?? 0) + 1);
  }
  for (const m of members) {
    const n = load.get(m)!;
    assert.ok(n > 600 * 2 / 3 * 0.85 && n < 600 * 2 / 3 * 1.15, `${m} checks ${n}`);
  }
  assert.deepEqual(owners("x", ["lb-a"], 2), ["lb-a"], "fewer members than K: all of them");
});

Deno.test("owners() moves only what must move when a member joins or leaves", () => {
  const before = ["lb-a", "lb-b", "lb-c"];
  const after = ["lb-a", "lb-b", "lb-c", "lb-d"];
  let moved = 0;
  for (const s of SERVERS) {
    const o1 = new Set(owners(s, before, 2));
    const o2 = owners(s, after, 2);
    // Every owner in the new list that is not the newcomer was an owner before.
    for (const m of o2) {
      if (m !== "lb-d") assert.ok(o1.has(m), `${s}: ${m} gained it without reason`);
    }
    if (o2.includes("lb-d")) moved++;
  }
  assert.ok(moved > 600 * 0.5 * 0.85 && moved < 600 * 0.5 * 1.15, `${moved} moved to the newcomer`);
  // A member leaving: only its servers move.
  for (const s of SERVERS) {
    const o1 = owners(s, before, 2);
    const o2 = owners(s, ["lb-a", "lb-b"], 2);
    if (!o1.includes("lb-c")) assert.deepEqual(o2.sort(), [...o1].sort());
  }
  assert.equal(assigned("lb-a", SERVERS, ["lb-a"], 2).size, SERVERS.length);
});

Deno.test("FleetKeys lays keys out under the prefix and parses them back", () => {
  const k = new FleetKeys("/qhcp");
  assert.equal(k.member("lb-1"), "/qhcp/members/lb-1");
  assert.equal(k.owner("[::1]:4243", "lb-1"), "/qhcp/owners/[::1]:4243/lb-1");
  assert.deepEqual(k.parse(k.verdict("10.0.0.1:4243", "lb-2")), {
    kind: "verdicts",
    address: "10.0.0.1:4243",
    lb: "lb-2",
  });
  assert.deepEqual(k.parse(k.member("lb-3")), { kind: "members", address: "", lb: "lb-3" });
  for (
    const bad of [
      "/other/members/x",
      "/qhcp/owners/10.0.0.1:4243",
      "/qhcp/nope/a/b",
      "/qhcp/members/",
    ]
  ) {
    assert.equal(k.parse(bad), undefined, bad);
  }
});

const verdict = (
  by: string,
  state: OwnerVerdict["state"],
  over: Partial<OwnerVerdict> = {},
): OwnerVerdict => ({
  state,
  status: state === "UP" ? "UP" : null,
  weight: state === "UP" ? 80 : 0,
  load: 20,
  cpu: 20,
  mem: 10,
  rtt_ms: 1,
  last_error: null,
  since: "2026-11-29T10:00:00.000Z",
  services: [],
  by,
  at: "2026-11-29T10:00:05.000Z",
  ...over,
});

Deno.test("combine(): UP while any owner sees it UP, DOWN when all do, the careful weight, a drain wins", () => {
  const owners = ["lb-a", "lb-b"];
  assert.equal(combine([verdict("lb-a", "UP"), verdict("lb-b", "DOWN")], owners)?.state, "UP");
  assert.equal(combine([verdict("lb-a", "DOWN"), verdict("lb-b", "DOWN")], owners)?.state, "DOWN");
  // An owner that has not decided yet says nothing.
  assert.equal(
    combine([verdict("lb-a", "DOWN"), verdict("lb-b", "UNKNOWN")], owners)?.state,
    "DOWN",
  );
  assert.equal(combine([verdict("lb-a", "UNKNOWN")], owners)?.state, "UNKNOWN");
  const two = combine([
    verdict("lb-a", "UP", { weight: 70 }),
    verdict("lb-b", "UP", { weight: 90 }),
  ], owners)!;
  assert.equal(two.weight, 70);
  assert.deepEqual(two.from, ["lb-a", "lb-b"]);
  assert.equal(
    combine([verdict("lb-a", "UP"), verdict("lb-b", "UP", { status: "DRAINING" })], owners)?.status,
    "DRAINING",
  );
  assert.equal(combine([], owners), undefined);
});

Deno.test("combine(): a previous owner's verdict stands until a current owner has written", () => {
  const old = verdict("lb-gone", "UP", { at: "2026-11-29T10:00:09.000Z" });
  const older = verdict("lb-older", "DOWN", { at: "2026-11-29T10:00:01.000Z" });
  assert.deepEqual(combine([old, older], ["lb-new"])?.from, ["lb-gone"]);
  assert.equal(combine([old, verdict("lb-new", "DOWN")], ["lb-new"])?.state, "DOWN");
  // A new owner that has not decided yet does not hide the previous verdict.
  assert.equal(combine([old, verdict("lb-new", "UNKNOWN")], ["lb-new"])?.state, "UP");
  assert.equal(parseVerdict(JSON.stringify(old))?.by, "lb-gone");
  assert.equal(parseVerdict("{}"), undefined);
  assert.equal(parseVerdict("not json"), undefined);
});

Deno.test("VerdictChanges counts turns to DOWN, not a listing, not a DOWN that stays DOWN", () => {
  const c = new VerdictChanges();
  c.record("a:1", "DOWN", true);
  c.record("b:1", "UP", true);
  assert.equal(c.downs, 0, "a listing counts nothing");
  c.record("a:1", "DOWN");
  assert.equal(c.downs, 0, "DOWN already");
  c.record("b:1", "DOWN");
  c.record("c:1", "UNKNOWN");
  c.record("c:1", "DOWN");
  assert.equal(c.downs, 2, "UP to DOWN and UNKNOWN to DOWN");
  c.forget("b:1");
  c.record("b:1", "DOWN");
  assert.equal(c.downs, 3, "a server that left and came back DOWN");
});

// --- three LBs in this process ------------------------------------------------------------

const secret = new TextEncoder().encode("fleet-test-secret-0123456789-abcdefgh");
const HOSTS = ["10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5", "10.0.1.6"];

interface Lb {
  id: string;
  monitor: Monitor;
  fleet: Fleet;
  directory: FleetDirectory;
}

async function startLbs(
  store: MemoryStore,
  transport: MemoryTransport,
  ids: string[],
): Promise<Lb[]> {
  const out: Lb[] = [];
  for (const id of ids) {
    const monitor = new Monitor({
      transport,
      signer: hmacPair(secret, id).signer,
      servers: [],
      insecure: true,
      checkIntervalMs: 500,
    });
    monitor.start();
    const fleet = new Fleet({
      store,
      keys: new FleetKeys("/qhcp/"),
      lbId: id,
      monitor,
      debounceMs: 100,
      refreshMs: 60_000,
      log: silentLogger,
    });
    await fleet.start();
    out.push({ id, monitor, fleet, directory: new FleetDirectory(fleet, monitor) });
  }
  return out;
}

/** Agents on `hosts` and LBs `ids` on one in-memory store; `body` runs, then all of it stops. */
async function withFleet(
  hosts: readonly string[],
  ids: string[],
  body: (r: { store: MemoryStore; agents: Agent[]; lbs: Lb[] }) => Promise<void>,
): Promise<void> {
  const transport = new MemoryTransport();
  const store = new MemoryStore();
  const agents: Agent[] = [];
  for (const host of hosts) agents.push(await startMemoryAgent(transport, host, { secret }));
  const lbs = await startLbs(store, transport, ids);
  try {
    await body({ store, agents, lbs });
  } finally {
    for (const lb of lbs) {
      await lb.fleet.stop();
      await lb.monitor.stop();
    }
    for (const a of agents) await a.shutdown("done", 50);
    await transport.close();
    await store.close();
  }
}

const sessionsPerAgent = (agents: Agent[]) =>
  agents.map((a) => a.sessions().filter((s) => s.state === "READY").length);

Deno.test({
  name:
    "Fleet: three LBs, six agents, K = 2: one verdict on every LB, two sessions per agent, a departure taken over, a lost claim, an unreachable store",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withFleet(HOSTS, ["lb-a", "lb-b", "lb-c"], async ({ store, agents, lbs }) => {
      for (const host of HOSTS) await lbs[0]!.directory.addServer({ host, port: 4243 });
      const allUp = (lb: Lb) =>
        lb.directory.status().length === 6 && lb.directory.status().every((v) => v.state === "UP");
      await waitFor("every LB shows six servers UP", () => lbs.every(allUp), 10_000);
      await waitFor(
        "two sessions per agent",
        () => sessionsPerAgent(agents).every((n) => n === 2),
        5000,
      );
      for (const lb of lbs) {
        for (const v of lb.directory.status()) {
          assert.equal(v.fleet!.checked_by.length, 2);
          assert.deepEqual(v.fleet!.checked_by, owners(v.address, ["lb-a", "lb-b", "lb-c"], 2));
        }
      }
      const checks = lbs.map((lb) => lb.monitor.size);
      assert.equal(checks.reduce((a, b) => a + b), 12, `servers checked per LB: ${checks}`);

      // lb-c leaves: its servers are taken over; each agent keeps two sessions.
      await lbs[2]!.fleet.stop();
      await lbs[2]!.monitor.stop();
      await waitFor(
        "lb-a and lb-b check all six",
        () => lbs[0]!.monitor.size === 6 && lbs[1]!.monitor.size === 6,
        5000,
      );
      await waitFor(
        "two sessions per agent",
        () => sessionsPerAgent(agents).every((n) => n === 2),
        5000,
      );
      assert.ok(
        lbs.slice(0, 2).every(allUp),
        `something flipped: ${
          JSON.stringify(
            lbs.slice(0, 2).map((lb) =>
              lb.directory.status().filter((v) => v.state !== "UP").map((
                v,
              ) => [lb.id, v.address, v.state, v.session, v.fleet])
            ),
          )
        }`,
      );

      // An agent dies: both remaining LBs say DOWN.
      await agents[0]!.shutdown("gone", 100);
      await waitFor(
        "DOWN on every LB",
        () =>
          lbs.slice(0, 2).every((lb) => lb.directory.server(`${HOSTS[0]}:4243`)?.state === "DOWN"),
        10_000,
      );
      // Each LB counts the fleet's verdict turning DOWN once, as etcd holds it; the takeover
      // before it turned nothing DOWN.
      await waitFor(
        "the DOWN verdict counted",
        () => lbs.slice(0, 2).every((lb) => lb.directory.totals().fleet_downs === 1),
        5000,
      );

      // The store goes away: verdicts are served, marked stale; no server is taken out for it.
      store.down = true;
      await waitFor("stale", () => lbs[0]!.directory.status()[1]!.fleet!.stale_ms !== null, 6000);
      const live = lbs[0]!.directory.status().filter((v) => v.address !== `${HOSTS[0]}:4243`);
      assert.ok(live.every((v) => v.state === "UP"), "no server DOWN because the store is gone");
      // One server, the counts and the size read as the whole view does (without building it).
      const one = lbs[0]!.directory.server(live[0]!.address);
      assert.ok(one?.fleet?.stale_ms !== null && one?.fleet?.stale_ms !== undefined);
      assert.ok((lbs[0]!.directory.totals().fleet_stale_ms ?? 0) > 3000, "the age in the counts");
      const all = lbs[0]!.directory.status();
      const totals = lbs[0]!.directory.totals();
      assert.equal(lbs[0]!.directory.size, all.length);
      assert.deepEqual(
        [totals.servers, totals.up, totals.down, totals.unknown],
        [
          all.length,
          ...(["UP", "DOWN", "UNKNOWN"] as const).map((st) =>
            all.filter((v) => v.state === st).length
          ),
        ],
      );
      store.down = false;
      await waitFor(
        "not stale",
        () => lbs[0]!.directory.status()[1]!.fleet!.stale_ms === null,
        6000,
      );
    }),
});

Deno.test({
  name:
    "Fleet: an LB whose lease is gone stops checking, writes no verdict over the new owners, and rejoins",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withFleet(HOSTS.slice(0, 3), ["lb-a", "lb-b"], async ({ store, lbs }) => {
      for (const host of HOSTS.slice(0, 3)) await lbs[0]!.directory.addServer({ host, port: 4243 });
      await waitFor("both check all three", () => lbs.every((lb) => lb.monitor.size === 3), 5000);
      // lb-b's lease ends as if it had been paused past its TTL.
      const lease = (await store.list("/qhcp/members/lb-b", true)).kvs[0]!.lease;
      await store.revoke(lease);
      // Its claims are gone at once; its late verdict writes are refused (fenced).
      const writes = async () =>
        (await store.list("/qhcp/verdicts/")).kvs.filter((kv) => kv.key.endsWith("/lb-b"));
      const before = (await writes()).map((kv) => kv.modRevision);
      await waitFor(
        "lb-b rejoined",
        async () =>
          (await store.list("/qhcp/members/lb-b", true)).kvs.length === 1 &&
          (await store.list("/qhcp/owners/")).kvs.filter((kv) => kv.key.endsWith("/lb-b"))
              .length === 3,
        5000,
      );
      const ownerRevs = (await store.list("/qhcp/owners/")).kvs
        .filter((kv) => kv.key.endsWith("/lb-b"))
        .map((kv) => kv.createRevision);
      for (const kv of await writes()) {
        // Every lb-b verdict written since was written under a new claim.
        if (!before.includes(kv.modRevision)) assert.ok(kv.modRevision > Math.min(...ownerRevs));
      }
      await waitFor(
        "both check all three again",
        () => lbs.every((lb) => lb.monitor.size === 3),
        5000,
      );
    }),
});

Deno.test({
  name:
    "Fleet.addServer() while etcd does not answer keeps the entry and writes it at the next lease renewal",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withFleet(HOSTS.slice(0, 1), ["lb-a"], async ({ store, lbs: [lb] }) => {
      store.down = true;
      // Resolves (a slow etcd must not fail the servers file), writes nothing yet.
      await lb!.fleet.addServer(`${HOSTS[0]}:4243`);
      store.down = false;
      assert.equal((await store.list("/qhcp/servers/")).kvs.length, 0);
      // The next renewal (a third of the 3 s TTL) writes it, and the LB checks it.
      await waitFor("the entry written", async () => {
        return (await store.list("/qhcp/servers/")).kvs.length === 1;
      }, 5000);
      await waitFor("the server checked", () => lb!.monitor.size === 1, 5000);
    }),
});

Deno.test({
  name:
    "Fleet on a slow etcd: after its lease expired, one join at a time however long joining takes",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withFleet(HOSTS.slice(0, 1), ["lb-a"], async ({ store, lbs: [lb] }) => {
      await lb!.directory.addServer({ host: HOSTS[0]!, port: 4243 });
      await waitFor("checked", () => lb!.monitor.size === 1, 5000);
      let grants = 0;
      const grant = store.grant.bind(store);
      store.grant = (ttlSec) => {
        grants++;
        return grant(ttlSec);
      };
      // Away for longer than the 3 s lease, then back but slow: a join (lease, member key,
      // listing) takes 3.6 s, while renewals come every second.
      store.down = true;
      await new Promise((r) => setTimeout(r, 3500));
      store.latencyMs = 1200;
      store.down = false;
      await waitFor("a new lease", () => grants >= 1, 10_000);
      await waitFor("checking again", () => lb!.monitor.size === 1, 15_000);
      assert.equal(grants, 1, "one lease asked for, not one per renewal tick");
      store.latencyMs = 0;
    }),
});

Deno.test({
  name: "Fleet.addServer() called for 200 servers at once writes them in four transactions",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withFleet(HOSTS.slice(0, 1), ["lb-a"], async ({ store, lbs: [lb] }) => {
      const before = store.revision;
      const many = Array.from({ length: 200 }, (_, i) => `10.9.${i >> 8}.${i & 255}:4243`);
      await Promise.all(many.map((a) => lb!.fleet.addServer(a)));
      const { kvs } = await store.list("/qhcp/servers/");
      assert.equal(kvs.length, 200);
      assert.equal(new Set(kvs.map((kv) => kv.createRevision)).size, 4, "64 + 64 + 64 + 8");
      assert.ok(store.revision - before >= 4);
    }),
});

Deno.test("Claims.release() stops checking each server first, then deletes its owner keys 64 to a transaction", async () => {
  const store = new MemoryStore();
  const keys = new FleetKeys("/qhcp/");
  const lease = await store.grant(60);
  const ended: string[] = [];
  const keyStillThere: boolean[] = [];
  const claims = new Claims({
    store,
    keys,
    lbId: "lb-a",
    monitor: {
      addServer: () => "",
      // The local checks stop while the claim still stands in etcd.
      removeServer: async (a: string) => {
        keyStillThere.push((await store.list(keys.owner(a, "lb-a"), true)).kvs.length === 1);
        return true;
      },
    },
    log: silentLogger,
    isoNow: () => "now",
    contacted: () => {},
    ended: (a) => ended.push(a),
  });
  const servers = Array.from({ length: 150 }, (_, i) => `10.8.0.${i}:4243`);
  await claims.claim(servers, lease, () => false);
  const gone = servers.slice(0, 130);
  const before = store.revision;
  await claims.release(gone);
  assert.equal(store.revision - before, 3, "64 + 64 + 2");
  assert.deepEqual(ended.sort(), [...gone].sort());
  assert.equal(keyStillThere.length, 130);
  assert.ok(keyStillThere.every((x) => x));
  assert.equal(claims.size, 20);
  assert.ok(gone.every((a) => !claims.has(a)));
  const left = (await store.list("/qhcp/owners/")).kvs.map((kv) => kv.key).sort();
  assert.deepEqual(left, servers.slice(130).map((a) => keys.owner(a, "lb-a")).sort());
});

Deno.test("VerdictWriter gathers changes into transactions of 50, spreads a refresh, and a refused one finds the lost claim", async () => {
  const store = new MemoryStore();
  const keys = new FleetKeys("/qhcp/");
  const lease = await store.grant(60);
  const views = new Map<string, WatchView>();
  const view = (address: string, state: "UP" | "DOWN") =>
    ({
      address,
      state,
      status: "OK",
      weight: 100,
      last_change: "2026-11-29T00:00:00.000Z",
      load: null,
      metrics: null,
      last_rtt_ms: 1,
      last_error: null,
      services: [],
    }) as unknown as WatchView;
  const monitor = {
    addServer: () => "",
    removeServer: () => Promise.resolve(true),
    server: (a: string) => views.get(a),
  };
  const common = { store, keys, lbId: "lb-a", isoNow: () => "now", contacted: () => {} };
  const claims = new Claims({
    ...common,
    monitor,
    log: silentLogger,
    ended: (a) => writer.forget(a),
  });
  const lost: string[] = [];
  const writer = new VerdictWriter({
    ...common,
    claims,
    monitor,
    previousOwners: () => [],
    unreachable: (e) => assert.fail(e),
    lost: (a) => {
      lost.push(a);
      claims.lose(a);
    },
    stopped: () => false,
  });
  const servers = Array.from({ length: 120 }, (_, i) => `10.7.0.${i}:4243`);
  await claims.claim(servers, lease, () => false);
  for (const a of servers) views.set(a, view(a, "UP"));
  const before = store.revision;
  await Promise.all(servers.map((a) => writer.write(a)));
  assert.equal(store.revision - before, 3, "50 + 50 + 20");
  assert.equal((await store.list("/qhcp/verdicts/")).kvs.length, 120);
  // Nothing changed: nothing written.
  await Promise.all(servers.map((a) => writer.write(a)));
  assert.equal(store.revision - before, 3);
  // A refresh rewrites all 120 in three transactions spread over the time given.
  const started = performance.now();
  await writer.refresh(300);
  assert.equal(store.revision - before, 6);
  assert.ok(performance.now() - started >= 150, "two pauses of 100 ms between the three");
  // One claim is gone (its key deleted by another LB): its batch is refused, then written
  // one by one, which finds it.
  await store.delete(keys.owner(servers[5]!, "lb-a"));
  for (const a of servers.slice(0, 10)) views.set(a, view(a, "DOWN"));
  await Promise.all(servers.slice(0, 10).map((a) => writer.write(a)));
  assert.deepEqual(lost, [servers[5]]);
  const down = (await store.list("/qhcp/verdicts/")).kvs.filter((kv) =>
    kv.value.includes('"DOWN"')
  );
  assert.equal(down.length, 9);
});

Deno.test("FleetMirror.verdictOf() combines the written verdicts, with an owner's live one in place of its own once decided", () => {
  const keys = new FleetKeys("/qhcp/");
  const mirror = new FleetMirror(keys);
  const s = "10.0.0.7:4243";
  const put = (lb: string, v: OwnerVerdict) =>
    mirror.apply({
      type: "put",
      key: keys.verdict(s, lb),
      value: JSON.stringify(v),
      modRevision: 1,
    });
  put("lb-a", verdict("lb-a", "DOWN"));
  put("lb-b", verdict("lb-b", "DOWN"));
  const owned = ["lb-a", "lb-b"];
  assert.equal(mirror.verdictOf(s, owned)?.state, "DOWN");
  assert.equal(
    mirror.verdictOf(s, owned, verdict("lb-a", "UP"))?.state,
    "UP",
    "lb-a sees it UP now",
  );
  assert.equal(
    mirror.verdictOf(s, owned, verdict("lb-a", "UNKNOWN"))?.state,
    "DOWN",
    "undecided: what lb-a wrote still counts",
  );
  assert.equal(mirror.verdictOf("10.0.0.8:4243", owned), undefined);
});

Deno.test("FleetMirror.apply() keeps members, entries and verdicts, and says what it touched", () => {
  const keys = new FleetKeys("/qhcp/");
  const view = new FleetMirror(keys);
  const put = (key: string, value: string, rev: number) =>
    view.apply({ type: "put", key, value, modRevision: rev });
  const del = (key: string) => view.apply({ type: "delete", key, value: "", modRevision: 0 });
  const s = "10.0.0.7:4243";
  assert.deepEqual(put(keys.member("lb-a"), "{}", 2), {
    kind: "members",
    address: "",
    lb: "lb-a",
    put: true,
  });
  put(keys.server(s, "lb-a"), "{}", 3);
  put(keys.server(s, "lb-b"), "{}", 4);
  assert.deepEqual(put(keys.owner(s, "lb-a"), "t", 5), {
    kind: "owners",
    address: s,
    lb: "lb-a",
    put: true,
  });
  assert.deepEqual([...view.entries.get(s)!], ["lb-a", "lb-b"]);
  del(keys.server(s, "lb-a"));
  del(keys.server(s, "lb-b"));
  assert.equal(view.entries.has(s), false, "the last entry gone: the server leaves the set");
  const applied = del(keys.owner(s, "lb-a"));
  assert.deepEqual(applied, { kind: "owners", address: s, lb: "lb-a", put: false });
  put(keys.verdict(s, "lb-a"), "not json", 10);
  assert.equal(view.verdicts.get(s)?.size, 0, "an unreadable verdict counts as none");
  assert.equal(
    view.apply({ type: "put", key: "/other/x", value: "", modRevision: 1 }),
    undefined,
  );
  view.clear();
  assert.equal(view.seenMembers.size + view.entries.size + view.verdicts.size, 0);
});

Deno.test("etcd_wire: wire.rangeEnd(), wire.decodeKv(), wire.encodeOp() and wire.encodeCompare() speak the JSON gateway's shapes", () => {
  assert.equal(
    atob(wire.rangeEnd("/qhcp/")),
    "/qhcp0",
    "the last byte raised: every key under the prefix",
  );
  assert.equal(atob(wire.rangeEnd("")), "\0", "no prefix: every key");
  assert.deepEqual(
    wire.decodeKv({
      key: wire.b64("/k"),
      value: wire.b64("v é"),
      create_revision: "3",
      mod_revision: "9",
    }),
    { key: "/k", value: "v é", createRevision: 3, modRevision: 9, lease: "0" },
  );
  assert.deepEqual(wire.decodeKv({ key: wire.b64("/k") }).value, "", "no value: empty");
  assert.deepEqual(wire.encodeOp({ put: "/k", value: "v", lease: "7" }), {
    request_put: { key: wire.b64("/k"), value: wire.b64("v"), lease: "7" },
  });
  assert.deepEqual(wire.encodeOp({ delete: "/p/", prefix: true }), {
    request_delete_range: { key: wire.b64("/p/"), range_end: wire.rangeEnd("/p/") },
  });
  assert.deepEqual(wire.encodeCompare({ key: "/o", target: "create_revision", equals: 12 }), {
    key: wire.b64("/o"),
    target: "CREATE",
    result: "EQUAL",
    create_revision: "12",
  });
  assert.equal(wire.headerRevision({ header: { revision: "41" } }), 41);
  assert.equal(wire.headerRevision({}), 0);
});
