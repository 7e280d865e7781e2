/**
 * What the HTTP API, the dashboard, `/metrics`, the agent-check port and
 * discovery need of "the servers": a {@linkcode Monitor} on a standalone
 * LB, or the fleet's view (every server of every LB, `lib/fleet/`) in fleet
 * mode. One interface, so that each reader is written once.
 *
 * @module
 */

import type { SessionConfig } from "../protocol/wire.ts";
import type { CheckRecord } from "./history.ts";
import type { LbHealth, MonitorTotals } from "./monitor.ts";
import type { WatchCounters, WatchView } from "./record.ts";
import type { PickResult, Strategy } from "./select.ts";
import type { ConfigOutcome, WatchSettings } from "./watch_types.ts";
import type { HostPort } from "../protocol/address.ts";

/** The servers as everything above the LB's core reads and changes them. */
export interface ServerDirectory {
  /** The LB's settings (its id, its check interval, ...). */
  readonly settings: Readonly<WatchSettings>;
  /** Servers known. */
  readonly size: number;
  /** Servers the LB may know at most. */
  readonly maxServers: number;
  /** Views in a stable order, or the `limit` from `offset` on. */
  status(offset?: number, limit?: number): WatchView[];
  /** One server's view, or undefined. */
  server(address: string): WatchView | undefined;
  /** Recent checks of a server this LB checks (undefined otherwise). */
  history(address: string, limit?: number): CheckRecord[] | undefined;
  /** Views with counters (undefined for a server this LB does not check), for `/metrics`. */
  records(): { view: WatchView; counters: Readonly<WatchCounters> | undefined }[];
  /** Fleet-wide counts. */
  totals(): MonitorTotals;
  /** The LB's own health (its event loop; in fleet mode its view of etcd). */
  lbHealth(): LbHealth;
  /** The server for the next request. */
  pick(strategy?: Strategy): PickResult;
  /** Calls `listener` on any change; returns the unsubscribe function. */
  subscribe(listener: (address: string) => void): () => void;
  /** Adds a server; returns its address. @throws {ServerSetError} */
  addServer(address: HostPort): string | Promise<string>;
  /** Removes a server; false when unknown. */
  removeServer(address: string): Promise<boolean>;
  /** CONFIG_UPDATE to the servers this LB checks (all by default). */
  configure(
    config: Partial<SessionConfig>,
    servers?: readonly string[],
  ): Promise<ConfigOutcome[] & { applied: boolean }>;
}

/**
 * The servers one LB's discovery sources (a servers file, DNS names) add
 * and remove: the monitor's on a standalone LB, this LB's entries of the
 * fleet's set in fleet mode.
 */
export interface ServerSet {
  readonly maxServers: number;
  /** The servers this set holds. */
  addresses(): string[];
  /** @throws {ServerSetError} */
  addServer(address: HostPort): string | Promise<string>;
  removeServer(address: string): Promise<boolean>;
}
