import assert from "node:assert/strict";
import { checkDelay, jittered, redialDelay, type ScheduleSettings } from "../lib/lb/schedule.ts";

const S: ScheduleSettings = {
  checkIntervalMs: 10_000,
  fastIntervalMs: 1000,
  jitter: 0.1,
  reconnectIntervalMs: 30_000,
};

Deno.test("jittered() spreads an interval uniformly over ±jitter", () => {
  assert.equal(jittered(1000, 0.1, () => 0), 900);
  assert.equal(jittered(1000, 0.1, () => 0.5), 1000);
  assert.ok(Math.abs(jittered(1000, 0.1, () => 0.999999) - 1100) < 0.01);
  assert.equal(jittered(1000, 0, () => 0.9), 1000);
});

Deno.test("jittered() with a real random source stays in bounds and is spread out", () => {
  const values = Array.from({ length: 10_000 }, () => jittered(1000, 0.1, Math.random));
  assert.ok(values.every((v) => v >= 900 && v < 1100));
  const low = values.filter((v) => v < 950).length;
  const high = values.filter((v) => v >= 1050).length;
  // Each quarter of the range holds about 25 %: nowhere near lockstep.
  assert.ok(low > 2000 && low < 3000, `${low}`);
  assert.ok(high > 2000 && high < 3000, `${high}`);
});

Deno.test("checkDelay() uses the check interval normally and the fast interval while in doubt", () => {
  assert.equal(checkDelay(S, false, () => 0.5), 10_000);
  assert.equal(checkDelay(S, true, () => 0.5), 1000);
  // A fast interval longer than the check interval never slows checks down.
  assert.equal(checkDelay({ ...S, checkIntervalMs: 500 }, true, () => 0.5), 500);
});

Deno.test("redialDelay() backs off exponentially with full jitter, capped at the reconnect interval", () => {
  const top = (attempt: number) => redialDelay(S, attempt, () => 0.999999);
  assert.ok(Math.abs(top(0) - 1000) < 0.01);
  assert.ok(Math.abs(top(1) - 2000) < 0.01);
  assert.ok(Math.abs(top(4) - 16_000) < 0.02);
  assert.ok(Math.abs(top(5) - 30_000) < 0.05);
  assert.ok(Math.abs(top(1000) - 30_000) < 0.05);
  assert.equal(redialDelay(S, 3, () => 0), 0);
  assert.equal(redialDelay(S, 3, () => 0.5), 4000);
});

Deno.test("redialDelay() spreads a fleet's redials over the whole window", () => {
  // 1000 servers that went DOWN together, on their 6th redial: no storm.
  const delays = Array.from({ length: 1000 }, () => redialDelay(S, 6, Math.random));
  const buckets = new Array(10).fill(0);
  for (const d of delays) buckets[Math.min(9, Math.floor(d / 3000))]++;
  assert.ok(buckets.every((n) => n > 50 && n < 160), JSON.stringify(buckets));
});

Deno.test("redialDelay() never waits longer than a short reconnect interval", () => {
  const s = { ...S, reconnectIntervalMs: 400 };
  for (let a = 0; a < 50; a++) assert.ok(redialDelay(s, a, () => 0.999999) <= 400);
});
