/** Unit tests of {@linkcode HealthTracker}: UP / DOWN verdicts from check outcomes. */

import assert from "node:assert/strict";
import { HealthTracker } from "../lib/lb/verdict.ts";

const T0 = 1_700_000_000_000;

Deno.test("HealthTracker starts UNKNOWN with zero counts and lastChange at the start time", () => {
  const h = new HealthTracker({}, T0);
  assert.equal(h.state, "UNKNOWN");
  assert.equal(h.consecutiveFailures, 0);
  assert.equal(h.consecutiveSuccesses, 0);
  assert.equal(h.lastChange, T0);
  assert.equal(h.lastError, undefined);
});

Deno.test("HealthTracker.success() turns UNKNOWN into UP at once, whatever rise is", () => {
  const h = new HealthTracker({ rise: 5 }, T0);
  assert.deepEqual(h.success(T0 + 250), {
    from: "UNKNOWN",
    to: "UP",
    reason: "check succeeded",
    at: T0 + 250,
    afterMs: 250,
    tookMs: 0,
  });
  assert.equal(h.state, "UP");
  assert.equal(h.lastChange, T0 + 250);
  assert.equal(h.consecutiveSuccesses, 1);
});

Deno.test("HealthTracker.success() in UP reports no transition and keeps counting", () => {
  const h = new HealthTracker({}, T0);
  h.success(T0);
  assert.equal(h.success(T0 + 1), undefined);
  assert.equal(h.success(T0 + 2), undefined);
  assert.equal(h.consecutiveSuccesses, 3);
  assert.equal(h.lastChange, T0);
});

Deno.test("HealthTracker.failure() turns UP into DOWN on the third consecutive failure by default", () => {
  const h = new HealthTracker({}, T0);
  h.success(T0 + 10);
  assert.equal(h.failure("timeout", T0 + 20), undefined);
  assert.equal(h.failure("timeout", T0 + 30), undefined);
  assert.equal(h.state, "UP");
  assert.equal(h.consecutiveFailures, 2);
  assert.deepEqual(h.failure("connection refused", T0 + 40), {
    from: "UP",
    to: "DOWN",
    reason: "connection refused",
    at: T0 + 40,
    afterMs: 30,
    tookMs: 20,
  });
  assert.equal(h.state, "DOWN");
  assert.equal(h.consecutiveFailures, 3);
  assert.equal(h.consecutiveSuccesses, 0);
});

Deno.test("HealthTracker.failure() honours fall", () => {
  for (const fall of [1, 2, 5]) {
    const h = new HealthTracker({ fall }, T0);
    h.success(T0);
    for (let i = 1; i < fall; i++) assert.equal(h.failure("x", T0 + i), undefined, `fall ${fall}`);
    const t = h.failure("x", T0 + fall);
    assert.equal(t?.to, "DOWN", `fall ${fall}`);
  }
});

Deno.test("HealthTracker.failure() turns UNKNOWN into DOWN after fall failures", () => {
  const h = new HealthTracker({ fall: 2 }, T0);
  assert.equal(h.failure("timeout", T0 + 100), undefined);
  assert.equal(h.state, "UNKNOWN");
  assert.deepEqual(h.failure("timeout", T0 + 200), {
    from: "UNKNOWN",
    to: "DOWN",
    reason: "timeout",
    at: T0 + 200,
    afterMs: 200,
    tookMs: 100,
  });
});

Deno.test("HealthTracker.success() resets the failure run: failures must be consecutive", () => {
  const h = new HealthTracker({ fall: 3 }, T0);
  h.success(T0);
  h.failure("a", T0 + 1);
  h.failure("b", T0 + 2);
  h.success(T0 + 3);
  assert.equal(h.consecutiveFailures, 0);
  assert.equal(h.failure("c", T0 + 4), undefined);
  assert.equal(h.failure("d", T0 + 5), undefined);
  assert.equal(h.state, "UP");
  assert.equal(h.failure("e", T0 + 6)?.to, "DOWN");
});

Deno.test("HealthTracker.failure() in DOWN reports no transition but keeps counting", () => {
  const h = new HealthTracker({ fall: 1 }, T0);
  h.failure("a", T0);
  assert.equal(h.failure("b", T0 + 1), undefined);
  assert.equal(h.consecutiveFailures, 2);
  assert.equal(h.lastChange, T0);
});

Deno.test("HealthTracker.success() from DOWN returns to UP after two successes by default", () => {
  const h = new HealthTracker({ fall: 1 }, T0);
  h.failure("timeout", T0 + 100);
  assert.equal(h.success(T0 + 1100), undefined);
  assert.equal(h.inDoubt, true);
  assert.deepEqual(h.success(T0 + 1300), {
    from: "DOWN",
    to: "UP",
    reason: "check succeeded",
    at: T0 + 1300,
    afterMs: 1200,
    tookMs: 200,
  });
  assert.equal(h.inDoubt, false);
});

Deno.test("HealthTracker.inDoubt is true after a failure in UP and after a success in DOWN", () => {
  const h = new HealthTracker({ fall: 2, rise: 2 }, T0);
  assert.equal(h.inDoubt, false);
  h.success(T0);
  assert.equal(h.inDoubt, false);
  h.failure("timeout", T0 + 1);
  assert.equal(h.inDoubt, true);
  h.failure("timeout", T0 + 2);
  assert.equal(h.state, "DOWN");
  assert.equal(h.inDoubt, false);
  h.success(T0 + 3);
  assert.equal(h.inDoubt, true);
});

