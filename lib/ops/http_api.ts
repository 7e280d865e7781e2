/**
 * The LB's HTTP API: the verdict for people (a live dashboard,
 * `http_api_dashboard.ts`), for data planes (`/health/{address}`,
 * `/api/pick`, `http_api_data_plane.ts`), for tools and Prometheus
 * (`/status`, `/metrics`, `http_api_status.ts`) and for operators (runtime
 * configuration and server changes, `http_api_admin.ts`), as one route table
 * over a {@linkcode ServerDirectory} (a `Monitor`, or the fleet). A plain
 * `(Request) => Response` handler, tested without a socket and served by
 * `http_server.ts`.
 *
 * Reads are open; mutating endpoints require the admin token.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import type { ServerDirectory } from "../lb/directory.ts";
import { type Logger, rateLimited, silentLogger } from "../util/log.ts";
import { oneLine } from "../util/text.ts";
import { bearerGuard } from "./admin_auth.ts";
import { _adminRoutes } from "./http_api_admin.ts";
import { _dashboardRoutes } from "./http_api_dashboard.ts";
import { _dataPlaneRoutes } from "./http_api_data_plane.ts";
import { _statusRoutes } from "./http_api_status.ts";
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
  const router = new Router();
  const feed = _dashboardRoutes(router, monitor, {
    lbId: options.lbId,
    eventsPerSecond: options.eventsPerSecond ?? LB_DEFAULTS.eventsPerSecond,
    maxSubscribers: options.maxSubscribers ?? LB_DEFAULTS.maxSubscribers,
  });
  _statusRoutes(router, monitor, options);
  _dataPlaneRoutes(router, monitor);
  // After the reads: a path's `Allow` lists GET first.
  _adminRoutes(router, monitor, bearerGuard(options.adminToken), log);

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
