/**
 * The HTTP API for data planes: one server's verdict as a status code
 * (`/health/{address}`) and a pick of a server to send traffic to
 * (`/api/pick`), over the whole set or among one service's servers.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { isStrategy, Selector, STRATEGIES } from "../lb/select.ts";
import { serviceCandidates, servicesOf } from "../lb/services.ts";
import { _server } from "./http_api_input.ts";
import { HttpError, json, type Router } from "./routes.ts";

/** Adds the data-plane routes to `router`. */
export function _dataPlaneRoutes(router: Router, monitor: ServerDirectory): void {
  // Round-robin and weighted picks keep their place per service.
  const serviceSelectors = new Map<string, Selector>();
  router
    .add("GET", "/health/:address", (_req, p) => {
      const v = _server(monitor, p.address!);
      return json(
        { address: v.address, state: v.state, status: v.status, weight: v.weight },
        v.state === "UP" ? 200 : 503,
      );
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
    });
}
