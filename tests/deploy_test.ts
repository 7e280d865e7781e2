/**
 * The production recipes in deploy/: the systemd units pass systemd-analyze,
 * their ExecStart lines run (an agent and an LB started exactly as the units
 * say, paths moved to this checkout, see each other UP), the image's command
 * line parses, and the README shows the files as they are.
 */

import assert from "node:assert/strict";
import { requirePeer } from "../tools/peers.ts";
import { parseServerArgs } from "../lib/cli/server_flags.ts";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { agentDenoFlags, agentGraphFlags } from "../lib/util/defaults.ts";
import { fetchStatus, tempDir, waitFor } from "./_helpers.ts";
import { evictable, residentBytes, writeBack } from "../bench/_page_cache.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const UNITS = ["qhcp-server.service", "qhcp-lb.service"];

/** A unit's text with /opt/qhcp, /etc/qhcp and /run/qhcp moved. */
function moved(text: string, paths: { etc: string; run: string }): string {
  return text.replaceAll("/opt/qhcp", root).replaceAll("/etc/qhcp", paths.etc)
    .replaceAll("/run/qhcp", paths.run);
}

/** ExecStart as an argument vector: continuation lines joined, no quoting used. */
function execStart(unit: string): string[] {
  const m = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit);
  assert.ok(m, "the unit has an ExecStart");
  return m[1]!.replace(/\\\n/g, " ").trim().split(/\s+/);
}

Deno.test("deploy/*.service pass systemd-analyze verify", async () => {
  const analyze = requirePeer("systemd-analyze");
  const dir = await tempDir("units");
  try {
    for (const name of UNITS) {
      const text = await Deno.readTextFile(`${root}/deploy/${name}`);
      await Deno.writeTextFile(`${dir}/${name}`, moved(text, { etc: dir, run: dir }));
    }
    const out = await new Deno.Command(analyze, {
      args: ["verify", ...UNITS.map((n) => `${dir}/${n}`)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    // Only complaints about these units count (the host's own units may have some).
    const ours = text.split("\n").filter((l) => UNITS.some((u) => l.includes(u)));
    assert.deepEqual(ours, [], text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "deploy/*.service ExecStart lines run: the agent listens, the LB finds it UP and serves /status",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const etc = await tempDir("etc-qhcp");
    const run = await tempDir("run-qhcp");
    const children: Deno.ChildProcess[] = [];
    try {
      await ensureDefaultFiles(etc);
      const unit = (name: string) =>
        Deno.readTextFile(`${root}/deploy/${name}`).then((t) => execStart(moved(t, { etc, run })));
      // Free ports instead of the units' fixed ones, so that the test runs beside anything.
      const agentArgs = (await unit("qhcp-server.service")).map((a) => a === "4243" ? "0" : a);
      const lbArgs = (await unit("qhcp-lb.service")).map((a) => a === "8080" ? "0" : a);
      const spawn = (argv: string[]) => {
        const child = new Deno.Command(argv[0]!, {
          args: argv.slice(1),
          stdout: "piped",
          stderr: "piped",
          env: { NO_COLOR: "1" },
        }).spawn();
        children.push(child);
        const lines: string[] = [];
        // Logs go to stderr; both streams are read so that neither pipe fills.
        for (const stream of [child.stdout, child.stderr]) {
          (async () => {
            let rest = "";
            for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
              const parts = (rest + chunk).split("\n");
              rest = parts.pop()!;
              lines.push(...parts);
            }
          })();
        }
        return lines;
      };
      const agentLog = spawn(agentArgs);
      const listening = await waitFor("the agent's listening line", () => {
        for (const l of agentLog) {
          if (!l.trim()) continue;
          const rec = JSON.parse(l) as Record<string, unknown>;
          if (rec.msg === "server listening") return rec;
        }
        return undefined;
      }, 20_000);
      await Deno.writeTextFile(`${etc}/servers`, `127.0.0.1:${listening.port}\n`);
      const lbLog = spawn(lbArgs);
      const http = await waitFor("the LB's HTTP port", () => {
        for (const l of lbLog) {
          if (!l.trim()) continue;
          const rec = JSON.parse(l) as Record<string, unknown>;
          if (rec.msg === "HTTP status endpoint listening") return Number(rec.port);
        }
        return undefined;
      }, 20_000);
      await waitFor("the agent UP", async () => {
        const s = await fetchStatus(http);
        return s[0]?.state === "UP" ? s : undefined;
      }, 20_000);
      // The drain file the agent's unit names drains it.
      await Deno.writeTextFile(`${run}/drain`, "");
      await waitFor("the agent DRAINING", async () => {
        const s = await fetchStatus(http);
        return s[0]?.status === "DRAINING" ? s : undefined;
      }, 20_000);
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGTERM");
        } catch { /* gone */ }
        await c.status;
      }
      await Deno.remove(etc, { recursive: true });
      await Deno.remove(run, { recursive: true });
    }
  },
});

Deno.test("deploy/Dockerfile runs the launcher with agent flags that parse", async () => {
  const text = await Deno.readTextFile(`${root}/deploy/Dockerfile`);
  const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(text)![1]!) as string[];
  const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(text)![1]!) as string[];
  assert.deepEqual(entry, ["/opt/qhcp/run_quic.sh"]);
  assert.equal(cmd[0], "server");
  const config = parseServerArgs(cmd.slice(1));
  assert.equal(config.quic, "native");
  assert.match(
    text,
    /npm|run_quic\.sh deno/,
    "Deno comes from the npm registry through the launcher",
  );
});

