/**
 * The shared verdict: what an owner writes to etcd about a server, and how
 * the owners' verdicts combine into the one every LB serves. Pure.
 *
 * Combining (K owners may disagree when a path fails between one LB and a
 * server): a server is UP while any of its current owners sees it UP (one
 * LB's broken path must not take a live server out), DOWN when every owner
 * that has decided sees it DOWN, UNKNOWN when none has. Its weight is the
 * smallest weight among the owners that see it UP; DRAINING or FAILING
 * from any of them wins over UP. Until a current owner has decided (UP or
 * DOWN), the last verdict of a previous owner stands, so a change of owners
 * flips nothing.
 *
 * @module
 */

import type { HealthState } from "../lb/verdict.ts";
import type { WatchView } from "../lb/record.ts";
import type { ServerStatus, ServiceInfo } from "../protocol/wire.ts";

/** One owner's verdict on one server, as written to etcd. */
export interface OwnerVerdict {
  state: HealthState;
  status: ServerStatus | null;
  weight: number;
  /** Load (0..100) behind the weight, or null. */
  load: number | null;
  cpu: number | null;
  mem: number | null;
  rtt_ms: number | null;
  last_error: string | null;
  /** ISO time the verdict last changed. */
  since: string;
  /** The services the agent fronts (from its ACK), so that every LB can group and serve them. */
  services: ServiceInfo[];
  /** The owner that wrote it. */
  by: string;
  /** ISO time it was written (a refresh rewrites it). */
  at: string;
}

/** The verdict of the fleet on one server. */
export interface FleetVerdict extends OwnerVerdict {
  /** The owners whose verdicts were combined. */
  from: string[];
}

/**
 * Builds an owner's verdict from its local view, written at `at` (ISO time;
 * a caller building many formats the time once).
 */
export function ownerVerdict(view: WatchView, by: string, at: string): OwnerVerdict {
  return {
    state: view.state,
    status: view.status,
    weight: view.weight,
    load: view.load,
    cpu: view.metrics?.cpu_percent ?? null,
    mem: view.metrics?.mem_percent ?? null,
    rtt_ms: view.last_rtt_ms,
    last_error: view.last_error,
    since: view.last_change,
    services: view.services,
    by,
    at,
  };
}

/** True when two verdicts differ in what routing depends on (a refresh is not a change). */
export function verdictChanged(
  a: OwnerVerdict | undefined,
  b: Pick<OwnerVerdict, "state" | "status" | "weight" | "since">,
): boolean {
  return !a || a.state !== b.state || a.status !== b.status || a.weight !== b.weight ||
    a.since !== b.since;
}

/** Reads a verdict written by an owner; undefined for anything else. */
export function parseVerdict(text: string): OwnerVerdict | undefined {
  try {
    const v = JSON.parse(text) as Partial<OwnerVerdict>;
    if (
      (v.state === "UP" || v.state === "DOWN" || v.state === "UNKNOWN") &&
      typeof v.weight === "number" && typeof v.by === "string" && typeof v.at === "string" &&
      typeof v.since === "string"
    ) {
      return {
        state: v.state,
        status: v.status ?? null,
        weight: v.weight,
        load: v.load ?? null,
        cpu: v.cpu ?? null,
        mem: v.mem ?? null,
        rtt_ms: v.rtt_ms ?? null,
        last_error: v.last_error ?? null,
        since: v.since,
        services: Array.isArray(v.services) ? v.services : [],
        by: v.by,
        at: v.at,
      };
    }
  } catch { /* not JSON */ }
  return undefined;
}

/**
 * Combines the verdicts on one server: those of its current `owners` when
 * any has written, else the latest of any writer (a previous owner's).
 *
 * @example
 * ```ts
 * import { combine, type OwnerVerdict } from "./verdicts.ts";
 * const v = (by: string, state: "UP" | "DOWN"): OwnerVerdict => ({
 *   state, status: "UP", weight: state === "UP" ? 80 : 0, load: 20, cpu: 20, mem: 10,
 *   rtt_ms: 1, last_error: null, since: "2026-11-29T00:00:00Z", services: [], by,
 *   at: "2026-11-29T00:00:01Z",
 * });
 * combine([v("lb-a", "UP"), v("lb-b", "DOWN")], ["lb-a", "lb-b"])?.state; // "UP"
 * ```
 */
export function combine(
  verdicts: readonly OwnerVerdict[],
  owners: readonly string[],
): FleetVerdict | undefined {
  // An owner that has not decided yet (a server it just took over) says nothing.
  const current = verdicts.filter((v) => owners.includes(v.by) && v.state !== "UNKNOWN");
  const decided = verdicts.filter((v) => v.state !== "UNKNOWN");
  const use = current.length > 0
    ? current
    : decided.length > 0
    ? [decided.reduce((a, b) => (a.at >= b.at ? a : b))]
    : verdicts.slice(0, 1);
  if (use.length === 0) return undefined;
  const up = use.filter((v) => v.state === "UP");
  const down = use.filter((v) => v.state === "DOWN");
  const state: HealthState = up.length > 0 ? "UP" : down.length === use.length ? "DOWN" : "UNKNOWN";
  const deciding = state === "UP" ? up : state === "DOWN" ? down : use;
  // The freshest deciding verdict speaks for the figures; the weight is the most careful one.
  const lead = deciding.reduce((a, b) => (a.at >= b.at ? a : b));
  const status = deciding.some((v) => v.status === "FAILING")
    ? "FAILING"
    : deciding.some((v) => v.status === "DRAINING")
    ? "DRAINING"
    : lead.status;
  return {
    ...lead,
    state,
    status,
    weight: state === "UP" ? Math.min(...up.map((v) => v.weight)) : 0,
    // UP since the first owner saw it UP; DOWN since the last one agreed.
    since: state === "UP"
      ? up.reduce((a, b) => (a.since <= b.since ? a : b)).since
      : deciding.reduce((a, b) => (a.since >= b.since ? a : b)).since,
    from: use.map((v) => v.by),
  };
}

/**
 * The fleet's verdict on each server as it changes, counting the turns to
 * DOWN: what a reader of any LB saw, where one owner's failed checks alone
 * (hidden while another owner says UP) are not a verdict. Pure.
 *
 * @example
 * ```ts
 * import { VerdictChanges } from "./verdicts.ts";
 * const changes = new VerdictChanges();
 * changes.record("10.0.0.7:4243", "UP", true); // from a listing: not counted
 * changes.record("10.0.0.7:4243", "DOWN");
 * changes.downs; // 1
 * ```
 */
export class VerdictChanges {
  readonly #last = new Map<string, HealthState>();
  #downs = 0;

  /** Turns to DOWN recorded (UP or UNKNOWN before, DOWN after). */
  get downs(): number {
    return this.#downs;
  }

  /** Records a server's verdict; `quiet` (a fresh listing) counts nothing. */
  record(address: string, state: HealthState, quiet = false): void {
    const was = this.#last.get(address);
    this.#last.set(address, state);
    if (!quiet && state === "DOWN" && was !== "DOWN") this.#downs++;
  }

  /** Forgets a server that left the fleet. */
  forget(address: string): void {
    this.#last.delete(address);
  }
}
