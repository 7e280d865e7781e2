/**
 * The verdict pushed through HAProxy's runtime API: the pure parts (reading
 * `show servers state`, what a verdict means for a server, which commands a
 * change needs), then the real HAProxy 2.6 and its admin socket: servers
 * enabled from maintenance, a killed agent's server in MAINT right after the
 * LB's verdict, a drain and its end, and an HAProxy restart caught up with.
 */

import assert from "node:assert/strict";
import {
  commandsFor,
  type HaproxyTarget,
  parseServersState,
  targetOf,
} from "../lib/ops/haproxy_runtime.ts";
import type { ServiceInstance } from "../lib/lb/services.ts";
import { requirePeer } from "../tools/peers.ts";
import { fetchStatus, Fleet, type Program, sleep, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";

const STATE = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
2 web 1 s1 127.0.0.1 2 0 1 1 2 1 0 2 0 0 0 0 - 18081 - 0 0 - - 0
2 web 2 s2 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 18082 - 0 0 - - 0
3 api 1 a1 fd00::1 2 0 1 1 2 1 0 2 0 0 0 0 - 9000 - 0 0 - - 0
`;

Deno.test("parseServersState() reads backend, server and address:port from HAProxy's format 1", () => {
  assert.deepEqual(parseServersState(STATE), [
    { backend: "web", name: "s1", address: "127.0.0.1:18081" },
    { backend: "web", name: "s2", address: "127.0.0.1:18082" },
    { backend: "api", name: "a1", address: "[fd00::1]:9000" },
  ]);
  assert.deepEqual(parseServersState("No such backend.\n"), []);
});

const instance = (over: Partial<ServiceInstance>): ServiceInstance => ({
  server: "127.0.0.1:4243",
  host: "127.0.0.1",
  port: 18081,
  address: "127.0.0.1:18081",
  tags: [],
  state: "UP",
  status: "UP",
  weight: 80,
  load: 20,
  healthy: true,
  ...over,
});

Deno.test("targetOf() and commandsFor(): ready with a weight of at least 1, drain, maint; only what changed is sent", () => {
  assert.deepEqual(targetOf(instance({})), { state: "ready", weight: 80 });
  assert.deepEqual(targetOf(instance({ weight: 0.2 })), { state: "ready", weight: 1 });
  assert.deepEqual(targetOf(instance({ status: "DRAINING", weight: 0 })), {
    state: "drain",
    weight: 0,
  });
  assert.deepEqual(targetOf(instance({ state: "DOWN", weight: 0 })), { state: "maint", weight: 0 });
  assert.deepEqual(targetOf(instance({ status: "FAILING" })), { state: "maint", weight: 0 });
  const t = (state: HaproxyTarget["state"], weight: number): HaproxyTarget => ({
    backend: "web",
    server: "s1",
    state,
    weight,
  });
  assert.deepEqual(commandsFor(t("ready", 80)), [
    "set server web/s1 state ready",
    "set server web/s1 weight 80",
  ]);
  assert.deepEqual(commandsFor(t("ready", 80), t("ready", 80)), []);
  assert.deepEqual(commandsFor(t("ready", 60), t("ready", 80)), ["set server web/s1 weight 60"]);
  assert.deepEqual(commandsFor(t("maint", 0), t("ready", 80)), ["set server web/s1 state maint"]);
});

/** One command on HAProxy's admin socket; its reply. */
async function admin(socket: string, command: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    await conn.write(new TextEncoder().encode(`${command}\n`));
    return await new Response(conn.readable).text();
  } catch {
    return "";
  }
}

const MAINT = 0x01;
const DRAIN = 0x08;

/**
 * Each server of backend web, by name: its srv_admin_state, or -1 when it
 * is ready (running, neither forced into maintenance nor draining). A
 * `disabled` server keeps a configuration flag (4) once enabled.
 */
async function adminStates(socket: string): Promise<Record<string, number>> {
  const text = await admin(socket, "show servers state web").catch(() => "");
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== "web" || !f[3]) continue;
    const op = Number(f[5]);
    const adm = Number(f[6]);
    out[f[3]] = op === 2 && (adm & (MAINT | DRAIN)) === 0 ? -1 : adm;
  }
  return out;
}

Deno.test({
  name:
    "HAProxy's runtime API follows the verdict: servers enabled, a killed agent's server in MAINT at once, drain and back, an HAProxy restart caught up with",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const haproxyPath = requirePeer("haproxy");
    await using fleet = await Fleet.create("haproxy-runtime");
    const socket = `${fleet.dir}/haproxy.sock`;
    const backends = ["b1", "b2"].map((name) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response(name))
    );
    const cfg = `${fleet.dir}/haproxy.cfg`;
    // Both servers start in maintenance: only the LB can enable them.
    await Deno.writeTextFile(
      cfg,
      [
        "global",
        `  stats socket ${socket} mode 600 level admin`,
        "defaults",
        "  mode http",
        "  timeout connect 1s",
        "  timeout client 5s",
        "  timeout server 5s",
        "backend web",
        ...backends.map((b, i) => `  server s${i + 1} 127.0.0.1:${b.addr.port} disabled`),
        "",
      ].join("\n"),
    );
    const startHaproxy = () =>
      new Deno.Command(haproxyPath, { args: ["-f", cfg, "-db"], stdout: "null", stderr: "null" })
        .spawn();
    let haproxy = startHaproxy();
    const agents: { program: Program; port: number }[] = [];
    for (const [i, b] of backends.entries()) {
      agents.push(
        await fleet.server([
          "--server-port",
          "0",
          "--quic",
          "native",
          "--server-id",
          `rt-${i}`,
          "--service",
          `web:${b.addr.port}`,
        ]),
      );
    }
    const lb = await fleet.lb([
      "--servers",
      agents.map((a) => `127.0.0.1:${a.port}`).join(","),
      "--quic",
      "native",
      "--haproxy-socket",
      socket,
      "--table",
      "off",
    ]);
    try {
      await t.step("both servers leave maintenance once their agents are UP", async () => {
        await waitFor(
          "both ready",
          async () => {
            const s = await adminStates(socket);
            return s.s1 === -1 && s.s2 === -1;
          },
          15_000,
          50,
        );
      });

      await t.step("a killed agent's server is in MAINT right after the LB's verdict", async () => {
        const from = lb.program.lines.length;
        agents[1]!.program.kill("SIGKILL");
        let downAt = 0;
        await waitFor(
          "the LB's DOWN",
          () => {
            const line = lb.program.lines.slice(from).find((l) =>
              / server DOWN .*127\.0\.0\.1:/.test(l)
            );
            if (line) downAt = Date.parse(line.split(" ")[0]!);
            return line !== undefined;
          },
          10_000,
          5,
        );
        await waitFor(
          "s2 in MAINT",
          async () =>
            (((await adminStates(socket)).s2 ?? -1) & MAINT) > 0 &&
            (await adminStates(socket)).s2 !== -1,
          5000,
          5,
        );
        const took = Date.now() - downAt;
        assert.ok(took < 1000, `MAINT ${took} ms after the LB's verdict`);
        record(
          "haproxy runtime",
          "LB verdict DOWN to MAINT in HAProxy (polled every 5 ms)",
          took,
          "ms",
          "< 1000 (target 100)",
        );
      });

      await t.step("the agent back: its server is ready again", async () => {
        agents[1] = await fleet.server([
          "--server-port",
          String(agents[1]!.port),
          "--quic",
          "native",
          "--service",
          `web:${backends[1]!.addr.port}`,
        ]);
        await waitFor("s2 ready", async () => (await adminStates(socket)).s2 === -1, 15_000, 50);
      });

      await t.step("a drain (kill -USR1) is DRAIN in HAProxy, and its end is ready", async () => {
        agents[0]!.program.kill("SIGUSR1");
        await waitFor(
          "s1 drains",
          async () =>
            (((await adminStates(socket)).s1 ?? -1) & DRAIN) > 0 &&
            (await adminStates(socket)).s1 !== -1,
          5000,
          20,
        );
        agents[0]!.program.kill("SIGUSR1");
        await waitFor("s1 ready", async () => (await adminStates(socket)).s1 === -1, 5000, 20);
      });

      await t.step(
        "HAProxy restarted (servers in maintenance again): the LB catches up",
        async () => {
          haproxy.kill("SIGKILL");
          await haproxy.status;
          await sleep(700);
          await Deno.remove(socket).catch(() => {});
          haproxy = startHaproxy();
          const back = performance.now();
          await waitFor(
            "both ready again",
            async () => {
              const s = await adminStates(socket);
              return s.s1 === -1 && s.s2 === -1;
            },
            15_000,
            50,
          );
          record(
            "haproxy runtime",
            "HAProxy restart to its servers in step again",
            performance.now() - back,
            "ms",
          );
          assert.ok((await fetchStatus(lb.httpPort)).every((s) => s.state === "UP"));
        },
      );
    } finally {
      try {
        haproxy.kill("SIGTERM");
      } catch { /* gone */ }
      await haproxy.status;
      await Promise.all(backends.map((b) => b.shutdown()));
    }
  },
});
