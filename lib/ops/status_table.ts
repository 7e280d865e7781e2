/**
 * The LB's status table: a pure renderer, and a screen that redraws it in
 * place on a terminal or prints it as plain lines otherwise.
 *
 * @module
 */

import type { WatchView } from "../lb/watch.ts";
import { oneLine } from "../util/text.ts";

/** Options of {@linkcode renderStatusTable}. */
export interface RenderOptions {
  /** ANSI colours for states. Default false. */
  color?: boolean;
  /** Terminal width; long errors are cut to fit. Default 120. */
  width?: number;
  /** Heading line above the table. */
  title?: string;
}

const _COLUMNS = ["SERVER", "STATE", "CPU %", "MEM %", "RTT ms", "FAILS", "LAST ERROR"] as const;
const _RIGHT = new Set(["CPU %", "MEM %", "RTT ms", "FAILS"]);
const _COLOR: Record<string, string> = { UP: "\x1b[32m", DOWN: "\x1b[31m", UNKNOWN: "\x1b[33m" };

/**
 * Renders one row per server.
 *
 * @example
 * ```ts
 * import { renderStatusTable } from "./status_table.ts";
 * renderStatusTable([]); // header line only
 * ```
 */
export function renderStatusTable(rows: readonly WatchView[], options: RenderOptions = {}): string {
  const width = options.width ?? 120;
  // In fleet mode, who checks each server goes before the last error.
  const fleet = rows.some((r) => r.fleet);
  const columns: readonly string[] = fleet
    ? [..._COLUMNS.slice(0, -1), "CHECKED BY", _COLUMNS.at(-1)!]
    : _COLUMNS;
  const cells = rows.map((r) => {
    // Figures of a server that is not UP are stale: show none.
    const live = r.state === "UP";
    return [
      oneLine(r.address),
      r.state === "UP" && r.status === "DRAINING" ? "UP*" : r.state,
      live ? _num(r.metrics?.cpu_percent, 1) : "-",
      live ? _num(r.metrics?.mem_percent, 1) : "-",
      live ? _num(r.last_rtt_ms ?? undefined, 2) : "-",
      String(r.consecutive_failures),
      ...(fleet ? [oneLine(r.fleet?.checked_by.join(",") || "-")] : []),
      r.last_error === null ? "-" : oneLine(r.last_error),
    ];
  });
  const widths = columns.map((h, i) =>
    i === columns.length - 1 ? 0 : Math.max(h.length, ...cells.map((c) => c[i]!.length))
  );
  const line = (values: readonly string[], colorState?: string) => {
    const parts = values.map((v, i) => {
      const col = columns[i]!;
      if (i === values.length - 1) return v;
      const padded = _RIGHT.has(col) ? v.padStart(widths[i]!) : v.padEnd(widths[i]!);
      if (i === 1 && colorState && options.color) {
        return `${_COLOR[colorState] ?? ""}${padded}\x1b[0m`;
      }
      return padded;
    });
    const used = widths.slice(0, -1).reduce((a, b) => a + b + 2, 0);
    const last = parts[parts.length - 1]!;
    const room = Math.max(10, width - used);
    parts[parts.length - 1] = last.length > room ? last.slice(0, room - 1) + "…" : last;
    return parts.join("  ");
  };
  const out: string[] = [];
  if (options.title) out.push(options.title);
  out.push(line(columns));
  cells.forEach((c, i) => out.push(line(c, rows[i]!.state)));
  return out.join("\n");
}

/** One-line summary: "3 servers: 2 UP, 1 DOWN, 0 UNKNOWN". */
export function summarize(rows: readonly WatchView[]): string {
  const count = (s: string) => rows.filter((r) => r.state === s).length;
  return `${rows.length} server${rows.length === 1 ? "" : "s"}: ${count("UP")} UP, ${
    count("DOWN")
  } DOWN, ${count("UNKNOWN")} UNKNOWN`;
}

/** Options of {@linkcode Redrawer}. */
export interface RedrawerOptions {
  /** Draws the table. */
  draw: () => void;
  /** Fewest ms between two draws after a change. */
  minGapMs: number;
  /** Redraw at least this often (ms) when nothing changes; read at each draw. */
  intervalMs: () => number;
}

/**
 * When the status table is drawn: at once on `start()`, soon after each
 * `changed()` (at most once per `minGapMs`), and every `intervalMs()`
 * otherwise, so that a verdict change reaches the screen in well under a
 * second whatever the check interval.
 */
export class Redrawer {
  readonly #options: RedrawerOptions;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #last = 0;
  #stopped = true;

  constructor(options: RedrawerOptions) {
    this.#options = options;
  }

  /** Draws now and keeps drawing. */
  start(): void {
    this.#stopped = false;
    this.#drawNow();
  }

  /** Something the table shows changed: draw within `minGapMs`. */
  changed(): void {
    if (this.#stopped) return;
    const due = this.#last + this.#options.minGapMs;
    this.#arm(Math.max(0, due - Date.now()));
  }

  /** Stops drawing. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #drawNow(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    this.#last = Date.now();
    this.#options.draw();
    this.#arm(this.#options.intervalMs());
  }

  /** Draws in `ms` unless a draw is already due sooner. */
  #arm(ms: number): void {
    const at = Date.now() + ms;
    if (this.#timer !== undefined && this.#armedAt <= at) return;
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(() => this.#drawNow(), ms);
  }

  #armedAt = 0;
}

/** Options of {@linkcode StatusScreen}. */
export interface StatusScreenOptions {
  /** "tty": redraw in place with recent log lines below; "plain": print the table each time. */
  mode: "tty" | "plain";
  /** Writes text to the terminal. */
  write: (text: string) => void;
  /** Terminal width. */
  columns?: () => number;
  /** Log lines kept under the table in tty mode. Default 10. */
  keepLines?: number;
}

/** Draws the table on each `draw()`; in tty mode also shows recent log lines. */
export class StatusScreen {
  readonly #options: StatusScreenOptions;
  readonly #recent: string[] = [];

  constructor(options: StatusScreenOptions) {
    this.#options = options;
  }

  /** Keeps a log line to show under the table (tty mode). */
  note(line: string): void {
    this.#recent.push(line);
    const keep = this.#options.keepLines ?? 10;
    if (this.#recent.length > keep) this.#recent.splice(0, this.#recent.length - keep);
  }

  /** Draws the table. */
  draw(rows: readonly WatchView[], title: string): void {
    const width = this.#options.columns?.() ?? 120;
    if (this.#options.mode === "plain") {
      this.#options.write(renderStatusTable(rows, { width, title }) + "\n");
      return;
    }
    const table = renderStatusTable(rows, { width, title, color: true });
    const recent = this.#recent.map((l) => (l.length > width ? l.slice(0, width - 1) + "…" : l));
    // Home the cursor and clear the screen, then draw: no scrolling history of old tables.
    this.#options.write(
      "\x1b[H\x1b[2J" + table + "\n\nRecent events:\n" + (recent.join("\n") || "(none)") + "\n",
    );
  }
}

function _num(v: number | undefined, digits: number): string {
  return v === undefined ? "-" : v.toFixed(digits);
}
