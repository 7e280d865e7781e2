/**
 * The LB's HTTP endpoint: the verdict for people (a live dashboard), for
 * data planes (`/health/{address}`, `/api/pick`), for Prometheus (`/metrics`)
 * and for operators (runtime configuration and server changes). A plain
 * `(Request) => Response` handler, tested without a socket and served by
 * `Deno.serve` in `lb.ts`.
 *
 * Reads are open. Mutating endpoints require `Authorization: Bearer <token>`
 * with the admin token; bad JSON, unknown fields and out-of-range values get
 * 400 with a message naming the field.
 *
 * @module
 */

import { DASHBOARD_HTML, DASHBOARD_POINTS } from "./dashboard.ts";
import type { Logger } from "./log.ts";
import { rateLimited, silentLogger } from "./log.ts";
import { type Monitor, parseServerAddress, ServerSetError } from "./monitor.ts";
import { renderPrometheus } from "./prometheus.ts";
import { MAX_INTERVAL_MS, MIN_INTERVAL_MS, type SessionConfig } from "./protocol.ts";
import { isStrategy, STRATEGIES } from "./select.ts";
import { oneLine } from "./status_table.ts";
import type { WatchView } from "./watch.ts";

/** Options of {@linkcode createHttpApi}. */
export interface HttpApiOptions {
  monitor: Monitor;
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
const _encoder = new TextEncoder();

class _HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Builds the HTTP API.
 *
 * @example
 * ```ts
 * import { createHttpApi } from "./http_api.ts";
 * const api = createHttpApi({ monitor, lbId: "lb-1", startedAt: Date.now(), version: "0.1.0", adminToken });
 * Deno.serve({ port: 4242 }, api.handler);
 * ```
 */
export function createHttpApi(options: HttpApiOptions): HttpApi {
  const { monitor } = options;
  // Requests come from anyone: what they make the LB log is limited.
  const log = rateLimited(options.log ?? silentLogger, 10_000, 20);
  const minGapMs = 1000 / (options.eventsPerSecond ?? 4);
  const adminToken = options.adminToken === undefined
    ? undefined
    : _encoder.encode(options.adminToken);

  const requireAdmin = (req: Request) => {
    if (!adminToken) {
      throw new _HttpError(403, "mutating endpoints are disabled: the LB has no admin token");
    }
    const auth = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m || !_safeEqual(_encoder.encode(m[1]!), adminToken)) {
      throw new _HttpError(401, "missing or wrong bearer token", {
        "www-authenticate": 'Bearer realm="qhcp"',
      });
    }
  };

  const snapshot = () => ({
    lb_id: options.lbId,
    time: new Date().toISOString(),
    // The dashboard shows a page: a fleet of thousands would make every event huge.
    servers_total: monitor.size,
    servers: monitor.status(0, _DASHBOARD_SERVERS).map((v) => ({
      ...v,
      history: (monitor.history(v.address, DASHBOARD_POINTS) ?? []).map((r) => ({
        t: r.time,
        r: r.rtt_ms,
        c: r.cpu,
        m: r.mem,
        ok: r.result === "ok",
      })),
    })),
  });

