/**
 * The real HAProxy acting on the QHCP verdict through the LB's agent-check
 * port: two small HTTP backends, each paired with a QHCP server agent
 * process, HAProxy in front with `agent-check` pointed at a QHCP LB process.
 * `.ci/run` installs haproxy (Debian package) when it is missing.
 */

import assert from "node:assert/strict";
import {
  fetchStatus,
  freeTcpPort,
  type Program,
  sleep,
  startLbProcess,
  startServerProcess,
  startTraffic,
  tempDir,
  waitFor,
} from "./_helpers.ts";
import { record } from "./_report.ts";
import { requirePeer } from "../tools/peers.ts";

const HAPROXY = "/usr/sbin/haproxy";
const CHECK_INTERVAL_S = 0.5;
const AGENT_INTER_MS = 500;

/** The HAProxy configuration shipped in the README, with this test's ports. */
export function haproxyConfig(p: {
  frontend: number;
  agent: number;
  backends: { name: string; port: number; qhcp: number }[];
  /** The server lines' weight; null leaves HAProxy's default (1). Default 100. */
  weight?: number | null;
}): string {
  const weight = p.weight === null ? "" : ` weight ${p.weight ?? 100}`;
  return [
    "global",
    "  maxconn 200",
    "defaults",
    "  mode http",
    "  timeout connect 1s",
    "  timeout client 5s",
    "  timeout server 5s",
    "  timeout check 1s",
    "frontend web",
    `  bind 127.0.0.1:${p.frontend}`,
    "  default_backend app",
    "backend app",
    "  balance roundrobin",
    // Each backend server asks the QHCP LB about its QHCP server agent.
    ...p.backends.map((b) =>
      `  server ${b.name} 127.0.0.1:${b.port}${weight} agent-check agent-addr 127.0.0.1 agent-port ${p.agent} agent-send "127.0.0.1:${b.qhcp}\\n" agent-inter ${AGENT_INTER_MS}ms`
    ),
    "",
  ].join("\n");
}

