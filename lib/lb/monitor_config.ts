/**
 * Runtime configuration of the monitor's servers: CONFIG_UPDATE sent to its
 * watches, and the change applied to the LB's own settings unless every
 * server that answered refused it.
 *
 * @module
 */

import { LB_DEFAULTS } from "../util/defaults.ts";
import type { Logger } from "../util/log.ts";
import { validateConfigUpdate } from "../protocol/codec.ts";
import type { SessionConfig } from "../protocol/wire.ts";
import { askedMetrics } from "./settings.ts";
import type { Watch } from "./watch.ts";
import type { ConfigOutcome, WatchSettings } from "./watch_types.ts";

/** What a configuration change needs of the monitor. */
export interface ConfigureDeps {
  /** Every watch by address, in the order they were added. */
  watches: ReadonlyMap<string, ConfiguredWatch>;
  /** The watch of one server's address, or undefined. */
  find: (address: string) => ConfiguredWatch | undefined;
  /** The settings every watch reads (changed in place). */
  settings: WatchSettings;
  /** The check timeout was given: it does not follow the interval. */
  timeoutFixed: boolean;
  log: Logger;
}

/** What a configuration change needs of one watch. */
export type ConfiguredWatch = Pick<Watch, "configure" | "settingsChanged">;

/**
 * `Monitor.configure`: CONFIG_UPDATE to the named servers (all by default),
 * then to the LB's own `settings` unless every server that answered refused it.
 *
 * @throws {ConfigError} for a config no server could take (before anything is sent)
 * @throws {RangeError} for an unknown server
 */
export async function configureWatches(
  deps: ConfigureDeps,
  config: Partial<SessionConfig>,
  servers?: readonly string[],
): Promise<ConfigOutcome[] & { applied: boolean }> {
  const { settings, log } = deps;
  // The codec's own check: a ConfigError names the field.
  config = validateConfigUpdate(config as Record<string, unknown>);
  const targets = servers === undefined ? [...deps.watches.values()] : servers.map((a) => {
    const w = deps.find(a);
    if (!w) throw new RangeError(`unknown server ${a}`);
    return w;
  });
  const results = await Promise.all(targets.map((w) => w.configure(config)));
  const unanswered = new Set(["NOT_CONNECTED", "TIMEOUT", "CLOSED"]);
  const applied = results.some((r) => r.ok) ||
    results.every((r) => !r.ok && unanswered.has(r.code));
  if (applied) {
    if (config.interval_ms !== undefined) {
      const ms = config.interval_ms;
      settings.checkIntervalMs = ms;
      if (!deps.timeoutFixed) {
        settings.checkTimeoutMs = Math.min(ms, LB_DEFAULTS.maxCheckTimeoutMs);
      }
    }
    if (config.metrics !== undefined) {
      settings.metrics = askedMetrics(
        config.metrics,
        settings.weights.loadMetrics ?? LB_DEFAULTS.loadMetrics,
      );
    }
    for (const w of deps.watches.values()) w.settingsChanged();
  }
  log.info(applied ? "config update" : "config update refused by every server", {
    interval_ms: config.interval_ms,
    metrics: config.metrics?.join(","),
    servers: targets.length,
    accepted: results.filter((r) => r.ok).length,
  });
  return Object.assign(results, { applied });
}
