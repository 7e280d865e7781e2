/**
 * The HTTP API for people: the dashboard page (`/`), the snapshot it draws
 * (`/api/snapshot`), and the event stream that pushes a new snapshot on every
 * change (`/api/events`), with its cap on subscribers.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { servicesOf } from "../lb/services.ts";
import { DASHBOARD_HTML, DASHBOARD_POINTS } from "./dashboard.ts";
import { EventFeed } from "./events.ts";
import { HttpError, json, type Router } from "./routes.ts";

/** Servers in a dashboard snapshot. */
const _DASHBOARD_SERVERS = 1000;

/**
 * Adds the dashboard's routes to `router`.
 *
 * @param options.eventsPerSecond most dashboard pushes per second per listener
 * @param options.maxSubscribers event-stream subscribers at once; more get 503
 * @returns a way to end every open event stream
 */
export function _dashboardRoutes(
  router: Router,
  monitor: ServerDirectory,
  options: { lbId: string; eventsPerSecond: number; maxSubscribers: number },
): { close(): void } {
  const { maxSubscribers } = options;
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
    1000 / options.eventsPerSecond,
  );

  router
    .add("GET", "/", () => _html(DASHBOARD_HTML))
    .add("GET", "/index.html", () => _html(DASHBOARD_HTML))
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
    .add("GET", "/api/snapshot", () => json(snapshot()));

  return {
    close() {
      feed.close();
    },
  };
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
