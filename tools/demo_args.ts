/**
 * The demos' own flags, taken out of the arguments before the rest go to an
 * LB: `--first-port N` (and `--first-port=N`).
 *
 * @module
 */

/**
 * Removes `--name N` or `--name=N` from `args` and returns N as a port that
 * leaves room for `span` ports from it, or `fallback` when absent. Exits 2
 * with a line naming the flag when N is not such a port.
 *
 * @example
 * ```ts
 * import { takePort } from "./demo_args.ts";
 * const args = ["--first-port", "5000", "--table", "off"];
 * takePort(args, "first-port", 4243, 3); // 5000; args is now ["--table", "off"]
 * ```
 */
export function takePort(args: string[], name: string, fallback: number, span: number): number {
  const flag = `--${name}`;
  const i = args.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
  if (i < 0) return fallback;
  const eq = args[i]!.indexOf("=");
  const value = eq >= 0 ? args[i]!.slice(eq + 1) : args[i + 1];
  args.splice(i, eq >= 0 ? 1 : 2);
  const port = Number(value);
  const max = 65536 - span;
  if (!Number.isInteger(port) || port < 1 || port > max) {
    console.error(`demo: ${flag}: expected a port in 1..${max}, got ${JSON.stringify(value)}`);
    Deno.exit(2);
  }
  return port;
}
