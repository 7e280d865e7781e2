/**
 * Services: what agents say they front (`--service web:8080` on the agent,
 * advertised in ACK), grouped across servers. The verdict of an agent is the
 * verdict of every service it fronts: a FAILING or DOWN agent takes its
 * services out with it. Pure: views in, services out.
 *
 * @module
 */

import { formatAddress, hostOf } from "../protocol/address.ts";
import type { ServerStatus } from "../protocol/wire.ts";
import type { WatchView } from "./record.ts";
import type { Candidate } from "./select.ts";
import type { HealthState } from "./verdict.ts";

/** One server's instance of a service. */
export interface ServiceInstance {
  /** The QHCP server (agent) address. */
  server: string;
  /** Where the service listens: the agent's host and the service's port. */
  host: string;
  port: number;
  /** `host:port` of the service. */
  address: string;
  tags: string[];
  state: HealthState;
  status: ServerStatus | null;
  weight: number;
  /** The server's load (0..100), or null. */
  load: number | null;
  /** UP, not draining or failing, weight above 0: it should get traffic. */
  healthy: boolean;
}

/** A service across the fleet of servers. */
export interface ServiceView {
  name: string;
  total: number;
  healthy: number;
  instances: ServiceInstance[];
}

/** True when a server should get traffic for its services. */
export function servesTraffic(v: WatchView): boolean {
  return v.state === "UP" && v.status !== "DRAINING" && v.status !== "FAILING" && v.weight > 0;
}

/**
 * Groups the servers' advertised services, by name (sorted), each with its
 * instances in the order of the servers.
 *
 * @example
 * ```ts
 * import { servicesOf } from "./services.ts";
 * import type { Monitor } from "./monitor.ts";
 * declare const monitor: Monitor;
 * servicesOf(monitor.status()); // [{ name: "web", total: 3, healthy: 2, instances: [...] }]
 * ```
 */
export function servicesOf(views: readonly WatchView[]): ServiceView[] {
  const byName = new Map<string, ServiceView>();
  for (const v of views) {
    const healthy = servesTraffic(v);
    const host = hostOf(v.address);
    for (const s of v.services) {
      let view = byName.get(s.name);
      if (!view) byName.set(s.name, view = { name: s.name, total: 0, healthy: 0, instances: [] });
      view.total++;
      if (healthy) view.healthy++;
      view.instances.push({
        server: v.address,
        host,
        port: s.port,
        address: formatAddress(host, s.port),
        tags: s.tags ?? [],
        state: v.state,
        status: v.status,
        weight: v.weight,
        load: v.load,
        healthy,
      });
    }
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** A service's instances as candidates for a {@linkcode Selector} (addressed at the service's port). */
export function serviceCandidates(service: ServiceView): Candidate[] {
  return service.instances.map((i) => ({
    address: i.address,
    state: i.state,
    status: i.status,
    weight: i.weight,
    load: i.load,
  }));
}
