/**
 * Tests of the @matrixai/quic session wrapper on real QUIC over loopback:
 * certificate verification (by IP address and name), close codes, stream
 * limits and dial failures. The raw library is used here only to play a
 * misbehaving peer.
 */

import assert from "node:assert/strict";
import quic from "@matrixai/quic";
import loggerModule from "@matrixai/logger";
import { generateDevCertificates } from "../lib/certs.ts";
import { createMatrixaiTransport, isTransportLibraryError } from "../lib/quic_matrixai.ts";
import { ALPN, STREAM_REFUSED_CODE } from "../lib/protocol.ts";
import { type Channel, TransportError } from "../lib/transport.ts";
import { sleep } from "./_helpers.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const certs = await generateDevCertificates({ hosts: ["localhost", "127.0.0.1", "::1"] });
const otherCa = await generateDevCertificates({ caName: "Some other CA" });

/** Starts an echo server; returns its port and a stop function. */
async function echoServer(
  certPem = certs.serverCertPem,
  keyPem = certs.serverKeyPem,
  host = "127.0.0.1",
) {
  const transport = createMatrixaiTransport();
  const accepted: Channel[] = [];
  const listener = await transport.listen({ host, port: 0, certPem, keyPem }, (ch) => {
    accepted.push(ch);
    void (async () => {
      for (let d = await ch.read(); d; d = await ch.read()) await ch.write(d).catch(() => {});
    })();
  });
  return {
    port: listener.port,
    accepted,
    async stop() {
      await listener.close();
      await transport.close();
    },
  };
}

async function expectDialError(p: Promise<Channel>, kind: string, message: RegExp): Promise<void> {
  const e = await p.then(() => undefined, (e) => e);
  assert.ok(e instanceof TransportError, `expected TransportError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  assert.match(e.message, message);
}

Deno.test({
  ...opts,
  name: "dial() verifies a server given by IP address against the IP in its certificate",
  async fn() {
    const server = await echoServer();
    const client = createMatrixaiTransport();
    try {
      for (const host of ["127.0.0.1", "localhost"]) {
        const ch = await client.dial({
          host,
          port: server.port,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        });
        await ch.write(new TextEncoder().encode("ping"));
        assert.equal(new TextDecoder().decode((await ch.read())!), "ping");
        await ch.close(0, "done");
      }
    } finally {
      await client.close();
      await server.stop();
    }
  },
});

Deno.test({
  ...opts,
  name: "dial() verifies a server on ::1 against the IPv6 address in its certificate",
  async fn() {
    const server = await echoServer(certs.serverCertPem, certs.serverKeyPem, "::1");
    const client = createMatrixaiTransport();
    try {
      const ch = await client.dial({
        host: "::1",
        port: server.port,
        caPem: certs.caCertPem,
        timeoutMs: 3000,
      });
      assert.equal(ch.remoteAddress, `[::1]:${server.port}`);
      await ch.close(0, "done");
    } finally {
      await client.close();
      await server.stop();
    }
  },
});

Deno.test({
  ...opts,
  name: "dial() refuses a server certificate signed by another CA",
  async fn() {
    const server = await echoServer(otherCa.serverCertPem, otherCa.serverKeyPem);
    const client = createMatrixaiTransport();
    try {
      await expectDialError(
        client.dial({
          host: "127.0.0.1",
          port: server.port,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        }),
        "certificate",
        /does not lead to a trusted CA/,
      );
    } finally {
      await client.close();
      await server.stop();
    }
  },
});

Deno.test({
  ...opts,
  name: "dial() refuses a certificate that does not name the dialed IP address",
  async fn() {
    const onlyName = await generateDevCertificates({ hosts: ["localhost"] });
    const server = await echoServer(onlyName.serverCertPem, onlyName.serverKeyPem);
    const client = createMatrixaiTransport();
    try {
      await expectDialError(
        client.dial({
          host: "127.0.0.1",
          port: server.port,
          caPem: onlyName.caCertPem,
          timeoutMs: 3000,
        }),
        "certificate",
        /does not name 127\.0\.0\.1/,
      );
      // The same certificate is fine by the name it carries.
      const ch = await client.dial({
        host: "localhost",
        port: server.port,
        caPem: onlyName.caCertPem,
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
  name: "dial() refuses an expired server certificate",
  async fn() {
    const old = await generateDevCertificates({
      notBefore: Date.now() - 10 * 86_400_000,
      serverDays: 1,
    });
    const server = await echoServer(old.serverCertPem, old.serverKeyPem);
    const client = createMatrixaiTransport();
    try {
      await expectDialError(
        client.dial({
          host: "127.0.0.1",
          port: server.port,
          caPem: old.caCertPem,
          timeoutMs: 3000,
        }),
        "certificate",
        /is valid .* to /,
      );
    } finally {
      await client.close();
      await server.stop();
    }
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
  name: "dial() without a CA and without insecure is refused before any packet is sent",
  async fn() {
    const client = createMatrixaiTransport();
    await expectDialError(
      client.dial({ host: "127.0.0.1", port: 9, timeoutMs: 100 }),
      "certificate",
      /no CA/,
    );
    await client.close();
  },
});

Deno.test({
  ...opts,
  name: "dial() to a port where nobody listens fails with kind timeout after the timeout",
  async fn() {
    const server = await echoServer();
    const port = server.port;
    await server.stop();
    const client = createMatrixaiTransport();
    const t0 = performance.now();
    await expectDialError(
      client.dial({ host: "127.0.0.1", port, caPem: certs.caCertPem, timeoutMs: 300 }),
      "timeout",
      /no QUIC handshake with 127\.0\.0\.1:\d+ within 300 ms/,
    );
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 250 && elapsed < 3000, `${elapsed} ms`);
    await client.close();
  },
});

Deno.test({
  ...opts,
  name: "Channel.close() delivers the code and reason to the peer, and written bytes before it",
  async fn() {
    const server = await echoServer();
    const client = createMatrixaiTransport();
    try {
      const ch = await client.dial({
        host: "127.0.0.1",
        port: server.port,
        caPem: certs.caCertPem,
        timeoutMs: 3000,
      });
      await ch.write(new TextEncoder().encode("x"));
      await ch.read();
      await ch.close(0x5, "go away please");
      const mine = await ch.closed;
      assert.deepEqual(mine, { by: "local", code: 0x5, reason: "go away please" });
      const theirs = await server.accepted[0]!.closed;
      assert.deepEqual(theirs, { by: "remote", code: 0x5, reason: "go away please" });
      assert.equal(await ch.read(), null);
      await assert.rejects(ch.write(new Uint8Array([1])), TransportError);
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
