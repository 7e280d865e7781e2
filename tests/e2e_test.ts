/**
 * End-to-end tests with the real programs: `server.ts` and `lb.ts` as child
 * processes talking QUIC over 127.0.0.1, observed through the LB's
 * GET /status and the processes' logs.
 */

import assert from "node:assert/strict";
import { createHmacSigner, readSecretFile } from "../lib/security/jwt.ts";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { Monitor } from "../lib/lb/monitor.ts";
import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import { fetchStatus, Fleet, type Program, sleep, type StatusEntry, waitFor } from "./_helpers.ts";
import { record } from "./_report.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** No process may log an unhandled rejection or uncaught exception of its own. */
function assertNoBugs(...programs: Program[]): void {
  for (const p of programs) {
    const bad = p.lines.filter((l) => /\(bug\)/.test(l));
    assert.deepEqual(bad, [], p.output());
  }
}

async function entry(httpPort: number, port: number): Promise<StatusEntry | undefined> {
  return (await fetchStatus(httpPort)).find((s) => s.address === `127.0.0.1:${port}`);
}

/** Polls /status until `pred` holds for the server; returns the elapsed ms. */
async function until(
  httpPort: number,
  port: number,
  what: string,
  pred: (s: StatusEntry) => boolean,
  timeoutMs: number,
): Promise<number> {
  const t0 = performance.now();
  await waitFor(
    what,
    async () => {
      const s = await entry(httpPort, port);
      return s !== undefined && pred(s);
    },
    timeoutMs,
    25,
  );
  return performance.now() - t0;
}

Deno.test({
  ...opts,
  name:
    "LB and two servers: SIGTERM is DOWN within 1 s, SIGKILL within max-fail-attempts checks, restart UP within one reconnect interval",
  async fn(t) {
    await using fleet = await Fleet.create("e2e");
    const a = await fleet.server(["--server-port", "0", "--server-id", "alpha"]);
    const b = await fleet.server(["--server-port", "0", "--server-id", "beta"]);
    const interval = 0.5;
    const fall = 3;
    const reconnect = 2;
    const lb = await fleet.lb([
      "--servers",
      `127.0.0.1:${a.port},127.0.0.1:${b.port}`,
      "--check-interval",
      String(interval),
      "--max-fail-attempts",
      String(fall),
      "--reconnect-interval",
      String(reconnect),
      "--table",
      "off",
      "--lb-id",
      "lb-e2e",
      // Polls alone, whose bounds this test holds (heartbeats: detection_e2e_test.ts).
      "--extensions",
      "none",
    ]);
    const programs = fleet.programs;
    let restarted: Program | undefined;
    await t.step("both servers are UP with metrics and a round-trip time", async () => {
      for (const port of [a.port, b.port]) {
        await until(lb.httpPort, port, "UP", (s) => s.state === "UP", 10_000);
        const s = (await entry(lb.httpPort, port))!;
        assert.equal(s.status, "UP");
        assert.ok(s.metrics!.cpu_percent! >= 0 && s.metrics!.cpu_percent! <= 100);
        assert.ok(s.metrics!.mem_percent! > 0 && s.metrics!.mem_percent! <= 100);
        assert.ok(s.last_rtt_ms !== null && s.last_rtt_ms > 0);
        assert.equal(s.consecutive_failures, 0);
      }
    });

    await t.step("a server stopped with SIGTERM is DOWN within 1 s and exits 0", async () => {
      const t0 = performance.now();
      a.program.kill("SIGTERM");
      const downMs = await until(lb.httpPort, a.port, "DOWN", (s) => s.state === "DOWN", 3000);
      const status = await a.program.done;
      const exitMs = performance.now() - t0;
      assert.ok(downMs < 1000, `DOWN after ${downMs.toFixed(0)} ms`);
      assert.equal(status.code, 0, a.program.output());
      assert.ok(exitMs < 2500, `server exited after ${exitMs.toFixed(0)} ms`);
      // The LB logs the transition once, with its reason.
      await lb.program.waitForLine(
        new RegExp(
          `server DOWN server=127\\.0\\.0\\.1:${a.port} .*reason="server terminated the session: shutdown"`,
        ),
        1000,
      );
      record("processes", "SIGTERM to DOWN (0.5 s interval)", downMs, "ms", "< 1000 ms");
      record("processes", "SIGTERM to server exit", exitMs, "ms", "< 2500 ms");
    });

    await t.step(
      "a server killed with SIGKILL is DOWN within max-fail-attempts checks",
      async () => {
        const before = (await entry(lb.httpPort, b.port))!;
        const checksBefore = (before as unknown as { checks_failed: number }).checks_failed;
        b.program.kill("SIGKILL");
        const downMs = await until(
          lb.httpPort,
          b.port,
          "DOWN",
          (s) => s.state === "DOWN",
          10_000,
        );
        const s = (await entry(lb.httpPort, b.port))!;
        // Exactly `fall` failed checks, each a timeout, made it DOWN.
        assert.equal(s.consecutive_failures, fall);
        assert.equal(
          (s as unknown as { checks_failed: number }).checks_failed - checksBefore,
          fall,
        );
        assert.match(s.last_error!, /timeout: no HEALTH_RESPONSE/);
        // Bound: up to one interval until the next check, then `fall` checks one interval
        // apart, the last timing out after min(interval, 2 s); plus 1.5 s for a busy machine.
        const bound = (interval + fall * interval + Math.min(interval, 2)) * 1000 + 1500;
        assert.ok(downMs < bound, `DOWN after ${downMs.toFixed(0)} ms (bound ${bound} ms)`);
        record(
          "processes",
          "SIGKILL to DOWN (0.5 s interval, fall 3)",
          downMs,
          "ms",
          `< ${bound} ms`,
        );
      },
    );

    await t.step(
      "the killed server restarted on its port is UP again within one reconnect interval",
      async () => {
        const again = await fleet.server([
          "--server-port",
          String(b.port),
          "--server-id",
          "beta",
        ]);
        restarted = again.program;
        const upMs = await until(lb.httpPort, b.port, "UP", (s) => s.state === "UP", 10_000);
        // A redial within one reconnect interval (the backoff cap), a handshake and
        // rise (2) checks one fast interval (0.5 s here) apart, with 1.5 s of margin.
        const bound = reconnect * 1000 + 500 + 1500;
        assert.ok(upMs < bound, `UP after ${upMs.toFixed(0)} ms`);
        record(
          "processes",
          "restart to UP (reconnect interval 2 s, rise 2)",
          upMs,
          "ms",
          `< ${bound} ms`,
        );
      },
    );

    await t.step(
      "the LB on SIGTERM sends TERMINATE to every server and exits 0 within 2 s",
      async () => {
        const t0 = performance.now();
        lb.program.kill("SIGTERM");
        const status = await lb.program.done;
        const ms = performance.now() - t0;
        assert.equal(status.code, 0, lb.program.output());
        assert.ok(ms < 2000, `LB exited after ${ms.toFixed(0)} ms`);
        await restarted!.waitForLine(/closing session .*terminated by peer: shutdown/, 3000);
      },
    );
    assertNoBugs(...programs);
  },
});

