/**
 * The driver of one server: dials it, runs an {@linkcode LbSession} over the
 * channel, performs the machine's actions, and schedules checks and redials.
 * What is known of the server (verdict, figures, counters, history) lives in
 * its {@linkcode ServerRecord}, which this driver feeds.
 *
 * Scheduling rules:
 * - while a session is READY, a check every check interval;
 * - while there is no session and the server is not DOWN, a dial every check
 *   interval (a failed dial counts as a failed check);
 * - when DOWN, the session is closed and a dial happens every reconnect
 *   interval; the first good check marks the server UP;
 * - TERMINATE from the server marks it DOWN at once, except with reason
 *   "token_expired", which is answered by reconnecting at once with a fresh token.
 *
 * @module
 */

import type { TokenSigner } from "../security/jwt.ts";
import { _readMessages } from "../transport/read_messages.ts";
import { CodecError, encodeMessage } from "../protocol/codec.ts";
import { describeFailure } from "../protocol/failure.ts";
import {
  type Failure,
  type LbAction,
  LbSession,
  type LbSessionState,
} from "../protocol/lb_session.ts";
import type { Logger } from "../util/log.ts";
import { CLOSE_CODES, type SessionConfig } from "../protocol/wire.ts";
import type { CheckRecord } from "./history.ts";
import {
  type CausedTransition,
  ServerRecord,
  type WatchCounters,
  type WatchView,
} from "./record.ts";
import { checkDelay, type Random, redialDelay } from "./schedule.ts";
import { type ScheduledTimer, Scheduler } from "./timers.ts";
import type { DialGate } from "./dial_gate.ts";
import type { HealthState } from "./verdict.ts";
import type { ConfigOutcome, WatchEvents, WatchResources, WatchSettings } from "./watch_types.ts";
import { type Channel, type Transport, TransportError } from "../transport/transport.ts";
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
}

/** Watches one server. */
export class Watch {
  readonly address: string;
  readonly #target: ServerAddress;
  readonly #deps: WatchDeps;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #random: Random;
  readonly #machine: LbSession;
  readonly #record: ServerRecord;
  #channel: Channel | undefined;
  #closing = new Set<Promise<void>>();
  readonly #scheduler: Scheduler;
  #nextTimer: ScheduledTimer | undefined;
  #deadlineTimer: ScheduledTimer | undefined;
  #dialAbort: AbortController | undefined;
  #configWaiters = new Map<number, (o: ConfigOutcome) => void>();
  #stopped = false;
  #lastAttempt = 0;
  #dialing = false;
  /** Redials since the server went DOWN, for the backoff. */
  #redials = 0;
  /** When the armed timer is due, when the last action was, and when the check in flight was (for `late`). */
  #dueAt = 0;
  #lastDue = 0;
  #checkDueAt = 0;

