/**
 * Services and the verdict by DNS: grouping servers into services,
 * `answerDns()` record by record (pure, and fuzzed: an answer or nothing,
 * never a throw), then the real `dig` against an LB in this process whose
 * agents advertise services, and the real HAProxy following an SRV name.
 */

import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { servicesOf, type ServiceView } from "../lib/lb/services.ts";
import type { WatchView } from "../lib/lb/record.ts";
import { answerDns } from "../lib/ops/dns.ts";
import { startAgent } from "../lib/cli/agent_main.ts";
import { startLb } from "../lib/cli/lb_main.ts";
import { parseLbArgs } from "../lib/cli/lb_flags.ts";
import { parseServerArgs } from "../lib/cli/server_flags.ts";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { MemoryTransport } from "../lib/transport/memory.ts";
import { requirePeer } from "../tools/peers.ts";
import {
  FakeMetrics,
  fetchStatus,
  Fleet,
  freeTcpPort,
  mulberry32,
  startTraffic,
  tempDir,
  waitFor,
} from "./_helpers.ts";
import { record } from "./_report.ts";

// dns-packet, untyped here on purpose (its @types pull in @types/node): the test's own reader.
const packet = dnsPacket as unknown as {
  encode(p: Record<string, unknown>): Uint8Array;
  decode(b: Uint8Array): {
    id: number;
    flags: number;
    rcode: string;
    flag_aa: boolean;
    flag_tc: boolean;
    answers: { type: string; name: string; ttl: number; data: unknown }[];
    authorities: { type: string; name: string }[];
    additionals: { type: string; name: string; data: unknown; udpPayloadSize?: number }[];
  };
};

const ZONE = { domain: "qhcp.", ttlSec: 1 };

function view(
  address: string,
  services: WatchView["services"],
  over: Partial<WatchView> = {},
): WatchView {
  return {
    address,
    state: "UP",
    session: "READY",
    consecutive_failures: 0,
    last_rtt_ms: 1,
    metrics: null,
    status: "UP",
    last_error: null,
    last_change: "2026-11-29T10:00:00.000Z",
    server_id: null,
    checks_ok: 1,
    checks_failed: 0,
    last_check: null,
    weight: 80,
    load: 20,
    checks: null,
    suspicion: null,
    heartbeat_ms: null,
    extensions: [],
    services,
    ...over,
  };
}

const VIEWS = [
  view("10.0.0.1:4243", [{ name: "web", port: 8080 }, { name: "api", port: 9000, tags: ["v2"] }]),
  view("10.0.0.2:4243", [{ name: "web", port: 8081 }], { weight: 55 }),
  view("10.0.0.3:4243", [{ name: "web", port: 8080 }], { state: "DOWN", weight: 0 }),
  view("10.0.0.4:4243", [{ name: "web", port: 8080 }], { status: "DRAINING", weight: 0 }),
  view("[fd00::5]:4243", [{ name: "web", port: 8080 }]),
  view("10.0.0.6:4243", [{ name: "db", port: 5432 }], { state: "DOWN", weight: 0 }),
];
const SERVICES = servicesOf(VIEWS);

function ask(
  name: string,
  type: string,
  options: { edns?: number; services?: ServiceView[]; via?: "udp" | "tcp"; id?: number } = {},
) {
  const q = packet.encode({
    type: "query",
    id: options.id ?? 7,
    flags: 1 << 8,
    questions: [{ type, name }],
    additionals: options.edns ? [{ type: "OPT", name: ".", udpPayloadSize: options.edns }] : [],
  });
  const out = answerDns(q, options.services ?? SERVICES, ZONE, options.via ?? "udp");
  assert.ok(out, "an answer");
  return { bytes: out, r: packet.decode(Buffer.from(out)) };
}

Deno.test("servicesOf() groups servers by service, counting those that should get traffic", () => {
  assert.deepEqual(SERVICES.map((s) => [s.name, s.healthy, s.total]), [
    ["api", 1, 1],
    ["db", 0, 1],
    ["web", 3, 5],
  ]);
  const web = SERVICES.find((s) => s.name === "web")!;
  assert.deepEqual(web.instances.map((i) => [i.address, i.healthy]), [
    ["10.0.0.1:8080", true],
    ["10.0.0.2:8081", true],
    ["10.0.0.3:8080", false],
    ["10.0.0.4:8080", false],
    ["[fd00::5]:8080", true],
  ]);
});

