/**
 * The server agent's own view of the application it stands beside: TCP
 * connects and HTTP GETs run in the background on an interval with a
 * timeout, like Consul's checks. While any of them fails, the agent reports
 * `FAILING` and the LB takes the server out as if the agent were dead.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import type { LocalCheckResult } from "../protocol/wire.ts";
import { formatAddress } from "../protocol/address.ts";
import { within } from "../util/timeout.ts";

/** One local check. */
export type LocalCheckSpec =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "http"; url: string };

/** Options of {@linkcode LocalChecks}. */
export interface LocalChecksOptions {
  /** Time between rounds, ms. Default 2000. */
  intervalMs?: number;
  /** Each check must finish within this, ms. Default 1000. */
  timeoutMs?: number;
  /** Called when a check's outcome changes, after `failing` reflects it. */
  onChange?: (result: LocalCheckResult) => void;
}

/** The name a check is reported under. */
export function checkName(spec: LocalCheckSpec): string {
  return spec.kind === "tcp" ? `tcp ${formatAddress(spec.host, spec.port)}` : `http ${spec.url}`;
}

/**
 * Runs local checks on a timer and keeps their latest results.
 *
 * @example
 * ```ts
 * import { LocalChecks } from "./local_checks.ts";
 * const checks = new LocalChecks([{ kind: "http", url: "http://127.0.0.1:8080/healthz" }]);
 * await checks.start(); // the first round has run when this resolves
 * checks.failing; // true while any check fails
 * ```
 */
export class LocalChecks {
  readonly #specs: readonly LocalCheckSpec[];
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #onChange: (r: LocalCheckResult) => void;
  #results: LocalCheckResult[];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #round: Promise<void> | undefined;

  constructor(specs: readonly LocalCheckSpec[], options: LocalChecksOptions = {}) {
    this.#specs = specs;
    this.#intervalMs = options.intervalMs ?? AGENT_DEFAULTS.localCheckIntervalMs;
    this.#timeoutMs = options.timeoutMs ?? AGENT_DEFAULTS.localCheckTimeoutMs;
    this.#onChange = options.onChange ?? (() => {});
    // Until the first round, nothing is known to be wrong.
    this.#results = specs.map((s) => ({ name: checkName(s), ok: true, detail: "not checked yet" }));
  }

  /** True while any check fails. */
  get failing(): boolean {
    return this.#results.some((r) => !r.ok);
  }

  /** The latest result of every check (empty without checks). */
  results(): LocalCheckResult[] {
    return this.#results.map((r) => ({ ...r }));
  }

  /** Runs a first round, then keeps running on the interval. */
  async start(): Promise<void> {
    if (this.#running || this.#specs.length === 0) return;
    this.#running = true;
    await this.#runRound();
  }

  /** Stops the timer and waits for a round in progress. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#round;
  }

  /** Runs every check once now. */
  async runOnce(): Promise<LocalCheckResult[]> {
    const results = await Promise.all(this.#specs.map((s) => _run(s, this.#timeoutMs)));
    const changed = results.filter((r, i) => {
      const before = this.#results[i];
      return !before || before.ok !== r.ok || before.detail === "not checked yet";
    });
    // Results first: a listener asks `failing` (to push the new status at once).
    this.#results = results;
    for (const r of changed) this.#onChange(r);
    return this.results();
  }

  #runRound(): Promise<void> {
    this.#round = this.runOnce().then(() => {
      if (this.#running) this.#timer = setTimeout(() => void this.#runRound(), this.#intervalMs);
    });
    return this.#round;
  }
}

async function _run(spec: LocalCheckSpec, timeoutMs: number): Promise<LocalCheckResult> {
  const name = checkName(spec);
  const t0 = performance.now();
  const took = () => `${(performance.now() - t0).toFixed(1)} ms`;
  try {
    if (spec.kind === "tcp") {
      // A connection that comes after the timeout is closed when it comes.
      const r = await within(
        Deno.connect({ hostname: spec.host, port: spec.port }),
        timeoutMs,
        (c) => c.close(),
      );
      if (!r.ok) return { name, ok: false, detail: `no answer within ${timeoutMs} ms` };
      r.value.close();
      return { name, ok: true, detail: `connected in ${took()}` };
    }
    const res = await fetch(spec.url, {
      redirect: "manual",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body?.cancel();
    const ok = res.status >= 200 && res.status < 400;
    return { name, ok, detail: `HTTP ${res.status} in ${took()}` };
  } catch (e) {
    const err = e as Error;
    const why = err.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : err.message;
    return { name, ok: false, detail: why };
  }
}
