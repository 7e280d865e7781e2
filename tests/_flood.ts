/**
 * A separate process that opens many QUIC connections to a server and never
 * sends HELLO, for the connection-flood test: `deno run -A tests/_flood.ts
 * PORT COUNT`. It prints `done opened=N refused=N` once every dial has
 * settled and holds the connections until its stdin closes.
 *
 * @module
 */

import { createMatrixaiTransport } from "../lib/transport/matrixai.ts";
import type { Channel } from "../lib/transport/transport.ts";

const port = Number(Deno.args[0]);
const count = Number(Deno.args[1] ?? 500);
const batch = 50;
const transport = createMatrixaiTransport();
const open: Channel[] = [];
let refused = 0;
let failed = 0;
for (let i = 0; i < count; i += batch) {
  await Promise.all(Array.from({ length: Math.min(batch, count - i) }, async () => {
    try {
      const ch = await transport.dial({
        host: "127.0.0.1",
        port,
        insecure: true,
        timeoutMs: 10_000,
      });
      open.push(ch);
      void ch.closed.then((info) => {
        if (info.code === 0x13) refused++;
      });
    } catch {
      failed++;
    }
  }));
}
// Let refusals arrive before reporting.
await new Promise((r) => setTimeout(r, 300));
console.log(`done opened=${open.length} refused=${refused} failed=${failed}`);
// Hold until the parent closes stdin.
for await (const _ of Deno.stdin.readable) { /* wait */ }
await Promise.all(open.map((ch) => ch.abort(0, "flood over")));
await transport.close();
Deno.exit(0);
