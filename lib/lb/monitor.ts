/**
 * The LB's monitor: one {@linkcode Watch} per server, shared settings, and
 * the operations the CLI and HTTP API need (status, runtime configuration,
 * adding and removing servers, shutdown). Its sums over all servers are in
 * `monitor_totals.ts`, carrying out a configuration change in `monitor_config.ts`.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import { DialGate } from "./dial_gate.ts";
import { Scheduler } from "./timers.ts";
import type { Transition } from "./verdict.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { MAX_INTERVAL_MS, MIN_INTERVAL_MS, type SessionConfig } from "../protocol/wire.ts";
import { formatAddress, parseServerAddress } from "../protocol/address.ts";
import {
  type ConfigOutcome,
  type ServerAddress,
  Watch,
  type WatchCounters,
  type WatchEvents,
  type WatchSettings,
  type WatchView,
} from "./watch.ts";
import type { CheckRecord } from "./history.ts";
import { type PickResult, Selector, type Strategy } from "./select.ts";
import { LoopHealth } from "./loop_health.ts";
import { heartbeatInterval } from "./liveness.ts";
import { buildSettings, heartbeatPlan, type MonitorOptions } from "./settings.ts";
import { configureWatches } from "./monitor_config.ts";
import {
  type LbHealth,
  loopHealthOf,
  type MonitorResources,
  type MonitorTotals,
  sumResources,
  sumTotals,
} from "./monitor_totals.ts";

export type { LbHealth, MonitorOptions, MonitorResources, MonitorTotals };

/** Why a server could not be added: it is watched already, or the LB is full. */
export class ServerSetError extends RangeError {
  constructor(readonly kind: "already_watched" | "limit", message: string) {
    super(message);
    this.name = "ServerSetError";
  }
}

/**
 * Watches a set of servers.
 *
 * @example
 * ```ts
 * import { Monitor } from "./monitor.ts";
 * import { createNativeTransport } from "../transport/native.ts";
 * import { createHmacSigner, readSecretFile } from "../security/jwt.ts";
 * const monitor = new Monitor({
 *   transport: createNativeTransport(),
 *   signer: createHmacSigner(await readSecretFile("certs/jwt.secret"), { lbId: "lb-1" }),
 *   servers: [{ host: "127.0.0.1", port: 4243 }],
 *   caPem: await Deno.readTextFile("certs/ca.pem"),
 * });
 * monitor.start();
 * monitor.status(); // [{ address: "127.0.0.1:4243", state: "UNKNOWN", … }]
 * ```
 */
export class Monitor {
  readonly #settings: WatchSettings;
  readonly #options: MonitorOptions;
  readonly #log: Logger;
  readonly #watches = new Map<string, Watch>();
  readonly #timeoutFixed: boolean;
  readonly #selector = new Selector();
  readonly #listeners = new Set<(address: string) => void>();
  readonly #scheduler: Scheduler;
  readonly #dialGate: DialGate;
  #started = false;
  #stopped = false;
  readonly #maxServers: number;
  readonly #loopHealth = new LoopHealth();
  readonly #heartbeats: { heartbeatMs: number; budget: number };

