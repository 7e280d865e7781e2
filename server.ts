#!/usr/bin/env -S deno run -A
/**
 * QHCP server agent. Run `deno run -A server.ts --help`.
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
import { type RunningAgent, startAgent } from "./lib/cli/agent_main.ts";
import { parseServerArgs, serverUsage } from "./lib/cli/server_flags.ts";

const PROGRAM = "qhcp-server";

/** Runs the agent until SIGINT, SIGTERM or a hang-up; returns the exit code. */
export async function runServer(args: readonly string[]): Promise<number> {
  const config = parseConfig(PROGRAM, args, parseServerArgs, serverUsage);
  if (typeof config === "number") return config;
  // Signals first: one during start-up still ends the agent in order. A
  // hang-up (the terminal closed) stops it too; under nohup it stays ignored.
  const stop = stopSignals();
  const removeHangup = onHangup(false, {
    reload: () => {},
    stop: () => stop.trigger("SIGHUP"),
  });
  let running: RunningAgent;
  try {
    running = await startAgent(config);
  } catch (e) {
    removeHangup();
    return setupFailed(PROGRAM, e);
  }
  const onUsr1 = () => running.toggleDrain();
  Deno.addSignalListener("SIGUSR1", onUsr1);
  const signal = await stop.stopped;
  stop.escalate();
  await running.stop(signal);
  Deno.removeSignalListener("SIGUSR1", onUsr1);
  removeHangup();
  return 0;
}

if (import.meta.main) await exitAfterOutput(await runServer(Deno.args));
