/**
 * The session-wrapper suite: what every QUIC stack behind the Transport
 * interface must do on real QUIC over loopback (certificate verification by
 * IP address and name, dial failures, close codes, delivery before a close,
 * resource accounting). Run once per stack.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateDevCertificates } from "../lib/security/certs.ts";
import { type Channel, type Transport, TransportError } from "../lib/transport/transport.ts";
import { waitFor } from "./_helpers.ts";

const certs = await generateDevCertificates({ hosts: ["localhost", "127.0.0.1", "::1"] });
const otherCa = await generateDevCertificates({ caName: "Some other CA" });
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An echo server on one transport; `received` holds everything each connection sent. */
export async function echoServer(
  transport: Transport,
  certPem = certs.serverCertPem,
  keyPem = certs.serverKeyPem,
  host = "127.0.0.1",
  port = 0,
) {
  const accepted: Channel[] = [];
  const received: string[] = [];
  const listener = await transport.listen({ host, port, certPem, keyPem }, (ch) => {
    const index = accepted.push(ch) - 1;
    received[index] = "";
    void (async () => {
      for (let d = await ch.read(); d; d = await ch.read()) {
        received[index] += decoder.decode(d);
        await ch.write(d).catch(() => {});
      }
    })();
  });
  return {
    port: listener.port,
    listener,
    accepted,
    received,
    stop: () => listener.close(),
  };
}

