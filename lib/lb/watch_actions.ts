/**
 * The interpreter of one watch's session: carries out the actions of its
 * {@linkcode LbSession} (writes, closes, readiness, heartbeats, pushes, check
 * outcomes, CONFIG replies, failures, termination), feeds them to the
 * server's {@linkcode ServerRecord}, and turns their outcomes into verdict
 * changes, events and the next check or redial of the {@linkcode WatchPlan}.
 *
 * @module
 */

import { describeFailure } from "../protocol/failure.ts";
import type { Failure, LbAction, LbSession, LbSessionState } from "../protocol/lb_session.ts";
import { CLOSE_CODES } from "../protocol/wire.ts";
import type { Channel } from "../transport/transport.ts";
import type { Logger } from "../util/log.ts";
import { HeartbeatWatch } from "./heartbeat_watch.ts";
import type { Link } from "./link.ts";
import type { LoopHealth } from "./loop_health.ts";
import type { CausedTransition, ServerRecord } from "./record.ts";
import type { Scheduler } from "./timers.ts";
import type { WatchPlan } from "./watch_plan.ts";
import type { ConfigOutcome, WatchEvents, WatchSettings } from "./watch_types.ts";

/** The parts of one watch its session's actions work on. */
export interface WatchActionsDeps {
  /** The server, as shown. */
  address: string;
  log: Logger;
  now: () => number;
  /** Timers for heartbeat detection; its clock must be `now`. */
  scheduler: Scheduler;
  machine: LbSession;
  record: ServerRecord;
  link: Link;
  plan: WatchPlan;
  /** The watch's settings (changed in place), events and the LB's own stalls, read when used. */
  watch: {
    readonly settings: WatchSettings;
    readonly events?: WatchEvents;
    readonly loopHealth?: LoopHealth;
  };
}

/**
 * Carries out one session's actions.
 *
 * @example
 * ```ts
 * import { WatchActions } from "./watch_actions.ts";
 * import { Scheduler } from "./timers.ts";
 * import { silentLogger } from "../util/log.ts";
 * import type { LbSession } from "../protocol/lb_session.ts";
 * import type { Message } from "../protocol/wire.ts";
 * import type { Channel } from "../transport/transport.ts";
 * import type { Link } from "./link.ts";
 * import type { ServerRecord } from "./record.ts";
 * import type { WatchPlan } from "./watch_plan.ts";
 * import type { WatchSettings } from "./watch_types.ts";
 * // The watch's own parts, which it builds before its actions.
 * declare const machine: LbSession, record: ServerRecord, link: Link, plan: WatchPlan;
 * declare const settings: WatchSettings, message: Message, channel: Channel;
 * const actions = new WatchActions({
 *   address: "10.0.0.7:4243",
 *   log: silentLogger,
 *   now: Date.now,
 *   scheduler: new Scheduler(),
 *   machine,
 *   record,
 *   link,
 *   plan,
 *   watch: { settings },
 * });
 * await actions.perform(machine.receive(message, Date.now()), channel);
 * ```
 */
export class WatchActions {
  readonly #address: string;
  readonly #deps: WatchActionsDeps["watch"];
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #scheduler: Scheduler;
  readonly #machine: LbSession;
  readonly #record: ServerRecord;
  readonly #link: Link;
  readonly #plan: WatchPlan;
  /** Heartbeat detection of the READY session, when negotiated. */
  #heartbeats: HeartbeatWatch | undefined;
  #configWaiters = new Map<number, (o: ConfigOutcome) => void>();
  /** The session state as last announced by `onChange`. */
  #announced: LbSessionState | undefined;

  constructor(deps: WatchActionsDeps) {
    this.#address = deps.address;
    this.#deps = deps.watch;
    this.#log = deps.log;
    this.#now = deps.now;
    this.#scheduler = deps.scheduler;
    this.#machine = deps.machine;
    this.#record = deps.record;
    this.#link = deps.link;
    this.#plan = deps.plan;
  }

  /** Heartbeat detection of the READY session, when negotiated. */
  get heartbeats(): HeartbeatWatch | undefined {
    return this.#heartbeats;
  }

  /** The outcome of the CONFIG_UPDATE numbered `seq`, once its CONFIG_ACK or ERROR arrives. */
  configReply(seq: number): Promise<ConfigOutcome> {
    return new Promise<ConfigOutcome>((resolve) => {
      this.#configWaiters.set(seq, resolve);
    });
  }

