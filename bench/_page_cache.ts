/**
 * The Deno binary's page cache, held fixed for the footprint benchmark.
 *
 * Two thirds of an idle agent's RSS are mapped pages of the Deno binary, and
 * how many the kernel maps depends on how those pages came into the page
 * cache. Written or read in one go (an install, a copy, an image layer
 * unpacked), they sit in large folios and the agent maps about 5 MB more of
 * them than when they came in by its own page faults (after a reboot or an
 * eviction). Left alone, the figure moves with whatever touched the binary
 * last; the benchmark runs each agent on a private copy of the binary in a
 * known state instead (docs/PERFORMANCE.md, "Agent footprint").
 *
 * @module
 */

/**
 * How the copy's pages are in the page cache when the agent starts:
 * `faulted`, none (the agent's own faults bring them in, as after a reboot);
 * `written`, all of them, as the copy wrote them (as right after an install).
 */
export type BinaryCache = "faulted" | "written";

/** Every state, in the order the benchmark measures them. */
export const BINARY_CACHES: readonly BinaryCache[] = ["faulted", "written"];

/**
 * Copies the running Deno binary to `dir/deno-<state>` (replacing any earlier
 * copy, so its pages are new) and leaves its page cache in `state`.
 * Eviction uses `posix_fadvise(DONTNEED)` through coreutils' `dd`, which any
 * user may do for a file nobody maps; it is checked with util-linux's
 * `fincore`. Returns the copy's path.
 */
export async function denoCopy(dir: string, state: BinaryCache): Promise<string> {
  if (state === "faulted" && !evictable(dir)) {
    throw new Error(
      `${dir} is on ${filesystemOf(dir)}, whose pages cannot be evicted; set TMPDIR to a disk`,
    );
  }
  const path = `${dir}/deno-${state}`;
  await Deno.remove(path).catch(() => {});
  await Deno.copyFile(Deno.execPath(), path);
  // Dirty pages cannot be evicted: written back first.
  await writeBack(path);
  if (state === "faulted") {
    await run("dd", [`if=${path}`, "iflag=nocache", "count=0", "status=none"]);
  }
  const resident = await residentBytes(path);
  const size = (await Deno.stat(path)).size;
  // fincore counts whole pages: a written copy's last page is partly past the end.
  const expected = state === "faulted" ? resident === 0 : resident >= size;
  if (!expected) {
    throw new Error(
      `${path}: ${resident} of ${size} bytes in the page cache; expected ${
        state === "faulted" ? "none" : "all"
      } (${state})`,
    );
  }
  return path;
}

/** Filesystems that live in memory: nothing to evict. */
const MEMORY_FILESYSTEMS: ReadonlySet<string> = new Set(["tmpfs", "ramfs"]);

/** True when files under `path` (absolute) can leave the page cache: not a memory filesystem. */
export function evictable(path: string): boolean {
  return !MEMORY_FILESYSTEMS.has(filesystemOf(path));
}

/**
 * Writes `path`'s dirty pages back to disk, through a read-only handle (a
 * file open for writing cannot be run), so that they can be evicted.
 */
export async function writeBack(path: string): Promise<void> {
  using file = await Deno.open(path);
  await file.sync();
}

/** The type of the filesystem `path` (absolute) is on, from /proc/self/mountinfo. */
export function filesystemOf(path: string): string {
  let best = { point: "", type: "" };
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    // "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER"
    const [left, right] = line.split(" - ");
    const point = left?.split(" ")[4];
    const type = right?.split(" ")[0];
    if (point === undefined || type === undefined) continue;
    const under = point === "/" || path === point || path.startsWith(`${point}/`);
    if (under && point.length >= best.point.length) best = { point, type };
  }
  return best.type;
}

/** Bytes of `path` in the page cache, by `fincore`. */
export async function residentBytes(path: string): Promise<number> {
  const out = await run("fincore", ["--bytes", "--noheadings", "--output", "RES", path]);
  const bytes = Number(out.trim());
  if (!Number.isInteger(bytes)) throw new Error(`fincore ${path}: unexpected output ${out}`);
  return bytes;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${text(out.stderr)}`);
  return text(out.stdout);
}
