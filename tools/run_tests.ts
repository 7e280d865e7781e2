#!/usr/bin/env -S deno run -A
/**
 * Runs the test suite (`deno task test` after the checks).
 *
 * Test files that load the native QUIC addon (@matrixai/quic) each run in a
 * `deno test` process of their own; the rest run together with --parallel.
 * Reason: with the addon loaded by several test modules of one process (one
 * isolate each), the process died of a general protection fault in 2 of 6
 * full runs, while 400 connect/close rounds in a single isolate never did.
 * The programs themselves run one isolate, like these separate processes.
 *
 * Prints each process's output as it finishes, then one summary line in
 * deno's format, "ok | N passed | N failed (Ts)", which CI reads.
 * Extra arguments (e.g. --filter NAME) are passed to every `deno test`.
 *
 * @module
 */

const root = new URL("..", import.meta.url).pathname;
const extra = Deno.args;
const started = performance.now();

const files = [...Deno.readDirSync(`${root}tests`)]
  .filter((e) => e.isFile && /_test\.ts$/.test(e.name))
  .map((e) => `tests/${e.name}`)
  .sort();

const native = new Set<string>();
await Promise.all(files.map(async (file) => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", file],
    cwd: root,
    stdout: "piped",
    stderr: "null",
  }).output();
  // npmPackages lists every package of the lock file; the module graph is what counts.
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier?: string }[];
  };
  if (info.modules.some((m) => m.specifier?.startsWith("npm:/@matrixai/quic@"))) native.add(file);
}));

// The longest jobs start first so that the two workers finish close together:
// the group of every file without the addon (the longest by far), then the
// slowest files of their own.
const SLOW_FIRST = [
  "tests/crash_modes_test.ts",
  "tests/cycles_test.ts",
  "tests/quic_interop_test.ts",
];
const rank = (f: string) => (SLOW_FIRST.includes(f) ? SLOW_FIRST.indexOf(f) : SLOW_FIRST.length);
const jobs: string[][] = [
  files.filter((f) => !native.has(f)),
  ...[...native].sort((a, b) => rank(a) - rank(b)).map((f) => [f]),
].filter((j) => j.length > 0);

interface Result {
  files: string[];
  passed: number;
  failed: number;
  ok: boolean;
}

/** A test process that runs longer than this is killed and counted as failed. */
const PROCESS_TIMEOUT_MS = 240_000;

/** Native crashes of a test process (SIGSEGV, a Deno panic) that were re-run, by file. */
const crashes: string[] = [];

/**
 * Runs one group. A process that dies of a native crash (a signal or a Deno
 * panic) with no failing test is run once more and the crash is reported in
 * the summary: Deno 2.9.6 with the @matrixai/quic addon crashes now and then
 * under heavy connection churn (see docs/RELIABILITY.md). A second crash, or
 * any failed assertion, fails the run.
 */
async function run(group: string[]): Promise<Result> {
  const first = await _runOnce(group);
  if (!first.crashed) return first;
  crashes.push(group.join(" "));
  console.log(`!! native crash in deno test ${group.join(" ")}: running it once more`);
  return await _runOnce(group);
}

async function _runOnce(group: string[]): Promise<Result & { crashed: boolean }> {
  // --expose-gc lets memory tests measure the heap after a full collection.
  const args = [
    "test",
    "-A",
    "--v8-flags=--expose-gc",
    ...(group.length > 1 ? ["--parallel"] : []),
    ...extra,
    ...group,
  ];
  console.log(`--- started: deno ${args.join(" ")}`);
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, PROCESS_TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const summary = [...text.matchAll(/^(ok|FAILED) \| (\d+) passed.*?\| (\d+) failed/gm)].at(-1);
  const passed = summary ? Number(summary[2]) : 0;
  let failed = summary ? Number(summary[3]) : 0;
  let note = "";
  const crashed = !out.success && failed === 0 && !timedOut &&
    (out.signal !== null || /Deno has panicked/.test(text));
  if (!out.success && failed === 0) {
    failed = 1; // the process failed without a failing test: a crash or a load error
    const how = timedOut
      ? `was killed after ${PROCESS_TIMEOUT_MS / 1000} s`
      : `exited with ${out.signal ?? out.code}`;
    note = `\n!! deno test ${group.join(" ")} ${how} and no failed test\n`;
  }
  console.log(`\n=== deno ${args.join(" ")}\n${text.trimEnd()}${note}`);
  return { files: group, passed, failed, ok: out.success, crashed };
}

// Two processes at a time: the machines have two cores.
const results: Result[] = [];
const queue = [...jobs];
await Promise.all([0, 1].map(async () => {
  for (let job = queue.shift(); job; job = queue.shift()) results.push(await run(job));
}));

const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
const seconds = Math.round((performance.now() - started) / 1000);
console.log(
  `\n${failed === 0 ? "ok" : "FAILED"} | ${passed} passed | ${failed} failed (${seconds}s)` +
    ` [${results.length} processes; own process: ${[...native].join(", ")}]` +
    (crashes.length ? ` [native crashes re-run: ${crashes.join(", ")}]` : ""),
);
Deno.exit(failed === 0 && results.every((r) => r.ok) ? 0 : 1);
