import assert from "node:assert/strict";
import { Redrawer, renderStatusTable, StatusScreen, summarize } from "../lib/ops/status_table.ts";
import { fewOf, oneLine } from "../lib/util/text.ts";
import type { WatchView } from "../lib/lb/watch.ts";
import { firstOutputWhileOtherUnread, sleep } from "./_helpers.ts";

function view(over: Partial<WatchView>): WatchView {
  return {
    address: "10.0.0.1:4243",
    state: "UP",
    session: "READY",
    consecutive_failures: 0,
    last_rtt_ms: 1.234,
    metrics: { cpu_percent: 12.345, mem_percent: 40 },
    status: "UP",
    last_error: null,
    last_change: "2026-11-21T10:00:00.000Z",
    server_id: "web-1",
    checks_ok: 3,
    checks_failed: 0,
    last_check: null,
    weight: 100,
    load: 0,
    checks: null,
    suspicion: null,
    heartbeat_ms: null,
    extensions: [],
    services: [],
    ...over,
  };
}

Deno.test("renderStatusTable() shows server, state, CPU, memory, RTT, failures and last error", () => {
  const text = renderStatusTable([
    view({}),
    view({
      address: "10.0.0.2:4243",
      state: "DOWN",
      metrics: null,
      last_rtt_ms: null,
      consecutive_failures: 3,
      last_error: "timeout: no HEALTH_RESPONSE within 2000 ms",
    }),
  ]);
  const lines = text.split("\n");
  assert.match(lines[0]!, /^SERVER\s+STATE\s+CPU %\s+MEM %\s+RTT ms\s+FAILS\s+LAST ERROR$/);
  assert.match(lines[1]!, /^10\.0\.0\.1:4243\s+UP\s+12\.3\s+40\.0\s+1\.23\s+0\s+-$/);
  assert.match(
    lines[2]!,
    /^10\.0\.0\.2:4243\s+DOWN\s+-\s+-\s+-\s+3\s+timeout: no HEALTH_RESPONSE within 2000 ms$/,
  );
  // Columns line up.
  assert.equal(lines[1]!.indexOf("UP"), lines[0]!.indexOf("STATE"));
});

Deno.test("renderStatusTable() cuts long errors to the width and colours states on request", () => {
  const text = renderStatusTable([view({ state: "DOWN", last_error: "x".repeat(500) })], {
    width: 80,
    color: true,
  });
  const row = text.split("\n")[1]!;
  assert.ok(row.includes("\x1b[31mDOWN"));
  assert.ok(row.replaceAll("\x1b[31m", "").replaceAll("\x1b[0m", "").length <= 80);
  assert.ok(row.endsWith("…"));
});

Deno.test("renderStatusTable() marks a DRAINING server with UP*", () => {
  assert.match(renderStatusTable([view({ status: "DRAINING" })]), /UP\*/);
});

Deno.test("summarize() counts states", () => {
  assert.equal(
    summarize([view({}), view({ state: "DOWN" }), view({ state: "UNKNOWN" }), view({})]),
    "4 servers: 2 UP, 1 DOWN, 1 UNKNOWN",
  );
});

Deno.test("StatusScreen redraws in place on a TTY with recent log lines, and prints plain tables otherwise", () => {
  const tty: string[] = [];
  const screen = new StatusScreen({
    mode: "tty",
    write: (t) => tty.push(t),
    columns: () => 100,
    keepLines: 2,
  });
  screen.note("one");
  screen.note("two");
  screen.note("three");
  screen.draw([view({})], "title");
  assert.ok(tty[0]!.startsWith("\x1b[H\x1b[2J"));
  assert.match(tty[0]!, /Recent events:\ntwo\nthree\n$/);
  const plain: string[] = [];
  new StatusScreen({ mode: "plain", write: (t) => plain.push(t) }).draw([view({})], "title");
  assert.ok(!plain[0]!.includes("\x1b"));
  assert.match(plain[0]!, /^title\nSERVER/);
});

