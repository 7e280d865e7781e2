/**
 * Many QHCP server endpoints in one process, for the scale benchmark: each is
 * a full {@linkcode Agent} with a listener (a UDP socket) of its own on
 * 127.0.0.1, verifying the LB's HS256 token. Metrics are fixed values, so
 * that the CPU time measured is the protocol's, not the probes'.
 *
 *   _endpoints.ts --count K --quic S --certs DIR   replies { ports: [...] } and serves until killed
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Agent } from "../lib/agent/agent.ts";
import { createHmacVerifier, readSecretFile } from "../lib/security/jwt.ts";
import { defaultFiles } from "../lib/security/files.ts";
import type { MetricsSource } from "../lib/agent/metrics.ts";
import { createQuicTransport, type QuicStack } from "../lib/transport/stacks.ts";
import { reply } from "./_measure.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    count: { type: "string", default: "100" },
    quic: { type: "string", default: "matrixai" },
    certs: { type: "string" },
  },
});

const files = defaultFiles(values.certs!);
const { transport } = await createQuicTransport(values.quic as QuicStack);
const verifier = createHmacVerifier(await readSecretFile(files.jwtSecret));
const certPem = await Deno.readTextFile(files.serverCert);
const keyPem = await Deno.readTextFile(files.serverKey);
const metrics: MetricsSource = {
  names: ["cpu_percent", "mem_percent"],
  snapshot: () => ({ cpu_percent: 10, mem_percent: 20 }),
};

const agents: Agent[] = [];
for (let i = 0; i < Number(values.count); i++) {
  agents.push(
    await Agent.start({
      transport,
      host: "127.0.0.1",
      port: 0,
      certPem,
      keyPem,
      serverId: `scale-${Deno.pid}-${i}`,
      verifier,
      metrics,
    }),
  );
}
reply({ ports: agents.map((a) => a.port) });

const stop = async () => {
  await Promise.all(agents.map((a) => a.shutdown("bench over", 200)));
  Deno.exit(0);
};
Deno.addSignalListener("SIGTERM", () => void stop());
Deno.addSignalListener("SIGINT", () => void stop());
await new Promise(() => {});
