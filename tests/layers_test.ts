/**
 * The layout's rules, read from the import graph of `lib/` so that they hold
 * without anyone remembering them (docs/ARCHITECTURE.md explains them):
 *
 * - imports run one way: util, then protocol, security, transport, then lb
 *   and agent (which never import each other), then ops and fleet (nor do
 *   they), then cli;
 * - each dependency has one home: one module imports each QUIC stack,
 *   @peculiar/x509 and dns-packet, and jose and node:crypto, fs and util are
 *   not used by lib/ at all;
 * - server.ts loads no npm package or node: module with the native stack,
 *   and its start-up modules call no `toISOString` or `localeCompare`;
 * - the root mod.ts does not load the native QUIC addon.
 */

import assert from "node:assert/strict";

const root = new URL("..", import.meta.url).pathname;

/** Layer of each folder of lib/: a module may import only from its own layer or lower ones. */
const LAYERS: Record<string, number> = {
  util: 0,
  protocol: 1,
  security: 2,
  transport: 3,
  lb: 4,
  agent: 4,
  ops: 5,
  fleet: 5,
  cli: 6,
};

/** Where each third-party (or native) dependency may be imported. */
const HOMES: Record<string, string> = {
  "@matrixai/quic": "lib/transport/matrixai.ts",
  "@matrixai/logger": "lib/transport/matrixai.ts",
  // jose is no longer used by lib/ (our own jws.ts); tests hold ours against it.
  "jose": "(tests only)",
  "@peculiar/x509": "lib/security/certs.ts",
  "reflect-metadata": "lib/security/certs.ts",
  "node:crypto": "(not in lib/)",
  "node:fs": "(not in lib/)",
  "node:util": "(not in lib/)",
  "dns-packet": "lib/ops/dns.ts",
};

/** Every .ts file under `dir` (relative to the repository root), node_modules left out. */
function ownFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${root}${dir}`)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory && e.name !== "node_modules") out.push(...ownFiles(p));
    else if (e.isFile && e.name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** Every .ts file under lib/, relative to the repository root. */
function libFiles(): string[] {
  return ownFiles("lib").sort();
}

/** The specifiers a file imports or re-exports (static and dynamic), outside comments. */
function imports(file: string): string[] {
  const text = Deno.readTextFileSync(`${root}${file}`)
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const specs: string[] = [];
  const re =
    /(?:^|\s)(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|^import\s+["']([^"']+)["']/gm;
  for (const m of text.matchAll(re)) specs.push((m[1] ?? m[2] ?? m[3])!);
  return specs;
}

function folderOf(file: string): string {
  return file.split("/")[1]!;
}

function resolve(from: string, spec: string): string {
  return new URL(spec, `file:///${from}`).pathname.slice(1);
}

Deno.test("lib/ is all in folders, and each folder is a known layer with a mod.ts", () => {
  const files = libFiles();
  for (const f of files) {
    assert.equal(f.split("/").length, 3, `${f} is in a folder of lib/`);
    assert.ok(folderOf(f) in LAYERS, `${folderOf(f)} is a known layer`);
  }
  for (const folder of Object.keys(LAYERS)) {
    assert.ok(files.includes(`lib/${folder}/mod.ts`), `lib/${folder}/mod.ts exists`);
  }
});

