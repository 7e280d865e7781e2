import assert from "node:assert/strict";
import { type Candidate, isStrategy, Selector } from "../lib/lb/select.ts";
import { computeWeight, loadOf } from "../lib/lb/weights.ts";

Deno.test("computeWeight() falls linearly with the higher of CPU and memory down to the floor", () => {
  const w = (cpu: number, mem: number, floor?: number) =>
    computeWeight(
      { state: "UP", status: "UP", metrics: { cpu_percent: cpu, mem_percent: mem } },
      floor === undefined ? {} : { floor },
    );
  assert.equal(w(0, 0), 100);
  assert.equal(w(50, 10), 55);
  assert.equal(w(10, 50), 55);
  assert.equal(w(100, 0), 10);
  assert.equal(w(100, 100, 0), 0);
  assert.equal(w(100, 100, 25), 25);
  assert.equal(w(150, -5), 10, "values outside 0..100 are clamped");
});

Deno.test("computeWeight() gives no traffic to DRAINING, DOWN and UNKNOWN servers", () => {
  const metrics = { cpu_percent: 1, mem_percent: 1 };
  assert.equal(computeWeight({ state: "UP", status: "DRAINING", metrics }), 0);
  assert.equal(computeWeight({ state: "DOWN", status: "UP", metrics }), 0);
  assert.equal(computeWeight({ state: "UNKNOWN", status: null, metrics: null }), 0);
  assert.equal(
    computeWeight({ state: "UP", status: "UP", metrics: null }),
    100,
    "UP without metrics: full weight",
  );
});

Deno.test("loadOf() takes the highest of the configured metrics present", () => {
  const m = { cpu_percent: 20, mem_percent: 30, disk_percent: 90 };
  assert.equal(loadOf(m), 30);
  assert.equal(loadOf(m, { loadMetrics: ["cpu_percent", "disk_percent"] }), 90);
  assert.equal(loadOf(m, { loadMetrics: ["gpu_percent"] }), null);
  assert.equal(
    computeWeight({ state: "UP", status: "UP", metrics: m }, { loadMetrics: ["disk_percent"] }),
    19,
  );
});

const c = (
  address: string,
  weight: number,
  load: number | null = 0,
  state: Candidate["state"] = "UP",
): Candidate => ({
  address,
  state,
  status: weight === 0 && state === "UP" ? "DRAINING" : "UP",
  weight,
  load,
});

Deno.test("Selector.pick('weighted') picks in proportion to weight, interleaved (smooth WRR)", () => {
  const s = new Selector();
  const servers = [c("a", 5), c("b", 1), c("c", 1)];
  const seq = Array.from({ length: 7 }, () => {
    const p = s.pick(servers, "weighted");
    assert.ok(p.ok);
    return p.address;
  });
  // NGINX's smooth weighted round-robin sequence for 5:1:1.
  assert.deepEqual(seq, ["a", "a", "b", "a", "c", "a", "a"]);
  const counts: Record<string, number> = {};
  for (let i = 0; i < 7000; i++) {
    const p = s.pick(servers, "weighted");
    if (p.ok) counts[p.address] = (counts[p.address] ?? 0) + 1;
  }
  assert.deepEqual(counts, { a: 5000, b: 1000, c: 1000 });
});

Deno.test("Selector.pick() skips weight 0, takes turns in round-robin, prefers the least loaded", () => {
  const s = new Selector();
  const servers = [c("a", 50, 40), c("b", 0), c("c", 80, 10), c("d", 0, 0, "DOWN")];
  const rr = Array.from({ length: 4 }, () => {
    const p = s.pick(servers, "round-robin");
    return p.ok ? p.address : "-";
  });
  assert.deepEqual(rr, ["a", "c", "a", "c"]);
  const ll = s.pick(servers, "least-loaded");
  assert.ok(ll.ok && ll.address === "c" && ll.strategy === "least-loaded");
});

Deno.test("Selector.pick() says why nothing can be picked", () => {
  const s = new Selector();
  const none = (servers: Candidate[]) => {
    const p = s.pick(servers);
    assert.ok(!p.ok);
    return p.reason;
  };
  assert.equal(none([]), "no servers are configured");
  assert.equal(
    none([c("a", 0, 0, "DOWN"), c("b", 0, 0, "UNKNOWN")]),
    "no server is UP (1 DOWN, 1 UNKNOWN)",
  );
  assert.match(
    none([c("a", 0), c("b", 0, 0, "DOWN")]),
    /no UP server takes traffic: 1 UP with weight 0 \(draining\)/,
  );
});

Deno.test("isStrategy() knows the three strategies", () => {
  assert.ok(isStrategy("weighted") && isStrategy("least-loaded") && isStrategy("round-robin"));
  assert.ok(!isStrategy("random"));
});
