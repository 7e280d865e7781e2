#!/usr/bin/env -S deno run -A
/**
 * `deno task bench:soak`: no false DOWN over time. N agents (in a few
 * processes) behind lossy, jittery UDP relays (another process), watched by
 * an LB in this process with the defaults (heartbeats, probes), whose own
 * event loop can be made to stall. Every DOWN is false: no agent fails.
 * Reports DOWNs, probes (false suspicions) and failed probes, heartbeats,
 * the relays' drops and the LB's CPU; appends the run to
 * bench/results.json (`soak`) and docs/PERFORMANCE.md.
 *
 * Flags: --servers N (200) --minutes M (10) --drop PERCENT (10) --jitter MS
 * (50) --stall MS (0: none; else the LB's loop is blocked that long) --every
 * S (2: between stalls) --quic native|matrixai (native).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Monitor } from "../lib/lb/monitor.ts";
import type { CausedTransition } from "../lib/lb/record.ts";
import { createHmacSigner, readSecretFile } from "../lib/security/jwt.ts";
import { defaultFiles, ensureDefaultFiles } from "../lib/security/files.ts";
import { createQuicTransport, type QuicStack } from "../lib/transport/stacks.ts";
import { Child, machine, procSample, readResults, sleep, writeResults } from "./_measure.ts";
import { type SoakResult, updatePerformanceDoc } from "./_report.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    servers: { type: "string", default: "200" },
    minutes: { type: "string", default: "10" },
    drop: { type: "string", default: "10" },
    jitter: { type: "string", default: "50" },
    stall: { type: "string", default: "0" },
    every: { type: "string", default: "2" },
    quic: { type: "string", default: "native" },
  },
});
const servers = Number(values.servers);
const minutes = Number(values.minutes);
const stallMs = Number(values.stall);
const quic = values.quic as QuicStack;
const say = (l: string) => console.error(`soak: ${l}`);

const dir = await Deno.makeTempDir({ prefix: "qhcp-soak-" });
const children: Child[] = [];
const { transport } = await createQuicTransport(quic);
let monitor: Monitor | undefined;
try {
  await ensureDefaultFiles(dir);
  const files = defaultFiles(dir);
  const procs = Math.max(2, Math.ceil(servers / 2000));
  const per = Math.ceil(servers / procs);
  for (let i = 0; i < procs; i++) {
    const count = Math.min(per, servers - i * per);
    if (count > 0) {
      children.push(
        new Child("bench/_endpoints.ts", [
          "--count",
          String(count),
          "--quic",
          quic,
          "--certs",
          dir,
        ]),
      );
    }
  }
  const ports = (await Promise.all(children.map((c) => c.next<{ ports: number[] }>(300_000))))
    .flatMap((r) => r.ports);
  const relays = new Child("bench/_relays.ts", [
    "--ports",
    ports.join(","),
    "--drop",
    values.drop,
    "--jitter",
    values.jitter,
  ]);
  children.push(relays);
  const relayPorts = (await relays.next<{ ports: number[] }>(120_000)).ports;

  const downs: CausedTransition[] = [];
  monitor = new Monitor({
    transport,
    signer: createHmacSigner(await readSecretFile(files.jwtSecret), { lbId: "lb-soak" }),
    servers: relayPorts.map((port) => ({ host: "127.0.0.1", port })),
    caPem: await Deno.readTextFile(files.caCert),
    events: {
      onTransition: (address, t) => {
        if (t.to !== "DOWN") return;
        downs.push(t as CausedTransition);
        say(`false DOWN ${address}: ${(t as CausedTransition).evidence} ${t.reason}`);
      },
    },
  });
  monitor.start();
  say(
    `${servers} servers (${quic}) behind relays (${values.drop} % loss, ${values.jitter} ms jitter) ...`,
  );
  const upBy = performance.now() + 120_000;
  while (monitor.totals().up < servers && performance.now() < upBy) await sleep(250);
  await sleep(5000);
  const t0 = monitor.totals();
  const cpu0 = procSample(Deno.pid).cpuMs;
  const w0 = performance.now();
  say(
    `all UP; soaking ${minutes} min${
      stallMs ? `, the LB stalling ${stallMs} ms every ${values.every} s` : ""
    } ...`,
  );
  let stalls = 0;
  while (performance.now() - w0 < minutes * 60_000) {
    if (stallMs > 0) {
      const until = performance.now() + stallMs;
      while (performance.now() < until) { /* the LB's event loop is blocked */ }
      stalls++;
    }
    await sleep(Number(values.every) * 1000);
  }
  const wallS = (performance.now() - w0) / 1000;
  const t1 = monitor.totals();
  const cpu1 = procSample(Deno.pid).cpuMs;
  await relays.stop("SIGTERM");
  const stats = (await relays.next<{ stats: { forwarded: number; dropped: number } }>(10_000)
    .catch(() => ({ stats: { forwarded: 0, dropped: 0 } }))).stats;
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const result: SoakResult = {
    quic,
    servers,
    minutes,
    drop_percent: Number(values.drop),
    jitter_ms: Number(values.jitter),
    stall_ms: stallMs,
    stall_every_s: stallMs ? Number(values.every) : 0,
    stalls,
    heartbeat_ms: t1.heartbeat_ms,
    heartbeats_per_s: r1((t1.heartbeats - t0.heartbeats) / wallS),
    probes: t1.probes - t0.probes,
    probes_failed: t1.probes_failed - t0.probes_failed,
    checks_failed: t1.checks_failed - t0.checks_failed,
    false_downs: downs.length,
    relay_dropped: stats.dropped,
    relay_forwarded: stats.forwarded,
    lb_cpu_percent: r1(((cpu1 - cpu0) / (wallS * 1000)) * 100),
    when: new Date().toISOString(),
  };
  console.log(JSON.stringify(result, null, 2));
  const results = readResults();
  const previous = (results.soak as SoakResult[] | undefined) ?? [];
  const soak = [
    ...previous.filter((r) =>
      !(r.quic === quic && r.stall_ms === stallMs && r.drop_percent === result.drop_percent)
    ),
    result,
  ];
  const all = { ...results, soak, soak_machine: machine() };
  writeResults(all);
  await updatePerformanceDoc(all);
} finally {
  await monitor?.stop();
  await Promise.all(children.map((c) => c.stop("SIGTERM")));
  await transport.close();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
