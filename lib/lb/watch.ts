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
import { describeFailure } from "../protocol/failure.ts";
import {
  type Failure,
  type LbAction,
  LbSession,
  type LbSessionState,
} from "../protocol/lb_session.ts";
import type { Logger } from "../util/log.ts";
import { type Capability, CLOSE_CODES, type SessionConfig } from "../protocol/wire.ts";
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
import { HeartbeatWatch } from "./heartbeat_watch.ts";
import type { LoopHealth } from "./loop_health.ts";
import type { HealthState } from "./verdict.ts";
import type { ConfigOutcome, WatchEvents, WatchResources, WatchSettings } from "./watch_types.ts";
import type { Channel, Transport } from "../transport/transport.ts";
import { Link } from "./link.ts";
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
  readonly #random: Random;
  readonly #machine: LbSession;
  readonly #record: ServerRecord;
  readonly #link: Link;
  readonly #scheduler: Scheduler;
  #nextTimer: ScheduledTimer | undefined;
  #deadlineTimer: ScheduledTimer | undefined;
  /** A reply deadline already put off once for the LB's own stall. */
  #deferred: number | undefined;
  /** Heartbeat detection of the READY session, when negotiated. */
  #heartbeats: HeartbeatWatch | undefined;
  #configWaiters = new Map<number, (o: ConfigOutcome) => void>();
  #stopped = false;
  #lastAttempt = 0;
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
        this.#perform(
          input instanceof CodecError
            ? this.#machine.receiveInvalid(input, this.#now())
            : this.#machine.receive(input, this.#now()),
          channel,
        ),
      datagram: (bytes, channel) =>
        void this.#perform(this.#machine.receiveDatagram(bytes, this.#now()), channel),
      closed: ({ message, cause }, channel) =>
        this.#perform(this.#machine.closed(message, this.#now(), cause), channel),
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
    this.#plan(0);
  }

  /** Applies changed settings (interval, timeout, fall, rise, metrics) from the next action on. */
  settingsChanged(): void {
    const s = this.#deps.settings;
    this.#machine.setTimeout(s.checkTimeoutMs);
    this.#machine.setInterval(s.checkIntervalMs);
    if (s.metrics) this.#machine.setMetrics(s.metrics);
    this.#machine.setExtensions(this.#offer(), s.heartbeatMs > 0 ? s.heartbeatMs : undefined);
    const beating = this.#heartbeats?.liveness.heartbeatMs;
    if (beating !== undefined && s.heartbeatMs > 0 && beating !== s.heartbeatMs) {
      // The fleet's size moved the heartbeat budget: tell the server.
      void this.configure({ heartbeat_ms: s.heartbeatMs });
    }
    this.#record.configure({ fall: s.maxFailAttempts, rise: s.rise });
    if (!this.#stopped && this.#machine.state === "READY" && !this.#machine.checkPending) {
      this.#planCheck();
    }
  }

  /** Timers and sessions held right now. */
  resources(): WatchResources {
    return {
      timers: (this.#nextTimer === undefined ? 0 : 1) +
        (this.#deadlineTimer === undefined ? 0 : 1) + (this.#heartbeats?.timers ?? 0),
      sessions: this.#link.sessions,
      closing: this.#link.closing,
    };
  }

  /** A snapshot for the status table and the HTTP API. */
  view(): WatchView {
    const hw = this.#heartbeats;
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
    const result = new Promise<ConfigOutcome>((resolve) => {
      this.#configWaiters.set(send.message.seq, resolve);
    });
    void this.#perform(actions, this.#link.channel);
    return result;
  }

  /**
   * Stops watching. With `terminate`, a READY session is ended with TERMINATE
   * and up to the check timeout for TERMINATE_ACK; otherwise it is closed.
   */
  async stop(terminate: boolean, reason = "shutdown"): Promise<void> {
    this.#stopped = true;
    this.#clearNext();
    this.#link.abortDial();
    const channel = this.#link.channel;
    if (terminate && channel) {
      await this.#perform(this.#machine.terminate(reason, this.#now()), channel);
      if (this.#machine.state === "TERMINATING") await channel.closed;
    } else {
      await this.#perform(this.#machine.abandon(CLOSE_CODES.GOING_AWAY, reason), channel);
    }
    this.#clearDeadline();
    this.#endHeartbeats();
    await this.#link.settled();
  }

  /** The extensions to offer: the settings', without heartbeats when off or datagrams the stack lacks. */
  #offer(): Capability[] {
    const s = this.#deps.settings;
    return s.extensions.filter((c) =>
      (c === "push" || s.heartbeatMs > 0) && (c !== "datagram" || this.#deps.transport.datagrams)
    );
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
        void this.#perform(actions, this.#link.channel);
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
    const channel = this.#link.channel;
    this.#deadlineTimer = this.#scheduler.at(deadline, () => {
      this.#deadlineTimer = undefined;
      const now = this.#now();
      // The LB's own stall is not the server's fault: once per deadline, let
      // the replies the stall held up arrive before timing anything out.
      const stalled =
        this.#deps.loopHealth?.stalledBetween(now - this.#deps.settings.checkTimeoutMs, now) ?? 0;
      if (stalled > 0 && this.#deferred !== deadline) {
        this.#deferred = deadline;
        this.#deadlineTimer = this.#scheduler.at(now + Math.min(stalled, 1000), () => {
          this.#deadlineTimer = undefined;
          void this.#perform(this.#machine.tick(this.#now()), channel);
        });
        return;
      }
      void this.#perform(this.#machine.tick(now), channel);
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
    this.#record.dialled();
    // Servers UP a moment ago go before ones long dead: priority is how
    // long the verdict has not been UP (0 while UP).
    const priority = this.#record.state === "UP" ? 0 : this.#now() - this.#record.lastChange;
    const opened = await this.#link.open(this.#target, s, this.#deps, priority);
    if ("aborted" in opened) return;
    if ("failure" in opened) {
      const { message, cause } = opened.failure;
      await this.#perform(this.#machine.connectFailed(message, this.#now(), cause), undefined);
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
      await this.#perform(
        this.#machine.abandon(CLOSE_CODES.INTERNAL, "cannot sign token"),
        channel,
      );
      this.#planRedial();
      return;
    }
    await this.#perform(this.#machine.connected(token, this.#now()), channel);
  }

  /** Carries out the machine's actions; `channel` is the one they belong to. */
  async #perform(actions: LbAction[], channel: Channel | undefined): Promise<void> {
    // A heartbeat that changes nothing shown is the common case: no deadline, no event.
    let changed = false;
    const status = this.#record.status;
    for (const action of actions) {
      if (action.kind !== "heartbeat" && action.kind !== "datagram") changed = true;
      switch (action.kind) {
        case "send": {
          const written = await this.#link.write(channel, action.message);
          if (written.ok || written.stale) break;
          const error = written.error.message;
          if (written.encode) {
            // Our own message is invalid: a bug, not the server's fault or the network's.
            this.#log.error("cannot encode a message; closing the session", { error });
            await this.#perform(
              this.#machine.abandon(CLOSE_CODES.INTERNAL, "internal error"),
              channel,
            );
            this.#onFailure({ kind: "protocol", code: "INTERNAL", message: error });
            return;
          }
          const lost = this.#machine.closed(
            `write failed: ${error}`,
            this.#now(),
            "connection_lost",
          );
          await this.#perform(lost, channel);
          break;
        }
        case "close":
          this.#link.close(channel, action.code, action.reason);
          break;
        case "ready":
          this.#record.ready(action.ack.server_id, action.capabilities, action.ack.services);
          this.#log.debug("session ready", {
            server_id: action.ack.server_id,
            setup_ms: Math.round(action.setupMs),
            extensions: action.capabilities.join(","),
          });
          if (action.heartbeatMs !== undefined && channel) {
            this.#startHeartbeats(action.heartbeatMs, channel);
          }
          // The first check follows the handshake at once.
          this.#plan(0);
          break;
        case "datagram":
          this.#link.datagram(channel, action.bytes);
          break;
        case "heartbeat": {
          this.#heartbeats?.heartbeat();
          const before = this.#record.status;
          this.#record.heartbeat(action);
          if (action.status !== before) {
            changed = true;
            // FAILING without push: poll now for the details (and the verdict).
            if (action.status === "FAILING" && !this.#machine.capabilities.has("push")) {
              this.#plan(0);
            }
          }
          break;
        }
        case "status":
          this.#onPushed(action.message);
          break;
        case "check":
          this.#onCheck(action);
          break;
        case "config": {
          const beat = action.ok ? action.config.heartbeat_ms : undefined;
          if (beat !== undefined && channel && beat !== this.#heartbeats?.liveness.heartbeatMs) {
            this.#startHeartbeats(beat, channel);
          }
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
    if (this.#heartbeats && this.#machine.state !== "READY") this.#endHeartbeats();
    const now = this.#record.status;
    if (now !== status && (now === "DRAINING" || status === "DRAINING")) {
      // A drain takes traffic away without a verdict change: say so once.
      this.#log.info(now === "DRAINING" ? "server draining" : "server no longer draining", {
        status: now,
      });
    }
    if (!changed) return;
    this.#armDeadline();
    this.#deps.events?.onChange?.(this.address);
  }

  #startHeartbeats(heartbeatMs: number, channel: Channel): void {
    const first = !this.#heartbeats;
    this.#heartbeats?.stop();
    const s = this.#deps.settings;
    this.#heartbeats = new HeartbeatWatch(
      {
        heartbeatMs,
        suspectPhi: s.suspectPhi,
        minProbeTimeoutMs: s.minProbeTimeoutMs,
        maxProbeTimeoutMs: s.maxProbeTimeoutMs,
      },
      {
        scheduler: this.#scheduler,
        now: this.#now,
        log: this.#log,
        loopHealth: this.#deps.loopHealth,
        probe: (timeoutMs) => {
          this.#record.probed();
          void this.#perform(this.#machine.probe(this.#now(), timeoutMs), this.#link.channel);
        },
        probeDatagram: this.#machine.capabilities.has("datagram")
          ? () => void this.#perform([this.#machine.probeDatagram()], this.#link.channel)
          : undefined,
      },
    );
    if (first && this.#machine.capabilities.has("datagram")) this.#link.readDatagrams(channel);
  }

  #endHeartbeats(): void {
    this.#heartbeats?.stop();
    this.#heartbeats = undefined;
    this.#record.sessionEnded();
  }

  /** The server pushed its status: FAILING is DOWN at once; recovery is confirmed by a check now. */
  #onPushed(message: Parameters<ServerRecord["pushed"]>[0]): void {
    this.#transition(this.#record.pushed(message, this.#now()));
    if (this.#record.inDoubt && !this.#machine.checkPending) this.#plan(0);
  }

  #onCheck(action: Extract<LbAction, { kind: "check" }>): void {
    const now = this.#now();
    const hw = this.#heartbeats;
    const rtt = action.ok ? action.rttMs : action.reply?.rttMs;
    if (hw && rtt !== undefined) hw.reply(rtt);
    if (
      hw && action.probe && !action.ok && action.failure.kind === "timeout" && hw.probeTimedOut()
    ) {
      // Heartbeats stopped and the probe went unanswered: DOWN without waiting for fall.
      const l = hw.liveness;
      const reason = `no heartbeat for ${
        Math.round(now - l.lastEvidence)
      } ms (every ${l.heartbeatMs} ms expected) and ${action.failure.message}`;
      this.#deps.events?.onCheck?.(this.address, false, null);
      this.#transition(this.#record.silent(reason, now));
      return this.#giveUp();
    }
    // Answered more than one interval after it was due: the LB cannot keep up.
    const late = now - this.#checkDueAt > this.#deps.settings.checkIntervalMs;
    const t = this.#record.checked(action, now, late);
    this.#deps.events?.onCheck?.(this.address, action.ok, action.ok ? action.rttMs : null);
    if (!action.ok) this.#log.debug("check failed", { reason: describeFailure(action.failure) });
    this.#transition(t);
    // DOWN (just now, or still): close the session and redial with backoff. A
    // FAILING server with push keeps its session: it will push its recovery.
    const keep = !action.ok && action.failure.kind === "failing" &&
      this.#machine.capabilities.has("push");
    if (!action.ok && this.#record.state === "DOWN" && !keep) this.#giveUp();
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
      this.#link.channel,
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
      evidence: t.evidence,
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