  const feed = new _EventFeed(monitor, () => JSON.stringify(snapshot()), minGapMs);
  const maxSubscribers = options.maxSubscribers ?? 100;
  const events = (): Response => {
    if (feed.subscribers >= maxSubscribers) {
      throw new _HttpError(
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
  };

  const handle = (req: Request): Promise<Response> | Response => {
    const url = new URL(req.url);
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
    const method = req.method === "HEAD" ? "GET" : req.method;
    let seg: string[];
    try {
      seg = path.split("/").slice(1).map((s) => decodeURIComponent(s));
    } catch {
      throw new _HttpError(400, "bad percent-encoding in the path");
    }
    const route = (...handlers: [string, () => Promise<Response> | Response][]) => {
      for (const [m, h] of handlers) if (m === method) return h();
      const allow = handlers.map(([m]) => m).join(", ");
      throw new _HttpError(405, `method ${req.method} not allowed`, { allow });
    };

    if (path === "/" || path === "/index.html") {
      return route(["GET", () => _html(DASHBOARD_HTML)]);
    }
    if (path === "/status") {
      return route([
        "GET",
        () =>
          _json({
            lb_id: options.lbId,
            time: new Date().toISOString(),
            ..._page(url, monitor),
          }),
      ]);
    }
    if (path === "/healthz") {
      return route(["GET", () =>
        _json({
          status: "ok",
          lb_id: options.lbId,
          version: options.version,
          uptime_s: Math.round((Date.now() - options.startedAt) / 1000),
        })]);
    }
    if (path === "/metrics") {
      return route([
        "GET",
        () =>
          new Response(renderPrometheus(monitor.metricsSnapshot(options.version)), {
            headers: {
              "content-type": "text/plain; version=0.0.4; charset=utf-8",
              "cache-control": "no-store",
            },
          }),
      ]);
    }
    if (seg[0] === "health" && seg.length === 2) {
      return route(["GET", () => {
        const v = _server(monitor, seg[1]!);
        return _json(
          { address: v.address, state: v.state, status: v.status, weight: v.weight },
          v.state === "UP" ? 200 : 503,
        );
      }]);
    }
    if (seg[0] === "api") {
      const what = seg.slice(1).join("/");
      if (what === "servers") {
        return route(["GET", () => _json(_page(url, monitor))], [
          "POST",
          async () => {
            requireAdmin(req);
            const body = await _body(req);
            _only(body, ["address"]);
            if (typeof body.address !== "string") {
              throw new _HttpError(400, "field 'address' must be a string host:port");
            }
            let target: ReturnType<typeof parseServerAddress>;
            try {
              target = parseServerAddress(body.address);
            } catch (e) {
              throw new _HttpError(400, `field 'address': ${(e as Error).message}`);
            }
            let address: string;
            try {
              address = monitor.addServer(target);
            } catch (e) {
              if (!(e instanceof ServerSetError)) throw e;
              throw new _HttpError(e.kind === "already_watched" ? 409 : 507, e.message);
            }
            log.info("server added over HTTP", { server: address });
            return _json({ server: monitor.server(address) }, 201);
          },
        ]);
      }
      if (seg[1] === "servers" && seg.length === 3) {
        return route(["GET", () => {
          const v = _server(monitor, seg[2]!);
          const limit = _intParam(url, "history", _HISTORY_PAGE, 1, 3000);
          return _json({ ...v, history: monitor.history(v.address, limit) ?? [] });
        }], ["DELETE", async () => {
          requireAdmin(req);
          const v = _server(monitor, seg[2]!);
          await monitor.removeServer(v.address);
          log.info("server removed over HTTP", { server: v.address });
          return _json({ removed: v.address });
        }]);
      }
      if (what === "pick") {
        return route(["GET", () => {
          const strategy = url.searchParams.get("strategy") ?? "weighted";
          if (!isStrategy(strategy)) {
            throw new _HttpError(
              400,
              `query 'strategy' must be one of ${STRATEGIES.join(", ")}, got ${
                JSON.stringify(strategy)
              }`,
            );
          }
          const pick = monitor.pick(strategy);
          return pick.ok
            ? _json({
              address: pick.address,
              weight: pick.weight,
              load: pick.load,
              strategy: pick.strategy,
            })
            : _json({ error: pick.reason, strategy }, 503);
        }]);
      }
      if (what === "config") {
        return route(["POST", async () => {
          requireAdmin(req);
          const body = await _body(req);
          _only(body, ["interval_ms", "metrics", "servers"]);
          const config: Partial<SessionConfig> = {};
          if (body.interval_ms !== undefined) {
            const v = body.interval_ms;
            if (
              typeof v !== "number" || !Number.isInteger(v) || v < MIN_INTERVAL_MS ||
              v > MAX_INTERVAL_MS
            ) {
              throw new _HttpError(
                400,
                `field 'interval_ms' must be an integer in ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`,
              );
            }
            config.interval_ms = v;
          }
          if (body.metrics !== undefined) {
            const v = body.metrics;
            if (!Array.isArray(v) || !v.every((x) => typeof x === "string" && x.length > 0)) {
              throw new _HttpError(400, "field 'metrics' must be an array of non-empty strings");
            }
            config.metrics = v as string[];
          }
          let servers: string[] | undefined;
          if (body.servers !== undefined) {
            const v = body.servers;
            if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) {
              throw new _HttpError(
                400,
                "field 'servers' must be a non-empty array of host:port strings",
              );
            }
            servers = v.map((a) => {
              const known = monitor.server(a as string);
              if (!known) {
                throw new _HttpError(400, `field 'servers': unknown server ${JSON.stringify(a)}`);
              }
              return known.address;
            });
          }
          if (Object.keys(config).length === 0) {
            throw new _HttpError(400, "nothing to change: give 'interval_ms' and/or 'metrics'");
          }
          let results: Awaited<ReturnType<Monitor["configure"]>>;
          try {
            results = await monitor.configure(config, servers);
          } catch (e) {
            if (e instanceof RangeError) throw new _HttpError(400, e.message);
            throw e;
          }
          log.info("config update over HTTP", {
            servers: results.length,
            ok: results.filter((r) => r.ok).length,
          });
          return _json({
            ok: results.every((r) => r.ok),
            applied: results.applied,
            interval_ms: monitor.settings.checkIntervalMs,
            results: [...results],
          }, results.applied ? 200 : 422);
        }]);
      }
      if (what === "events") return route(["GET", events]);
      if (what === "snapshot") return route(["GET", () => _json(snapshot())]);
      if (what === "totals") return route(["GET", () => _json(monitor.totals())]);
    }
    throw new _HttpError(404, `no route for ${req.method} ${url.pathname}`);
  };

  return {
    handler: async (req: Request): Promise<Response> => {
      try {
        return await handle(req);
      } catch (e) {
        if (e instanceof _HttpError) return _json({ error: e.message }, e.status, e.headers);
        // Never copy unbounded client input into a log line.
        log.error("HTTP handler failed", {
          error: oneLine((e as Error).message).slice(0, 200),
          path: oneLine(new URL(req.url).pathname).slice(0, 100),
        });
        return _json({ error: "internal error" }, 500);
      }
    },
    close() {
      feed.close();
    },
  };
}

/** Servers per page of `/status` and `/api/servers` unless `limit` says otherwise. */
const _PAGE = 1000;
/** Checks of one server's history returned unless `history` says otherwise. */
const _HISTORY_PAGE = 300;
/** Servers in a dashboard snapshot. */
const _DASHBOARD_SERVERS = 1000;

/** An integer query parameter in a range, or 400 naming it. */
function _intParam(url: URL, name: string, fallback: number, min: number, max: number): number {
  const text = url.searchParams.get(name);
  if (text === null) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new _HttpError(
      400,
      `query '${name}' must be an integer in ${min}..${max}, got ${
        JSON.stringify(text.slice(0, 20))
      }`,
    );
  }
  return n;
}