Deno.test("HealthTracker.success() from DOWN needs rise consecutive successes", () => {
  const h = new HealthTracker({ fall: 1, rise: 3 }, T0);
  h.failure("timeout", T0);
  assert.equal(h.success(T0 + 1), undefined);
  assert.equal(h.success(T0 + 2), undefined);
  assert.equal(h.state, "DOWN");
  assert.equal(h.consecutiveSuccesses, 2);
  assert.equal(h.success(T0 + 3)?.to, "UP");
});

Deno.test("HealthTracker.failure() in DOWN restarts the rise count", () => {
  const h = new HealthTracker({ fall: 1, rise: 2 }, T0);
  h.failure("a", T0);
  h.success(T0 + 1);
  h.failure("b", T0 + 2);
  assert.equal(h.consecutiveSuccesses, 0);
  assert.equal(h.success(T0 + 3), undefined);
  assert.equal(h.state, "DOWN");
  assert.equal(h.success(T0 + 4)?.to, "UP");
});

Deno.test("HealthTracker.down() marks UP as DOWN at once", () => {
  const h = new HealthTracker({ fall: 3 }, T0);
  h.success(T0);
  assert.deepEqual(h.down("server terminated: maintenance", T0 + 500), {
    from: "UP",
    to: "DOWN",
    reason: "server terminated: maintenance",
    at: T0 + 500,
    afterMs: 500,
    tookMs: 0,
  });
  assert.equal(h.state, "DOWN");
  assert.equal(h.consecutiveFailures, 1);
  assert.equal(h.consecutiveSuccesses, 0);
  assert.equal(h.lastError, "server terminated: maintenance");
});

Deno.test("HealthTracker.down() marks UNKNOWN as DOWN at once", () => {
  const h = new HealthTracker({}, T0);
  const t = h.down("going away", T0 + 7);
  assert.equal(t?.from, "UNKNOWN");
  assert.equal(t?.to, "DOWN");
  assert.equal(t?.afterMs, 7);
});

Deno.test("HealthTracker.down() in DOWN reports nothing but updates lastError and keeps the count", () => {
  const h = new HealthTracker({ fall: 2 }, T0);
  h.failure("a", T0);
  h.failure("b", T0 + 1);
  assert.equal(h.down("c", T0 + 2), undefined);
  assert.equal(h.lastError, "c");
  assert.equal(h.consecutiveFailures, 2, "down() does not lower the failure count");
  assert.equal(h.lastChange, T0 + 1);
});

Deno.test("HealthTracker.down() resets the rise count", () => {
  const h = new HealthTracker({ fall: 1, rise: 2 }, T0);
  h.failure("a", T0);
  h.success(T0 + 1);
  h.down("b", T0 + 2);
  assert.equal(h.success(T0 + 3), undefined);
  assert.equal(h.success(T0 + 4)?.to, "UP");
});

Deno.test("HealthTracker.configure() changes fall from the next outcome", () => {
  const h = new HealthTracker({ fall: 5 }, T0);
  h.success(T0);
  h.failure("a", T0 + 1);
  h.failure("b", T0 + 2);
  h.configure({ fall: 2 });
  assert.equal(h.state, "UP", "configure() alone changes no verdict");
  assert.equal(h.failure("c", T0 + 3)?.to, "DOWN");
});

Deno.test("HealthTracker.configure() changes rise and leaves unnamed options alone", () => {
  const h = new HealthTracker({ fall: 2, rise: 1 }, T0);
  h.configure({ rise: 2 });
  h.failure("a", T0);
  assert.equal(h.failure("b", T0 + 1)?.to, "DOWN", "fall is still 2");
  assert.equal(h.success(T0 + 2), undefined);
  assert.equal(h.success(T0 + 3)?.to, "UP");
  h.configure({});
  h.failure("c", T0 + 4);
  assert.equal(h.failure("d", T0 + 5)?.to, "DOWN", "fall still 2 after configure({})");
});

Deno.test("HealthTracker transitions report afterMs as the time spent in the previous state", () => {
  const h = new HealthTracker({ fall: 1, rise: 1 }, T0);
  const up = h.success(T0 + 100);
  const down = h.failure("x", T0 + 1100);
  const upAgain = h.success(T0 + 1600);
  const downAgain = h.down("bye", T0 + 1601);
  assert.deepEqual(
    [up, down, upAgain, downAgain].map((t) => [t?.from, t?.to, t?.at, t?.afterMs]),
    [
      ["UNKNOWN", "UP", T0 + 100, 100],
      ["UP", "DOWN", T0 + 1100, 1000],
      ["DOWN", "UP", T0 + 1600, 500],
      ["UP", "DOWN", T0 + 1601, 1],
    ],
  );
  assert.equal(h.lastChange, T0 + 1601);
});

Deno.test("HealthTracker.lastError keeps the latest failure reason until the server is UP again", () => {
  const h = new HealthTracker({ fall: 2, rise: 2 }, T0);
  h.failure("timeout", T0);
  assert.equal(h.lastError, "timeout");
  h.failure("connection refused", T0 + 1);
  assert.equal(h.state, "DOWN");
  assert.equal(h.lastError, "connection refused");
  h.success(T0 + 2);
  assert.equal(h.state, "DOWN");
  assert.equal(h.lastError, "connection refused", "kept while still DOWN");
  h.success(T0 + 3);
  assert.equal(h.state, "UP");
  assert.equal(h.lastError, undefined, "cleared on the way UP");
});

Deno.test("HealthTracker.lastError is cleared when UNKNOWN turns UP after failures", () => {
  const h = new HealthTracker({ fall: 3 }, T0);
  h.failure("timeout", T0);
  assert.equal(h.lastError, "timeout");
  assert.equal(h.success(T0 + 1)?.to, "UP");
  assert.equal(h.lastError, undefined);
});
