/**
 * Fault relays for the soak benchmark: one lossy, jittery UDP relay
 * (tests/_udp_relay.ts) in front of each given port, in a process of their
 * own so that the LB's stalls do not stall the network.
 *
 *   _relays.ts --ports P1,P2,... --drop PERCENT --jitter MS   replies { ports, } then { stats } on SIGTERM
 *
 * @module
 */

import { parseArgs } from "node:util";
import { UdpRelay } from "../tests/_udp_relay.ts";
import { reply } from "./_measure.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    ports: { type: "string", default: "" },
    drop: { type: "string", default: "0" },
    jitter: { type: "string", default: "0" },
  },
});
const relays: UdpRelay[] = [];
for (const [i, port] of values.ports.split(",").filter(Boolean).entries()) {
  const relay = await UdpRelay.start({ host: "127.0.0.1", port: Number(port) }, { seed: 101 + i });
  relay.set({ dropPercent: Number(values.drop), jitterMs: Number(values.jitter) });
  relays.push(relay);
}
reply({ ports: relays.map((r) => r.port) });

const stop = async () => {
  const stats = relays.reduce(
    (s, r) => ({
      forwarded: s.forwarded + r.stats.forwarded,
      dropped: s.dropped + r.stats.dropped,
    }),
    { forwarded: 0, dropped: 0 },
  );
  reply({ stats });
  await Promise.all(relays.map((r) => r.close()));
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", () => void stop());
await new Promise(() => {});