Deno.test("answerDns() A and AAAA: the addresses of the healthy servers, authoritative, TTL as set", () => {
  const { r } = ask("web.service.qhcp", "A");
  assert.equal(r.rcode, "NOERROR");
  assert.equal(r.flag_aa, true);
  assert.deepEqual(r.answers.map((a) => [a.type, a.data, a.ttl]), [["A", "10.0.0.1", 1], [
    "A",
    "10.0.0.2",
    1,
  ]]);
  assert.deepEqual(ask("WEB.Service.QHCP.", "AAAA").r.answers.map((a) => a.data), ["fd00::5"]);
});

Deno.test("answerDns() SRV: weight, port and a target that resolves, its address alongside", () => {
  const { r } = ask("_web._tcp.service.qhcp", "SRV");
  assert.deepEqual(
    r.answers.map((a) => a.data),
    [
      { priority: 1, weight: 80, port: 8080, target: "10-0-0-1.node.qhcp" },
      { priority: 1, weight: 55, port: 8081, target: "10-0-0-2.node.qhcp" },
      { priority: 1, weight: 80, port: 8080, target: "fd00--5.node.qhcp" },
    ],
  );
  assert.deepEqual(r.additionals.map((a) => [a.type, a.name, a.data]), [
    ["A", "10-0-0-1.node.qhcp", "10.0.0.1"],
    ["A", "10-0-0-2.node.qhcp", "10.0.0.2"],
    ["AAAA", "fd00--5.node.qhcp", "fd00::5"],
  ]);
  assert.deepEqual(ask("10-0-0-2.node.qhcp", "A").r.answers.map((a) => a.data), ["10.0.0.2"]);
  assert.equal(ask("10-9-9-9.node.qhcp", "A").r.rcode, "NXDOMAIN", "a node the LB does not know");
});

Deno.test("answerDns() NXDOMAIN, empty answers with the SOA, REFUSED outside the zone, the apex", () => {
  const nx = ask("nope.service.qhcp", "A").r;
  assert.equal(nx.rcode, "NXDOMAIN");
  assert.deepEqual(nx.authorities.map((a) => a.type), ["SOA"]);
  const down = ask("db.service.qhcp", "A").r;
  assert.equal(down.rcode, "NOERROR", "the service exists; no server is healthy");
  assert.deepEqual(down.answers, []);
  assert.deepEqual(down.authorities.map((a) => a.type), ["SOA"]);
  assert.deepEqual(ask("web.service.qhcp", "MX").r.answers, []);
  assert.equal(ask("example.com", "A").r.rcode, "REFUSED");
  assert.deepEqual(ask("qhcp", "SOA").r.answers.map((a) => a.type), ["SOA"]);
  assert.equal(ask("service.qhcp", "A").r.rcode, "NOERROR");
  assert.equal(ask("x.y.qhcp", "A").r.rcode, "NXDOMAIN");
});

Deno.test("answerDns() truncates a large UDP answer (TC, empty), honours EDNS0, and answers it whole over TCP", () => {
  const many = servicesOf(
    Array.from({ length: 60 }, (_, i) => view(`10.1.0.${i + 1}:4243`, [{ name: "big", port: 80 }])),
  );
  const udp = ask("_big._tcp.service.qhcp", "SRV", { services: many }).r;
  assert.equal(udp.flag_tc, true);
  assert.deepEqual(udp.answers, []);
  const edns = ask("_big._tcp.service.qhcp", "SRV", { services: many, edns: 4096 });
  assert.ok(edns.bytes.length <= 1232, "at most 1232 bytes whatever the client offers");
  assert.equal(edns.r.additionals.find((a) => a.type === "OPT")?.udpPayloadSize, 1232);
  const tcp = ask("_big._tcp.service.qhcp", "SRV", { services: many, via: "tcp" }).r;
  assert.equal(tcp.flag_tc, false);
  assert.equal(tcp.answers.length, 60);
  const small = ask("web.service.qhcp", "A", { edns: 1232 }).r;
  assert.equal(small.additionals.find((a) => a.type === "OPT")?.udpPayloadSize, 1232);
});

