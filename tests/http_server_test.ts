/**
 * The LB's HTTP/1.1 server and its accept loop, against raw TCP clients:
 * what a client may hold (connections, time, bytes) is bounded, and the
 * port keeps answering.
 */

import assert from "node:assert/strict";
import { acceptLoop } from "../lib/ops/accept_loop.ts";
import { serveHttp } from "../lib/ops/http_server.ts";
import { fitConnectionCaps, perAddressCap } from "../lib/ops/limits.ts";
import { sleep, waitFor } from "./_helpers.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function connect(port: number, hostname = "127.0.0.1"): Promise<Deno.TcpConn> {
  return await Deno.connect({ hostname, port });
}

/** A read still pending when an earlier readAll() gave up, by connection: it must not be lost. */
const pending = new WeakMap<Deno.Conn, { read: Promise<number | null>; buf: Uint8Array }>();

/** Reads until the peer closes or `ms` pass; returns the text and whether it closed. */
async function readAll(conn: Deno.Conn, ms = 3000): Promise<{ text: string; closed: boolean }> {
  let text = "";
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return { text, closed: false };
    let p = pending.get(conn);
    if (!p) {
      const buf = new Uint8Array(64 * 1024);
      p = { read: conn.read(buf).catch(() => null), buf };
      pending.set(conn, p);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      p.read,
      new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left))),
    ]).finally(() => clearTimeout(timer));
    if (n === "timeout") return { text, closed: false };
    pending.delete(conn);
    if (n === null) return { text, closed: true };
    text += dec.decode(p.buf.subarray(0, n));
  }
}

function close(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* closed */ }
}

