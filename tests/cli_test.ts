/**
 * Command lines: flag parsing and validation without processes, then the
 * real entry points and run_quic.sh for --help, bad values and the menu.
 */

import assert from "node:assert/strict";
import { CliError, type FlagSpec, parseFlags } from "../lib/cli/flags.ts";
import { LB_FLAGS, parseLbArgs } from "../lib/cli/lb_flags.ts";
import { parseServerAddress } from "../lib/protocol/address.ts";
import { parseServerArgs, SERVER_FLAGS } from "../lib/cli/server_flags.ts";
import { SYSTEM_METRICS } from "../lib/agent/host_view.ts";
import { agentDenoFlags } from "../lib/util/defaults.ts";
import { Program, tempDir } from "./_helpers.ts";

const root = new URL("..", import.meta.url).pathname;

function cliError(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CliError, String(e));
    assert.match(e.message, message);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

const SPECS: FlagSpec[] = [
  { name: "port", type: "string", help: "" },
  { name: "tag", type: "string", multiple: true, help: "" },
  { name: "verbose", type: "boolean", help: "" },
  { name: "help", type: "boolean", short: "h", help: "" },
];

Deno.test("parseFlags() reads --flag value, --flag=value, switches, repeats and short aliases", () => {
  assert.deepEqual(
    parseFlags(SPECS, ["--port", "80", "--tag=a", "--tag", "b", "--verbose", "-h"]),
    { port: "80", tag: ["a", "b"], verbose: true, help: true },
  );
  // The last of a flag given twice wins; a value may start with - after =.
  assert.deepEqual(parseFlags(SPECS, ["--port", "1", "--port=-2"]), { port: "-2" });
  assert.deepEqual(parseFlags(SPECS, ["--port", "-"]), { port: "-" });
  assert.deepEqual(parseFlags(SPECS, ["--port="]), { port: "" });
  assert.deepEqual(parseFlags(SPECS, []), {});
});

Deno.test("parseFlags() names the flag at fault in one line", () => {
  cliError(() => parseFlags(SPECS, ["--nope"]), /^unknown flag --nope \(see --help\)$/);
  cliError(() => parseFlags(SPECS, ["-x"]), /^unknown flag -x /);
  cliError(() => parseFlags(SPECS, ["--port"]), /^--port: expected a value$/);
  cliError(
    () => parseFlags(SPECS, ["--port", "-1"]),
    /^--port: expected a value \(write --port=VALUE for a value starting with -\)$/,
  );
  cliError(() => parseFlags(SPECS, ["--verbose=yes"]), /^--verbose: takes no value$/);
  cliError(() => parseFlags(SPECS, ["80"]), /^unexpected argument "80"/);
  cliError(() => parseFlags(SPECS, ["--"]), /^unexpected argument "--"/);
  cliError(() => parseFlags(SPECS, ["-"]), /^unexpected argument "-"/);
});

Deno.test("parseLbArgs() applies the documented defaults", () => {
  const c = parseLbArgs([]);
  assert.deepEqual(c.servers, []);
  assert.equal(c.httpPort, 4242);
  assert.equal(c.maxFailAttempts, 3);
  assert.equal(c.checkIntervalMs, 10_000);
  assert.equal(c.checkTimeoutMs, undefined);
  assert.equal(c.reconnectIntervalMs, 30_000);
  assert.equal(c.insecure, false);
  assert.equal(c.jwtTtlSec, 600);
  assert.match(c.lbId, /^lb-/);
  assert.equal(c.table, "auto");
});

Deno.test("parseLbArgs() reads every flag", () => {
  const c = parseLbArgs([
    "--servers",
    "10.0.0.1:5000, web-2 ,[::1]:7000,fe80::1",
    "--loadbalancer-port",
    "8080",
    "--max-fail-attempts",
    "5",
    "--check-interval",
    "0.25",
    "--check-timeout",
    "0.1",
    "--reconnect-interval",
    "1.5",
    "--cert-file",
    "/etc/qhcp/ca.pem",
    "--jwt-private-key-file",
    "/etc/qhcp/lb.key",
    "--lb-id",
    "edge-1",
    "--metrics",
    "load_1,disk_percent",
    "--table",
    "plain",
  ]);
  assert.deepEqual(c.servers, [
    { host: "10.0.0.1", port: 5000 },
    { host: "web-2", port: 4243 },
    { host: "::1", port: 7000 },
    { host: "fe80::1", port: 4243 },
  ]);
  assert.equal(c.httpPort, 8080);
  assert.equal(c.maxFailAttempts, 5);
  assert.equal(c.checkIntervalMs, 250);
  assert.equal(c.checkTimeoutMs, 100);
  assert.equal(c.reconnectIntervalMs, 1500);
  assert.equal(c.caFile, "/etc/qhcp/ca.pem");
  assert.equal(c.jwtPrivateKeyFile, "/etc/qhcp/lb.key");
  assert.equal(c.lbId, "edge-1");
  assert.deepEqual(c.metrics, ["load_1", "disk_percent"]);
  assert.equal(c.table, "plain");
});

