/**
 * The LB's HTTP endpoint. A plain `(Request) => Response` handler, so it is
 * tested without a socket and served by `Deno.serve` in `lb.ts`.
 *
 * Routes:
 * - `GET /status`: every server's verdict and latest figures;
 * - `GET /healthz`: the LB's own liveness.
 *
 * @module
 */

import type { Monitor } from "./monitor.ts";

/** Options of {@linkcode createHttpHandler}. */
export interface HttpApiOptions {
  monitor: Monitor;
  lbId: string;
  /** When the LB started (ms since epoch). */
  startedAt: number;
  /** Program version for /healthz. */
  version: string;
}

/**
 * Builds the request handler.
 *
 * @example
 * ```ts
 * import { createHttpHandler } from "./http_api.ts";
 * const handler = createHttpHandler({ monitor, lbId: "lb-1", startedAt: Date.now(), version: "0.1.0" });
 * const res = await handler(new Request("http://lb/status"));
 * ```
 */
export function createHttpHandler(options: HttpApiOptions): (req: Request) => Promise<Response> {
  const { monitor } = options;
  return async (req: Request): Promise<Response> => {
    await Promise.resolve();
    const url = new URL(req.url);
    const route = `${req.method} ${url.pathname.replace(/\/+$/, "") || "/"}`;
    switch (route) {
      case "GET /status":
      case "HEAD /status":
        return _json({
          lb_id: options.lbId,
          time: new Date().toISOString(),
          servers: monitor.status(),
        });
      case "GET /healthz":
      case "HEAD /healthz":
        return _json({
          status: "ok",
          lb_id: options.lbId,
          version: options.version,
          uptime_s: Math.round((Date.now() - options.startedAt) / 1000),
        });
      default: {
        const known = ["/status", "/healthz"].includes(url.pathname.replace(/\/+$/, ""));
        return known
          ? _json({ error: `method ${req.method} not allowed` }, 405, { allow: "GET, HEAD" })
          : _json({ error: `no route for ${req.method} ${url.pathname}` }, 404);
      }
    }
  };
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