Deno.test("renderStatusTable() shows no CPU, memory or RTT for a server that is not UP (they are stale)", () => {
  const row = renderStatusTable([view({ state: "DOWN", last_error: "timeout" })]).split("\n")[1]!;
  assert.match(row, /^10\.0\.0\.1:4243\s+DOWN\s+-\s+-\s+-\s+0\s+timeout$/);
  const unknown = renderStatusTable([view({ state: "UNKNOWN" })]).split("\n")[1]!;
  assert.match(unknown, /UNKNOWN\s+-\s+-\s+-/);
});

Deno.test("summarize() says 1 server, not 1 servers", () => {
  assert.equal(summarize([view({})]), "1 server: 1 UP, 0 DOWN, 0 UNKNOWN");
  assert.equal(summarize([]), "0 servers: 0 UP, 0 DOWN, 0 UNKNOWN");
});

Deno.test("renderStatusTable() and oneLine() keep a peer's text on one line without escape codes", () => {
  const forged = "boom\n2026-11-29T00:00:00.000Z INFO server UP server=evil\x1b[2J\x1b[32m";
  const text = renderStatusTable([view({ state: "DOWN", last_error: forged })], { width: 500 });
  const lines = text.split("\n");
  assert.equal(lines.length, 2, "header and one row");
  assert.ok(!text.includes("\x1b"), "no escape character");
  assert.equal(oneLine("a\r\nb\tc\u2028d\x7f"), "a  b c d ");
});

Deno.test("Redrawer draws at once, soon after a change, and on its interval otherwise", async () => {
  const draws: number[] = [];
  const t0 = Date.now();
  const r = new Redrawer({
    draw: () => draws.push(Date.now() - t0),
    minGapMs: 50,
    intervalMs: () => 400,
  });
  r.changed(); // before start: nothing
  assert.equal(draws.length, 0);
  r.start();
  assert.equal(draws.length, 1, "drawn at once on start");
  r.changed();
  r.changed(); // several changes in one gap: one draw
  await sleep(150);
  assert.equal(draws.length, 2, `one draw for the changes, got ${draws}`);
  assert.ok(draws[1]! >= 45 && draws[1]! < 140, `the change was drawn after the gap: ${draws}`);
  await sleep(450);
  assert.ok(draws.length >= 3, `the interval draws on its own: ${draws}`);
  r.stop();
  const n = draws.length;
  r.changed();
  await sleep(120);
  assert.equal(draws.length, n, "nothing after stop()");
});

Deno.test("fewOf() shows at most ten items of a list and counts the rest", () => {
  const many = Array.from({ length: 3000 }, (_, i) => `10.0.0.${i}:4243`);
  assert.equal(fewOf(many), `${many.slice(0, 10).join(",")} (+2990 more)`);
  assert.equal(fewOf(["a", "b"]), "a,b");
  assert.equal(fewOf(["a", "b", "c"], 2), "a,b (+1 more)");
  assert.equal(fewOf([]), undefined);
});

Deno.test("openLbScreen(): an LB whose stdout is not read keeps its event loop running and drops table frames", async () => {
  // stderr only: with a synchronous write the child would stop at the first
  // frame larger than the pipe and never report.
  const { child, text, reader } = await firstOutputWhileOtherUnread(
    "table_flood.ts",
    "stderr",
    "the child stopped while its stdout was not read",
  );
  const report = JSON.parse(text) as { ticks: number; dropped: number };
  // 3 s of a 10 ms timer: about 300 runs unless the loop was held.
  assert.ok(report.ticks >= 100, `the timer ran ${report.ticks} times`);
  assert.ok(report.dropped >= 1, "frames past the bound are dropped");
  // Closing the pipe ends the write the child still waits on.
  await child.stdout.cancel();
  await reader.cancel();
  assert.equal((await child.status).code, 0);
});
