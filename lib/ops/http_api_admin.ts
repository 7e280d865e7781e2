/**
 * The HTTP API for operators: adding and removing servers
 * (`POST /api/servers`, `DELETE /api/servers/{address}`) and runtime
 * configuration (`POST /api/config`). Each requires
 * `Authorization: Bearer <token>` with the admin token; bad JSON, unknown
 * fields and out-of-range values get 400 with a message naming the field.
 *
 * @module
 */

import { ServerSetError } from "../lb/monitor.ts";
import type { ServerDirectory } from "../lb/directory.ts";
import type { WatchView } from "../lb/watch.ts";
import { parseServerAddress } from "../protocol/address.ts";
import { ConfigError } from "../protocol/errors.ts";
import type { Logger } from "../util/log.ts";
import { _body, _only, _server } from "./http_api_input.ts";
import { HttpError, json, type Router } from "./routes.ts";

/**
 * Adds the mutating routes to `router`.
 *
 * @param requireAdmin throws unless the request carries the admin token
 * @param log where each change is logged
 */
export function _adminRoutes(
  router: Router,
  monitor: ServerDirectory,
  requireAdmin: (req: Request) => void,
  log: Logger,
): void {
  router
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
    .add("DELETE", "/api/servers/:address", async (req, p) => {
      requireAdmin(req);
      const v = _server(monitor, p.address!);
      await monitor.removeServer(v.address);
      log.info("server removed over HTTP", { server: v.address });
      return json({ removed: v.address });
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
    });
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
