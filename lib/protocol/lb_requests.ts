/**
 * The LB session's requests awaiting replies: the one HEALTH_REQUEST and any
 * CONFIG_UPDATEs, with their deadlines, and the seqs of those that timed out,
 * so that a late reply is dropped instead of failing the session. Pairing
 * replies with requests is bookkeeping apart from the states and transitions
 * of {@linkcode LbSession}, which owns one of these per session.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import type { CheckAction, ConfigAction } from "./lb_actions.ts";
import type { ConfigAckMessage, HealthResponseMessage, MessageType } from "./wire.ts";

/** How many timed-out request seqs are remembered so that late replies are ignored. */
const _LATE_MEMORY = 64;

/** The error for a reply whose `re` answers nothing we are waiting for. */
export function _badRe(
  m: { type: MessageType; seq: number; re: number },
  expected: string,
): ProtocolError {
  return new ProtocolError(
    "UNEXPECTED_MESSAGE",
    "remote",
    `Cannot accept ${m.type}: re ${m.re} does not answer ${expected}`,
    { seq: m.seq, messageType: m.type },
  );
}

/** One session's pending HEALTH_REQUEST and CONFIG_UPDATEs; a new session starts a new one. */
export class _LbRequests {
  #check: { seq: number; sentAt: number; deadline: number; probe: boolean } | undefined;
  /** Pending CONFIG_UPDATEs: seq to reply deadline. */
  #configs = new Map<number, number>();
  /** Seqs of timed-out requests, so that their late replies are ignored. */
  #lateChecks: number[] = [];
  #lateConfigs: number[] = [];

  /** True while a HEALTH_REQUEST awaits its answer. */
  get checkPending(): boolean {
    return this.#check !== undefined;
  }

  /** The earliest reply deadline, or undefined. */
  get deadline(): number | undefined {
    let d = this.#check?.deadline;
    for (const t of this.#configs.values()) if (d === undefined || t < d) d = t;
    return d;
  }

  /** Records a HEALTH_REQUEST sent at `sentAt`, to be answered by `deadline`. */
  checkSent(seq: number, sentAt: number, deadline: number): void {
    this.#check = { seq, sentAt, deadline, probe: false };
  }

  /** Makes the pending check a probe, answered by `deadline` at the latest. */
  probe(deadline: number): void {
    this.#check!.deadline = Math.min(this.#check!.deadline, deadline);
    this.#check!.probe = true;
  }

  /** Records a CONFIG_UPDATE to be answered by `deadline`. */
  configSent(seq: number, deadline: number): void {
    this.#configs.set(seq, deadline);
  }

  /** The outcome of the pending check this reply answers, [] for a late reply, or the breach. */
  answerCheck(m: HealthResponseMessage, now: number): CheckAction[] | ProtocolError {
    if (this.#check && m.re === this.#check.seq) {
      const rttMs = now - this.#check.sentAt;
      const probe = this.#check.probe ? { probe: true as const } : {};
      this.#check = undefined;
      if (m.status === "FAILING") {
        const failed = (m.checks ?? []).filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
        const message = `server FAILING: ${
          failed.length ? failed.join("; ") : "a local check fails"
        }`;
        return [{
          kind: "check",
          ok: false,
          failure: { kind: "failing", message },
          reply: { rttMs, response: m },
          ...probe,
        }];
      }
      return [{ kind: "check", ok: true, rttMs, response: m, ...probe }];
    }
    // A late reply is dropped once; a second reply to the same request answers nothing.
    if (_forget(this.#lateChecks, m.re)) return [];
    return _badRe(m, "a pending HEALTH_REQUEST");
  }

  /** The outcome of the pending CONFIG_UPDATE this CONFIG_ACK answers, [] if late, or the breach. */
  answerConfig(m: ConfigAckMessage): ConfigAction[] | ProtocolError {
    if (this.#configs.delete(m.re)) {
      return [{ kind: "config", seq: m.re, ok: true, config: m.config }];
    }
    if (_forget(this.#lateConfigs, m.re)) return [];
    return _badRe(m, "a pending CONFIG_UPDATE");
  }

  /**
   * The outcome of the CONFIG_UPDATE `re` that ERROR BAD_CONFIG rejects, []
   * if late, or undefined when it answers none (the ERROR then ends the session).
   */
  rejectConfig(re: number, message: string): ConfigAction[] | undefined {
    if (this.#configs.delete(re)) {
      return [{ kind: "config", seq: re, ok: false, code: "BAD_CONFIG", message }];
    }
    if (_forget(this.#lateConfigs, re)) return [];
    return undefined;
  }

  /** Fails the requests whose deadline has come; `timeoutMs` is named in config failures. */
  expire(now: number, timeoutMs: number): (CheckAction | ConfigAction)[] {
    const out: (CheckAction | ConfigAction)[] = [];
    if (this.#check && now >= this.#check.deadline) {
      const { seq, sentAt } = this.#check;
      const probe = this.#check.probe;
      this.#check = undefined;
      _remember(this.#lateChecks, seq);
      out.push({
        kind: "check",
        ok: false,
        failure: {
          kind: "timeout",
          message: `no HEALTH_RESPONSE within ${Math.round(now - sentAt)} ms`,
        },
        ...(probe ? { probe: true as const } : {}),
      });
    }
    for (const [seq, deadline] of this.#configs) {
      if (now < deadline) continue;
      this.#configs.delete(seq);
      _remember(this.#lateConfigs, seq);
      out.push({
        kind: "config",
        seq,
        ok: false,
        code: "TIMEOUT",
        message: `no CONFIG_ACK within ${timeoutMs} ms`,
      });
    }
    return out;
  }

  /** Pending configs fail with the session; a pending check is dropped (the session failure counts). */
  abort(message: string): ConfigAction[] {
    const out: ConfigAction[] = [];
    for (const seq of this.#configs.keys()) {
      out.push({ kind: "config", seq, ok: false, code: "CLOSED", message });
    }
    this.#configs.clear();
    this.#check = undefined;
    return out;
  }
}

/** Removes `seq` from the list; true when it was there. */
function _forget(list: number[], seq: number): boolean {
  const i = list.indexOf(seq);
  if (i < 0) return false;
  list.splice(i, 1);
  return true;
}

function _remember(list: number[], seq: number): void {
  list.push(seq);
  if (list.length > _LATE_MEMORY) list.shift();
}
