/**
 * The LB's HTTP API: the verdict for people (a live dashboard), for data
 * planes (`/health/{address}`, `/api/pick`), for Prometheus (`/metrics`) and
 * for operators (runtime configuration and server changes), as a route
 * table over a {@linkcode ServerDirectory} (a `Monitor`, or the fleet). A plain `(Request) => Response` handler,
 * tested without a socket and served by `http_server.ts`.
 *
 * Reads are open. Mutating endpoints require `Authorization: Bearer <token>`
 * with the admin token; bad JSON, unknown fields and out-of-range values get
 * 400 with a message naming the field.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import { ServerSetError } from "../lb/monitor.ts";
import type { ServerDirectory } from "../lb/directory.ts";
import { isStrategy, Selector, STRATEGIES } from "../lb/select.ts";
import { serviceCandidates, servicesOf } from "../lb/services.ts";
import type { WatchView } from "../lb/watch.ts";
import { parseServerAddress } from "../protocol/address.ts";
import { ConfigError } from "../protocol/errors.ts";
import { type Logger, rateLimited, silentLogger } from "../util/log.ts";
import { oneLine } from "../util/text.ts";
import { bearerGuard } from "./admin_auth.ts";
import { DASHBOARD_HTML, DASHBOARD_POINTS } from "./dashboard.ts";
import { EventFeed } from "./events.ts";
import { metricsSnapshot, renderPrometheus } from "./prometheus.ts";
import { HttpError, json, Router } from "./routes.ts";

/** Options of {@linkcode createHttpApi}. */
export interface HttpApiOptions {
  monitor: ServerDirectory;
  lbId: string;
  /** When the LB started (ms since epoch). */
  startedAt: number;
  /** Program version for /healthz and /metrics. */
  version: string;
  /** Bearer token for mutating endpoints; without it they answer 403. */
  adminToken?: string;
  log?: Logger;
  /** Most dashboard pushes per second per listener. Default 4. */
  eventsPerSecond?: number;
  /** Event-stream subscribers at once; more get 503. Default 100. */
  maxSubscribers?: number;
}

/** The handler and a way to end its long-lived event streams. */
export interface HttpApi {
  handler: (req: Request) => Promise<Response>;
  /** Ends every open event stream (call before shutting the server down). */
  close(): void;
}

/** Largest accepted request body, bytes. */
const _MAX_BODY = 64 * 1024;
/** Servers per page of `/status` and `/api/servers` unless `limit` says otherwise. */
const _PAGE = 1000;
/** Checks of one server's history returned unless `history` says otherwise. */
const _HISTORY_PAGE = 300;
/** Servers in a dashboard snapshot. */
const _DASHBOARD_SERVERS = 1000;

/**
 * Builds the HTTP API.
 *
 * @example
 * ```ts
 * import { createHttpApi } from "./http_api.ts";
 * import { serveHttp } from "./http_server.ts";
 * import { Monitor } from "../lb/monitor.ts";
 * import { MemoryTransport } from "../transport/memory.ts";
 * import { createHmacSigner, generateSecret } from "../security/jwt.ts";
 * const signer = createHmacSigner(new TextEncoder().encode(generateSecret()), { lbId: "lb-1" });
 * const monitor = new Monitor({ transport: new MemoryTransport(), signer, servers: [], insecure: true });
 * const api = createHttpApi({ monitor, lbId: "lb-1", startedAt: Date.now(), version: "0.1.0" });
 * const server = serveHttp({ hostname: "127.0.0.1", port: 0, handler: api.handler });
 * ```
 */
