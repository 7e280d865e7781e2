/**
 * `./run_quic.sh demo --fleet` as a user runs it (tools/demo_fleet.ts): a
 * 3-member etcd, six agents and three LBs, on ports moved out of the way of
 * the other tests. `.ci/run` installs etcd (package etcd-server).
 */

import assert from "node:assert/strict";
import { fetchStatus, tempDir, waitFor } from "./_helpers.ts";

const root = new URL("..", import.meta.url).pathname;

/**
 * Six free UDP ports in a row from the first, and three TCP ports ten apart
 * from the second; all below Linux's ephemeral range (32768 and up), where
 * the other tests' connections would take them.
 */
function freePorts(): { agents: number; lbs: number } {
  for (let tries = 0; tries < 50; tries++) {
    const agents = 10_000 + Math.floor(Math.random() * 10_000);
    const lbs = 21_000 + Math.floor(Math.random() * 11_000);
    try {
      const held = [
        ...[0, 1, 2, 3, 4, 5].map((i) =>
          Deno.listenDatagram({ hostname: "127.0.0.1", port: agents + i, transport: "udp" })
        ),
        ...[0, 10, 20].map((i) => Deno.listen({ hostname: "127.0.0.1", port: lbs + i })),
      ];
      held.forEach((h) => h.close());
      return { agents, lbs };
    } catch { /* taken: try others */ }
  }
  throw new Error("no free ports found");
}

/** The fleet demo as a user starts it, on `ports`, its files in `dir`, without its table. */
function demoCommand(ports: { agents: number; lbs: number }, dir: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "tools/demo_fleet.ts",
      "--first-port",
      String(ports.agents),
      "--first-lb-port",
      String(ports.lbs),
      "--table",
      "off",
    ],
    cwd: root,
    env: { QHCP_CERTS_DIR: dir, NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
}

Deno.test({
  name:
    "demo --fleet: three LBs share six agents through a local etcd, two checkers each, the same verdict everywhere; Ctrl-C stops all",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("fleet-demo");
    const ports = freePorts();
    const lbPorts = [ports.lbs, ports.lbs + 10, ports.lbs + 20];
    const demo = demoCommand(ports, dir).spawn();
    let said = "";
    const reading = (async () => {
      for await (const chunk of demo.stderr.pipeThrough(new TextDecoderStream())) said += chunk;
    })();
    // What each LB shows, for the check and for the message when it fails.
    let seen: string[] = [];
    try {
      await waitFor(
        "six servers UP on every LB, each checked by two",
        async () => {
          seen = [];
          for (const port of lbPorts) {
            const entries = await fetchStatus(port).catch(() => undefined) as unknown as
              | { state: string; fleet?: { checked_by: string[] } }[]
              | undefined;
            seen.push(
              entries
                ? `${port}: ${entries.map((e) => `${e.state}/${e.fleet?.checked_by.length}`)}`
                : `${port}: no answer`,
            );
          }
          return seen.every((line) => /^\d+: (UP\/2,){5}UP\/2$/.test(line));
        },
        60_000,
        500,
      ).catch(async (e) => {
        const logs = /logs in (\S+)/.exec(said)?.[1];
        const tails = [];
        for (const name of ["lb-2.log", "lb-3.log"]) {
          const text = logs ? await Deno.readTextFile(`${logs}/${name}`).catch(() => "") : "";
          tails.push(`--- ${name}\n${text.slice(-2000)}`);
        }
        throw new Error(
          `${(e as Error).message}\n${seen.join("\n")}\n${said.slice(-3000)}\n${tails.join("\n")}`,
        );
      });
      assert.match(said, new RegExp(`dashboards on http://127\\.0\\.0\\.1:${ports.lbs}/`));
    } finally {
      demo.kill("SIGINT");
      const status = await demo.status;
      await reading;
      await Deno.remove(dir, { recursive: true });
      assert.equal(status.code, 0, said.slice(-3000));
    }
    // Everything it started is gone: no LB answers any more.
    for (const port of lbPorts) {
      await assert.rejects(fetch(`http://127.0.0.1:${port}/status`), `LB on ${port} still up`);
    }
  },
});

Deno.test({
  name: "demo --fleet names an LB that cannot start, stops everything and exits 1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("fleet-demo");
    const ports = freePorts();
    // The second LB's HTTP port, held by someone else.
    const held = Deno.listen({ hostname: "127.0.0.1", port: ports.lbs + 10 });
    try {
      const out = await demoCommand(ports, dir).output();
      const said = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, said.slice(-3000));
      assert.match(said, /demo: LB demo-lb-2 stopped with exit code 1; its log: \S+lb-2\.log/);
    } finally {
      held.close();
      await Deno.remove(dir, { recursive: true });
    }
    // Nothing it started is left: the other LBs' ports are free again.
    for (const port of [ports.lbs, ports.lbs + 20]) {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
    }
  },
});