Deno.test({
  ...opts,
  name: "A server with another JWT secret refuses the LB with UNAUTHORIZED and the LB reports why",
  async fn() {
    await using fleet = await Fleet.create("e2e-auth");
    const certs = fleet.dir;
    await ensureDefaultFiles(certs);
    const otherSecret = `${certs}/other.secret`;
    await Deno.writeTextFile(otherSecret, "x".repeat(40) + "\n");
    const server = await fleet.server([
      "--server-port",
      "0",
      "--jwt-secret-file",
      otherSecret,
    ]);
    const lb = await fleet.lb([
      "--servers",
      `127.0.0.1:${server.port}`,
      "--check-interval",
      "0.3",
      "--table",
      "off",
    ]);
    await until(lb.httpPort, server.port, "DOWN", (s) => s.state === "DOWN", 10_000);
    const s = (await entry(lb.httpPort, server.port))!;
    assert.match(
      s.last_error!,
      /^UNAUTHORIZED: Cannot accept HELLO: token signature is not valid/,
    );
    const refused = await server.program.waitForLine(/LB refused .*code=UNAUTHORIZED.*/);
    // Neither side logs the token or the secret.
    const token = /eyJ[\w-]+\.[\w-]+\.[\w-]+/;
    for (const p of [server.program, lb.program]) {
      assert.doesNotMatch(p.output(), token);
      assert.doesNotMatch(p.output(), /xxxxxxxxxx/);
    }
    assert.match(refused[0], /signature/);
    assertNoBugs(server.program, lb.program);
  },
});

Deno.test({
  ...opts,
  name: "CONFIG_UPDATE to a running server process changes what its HEALTH_RESPONSE reports",
  async fn() {
    await using fleet = await Fleet.create("e2e-config");
    const certs = fleet.dir;
    const files = await ensureDefaultFiles(certs);
    const server = await fleet.server(["--server-port", "0"]);
    const transport = createMatrixaiTransport();
    const monitor = new Monitor({
      transport,
      signer: createHmacSigner(await readSecretFile(files.jwtSecret), { lbId: "lb-config" }),
      lbId: "lb-config",
      servers: [{ host: "127.0.0.1", port: server.port }],
      caPem: await Deno.readTextFile(files.caCert),
      checkIntervalMs: 200,
    });
    try {
      monitor.start();
      await waitFor("UP", () => monitor.status()[0]?.state === "UP", 10_000);
      assert.deepEqual(Object.keys(monitor.status()[0]!.metrics!), ["cpu_percent", "mem_percent"]);
      const [outcome] = await monitor.configure({
        metrics: ["load_1", "mem_total_bytes", "uptime_s"],
      });
      assert.ok(outcome?.ok, JSON.stringify(outcome));
      await waitFor(
        "new metrics",
        () => monitor.status()[0]?.metrics?.mem_total_bytes !== undefined,
      );
      const m = monitor.status()[0]!.metrics!;
      assert.deepEqual(Object.keys(m), [
        "cpu_percent",
        "mem_percent",
        "load_1",
        "mem_total_bytes",
        "uptime_s",
      ]);
      assert.ok(m.mem_total_bytes! > 0 && m.uptime_s! > 0);
      await server.program.waitForLine(
        /LB changed session config .*metrics=cpu_percent,mem_percent,load_1/,
      );
      assertNoBugs(server.program);
    } finally {
      await monitor.stop();
      await transport.close();
    }
  },
});

