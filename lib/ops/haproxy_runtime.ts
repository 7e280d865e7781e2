/**
 * The verdict pushed to HAProxy through its runtime API (`--haproxy-socket`,
 * the stats socket at admin level), at once, instead of waiting for
 * HAProxy's next agent check.
 *
 * Mapping: one HAProxy backend per QHCP service, named after the service
 * (`--haproxy-backend-prefix` in front of it); each of the backend's
 * servers whose address and port are a service instance's (the agent's host
 * and the service's port, see `lib/lb/services.ts`) follows that instance:
 *
 * | QHCP                          | HAProxy                                             |
 * | ----------------------------- | --------------------------------------------------- |
 * | UP, weight W                  | `set server B/S state ready`, `set server B/S weight W` (at least 1) |
 * | UP, DRAINING (weight 0)       | `set server B/S state drain`                        |
 * | DOWN, UNKNOWN, FAILING        | `set server B/S state maint`                        |
 *
 * HAProxy's own servers stay as configured (`server` lines or a
 * `server-template`); servers without an instance are left alone. Only
 * changes are sent. Every 2 s the feed asks HAProxy who it is (`show info`:
 * its pid and start); after a restart or reload, after an error, on every
 * (re)connection and every 30 s, the whole state is read back (`show servers
 * state`) and everything is sent again.
 *
 * @module
 */

import type { ServerDirectory } from "../lb/directory.ts";
import { type ServiceInstance, servicesOf } from "../lb/services.ts";
import { formatAddress } from "../protocol/address.ts";
import { type Logger, silentLogger } from "../util/log.ts";

/** What an HAProxy server should be told. */
export interface HaproxyTarget {
  backend: string;
  server: string;
  state: "ready" | "drain" | "maint";
  /** HAProxy weight (1..100) when ready. */
  weight: number;
}

/** One server line of `show servers state`. */
export interface HaproxyServer {
  backend: string;
  name: string;
  /** `addr:port`. */
  address: string;
}

/** Parses the output of `show servers state` (format version 1). */
export function parseServersState(text: string): HaproxyServer[] {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const header = lines.find((l) => l.startsWith("# "));
  if (!header) return [];
  const cols = header.slice(2).split(/\s+/);
  const at = (name: string) => cols.indexOf(name);
  const [be, sv, addr, port] = [at("be_name"), at("srv_name"), at("srv_addr"), at("srv_port")];
  if (be < 0 || sv < 0 || addr < 0 || port < 0) return [];
  const out: HaproxyServer[] = [];
  for (const line of lines) {
    if (line.startsWith("#") || !/^\d+\s/.test(line)) continue;
    const f = line.split(/\s+/);
    const p = Number(f[port]);
    if (!f[be] || !f[sv] || !f[addr] || !Number.isInteger(p) || p <= 0) continue;
    out.push({ backend: f[be]!, name: f[sv]!, address: formatAddress(f[addr]!, p) });
  }
  return out;
}

/** What an instance's verdict means for its HAProxy server. */
export function targetOf(instance: ServiceInstance): Pick<HaproxyTarget, "state" | "weight"> {
  if (instance.state !== "UP" || instance.status === "FAILING") {
    return { state: "maint", weight: 0 };
  }
  if (instance.status === "DRAINING" || instance.weight === 0) return { state: "drain", weight: 0 };
  return { state: "ready", weight: Math.max(1, Math.min(100, Math.round(instance.weight))) };
}

/** The runtime API commands that move `before` to `after` (everything when `before` is undefined). */
export function commandsFor(after: HaproxyTarget, before?: HaproxyTarget): string[] {
  const who = `${after.backend}/${after.server}`;
  const out: string[] = [];
  if (!before || before.state !== after.state) out.push(`set server ${who} state ${after.state}`);
  if (
    after.state === "ready" &&
    (!before || before.weight !== after.weight || before.state !== "ready")
  ) {
    out.push(`set server ${who} weight ${after.weight}`);
  }
  return out;
}

/** Options of {@linkcode HaproxyRuntime}. */
export interface HaproxyRuntimeOptions {
  directory: ServerDirectory;
  /** The stats socket (admin level). */
  socket: string;
  /** Backend of service NAME: this prefix and NAME. Default "". */
  backendPrefix?: string;
  /** The whole state is read and sent again this often, ms. Default 30000. */
  resyncMs?: number;
  /** HAProxy is asked whether it restarted this often, ms. Default 2000. */
  probeMs?: number;
  log?: Logger;
}

/**
 * Keeps HAProxy's servers in step with the QHCP verdict.
 *
 * @example
 * ```ts
 * import { HaproxyRuntime } from "./haproxy_runtime.ts";
 * import type { Monitor } from "../lb/monitor.ts";
 * declare const monitor: Monitor; // or the fleet's directory in fleet mode
 * const feed = new HaproxyRuntime({ directory: monitor, socket: "/run/haproxy/admin.sock" });
 * feed.start();
 * ```
 */
