/**
 * The fleet as a {@linkcode ServerDirectory}: every server of every LB, each
 * with the fleet's one verdict, for the HTTP API, the dashboard, `/metrics`
 * and the agent-check port of any LB of the fleet. Servers this LB checks
 * show its live figures; the others show what their owners last wrote.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import type { CheckRecord } from "../lb/history.ts";
import { type LbHealth, type Monitor, type MonitorTotals, ServerSetError } from "../lb/monitor.ts";
import type { WatchCounters, WatchView } from "../lb/record.ts";
import { type PickResult, Selector, type Strategy } from "../lb/select.ts";
import type { ConfigOutcome, WatchSettings } from "../lb/watch_types.ts";
import { formatAddress, type HostPort, parseServerAddress } from "../protocol/address.ts";
import type { SessionConfig } from "../protocol/wire.ts";
import type { Fleet, FleetServer } from "./fleet.ts";

/** The fleet's servers, read and changed as one directory. */
export class FleetDirectory implements ServerDirectory {
  readonly #fleet: Fleet;
  readonly #monitor: Monitor;
  readonly #selector = new Selector();

  constructor(fleet: Fleet, monitor: Monitor) {
    this.#fleet = fleet;
    this.#monitor = monitor;
  }

  get settings(): Readonly<WatchSettings> {
    return this.#monitor.settings;
  }

  get size(): number {
    return this.#fleet.size;
  }

  get maxServers(): number {
    return this.#monitor.maxServers;
  }

  status(offset = 0, limit = Infinity): WatchView[] {
    const state = this.#fleet.state();
    return [...state.servers.values()].slice(offset, offset + limit).map((s) =>
      this.#view(s, state.staleMs)
    );
  }

  server(address: string): WatchView | undefined {
    const key = _key(address);
    const s = this.#fleet.server(key);
    return s ? this.#view(s, this.#fleet.staleMs) : undefined;
  }

  history(address: string, limit?: number): CheckRecord[] | undefined {
    return this.#monitor.history(address, limit);
  }

  records(): { view: WatchView; counters: Readonly<WatchCounters> | undefined }[] {
    const local = new Map(this.#monitor.records().map((r) => [r.view.address, r.counters]));
    return this.status().map((view) => ({ view, counters: local.get(view.address) }));
  }

  lbHealth(): LbHealth {
    return {
      ...this.#monitor.lbHealth(),
      fleet_downs: this.#fleet.verdictDowns,
      fleet_stale_ms: _round(this.#fleet.staleMs),
    };
  }

  totals(): MonitorTotals {
    const t = {
      ...this.#monitor.totals(),
      ...this.lbHealth(),
      servers: 0,
      up: 0,
      down: 0,
      unknown: 0,
    };
    // The fleet's verdicts only: no view is built (this is polled).
    for (const s of this.#fleet.state().servers.values()) {
      t.servers++;
      const state = s.verdict?.state ?? "UNKNOWN";
      if (state === "UP") t.up++;
      else if (state === "DOWN") t.down++;
      else t.unknown++;
    }
    return t;
  }

  pick(strategy: Strategy = "weighted"): PickResult {
    // A server's view is a candidate as it stands.
    return this.#selector.pick(this.status(), strategy);
  }

  subscribe(listener: (address: string) => void): () => void {
    // The fleet passes on the monitor's changes too: one notice per change.
    return this.#fleet.subscribe(listener);
  }

  async addServer(address: HostPort): Promise<string> {
    const key = formatAddress(address.host, address.port);
    if (this.#fleet.server(key)) {
      throw new ServerSetError("already_watched", `server ${key} is already in the fleet`);
    }
    if (this.size >= this.maxServers) {
      throw new ServerSetError(
        "limit",
        `cannot add ${key}: the fleet has ${this.maxServers} servers, its limit (maxServers)`,
      );
    }
    await this.#fleet.addServer(key);
    return key;
  }

  /** Removes a server from the fleet (every LB's entry of it). */
  removeServer(address: string): Promise<boolean> {
    return this.#fleet.removeServer(_key(address), true);
  }

  configure(
    config: Partial<SessionConfig>,
    servers?: readonly string[],
  ): Promise<ConfigOutcome[] & { applied: boolean }> {
    const mine = servers?.filter((a) => this.#monitor.server(a) !== undefined);
    return this.#monitor.configure(config, mine);
  }

  #view(s: FleetServer, staleMs: number | undefined): WatchView {
    const v = s.verdict;
    const local = s.mine ? this.#monitor.server(s.address) : undefined;
    const base: WatchView = local ?? {
      address: s.address,
      state: "UNKNOWN",
      session: "ELSEWHERE",
      consecutive_failures: 0,
      last_rtt_ms: v?.rtt_ms ?? null,
      metrics: v && v.cpu !== null && v.mem !== null
        ? { cpu_percent: v.cpu, mem_percent: v.mem }
        : null,
      status: null,
      last_error: v?.last_error ?? null,
      last_change: v?.since ?? new Date(0).toISOString(),
      server_id: null,
      checks_ok: 0,
      checks_failed: 0,
      last_check: v?.at ?? null,
      weight: 0,
      checks: null,
      load: v?.load ?? null,
      suspicion: null,
      heartbeat_ms: null,
      extensions: [],
      services: v?.services ?? [],
    };
    return {
      ...base,
      // The fleet's one verdict, whoever checks.
      ...(v ? { state: v.state, status: v.status, weight: v.weight, last_change: v.since } : {}),
      fleet: {
        checked_by: s.owners,
        verdict_of: v?.from ?? [],
        written_at: local ? null : v?.at ?? null,
        stale_ms: _round(staleMs),
      },
    };
  }
}

function _key(address: string): string {
  const a = parseServerAddress(address);
  return formatAddress(a.host, a.port);
}

function _round(ms: number | undefined): number | null {
  return ms === undefined ? null : Math.round(ms);
}