Deno.test("README shows deploy/ files exactly as they are", async () => {
  const readme = await Deno.readTextFile(`${root}/README.md`);
  for (const name of [...UNITS, "Dockerfile"]) {
    const text = (await Deno.readTextFile(`${root}/deploy/${name}`)).trimEnd();
    assert.ok(readme.includes(text), `README.md must include deploy/${name} verbatim`);
  }
});

Deno.test("agentDenoFlags() names every unstable feature deno.json turns on, since the agent runs without it", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`)) as { unstable: string[] };
  const flags = agentDenoFlags(root);
  assert.ok(flags.includes("--no-config"));
  assert.deepEqual(
    flags.filter((f) => f.startsWith("--unstable-")),
    config.unstable.map((u) => `--unstable-${u}`),
  );
});

Deno.test("run_quic.sh runs server.ts with agentDenoFlags() and no project config, lb.ts with the config, install caches both, all without update checks", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A stand-in deno that prints the arguments it is given.
    await Deno.writeTextFile(
      `${dir}/deno`,
      '#!/bin/sh\nprintf "%s\\n" "$@" "update-check-off=$DENO_NO_UPDATE_CHECK"\n',
      { mode: 0o755 },
    );
    const run = async (program: string) => {
      const out = await new Deno.Command("bash", {
        args: [`${root}/run_quic.sh`, program, "--help"],
        env: { PATH: `${dir}:${Deno.env.get("PATH")}` },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout).trim().split("\n");
    };
    const server = await run("server");
    assert.deepEqual(server, [
      "run",
      ...agentDenoFlags(root),
      "-A",
      `${root}/server.ts`,
      "--help",
      "update-check-off=1",
    ]);
    // install: the LB's packages with the config, then the agent's graph as the agent loads it.
    const install = await run("install");
    const cache = install.indexOf("cache");
    assert.deepEqual(install.slice(0, cache), [
      "install",
      "--config",
      `${root}/deno.json`,
      "--entrypoint",
      `${root}/lb.ts`,
      `${root}/server.ts`,
      "update-check-off=1",
    ]);
    assert.deepEqual(install.slice(cache), [
      "cache",
      ...agentGraphFlags(root),
      `${root}/server.ts`,
      "update-check-off=1",
      // The modules that load npm packages run once, so that their analysis is cached too.
      ...["lib/transport/matrixai.ts", "lib/security/certs.ts"].flatMap((m) => [
        "run",
        ...agentGraphFlags(root),
        "-A",
        `${root}/${m}`,
        "update-check-off=1",
      ]),
    ]);
    const lb = await run("lb");
    assert.deepEqual(lb, [
      "run",
      "--config",
      `${root}/deno.json`,
      "-A",
      `${root}/lb.ts`,
      "--help",
      "update-check-off=1",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "run_quic.sh server drops the Deno binary's pages from the page cache before the agent starts",
  // A file on a memory filesystem has nothing to drop.
  ignore: !evictable(Deno.env.get("TMPDIR") ?? "/tmp"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "qhcp-evict-test-" });
  try {
    // A stand-in deno just written, 32 MiB, every page cached as after an install. It
    // prints how much of itself is cached when it runs: the shell reads only its first lines.
    const shim = `${dir}/deno`;
    const head = '#!/bin/sh\nfincore --bytes --noheadings --output RES "$0"\nexit 0\n';
    const padding = `#${"-".repeat(1022)}\n`.repeat(32 * 1024);
    await Deno.writeTextFile(shim, head + padding, { mode: 0o755 });
    await writeBack(shim);
    const size = (await Deno.stat(shim)).size;
    assert.ok(await residentBytes(shim) >= size, "the stand-in starts fully cached");
    const out = await new Deno.Command("bash", {
      args: [`${root}/run_quic.sh`, "server", "--help"],
      env: { PATH: `${dir}:${Deno.env.get("PATH")}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const resident = Number(new TextDecoder().decode(out.stdout).trim());
    assert.ok(resident < size / 4, `${resident} of ${size} bytes cached when deno started`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
