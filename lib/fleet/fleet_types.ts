/**
 * The types of the `Fleet` driver's options and of what it shows:
 * the fleet as one LB sees it, and one server in it.
 *
 * @module
 */

import type { Logger } from "../util/log.ts";
import type { Monitor } from "../lb/monitor.ts";
import type { FleetKeys } from "./keys.ts";
import type { Store } from "./store.ts";
import type { FleetVerdict } from "./verdicts.ts";

/** Options of the `Fleet` driver. */
export interface FleetOptions {
  store: Store;
  keys: FleetKeys;
  /** This LB's id (unique in the fleet). */
  lbId: string;
  /** The local checker: the fleet adds and removes the servers this LB owns. */
  monitor: Monitor;
  /** Lease TTL, seconds. Default 3. */
  leaseTtlSec?: number;
  /** LBs that check each server (K). Default 2. */
  checkersPerServer?: number;
  /** A member change is applied once it has held this long, ms. Default 500. */
  debounceMs?: number;
  /** Owners rewrite their verdicts this often, ms (figures for the other LBs). Default 30000. */
  refreshMs?: number;
  /** What this LB tells the others about itself (its HTTP address, version). */
  info?: Record<string, string>;
  log: Logger;
  /** Clock, ms. Default Date.now. */
  now?: () => number;
}

/** What the fleet knows of one server. */
export interface FleetServer {
  address: string;
  /** The LBs that should check it now (top K of the live members). */
  owners: string[];
  /** The combined verdict, or undefined before any owner wrote one. */
  verdict: FleetVerdict | undefined;
  /** True when this LB checks it. */
  mine: boolean;
}

/** The fleet as this LB sees it. */
export interface FleetState {
  lbId: string;
  members: string[];
  /** Milliseconds since etcd last answered, when that is longer than a lease renewal should take. */
  staleMs: number | undefined;
  servers: Map<string, FleetServer>;
}
