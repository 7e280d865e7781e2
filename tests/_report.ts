/**
 * Figures observed by the reliability tests. When QHCP_REPORT names a file,
 * each figure is appended to it as one JSON line; `deno task reliability`
 * turns them into docs/RELIABILITY.md. Without it, recording does nothing.
 *
 * @module
 */

/** One observed figure. */
export interface Figure {
  section: string;
  name: string;
  value: number | string;
  unit: string;
  /** The bound the test asserted, in words, if any. */
  bound?: string;
}

/** Records a figure (no-op unless QHCP_REPORT is set). */
export function record(
  section: string,
  name: string,
  value: number | string,
  unit: string,
  bound?: string,
): void {
  let path: string | undefined;
  try {
    path = Deno.env.get("QHCP_REPORT");
  } catch {
    return;
  }
  if (!path) return;
  const figure: Figure = {
    section,
    name,
    value: typeof value === "number" ? Math.round(value * 1000) / 1000 : value,
    unit,
    ...(bound === undefined ? {} : { bound }),
  };
  Deno.writeTextFileSync(path, JSON.stringify(figure) + "\n", { append: true });
}
