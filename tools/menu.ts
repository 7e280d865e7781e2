#!/usr/bin/env -S deno run -A
/**
 * `./run_quic.sh` with no argument: the interactive menu (see `lib/cli/menu.ts`).
 * With `--choice-file PATH` (as the launcher runs it) the chosen program and
 * its arguments are written there, NUL-separated, and the launcher then runs
 * it as `run_quic.sh lb|server` would: the agent with its own light flags,
 * in place of the launcher, so that signals reach it directly. Without it,
 * the chosen program runs in this same process.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { runMenu } from "../lib/cli/menu.ts";

const { values } = parseArgs({ args: Deno.args, options: { "choice-file": { type: "string" } } });

const encoder = new TextEncoder();
const write = (out: { writeSync(p: Uint8Array): number }, text: string) => {
  const bytes = encoder.encode(text);
  for (let off = 0; off < bytes.length;) off += out.writeSync(bytes.subarray(off));
};

/** Lines of standard input, one at a time; null at its end. */
function lineReader(): () => Promise<string | null> {
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let ended = false;
  return async () => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl).replace(/\r$/, "");
        buffered = buffered.slice(nl + 1);
        return line;
      }
      if (ended) {
        if (buffered === "") return null;
        const last = buffered;
        buffered = "";
        return last;
      }
      const r = await reader.read();
      if (r.done) ended = true;
      else buffered += r.value;
    }
  };
}

const chosen = await runMenu({
  readLine: lineReader(),
  ask: (text) => write(Deno.stderr, text),
  show: (text) => write(Deno.stdout, text),
});
if (chosen === null) Deno.exit(0);
if (values["choice-file"] !== undefined) {
  await Deno.writeTextFile(values["choice-file"], [chosen.script, ...chosen.args].join("\0"));
  Deno.exit(0);
}
const code = chosen.script === "lb.ts"
  ? await (await import("../lb.ts")).runLb(chosen.args)
  : await (await import("../server.ts")).runServer(chosen.args);
Deno.exit(code);