Deno.test("answerDns() on bad input: FORMERR when the header can be read, nothing for a response or a scrap", () => {
  const q = packet.encode({
    type: "query",
    id: 99,
    questions: [{ type: "A", name: "web.service.qhcp" }],
  });
  const cut = q.slice(0, q.length - 3);
  const formerr = packet.decode(Buffer.from(answerDns(cut, SERVICES, ZONE, "udp")!));
  assert.equal(formerr.id, 99);
  assert.equal(formerr.rcode, "FORMERR");
  const two = packet.encode({
    type: "query",
    id: 5,
    questions: [{ type: "A", name: "a.qhcp" }, { type: "A", name: "b.qhcp" }],
  });
  assert.equal(packet.decode(Buffer.from(answerDns(two, SERVICES, ZONE, "udp")!)).rcode, "FORMERR");
  const response = packet.encode({
    type: "response",
    id: 1,
    questions: [{ type: "A", name: "web.service.qhcp" }],
  });
  assert.equal(answerDns(response, SERVICES, ZONE, "udp"), null);
  assert.equal(answerDns(new Uint8Array(5), SERVICES, ZONE, "udp"), null);
  const notify = q.slice();
  notify[2] = (4 << 3) | notify[2]! & 0x87; // opcode NOTIFY
  assert.equal(
    packet.decode(Buffer.from(answerDns(notify, SERVICES, ZONE, "udp")!)).rcode,
    "NOTIMP",
  );
});

Deno.test("answerDns() on 20,000 random and mutated queries answers or stays silent, never throws (seed 0xd0500001)", () => {
  const random = mulberry32(0xd0500001);
  const int = (n: number) => Math.floor(random() * n);
  const names = [
    "web.service.qhcp",
    "_web._tcp.service.qhcp",
    "qhcp",
    "10-0-0-1.node.qhcp",
    "x.com",
  ];
  const types = ["A", "AAAA", "SRV", "SOA", "NS", "MX", "TXT", "ANY"];
  const seen = { answered: 0, silent: 0 };
  for (let i = 0; i < 20_000; i++) {
    let bytes: Uint8Array;
    if (i % 3 === 0) {
      bytes = new Uint8Array(int(64));
      for (let k = 0; k < bytes.length; k++) bytes[k] = int(256);
    } else {
      bytes = packet.encode({
        type: "query",
        id: int(65536),
        questions: [{ type: types[int(types.length)]!, name: names[int(names.length)]! }],
      }).slice();
      for (let m = 1 + int(3); m > 0; m--) bytes[int(bytes.length)] = int(256);
      if (random() < 0.2) bytes = bytes.subarray(0, int(bytes.length + 1));
    }
    let out: Uint8Array | null;
    try {
      out = answerDns(bytes, SERVICES, ZONE, random() < 0.5 ? "udp" : "tcp");
    } catch (e) {
      throw new Error(`answerDns threw on ${Array.from(bytes).join(",")}: ${e}`);
    }
    if (out === null) {
      seen.silent++;
      continue;
    }
    seen.answered++;
    assert.ok(out.length >= 12);
    assert.equal(out[0], bytes[0], "the id is kept");
    assert.equal(out[1], bytes[1]);
  }
  assert.ok(seen.answered > 1000 && seen.silent > 1000, JSON.stringify(seen));
});

// --- dig against a running LB ---------------------------------------------------------

