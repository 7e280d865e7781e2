/**
 * Tests of the session wrapper over Deno's built-in QUIC on real QUIC over
 * loopback: the shared wrapper suite, plus what only this stack does. Raw
 * `Deno.connectQuic` plays a misbehaving peer.
 */

import assert from "node:assert/strict";
import { ALPN } from "../lib/protocol/wire.ts";
import {
  createNativeTransport,
  isNativeQuicError,
  nativeQuicAvailable,
} from "../lib/transport/native.ts";
import { TransportError } from "../lib/transport/transport.ts";
import { waitFor } from "./_helpers.ts";
import { certs, echoServer, expectDialError, otherCa, wrapperSuite } from "./_wrapper_suite.ts";

wrapperSuite("native", createNativeTransport);

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test("nativeQuicAvailable() is true under this project's deno.json (unstable net)", () => {
  assert.equal(nativeQuicAvailable(), true);
});

Deno.test({
  ...opts,
  name: "dial() with insecure is refused: the native stack always verifies certificates",
  async fn() {
    const server = createNativeTransport();
    const client = createNativeTransport();
    const echo = await echoServer(server, otherCa.serverCertPem, otherCa.serverKeyPem);
    try {
      await expectDialError(
        client.dial({ host: "127.0.0.1", port: echo.port, insecure: true, timeoutMs: 1000 }),
        "certificate",
        /without certificate verification.*always verifies/,
      );
      assert.equal(echo.accepted.length, 0);
    } finally {
      await client.close();
      await echo.stop();
      await server.close();
    }
  },
});

Deno.test({
  ...opts,
  name:
    "The server stops a second bidirectional stream unread and keeps the control stream working",
  async fn() {
    // Deno's QUIC API cannot send RESET_STREAM with a chosen code: the server
    // drops the stream, which quinn turns into STOP_SENDING and a FIN.
    const server = createNativeTransport();
    const echo = await echoServer(server);
    const conn = await Deno.connectQuic({
      hostname: "127.0.0.1",
      port: echo.port,
      alpnProtocols: [ALPN],
      caCerts: [certs.caCertPem],
    });
    try {
      const control = await conn.createBidirectionalStream();
      const cw = control.writable.getWriter();
      const cr = control.readable.getReader();
      await cw.write(new TextEncoder().encode("first"));
      assert.equal(new TextDecoder().decode((await cr.read()).value), "first");
      const extra = await conn.createBidirectionalStream();
      const ew = extra.writable.getWriter();
      const er = extra.readable.getReader();
      await ew.write(new TextEncoder().encode("second")).catch(() => {});
      const outcome = await er.read().then((r) => ({ data: r }), (e) => ({ error: e }));
      assert.ok(
        "error" in outcome || outcome.data.done,
        `second stream should end without data, got ${JSON.stringify(outcome)}`,
      );
      // Once the STOP_SENDING arrives, writes on the extra stream fail.
      await waitFor("writes on the stopped stream fail", async () => {
        return await ew.write(new Uint8Array(1000)).then(() => false, () => true);
      }, 3000);
      await cw.write(new TextEncoder().encode("still here"));
      assert.equal(new TextDecoder().decode((await cr.read()).value), "still here");
      assert.equal(echo.accepted.length, 1);
      assert.equal(echo.received[0], "firststill here");
    } finally {
      conn.close({ closeCode: 0, reason: "" });
      await echo.stop();
      await server.close();
    }
  },
});

Deno.test("isNativeQuicError() recognises errors thrown inside Deno's QUIC code and nothing else", () => {
  const inside = new Error("connection lost");
  inside.stack = "Error: connection lost\n    at bidiStream (ext:deno_net/03_quic.js:1:7628)";
  assert.equal(isNativeQuicError(inside), true);
  assert.equal(isNativeQuicError(new TransportError("closed", "x")), true);
  assert.equal(isNativeQuicError(new TypeError("cannot read properties of undefined")), false);
  assert.equal(isNativeQuicError(null), false);
});

Deno.test("createNativeTransport({ onlyGivenCa }) trusts only the dial's CA, not the process's other roots", async () => {
  const probe = async (mode: string) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./_roots_probe.ts", import.meta.url).pathname, mode],
      // Nothing inherited: an in-process LB of another test may have pinned this
      // process's roots through DENO_TLS_CA_STORE and SSL_CERT_FILE.
      clearEnv: true,
      env: { NO_COLOR: "1", PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/" },
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  // Without pinning, a root the process trusts lets a foreign certificate pass...
  assert.equal(await probe("default"), "accepted");
  // ...with it, only the configured CA counts.
  assert.match(
    await probe("only"),
    /^refused: certificate of 127\.0\.0\.1:\d+ rejected: .*UnknownIssuer/,
  );
});

Deno.test("EndpointPool spreads connections over endpoints of at most N, least loaded first, and closes empty extra ones", async () => {
  const { EndpointPool } = await import("../lib/transport/native_pool.ts");
  let made = 0;
  const closed: number[] = [];
  const pool = new EndpointPool(2, () => {
    const id = made++;
    return { id, close: () => closed.push(id) } as unknown as Deno.QuicEndpoint;
  });
  const id = (l: { endpoint: Deno.QuicEndpoint }) => (l.endpoint as unknown as { id: number }).id;
  const leases = Array.from({ length: 5 }, () => pool.acquire());
  assert.deepEqual(leases.map(id), [0, 0, 1, 1, 2]);
  assert.equal(pool.size, 3);
  leases[0]!.release();
  leases[0]!.release(); // twice: once counted
  assert.equal(id(pool.acquire()), 0, "the least loaded endpoint first");
  leases[4]!.release();
  assert.deepEqual(closed, [2], "an empty extra endpoint is closed");
  leases[2]!.release();
  leases[3]!.release();
  assert.deepEqual(closed, [2, 1]);
  assert.equal(pool.size, 1);
  pool.close();
  assert.deepEqual(closed, [2, 1, 0]);
});
