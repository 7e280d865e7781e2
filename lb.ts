#!/usr/bin/env -S deno run -A
/**
 * QHCP load balancer monitor. Run `deno run -A lb.ts --help`.
 *
 * @module
 */

import {
  exitAfterOutput,
  onHangup,
  parseConfig,
  setupFailed,
  stopSignals,
} from "./lib/cli/entry.ts";
import { lbUsage, parseLbArgs } from "./lib/cli/lb_flags.ts";
import { type RunningLb, startLb } from "./lib/cli/lb_main.ts";

const PROGRAM = "qhcp-lb";

/** Runs the LB until SIGINT, SIGTERM or a hang-up; returns the exit code. */
export async function runLb(args: readonly string[]): Promise<number> {
  const config = parseConfig(PROGRAM, args, parseLbArgs, lbUsage);
  if (typeof config === "number") return config;
  // Signals first: one during start-up still ends the LB in order. What
  // SIGHUP means is known from the flags (see onHangup).
  const stop = stopSignals();
  let running: RunningLb | undefined;
  // A reload asked for while the LB starts (its HTTP port may already be
  // open) is done once it has started, not dropped.
  let reloadAsked = false;
  const removeHangup = onHangup(
    config.serversFile !== undefined || config.dnsNames.length > 0,
    {
      reload: () => {
        if (running) running.reload();
        else reloadAsked = true;
      },
      stop: () => stop.trigger("SIGHUP"),
    },
  );
  try {
    running = await startLb(config);
  } catch (e) {
    removeHangup();
    return setupFailed(PROGRAM, e);
  }
  if (reloadAsked) running.reload();
  const signal = await stop.stopped;
  stop.escalate(); // a second signal ends the process at once
  await running.stop(signal);
  removeHangup();
  return 0;
}

if (import.meta.main) await exitAfterOutput(await runLb(Deno.args));