  /** Carries out the machine's actions; `channel` is the one they belong to. */
  async perform(actions: LbAction[], channel: Channel | undefined): Promise<void> {
    // A heartbeat that changes nothing shown is the common case: no deadline, no event.
    let changed = false;
    // A send (a check going out) arms a deadline but shows nothing new, unless the
    // session's state moved with it; readers (the event stream, the fleet's verdict
    // writer, HAProxy) would otherwise build a server's view twice per check.
    let shown = false;
    const status = this.#record.status;
    for (const action of actions) {
      if (action.kind !== "heartbeat" && action.kind !== "datagram") {
        changed = true;
        if (action.kind !== "send") shown = true;
      }
      switch (action.kind) {
        case "send": {
          const written = await this.#link.write(channel, action.message);
          if (written.ok || written.stale) break;
          const error = written.error.message;
          if (written.encode) {
            // Our own message is invalid: a bug, not the server's fault or the network's.
            this.#log.error("cannot encode a message; closing the session", { error });
            await this.perform(
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
          await this.perform(lost, channel);
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
          this.#plan.after(0);
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
            shown = true;
            // FAILING without push: poll now for the details (and the verdict).
            if (action.status === "FAILING" && !this.#machine.capabilities.has("push")) {
              this.#plan.after(0);
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
              ? { address: this.#address, ok: true, config: action.config }
              : { address: this.#address, ok: false, code: action.code, message: action.message },
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
    if (this.#heartbeats && this.#machine.state !== "READY") this.endHeartbeats();
    const now = this.#record.status;
    if (now !== status && (now === "DRAINING" || status === "DRAINING")) {
      // A drain takes traffic away without a verdict change: say so once.
      this.#log.info(now === "DRAINING" ? "server draining" : "server no longer draining", {
        status: now,
      });
    }
    if (!changed) return;
    const deadlineChannel = this.#link.channel;
    this.#plan.armDeadline(
      this.#machine.deadline,
      (at) => void this.perform(this.#machine.tick(at), deadlineChannel),
    );
    if (!shown && this.#machine.state === this.#announced) return;
    this.#announced = this.#machine.state;
    this.#deps.events?.onChange?.(this.#address);
  }

  /** The session ended: heartbeat detection stops and the record forgets the session. */
  endHeartbeats(): void {
    this.#heartbeats?.stop();
    this.#heartbeats = undefined;
    this.#record.sessionEnded();
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
          void this.perform(this.#machine.probe(this.#now(), timeoutMs), this.#link.channel);
        },
        probeDatagram: this.#machine.capabilities.has("datagram")
          ? () => void this.perform([this.#machine.probeDatagram()], this.#link.channel)
          : undefined,
      },
    );
    if (first && this.#machine.capabilities.has("datagram")) this.#link.readDatagrams(channel);
  }

  /** The server pushed its status: FAILING is DOWN at once; recovery is confirmed by a check now. */
  #onPushed(message: Parameters<ServerRecord["pushed"]>[0]): void {
    this.#transition(this.#record.pushed(message, this.#now()));
    if (this.#record.inDoubt && !this.#machine.checkPending) this.#plan.after(0);
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
      this.#deps.events?.onCheck?.(this.#address, false, null);
      this.#transition(this.#record.silent(reason, now));
      return this.#giveUp();
    }
    // Answered more than one interval after it was due: the LB cannot keep up.
    const late = now - this.#plan.checkDueAt > this.#deps.settings.checkIntervalMs;
    const t = this.#record.checked(action, now, late);
    this.#deps.events?.onCheck?.(this.#address, action.ok, action.ok ? action.rttMs : null);
    if (!action.ok) this.#log.debug("check failed", { reason: describeFailure(action.failure) });
    this.#transition(t);
    // DOWN (just now, or still): close the session and redial with backoff. A
    // FAILING server with push keeps its session: it will push its recovery.
    const keep = !action.ok && action.failure.kind === "failing" &&
      this.#machine.capabilities.has("push");
    if (!action.ok && this.#record.state === "DOWN" && !keep) this.#giveUp();
    else this.#plan.check();
  }

  /** A session-level failure: counts as one failed check; the session is gone. */
  #onFailure(failure: Failure): void {
    const t = this.#record.failed(failure, this.#now());
    this.#deps.events?.onCheck?.(this.#address, false, null);
    this.#log.debug("session failed", { reason: describeFailure(failure) });
    this.#transition(t);
    this.#plan.redial();
  }

  #onTerminated(reason: string): void {
    if (reason === "token_expired") {
      this.#log.info("session token expired; reconnecting with a fresh token");
      this.#plan.redial(true);
      return;
    }
    this.#transition(this.#record.terminated(reason, this.#now()));
    this.#plan.redial();
  }

  /** DOWN: close the session (CHECK_FAILED) and redial with backoff. */
  #giveUp(): void {
    void this.perform(
      this.#machine.abandon(CLOSE_CODES.CHECK_FAILED, "marked DOWN after failed checks"),
      this.#link.channel,
    );
    this.#plan.redial();
  }

  /** Logs a verdict change once, with its cause, reason and timing. */
  #transition(t: CausedTransition | undefined): void {
    if (!t) return;
    if (t.to === "UP") this.#plan.resetBackoff();
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
    this.#deps.events?.onTransition?.(this.#address, t);
  }
}
