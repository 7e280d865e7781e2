/**
 * statvfs(3) of a path through libc, the agent's only foreign call: Deno has
 * no statfs of its own, and `node:fs` would load the Node compatibility layer
 * into every agent (docs/PERFORMANCE.md, agent footprint). Linux, 64-bit
 * glibc or musl, whose `struct statvfs` share one layout.
 *
 * @module
 */

/** Blocks of a file system, in its fragment size. */
export interface FsBlocks {
  blocks: number;
  bfree: number;
  bavail: number;
}

const LIBRARIES = ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"];
// struct statvfs on LP64: f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, … (8 bytes each), 112 in all.
const OFFSETS = { blocks: 16, bfree: 24, bavail: 32 } as const;
const SIZE = 112;
const _enc = new TextEncoder();

type Libc = { symbols: { statvfs: (path: Uint8Array, out: Uint8Array) => number } };
let libc: Libc | undefined;

function _libc(): Libc {
  if (libc) return libc;
  if (Deno.build.os !== "linux") {
    throw new Error(`statvfs is read on Linux only, not ${Deno.build.os}`);
  }
  const errors: string[] = [];
  for (const name of LIBRARIES) {
    try {
      libc = Deno.dlopen(name, {
        statvfs: { parameters: ["buffer", "buffer"], result: "i32" },
      }) as unknown as Libc;
      return libc;
    } catch (e) {
      errors.push(`${name}: ${(e as Error).message}`);
    }
  }
  throw new Error(`cannot load libc for statvfs (${errors.join("; ")})`);
}

/**
 * The block counts of the file system holding `path`.
 *
 * @throws {Error} when libc cannot be loaded (needs `--allow-ffi`) or the call fails
 *
 * @example
 * ```ts
 * import { statvfs } from "./statvfs.ts";
 * const { blocks, bavail } = statvfs("/"); // { blocks: 1000000, bfree: …, bavail: 600000 }
 * ```
 */
export function statvfs(path: string): FsBlocks {
  const out = new Uint8Array(SIZE);
  const rc = _libc().symbols.statvfs(_enc.encode(`${path}\0`), out);
  if (rc !== 0) throw new Error(`statvfs(${JSON.stringify(path)}) failed`);
  const view = new DataView(out.buffer);
  const read = (at: number) => Number(view.getBigUint64(at, true));
  return { blocks: read(OFFSETS.blocks), bfree: read(OFFSETS.bfree), bavail: read(OFFSETS.bavail) };
}