  constructor(target: ServerAddress, deps: WatchDeps) {
    this.#target = target;
    this.address = formatAddress(target.host, target.port);
    this.#deps = deps;
    this.#now = deps.now ?? _preciseNow;
    this.#random = deps.random ?? Math.random;
    this.#scheduler = deps.scheduler ?? new Scheduler({ now: this.#now });
    this.#log = deps.log.child({ server: this.address });
    const s = deps.settings;
    this.#machine = new LbSession({
      lbId: s.lbId,
      timeoutMs: s.checkTimeoutMs,
      intervalMs: s.checkIntervalMs,
      ...(s.metrics ? { metrics: s.metrics } : {}),
    });
    this.#record = new ServerRecord(
      this.address,
      { fall: s.maxFailAttempts, rise: s.rise },
      this.#now(),
    );
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
    this.#plan(0);
  }

  /** Applies changed settings (interval, timeout, fall, rise, metrics) from the next action on. */
  settingsChanged(): void {
    const s = this.#deps.settings;
    this.#machine.setTimeout(s.checkTimeoutMs);
    this.#machine.setInterval(s.checkIntervalMs);
    if (s.metrics) this.#machine.setMetrics(s.metrics);
    this.#record.configure({ fall: s.maxFailAttempts, rise: s.rise });
    if (!this.#stopped && this.#machine.state === "READY" && !this.#machine.checkPending) {
      this.#planCheck();
    }
  }

  /** Timers and sessions held right now. */
  resources(): WatchResources {
    return {
      timers: (this.#nextTimer === undefined ? 0 : 1) + (this.#deadlineTimer === undefined ? 0 : 1),
      sessions: this.#channel || this.#dialing ? 1 : 0,
      closing: this.#closing.size,
    };
  }

  /** A snapshot for the status table and the HTTP API. */
  view(): WatchView {
    return this.#record.view(this.#machine.state, this.#deps.settings.weights);
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
    const result = new Promise<ConfigOutcome>((resolve) => {
      this.#configWaiters.set(send.message.seq, resolve);
    });
    void this.#perform(actions, this.#channel);
    return result;
  }

  /**
   * Stops watching. With `terminate`, a READY session is ended with TERMINATE
   * and up to the check timeout for TERMINATE_ACK; otherwise it is closed.
   */
  async stop(terminate: boolean, reason = "shutdown"): Promise<void> {
    this.#stopped = true;
    this.#clearNext();
    this.#dialAbort?.abort();
    const channel = this.#channel;
    if (terminate && channel) {
      await this.#perform(this.#machine.terminate(reason, this.#now()), channel);
      if (this.#machine.state === "TERMINATING") await channel.closed;
    } else {
      await this.#perform(this.#machine.abandon(CLOSE_CODES.GOING_AWAY, reason), channel);
    }
    this.#clearDeadline();
    await Promise.all(this.#closing);
  }

  // --- scheduling ---------------------------------------------------------------

  /** Arms the single "next thing to do" timer. */
  #plan(delayMs: number): void {
    this.#clearNext();
    if (this.#stopped) return;
    this.#dueAt = this.#now() + Math.max(0, delayMs);
    this.#nextTimer = this.#scheduler.at(this.#dueAt, () => {
      this.#nextTimer = undefined;
      this.#next();
    });
  }

  #clearNext(): void {
    this.#scheduler.cancel(this.#nextTimer);
    this.#nextTimer = undefined;
  }

  #next(): void {
    if (this.#stopped) return;
    const s = this.#deps.settings;
    this.#lastDue = this.#dueAt;
    switch (this.#machine.state) {
      case "READY": {
        this.#lastAttempt = this.#now();
        this.#checkDueAt = this.#dueAt;
        // While in doubt, a check must fail within the fast interval so that
        // DOWN comes within timeout + (fall - 1) x fast interval.
        const timeout = this.#record.inDoubt
          ? Math.min(s.checkTimeoutMs, s.fastIntervalMs)
          : s.checkTimeoutMs;
        const actions = this.#machine.check(this.#now(), undefined, timeout);
        // The next check is planned when this one's outcome arrives.
        if (actions.length === 0) this.#planCheck();
        void this.#perform(actions, this.#channel);
        break;
      }
      case "DISCONNECTED":
        this.#lastAttempt = this.#now();
        void this.#dial();
        break;
      default:
        // Connecting or terminating: look again after one interval.
        this.#plan(checkDelay(s, false, this.#random));
    }
  }

  /** Plans the next check, one (fast or normal, jittered) interval after the last one was due. */
  #planCheck(): void {
    const delay = checkDelay(this.#deps.settings, this.#record.inDoubt, this.#random);
    // From when the last action was due rather than when it ran, so that timer
    // slack and event-loop delays do not stretch the interval; after a long
    // stall, from when it ran, so that missed checks are not made up in a burst.
    const now = this.#now();
    const base = now - this.#lastDue < delay ? this.#lastDue : this.#lastAttempt;
    this.#plan(base + delay - now);
  }

  /**
   * Plans the next dial after a session ended or failed: DOWN servers back off
   * (full jitter, capped at the reconnect interval); others are dialled on
   * the check schedule, where a failed dial counts as a failed check.
   */
  #planRedial(immediately = false): void {
    if (immediately) return this.#plan(0);
    const s = this.#deps.settings;
    if (this.#record.state === "DOWN") {
      this.#plan(redialDelay(s, this.#redials++, this.#random));
    } else {
      this.#planCheck();
    }
  }

  #armDeadline(): void {
    this.#clearDeadline();
    const deadline = this.#machine.deadline;
    if (deadline === undefined) return;
    const channel = this.#channel;
    this.#deadlineTimer = this.#scheduler.at(deadline, () => {
      this.#deadlineTimer = undefined;
      void this.#perform(this.#machine.tick(this.#now()), channel);
    });
  }

  #clearDeadline(): void {
    this.#scheduler.cancel(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
  }

  // --- session ------------------------------------------------------------------

  async #dial(): Promise<void> {
    const s = this.#deps.settings;
    await this.#perform(this.#machine.connecting(this.#now()), undefined);
    const abort = new AbortController();
    this.#dialAbort = abort;
    this.#dialing = true;
    this.#record.dialled();
    let channel: Channel;
    let release: (() => void) | undefined;
    try {
      // Wait for a handshake slot; the dial's own timeout starts after it.
      // Servers UP a moment ago go before ones long dead: priority is how
      // long the verdict has not been UP (0 while UP).
      const priority = this.#record.state === "UP" ? 0 : this.#now() - this.#record.lastChange;
      release = await this.#deps.dialGate?.acquire(abort.signal, priority);
      channel = await this.#deps.transport.dial({
        host: this.#target.host,
        port: this.#target.port,
        timeoutMs: s.checkTimeoutMs,
        idleTimeoutMs: s.idleTimeoutMs,
        insecure: s.insecure,
        ...(s.caPem === undefined ? {} : { caPem: s.caPem }),
        signal: abort.signal,
      });
    } catch (e) {
      if (this.#stopped) return;
      const message = e instanceof TransportError
        ? e.message
        : `dial failed: ${(e as Error).message}`;
      const cause = e instanceof TransportError && e.kind === "certificate"
        ? "certificate"
        : "unreachable";
      await this.#perform(this.#machine.connectFailed(message, this.#now(), cause), undefined);
      return;
    } finally {
      release?.();
      this.#dialAbort = undefined;
      this.#dialing = false;
    }
    if (this.#stopped) {
      await channel.close(CLOSE_CODES.GOING_AWAY, "LB stopping", 0);
      return;
    }
    this.#channel = channel;
    void this.#readLoop(channel);
    let token: string;
    try {
      // Bound to the server as dialled, so that it cannot be replayed to
      // another; without verification the LB has no verified name to bind.
      const server = s.insecure ? undefined : this.#target.host;
      token = (await this.#deps.signer.sign(this.#now(), server)).token;
    } catch (e) {
      this.#log.error("cannot sign token", { error: (e as Error).message });
      await this.#perform(
        this.#machine.abandon(CLOSE_CODES.INTERNAL, "cannot sign token"),
        channel,
      );
      this.#planRedial();
      return;
    }
    await this.#perform(this.#machine.connected(token, this.#now()), channel);
  }

  async #readLoop(channel: Channel): Promise<void> {
    await _readMessages(channel, () => this.#channel === channel, async (input) => {
      await this.#perform(
        input instanceof CodecError
          ? this.#machine.receiveInvalid(input, this.#now())
          : this.#machine.receive(input, this.#now()),
        channel,
      );
    });
    const info = await channel.closed;
    if (this.#channel === channel) {
      const why = info.by === "remote"
        ? `connection closed by peer${
          info.code === undefined ? "" : ` (code ${info.code})`
        }: ${info.reason}`
        : info.by === "transport"
        ? `connection lost: ${info.reason}`
        : `connection closed: ${info.reason}`;
      const cause = info.by === "remote" ? "closed_by_peer" : "connection_lost";
      await this.#perform(this.#machine.closed(why, this.#now(), cause), channel);
    }
  }

  /** Carries out the machine's actions; `channel` is the one they belong to. */
  async #perform(actions: LbAction[], channel: Channel | undefined): Promise<void> {
    for (const action of actions) {
      switch (action.kind) {
        case "send": {
          if (!channel || channel !== this.#channel) break;
          let frame: Uint8Array;
          try {
            frame = encodeMessage(action.message);
          } catch (e) {
            // Our own message is invalid: a bug, not the server's fault or the network's.
            this.#log.error("cannot encode a message; closing the session", {
              error: (e as Error).message,
            });
            await this.#perform(
              this.#machine.abandon(CLOSE_CODES.INTERNAL, "internal error"),
              channel,
            );
            this.#onFailure({ kind: "protocol", code: "INTERNAL", message: (e as Error).message });
            return;
          }
          try {
            await channel.write(frame);
          } catch (e) {
            await this.#perform(
              this.#machine.closed(
                `write failed: ${(e as Error).message}`,
                this.#now(),
                "connection_lost",
              ),
              channel,
            );
          }
          break;
        }
        case "close":
          if (channel && channel === this.#channel) {
            this.#channel = undefined;
            const p = channel.close(action.code, action.reason);
            this.#closing.add(p);
            void p.then(() => this.#closing.delete(p));
          }
          break;
        case "ready":
          this.#record.ready(action.ack.server_id);
          this.#log.debug("session ready", {
            server_id: action.ack.server_id,
            setup_ms: Math.round(action.setupMs),
          });
          // The first check follows the handshake at once.
          this.#plan(0);
          break;
        case "check":
          this.#onCheck(action);
          break;
        case "config": {
          const waiter = this.#configWaiters.get(action.seq);
          this.#configWaiters.delete(action.seq);
          waiter?.(
            action.ok
              ? { address: this.address, ok: true, config: action.config }
              : { address: this.address, ok: false, code: action.code, message: action.message },
          );
          break;
        }
        case "failed":
          this.#onFailure(action.failure);
          break;
        case "terminated":
          this.#onTerminated(action.reason);
          break;
      }
    }
    this.#armDeadline();
    if (actions.length > 0) this.#deps.events?.onChange?.(this.address);
  }

  #onCheck(action: Extract<LbAction, { kind: "check" }>): void {
    const now = this.#now();
    // Answered more than one interval after it was due: the LB cannot keep up.
    const late = now - this.#checkDueAt > this.#deps.settings.checkIntervalMs;
    const t = this.#record.checked(action, now, late);
    this.#deps.events?.onCheck?.(this.address, action.ok, action.ok ? action.rttMs : null);
    if (!action.ok) this.#log.debug("check failed", { reason: describeFailure(action.failure) });
    this.#transition(t);
    // DOWN (just now, or still): close the session and redial with backoff.
    if (!action.ok && this.#record.state === "DOWN") this.#giveUp();
    else this.#planCheck();
  }

  /** A session-level failure: counts as one failed check; the session is gone. */
  #onFailure(failure: Failure): void {
    const t = this.#record.failed(failure, this.#now());
    this.#deps.events?.onCheck?.(this.address, false, null);
    this.#log.debug("session failed", { reason: describeFailure(failure) });
    this.#transition(t);
    this.#planRedial();
  }

  #onTerminated(reason: string): void {
    if (reason === "token_expired") {
      this.#log.info("session token expired; reconnecting with a fresh token");
      this.#planRedial(true);
      return;
    }
    this.#transition(this.#record.terminated(reason, this.#now()));
    this.#planRedial();
  }

  /** DOWN: close the session (CHECK_FAILED) and redial with backoff. */
  #giveUp(): void {
    void this.#perform(
      this.#machine.abandon(CLOSE_CODES.CHECK_FAILED, "marked DOWN after failed checks"),
      this.#channel,
    );
    this.#planRedial();
  }

  /** Logs a verdict change once, with its cause, reason and timing. */
  #transition(t: CausedTransition | undefined): void {
    if (!t) return;
    if (t.to === "UP") this.#redials = 0;
    const fields = {
      from: t.from,
      to: t.to,
      cause: t.cause,
      reason: t.reason,
      took_ms: Math.round(t.tookMs),
      after_ms: Math.round(t.afterMs),
    };
    if (t.to === "DOWN") this.#log.warn(`server ${t.to}`, fields);
    else this.#log.info(`server ${t.to}`, fields);
    this.#deps.events?.onTransition?.(this.address, t);
  }
}

/** Wall-clock ms with sub-millisecond resolution, for round-trip times. */
function _preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