Deno.test("parseLbArgs() names the flag of every bad value", () => {
  cliError(
    () => parseLbArgs(["--check-interval", "abc"]),
    /^--check-interval: expected seconds in 0\.1\.\.3600, got "abc"$/,
  );
  cliError(() => parseLbArgs(["--check-interval", "0.01"]), /^--check-interval:/);
  cliError(() => parseLbArgs(["--check-interval", "-1"]), /^--check-interval:/);
  cliError(
    () => parseLbArgs(["--max-fail-attempts", "0"]),
    /^--max-fail-attempts: expected an integer in 1\.\.1000/,
  );
  cliError(() => parseLbArgs(["--max-fail-attempts", "2.5"]), /^--max-fail-attempts:/);
  cliError(() => parseLbArgs(["--loadbalancer-port", "70000"]), /^--loadbalancer-port:/);
  cliError(() => parseLbArgs(["--reconnect-interval", "x"]), /^--reconnect-interval:/);
  cliError(() => parseLbArgs(["--check-timeout", "0"]), /^--check-timeout:/);
  cliError(
    () => parseLbArgs(["--servers", "10.0.0.1:99999"]),
    /^--servers: port in "10\.0\.0\.1:99999" is not in 1\.\.65535/,
  );
  cliError(() => parseLbArgs(["--servers", "a,,b"]), /^--servers: expected a comma-separated list/);
  cliError(() => parseLbArgs(["--servers", "host:http"]), /^--servers: bad port/);
  cliError(() => parseLbArgs(["--table", "fancy"]), /^--table: expected one of auto, plain, off/);
  cliError(() => parseLbArgs(["--log-level", "loud"]), /^--log-level:/);
  cliError(() => parseLbArgs(["--bogus"]), /^unknown flag --bogus/);
  cliError(() => parseLbArgs(["--servers"]), /^--servers: expected a value$/);
  cliError(() => parseLbArgs(["stray"]), /^unexpected argument "stray"/);
  cliError(
    () => parseLbArgs(["--jwt-secret-file", "a", "--jwt-private-key-file", "b"]),
    /cannot be used together/,
  );
  cliError(() => parseLbArgs(["--insecure", "--cert-file", "ca.pem"]), /cannot be used together/);
  cliError(() => parseLbArgs(["--quic", "msquic"]), /^--quic: expected one of matrixai, native/);
  cliError(
    () => parseLbArgs(["--quic", "native", "--insecure"]),
    /^--insecure cannot be used with --quic native: Deno's QUIC always verifies/,
  );
});

Deno.test("parseLbArgs() and parseServerArgs() read --quic; matrixai is the default", () => {
  assert.equal(parseLbArgs([]).quic, "matrixai");
  assert.equal(parseServerArgs([]).quic, "matrixai");
  assert.equal(parseLbArgs(["--quic", "native"]).quic, "native");
  assert.equal(parseServerArgs(["--quic", "native"]).quic, "native");
  assert.equal(parseLbArgs(["--quic", "matrixai", "--insecure"]).insecure, true);
  cliError(() => parseServerArgs(["--quic", "quinn"]), /^--quic: expected one of/);
});

Deno.test("parseServerArgs() applies the documented defaults and reads every flag", () => {
  const d = parseServerArgs([]);
  assert.equal(d.host, "0.0.0.0");
  assert.equal(d.port, 4243);
  assert.equal(d.helloTimeoutMs, 5000);
  assert.equal(d.jwtLeewaySec, 60);
  assert.deepEqual(d.defaultMetrics, ["cpu_percent", "mem_percent"]);
  const c = parseServerArgs([
    "--server-ip",
    "::",
    "--server-port",
    "5000",
    "--key-file",
    "k.pem",
    "--cert-file",
    "c.pem",
    "--jwt-public-key-file",
    "lb.pub",
    "--server-id",
    "web-7",
    "--hello-timeout",
    "2.5",
    "--metrics",
    "cpu_percent,load_1",
  ]);
  assert.equal(c.host, "::");
  assert.equal(c.port, 5000);
  assert.equal(c.keyFile, "k.pem");
  assert.equal(c.certFile, "c.pem");
  assert.equal(c.jwtPublicKeyFile, "lb.pub");
  assert.equal(c.serverId, "web-7");
  assert.equal(c.helloTimeoutMs, 2500);
  assert.deepEqual(c.defaultMetrics, ["cpu_percent", "load_1"]);
});