  constructor(options: MonitorOptions) {
    this.#maxServers = options.maxServers ?? LB_DEFAULTS.maxServers;
    this.#options = options;
    this.#log = options.log ?? silentLogger;
    const interval = options.checkIntervalMs ?? LB_DEFAULTS.checkIntervalMs;
    this.#timeoutFixed = options.checkTimeoutMs !== undefined;
    if (options.lbId !== undefined && options.lbId !== options.signer.lbId) {
      throw new Error(
        `Monitor lbId ${JSON.stringify(options.lbId)} differs from the token issuer ${
          JSON.stringify(options.signer.lbId)
        }`,
      );
    }
    // Every late wake-up of the shared timers is a stall of the LB's own loop.
    this.#scheduler = new Scheduler({
      slackMs: options.timerSlackMs ?? LB_DEFAULTS.timerSlackMs,
      onFire: (dueAt, firedAt) => this.#loopHealth.observe(dueAt, firedAt),
    });
    this.#heartbeats = heartbeatPlan(options);
    this.#dialGate = new DialGate(options.maxConcurrentDials ?? LB_DEFAULTS.maxConcurrentDials);
    this.#settings = buildSettings(options, interval);
    // The interval travels in HELLO as interval_ms, which QHCP/1 bounds.
    if (!Number.isInteger(interval) || interval < MIN_INTERVAL_MS || interval > MAX_INTERVAL_MS) {
      throw new RangeError(
        `check interval ${interval} ms is not an integer in ${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}`,
      );
    }
    if (!this.#settings.insecure && !this.#settings.caPem) {
      throw new Error("Monitor needs a CA bundle (caPem) unless insecure is set");
    }
    for (const s of options.servers) this.#add(s);
    this.#rebudget();
  }

  /** The heartbeat interval asked of servers now (after the budget), ms; 0 when off. */
  get heartbeatMs(): number {
    return this.#settings.heartbeatMs;
  }

  /** The fleet's size changed: keep the heartbeats within the budget. */
  #rebudget(): void {
    const { heartbeatMs, budget } = this.#heartbeats;
    const next = heartbeatInterval(
      this.#settings.heartbeatMs,
      heartbeatMs,
      this.#watches.size,
      budget,
    );
    if (next === this.#settings.heartbeatMs) return;
    this.#log.info("heartbeat interval follows the fleet's size", {
      heartbeat_ms: next,
      servers: this.#watches.size,
      budget_per_s: budget,
    });
    this.#settings.heartbeatMs = next;
    for (const w of this.#watches.values()) w.settingsChanged();
  }

  /** Current settings (read-only copy). */
  get settings(): Readonly<WatchSettings> {
    return { ...this.#settings };
  }

  /** Starts every watch. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const w of this.#watches.values()) w.start();
  }

  /**
   * The status of every server in the order they were added, or of the
   * `limit` servers from `offset` on (a page: views are built for it only).
   */
  status(offset = 0, limit = Infinity): WatchView[] {
    const out: WatchView[] = [];
    let i = 0;
    for (const w of this.#watches.values()) {
      if (i++ < offset) continue;
      if (out.length >= limit) break;
      out.push(w.view());
    }
    return out;
  }

  /** Servers watched. */
  get size(): number {
    return this.#watches.size;
  }

  /** The status of one server, or undefined. */
  server(address: string): WatchView | undefined {
    return this.#watches.get(_key(address))?.view();
  }

  /** Timers and sessions held by all watches (for leak checks). */
  resources(): MonitorResources {
    return sumResources(this.#watches);
  }

  /** This LB's own event loop. */
  lbHealth(): LbHealth {
    return loopHealthOf(this.#loopHealth, this.#scheduler.now());
  }

  /** Counts over every server, without building a view per server. */
  totals(): MonitorTotals {
    return sumTotals(this.#watches, this.#settings.heartbeatMs, this.lbHealth());
  }

  /** The recent checks of one server, or undefined for an unknown address. */
  history(address: string, limit?: number): CheckRecord[] | undefined {
    return this.#watches.get(_key(address))?.history(limit);
  }

  /** Picks the server for the next request with `strategy`. */
  pick(strategy: Strategy = "weighted"): PickResult {
    // A server's view is a candidate as it stands.
    return this.#selector.pick(this.status(), strategy);
  }

  /** Calls `listener` whenever a server's status changes; returns the unsubscribe function. */
  subscribe(listener: (address: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Every server's view and counters, in the order they were added (for `/metrics`). */
  records(): { view: WatchView; counters: Readonly<WatchCounters> }[] {
    return [...this.#watches.values()].map((w) => ({ view: w.view(), counters: w.counters() }));
  }

  /** How many servers the monitor may watch. */
  get maxServers(): number {
    return this.#maxServers;
  }

  /** Addresses being watched. */
  addresses(): string[] {
    return [...this.#watches.keys()];
  }

  /**
   * Sends CONFIG_UPDATE to the named servers (all by default), then applies
   * the change to the LB itself (its own check interval follows
   * `interval_ms`; later HELLOs ask for `metrics`) unless every server that
   * answered refused it: a setting no server accepts must not reach the LB's
   * next HELLO. `applied` on the result says which happened.
   *
   * @throws {ConfigError} for a config no server could take (before anything is sent)
   * @throws {RangeError} for an unknown server
   */
  configure(
    config: Partial<SessionConfig>,
    servers?: readonly string[],
  ): Promise<ConfigOutcome[] & { applied: boolean }> {
    return configureWatches(
      {
        watches: this.#watches,
        find: (address) => this.#watches.get(_key(address)),
        settings: this.#settings,
        timeoutFixed: this.#timeoutFixed,
        log: this.#log,
      },
      config,
      servers,
    );
  }

  /**
   * Adds a server and starts watching it (if the monitor runs). Returns its
   * address. `quiet`: the caller logs it (a fleet claiming hundreds at once
   * logs one line for all).
   */
  addServer(address: ServerAddress, options: { quiet?: boolean } = {}): string {
    const w = this.#add(address);
    this.#rebudget();
    if (this.#started && !this.#stopped) w.start();
    this.#log[options.quiet ? "debug" : "info"]("server added", { server: w.address });
    return w.address;
  }

  /**
   * Stops watching a server, closing its session. Returns false when
   * unknown. `quiet`: the caller logs it.
   */
  async removeServer(address: string, options: { quiet?: boolean } = {}): Promise<boolean> {
    const key = _key(address);
    const w = this.#watches.get(key);
    if (!w) return false;
    this.#watches.delete(key);
    this.#rebudget();
    await w.stop(true, "server removed");
    this.#log[options.quiet ? "debug" : "info"]("server removed", { server: key });
    return true;
  }

  /** Sends TERMINATE to every server and waits for the sessions to close. */
  async stop(reason = "shutdown"): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all([...this.#watches.values()].map((w) => w.stop(true, reason)));
  }

  /** The caller's events, plus change notifications for subscribers. */
  #events(): WatchEvents {
    const user = this.#options.events;
    return {
      ...user,
      onChange: (address) => {
        user?.onChange?.(address);
        for (const l of this.#listeners) l(address);
      },
    };
  }

  #add(address: ServerAddress): Watch {
    const key = formatAddress(address.host, address.port);
    if (this.#watches.has(key)) {
      throw new ServerSetError("already_watched", `server ${key} is already watched`);
    }
    if (this.#watches.size >= this.#maxServers) {
      throw new ServerSetError(
        "limit",
        `cannot watch ${key}: the LB watches ${this.#maxServers} servers, its limit (maxServers)`,
      );
    }
    const w = new Watch(address, {
      transport: this.#options.transport,
      signer: this.#options.signer,
      settings: this.#settings,
      log: this.#log,
      events: this.#events(),
      scheduler: this.#scheduler,
      dialGate: this.#dialGate,
      loopHealth: this.#loopHealth,
      ...(this.#options.random ? { random: this.#options.random } : {}),
    });
    this.#watches.set(key, w);
    return w;
  }
}

function _key(address: string): string {
  const a = parseServerAddress(address);
  return formatAddress(a.host, a.port);
}

export type { ConfigOutcome, ServerAddress, Transition, WatchView };
