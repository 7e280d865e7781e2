/**
 * The gRPC side of the benchmark: grpc-js with the standard grpc.health.v1
 * service (grpc-health-check), as users would deploy it. Kept apart from
 * `../_peer.ts`, with a configuration of its own, because grpc-js brings Node's type definitions, which clash with
 * the QUIC library's when type-checked together.
 *
 *   serve                            a server on 127.0.0.1, replies { port }
 *   client --port P --n N --warmup W  N timed Check calls over one channel
 *
 * @module
 */

import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation, service as healthService } from "grpc-health-check";
import { reply, timeCalls } from "../_measure.ts";

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    port: { type: "string" },
    n: { type: "string", default: "3000" },
    warmup: { type: "string", default: "500" },
  },
});

if (positionals[0] === "serve") {
  const server = new grpc.Server();
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (e, p) => (e ? reject(e) : resolve(p)),
    )
  );
  reply({ port });
  await new Promise(() => {});
} else if (positionals[0] === "client") {
  const Client = grpc.makeGenericClientConstructor(healthService as never, "Health");
  const client = new Client(
    `127.0.0.1:${values.port}`,
    grpc.credentials.createInsecure(),
  ) as unknown as {
    Check(req: unknown, cb: (e: Error | null, r: { status?: unknown }) => void): void;
    close(): void;
  };
  const once = () =>
    new Promise((resolve, reject) =>
      client.Check({ service: "" }, (e, r) => {
        if (e) reject(e);
        else if (r.status !== "SERVING") reject(new Error(`status ${String(r.status)}`));
        else resolve(r);
      })
    );
  reply(await timeCalls(once, Number(values.n), Number(values.warmup)));
  client.close();
  Deno.exit(0);
} else {
  throw new Error(`unknown role ${positionals[0]}`);
}
