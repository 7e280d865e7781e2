/**
 * The programs as a newcomer and an operator meet them: bad certificate files
 * caught at start on both stacks, the HTTP endpoint over TLS, what SIGHUP and
 * a closed terminal do, the demo naming a server that cannot start, and the
 * launcher's help and plain output.
 */

import assert from "node:assert/strict";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { startAgent } from "../lib/cli/agent_main.ts";
import { parseLbArgs } from "../lib/cli/lb_flags.ts";
import { startLb } from "../lib/cli/lb_main.ts";
import { parseServerArgs } from "../lib/cli/server_flags.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { FakeMetrics, Program, startLbProcess, tempDir, waitFor } from "./_helpers.ts";

const root = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();

/** Runs a command to its end; output as text. */
async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; clearEnv?: boolean; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: options.env ?? {},
    clearEnv: options.clearEnv ?? false,
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

for (const quic of ["matrixai", "native"] as const) {
  Deno.test({
    name:
      `server.ts --quic ${quic} exits 2 naming the flag for a file that is no certificate and for a pair that does not match`,
    async fn() {
      const dir = await tempDir("pair");
      try {
        const files = await ensureDefaultFiles(dir);
        await Deno.writeTextFile(`${dir}/junk.pem`, "this is not a certificate\n");
        const server = (extra: string[]) =>
          run(deno, ["run", "-A", "server.ts", "--quic", quic, "--certs-dir", dir, ...extra], {
            env: { NO_COLOR: "1" },
          });
        const junk = await server([
          "--cert-file",
          `${dir}/junk.pem`,
          "--key-file",
          files.serverKey,
        ]);
        assert.equal(junk.code, 2, junk.stderr);
        assert.match(
          junk.stderr,
          /qhcp-server: --cert-file: \S+junk\.pem: holds no PEM certificate/,
        );
        assert.ok(!/server listening/.test(junk.stderr), "refused before listening");
        // The CA's key with the server's certificate: parses, does not match.
        const mismatch = await server(["--cert-file", files.serverCert, "--key-file", files.caKey]);
        assert.equal(mismatch.code, 2, mismatch.stderr);
        assert.match(
          mismatch.stderr,
          /qhcp-server: --cert-file and --key-file: \S+server\.pem and \S+ca\.key: the private key does not belong to the certificate/,
        );
        const notKey = await server(["--cert-file", files.serverCert, "--key-file", files.caCert]);
        assert.equal(notKey.code, 2, notKey.stderr);
        assert.match(
          notKey.stderr,
          /qhcp-server: --key-file: \S+ca\.pem: holds no PEM private key/,
        );
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name:
    "lb.ts --http-tls serves the API over HTTPS with the development CA's certificate; plain HTTP beyond loopback is warned",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("tls");
    const env = { QHCP_CERTS_DIR: dir };
    const tls = await startLbProcess(["--http-tls", "--table", "off"], env);
    let client: Deno.HttpClient | undefined;
    try {
      const ca = await Deno.readTextFile(`${dir}/ca.pem`);
      client = Deno.createHttpClient({ caCerts: [ca] });
      const res = await fetch(`https://localhost:${tls.httpPort}/healthz`, { client });
      assert.equal(res.status, 200);
      assert.equal((await res.json()).status, "ok");
      await assert.rejects(
        fetch(`http://127.0.0.1:${tls.httpPort}/healthz`).then((r) => r.body?.cancel()),
        "plain HTTP is not served on the TLS port",
      );
      assert.match(tls.program.output(), /HTTP status endpoint listening .*scheme=https/);
      assert.ok(!/crosses the network in clear/.test(tls.program.output()));
    } finally {
      client?.close();
      await tls.program.stop();
    }
    // Plain HTTP on every address: the admin token would travel in clear.
    const open = new Program("lb.ts", ["--http-host", "0.0.0.0", "--loadbalancer-port", "0"], env);
    try {
      await open.waitForLine(/HTTP status endpoint listening/);
      assert.match(open.output(), /WARN the HTTP endpoint is plain HTTP beyond loopback/);
      assert.match(open.output(), /--http-tls/);
    } finally {
      await open.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "lb.ts without a terminal stops on SIGHUP when it has nothing to reload, and reloads its servers file on SIGHUP",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("hup");
    const env = { QHCP_CERTS_DIR: dir };
    try {
      const plain = await startLbProcess(["--table", "off"], env);
      plain.program.kill("SIGHUP");
      const status = await plain.program.done;
      await plain.program.stop();
      assert.equal(status.code, 0, plain.program.output());
      assert.match(plain.program.output(), /shutting down: .* signal=SIGHUP/);

      await Deno.writeTextFile(`${dir}/servers`, "127.0.0.1:1\n");
      const following = await startLbProcess(
        ["--table", "off", "--servers-file", `${dir}/servers`],
        env,
      );
      try {
        following.program.kill("SIGHUP");
        await following.program.waitForLine(/SIGHUP: reloading the servers file/);
        await new Promise((r) => setTimeout(r, 300));
        assert.ok(!/shutting down/.test(following.program.output()), "still running");
      } finally {
        const st = await following.program.stop("SIGTERM");
        assert.equal(st.code, 0);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "Closing the LB's terminal stops it (SIGHUP from the terminal), even while it follows a servers file, and frees its port",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("tty");
    try {
      await ensureDefaultFiles(dir);
      await Deno.writeTextFile(`${dir}/servers`, "127.0.0.1:1\n");
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const lb = [
        "exec",
        deno,
        "run",
        "-A",
        `${root}lb.ts`,
        "--http-host",
        "127.0.0.1",
        "--loadbalancer-port",
        String(port),
        "--servers-file",
        `${dir}/servers`,
      ].join(" ");
      // `script` runs the LB on a new pseudo-terminal; killing it closes the
      // terminal's master side, and the kernel sends SIGHUP to the LB.
      const term = new Deno.Command("script", {
        args: ["-qefc", lb, "/dev/null"],
        cwd: root,
        env: { QHCP_CERTS_DIR: dir, NO_COLOR: "1", TERM: "dumb" },
        stdin: "piped",
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const screen: string[] = [];
      const pump = (async () => {
        for await (const t of term.stdout.pipeThrough(new TextDecoderStream())) screen.push(t);
      })().catch(() => {});
      const listening = async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      };
      await waitFor("the LB on its terminal", listening, 20_000);
      // The table is drawn at start, not one check interval (10 s) later.
      await waitFor("the table", () => /QHCP LB .* 1 server: /.test(screen.join("")), 2000);
      term.kill("SIGKILL");
      await term.status;
      await waitFor("the port to be free again", async () => !(await listening()), 10_000);
      await term.stdin.close().catch(() => {});
      await pump;
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "server.ts stops in order on SIGHUP (a closed terminal)",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("hup-server");
    const server = new Program(
      "server.ts",
      ["--server-ip", "127.0.0.1", "--server-port", "0"],
      { QHCP_CERTS_DIR: dir },
    );
    try {
      await server.waitForLine(/server listening/);
      server.kill("SIGHUP");
      const status = await server.done;
      assert.equal(status.code, 0);
      await server.waitForLine(/shutting down: .* signal=SIGHUP/);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "The demo names a server that cannot start, says why, and exits 1",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("demo");
    // Three free UDP ports in a row; the middle one held by someone else.
    let held: Deno.DatagramConn | undefined;
    let first = 0;
    for (let tries = 0; !held && tries < 50; tries++) {
      first = 20_000 + Math.floor(Math.random() * 30_000);
      try {
        const probes = [first, first + 2].map((port) =>
          Deno.listenDatagram({ hostname: "127.0.0.1", port, transport: "udp" })
        );
        probes.forEach((p) => p.close());
        held = Deno.listenDatagram({ hostname: "127.0.0.1", port: first + 1, transport: "udp" });
      } catch { /* taken: try others */ }
    }
    assert.ok(held, "no free ports found");
    try {
      const r = await run(
        deno,
        ["run", "-A", "tools/demo.ts", "--first-port", String(first), "--loadbalancer-port", "0"],
        { env: { QHCP_CERTS_DIR: dir, NO_COLOR: "1" } },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `demo: server demo-2 on 127\\.0\\.0\\.1:${
            first + 1
          } failed to start: it exited with code 1: .*(EADDRINUSE|in use).*\\(its log: `,
        ),
      );
    } finally {
      held.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("run_quic.sh --help prints the help without installing or running Deno", async () => {
  const dir = await tempDir("launcher");
  try {
    await Deno.copyFile(`${root}run_quic.sh`, `${dir}/run_quic.sh`);
    const r = await run("/bin/bash", [`${dir}/run_quic.sh`, "--help"], {
      cwd: dir,
      clearEnv: true,
      env: { PATH: "/usr/local/bin:/usr/bin:/bin" }, // npm is there, deno is not
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\.\/run_quic\.sh test/);
    assert.match(r.stdout, /\.\/run_quic\.sh task NAME/);
    await assert.rejects(Deno.stat(`${dir}/.tools`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run_quic.sh output to a pipe carries no colour codes, and every deno task says what it does", async () => {
  const path = `${Deno.execPath().replace(/\/[^/]+$/, "")}:/usr/bin:/bin`;
  const tasks = await run("./run_quic.sh", ["task"], {
    clearEnv: true,
    env: { PATH: path, HOME: Deno.env.get("HOME") ?? "/tmp" },
  });
  const all = tasks.stdout + tasks.stderr;
  assert.match(all, /Available tasks/);
  assert.ok(!all.includes("\x1b"), `escape codes in: ${JSON.stringify(all.slice(0, 200))}`);
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
    tasks: Record<string, { description?: string }>;
  };
  for (const [name, task] of Object.entries(config.tasks)) {
    assert.ok((task.description ?? "").length > 10, `task ${name} has a description`);
    assert.ok(all.includes(task.description!), `deno task lists the description of ${name}`);
  }
});

Deno.test({
  name:
    "startLb() and startAgent() run both programs in-process: the agent is UP at the LB's HTTP API, and stop() ends both",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await tempDir("in-process");
    const transport = new MemoryTransport();
    const lines: string[] = [];
    try {
      await ensureDefaultFiles(dir, { hosts: ["10.0.0.1"] });
      const agent = await startAgent(
        parseServerArgs(["--certs-dir", dir, "--server-ip", "10.0.0.1", "--server-id", "inproc"]),
        { transport, metrics: new FakeMetrics(), logSink: (l) => lines.push(l) },
      );
      const lb = await startLb(
        parseLbArgs([
          "--certs-dir",
          dir,
          "--servers",
          "10.0.0.1:4243",
          "--check-interval",
          "0.2",
          "--http-host",
          "127.0.0.1",
          "--loadbalancer-port",
          "0",
          "--table",
          "off",
        ]),
        { transport, logSink: (l) => lines.push(l) },
      );
      const url = `http://127.0.0.1:${lb.http.port}/health/10.0.0.1:4243`;
      await waitFor("UP over HTTP", async () => {
        const res = await fetch(url);
        await res.body?.cancel();
        return res.status === 200;
      });
      await lb.stop("test");
      await agent.stop("test");
      assert.ok(lines.some((l) => / INFO stopped$/.test(l)));
      await assert.rejects(fetch(url), "the HTTP port is closed");
    } finally {
      await transport.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
