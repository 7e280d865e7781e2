/**
 * The HTTP API's reads for tools: the status (`/status`), services, servers
 * one page at a time or one with its check history, totals, the LB's own
 * health (`/healthz`) and Prometheus metrics (`/metrics`).
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import type { WatchView } from "../lb/record.ts";
import { servicesOf } from "../lb/services.ts";
import { _intParam, _server } from "./http_api_input.ts";
import { metricsSnapshot, renderPrometheus } from "./prometheus.ts";
import { HttpError, json, type Router } from "./routes.ts";

/** Servers per page of `/status` and `/api/servers` unless `limit` says otherwise. */
const _PAGE = 1000;
/** Checks of one server's history returned unless `history` says otherwise. */
const _HISTORY_PAGE = 300;

/**
 * Adds the read-only status routes to `router`.
 *
 * @param about.startedAt when the LB started (ms since epoch)
 * @param about.version program version for /healthz and /metrics
 */
export function _statusRoutes(
  router: Router,
  monitor: ServerDirectory,
  about: { lbId: string; startedAt: number; version: string },
): void {
  router
    .add(
      "GET",
      "/status",
      (_req, _p, url) => {
        // One view per server, for the services and the page alike.
        const all = monitor.status();
        return json({
          lb_id: about.lbId,
          time: new Date().toISOString(),
          // Each service with how many of its servers should get traffic.
          services: servicesOf(all).map((s) => ({
            name: s.name,
            healthy: s.healthy,
            total: s.total,
          })),
          ..._page(url, all.length, (offset, limit) => all.slice(offset, offset + limit)),
        });
      },
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
        lb_id: about.lbId,
        version: about.version,
        uptime_s: Math.round((Date.now() - about.startedAt) / 1000),
      }))
    .add(
      "GET",
      "/metrics",
      () =>
        new Response(renderPrometheus(metricsSnapshot(monitor, about.version)), {
          headers: {
            "content-type": "text/plain; version=0.0.4; charset=utf-8",
            "cache-control": "no-store",
          },
        }),
    )
    .add(
      "GET",
      "/api/servers",
      (_req, _p, url) => json(_page(url, monitor.size, (o, l) => monitor.status(o, l))),
    )
    .add("GET", "/api/servers/:address", (_req, p, url) => {
      const v = _server(monitor, p.address!);
      const limit = _intParam(url, "history", _HISTORY_PAGE, 1, 3000);
      return json({ ...v, history: monitor.history(v.address, limit) ?? [] });
    })
    .add("GET", "/api/totals", () => json(monitor.totals()));
}

/**
 * One page of the server list (`offset`, `limit` from `url`) out of `total`,
 * with the next offset; `views` gives the servers of a range.
 */
function _page(
  url: URL,
  total: number,
  views: (offset: number, limit: number) => WatchView[],
): Record<string, unknown> {
  const offset = _intParam(url, "offset", 0, 0, Number.MAX_SAFE_INTEGER);
  const limit = _intParam(url, "limit", _PAGE, 1, 10_000);
  const servers = views(offset, limit);
  const next = offset + servers.length < total ? offset + servers.length : null;
  return { total, offset, next, servers };
}
