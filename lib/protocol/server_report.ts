/**
 * What an agent's session tells the LB about its health: the snapshot its
 * `health` callback returns, and the HEALTH_RESPONSE, STATUS or heartbeat
 * made from one.
 *
 * @module
 */

import { encodeDatagram } from "./datagram.ts";
import type { DatagramAction } from "./session_rules.ts";
import type { HeartbeatMessage, LocalCheckResult, MetricValues, ServerStatus } from "./wire.ts";

/** What the server reports at this moment. */
export interface HealthSnapshot {
  status: ServerStatus;
  metrics: MetricValues;
  /** Local checks of the application, when the agent runs any. */
  checks?: LocalCheckResult[];
}

/** The body of a HEALTH_RESPONSE or STATUS, and the key of its status and failing checks. */
export function _report(
  health: (names: readonly string[]) => HealthSnapshot,
  names: readonly string[],
  now: number,
) {
  const snapshot = health(names);
  const metrics: MetricValues = {};
  for (const name of names) {
    const value = snapshot.metrics[name];
    if (value !== undefined) metrics[name] = value;
  }
  const checks = snapshot.checks && snapshot.checks.length > 0 ? snapshot.checks : undefined;
  const failing = checks?.filter((c) => !c.ok).map((c) => c.name) ?? [];
  return {
    key: `${snapshot.status} ${JSON.stringify(failing)}`,
    body: {
      status: snapshot.status,
      metrics,
      ts: Math.floor(now),
      ...(checks ? { checks } : {}),
    },
  };
}

/**
 * Heartbeat number `counter` from `snapshot`, with cpu and memory use clamped
 * to 0..100: a DATAGRAM action when `datagram` was negotiated, else the
 * HEARTBEAT message to send.
 */
export function _heartbeat(
  snapshot: HealthSnapshot,
  counter: number,
  datagram: boolean,
): DatagramAction | Omit<HeartbeatMessage, "seq"> {
  const percent = (name: string) => Math.min(100, Math.max(0, snapshot.metrics[name] ?? 0));
  if (datagram) {
    return {
      kind: "datagram",
      bytes: encodeDatagram({
        kind: "heartbeat",
        counter,
        status: snapshot.status,
        cpuPercent: percent("cpu_percent"),
        memPercent: percent("mem_percent"),
      }),
    };
  }
  return {
    type: "HEARTBEAT",
    hb: counter,
    status: snapshot.status,
    cpu_percent: percent("cpu_percent"),
    mem_percent: percent("mem_percent"),
  };
}
