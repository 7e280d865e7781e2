import assert from "node:assert/strict";
import { DialGate } from "../lib/lb/dial_gate.ts";
import { Scheduler } from "../lib/lb/timers.ts";
import { mulberry32, sleep, waitFor } from "./_helpers.ts";

const now = () => performance.timeOrigin + performance.now();

Deno.test("Scheduler runs callbacks due in one slot in one wake-up, none early", async () => {
  const scheduler = new Scheduler({ slackMs: 50 });
  const ran: { label: string; due: number; at: number; wake: number }[] = [];
  let wakes = 0;
  let marked = false;
  const base = Math.ceil(now() / 50) * 50 + 100; // the start of a slot, 100 ms or more away
  const add = (label: string, due: number) =>
    scheduler.at(due, () => {
      // A microtask queued by the first callback of a wake-up runs after the last one.
      if (!marked) {
        marked = true;
        wakes++;
        queueMicrotask(() => (marked = false));
      }
      ran.push({ label, due, at: now(), wake: wakes });
    });
  add("a", base + 5);
  add("b", base + 20);
  add("c", base + 45);
  add("d", base + 80); // the next slot
  assert.equal(scheduler.size, 4);
  await waitFor("all four ran", () => ran.length === 4, 3000);
  assert.deepEqual(ran.map((r) => r.label), ["a", "b", "c", "d"]);
  for (const r of ran) {
    assert.ok(r.at >= r.due, `${r.label} ran ${(r.due - r.at).toFixed(1)} ms early`);
    assert.ok(r.at - r.due < 50 + 200, `${r.label} ran ${(r.at - r.due).toFixed(0)} ms late`);
  }
  assert.equal(new Set(ran.slice(0, 3).map((r) => r.wake)).size, 1, "a, b, c share a wake-up");
  assert.notEqual(ran[3]!.wake, ran[0]!.wake, "d comes in a later wake-up");
  assert.equal(scheduler.size, 0);
});

Deno.test("Scheduler.cancel() drops a callback; cancelling the last one disarms the timer", async () => {
  const scheduler = new Scheduler({ slackMs: 10 });
  let ran = 0;
  const a = scheduler.after(30, () => ran++);
  const b = scheduler.after(60, () => ran++);
  scheduler.cancel(a);
  scheduler.cancel(a); // twice is harmless
  scheduler.cancel(undefined);
  assert.equal(scheduler.size, 1);
  scheduler.cancel(b);
  assert.equal(scheduler.size, 0);
  await sleep(120);
  assert.equal(ran, 0);
  // A test that leaves a timer armed fails Deno's op sanitizer: none is left here.
});

Deno.test("Scheduler with slack 0 and many random times runs each once, in due order, never early", async () => {
  const scheduler = new Scheduler({ slackMs: 0 });
  const random = mulberry32(7);
  const start = now();
  const dues = Array.from({ length: 2000 }, () => start + 20 + random() * 150);
  const ran: number[] = [];
  const cancelled = new Set<number>();
  const timers = dues.map((due, i) =>
    scheduler.at(due, () => {
      assert.ok(now() >= due, "ran early");
      ran.push(i);
    })
  );
  for (let i = 0; i < dues.length; i += 7) {
    scheduler.cancel(timers[i]);
    cancelled.add(i);
  }
  await waitFor("all ran", () => scheduler.size === 0, 3000);
  assert.equal(ran.length, dues.length - cancelled.size);
  assert.ok(ran.every((i) => !cancelled.has(i)));
  for (let k = 1; k < ran.length; k++) assert.ok(dues[ran[k]!]! >= dues[ran[k - 1]!]!);
});

Deno.test("Scheduler keeps running the others when one callback throws; clear() drops everything", async () => {
  const scheduler = new Scheduler({ slackMs: 20 });
  const errors: unknown[] = [];
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    errors.push(e.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    const ran: string[] = [];
    const t = now() + 10;
    scheduler.at(t, () => {
      throw new Error("boom");
    });
    scheduler.at(t, () => ran.push("after"));
    await waitFor("the second ran", () => ran.length === 1, 2000);
    await sleep(10);
    assert.equal((errors[0] as Error).message, "boom");
    scheduler.after(50, () => ran.push("never"));
    scheduler.clear();
    assert.equal(scheduler.size, 0);
    await sleep(100);
    assert.deepEqual(ran, ["after"]);
  } finally {
    globalThis.removeEventListener("error", onError);
  }
});

Deno.test("DialGate hands out at most `limit` permits, first come first served", async () => {
  const gate = new DialGate(2);
  const order: number[] = [];
  const releases: (() => void)[] = [];
  const waiters = [0, 1, 2, 3, 4].map((i) =>
    gate.acquire().then((release) => {
      order.push(i);
      releases.push(release);
    })
  );
  await sleep(0);
  assert.deepEqual(order, [0, 1]);
  assert.equal(gate.active, 2);
  assert.equal(gate.waiting, 3);
  releases[0]!();
  releases[0]!(); // twice is harmless
  await sleep(0);
  assert.deepEqual(order, [0, 1, 2]);
  assert.equal(gate.active, 2);
  for (let k = 1; k < 5; k++) {
    releases[k]!();
    await sleep(0);
  }
  await Promise.all(waiters);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.equal(gate.active, 0);
  assert.equal(gate.waiting, 0);
});

Deno.test("DialGate.acquire() rejects when its signal aborts and leaves the queue", async () => {
  const gate = new DialGate(1);
  const first = await gate.acquire();
  const controller = new AbortController();
  const waiting = gate.acquire(controller.signal);
  assert.equal(gate.waiting, 1);
  controller.abort(new Error("stopped"));
  await assert.rejects(waiting, /stopped/);
  assert.equal(gate.waiting, 0);
  await assert.rejects(gate.acquire(controller.signal), /stopped/);
  first();
  assert.equal(gate.active, 0);
  assert.throws(() => new DialGate(0), /at least 1/);
});

Deno.test("DialGate serves a lower priority number first, arrival order among equals, skipping aborted waiters", async () => {
  const gate = new DialGate(1);
  const held = await gate.acquire();
  const order: string[] = [];
  const abort = new AbortController();
  const wait = (name: string, priority: number, signal?: AbortSignal) =>
    gate.acquire(signal, priority).then((release) => {
      order.push(name);
      release();
    }, () => order.push(`${name} aborted`));
  const all = [
    wait("dead for an hour", 3_600_000),
    wait("down 5 s", 5000),
    wait("aborted", 0, abort.signal),
    wait("new", 0),
    wait("down 5 s too", 5000),
  ];
  assert.equal(gate.waiting, 5);
  abort.abort();
  await Promise.resolve();
  assert.equal(gate.waiting, 4);
  held();
  await Promise.all(all);
  assert.deepEqual(order, [
    "aborted aborted",
    "new",
    "down 5 s",
    "down 5 s too",
    "dead for an hour",
  ]);
  assert.equal(gate.active, 0);
  assert.equal(gate.waiting, 0);
});