/** One page of the server list (`offset`, `limit`), with the total and the next offset. */
function _page(url: URL, monitor: Monitor): Record<string, unknown> {
  const offset = _intParam(url, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const limit = _intParam(url, "limit", _PAGE, 1, 10_000);
  const servers = monitor.status(offset, limit);
  const total = monitor.size;
  const next = offset + servers.length < total ? offset + servers.length : null;
  return { total, offset, next, servers };
}

/** One server by its address in a path, or 404. */
function _server(monitor: Monitor, address: string): WatchView {
  let v: WatchView | undefined;
  try {
    v = monitor.server(address);
  } catch {
    throw new _HttpError(400, `bad server address ${JSON.stringify(address)}`);
  }
  if (!v) throw new _HttpError(404, `unknown server ${address}`);
  return v;
}

async function _body(req: Request): Promise<Record<string, unknown>> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > _MAX_BODY) {
    throw new _HttpError(413, `body of ${declared} bytes exceeds ${_MAX_BODY}`);
  }
  const text = await req.text();
  if (text.length > _MAX_BODY) throw new _HttpError(413, `body exceeds ${_MAX_BODY} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new _HttpError(400, `body is not JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new _HttpError(400, "body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

function _only(body: Record<string, unknown>, allowed: string[]): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      throw new _HttpError(
        400,
        `unknown field '${key}', expected ${allowed.map((a) => `'${a}'`).join(", ")}`,
      );
    }
  }
}