export class HaproxyRuntime {
  readonly #o: Required<Omit<HaproxyRuntimeOptions, "log">> & { log: Logger };
  /** HAProxy's servers by address, as last read. */
  #servers = new Map<string, HaproxyServer[]>();
  /** What each HAProxy server was last told, by `backend/server`. */
  #sent = new Map<string, HaproxyTarget>();
  #unsubscribe: (() => void) | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #probe: ReturnType<typeof setInterval> | undefined;
  /** Which HAProxy process was last synced (its pid and start time). */
  #instance: string | undefined;
  #busy: Promise<void> = Promise.resolve();
  #pending = false;
  #needResync = true;
  #failing = false;
  #closed = false;
  /** Commands sent since start, for tests and logs. */
  commands = 0;

  constructor(options: HaproxyRuntimeOptions) {
    this.#o = {
      backendPrefix: "",
      resyncMs: 30_000,
      probeMs: 2000,
      ...options,
      log: options.log ?? silentLogger,
    };
  }

  /** Reads HAProxy's servers, sends the whole state, then follows every change. */
  start(): void {
    this.#unsubscribe = this.#o.directory.subscribe(() => this.#schedule());
    this.#timer = setInterval(() => {
      this.#needResync = true;
      this.#schedule();
    }, this.#o.resyncMs);
    this.#probe = setInterval(() => this.#schedule(), this.#o.probeMs);
    this.#schedule();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    clearInterval(this.#timer);
    clearInterval(this.#probe);
    await this.#busy;
  }

  /** One sync at a time; changes during one make one more after it. */
  #schedule(): void {
    if (this.#closed) return;
    if (this.#pending) return;
    this.#pending = true;
    this.#busy = this.#busy.then(async () => {
      this.#pending = false;
      await this.#sync().catch((e) => this.#failed(e as Error));
    });
  }

  async #sync(): Promise<void> {
    // A restarted or reloaded HAProxy forgot everything: send it all again.
    const instance = _instance(await this.#command(["show info"]));
    if (instance !== this.#instance) this.#needResync = true;
    if (this.#needResync) {
      const text = await this.#command(["show servers state"]);
      const byAddress = new Map<string, HaproxyServer[]>();
      for (const s of parseServersState(text)) {
        byAddress.set(s.address, [...(byAddress.get(s.address) ?? []), s]);
      }
      this.#servers = byAddress;
      this.#sent.clear();
      this.#needResync = false;
      this.#instance = instance;
    }
    const commands: string[] = [];
    const next = new Map<string, HaproxyTarget>();
    for (const service of servicesOf(this.#o.directory.status())) {
      const backend = `${this.#o.backendPrefix}${service.name}`;
      for (const instance of service.instances) {
        for (const s of this.#servers.get(instance.address) ?? []) {
          if (s.backend !== backend) continue;
          const target = { backend, server: s.name, ...targetOf(instance) };
          const key = `${backend}/${s.name}`;
          next.set(key, target);
          commands.push(...commandsFor(target, this.#sent.get(key)));
        }
      }
    }
    if (commands.length > 0) {
      const reply = await this.#command(commands);
      this.commands += commands.length;
      const errors = reply.split("\n").map((l) => l.trim()).filter((l) =>
        l && !/^(\d+(\s|$)|#)/.test(l)
      );
      if (errors.length > 0) {
        this.#o.log.warn("HAProxy refused a command; reading its servers again", {
          reply: errors.slice(0, 3).join(" | ").slice(0, 300),
        });
        this.#needResync = true;
      }
      this.#o.log.debug("HAProxy runtime API updated", { commands: commands.join("; ") });
    }
    for (const [k, v] of next) this.#sent.set(k, v);
    if (this.#failing) {
      this.#failing = false;
      this.#o.log.info("HAProxy runtime API reachable again; state sent", {
        socket: this.#o.socket,
      });
    }
  }

  #failed(e: Error): void {
    this.#needResync = true;
    if (!this.#failing) {
      this.#failing = true;
      this.#o.log.warn("HAProxy runtime API unreachable; retrying", {
        socket: this.#o.socket,
        error: e.message,
      });
    }
    // Try again soon: HAProxy may be restarting.
    setTimeout(() => this.#schedule(), 500);
  }

  /** Sends commands (joined by ';') on a fresh connection and returns the reply. */
  async #command(commands: readonly string[]): Promise<string> {
    const conn = await Deno.connect({ transport: "unix", path: this.#o.socket });
    try {
      const data = new TextEncoder().encode(commands.join(";") + "\n");
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
      const chunks: Uint8Array[] = [];
      const buf = new Uint8Array(16_384);
      const deadline = setTimeout(() => conn.close(), 2000);
      try {
        for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
          chunks.push(buf.slice(0, n));
        }
      } finally {
        clearTimeout(deadline);
      }
      return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
}

/** Which HAProxy process answered `show info`: its pid and when it started (to the second). */
function _instance(info: string): string {
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(info)?.[1] ?? "?";
  const uptime = Number(field("Uptime_sec"));
  const started = Number.isFinite(uptime) ? Math.round(Date.now() / 1000 - uptime) : 0;
  // A second either way is the clock ticking between two asks, not a restart.
  return `${field("Pid")}@${Math.round(started / 3)}`;
}
