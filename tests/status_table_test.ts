import assert from "node:assert/strict";
import { renderStatusTable, StatusScreen, summarize } from "../lib/status_table.ts";
import type { WatchView } from "../lib/watch.ts";

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
