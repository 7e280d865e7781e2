/**
 * Text a peer sent, made safe to store and show: on one line, without
 * control characters, and short.
 *
 * @module
 */

/**
 * Text on one line of a terminal: control characters (newlines, escape
 * sequences) become spaces, so a peer's text can neither forge a log or
 * table line nor move the cursor.
 *
 * @example
 * ```ts
 * import { oneLine } from "./text.ts";
 * oneLine("bad\nINFO server UP \x1b[32m"); // "bad INFO server UP  [32m"
 * ```
 */
export function oneLine(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ");
}

/**
 * `text` cut to at most `max` characters (with an ellipsis when cut).
 *
 * @example
 * ```ts
 * import { clip } from "./text.ts";
 * clip("abcdef", 4); // "abc…"
 * ```
 */
export function clip(text: string, max: number): string {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/**
 * The first `max` items of a list joined for a log line, and how many more:
 * a servers file may list thousands. Undefined for an empty list.
 *
 * @example
 * ```ts
 * import { fewOf } from "./text.ts";
 * fewOf(["a", "b", "c"], 2); // "a,b (+1 more)"
 * fewOf([]); // undefined
 * ```
 */
export function fewOf(list: readonly string[], max = 10): string | undefined {
  if (list.length === 0) return undefined;
  const shown = list.slice(0, max).join(",");
  return list.length > max ? `${shown} (+${list.length - max} more)` : shown;
}