Deno.test({
  ...opts,
  name: "The first programs to start create the default certificates and secret, shared by both",
  async fn() {
    await using fleet = await Fleet.create("e2e-defaults");
    const certs = fleet.dir;
    await Deno.remove(certs);
    // Server and LB start together: one CA must come out of it.
    const [server, lb] = await Promise.all([
      fleet.server(["--server-port", "0"]),
      fleet.lb(["--table", "off"]),
    ]);
    for (
      const [name, mode] of [["ca.key", 0o600], ["server.key", 0o600], ["jwt.secret", 0o600], [
        "ca.pem",
        0o644,
      ]] as const
    ) {
      const st = await Deno.stat(`${certs}/${name}`);
      assert.equal(st.mode! & 0o777, mode, name);
    }
    // The LB started without --servers; add nothing, but its status is served.
    assert.deepEqual(await fetchStatus(lb.httpPort), []);
    await sleep(100);
    assertNoBugs(server.program, lb.program);
  },
});

Deno.test({
  ...opts,
  name: "An LB restarted while servers run picks up every server within one check interval",
  async fn() {
    await using fleet = await Fleet.create("e2e-lb-restart");
    const servers = await Promise.all(
      [1, 2, 3].map((i) => fleet.server(["--server-port", "0", "--server-id", `s${i}`])),
    );
    const list = servers.map((s) => `127.0.0.1:${s.port}`).join(",");
    const interval = 2;
    const args = ["--servers", list, "--check-interval", String(interval), "--table", "off"];
    const first = await fleet.lb(args);
    const programs: Program[] = [...servers.map((s) => s.program), first.program];
    for (const s of servers) {
      await until(first.httpPort, s.port, "UP", (e) => e.state === "UP", 10_000);
    }
    first.program.kill("SIGTERM");
    assert.equal((await first.program.done).code, 0);
    const second = await fleet.lb(args);
    programs.push(second.program);
    // From the moment the new LB starts watching, every server is UP within one interval.
    await second.program.waitForLine(/load balancer starting/);
    const t0 = performance.now();
    for (const s of servers) {
      await until(second.httpPort, s.port, "UP", (e) => e.state === "UP", interval * 1000 + 3000);
    }
    const ms = performance.now() - t0;
    assert.ok(ms < interval * 1000, `all UP ${ms.toFixed(0)} ms after the LB started watching`);
    record(
      "restart",
      "restarted LB: every server UP after",
      ms,
      "ms",
      `< ${interval * 1000} ms (one check interval)`,
    );
    assertNoBugs(...programs);
  },
});

Deno.test({
  ...opts,
  name:
    "--quic: LBs on either stack watch servers on either stack; SIGTERM and SIGKILL are seen by both",
  async fn() {
    await using fleet = await Fleet.create("e2e-stacks");
    const native = await fleet.server(["--server-port", "0", "--quic", "native"]);
    const quiche = await fleet.server(["--server-port", "0", "--quic", "matrixai"]);
    const servers = `127.0.0.1:${native.port},127.0.0.1:${quiche.port}`;
    const lbArgs = ["--servers", servers, "--check-interval", "0.5", "--table", "off"];
    const lbNative = await fleet.lb([...lbArgs, "--quic", "native"]);
    const lbQuiche = await fleet.lb(lbArgs);
    const programs = [native.program, quiche.program, lbNative.program, lbQuiche.program];
    await native.program.waitForLine(/server listening .*quic=native/, 1000);
    await lbNative.program.waitForLine(/load balancer starting .*quic=native/, 1000);
    await lbQuiche.program.waitForLine(/load balancer starting .*quic=matrixai/, 1000);
    for (const lb of [lbNative, lbQuiche]) {
      for (const port of [native.port, quiche.port]) {
        await until(lb.httpPort, port, "UP", (s) => s.state === "UP", 10_000);
      }
    }
    native.program.kill("SIGTERM");
    quiche.program.kill("SIGKILL");
    for (const lb of [lbNative, lbQuiche]) {
      const downMs = await until(
        lb.httpPort,
        native.port,
        "DOWN",
        (s) => s.state === "DOWN",
        3000,
      );
      assert.ok(downMs < 1500, `SIGTERM to DOWN took ${downMs.toFixed(0)} ms`);
      await until(lb.httpPort, quiche.port, "DOWN", (s) => s.state === "DOWN", 8000);
    }
    assert.equal((await native.program.done).code, 0, native.program.output());
    assertNoBugs(...programs);
  },
});
