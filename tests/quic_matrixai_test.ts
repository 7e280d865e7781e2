/**
 * Tests of the @matrixai/quic session wrapper on real QUIC over loopback: the
 * shared wrapper suite, plus what only this stack does (insecure mode, the
 * library's escaped errors). The raw library is used here only to play a
 * misbehaving peer.
 */

import assert from "node:assert/strict";
// deno-lint-ignore no-import-prefix -- the agent runs without deno.json (agentDenoFlags)
import quic from "npm:@matrixai/quic@1.2.12";
// deno-lint-ignore no-import-prefix -- the agent runs without deno.json (agentDenoFlags)
import loggerModule from "npm:@matrixai/logger@3.1.2";
import { createMatrixaiTransport, isTransportLibraryError } from "../lib/transport/matrixai.ts";
import { ALPN, STREAM_REFUSED_CODE } from "../lib/protocol/wire.ts";
import { TransportError } from "../lib/transport/transport.ts";
import { fds, sleep } from "./_helpers.ts";
import { certs, echoServer as sharedEchoServer, otherCa, wrapperSuite } from "./_wrapper_suite.ts";

wrapperSuite("matrixai", createMatrixaiTransport);

const opts = { sanitizeOps: false, sanitizeResources: false };

/** An echo server on a transport of its own. */
async function echoServer(certPem?: string, keyPem?: string) {
  const transport = createMatrixaiTransport();
  const server = await sharedEchoServer(transport, certPem, keyPem);
  return {
    ...server,
    async stop() {
      await server.stop();
      await transport.close();
    },
  };
}

/** Dials `n` sessions to an echo server; returns descriptors opened by the dials, and after close(). */
async function descriptorsOfDials(
  n: number,
  make: () => ReturnType<typeof createMatrixaiTransport>,
) {
  const server = await echoServer();
  const client = make();
  try {
    const before = fds();
    const channels = [];
    for (let i = 0; i < n; i++) {
      channels.push(
        await client.dial({
          host: "127.0.0.1",
          port: server.port,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        }),
      );
    }
    // Every session works: each echoes its own bytes.
    for (const [i, ch] of channels.entries()) {
      await ch.write(new Uint8Array([i]));
      assert.deepEqual([...(await ch.read()) ?? []], [i]);
    }
    const during = fds() - before;
    await Promise.all(channels.map((ch) => ch.close(0, "done", 0)));
    await client.close();
    return { during, after: fds() - before };
  } finally {
    await client.close();
    await server.stop();
  }
}

Deno.test({
  ...opts,
  name:
    "createMatrixaiTransport() dials every session from one shared UDP socket and close() releases it",
  async fn() {
    const { during, after } = await descriptorsOfDials(20, () => createMatrixaiTransport());
    assert.ok(during <= 2, `20 sessions opened ${during} descriptors; expected one socket`);
    assert.ok(after <= 0, `${after} descriptors left after close()`);
  },
});

Deno.test({
  ...opts,
  name:
    "createMatrixaiTransport({ shareClientSocket: false }) gives each session a socket of its own",
  async fn() {
    const { during, after } = await descriptorsOfDials(
      10,
      () => createMatrixaiTransport({ shareClientSocket: false }),
    );
    assert.ok(during >= 10, `10 sessions opened only ${during} descriptors`);
    assert.ok(after <= 0, `${after} descriptors left after close()`);
  },
});

Deno.test({
  ...opts,
  name: "dial() with insecure accepts a certificate from any CA",
  async fn() {
    const server = await echoServer(otherCa.serverCertPem, otherCa.serverKeyPem);
    const client = createMatrixaiTransport();
    try {
      const ch = await client.dial({
        host: "127.0.0.1",
        port: server.port,
        insecure: true,
        timeoutMs: 3000,
      });
      await ch.close(0, "done");
    } finally {
      await client.close();
      await server.stop();
    }
  },
});

Deno.test({
  ...opts,
  name: "The server resets a second bidirectional stream and keeps the control stream working",
  async fn() {
    const server = await echoServer();
    const { QUICClient } = quic;
    const client = await QUICClient.createQUICClient({
      host: "127.0.0.1",
      port: server.port,
      localHost: "127.0.0.1",
      crypto: {
        ops: {
          randomBytes: (b: ArrayBuffer) =>
            Promise.resolve(void crypto.getRandomValues(new Uint8Array(b))),
        },
      },
      config: { applicationProtos: [ALPN], verifyPeer: false },
      codeToReason: (_t: string, code: number) => ({ code }),
      reasonToCode: () => 0,
      logger: new (loggerModule as unknown as { default: new (n: string, l: number) => never })
        .default("raw", 4),
    });
    try {
      const control = client.connection.newStream();
      const cw = control.writable.getWriter();
      const cr = control.readable.getReader();
      await cw.write(new TextEncoder().encode("first"));
      assert.equal(new TextDecoder().decode((await cr.read()).value), "first");
      const extra = client.connection.newStream();
      const ew = extra.writable.getWriter();
      const er = extra.readable.getReader();
      await ew.write(new TextEncoder().encode("second")).catch(() => {});
      const outcome = await er.read().then((r) => ({ data: r }), (e) => ({ error: e }));
      assert.ok(
        "error" in outcome,
        `second stream should be reset, got ${JSON.stringify(outcome)}`,
      );
      assert.deepEqual(outcome.error, { code: STREAM_REFUSED_CODE });
      await cw.write(new TextEncoder().encode("still here"));
      assert.equal(new TextDecoder().decode((await cr.read()).value), "still here");
      await cw.close().catch(() => {});
      cr.cancel().catch(() => {});
      ew.abort().catch(() => {});
    } finally {
      await client.destroy({ force: true }).catch(() => {});
      await sleep(50);
      await server.stop();
    }
  },
});

Deno.test("isTransportLibraryError() recognises the library's escaped errors and nothing else", () => {
  assert.equal(isTransportLibraryError(null), true);
  assert.equal(isTransportLibraryError(new Error("read 0")), true);
  const named = new Error("x");
  named.name = "ErrorQUICClientInternal";
  assert.equal(isTransportLibraryError(named), true);
  assert.equal(isTransportLibraryError(new TransportError("closed", "x")), true);
  assert.equal(
    isTransportLibraryError(new TypeError("cannot read properties of undefined")),
    false,
  );
  assert.equal(isTransportLibraryError(new Error("boom")), false);
});
