/**
 * The LB's side of the extensions (§10): what HELLO offers, whether the ACK's
 * answer to that offer is valid, which message types the negotiated set
 * admits, and the ordering of heartbeats. Apart from {@linkcode LbSession} so
 * that the machine reads as QHCP/1 with a few calls out to its extensions.
 *
 * @module
 */

import { ProtocolError } from "./errors.ts";
import type { HeartbeatAction } from "./lb_actions.ts";
import type { AckMessage, Capability, MessageType, ServerStatus } from "./wire.ts";

/** The extension fields of a HELLO offering `capabilities` (`heartbeat_ms` only with `heartbeat`). */
export function _offer(
  capabilities: readonly Capability[],
  heartbeatMs: number | undefined,
): { capabilities?: Capability[]; heartbeat_ms?: number } {
  const hb = capabilities.includes("heartbeat") ? heartbeatMs : undefined;
  return {
    // Offering nothing keeps the HELLO exactly QHCP/1's.
    ...(capabilities.length === 0 ? {} : { capabilities: [...capabilities] }),
    ...(hb === undefined ? {} : { heartbeat_ms: hb }),
  };
}

/** The extensions an ACK accepts, checked against those HELLO offered; or the breach. */
export function _ackCapabilities(
  m: AckMessage,
  offered: readonly Capability[],
): Set<Capability> | ProtocolError {
  const accepted = m.capabilities ?? [];
  const stray = accepted.find((c) => !(offered as readonly string[]).includes(c));
  const bad = (what: string) =>
    new ProtocolError("BAD_MESSAGE", "remote", `Cannot accept ACK: ${what}`, {
      seq: m.seq,
      messageType: "ACK",
    });
  if (stray !== undefined) {
    return bad(`it accepts ${JSON.stringify(stray)}, which HELLO did not offer`);
  }
  const caps = new Set(accepted as Capability[]);
  if (caps.has("heartbeat") !== (m.heartbeat_ms !== undefined)) {
    return bad("heartbeat_ms must come with the heartbeat capability, and only with it");
  }
  if (caps.has("datagram") && !caps.has("heartbeat")) {
    return bad("it accepts datagram without heartbeat");
  }
  return caps;
}

/** False for a message type of an extension that `caps` lacks. */
export function _admits(caps: ReadonlySet<Capability>, type: MessageType): boolean {
  return type === "STATUS" ? caps.has("push") : type !== "HEARTBEAT" || caps.has("heartbeat");
}

/** One session's heartbeats, HEARTBEAT messages and DATAGRAMs alike, taken in order. */
export class _Heartbeats {
  /** The last counter taken, so duplicates and stale ones are dropped. */
  #last = 0;

  /** The action for this heartbeat, or [] when it is a repeat or stale. */
  take(
    counter: number,
    status: ServerStatus,
    cpuPercent: number,
    memPercent: number,
  ): HeartbeatAction[] {
    // Counters only grow (2^32 - 1 is followed by 1): an older or repeated one says nothing new.
    const last = this.#last;
    if (counter <= last && last - counter < 2 ** 31) return [];
    this.#last = counter;
    return [{
      kind: "heartbeat",
      counter,
      missed: counter > last ? counter - last - 1 : 0,
      status,
      cpuPercent,
      memPercent,
    }];
  }
}
