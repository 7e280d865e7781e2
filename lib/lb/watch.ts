/**
 * The driver of one server: dials it, runs an {@linkcode LbSession} over the
 * channel, performs the machine's actions, and schedules checks and redials.
 * What is known of the server (verdict, figures, counters, history) lives in
 * its {@linkcode ServerRecord}, which this driver feeds; its timers are its
 * {@linkcode WatchPlan}'s (`watch_plan.ts`), the carrying out of the
 * machine's actions its {@linkcode WatchActions}' (`watch_actions.ts`).
 *
 * Scheduling rules:
 * - while a session is READY, a check every check interval;
 * - while there is no session and the server is not DOWN, a dial every check
 *   interval (a failed dial counts as a failed check);
 * - when DOWN, the session is closed and a dial happens every reconnect
 *   interval; the first good check marks the server UP;
 * - TERMINATE from the server marks it DOWN at once, except with reason
 *   "token_expired", which is answered by reconnecting at once with a fresh token;
 * - with heartbeats negotiated, a {@linkcode HeartbeatWatch} probes on
 *   suspicious silence, and silence with an unanswered probe is DOWN at once;
 * - a pushed FAILING is DOWN at once, and the session stays (the agent is
 *   alive and will push its recovery).
 *
 * @module
 */

import type { TokenSigner } from "../security/jwt.ts";
import { CodecError } from "../protocol/codec.ts";
import { LbSession, type LbSessionState } from "../protocol/lb_session.ts";
import type { Logger } from "../util/log.ts";
import { type Capability, CLOSE_CODES, type SessionConfig } from "../protocol/wire.ts";
import type { CheckRecord } from "./history.ts";
import { ServerRecord, type WatchCounters, type WatchView } from "./record.ts";
import type { Random } from "./schedule.ts";
import { Scheduler } from "./timers.ts";
import type { DialGate } from "./dial_gate.ts";
import type { LoopHealth } from "./loop_health.ts";
import type { HealthState } from "./verdict.ts";
import type { ConfigOutcome, WatchEvents, WatchResources, WatchSettings } from "./watch_types.ts";
import type { Transport } from "../transport/transport.ts";
import { Link } from "./link.ts";
import { WatchPlan } from "./watch_plan.ts";
import { WatchActions } from "./watch_actions.ts";
import { formatAddress, type HostPort } from "../protocol/address.ts";

export type { WatchCounters, WatchView };
export type { ConfigOutcome, WatchEvents, WatchResources, WatchSettings };

/** A server to watch. */
export type ServerAddress = HostPort;

/** Dependencies of a watch. */
export interface WatchDeps {
  transport: Transport;
  signer: TokenSigner;
  settings: WatchSettings;
  log: Logger;
  events?: WatchEvents;
  /** Clock, ms since epoch. Default: performance.timeOrigin + performance.now(). */
  now?: () => number;
  /** Uniform random numbers in [0, 1) for jitter. Default Math.random. */
  random?: Random;
  /**
   * Timers, shared by all watches of a monitor so that checks due together
   * run in one wake-up. Its clock must be `now`. Default: one of its own.
   */
  scheduler?: Scheduler;
  /** Limits the handshakes in flight across watches. Default: no limit. */
  dialGate?: DialGate;
  /** The LB's own event-loop stalls, fed by the scheduler. Default: none known. */
  loopHealth?: LoopHealth;
}

/** Watches one server. */
export class Watch {
  readonly address: string;
  readonly #target: ServerAddress;
  readonly #deps: WatchDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #machine: LbSession;
  readonly #record: ServerRecord;
  readonly #link: Link;
  /** The timers: the next action and the reply deadline. */
  readonly #plan: WatchPlan;
  /** The interpreter of the machine's actions. */
  readonly #actions: WatchActions;