/** Compares secrets in time independent of where they differ. */
function _safeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

function _json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    },
  });
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

/** The comment line that keeps proxies from closing an idle event stream. */
const _KEEPALIVE = _encoder.encode(": keep-alive\n\n");
/** A keep-alive comment after this long without an event, ms. */
const _KEEPALIVE_MS = 15_000;

/**
 * The dashboard's event stream for every subscriber. The snapshot is built
 * once per change for all of them (not once per subscriber), and a
 * subscriber is sent only the latest snapshot when it is ready for more: a
 * client that reads slowly, or not at all, holds at most one snapshot, never
 * a queue of old ones (its stream is pulled as its connection drains).
 */
class _EventFeed {
  readonly #build: () => string;
  readonly #minGapMs: number;
  #version = 0;
  #built: { version: number; bytes: Uint8Array } | undefined;
  readonly #wakers = new Set<() => void>();
  readonly #closers = new Set<() => void>();
  #unsubscribe: (() => void) | undefined;
  readonly #monitor: Monitor;

  constructor(monitor: Monitor, build: () => string, minGapMs: number) {
    this.#monitor = monitor;
    this.#build = build;
    this.#minGapMs = minGapMs;
  }

  get subscribers(): number {
    return this.#closers.size;
  }

  /** The latest snapshot as one event, built at most once per change. */
  #latest(): { version: number; bytes: Uint8Array } {
    if (this.#built?.version !== this.#version) {
      this.#built = {
        version: this.#version,
        bytes: _encoder.encode(`event: status\ndata: ${this.#build()}\n\n`),
      };
    }
    return this.#built;
  }

  #changed = () => {
    this.#version++;
    for (const wake of [...this.#wakers]) wake();
  };

  /** A new subscriber's stream. */
  subscribe(): ReadableStream<Uint8Array> {
    if (this.#closers.size === 0) this.#unsubscribe = this.#monitor.subscribe(this.#changed);
    let sent = -1;
    let lastAt = 0;
    let ended = false;
    let wake = () => {};
    const end = () => {
      if (ended) return;
      ended = true;
      this.#closers.delete(close);
      this.#wakers.delete(wake);
      wake();
      if (this.#closers.size === 0) {
        this.#unsubscribe?.();
        this.#unsubscribe = undefined;
      }
    };
    let controllerRef: ReadableStreamDefaultController<Uint8Array> | undefined;
    const close = () => {
      end();
      try {
        controllerRef?.close();
      } catch { /* already closed */ }
    };
    this.#closers.add(close);
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        controllerRef = controller;
      },
      // Called only when the consumer wants more: that is the backpressure.
      pull: async (controller) => {
        if (ended) return;
        if (sent >= 0) {
          // Wait for a change, or send a keep-alive after a quiet while.
          const changed = await new Promise<boolean>((resolve) => {
            if (this.#version !== sent) return resolve(true);
            const timer = setTimeout(() => done(false), _KEEPALIVE_MS);
            const done = (v: boolean) => {
              clearTimeout(timer);
              this.#wakers.delete(wake);
              resolve(v);
            };
            wake = () => done(true);
            this.#wakers.add(wake);
          });
          if (ended) return;
          if (!changed) return controller.enqueue(_KEEPALIVE);
          const wait = lastAt + this.#minGapMs - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          if (ended) return;
        }
        const latest = this.#latest();
        sent = latest.version;
        lastAt = Date.now();
        controller.enqueue(latest.bytes);
      },
      cancel: () => end(),
    }, { highWaterMark: 0 });
  }

  /** Ends every stream (before the server shuts down). */
  close(): void {
    for (const close of [...this.#closers]) close();
  }
}