/** Asserts that a dial fails with a TransportError of `kind` whose message matches. */
export async function expectDialError(
  p: Promise<Channel>,
  kind: string,
  message: RegExp,
): Promise<void> {
  const e = await p.then(() => undefined, (e) => e);
  assert.ok(e instanceof TransportError, `expected TransportError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  assert.match(e.message, message);
}

/** Registers the wrapper tests for one stack; `make` returns a fresh transport. */
export function wrapperSuite(name: string, make: () => Transport): void {
  const test = (title: string, fn: (server: Transport, client: Transport) => Promise<void>) =>
    Deno.test({
      name: `[${name}] ${title}`,
      sanitizeOps: false,
      sanitizeResources: false,
      async fn() {
        const server = make();
        const client = make();
        try {
          await fn(server, client);
        } finally {
          await client.close();
          await server.close();
        }
      },
    });

  test(
    "dial() verifies a server given by IP address against the IP in its certificate",
    async (st, client) => {
      const server = await echoServer(st);
      for (const host of ["127.0.0.1", "localhost"]) {
        const ch = await client.dial({
          host,
          port: server.port,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        });
        await ch.write(encoder.encode("ping"));
        assert.equal(decoder.decode((await ch.read())!), "ping");
        await ch.close(0, "done");
      }
      await server.stop();
    },
  );

  test(
    "dial() verifies a server on ::1 against the IPv6 address in its certificate",
    async (st, client) => {
      const server = await echoServer(st, certs.serverCertPem, certs.serverKeyPem, "::1");
      const ch = await client.dial({
        host: "::1",
        port: server.port,
        caPem: certs.caCertPem,
        timeoutMs: 3000,
      });
      assert.equal(ch.remoteAddress, `[::1]:${server.port}`);
      await ch.close(0, "done");
      await server.stop();
    },
  );

  test(
    "dial() refuses a server certificate signed by another CA; the server keeps serving",
    async (st, client) => {
      const server = await echoServer(st, otherCa.serverCertPem, otherCa.serverKeyPem);
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
      const ch = await client.dial({
        host: "127.0.0.1",
        port: server.port,
        caPem: otherCa.caCertPem,
        timeoutMs: 3000,
      });
      await ch.write(encoder.encode("still here"));
      assert.equal(decoder.decode((await ch.read())!), "still here");
      await ch.close(0, "done");
      await server.stop();
    },
  );

  test(
    "dial() refuses a certificate that does not name the dialed IP address",
    async (st, client) => {
      const onlyName = await generateDevCertificates({ hosts: ["localhost"] });
      const server = await echoServer(st, onlyName.serverCertPem, onlyName.serverKeyPem);
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
      await server.stop();
    },
  );

  test(
    "dial() of a name that does not resolve says so, in the same words on every stack",
    async (_st, client) => {
      await expectDialError(
        client.dial({
          host: "no-such-host.invalid",
          port: 4243,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        }),
        "unresolved",
        /^cannot connect to no-such-host\.invalid:4243: the name "no-such-host\.invalid" did not resolve to an address$/,
      );
    },
  );

  test("dial() refuses an expired server certificate", async (st, client) => {
    const old = await generateDevCertificates({
      notBefore: Date.now() - 10 * 86_400_000,
      serverDays: 1,
    });
    const server = await echoServer(st, old.serverCertPem, old.serverKeyPem);
    await expectDialError(
      client.dial({ host: "127.0.0.1", port: server.port, caPem: old.caCertPem, timeoutMs: 3000 }),
      "certificate",
      /has expired or is not yet valid/,
    );
    await server.stop();
  });

  test(
    "dial() without a CA and without insecure is refused before any packet is sent",
    async (_st, client) => {
      await expectDialError(
        client.dial({ host: "127.0.0.1", port: 9, timeoutMs: 100 }),
        "certificate",
        /no CA/,
      );
    },
  );

  test(
    "dial() to a port where nobody listens fails with kind timeout after the timeout",
    async (st, client) => {
      const server = await echoServer(st);
      const port = server.port;
      await server.stop();
      const t0 = performance.now();
      await expectDialError(
        client.dial({ host: "127.0.0.1", port, caPem: certs.caCertPem, timeoutMs: 300 }),
        "timeout",
        /no QUIC handshake with 127\.0\.0\.1:\d+ within 300 ms/,
      );
      const elapsed = performance.now() - t0;
      assert.ok(elapsed >= 250 && elapsed < 3000, `${elapsed} ms`);
    },
  );

  test("dial() stops at once when its signal aborts", async (st, client) => {
    const server = await echoServer(st);
    const port = server.port;
    await server.stop();
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const t0 = performance.now();
    await expectDialError(
      client.dial({
        host: "127.0.0.1",
        port,
        caPem: certs.caCertPem,
        timeoutMs: 5000,
        signal: controller.signal,
      }),
      "aborted",
      /aborted/,
    );
    assert.ok(performance.now() - t0 < 2000);
  });

  test(
    "Channel.close() delivers the bytes written before it, then the code and reason",
    async (st, client) => {
      const server = await echoServer(st);
      const ch = await client.dial({
        host: "127.0.0.1",
        port: server.port,
        caPem: certs.caCertPem,
        timeoutMs: 3000,
      });
      await ch.write(encoder.encode("x"));
      await ch.read();
      await ch.write(encoder.encode("last words"));
      await ch.close(0x5, "go away please");
      const mine = await ch.closed;
      assert.deepEqual(mine, { by: "local", code: 0x5, reason: "go away please" });
      const theirs = await server.accepted[0]!.closed;
      assert.deepEqual(theirs, { by: "remote", code: 0x5, reason: "go away please" });
      assert.equal(server.received[0], "xlast words");
      assert.equal(await ch.read(), null);
      await assert.rejects(ch.write(new Uint8Array([1])), TransportError);
      await server.stop();
    },
  );

  test(
    "Listener.close() closes every connection with its code; stats() counts what is open",
    async (st, client) => {
      const server = await echoServer(st);
      const dial = () =>
        client.dial({
          host: "127.0.0.1",
          port: server.port,
          caPem: certs.caCertPem,
          timeoutMs: 3000,
        });
      const channels = [await dial(), await dial()];
      for (const ch of channels) {
        await ch.write(encoder.encode("hi"));
        await ch.read();
      }
      assert.equal(server.listener.connections, 2);
      assert.deepEqual(client.stats(), { connections: 2, listeners: 0 });
      assert.equal(st.stats().listeners, 1);
      await server.listener.close(0x12, "server closing");
      for (const ch of channels) {
        const info = await ch.closed;
        assert.equal(info.by, "remote");
        assert.equal(info.code, 0x12);
      }
      assert.equal(await channels[0]!.read(), null);
      await waitFor("dialled connections released", () => client.stats().connections === 0, 3000);
      assert.equal(st.stats().listeners, 0);
    },
  );

  test("listen() can bind a port again right after a listener on it closed", async (st, client) => {
    const first = await echoServer(st);
    const port = first.port;
    const ch = await client.dial({
      host: "127.0.0.1",
      port,
      caPem: certs.caCertPem,
      timeoutMs: 3000,
    });
    await ch.write(encoder.encode("one"));
    await ch.read();
    await first.stop();
    await ch.closed;
    const second = await echoServer(st, certs.serverCertPem, certs.serverKeyPem, "127.0.0.1", port);
    const again = await client.dial({
      host: "127.0.0.1",
      port,
      caPem: certs.caCertPem,
      timeoutMs: 3000,
    });
    await again.write(encoder.encode("two"));
    assert.equal(decoder.decode((await again.read())!), "two");
    await again.close(0, "done");
    await second.stop();
  });
}

export { certs, otherCa };