  constructor(target: ServerAddress, deps: WatchDeps) {
    this.#target = target;
    this.address = formatAddress(target.host, target.port);
    this.#deps = deps;
    this.#now = deps.now ?? _preciseNow;
    const scheduler = deps.scheduler ?? new Scheduler({ now: this.#now });
    this.#log = deps.log.child({ server: this.address });
    const s = deps.settings;
    this.#machine = new LbSession({
      lbId: s.lbId,
      timeoutMs: s.checkTimeoutMs,
      intervalMs: s.checkIntervalMs,
      ...(s.metrics ? { metrics: s.metrics } : {}),
      capabilities: this.#offer(),
      ...(s.heartbeatMs > 0 ? { heartbeatMs: s.heartbeatMs } : {}),
    });
    this.#record = new ServerRecord(
      this.address,
      { fall: s.maxFailAttempts, rise: s.rise },
      this.#now(),
    );
    this.#link = new Link({
      input: (input, channel) =>
        this.#actions.perform(
          input instanceof CodecError
            ? this.#machine.receiveInvalid(input, this.#now())
            : this.#machine.receive(input, this.#now()),
          channel,
        ),
      datagram: (bytes, channel) =>
        void this.#actions.perform(this.#machine.receiveDatagram(bytes, this.#now()), channel),
      closed: ({ message, cause }, channel) =>
        this.#actions.perform(this.#machine.closed(message, this.#now(), cause), channel),
    });
    this.#plan = new WatchPlan({
      scheduler,
      now: this.#now,
      random: deps.random ?? Math.random,
      record: this.#record,
      watch: deps,
      next: () => this.#next(),
    });
    this.#actions = new WatchActions({
      address: this.address,
      log: this.#log,
      now: this.#now,
      scheduler,
      machine: this.#machine,
      record: this.#record,
      link: this.#link,
      plan: this.#plan,
      watch: deps,
    });
  }

  /** The verdict. */
  get state(): HealthState {
    return this.#record.state;
  }

  /** The session state. */
  get sessionState(): LbSessionState {
    return this.#machine.state;
  }

  /** Starts watching: dials at once. */
  start(): void {
    this.#plan.after(0);
  }

  /** Applies changed settings (interval, timeout, fall, rise, metrics) from the next action on. */
  settingsChanged(): void {
    const s = this.#deps.settings;
    this.#machine.setTimeout(s.checkTimeoutMs);
    this.#machine.setInterval(s.checkIntervalMs);
    if (s.metrics) this.#machine.setMetrics(s.metrics);
    this.#machine.setExtensions(this.#offer(), s.heartbeatMs > 0 ? s.heartbeatMs : undefined);
    const beating = this.#actions.heartbeats?.liveness.heartbeatMs;
    if (beating !== undefined && s.heartbeatMs > 0 && beating !== s.heartbeatMs) {
      // The fleet's size moved the heartbeat budget: tell the server.
      void this.configure({ heartbeat_ms: s.heartbeatMs });
    }
    this.#record.configure({ fall: s.maxFailAttempts, rise: s.rise });
    if (!this.#plan.stopped && this.#machine.state === "READY" && !this.#machine.checkPending) {
      this.#plan.check();
    }
  }

  /** Timers and sessions held right now. */
  resources(): WatchResources {
    return {
      timers: this.#plan.timers + (this.#actions.heartbeats?.timers ?? 0),
      sessions: this.#link.sessions,
      closing: this.#link.closing,
    };
  }

  /** A snapshot for the status table and the HTTP API. */
  view(): WatchView {
    const hw = this.#actions.heartbeats;
    return this.#record.view(
      this.#machine.state,
      this.#deps.settings.weights,
      hw ? { phi: hw.phi(), heartbeatMs: hw.liveness.heartbeatMs } : undefined,
    );
  }

  /** The checks of the last five minutes, oldest first; only the last `limit` if given. */
  history(limit?: number): CheckRecord[] {
    return this.#record.history(this.#now(), limit);
  }

  /** Counters for `/metrics` (live objects; read, do not change). */
  counters(): Readonly<WatchCounters> {
    return this.#record.counters;
  }

  /** Sends CONFIG_UPDATE and waits for CONFIG_ACK or ERROR. */
  configure(config: Partial<SessionConfig>): Promise<ConfigOutcome> {
    const actions = this.#machine.configure(config, this.#now());
    const send = actions.find((a) => a.kind === "send");
    if (!send || send.kind !== "send") {
      return Promise.resolve({
        address: this.address,
        ok: false,
        code: "NOT_CONNECTED",
        message: `session is ${this.#machine.state}`,
      });
    }
    const result = this.#actions.configReply(send.message.seq);
    void this.#actions.perform(actions, this.#link.channel);
    return result;
  }

  /**
   * Stops watching. With `terminate`, a READY session is ended with TERMINATE
   * and up to the check timeout for TERMINATE_ACK; otherwise it is closed.
   */
  async stop(terminate: boolean, reason = "shutdown"): Promise<void> {
    this.#plan.stop();
    this.#link.abortDial();
    const channel = this.#link.channel;
    if (terminate && channel) {
      await this.#actions.perform(this.#machine.terminate(reason, this.#now()), channel);
      if (this.#machine.state === "TERMINATING") await channel.closed;
    } else {
      await this.#actions.perform(
        this.#machine.abandon(CLOSE_CODES.GOING_AWAY, reason),
        channel,
      );
    }
    this.#plan.clearDeadline();
    this.#actions.endHeartbeats();
    await this.#link.settled();
  }

  /** The extensions to offer: the settings', without heartbeats when off or datagrams the stack lacks. */
  #offer(): Capability[] {
    const s = this.#deps.settings;
    return s.extensions.filter((c) =>
      (c === "push" || s.heartbeatMs > 0) && (c !== "datagram" || this.#deps.transport.datagrams)
    );
  }

  /** The next action is due: a check while READY, a dial while DISCONNECTED. */
  #next(): void {
    if (this.#plan.stopped) return;
    const s = this.#deps.settings;
    this.#plan.due();
    switch (this.#machine.state) {
      case "READY": {
        this.#plan.attempted(true);
        // While in doubt, a check must fail within the fast interval so that
        // DOWN comes within timeout + (fall - 1) x fast interval.
        const timeout = this.#record.inDoubt
          ? Math.min(s.checkTimeoutMs, s.fastIntervalMs)
          : s.checkTimeoutMs;
        const actions = this.#machine.check(this.#now(), undefined, timeout);
        // The next check is planned when this one's outcome arrives.
        if (actions.length === 0) this.#plan.check();
        void this.#actions.perform(actions, this.#link.channel);
        break;
      }
      case "DISCONNECTED":
        this.#plan.attempted(false);
        void this.#dial();
        break;
      default:
        // Connecting or terminating: look again after one interval.
        this.#plan.again();
    }
  }

  async #dial(): Promise<void> {
    const s = this.#deps.settings;
    await this.#actions.perform(this.#machine.connecting(this.#now()), undefined);
    this.#record.dialled();
    // Servers UP a moment ago go before ones long dead: priority is how
    // long the verdict has not been UP (0 while UP).
    const priority = this.#record.state === "UP" ? 0 : this.#now() - this.#record.lastChange;
    const opened = await this.#link.open(this.#target, s, this.#deps, priority);
    if ("aborted" in opened) return;
    if ("failure" in opened) {
      const { message, cause } = opened.failure;
      await this.#actions.perform(
        this.#machine.connectFailed(message, this.#now(), cause),
        undefined,
      );
      return;
    }
    const channel = opened.channel;
    let token: string;
    try {
      // Bound to the server as dialled, so that it cannot be replayed to
      // another; without verification the LB has no verified name to bind.
      const server = s.insecure ? undefined : this.#target.host;
      token = (await this.#deps.signer.sign(this.#now(), server)).token;
    } catch (e) {
      this.#log.error("cannot sign token", { error: (e as Error).message });
      await this.#actions.perform(
        this.#machine.abandon(CLOSE_CODES.INTERNAL, "cannot sign token"),
        channel,
      );
      this.#plan.redial();
      return;
    }
    await this.#actions.perform(this.#machine.connected(token, this.#now()), channel);
  }
}

/** Wall-clock ms with sub-millisecond resolution, for round-trip times. */
function _preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