export function createHttpApi(options: HttpApiOptions): HttpApi {
  const { monitor } = options;
  // Requests come from anyone: what they make the LB log is limited.
  const log = rateLimited(options.log ?? silentLogger, 10_000, 20);
  const requireAdmin = bearerGuard(options.adminToken);
  const maxSubscribers = options.maxSubscribers ?? LB_DEFAULTS.maxSubscribers;

  const snapshot = () => {
    // One pass over the servers serves both the service counts and the page.
    const all = monitor.status();
    return {
      lb_id: options.lbId,
      time: new Date().toISOString(),
      // The dashboard shows a page: a fleet of thousands would make every event huge.
      servers_total: all.length,
      services: servicesOf(all).map((s) => ({
        name: s.name,
        healthy: s.healthy,
        total: s.total,
      })),
      servers: all.slice(0, _DASHBOARD_SERVERS).map((v) => ({
        ...v,
        history: (monitor.history(v.address, DASHBOARD_POINTS) ?? []).map((r) => ({
          t: r.time,
          r: r.rtt_ms,
          c: r.cpu,
          m: r.mem,
          ok: r.result === "ok",
        })),
      })),
    };
  };
  const feed = new EventFeed(
    monitor,
    () => JSON.stringify(snapshot()),
    1000 / (options.eventsPerSecond ?? LB_DEFAULTS.eventsPerSecond),
  );

  // Round-robin and weighted picks keep their place per service.
  const serviceSelectors = new Map<string, Selector>();
  const router = new Router()
    .add("GET", "/", () => _html(DASHBOARD_HTML))
    .add("GET", "/index.html", () => _html(DASHBOARD_HTML))
    .add(
      "GET",
      "/status",
      (_req, _p, url) =>
        json({
          lb_id: options.lbId,
          time: new Date().toISOString(),
          // Each service with how many of its servers should get traffic.
          services: servicesOf(monitor.status()).map((s) => ({
            name: s.name,
            healthy: s.healthy,
            total: s.total,
          })),
          ..._page(url, monitor),
        }),
    )
    .add("GET", "/api/services", () => json({ services: servicesOf(monitor.status()) }))
    .add("GET", "/api/services/:name", (_req, p) => {
      const s = servicesOf(monitor.status()).find((x) => x.name === p.name);
      if (!s) throw new HttpError(404, `unknown service ${JSON.stringify(p.name!.slice(0, 63))}`);
      return json(s);
    })
    .add("GET", "/healthz", () =>
      json({
        status: "ok",
        lb_id: options.lbId,
        version: options.version,
        uptime_s: Math.round((Date.now() - options.startedAt) / 1000),
      }))
    .add(
      "GET",
      "/metrics",
      () =>
        new Response(renderPrometheus(metricsSnapshot(monitor, options.version)), {
          headers: {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
            "cache-control": "no-store",
          },
        }),
    )
    .add("GET", "/health/:address", (_req, p) => {
      const v = _server(monitor, p.address!);
      return json(
        { address: v.address, state: v.state, status: v.status, weight: v.weight },
        v.state === "UP" ? 200 : 503,
      );
    })
    .add("GET", "/api/servers", (_req, _p, url) => json(_page(url, monitor)))
    .add("POST", "/api/servers", async (req) => {
      requireAdmin(req);
      const body = await _body(req);
      _only(body, ["address"]);
      if (typeof body.address !== "string") {
        throw new HttpError(400, "field 'address' must be a string host:port");
      }
      let target: ReturnType<typeof parseServerAddress>;
      try {
        target = parseServerAddress(body.address);
      } catch (e) {
        throw new HttpError(400, `field 'address': ${(e as Error).message}`);
      }
      let address: string;
      try {
        address = await monitor.addServer(target);
      } catch (e) {
        if (!(e instanceof ServerSetError)) throw e;
        throw new HttpError(e.kind === "already_watched" ? 409 : 507, e.message);
      }
      log.info("server added over HTTP", { server: address });
      return json({ server: monitor.server(address) }, 201);
    })
    .add("GET", "/api/servers/:address", (_req, p, url) => {
      const v = _server(monitor, p.address!);
      const limit = _intParam(url, "history", _HISTORY_PAGE, 1, 3000);
      return json({ ...v, history: monitor.history(v.address, limit) ?? [] });
    })
    .add("DELETE", "/api/servers/:address", async (req, p) => {
      requireAdmin(req);
      const v = _server(monitor, p.address!);
      await monitor.removeServer(v.address);
      log.info("server removed over HTTP", { server: v.address });
      return json({ removed: v.address });
    })
    .add("GET", "/api/pick", (_req, _p, url) => {
      const strategy = url.searchParams.get("strategy") ?? "weighted";
      if (!isStrategy(strategy)) {
        throw new HttpError(
          400,
          `query 'strategy' must be one of ${STRATEGIES.join(", ")}, got ${
            JSON.stringify(strategy.slice(0, 40))
          }`,
        );
      }
      const name = url.searchParams.get("service");
      if (name !== null) {
        // Among the servers that front this service, at the service's port.
        const service = servicesOf(monitor.status()).find((s) => s.name === name);
        if (!service) {
          throw new HttpError(404, `unknown service ${JSON.stringify(name.slice(0, 63))}`);
        }
        let selector = serviceSelectors.get(name);
        if (!selector) serviceSelectors.set(name, selector = new Selector());
        const pick = selector.pick(serviceCandidates(service), strategy);
        return pick.ok
          ? json({ address: pick.address, weight: pick.weight, service: name, strategy })
          : json({ error: pick.reason, service: name, strategy }, 503);
      }
      const pick = monitor.pick(strategy);
      return pick.ok
        ? json({ address: pick.address, weight: pick.weight, load: pick.load, strategy })
        : json({ error: pick.reason, strategy }, 503);
    })
    .add("POST", "/api/config", async (req) => {
      requireAdmin(req);
      const body = await _body(req);
      _only(body, ["interval_ms", "metrics", "servers"]);
      const { servers: list, ...config } = body;
      const servers = list === undefined ? undefined : _knownServers(monitor, list);
      if (Object.keys(config).length === 0) {
        throw new HttpError(400, "nothing to change: give 'interval_ms' and/or 'metrics'");
      }
      let results: Awaited<ReturnType<ServerDirectory["configure"]>>;
      try {
        results = await monitor.configure(config, servers);
      } catch (e) {
        // The codec's check, said in the API's words.
        if (e instanceof ConfigError) {
          throw new HttpError(400, `field '${e.field}' must be ${e.expected}`);
        }
        if (e instanceof RangeError) throw new HttpError(400, e.message);
        throw e;
      }
      log.info("config update over HTTP", {
        servers: results.length,
        ok: results.filter((r) => r.ok).length,
      });
      return json({
        ok: results.every((r) => r.ok),
        applied: results.applied,
        interval_ms: monitor.settings.checkIntervalMs,
        results: [...results],
      }, results.applied ? 200 : 422);
    })
    .add("GET", "/api/events", () => {
      if (feed.subscribers >= maxSubscribers) {
        throw new HttpError(
          503,
          `${maxSubscribers} event-stream subscribers already; try again later`,
          { "retry-after": "10" },
        );
      }
      return new Response(feed.subscribe(), {
        headers: {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
          "x-accel-buffering": "no",
        },
      });
    })
    .add("GET", "/api/snapshot", () => json(snapshot()))
    .add("GET", "/api/totals", () => json(monitor.totals()));

  return {
    handler: async (req: Request): Promise<Response> => {
      try {
        return await router.handle(req);
      } catch (e) {
        if (e instanceof HttpError) return json({ error: e.message }, e.status, e.headers);
        // Never copy unbounded client input into a log line.
        log.error("HTTP handler failed", {
          error: oneLine((e as Error).message).slice(0, 200),
          path: oneLine(new URL(req.url).pathname).slice(0, 100),
        });
        return json({ error: "internal error" }, 500);
      }
    },
    close() {
      feed.close();
    },
  };
}

