/**
 * Integrations with the real programs: an agent's local checks and drain
 * file, and an LB following a servers file and a DNS name (served by a test
 * DNS server on loopback).
 */

import assert from "node:assert/strict";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { fetchStatus, Fleet, freeTcpPort, sleep, waitFor } from "./_helpers.ts";
import { startTestDns } from "./_dns_server.ts";
import { record } from "./_report.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  ...opts,
  name:
    "An agent whose application port is closed reports FAILING and is DOWN; opened, it is UP; a drain file makes it DRAINING",
  async fn() {
    await using fleet = await Fleet.create("local-checks");
    const dir = fleet.dir;
    const appPort = freeTcpPort();
    const drainFile = `${dir}/drain`;
    const server = await fleet.server([
      "--server-port",
      "0",
      "--check-tcp",
      `127.0.0.1:${appPort}`,
      "--local-check-interval",
      "0.2",
      "--drain-file",
      drainFile,
    ]);
    const lb = await fleet.lb([
      "--servers",
      `127.0.0.1:${server.port}`,
      "--check-interval",
      "0.3",
      "--fast-interval",
      "0.2",
      "--table",
      "off",
    ]);
    let app: Deno.Listener | undefined;
    const state = async () => (await fetchStatus(lb.httpPort))[0]!;
    try {
      await waitFor(
        "DOWN: the application is not there",
        async () => (await state()).state === "DOWN",
        10_000,
      );
      const s = await state();
      assert.equal(s.status, "FAILING");
      // Failing from the start: the first reply may say so before any push (a push is a change).
      assert.match(
        s.last_error!,
        new RegExp(`^server (pushed )?FAILING: tcp 127\\.0\\.0\\.1:${appPort}: .*refused`, "i"),
      );
      assert.equal(s.checks?.[0]?.ok, false);
      await server.program.waitForLine(/local check fails: reporting FAILING/);
      const listen = () => {
        const l = Deno.listen({ hostname: "127.0.0.1", port: appPort });
        void (async () => {
          for await (const c of l) c.close();
        })().catch(() => {});
        return l;
      };
      // The application comes up.
      app = listen();
      const t0 = performance.now();
      await waitFor("UP", async () => (await state()).state === "UP", 10_000);
      record(
        "integrations",
        "application back to LB UP (local checks 0.2 s, rise 2)",
        performance.now() - t0,
        "ms",
      );
      // It goes away while the session is READY: the agent pushes it (§10), DOWN at once.
      app.close();
      app = undefined;
      await waitFor("DOWN again", async () => (await state()).state === "DOWN", 10_000);
      assert.match(
        (await state()).last_error!,
        new RegExp(`^server pushed FAILING: tcp 127\\.0\\.0\\.1:${appPort}: .*refused`, "i"),
      );
      await lb.program.waitForLine(/server DOWN .*cause=failing evidence=pushed_status/);
      app = listen();
      await waitFor("UP again", async () => (await state()).state === "UP", 10_000);
      assert.equal((await state()).checks?.[0]?.ok, true);
      // Drain with the file, undrain by removing it.
      await Deno.writeTextFile(drainFile, "");
      await waitFor("DRAINING", async () => (await state()).status === "DRAINING", 10_000);
      const drained = await state();
      assert.equal(drained.state, "UP");
      assert.equal(drained.weight, 0);
      await server.program.waitForLine(
        /draining: asking LBs for no new traffic .*drain file .* created/,
      );
      await Deno.remove(drainFile);
      await waitFor("UP again", async () => (await state()).status === "UP", 10_000);
      assert.ok((await state()).weight > 0);
    } finally {
      app?.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "An LB follows a servers file as it changes and on SIGHUP, and a DNS name as its records change",
  async fn(t) {
    await using fleet = await Fleet.create("discovery");
    const dir = fleet.dir;
    // Certificates naming 127.0.0.2 too: servers found by DNS are verified by that address.
    await ensureDefaultFiles(dir, { hosts: ["localhost", "127.0.0.1", "127.0.0.2", "::1"] });
    const a = await fleet.server(["--server-port", "0", "--server-id", "a"]);
    // b answers on 127.0.0.2 with a's port: the DNS name below finds it there.
    await fleet.server([
      "--server-ip",
      "127.0.0.2",
      "--server-port",
      String(a.port),
      "--server-id",
      "b",
    ]);
    const c = await fleet.server(["--server-port", "0", "--server-id", "c"]);
    const dns = await startTestDns();
    dns.set("fleet.test", ["127.0.0.1"]);
    const file = `${dir}/servers.txt`;
    await Deno.writeTextFile(file, `# generated\n127.0.0.1:${c.port}\n`);
    const lb = await fleet.lb([
      "--servers",
      `dns:fleet.test:${a.port}`,
      "--dns-server",
      `127.0.0.1:${dns.port}`,
      "--servers-file",
      file,
      "--check-interval",
      "0.3",
      "--reconnect-interval",
      "1",
      "--table",
      "off",
    ]);
    const addresses = async () => (await fetchStatus(lb.httpPort)).map((s) => s.address).sort();
    const allUp = async () => (await fetchStatus(lb.httpPort)).every((s) => s.state === "UP");
    try {
      await t.step("the first file and DNS answer are watched", async () => {
        await waitFor(
          "two servers UP",
          async () => (await addresses()).length === 2 && await allUp(),
          10_000,
        );
        assert.deepEqual(await addresses(), [`127.0.0.1:${a.port}`, `127.0.0.1:${c.port}`].sort());
      });
      await t.step("the DNS name gains and loses an address", async () => {
        dns.set("fleet.test", ["127.0.0.1", "127.0.0.2"]);
        await waitFor(
          "127.0.0.2 added and UP",
          async () => (await addresses()).includes(`127.0.0.2:${a.port}`) && await allUp(),
          10_000,
        );
        dns.set("fleet.test", ["127.0.0.2"]);
        await waitFor(
          "127.0.0.1 removed",
          async () => !(await addresses()).includes(`127.0.0.1:${a.port}`),
          10_000,
        );
        assert.equal(
          (await fetchStatus(lb.httpPort)).find((s) => s.address === `127.0.0.2:${a.port}`)?.state,
          "UP",
        );
      });
      await t.step(
        "the servers file is followed when it changes and when the LB gets SIGHUP",
        async () => {
          await Deno.writeTextFile(file, "# generated, now empty\n");
          await waitFor(
            "c removed",
            async () => !(await addresses()).includes(`127.0.0.1:${c.port}`),
            10_000,
          );
          // Written while the LB is told to reload at once with SIGHUP.
          await Deno.writeTextFile(file, `127.0.0.1:${c.port}\n`);
          lb.program.kill("SIGHUP");
          await lb.program.waitForLine(/SIGHUP: reloading the servers file and DNS names/);
          await waitFor(
            "c back",
            async () => (await addresses()).includes(`127.0.0.1:${c.port}`),
            10_000,
          );
          await sleep(100);
          assert.deepEqual(
            await addresses(),
            [`127.0.0.1:${c.port}`, `127.0.0.2:${a.port}`].sort(),
          );
        },
      );
    } finally {
      await fleet.close();
      await dns.close();
    }
  },
});