Deno.test({
  name:
    "HAProxy stops sending to a backend whose QHCP server is DOWN, sends again when it is back, and sends nothing new to a draining one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    try {
      Deno.statSync(HAPROXY);
    } catch {
      throw new Error(
        `haproxy is not installed at ${HAPROXY}: run .ci/run, or apt-get install haproxy`,
      );
    }
    const dir = await tempDir("haproxy");
    const env = { QHCP_CERTS_DIR: dir };
    // Two small HTTP backends that say who they are.
    const backends = ["b1", "b2"].map((name) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response(name))
    );
    const qhcp = await Promise.all(
      [1, 2].map((i) => startServerProcess(["--server-port", "0", "--server-id", `app-${i}`], env)),
    );
    const programs: Program[] = qhcp.map((q) => q.program);
    const lb = await startLbProcess([
      "--servers",
      qhcp.map((q) => `127.0.0.1:${q.port}`).join(","),
      "--check-interval",
      String(CHECK_INTERVAL_S),
      "--max-fail-attempts",
      "3",
      "--reconnect-interval",
      "1",
      "--agent-port",
      "0",
      // The README's setup: servers with weight 100 take the weights.
      "--agent-weights",
      "--table",
      "off",
    ], env);
    programs.push(lb.program);
    const agentPort = Number(
      (await lb.program.waitForLine(/HAProxy agent-check listening .*port=(\d+)/))[1],
    );
    const frontend = freeTcpPort();
    const cfg = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      cfg,
      haproxyConfig({
        frontend,
        agent: agentPort,
        backends: backends.map((b, i) => ({
          name: `b${i + 1}`,
          port: b.addr.port,
          qhcp: qhcp[i]!.port,
        })),
      }),
    );
    const haproxy = new Deno.Command(HAPROXY, {
      args: ["-f", cfg, "-db"],
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
    const haproxyOut: string[] = [];
    void haproxy.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (c) => void haproxyOut.push(c) }),
    ).catch(() => {});
    void haproxy.stdout.cancel().catch(() => {});

    // A steady stream of requests through HAProxy, recording who served each one and when.
    const traffic = startTraffic(`http://127.0.0.1:${frontend}/`);
    const served = traffic.served;
    const servedBy = (name: string, since: number) =>
      served.filter((s) => s.at >= since && s.by === name).length;
    const lbState = async (i: number) =>
      (await fetchStatus(lb.httpPort)).find((s) => s.address === `127.0.0.1:${qhcp[i]!.port}`);

    try {
      await t.step("both backends get traffic while both QHCP servers are UP", async () => {
        const t0 = performance.now();
        await waitFor("both serve", () => servedBy("b1", t0) > 5 && servedBy("b2", t0) > 5, 15_000);
      });

      await t.step(
        "a QHCP server killed: HAProxy stops sending to its backend within the agent interval plus one check",
        async () => {
          qhcp[0]!.program.kill("SIGKILL");
          await waitFor(
            "LB says DOWN",
            async () => (await lbState(0))?.state === "DOWN",
            15_000,
            10,
          );
          const down = performance.now();
          const bound = AGENT_INTER_MS + CHECK_INTERVAL_S * 1000;
          await sleep(bound + 1000);
          const lastB1 = served.filter((s) => s.by === "b1").at(-1)!.at;
          const stoppedAfter = Math.max(0, lastB1 - down);
          assert.ok(
            stoppedAfter <= bound,
            `b1 served ${stoppedAfter.toFixed(0)} ms after the DOWN verdict (bound ${bound} ms)`,
          );
          // And it stays out.
          const since = performance.now();
          await sleep(1000);
          assert.equal(servedBy("b1", since), 0);
          assert.ok(servedBy("b2", since) > 10);
          record(
            "haproxy",
            "last request to the backend after its QHCP server went DOWN",
            stoppedAfter,
            "ms",
            `<= ${bound} ms`,
          );
        },
      );

      await t.step("the QHCP server restarted: traffic returns to its backend", async () => {
        const again = await startServerProcess([
          "--server-port",
          String(qhcp[0]!.port),
          "--server-id",
          "app-1",
        ], env);
        programs.push(again.program);
        qhcp[0] = again;
        await waitFor("LB says UP", async () => (await lbState(0))?.state === "UP", 15_000, 10);
        const up = performance.now();
        await waitFor("b1 serves again", () => servedBy("b1", up) > 0, 5000, 10);
        const first = served.find((s) => s.at >= up && s.by === "b1")!.at;
        record(
          "haproxy",
          "first request to the backend after its QHCP server was UP again",
          first - up,
          "ms",
          `<= ${AGENT_INTER_MS + 1000} ms`,
        );
        assert.ok(first - up <= AGENT_INTER_MS + 1000);
      });

      await t.step(
        "a draining QHCP server (kill -USR1): its backend gets no new requests; undrained, it gets them again",
        async () => {
          qhcp[1]!.program.kill("SIGUSR1");
          await waitFor(
            "LB sees DRAINING",
            async () => (await lbState(1))?.status === "DRAINING",
            10_000,
            10,
          );
          assert.equal((await lbState(1))?.weight, 0);
          await sleep(AGENT_INTER_MS + 500);
          const since = performance.now();
          await sleep(1500);
          assert.equal(servedBy("b2", since), 0, "no new request to the draining backend");
          assert.ok(servedBy("b1", since) > 10);
          await qhcp[1]!.program.waitForLine(/draining: asking LBs for no new traffic/);
          qhcp[1]!.program.kill("SIGUSR1");
          await waitFor("LB sees UP", async () => (await lbState(1))?.status === "UP", 10_000, 10);
          const undrained = performance.now();
          await waitFor("b2 serves again", () => servedBy("b2", undrained) > 0, 5000, 10);
        },
      );
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- haproxy said:\n${haproxyOut.join("")}`);
    } finally {
      await traffic.stop();
      try {
        haproxy.kill("SIGTERM");
      } catch { /* gone */ }
      await haproxy.status;
      await Promise.all(backends.map((b) => b.shutdown()));
      await Promise.all(programs.map((p) => p.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "HAProxy with its default server weight (1) and the agent-check feed: every healthy backend keeps its traffic",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    requirePeer("haproxy");
    const dir = await tempDir("haproxy-weight");
    const env = { QHCP_CERTS_DIR: dir };
    const backends = ["b1", "b2"].map((name) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response(name))
    );
    const qhcp = await Promise.all(
      [1, 2].map((i) => startServerProcess(["--server-port", "0", "--server-id", `w-${i}`], env)),
    );
    const programs: Program[] = qhcp.map((q) => q.program);
    // The LB as a new user runs it: no --agent-weights.
    const lb = await startLbProcess([
      "--servers",
      qhcp.map((q) => `127.0.0.1:${q.port}`).join(","),
      "--agent-port",
      "0",
      "--table",
      "off",
    ], env);
    programs.push(lb.program);
    const agentPort = Number(
      (await lb.program.waitForLine(/HAProxy agent-check listening .*port=(\d+)/))[1],
    );
    const frontend = freeTcpPort();
    const cfg = `${dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      cfg,
      haproxyConfig({
        frontend,
        agent: agentPort,
        weight: null,
        backends: backends.map((b, i) => ({
          name: `b${i + 1}`,
          port: b.addr.port,
          qhcp: qhcp[i]!.port,
        })),
      }),
    );
    const haproxy = new Deno.Command(requirePeer("haproxy"), {
      args: ["-f", cfg, "-db"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitFor(
        "both UP at the LB",
        async () => (await fetchStatus(lb.httpPort)).every((s) => s.state === "UP"),
        10_000,
      );
      // Let several agent checks (every 500 ms) reach HAProxy.
      await sleep(2000);
      const seen = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const res = await fetch(`http://127.0.0.1:${frontend}/`);
        const body = await res.text();
        seen.set(`${res.status} ${body}`, (seen.get(`${res.status} ${body}`) ?? 0) + 1);
      }
      assert.equal(seen.get("503 ") ?? 0, 0, JSON.stringify([...seen]));
      assert.ok(
        (seen.get("200 b1") ?? 0) >= 10 && (seen.get("200 b2") ?? 0) >= 10,
        JSON.stringify([...seen]),
      );
    } finally {
      try {
        haproxy.kill("SIGTERM");
      } catch { /* gone */ }
      await haproxy.status;
      await Promise.all(backends.map((b) => b.shutdown()));
      await Promise.all(programs.map((p) => p.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
