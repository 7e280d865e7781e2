/**
 * One side of a benchmark, run as its own process so that its CPU time can be
 * read on its own. Replies go to stdout as JSON lines (see `_measure.ts`).
 *
 *   serve echo  --quic S --certs DIR --req N --resp M   a transport-only peer: M bytes back per N in
 *   serve http  --resp M                                Deno.serve answering GET /healthz
 *   client qhcp|echo|http --port P --n N --warmup W [--quic S --certs DIR --req N --resp M]
 *   client setup --quic S --certs DIR --port P --n N    dial to first HEALTH_RESPONSE, N times
 *
 * The gRPC peer is `grpc/peer.ts`: grpc-js brings Node's type definitions,
 * which clash with the QUIC library's when type-checked together.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createHmacSigner, readSecretFile, type TokenSigner } from "../lib/security/jwt.ts";
import { CodecError, encodeMessage } from "../lib/protocol/codec.ts";
import { defaultFiles } from "../lib/security/files.ts";
import { type LbAction, LbSession } from "../lib/protocol/lb_session.ts";
import { createQuicTransport, type QuicStack } from "../lib/transport/stacks.ts";
import type { Channel, Transport } from "../lib/transport/transport.ts";
import { _readMessages } from "../lib/transport/read_messages.ts";
import { reply, summarize, timeCalls } from "./_measure.ts";

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    quic: { type: "string", default: "matrixai" },
    certs: { type: "string" },
    port: { type: "string" },
    n: { type: "string", default: "3000" },
    warmup: { type: "string", default: "500" },
    req: { type: "string", default: "40" },
    resp: { type: "string", default: "200" },
  },
});
const [role, kind] = positionals;
const stack = values.quic as QuicStack;
const port = Number(values.port ?? 0);
const n = Number(values.n);
const warmup = Number(values.warmup);
const reqBytes = Number(values.req);
const respBytes = Number(values.resp);

if (role === "serve") await serve(kind ?? "");
else if (role === "client") await client(kind ?? "");
else throw new Error(`unknown role ${role}`);

// --- servers ------------------------------------------------------------------

async function serve(what: string): Promise<void> {
  if (what === "echo") {
    const { transport } = await createQuicTransport(stack);
    const files = defaultFiles(values.certs!);
    const answer = new Uint8Array(respBytes).fill(0x61);
    const listener = await transport.listen({
      host: "127.0.0.1",
      port: 0,
      certPem: await Deno.readTextFile(files.serverCert),
      keyPem: await Deno.readTextFile(files.serverKey),
    }, (channel) => {
      void (async () => {
        let pending = 0;
        for (let d = await channel.read(); d; d = await channel.read()) {
          pending += d.length;
          while (pending >= reqBytes) {
            pending -= reqBytes;
            await channel.write(answer).catch(() => {});
          }
        }
      })();
    });
    reply({ port: listener.port });
  } else if (what === "http") {
    const body = JSON.stringify({ status: "UP", pad: "x".repeat(Math.max(0, respBytes - 30)) });
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) =>
        new URL(req.url).pathname === "/healthz"
          ? new Response(body, { headers: { "content-type": "application/json" } })
          : new Response("not found", { status: 404 }),
    );
    reply({ port: server.addr.port });
  } else {
    throw new Error(`unknown server ${what}`);
  }
  // Serve until killed.
  await new Promise(() => {});
}

// --- clients ------------------------------------------------------------------

async function client(what: string): Promise<void> {
  if (what === "setup") return await setupTimes();
  let once: () => Promise<unknown>;
  let close = async () => {};
  let frames: { request: number; response: number } | undefined;
  if (what === "qhcp") {
    const session = await openQhcp(await transportFor(), await signer());
    once = session.check;
    close = session.close;
    frames = session.frames;
  } else if (what === "echo") {
    const channel = await (await transportFor()).dial(await dialOptions());
    const request = new Uint8Array(reqBytes).fill(0x62);
    once = async () => {
      await channel.write(request);
      let got = 0;
      while (got < respBytes) {
        const d = await channel.read();
        if (!d) throw new Error("echo peer closed");
        got += d.length;
      }
    };
    close = () => channel.close(0, "bench over");
  } else if (what === "http") {
    const url = `http://127.0.0.1:${port}/healthz`;
    once = async () => {
      const res = await fetch(url);
      await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    };
  } else {
    throw new Error(`unknown client ${what}`);
  }
  reply({ ...(await timeCalls(once, n, warmup)), ...(frames ? { frames } : {}) });
  await close();
  Deno.exit(0);
}

async function transportFor(): Promise<Transport> {
  return (await createQuicTransport(stack)).transport;
}

async function dialOptions() {
  const files = defaultFiles(values.certs!);
  return {
    host: "127.0.0.1",
    port,
    caPem: await Deno.readTextFile(files.caCert),
    timeoutMs: 5000,
  };
}

async function signer(): Promise<TokenSigner> {
  return createHmacSigner(await readSecretFile(defaultFiles(values.certs!).jwtSecret), {
    lbId: "bench",
  });
}

/** Dial, HELLO/ACK, then each `check()` is one HEALTH_REQUEST/HEALTH_RESPONSE through the LB's state machine. */
async function openQhcp(transport: Transport, sign: TokenSigner) {
  const machine = new LbSession({ lbId: sign.lbId, timeoutMs: 5000 });
  machine.connecting(Date.now());
  const channel: Channel = await transport.dial(await dialOptions());
  let waiter: ((actions: LbAction[]) => void) | undefined;
  const frames = { request: 0, response: 0 };
  const perform = async (actions: LbAction[]) => {
    for (const a of actions) {
      if (a.kind === "send") {
        const bytes = encodeMessage(a.message);
        if (a.message.type === "HEALTH_REQUEST") frames.request = bytes.length;
        await channel.write(bytes);
      } else if (a.kind === "close") await channel.close(a.code, a.reason);
    }
  };
  void _readMessages(channel, () => true, async (input) => {
    const now = Date.now();
    const actions = input instanceof CodecError
      ? machine.receiveInvalid(input, now)
      : machine.receive(input, now);
    await perform(actions);
    const w = waiter;
    waiter = undefined;
    w?.(actions);
  });
  const next = () => new Promise<LbAction[]>((resolve) => (waiter = resolve));
  const token = await sign.sign(Date.now());
  let answer = next();
  await perform(machine.connected(token.token, Date.now()));
  const ready = await answer;
  if (!ready.some((a) => a.kind === "ready")) throw new Error(`no ACK: ${JSON.stringify(ready)}`);
  return {
    check: async () => {
      answer = next();
      await perform(machine.check(Date.now()));
      const actions = await answer;
      const check = actions.find((a) => a.kind === "check");
      if (!check || !check.ok) throw new Error(`check failed: ${JSON.stringify(actions)}`);
      // The same message re-encoded: the size of the frame the server sent (once: not timed work).
      if (frames.response === 0) frames.response = encodeMessage(check.response).length;
    },
    frames,
    close: async () => {
      await perform(machine.abandon(0, "bench over"));
    },
  };
}

/** Session setup: dial to the first HEALTH_RESPONSE, on a fresh session each time. */
async function setupTimes(): Promise<void> {
  const transport = await transportFor();
  const sign = await signer();
  const times: number[] = [];
  for (let i = 0; i < n + 5; i++) {
    const t0 = performance.now();
    const session = await openQhcp(transport, sign);
    await session.check();
    const ms = performance.now() - t0;
    if (i >= 5) times.push(ms); // the first few warm up the JIT
    await session.close();
  }
  reply({ phase: "done", setup: summarize(times) });
  await transport.close();
  Deno.exit(0);
}
