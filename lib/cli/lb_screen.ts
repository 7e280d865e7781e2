/**
 * The LB's terminal: its status table (off, plain lines, or redrawn in place
 * on a terminal) and its logger, whose lines go under a redrawn table.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { servicesOf } from "../lb/services.ts";
import { Redrawer, StatusScreen, summarize } from "../ops/status_table.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { stdoutStream } from "../util/log_stream.ts";
import type { LbConfig } from "./lb_flags.ts";

/** What {@linkcode openLbScreen} needs beyond the flags. */
export interface LbScreenOptions {
  /** Log lines go here instead of stderr (or the table's screen). */
  logSink: ((line: string) => void) | undefined;
  /** What the table shows; nothing is drawn while it is undefined. */
  directory: () => ServerDirectory | undefined;
  /** The monitor's check interval, once there is a monitor. */
  checkIntervalMs: () => number | undefined;
}

/** The LB's status table and logger. */
export interface LbScreen {
  /** The LB's logger. */
  readonly log: Logger;
  /** Redraws the table within a moment (a verdict changed). */
  changed(): void;
  /** Starts drawing the table. */
  start(): void;
  /** Stops drawing the table. */
  stop(): void;
  /** Draws the table once more on a redrawn terminal (its last state, at stop). */
  drawLast(): void;
}

/** Opens the LB's status table (as `--table` says) and creates its logger. */
export function openLbScreen(config: LbConfig, options: LbScreenOptions): LbScreen {
  const tableMode = config.table === "off"
    ? "off"
    : config.table === "plain" || !Deno.stdout.isTerminal()
    ? "plain"
    : "tty";
  const screen = tableMode === "off" ? undefined : new StatusScreen({
    mode: tableMode,
    write: (text) => void stdoutStream.write(text),
    columns: () => _columns(),
  });
  const drawTable = () => {
    const directory = options.directory();
    if (!directory) return;
    const rows = directory.status();
    const services = servicesOf(rows).map((s) => `${s.name} ${s.healthy}/${s.total}`).join(", ");
    screen?.draw(
      rows,
      `QHCP LB ${config.lbId}  ${summarize(rows)}${services ? `  services: ${services}` : ""}  ${
        new Date().toISOString()
      }`,
    );
  };
  // Drawn at once, within a moment of every verdict change (and, on a
  // terminal, of every log line), and every check interval otherwise.
  const table = screen && new Redrawer({
    draw: drawTable,
    minGapMs: tableMode === "tty" ? 100 : 250,
    intervalMs: () => Math.max(options.checkIntervalMs() ?? 1000, 1000),
  });
  // On a redrawn terminal, log lines go under the table instead of scrolling it away.
  const sink = options.logSink ?? (tableMode === "tty"
    ? (line: string) => {
      screen!.note(line);
      table?.changed();
    }
    : undefined);
  const log = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    ...(sink ? { sink } : {}),
  });
  return {
    log,
    changed: () => table?.changed(),
    start: () => table?.start(),
    stop: () => table?.stop(),
    drawLast: () => {
      if (tableMode === "tty") drawTable();
    },
  };
}

function _columns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 120;
  }
}