async function dig(port: number, args: string[]): Promise<string> {
  const out = await new Deno.Command(requirePeer("dig"), {
    args: ["@127.0.0.1", "-p", String(port), "+time=2", "+tries=1", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

Deno.test({
  name:
    "dig against the LB's DNS port: A, AAAA, SRV, NXDOMAIN, an empty answer, truncation and the TCP retry, EDNS0, a dead agent taken out",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await tempDir("dns");
    const transport = new MemoryTransport();
    const hosts = ["10.0.2.1", "10.0.2.2", "fd00::21"];
    const many = Array.from({ length: 25 }, (_, i) => `10.0.3.${i + 1}`);
    // The agents check that a token is bound to one of their certificate's names.
    await ensureDefaultFiles(dir, { hosts: [...hosts, ...many] });
    const agents = [];
    for (const [i, host] of hosts.entries()) {
      agents.push(
        await startAgent(
          parseServerArgs([
            "--certs-dir",
            dir,
            "--server-ip",
            host,
            "--service",
            `web:${8080 + i}`,
            ...(i === 0 ? ["--service", "api:9000:v2,eu"] : []),
          ]),
          { transport, metrics: new FakeMetrics(), logSink: () => {} },
        ),
      );
    }
    // Enough servers for an SRV answer too large for 512 bytes.
    for (let i = 0; i < 25; i++) {
      agents.push(
        await startAgent(
          parseServerArgs([
            "--certs-dir",
            dir,
            "--server-ip",
            `10.0.3.${i + 1}`,
            "--service",
            "many:80",
          ]),
          { transport, metrics: new FakeMetrics(), logSink: () => {} },
        ),
      );
    }
    const lb = await startLb(
      parseLbArgs([
        "--certs-dir",
        dir,
        "--servers",
        [
          ...hosts.map((h) => h.includes(":") ? `[${h}]:4243` : `${h}:4243`),
          ...Array.from({ length: 25 }, (_, i) => `10.0.3.${i + 1}:4243`),
        ].join(","),
        "--check-interval",
        "0.5",
        "--http-host",
        "127.0.0.1",
        "--loadbalancer-port",
        "0",
        "--dns-port",
        "0",
        "--table",
        "off",
      ]),
      { transport, logSink: () => {} },
    );
    try {
      const port = lb.dnsPort!;
      await waitFor(
        "all UP",
        async () => (await fetchStatus(lb.http.port)).every((s) => s.state === "UP"),
        10_000,
      );
      const a = await dig(port, ["web.service.qhcp", "A", "+norecurse"]);
      assert.match(a, /status: NOERROR/);
      assert.match(a, /flags: qr aa/);
      assert.match(a, /web\.service\.qhcp\.\s+1\s+IN\s+A\s+10\.0\.2\.1/);
      assert.match(a, /IN\s+A\s+10\.0\.2\.2/);
      assert.match(await dig(port, ["web.service.qhcp", "AAAA"]), /IN\s+AAAA\s+fd00::21/);
      const srv = await dig(port, ["_web._tcp.service.qhcp", "SRV"]);
      assert.match(srv, /IN\s+SRV\s+1 \d+ 8080 10-0-2-1\.node\.qhcp\./);
      assert.match(
        srv,
        /ADDITIONAL SECTION:[\s\S]*10-0-2-1\.node\.qhcp\.\s+1\s+IN\s+A\s+10\.0\.2\.1/,
      );
      assert.match(await dig(port, ["10-0-2-1.node.qhcp", "A"]), /IN\s+A\s+10\.0\.2\.1/);
      assert.match(await dig(port, ["nope.service.qhcp", "A"]), /status: NXDOMAIN/);
      assert.match(await dig(port, ["google.com", "A"]), /status: REFUSED/);
      const edns = await dig(port, ["web.service.qhcp", "A", "+edns=0", "+bufsize=1232"]);
      assert.match(edns, /OPT PSEUDOSECTION:[\s\S]*udp: 1232/);
      // 25 SRV records do not fit 512 bytes: truncated over UDP, whole after dig's TCP retry.
      const trunc = await dig(port, ["_many._tcp.service.qhcp", "SRV", "+noedns", "+ignore"]);
      assert.match(trunc, /flags: qr aa tc/);
      const retried = await dig(port, ["_many._tcp.service.qhcp", "SRV", "+noedns"]);
      assert.match(retried, /Truncated, retrying in TCP mode/);
      assert.equal((retried.match(/IN\s+SRV\s+1 /g) ?? []).length, 25);
      // An agent goes away: its address leaves the answer; with none left, the answer is empty.
      await agents[1]!.stop("test");
      await waitFor(
        "DOWN",
        async () => !/10\.0\.2\.2/.test(await dig(port, ["web.service.qhcp", "A"])),
        10_000,
        200,
      );
      await agents[0]!.stop("test");
      const empty = await dig(port, ["api.service.qhcp", "A"]);
      await waitFor(
        "empty",
        async () => /ANSWER: 0/.test(await dig(port, ["api.service.qhcp", "A"])),
        10_000,
        200,
      );
      assert.match(empty + (await dig(port, ["api.service.qhcp", "A"])), /status: NOERROR/);
    } finally {
      await lb.stop("test");
      for (const a of agents) await a.stop("test");
      await transport.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

// --- HAProxy following an SRV name ------------------------------------------------------

Deno.test({
  name:
    "HAProxy with resolvers and server-template over the SRV name: a killed agent's backend stops getting traffic, and gets it again when back",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const haproxyPath = requirePeer("haproxy");
    await using fleet = await Fleet.create("dns-haproxy");
    const backends = ["b1", "b2"].map((name) =>
      Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response(name))
    );
    const agents = [];
    for (const [i, b] of backends.entries()) {
      agents.push(
        await fleet.server([
          "--server-port",
          "0",
          "--quic",
          "native",
          "--server-id",
          `srv-${i}`,
          "--service",
          `web:${b.addr.port}`,
        ]),
      );
    }
    const dnsPort = freeTcpPort();
    const lb = await fleet.lb([
      "--servers",
      agents.map((a) => `127.0.0.1:${a.port}`).join(","),
      "--quic",
      "native",
      "--dns-port",
      String(dnsPort),
      "--table",
      "off",
    ]);
    await waitFor(
      "both UP",
      async () => (await fetchStatus(lb.httpPort)).every((s) => s.state === "UP"),
      10_000,
    );
    const frontend = freeTcpPort();
    const cfg = `${fleet.dir}/haproxy.cfg`;
    await Deno.writeTextFile(
      cfg,
      [
        "global",
        "  maxconn 100",
        "resolvers qhcp",
        `  nameserver lb 127.0.0.1:${dnsPort}`,
        "  accepted_payload_size 1232",
        "  resolve_retries 1",
        "  timeout resolve 1s",
        "  timeout retry 1s",
        "  hold valid 1s",
        "  hold obsolete 1s",
        "  hold nx 1s",
        "  hold other 1s",
        "defaults",
        "  mode http",
        "  timeout connect 1s",
        "  timeout client 5s",
        "  timeout server 5s",
        "frontend web",
        `  bind 127.0.0.1:${frontend}`,
        "  default_backend app",
        "backend app",
        "  balance roundrobin",
        "  server-template web 4 _web._tcp.service.qhcp resolvers qhcp init-addr none",
        "",
      ].join("\n"),
    );
    const haproxy = new Deno.Command(haproxyPath, {
      args: ["-f", cfg, "-db"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const traffic = startTraffic(`http://127.0.0.1:${frontend}/`);
    const served = traffic.served;
    try {
      await waitFor(
        "both backends serve",
        () => {
          const recent = served.slice(-20).map((s) => s.by);
          return recent.includes("b1") && recent.includes("b2");
        },
        15_000,
        100,
      );
      const killedAt = performance.now();
      agents[1]!.program.kill("SIGKILL");
      await waitFor(
        "b2 out",
        () => {
          const after = served.filter((s) => s.at > killedAt + 500);
          return after.length > 30 && after.slice(-30).every((s) => s.by === "b1");
        },
        15_000,
        100,
      );
      const last = Math.max(...served.filter((s) => s.by === "b2").map((s) => s.at));
      const outMs = last - killedAt;
      // Detection (native: about 0.5 s) + TTL 1 s + HAProxy's resolve interval and hold 1 s each.
      assert.ok(outMs < 6000, `b2 served ${Math.round(outMs)} ms after its agent was killed`);
      record(
        "dns",
        "agent SIGKILL to HAProxy's last request to it (SRV, TTL 1 s, resolve 1 s)",
        outMs,
        "ms",
        "< 6000",
      );
      const again = await fleet.server([
        "--server-port",
        String(agents[1]!.port),
        "--quic",
        "native",
        "--service",
        `web:${backends[1]!.addr.port}`,
      ]);
      const back = performance.now();
      await waitFor("b2 back", () => served.some((s) => s.at > back && s.by === "b2"), 20_000, 100);
      record("dns", "agent back to HAProxy's first request to it", performance.now() - back, "ms");
      void again;
    } finally {
      await traffic.stop();
      try {
        haproxy.kill("SIGTERM");
      } catch { /* gone */ }
      await haproxy.status;
      await Promise.all(backends.map((b) => b.shutdown()));
    }
  },
});