Deno.test("parseServerArgs() names the flag of every bad value", () => {
  cliError(() => parseServerArgs(["--server-port", "-1"]), /^--server-port:/);
  cliError(() => parseServerArgs(["--hello-timeout", "0"]), /^--hello-timeout:/);
  cliError(() => parseServerArgs(["--metrics", "gpu"]), /^--metrics: unknown metric "gpu"/);
  cliError(
    () => parseServerArgs(["--key-file", "k.pem"]),
    /--key-file and --cert-file must be given together/,
  );
  cliError(
    () => parseServerArgs(["--jwt-secret-file", "a", "--jwt-public-key-file", "b"]),
    /cannot be used together/,
  );
});

Deno.test("parseServerAddress() accepts host:port, bare hosts and IPv6 forms", () => {
  assert.deepEqual(parseServerAddress("example.com"), { host: "example.com", port: 4243 });
  assert.deepEqual(parseServerAddress("[2001:db8::1]:99"), { host: "2001:db8::1", port: 99 });
  assert.deepEqual(parseServerAddress("2001:db8::1"), { host: "2001:db8::1", port: 4243 });
  assert.throws(() => parseServerAddress(""));
  assert.throws(() => parseServerAddress("a b:1"));
});

Deno.test("Every flag in the tables has a help text", () => {
  for (const f of [...LB_FLAGS, ...SERVER_FLAGS]) assert.ok(f.help.length > 10, f.name);
});