Deno.test("serveHttp() answers keep-alive and pipelined requests, HEAD, 100-continue, and sizes by Content-Length or chunks", async () => {
  const server = serveHttp({
    hostname: "127.0.0.1",
    port: 0,
    handler: async (req) => {
      const url = new URL(req.url);
      if (url.pathname === "/stream") {
        let n = 0;
        return new Response(
          new ReadableStream({
            pull(c) {
              if (n === 3) return c.close();
              c.enqueue(enc.encode(`part${n++};`));
            },
          }),
        );
      }
      const body = req.method === "POST" ? await req.text() : "";
      return new Response(`${req.method} ${url.pathname} ${body}`);
    },
  });
  try {
    const c = await connect(server.addr.port);
    await c.write(enc.encode(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
        "HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    const first = await readAll(c, 500);
    assert.match(first.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 7\r\n\r\nGET \/a /);
    assert.match(first.text, /content-length: 13\r\n\r\nPOST \/b hello/);
    assert.match(
      first.text,
      /HTTP\/1\.1 200 OK\r\n[^]*content-length: 8\r\n\r\n$/,
      "HEAD: the headers of the GET (its length), no body",
    );
    assert.equal(first.closed, false, "kept alive");
    await c.write(enc.encode("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    const stream = await readAll(c, 500);
    assert.match(
      stream.text,
      /transfer-encoding: chunked\r\n\r\n6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n$/,
    );
    await c.write(enc.encode(
      "POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    ));
    const cont = await readAll(c, 300);
    assert.match(cont.text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    await c.write(enc.encode("abc"));
    const last = await readAll(c, 1000);
    assert.match(last.text, /POST \/d abc$/);
    assert.ok(last.closed, "Connection: close is honoured");
    close(c);
    const res = await fetch(`http://127.0.0.1:${server.addr.port}/e`, {
      method: "POST",
      body: "x",
    });
    assert.equal(await res.text(), "POST /e x");
  } finally {
    await server.shutdown();
  }
});

Deno.test("serveHttp() closes a slow-loris connection at the head timeout and refuses bad or oversized heads", async () => {
  const server = serveHttp({
    hostname: "127.0.0.1",
    port: 0,
    headTimeoutMs: 400,
    maxHeadBytes: 1024,
    handler: () => new Response("ok"),
  });
  try {
    const slow = await connect(server.addr.port);
    const t0 = Date.now();
    const dripping = setInterval(() => slow.write(enc.encode("G")).catch(() => {}), 50);
    const r = await readAll(slow, 3000);
    clearInterval(dripping);
    assert.ok(r.closed, "closed");
    assert.ok(Date.now() - t0 < 1500, `closed after ${Date.now() - t0} ms`);
    close(slow);
    const cases: [string, RegExp][] = [
      ["BREW /pot HTTP/9.9\r\n\r\n", /^HTTP\/1\.1 400 /],
      [`GET /${"a".repeat(2000)} HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 431 /],
      ["GET / HTTP/1.1\r\nBad Header\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n", /^HTTP\/1\.1 400 /],
      [
        "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        /^HTTP\/1\.1 400 /,
      ],
      ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", /^HTTP\/1\.1 501 /],
    ];
    for (const [request, status] of cases) {
      const c = await connect(server.addr.port);
      await c.write(enc.encode(request));
      const got = await readAll(c, 2000);
      assert.match(got.text, status, JSON.stringify(request.slice(0, 40)));
      assert.ok(got.closed, "closed after a refusal");
      close(c);
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("serveHttp() stops reading a body at the limit: 413 for a large Content-Length at once, and for a chunked body as it passes the limit", async () => {
  let handled = 0;
  const server = serveHttp({
    hostname: "127.0.0.1",
    port: 0,
    maxBodyBytes: 64 * 1024,
    handler: () => {
      handled++;
      return new Response("ok");
    },
  });
  try {
    const c = await connect(server.addr.port);
    await c.write(enc.encode("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\n\r\n"));
    const r = await readAll(c, 2000);
    assert.match(r.text, /^HTTP\/1\.1 413 [\s\S]*exceeds 65536/);
    assert.ok(r.closed);
    close(c);
    // 50 MB in 64 KiB chunks: refused after about the limit, not after 50 MB.
    const chunked = await connect(server.addr.port);
    await chunked.write(
      enc.encode("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
    );
    const chunk = new Uint8Array(64 * 1024).fill(0x61);
    let sent = 0;
    const sending = (async () => {
      try {
        for (; sent < 50 * 1024 * 1024; sent += chunk.length) {
          await chunked.write(enc.encode(`${chunk.length.toString(16)}\r\n`));
          await chunked.write(chunk);
          await chunked.write(enc.encode("\r\n"));
        }
      } catch { /* the server closed the connection */ }
    })();
    const answer = await readAll(chunked, 5000);
    await sending;
    assert.match(answer.text, /^HTTP\/1\.1 413 /);
    assert.ok(sent < 8 * 1024 * 1024, `${sent} bytes sent before the server stopped reading`);
    assert.equal(handled, 0, "the handler never saw either request");
    close(chunked);
  } finally {
    await server.shutdown();
  }
});

Deno.test("serveHttp() caps connections per address and in all, and answers again once they are gone", async () => {
  const server = serveHttp({
    hostname: "::",
    port: 0,
    maxConnections: 20,
    maxConnectionsPerAddress: 5,
    handler: () => new Response("ok"),
  });
  const idle: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 12; i++) idle.push(await connect(server.addr.port, "127.0.0.1"));
    await waitFor("5 held", () => server.stats().open === 5 && server.stats().refused >= 7, 5000);
    // Another address still gets in.
    const other = await fetch(`http://[::1]:${server.addr.port}/`);
    assert.equal(await other.text(), "ok");
    // The refused ones were closed by the server.
    const refused = await Promise.all(idle.slice(5).map((c) => readAll(c, 1000)));
    assert.ok(refused.every((r) => r.closed));
    for (const c of idle) close(c);
    idle.length = 0;
    // Only fetch's kept-alive connection from ::1 is left.
    await waitFor("released", () => server.stats().open <= 1, 5000);
    assert.equal(await (await fetch(`http://127.0.0.1:${server.addr.port}/`)).text(), "ok");
  } finally {
    for (const c of idle) close(c);
    await server.shutdown();
  }
});

Deno.test("acceptLoop() treats a failed accept (out of descriptors) as temporary: it backs off and accepts again", async () => {
  let calls = 0;
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const flaky = {
    accept: () => {
      calls++;
      if (calls <= 3) return Promise.reject(new Error("Too many open files (os error 24)"));
      return real.accept();
    },
  } as unknown as Deno.Listener;
  const served: string[] = [];
  const loop = acceptLoop(flaky, {
    what: "test",
    maxConnections: 10,
    maxPerAddress: 10,
    serve: async (conn) => {
      served.push((conn.remoteAddr as Deno.NetAddr).hostname);
      await conn.write(enc.encode("hi"));
    },
  });
  const c = await connect((real.addr as Deno.NetAddr).port);
  assert.match((await readAll(c, 3000)).text, /^hi$/);
  close(c);
  assert.equal(loop.stats().acceptErrors, 3);
  assert.deepEqual(served, ["127.0.0.1"]);
  real.close();
  await loop.done;
});

Deno.test("fitConnectionCaps() and perAddressCap() keep the ports within the open-file limit and no address above a quarter", () => {
  assert.deepEqual(fitConnectionCaps([2048, 1024], { soft: 1024, hard: 1024 }), [480, 480]);
  assert.deepEqual(fitConnectionCaps([100], { soft: 100_000, hard: 100_000 }), [100]);
  assert.deepEqual(fitConnectionCaps([2048], undefined), [2048]);
  assert.equal(perAddressCap(256, 2048), 256);
  assert.equal(perAddressCap(256, 136), 34);
  assert.equal(perAddressCap(256, 2), 1);
});

Deno.test("serveHttp() drops a client that stops reading a stream at the write timeout", async () => {
  const server = serveHttp({
    hostname: "127.0.0.1",
    port: 0,
    writeTimeoutMs: 500,
    handler: () =>
      new Response(
        new ReadableStream({
          // 64 KiB per pull, forever: only the client's reading limits it.
          pull: (c) => c.enqueue(new Uint8Array(64 * 1024)),
        }),
      ),
  });
  try {
    const c = await connect(server.addr.port);
    await c.write(enc.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    // Never read: the socket buffers fill, the server's write stalls, and it gives up.
    await waitFor("the stalled stream dropped", () => server.stats().open === 0, 20_000, 100);
    close(c);
  } finally {
    await server.shutdown();
  }
  await sleep(10);
});
