/**
 * `deno task bench:scale --lbs M [--standalone]`: M LBs over the same N
 * agents, either as a fleet sharing them through etcd (each server checked
 * by K) or as M standalone LBs each checking every server (the N x M
 * storm). Reports sessions per agent, checks per second per LB, the LBs'
 * CPU, etcd writes per second, false DOWNs, and (fleet) how long the
 * survivors take to check a killed LB's servers again.
 *
 * @module
 */

import { ensureDefaultFiles } from "../lib/security/files.ts";
import type { MonitorTotals } from "../lib/lb/monitor.ts";
import type { QuicStack } from "../lib/transport/stacks.ts";
import { createEtcdStore } from "../lib/fleet/etcd.ts";
import { EtcdCluster } from "../tools/etcd_cluster.ts";
import {
  benchLbFlags,
  Child,
  procSample,
  sleep,
  startEndpoints,
  udpDrops,
  udpDropsOf,
} from "./_measure.ts";
import type { FleetScaleResult } from "./_report.ts";

/** Options of {@linkcode runFleetScale}. */
export interface FleetScaleOptions {
  servers: number;
  intervalS: number;
  quic: QuicStack;
  lbs: number;
  /** M standalone LBs instead of a fleet. */
  standalone: boolean;
  checkersPerServer?: number;
  durationS?: number;
  /**
   * Fleet mode: LB kills to time, the killed LB brought back and the fleet
   * settled between them (default 1); more give a p50 and a maximum.
   */
  kills?: number;
  lbArgs?: readonly string[];
  say?: (line: string) => void;
}