async function run(
  args: string[],
  stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(args[0]!, {
    args: args.slice(1),
    cwd: root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(stdin));
  await w.close();
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

const deno = Deno.execPath();

Deno.test("lb.ts --help prints every flag and exits 0", async () => {
  const r = await run([deno, "run", "-A", "lb.ts", "--help"]);
  assert.equal(r.code, 0);
  for (const f of LB_FLAGS) assert.ok(r.stdout.includes(`--${f.name}`), f.name);
  assert.doesNotMatch(r.stdout, /\(default: \)/, "an empty default is not printed");
});

Deno.test("server.ts --help prints every flag and the metric names and exits 0", async () => {
  const r = await run([deno, "run", "-A", "server.ts", "--help"]);
  assert.equal(r.code, 0);
  for (const f of SERVER_FLAGS) assert.ok(r.stdout.includes(`--${f.name}`), f.name);
  // Each metric name stands apart from its description, and the descriptions share one column.
  const metrics = r.stdout.slice(r.stdout.indexOf("\nMetrics:\n") + 10).trimEnd().split("\n");
  const names = Object.keys(SYSTEM_METRICS);
  assert.equal(metrics.length, names.length);
  const column = (line: string) => /^ {2}\S+ {2,}/.exec(line)?.[0].length;
  names.forEach((name, i) => {
    assert.ok(metrics[i]!.startsWith(`  ${name}  `), metrics[i]);
    assert.equal(column(metrics[i]!), column(metrics[0]!), metrics[i]);
  });
});

Deno.test("lb.ts exits 2 with one line naming the flag for a bad value", async () => {
  const r = await run([deno, "run", "-A", "lb.ts", "--check-interval", "soon"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'qhcp-lb: --check-interval: expected seconds in 0.1..3600, got "soon"\n');
});

Deno.test("server.ts refuses a JWT secret shorter than 32 bytes with exit 2 and a clear message", async () => {
  const dir = await tempDir("cli");
  try {
    await Deno.writeTextFile(`${dir}/short.secret`, "too-short\n");
    const r = await run([
      deno,
      "run",
      "-A",
      "server.ts",
      "--jwt-secret-file",
      `${dir}/short.secret`,
      "--certs-dir",
      dir,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /\nqhcp-server: --jwt-secret-file: JWT secret in .*short\.secret is 9 bytes, expected at least 32\n$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run_quic.sh rejects an unknown command with exit 2", async () => {
  const r = await run(["./run_quic.sh", "frobnicate"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
});

Deno.test("run_quic.sh menu: 3 exits, a bad choice asks again", async () => {
  const r = await run(["./run_quic.sh"], "9\n3\n");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /1\) Run Load Balancer/);
  assert.match(r.stdout, /2\) Run Server/);
  assert.match(r.stdout, /3\) Exit/);
  assert.match(r.stderr, /Please answer 1, 2 or 3/);
});

Deno.test({
  name:
    "run_quic.sh menu: 2 prompts with defaults and execs the server with the answers and the agent's flags",
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("menu");
    const child = new Deno.Command("./run_quic.sh", {
      cwd: root,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", QHCP_CERTS_DIR: dir },
    }).spawn();
    const w = child.stdin.getWriter();
    // Run Server; IP 127.0.0.1; port "abc" (asked again), then 0 (any); default files.
    await w.write(new TextEncoder().encode("2\n127.0.0.1\nabc\n0\n\n\n"));
    const prog = { lines: [] as string[] };
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const prompts: string[] = [];
    const readOut = (async () => {
      for (let r = await stdout.read(); !r.done; r = await stdout.read()) prompts.push(r.value);
    })();
    try {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !prog.lines.join("").includes("server listening")) {
        const r = await reader.read();
        if (r.done) break;
        prog.lines.push(r.value);
      }
      const text = prog.lines.join("");
      assert.match(text, /server listening address=127\.0\.0\.1 port=\d+/);
      // The prompts show their defaults.
      const all = text + prompts.join("");
      assert.match(all, /Server IP \[0\.0\.0\.0\]/);
      assert.match(all, /Server port \[4243\]/);
      assert.match(
        all,
        /--server-port: expected an integer in 0\.\.65535, got "abc"; please try again/,
      );
      // exec: the server is the process we started, so SIGTERM reaches it directly;
      // and it runs as `run_quic.sh server` runs it, with the agent's own flags.
      const argv = (await Deno.readTextFile(`/proc/${child.pid}/cmdline`)).split("\0");
      const here = root.replace(/\/$/, "");
      assert.deepEqual(argv.slice(1, 2 + agentDenoFlags(here).length), [
        "run",
        ...agentDenoFlags(here),
      ]);
      assert.ok(argv.includes(`${here}/server.ts`), argv.join(" "));
      child.kill("SIGTERM");
      const status = await child.status;
      assert.equal(status.code, 0);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await w.close().catch(() => {});
      await reader.cancel().catch(() => {});
      await readOut.catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

// Program is used by other files; keep the import checked here too.
void Program;

Deno.test("parseLbArgs() reads --rise, --fast-interval and --jitter and names them when bad", () => {
  const d = parseLbArgs([]);
  assert.equal(d.rise, 2);
  assert.equal(d.fastIntervalMs, 1000);
  assert.equal(d.jitter, 0.1);
  const c = parseLbArgs(["--rise", "4", "--fast-interval", "0.25", "--jitter", "0"]);
  assert.equal(c.rise, 4);
  assert.equal(c.fastIntervalMs, 250);
  assert.equal(c.jitter, 0);
  cliError(() => parseLbArgs(["--rise", "0"]), /^--rise: expected an integer in 1\.\.1000/);
  cliError(() => parseLbArgs(["--fast-interval", "0"]), /^--fast-interval:/);
  cliError(() => parseLbArgs(["--jitter", "60"]), /^--jitter: expected an integer in 0\.\.50/);
});

Deno.test("parseServerArgs() reads the connection limits", () => {
  const d = parseServerArgs([]);
  assert.equal(d.maxUnauthenticated, 100);
  assert.equal(d.maxConnections, 10_000);
  const c = parseServerArgs(["--max-unauthenticated", "5", "--max-connections", "50"]);
  assert.equal(c.maxUnauthenticated, 5);
  assert.equal(c.maxConnections, 50);
  cliError(() => parseServerArgs(["--max-unauthenticated", "0"]), /^--max-unauthenticated:/);
});

Deno.test("parseLbArgs() reads the admin token file and the weight settings", () => {
  const d = parseLbArgs([]);
  assert.equal(d.adminTokenFile, undefined);
  assert.equal(d.weightFloor, 10);
  assert.deepEqual(d.loadMetrics, ["cpu_percent", "mem_percent"]);
  const c = parseLbArgs([
    "--admin-token-file",
    "/etc/qhcp/admin.token",
    "--weight-floor",
    "0",
    "--weight-metrics",
    "cpu_percent",
  ]);
  assert.equal(c.adminTokenFile, "/etc/qhcp/admin.token");
  assert.equal(c.weightFloor, 0);
  assert.deepEqual(c.loadMetrics, ["cpu_percent"]);
  cliError(
    () => parseLbArgs(["--weight-floor", "101"]),
    /^--weight-floor: expected an integer in 0\.\.100/,
  );
});

Deno.test("parseServerArgs() reads drain and local check flags, repeatable checks included", () => {
  const c = parseServerArgs([
    "--drain-file",
    "/run/qhcp/drain",
    "--check-tcp",
    "127.0.0.1:5432",
    "--check-tcp",
    "[::1]:6379",
    "--check-http",
    "http://127.0.0.1:8080/healthz",
    "--local-check-interval",
    "0.5",
  ]);
  assert.equal(c.drainFile, "/run/qhcp/drain");
  assert.deepEqual(c.localChecks, [
    { kind: "tcp", host: "127.0.0.1", port: 5432 },
    { kind: "tcp", host: "::1", port: 6379 },
    { kind: "http", url: "http://127.0.0.1:8080/healthz" },
  ]);
  assert.equal(c.localCheckIntervalMs, 500);
  assert.equal(c.localCheckTimeoutMs, 1000);
  cliError(() => parseServerArgs(["--check-tcp", "localhost"]), /^--check-tcp: expected HOST:PORT/);
  cliError(
    () => parseServerArgs(["--check-http", "ftp://x"]),
    /^--check-http: expected an http:\/\/ or https:\/\/ URL/,
  );
});

Deno.test("parseLbArgs() reads dns: servers, the servers file, the DNS server and the agent port", () => {
  const c = parseLbArgs([
    "--servers",
    "10.0.0.1,dns:web.internal:4243",
    "--servers-file",
    "/etc/qhcp/servers",
    "--dns-server",
    "127.0.0.1:5353",
    "--agent-port",
    "4241",
  ]);
  assert.deepEqual(c.servers, [{ host: "10.0.0.1", port: 4243 }]);
  assert.deepEqual(c.dnsNames, [{ name: "web.internal", port: 4243 }]);
  assert.equal(c.serversFile, "/etc/qhcp/servers");
  assert.deepEqual(c.dnsServer, { ipAddr: "127.0.0.1", port: 5353 });
  assert.equal(c.agentPort, 4241);
  cliError(
    () => parseLbArgs(["--servers", "dns:web.internal"]),
    /^--servers: expected dns:NAME:PORT/,
  );
  cliError(() => parseLbArgs(["--agent-port", "x"]), /^--agent-port:/);
});

Deno.test("tools/keygen.ts writes a key pair once, refuses to overwrite it, and answers --help", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qhcp-keygen-" });
  try {
    const help = await run([deno, "run", "-A", "tools/keygen.ts", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: deno task keygen \[DIR\]/);
    const flag = await run([deno, "run", "-A", "tools/keygen.ts", "--dir", dir]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /expected at most one argument/);
    const first = await run([deno, "run", "-A", "tools/keygen.ts", dir]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(await Deno.readTextFile(`${dir}/lb-ed25519.key`), /BEGIN PRIVATE KEY/);
    assert.match(await Deno.readTextFile(`${dir}/lb-ed25519.pub`), /BEGIN PUBLIC KEY/);
    assert.equal((await Deno.stat(`${dir}/lb-ed25519.key`)).mode! & 0o777, 0o600);
    const again = await run([deno, "run", "-A", "tools/keygen.ts", dir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; not overwriting/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseServerArgs() reads repeated --service NAME:PORT[:TAG,...] and rejects what an ACK could not carry", () => {
  assert.deepEqual(parseServerArgs([]).services, []);
  assert.deepEqual(
    parseServerArgs(["--service", "Web:8080", "--service", "db:5432:primary, eu"]).services,
    [{ name: "web", port: 8080 }, { name: "db", port: 5432, tags: ["primary", "eu"] }],
  );
  for (const bad of ["web", "web:", "web:0", "web:65536", "-web:80", "we_b:80", ":80", "web:80x"]) {
    cliError(
      () => parseServerArgs([`--service=${bad}`]),
      /^--service: expected NAME:PORT\[:TAG,\.\.\.\]/,
    );
  }
  cliError(
    () => parseServerArgs(["--service", `web:80:${"x".repeat(64)}`]),
    /--service: .*a tag is not a string of 1\.\.63 characters/,
  );
  cliError(
    () => parseServerArgs(["--service", "web:80", "--service", "WEB:81"]),
    /^--service: "web" is given twice$/,
  );
  const many = Array.from({ length: 33 }, (_, i) => ["--service", `s${i}:80`]).flat();
  cliError(() => parseServerArgs(many), /^--service: at most 32 services, got 33$/);
});