Deno.test("Imports in lib/ run one way: no module imports a higher layer, and lb and agent never import each other", () => {
  const wrong: string[] = [];
  for (const file of libFiles()) {
    const mine = folderOf(file);
    for (const spec of imports(file)) {
      if (!spec.startsWith(".")) continue;
      const target = resolve(file, spec);
      if (!target.startsWith("lib/")) continue;
      const theirs = folderOf(target);
      const up = LAYERS[theirs]! > LAYERS[mine]!;
      const sideways = LAYERS[theirs] === LAYERS[mine] && theirs !== mine;
      if (up || sideways) wrong.push(`${file} imports ${target} (${mine} -> ${theirs})`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("Each dependency is imported in one module only", () => {
  const wrong: string[] = [];
  const files = [...libFiles(), "lb.ts", "server.ts", "mod.ts"];
  for (const file of files) {
    for (const spec of imports(file)) {
      if (spec.startsWith(".")) continue;
      const name = spec.replace(/^npm:/, "").replace(/@[\d.]+$/, "");
      const home = HOMES[name];
      if (home !== undefined && home !== file) {
        wrong.push(`${file} imports ${spec} (its home is ${home})`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("Each npm package has one version: in code, in deno.json's import map, and in deno.lock", () => {
  const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`)) as {
    imports: Record<string, string>;
  };
  const lock = JSON.parse(Deno.readTextFileSync(`${root}deno.lock`)) as {
    specifiers: Record<string, string>;
  };
  const versions = new Map<string, Set<string>>();
  const note = (spec: string) => {
    const m = /^npm:(@?[^@]+)@([^/]+)/.exec(spec);
    if (m) versions.set(m[1]!, (versions.get(m[1]!) ?? new Set()).add(m[2]!));
  };
  Object.values(config.imports).forEach(note);
  const files = ["lib", "tests", "tools", "bench"].flatMap((d) => ownFiles(d));
  for (const file of [...files, "lb.ts", "server.ts", "mod.ts"]) imports(file).forEach(note);
  assert.ok(versions.has("@matrixai/quic") && versions.has("jose"), [...versions.keys()].join());
  for (const [name, seen] of versions) {
    assert.equal(seen.size, 1, `${name} is imported at versions ${[...seen].join(", ")}`);
    const spec = `npm:${name}@${[...seen][0]}`;
    assert.ok(spec in lock.specifiers, `deno.lock pins ${spec}`);
  }
});

/** Specifiers imported statically (no `import()`), outside comments. */
function staticImports(file: string): string[] {
  const text = Deno.readTextFileSync(`${root}${file}`)
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\s)(?:import|export)\s[^;]*?from\s*["']([^"']+)["']/gm)) {
    specs.push(m[1]!);
  }
  return specs;
}

Deno.test("The root mod.ts does not load the native QUIC addon: not in its static imports, not mapped once imported", async () => {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith(".")) visit(resolve(file, spec));
    }
  };
  visit("mod.ts");
  assert.ok(!seen.has("lib/transport/matrixai.ts"), "mod.ts reaches transport/matrixai.ts");
  // The proof: a process that imports mod.ts has mapped no native addon.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      `${root}deno.json`,
      `await import("${root}mod.ts");` +
      `const lines = Deno.readTextFileSync("/proc/self/maps").split("\\n");` +
      `console.log(lines.some((l) => l.endsWith(".node")) ? "addon mapped" : "no addon");`,
    ],
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(
    new TextDecoder().decode(out.stdout).trim(),
    "no addon",
    new TextDecoder().decode(out.stderr),
  );
});

/** The modules server.ts loads at start (static imports only), and its imports of npm or node: modules. */
type AgentGraph = { modules: string[]; foreign: string[] };
let agentGraph: Promise<AgentGraph> | undefined;

function agentStaticGraph(): Promise<AgentGraph> {
  return agentGraph ??= walkAgentGraph(); // one `deno info` for the tests that read it
}

async function walkAgentGraph(): Promise<AgentGraph> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", `${root}deno.json`, `${root}server.ts`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const graph = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: {
      specifier: string;
      dependencies?: { specifier: string; code?: { specifier: string }; isDynamic?: boolean }[];
    }[];
  };
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const foreign: string[] = [];
  const queue = [...graph.roots];
  while (queue.length > 0) {
    const at = queue.pop()!;
    if (seen.has(at)) continue;
    seen.add(at);
    for (const dep of bySpecifier.get(at)?.dependencies ?? []) {
      if (dep.isDynamic) continue;
      const target = dep.code?.specifier ?? dep.specifier;
      if (/^(npm|node):/.test(target) || /^(npm|node):/.test(dep.specifier)) {
        foreign.push(`${at.replace(`file://${root}`, "")} imports ${dep.specifier}`);
      } else queue.push(target);
    }
  }
  const modules = [...seen].filter((s) => s.startsWith(`file://${root}`))
    .map((s) => s.slice(`file://${root}`.length));
  return { modules, foreign };
}

Deno.test("server.ts loads no npm package and no node: module unless the matrixai stack is chosen", async () => {
  // Either would bring Deno's Node compatibility layer into every agent (docs/PERFORMANCE.md).
  const { modules, foreign } = await agentStaticGraph();
  assert.ok(modules.length > 20, `walked ${modules.length} modules`);
  assert.deepEqual(foreign, []);
});

Deno.test("server.ts's start-up modules call neither Date.toISOString nor localeCompare (each costs an idle agent memory)", async () => {
  // Each brings pages an idle agent otherwise never touches (docs/PERFORMANCE.md).
  const { modules } = await agentStaticGraph();
  const wrong: string[] = [];
  // iso_time.ts hands Date only the times outside years 0000-9999.
  for (const file of modules.filter((m) => m !== "lib/util/iso_time.ts")) {
    const code = Deno.readTextFileSync(`${root}${file}`)
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    for (const call of [".toISOString(", ".localeCompare(", "Intl."]) {
      if (code.includes(call)) wrong.push(`${file} uses ${call}`);
    }
  }
  assert.deepEqual(wrong, []);
});
