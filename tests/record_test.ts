/** The per-server record, driven directly: outcomes in, verdicts, figures and views out. */

import assert from "node:assert/strict";
import type { CheckAction } from "../lib/protocol/lb_session.ts";
import type { HealthResponseMessage } from "../lib/protocol/wire.ts";
import { DURATION_BUCKETS, ServerRecord } from "../lib/lb/record.ts";

const T0 = 1_700_000_000_000;

function response(over: Partial<HealthResponseMessage> = {}): HealthResponseMessage {
  return {
    type: "HEALTH_RESPONSE",
    seq: 2,
    re: 2,
    status: "UP",
    metrics: { cpu_percent: 50, mem_percent: 20 },
    ts: T0,
    ...over,
  };
}

const ok = (rttMs: number, r = response()): CheckAction => ({
  kind: "check",
  ok: true,
  rttMs,
  response: r,
});

Deno.test("ServerRecord.checked() makes an UNKNOWN server UP with cause check_ok and keeps its figures", () => {
  const r = new ServerRecord("10.0.0.7:4243", { fall: 3, rise: 2 }, T0);
  r.ready("web-7");
  const t = r.checked(ok(1.5), T0 + 10, false);
  assert.equal(t?.to, "UP");
  assert.equal(t?.cause, "check_ok");
  const v = r.view("READY", { floor: 10 });
  assert.equal(v.state, "UP");
  assert.equal(v.server_id, "web-7");
  assert.equal(v.last_rtt_ms, 1.5);
  assert.equal(v.weight, 55);
  assert.equal(v.load, 50);
  assert.equal(r.counters.ok, 1);
  assert.equal(r.counters.durations.count, 1);
  assert.equal(r.counters.durations.counts[DURATION_BUCKETS.indexOf(0.0025)], 1);
  assert.deepEqual(r.history(T0 + 10).map((h) => h.result), ["ok"]);
  // A late good answer is counted as late.
  r.checked(ok(1), T0 + 20, true);
  assert.equal(r.counters.late, 1);
});

Deno.test("ServerRecord.failed() counts to fall, then DOWN with the failure's cause and a clipped reason", () => {
  const r = new ServerRecord("a:1", { fall: 2, rise: 2 }, T0);
  r.checked(ok(1), T0, false);
  const long = "x".repeat(10_000);
  assert.equal(
    r.failed({ kind: "peer_error", code: "INTERNAL", message: long }, T0 + 1),
    undefined,
  );
  assert.ok(r.inDoubt);
  const t = r.failed({ kind: "timeout", message: "no HEALTH_RESPONSE within 2000 ms" }, T0 + 2);
  assert.equal(t?.to, "DOWN");
  assert.equal(t?.cause, "timeout");
  assert.equal(r.counters.downs, 1);
  assert.equal(r.counters.stateChanges, 2);
  const errors = r.history(T0 + 2).map((h) => h.error ?? "");
  assert.ok(errors.every((e) => e.length <= 300), "reasons are clipped");
  assert.equal(r.view("DISCONNECTED", {}).weight, 0);
});

Deno.test("ServerRecord.checked() with a FAILING reply fails the check, keeps the reply's figures and at most 32 short local checks", () => {
  const r = new ServerRecord("a:1", { fall: 1, rise: 2 }, T0);
  const checks = Array.from({ length: 400 }, (_, i) => ({
    name: `check ${i} ${"n".repeat(500)}`,
    ok: i !== 3,
    detail: "d".repeat(500),
  }));
  const failing: CheckAction = {
    kind: "check",
    ok: false,
    failure: { kind: "failing", message: "server FAILING: check 3: down" },
    reply: { rttMs: 2, response: response({ status: "FAILING", checks }) },
  };
  const t = r.checked(failing, T0, false);
  assert.equal(t?.to, "DOWN");
  assert.equal(t?.cause, "failing");
  const v = r.view("READY", {});
  assert.equal(v.status, "FAILING");
  assert.equal(v.metrics?.cpu_percent, 50);
  assert.equal(v.checks?.length, 32);
  assert.ok(v.checks!.every((c) => c.name.length <= 200 && c.detail.length <= 200));
  assert.equal(r.counters.failed, 1);
  assert.equal(r.counters.ok, 0);
});

Deno.test("ServerRecord.terminated() is DOWN at once with cause terminated; rise good checks bring it back", () => {
  const r = new ServerRecord("a:1", { fall: 3, rise: 2 }, T0);
  r.checked(ok(1), T0, false);
  const t = r.terminated("shutdown", T0 + 5);
  assert.equal(t?.to, "DOWN");
  assert.equal(t?.cause, "terminated");
  assert.match(t!.reason, /server terminated the session: shutdown/);
  assert.equal(r.checked(ok(1), T0 + 6, false), undefined, "one of two");
  assert.equal(r.checked(ok(1), T0 + 7, false)?.to, "UP");
});
