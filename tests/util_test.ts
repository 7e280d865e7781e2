/** Tests of lib/util building blocks that no other suite covers: batches, ISO times and the log stream. */
import assert from "node:assert/strict";
import { chunks } from "../lib/util/chunks.ts";
import { isoTime } from "../lib/util/iso_time.ts";
import { LogStream } from "../lib/util/log_stream.ts";
import { firstOutputWhileOtherUnread } from "./_helpers.ts";

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

Deno.test("isoTime() gives the text of Date.toISOString() at calendar edges and at random times", () => {
  const edges = [
    0,
    -1, // 1969-12-31T23:59:59.999Z
    951_782_400_000, // 2000-02-29, a leap day of a century divisible by 400
    4_107_542_399_999, // 2100-02-28T23:59:59.999Z, 2100 is not a leap year
    4_107_542_400_000, // 2100-03-01
    Date.UTC(2024, 1, 29, 23, 59, 59, 999),
    Date.UTC(2026, 11, 31, 23, 59, 59, 999),
    -62_167_219_200_000, // 0000-01-01, the first time of the fast path
    253_402_300_799_999, // 9999-12-31T23:59:59.999Z, its last
  ];
  for (const ms of edges) assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  let seed = 12345;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 20_000; i++) {
    // Years 0000 to 9999, and the decades around now at a finer grain.
    const ms = i % 2 === 0
      ? Math.floor(-62_167_219_200_000 + next() * 315_569_520_000_000)
      : Math.floor(Date.now() + (next() - 0.5) * 1e12);
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
});

Deno.test("isoTime() hands times outside years 0000-9999 and fractions to Date, errors included", () => {
  for (const ms of [-62_167_219_200_001, 253_402_300_800_000, 8.64e15, 1.5]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
  for (const ms of [NaN, 8.64e15 + 1, Infinity]) assert.throws(() => isoTime(ms), RangeError);
});

/** A sink that takes at most `max` bytes a write and answers when `release()` says so (or at once). */
function fakeSink(options: { max?: number; held?: boolean } = {}) {
  const written: Uint8Array[] = [];
  let waiting: (() => void)[] = [];
  let held = options.held ?? false;
  return {
    written,
    text: () => new TextDecoder().decode(new Uint8Array(written.flatMap((b) => [...b]))),
    release() {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    async write(p: Uint8Array): Promise<number> {
      if (held) await new Promise<void>((r) => waiting.push(r));
      const n = Math.min(p.length, options.max ?? p.length);
      written.push(p.slice(0, n));
      return n;
    },
    reset: () => (waiting = []),
  };
}

Deno.test("LogStream writes everything in order, partial writes included, and flush() waits for it", async () => {
  const sink = fakeSink({ max: 7 });
  const out = new LogStream(sink);
  for (let i = 0; i < 50; i++) assert.ok(out.write(`line ${i}\n`));
  assert.ok(await out.flush(5000));
  assert.equal(sink.text(), Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join(""));
  assert.equal(out.pendingBytes, 0);
  assert.ok(sink.written.length < 50 * 2, "what queued during a write goes in the next one");
});

Deno.test("LogStream drops past its bound while the reader is stuck, counts them, and a notice comes once it fits", async () => {
  const sink = fakeSink({ held: true });
  const out = new LogStream(sink, 100);
  let kept = 0;
  for (let i = 0; i < 40; i++) if (out.write(`line ${String(i).padStart(2, "0")}\n`)) kept++;
  assert.equal(kept, 12, "100 bytes hold twelve 8-byte lines");
  assert.equal(out.dropped, 28);
  out.writeDropNotice((n) => `dropped ${n}\n`);
  assert.equal(out.dropped, 28, "no room for the notice: the count stays");
  assert.equal(await out.flush(50), false, "flush gives up after its timeout");
  sink.release();
  assert.ok(await out.flush(5000));
  out.writeDropNotice((n) => `dropped ${n}\n`);
  assert.equal(out.dropped, 0);
  assert.equal(out.droppedTotal, 28, "the total stays, for /metrics");
  out.write("after\n");
  assert.ok(await out.flush(5000));
  const lines = sink.text().trimEnd().split("\n");
  assert.deepEqual(lines.slice(-2), ["dropped 28", "after"]);
  assert.equal(lines.length, 12 + 2);
});

Deno.test("LogStream after its sink failed (stderr closed) drops what follows", async () => {
  const out = new LogStream({ write: () => Promise.reject(new Error("broken pipe")) });
  out.write("lost\n");
  assert.equal(await out.flush(1000), false);
  assert.equal(out.write("also lost\n"), false);
  assert.equal(out.pendingBytes, 0);
});

Deno.test("createLogger(): a process whose stderr is not read keeps running, drops past the bound and says how many", async () => {
  // stdout first, without reading stderr: with a synchronous write the child
  // would stop at the first full pipe (64 KiB) and never get here.
  const { child, text, reader: stdout } = await firstOutputWhileOtherUnread(
    "log_flood.ts",
    "stdout",
    "the child stopped while its stderr was not read",
  );
  const { ticks } = JSON.parse(text) as { ticks: number };
  // 40 bursts 25 ms apart: a timer of 10 ms ran about 100 times, unless the loop was held.
  assert.ok(ticks >= 40, `the timer ran ${ticks} times during the flood`);
  const stderr = await new Response(child.stderr).text();
  await stdout.cancel();
  assert.equal((await child.status).code, 0);
  const lines = stderr.trimEnd().split("\n");
  const flood = lines.filter((l) => l.includes(" INFO flood ")).length;
  const dropped = lines.filter((l) => l.includes("log lines dropped"))
    .map((l) => Number(/dropped=(\d+)/.exec(l)?.[1]));
  // A notice each time the queue had room again after drops.
  assert.ok(dropped.length >= 1, "dropped lines are said");
  const count = dropped.reduce((a, b) => a + b, 0);
  assert.ok(flood > 5_000 && flood < 40_000, `${flood} lines written`);
  assert.equal(flood + count, 40_000, `${flood} written, ${count} counted as dropped`);
  assert.match(lines.at(-1)!, / INFO done$/);
});