/** The `servers` field of POST /api/config: watched addresses, in their canonical form. */
function _knownServers(monitor: ServerDirectory, v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) {
    throw new HttpError(400, "field 'servers' must be a non-empty array of host:port strings");
  }
  return v.map((a) => {
    let known: WatchView | undefined;
    try {
      known = monitor.server(a);
    } catch {
      known = undefined;
    }
    if (!known) {
      throw new HttpError(
        400,
        `field 'servers': unknown server ${JSON.stringify(a.slice(0, 100))}`,
      );
    }
    return known.address;
  });
}

/** An integer query parameter in a range, or 400 naming it. */
function _intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new HttpError(
      400,
      `query '${name}' must be an integer in ${min}..${max}, got ${
        JSON.stringify(text.slice(0, 20))
      }`,
    );
  }
  return n;
}

/** One page of the server list (`offset`, `limit`), with the total and the next offset. */
function _page(url: URL, monitor: ServerDirectory): Record<string, unknown> {
  const offset = _intParam(url, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const limit = _intParam(url, "limit", _PAGE, 1, 10_000);
  const servers = monitor.status(offset, limit);
  const total = monitor.size;
  const next = offset + servers.length < total ? offset + servers.length : null;
  return { total, offset, next, servers };
}

/** One server by its address in a path, or 404. */
function _server(monitor: ServerDirectory, address: string): WatchView {
  let v: WatchView | undefined;
  try {
    v = monitor.server(address);
  } catch {
    throw new HttpError(400, `bad server address ${JSON.stringify(address.slice(0, 100))}`);
  }
  if (!v) throw new HttpError(404, `unknown server ${address.slice(0, 100)}`);
  return v;
}

async function _body(req: Request): Promise<Record<string, unknown>> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > _MAX_BODY) {
    throw new HttpError(413, `body of ${declared} bytes exceeds ${_MAX_BODY}`);
  }
  const text = await req.text();
  if (text.length > _MAX_BODY) throw new HttpError(413, `body exceeds ${_MAX_BODY} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `body is not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function _only(body: Record<string, unknown>, allowed: string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      throw new HttpError(
        400,
        `unknown field '${key.slice(0, 40)}', expected ${allowed.map((a) => `'${a}'`).join(", ")}`,
      );
    }
  }
}

function _html(text: string): Response {
  return new Response(text, {
    headers: {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      // Everything the page needs comes from this origin.
      "content-security-policy":
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
    },
  });
}
