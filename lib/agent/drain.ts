/**
 * Draining a server: it stays UP for the checks but asks for no new traffic
 * (weight 0). An operator toggles it with `kill -USR1`, or holds it with a
 * drain file: DRAINING while the file exists, like HAProxy's agent "drain".
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
/** Options of {@linkcode DrainSwitch}. */
export interface DrainSwitchOptions {
  /** DRAINING while this file exists. */
  file?: string;
  /** How often the file is looked for, ms. Default 1000. */
  pollMs?: number;
  /** Called when draining starts or ends, with what caused it. */
  onChange?: (draining: boolean, cause: string) => void;
}

/**
 * Whether the server drains: toggled by `toggle()` (the agent wires SIGUSR1
 * to it) or held by a file.
 *
 * @example
 * ```ts
 * import { DrainSwitch } from "./drain.ts";
 * const drain = new DrainSwitch({ file: "/run/qhcp/drain" });
 * drain.start();
 * Deno.addSignalListener("SIGUSR1", () => drain.toggle());
 * drain.draining; // true while toggled on or while the file exists
 * ```
 */
export class DrainSwitch {
  readonly #options: DrainSwitchOptions;
  #toggled = false;
  #fileExists = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: DrainSwitchOptions = {}) {
    this.#options = options;
  }

  /** True while the server drains. */
  get draining(): boolean {
    return this.#toggled || this.#fileExists;
  }

  /** Starts watching the drain file (if any); checks it once at once. */
  start(): void {
    if (!this.#options.file || this.#timer !== undefined) return;
    this.#look();
    this.#timer = setInterval(
      () => this.#look(),
      this.#options.pollMs ?? AGENT_DEFAULTS.drainPollMs,
    );
  }

  /** Stops watching the file. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Flips the manual switch (SIGUSR1). */
  toggle(): void {
    this.#set(() => (this.#toggled = !this.#toggled), "SIGUSR1");
  }

  #look(): void {
    let exists: boolean;
    try {
      Deno.statSync(this.#options.file!);
      exists = true;
    } catch {
      exists = false;
    }
    if (exists !== this.#fileExists) {
      this.#set(
        () => (this.#fileExists = exists),
        `drain file ${this.#options.file} ${exists ? "created" : "removed"}`,
      );
    }
  }

  #set(change: () => void, cause: string): void {
    const before = this.draining;
    change();
    if (this.draining !== before) this.#options.onChange?.(this.draining, cause);
  }
}