/** Runs one fleet (or M-standalone) measurement. */
export async function runFleetScale(o: FleetScaleOptions): Promise<FleetScaleResult> {
  const say = o.say ?? ((l: string) => console.error(l));
  const k = o.checkersPerServer ?? 2;
  const durationS = o.durationS ?? 30;
  const dir = await Deno.makeTempDir({ prefix: "qhcp-fleet-scale-" });
  const children: Child[] = [];
  // One member: a benchmark on two cores has no CPU to spare for three.
  const etcd = o.standalone ? undefined : await EtcdCluster.start(1);
  const lbs: { child: Child; base: string }[] = [];
  try {
    await ensureDefaultFiles(dir);
    const procs = Math.max(2, Math.ceil(o.servers / 2000));
    say(`fleet scale: ${o.servers} endpoints (${o.quic}) in ${procs} processes ...`);
    const ports = await startEndpoints(o.servers, o.quic, procs, dir, children);
    const serversFile = `${dir}/servers.txt`;
    await Deno.writeTextFile(serversFile, ports.map((p) => `127.0.0.1:${p}`).join("\n") + "\n");
    const mode = o.standalone ? `${o.lbs} standalone LBs` : `a fleet of ${o.lbs} LBs (K = ${k})`;
    say(`fleet scale: ${mode} over ${o.servers} servers every ${o.intervalS} s ...`);
    const startLb = async (i: number) => {
      const child = new Child("lb.ts", [
        ...(o.standalone || i === 0 ? ["--servers-file", serversFile] : []),
        ...(etcd ? ["--etcd", etcd.endpoints.join(","), "--checkers-per-server", String(k)] : []),
        "--check-interval",
        String(o.intervalS),
        ...benchLbFlags(o.quic),
        "--lb-id",
        `lb-scale-${i}`,
        ...(o.lbArgs ?? []),
      ], { QHCP_CERTS_DIR: dir });
      children.push(child);
      const http = await child.waitForLog(/HTTP status endpoint listening .*port=(\d+)/, 60_000);
      lbs[i] = { child, base: `http://127.0.0.1:${http.match[1]}` };
    };
    for (let i = 0; i < o.lbs; i++) await startLb(i);
    const totals = async (i: number) => {
      const res = await fetch(`${lbs[i]!.base}/api/totals`).catch((e) => {
        // An LB that stopped answering: say what it printed last.
        const tail = lbs[i]!.child.stderr().split("\n").slice(-20).join("\n");
        throw new Error(
          `LB ${i} does not answer (${(e as Error).message}); its last lines:\n${tail}`,
        );
      });
      return (await res.json()) as MonitorTotals;
    };
    const all = async (which = lbs.map((_, i) => i)) => await Promise.all(which.map(totals));
    const sessionsWanted = o.standalone ? o.lbs : Math.min(k, o.lbs);
    /** Until every LB sees every server UP and each holds its sessions; false after the time. */
    const settle = async () => {
      const upBy = performance.now() + Math.max(90_000, o.servers * 40);
      for (;;) {
        const t = await all();
        const sessions = t.reduce((n, x) => n + x.sessions, 0);
        if (t.every((x) => x.up === o.servers) && sessions === sessionsWanted * o.servers) {
          return true;
        }
        if (performance.now() > upBy) {
          say(`fleet scale: not settled: ${JSON.stringify(t.map((x) => [x.up, x.sessions]))}`);
          return false;
        }
        await sleep(500);
      }
    };
    await settle();
    await sleep(5000);
    // A loaded etcd may take more than the LB's 1 s to answer the benchmark's own reads.
    const store = etcd
      ? createEtcdStore({ endpoints: etcd.endpoints, requestTimeoutMs: 10_000 })
      : undefined;
    const revision = async () => (store ? (await store.list("/qhcp/members/")).revision : 0);
    const t0 = await all();
    const cpu0 = lbs.map((l) => procSample(l.child.pid).cpuMs);
    const r0 = await revision();
    const w0 = performance.now();
    say(`fleet scale: measuring for ${durationS} s ...`);
    await sleep(durationS * 1000);
    const wallS = (performance.now() - w0) / 1000;
    const t1 = await all();
    const cpu1 = lbs.map((l) => procSample(l.child.pid).cpuMs);
    const r1 = await revision();
    const checks = t1.map((x, i) => x.checks_ok - t0[i]!.checks_ok);
    const failed = t1.reduce((n, x, i) => n + x.checks_failed - t0[i]!.checks_failed, 0);
    const cpu = cpu1.map((c, i) => ((c - cpu0[i]!) / (wallS * 1000)) * 100);
    const round = (x: number) => Math.round(x * 10) / 10;
    const result: FleetScaleResult = {
      quic: o.quic,
      servers: o.servers,
      interval_s: o.intervalS,
      lbs: o.lbs,
      mode: o.standalone ? "standalone" : "fleet",
      checkers_per_server: o.standalone ? o.lbs : Math.min(k, o.lbs),
      sessions_per_agent: round(t1.reduce((n, x) => n + x.sessions, 0) / o.servers),
      checks_per_s_per_lb: checks.map((c) => round(c / wallS)),
      lb_cpu_percent: cpu.map(round),
      lb_cpu_total_percent: round(cpu.reduce((a, b) => a + b, 0)),
      etcd_writes_per_s: round((r1 - r0) / wallS),
      failed_checks: failed,
      false_downs: t1.reduce((n, x) => n + x.downs, 0) +
        t1.filter((x) => x.up !== o.servers).length,
      takeover_s: null,
      when: new Date().toISOString(),
    };
    const fleetDowns = (t: MonitorTotals[]) => Math.max(0, ...t.map((x) => x.fleet_downs ?? 0));
    if (!o.standalone) result.fleet_false_downs = fleetDowns(t1);
    if (!o.standalone && o.lbs > 1) {
      // The last LB dies: how long until the survivors hold K sessions per server again.
      const victim = lbs.length - 1;
      const survivors = lbs.map((_, i) => i).filter((i) => i !== victim);
      const want = Math.min(k, survivors.length) * o.servers;
      const killedAt = performance.now();
      lbs[victim]!.child.process.kill("SIGKILL");
      const timeline: string[] = [];
      const watched = children.filter((c) => c !== lbs[victim]!.child);
      const cpuAtKill = watched.map((c) => procSample(c.pid).cpuMs);
      const udpAtKill = udpDrops().rcvbufErrors;
      const dropsAtKill = watched.map((c) => udpDropsOf(c.pid));
      const stalledAtKill = (await all(survivors)).map((x) => x.loop_stalled_ms);
      /**
       * Until the survivors hold K sessions per server again (60 s at most): the
       * seconds since `at`, and whether any of them meanwhile saw a server not UP.
       * `timeline` gets the sessions held once a second.
       */
      const takeover = async (at: number, timeline?: string[]) => {
        let flipped = false;
        for (let nextMark = 0;;) {
          const t = await all(survivors);
          if (t.some((x) => x.up !== o.servers)) flipped = true;
          const held = t.reduce((n, x) => n + x.sessions, 0);
          const since = performance.now() - at;
          if (timeline && since >= nextMark) {
            timeline.push(`${Math.round(since / 100) / 10} s: ${held}`);
            nextMark += 1000;
          }
          if (held >= want || performance.now() - at > 60_000) break;
          // Not faster: each poll costs a fleet LB a pass over every server.
          await sleep(250);
        }
        return { seconds: round((performance.now() - at) / 1000), flipped };
      };
      const first = await takeover(killedAt, timeline);
      result.takeover_s = first.seconds;
      if (first.flipped) result.false_downs++;
      const busy = watched.map((c, i) =>
        `${
          round(
            ((procSample(c.pid).cpuMs - cpuAtKill[i]!) / (first.seconds * 1000)) * 100,
          )
        } %`
      );
      say(
        `fleet scale: UDP receive-buffer drops during the takeover: ${
          udpDrops().rcvbufErrors - udpAtKill
        } (endpoints, then survivors: ${
          watched.map((c, i) => udpDropsOf(c.pid) - dropsAtKill[i]!).join(", ")
        })`,
      );
      say(`fleet scale: sessions held by the survivors (want ${want}): ${timeline.join(", ")}`);
      say(`fleet scale: CPU during the takeover (endpoints, then survivors): ${busy.join(", ")}`);
      const loops = (await all(survivors)).map((x, i) =>
        `${x.loop_stalled_ms - stalledAtKill[i]!} ms stalled, longest ${x.loop_longest_stall_ms} ms`
      );
      say(`fleet scale: survivors' event loops during the takeover: ${loops.join("; ")}`);
      // QHCP_BENCH_LOGS=DIR keeps every LB's log lines, timed from the kill.
      const keep = Deno.env.get("QHCP_BENCH_LOGS");
      if (keep) {
        for (const [i, lb] of lbs.entries()) {
          const lines = lb.child.stderrLines.map((l) =>
            `${Math.round(l.at - killedAt)} ms ${l.line}`
          );
          await Deno.writeTextFile(`${keep}/lb-${i}.log`, lines.join("\n") + "\n");
        }
      }
      // Where the time went, from each survivor's log: members seen changed, last claim.
      for (const i of survivors) {
        const after = lbs[i]!.child.stderrLines.filter((l) => l.at > killedAt);
        const at = (re: RegExp, last = false) => {
          const hits = after.filter((l) => re.test(l.line));
          const hit = last ? hits[hits.length - 1] : hits[0];
          return hit ? `${round((hit.at - killedAt) / 1000)} s` : "never";
        };
        const claims = after.reduce(
          (n, l) =>
            n + Number(/checking servers for the fleet .*count=(\d+)/.exec(l.line)?.[1] ?? 0),
          0,
        );
        say(
          `fleet scale: LB ${i} after the kill: members changed at ${
            at(/fleet members changed/)
          }, ${claims} claims, the last at ${at(/checking servers for the fleet/, true)}`,
        );
      }
      // More kills: the victim back under its id, the fleet settled again, then killed again.
      const samples = [first.seconds];
      for (let n = 1; n < (o.kills ?? 1); n++) {
        await startLb(victim);
        if (!(await settle())) break;
        await sleep(2000);
        const at = performance.now();
        lbs[victim]!.child.process.kill("SIGKILL");
        const next = await takeover(at);
        samples.push(next.seconds);
        if (next.flipped) result.false_downs++;
      }
      // The survivors' counts only grow: read once, after every kill.
      result.fleet_false_downs = Math.max(
        result.fleet_false_downs ?? 0,
        fleetDowns(await all(survivors)),
      );
      if (samples.length > 1) {
        result.takeovers_s = samples;
        say(`fleet scale: ${samples.length} takeovers, s: ${samples.join(", ")}`);
      }
    }
    await store?.close();
    return result;
  } finally {
    await Promise.all(children.map((c) => c.stop("SIGTERM")));
    await etcd?.[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
