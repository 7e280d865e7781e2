/**
 * The LB's `/metrics` in the Prometheus text exposition format (version
 * 0.0.4). Pure: a snapshot in, text out.
 *
 * @module
 */

import { stderrStream } from "../util/log_stream.ts";
import type { ServerDirectory } from "../lb/directory.ts";
import { servicesOf } from "../lb/services.ts";
import {
  DURATION_BUCKETS,
  type DurationHistogram,
  type Evidence,
  type WatchCounters,
  zeroCounters,
} from "../lb/record.ts";

/** One server in a metrics snapshot. */
export interface ServerMetrics {
  address: string;
  /** False in fleet mode for a server other LBs check: it has gauges, not counters, here. */
  checkedHere: boolean;
  up: boolean;
  state: string;
  weight: number;
  cpu: number | null;
  mem: number | null;
  checksOk: number;
  checksFailed: number;
  stateChanges: number;
  /** Good checks answered more than one interval after they were due. */
  checksLate: number;
  durations: DurationHistogram;
  /** Suspicion (phi) of the heartbeat silence, or null without heartbeats. */
  suspicion: number | null;
  heartbeats: number;
  heartbeatsMissed: number;
  probes: number;
  probesFailed: number;
  pushes: number;
  downsBy: Readonly<Record<Evidence, number>>;
}

/** What `/metrics` shows. */
export interface MetricsSnapshot {
  lbId: string;
  version: string;
  servers: readonly ServerMetrics[];
  /** Sessions in READY. */
  sessions: number;
  /** Dials after the first one, all servers. */
  reconnects: number;
  /** This LB's event loop: time stalled since start and the longest stall of the last minute, ms. */
  loop: { stalledMs: number; longestStallMs: number };
  /** Fleet mode: the fleet's verdict turned DOWN, counted since start (undefined standalone). */
  fleetDowns?: number;
  /** Fleet mode: ms since etcd last answered when longer than a lease, else 0. */
  fleetStaleMs?: number;
  /** Each service: servers that front it, and those that should get traffic. */
  services: { name: string; total: number; healthy: number }[];
  /** Log lines this process dropped because stderr did not keep up. */
  logLinesDropped: number;
}

/** What `/metrics` shows of `monitor`'s servers. */
export function metricsSnapshot(monitor: ServerDirectory, version: string): MetricsSnapshot {
  let sessions = 0;
  let reconnects = 0;
  const records = monitor.records();
  const servers = records.map(({ view: v, counters }) => {
    const c = counters ?? _NONE;
    if (v.session === "READY") sessions++;
    reconnects += Math.max(0, c.dials - 1);
    return {
      address: v.address,
      checkedHere: counters !== undefined,
      up: v.state === "UP",
      state: v.state,
      weight: v.weight,
      cpu: v.metrics?.cpu_percent ?? null,
      mem: v.metrics?.mem_percent ?? null,
      checksOk: v.checks_ok,
      checksFailed: v.checks_failed,
      stateChanges: c.stateChanges,
      checksLate: c.late,
      durations: c.durations,
      suspicion: v.suspicion,
      heartbeats: c.heartbeats,
      heartbeatsMissed: c.heartbeatsMissed,
      probes: c.probes,
      probesFailed: c.probesFailed,
      pushes: c.pushes,
      downsBy: c.downsBy,
    };
  });
  const services = servicesOf(records.map((r) => r.view)).map((s) => ({
    name: s.name,
    total: s.total,
    healthy: s.healthy,
  }));
  // The LB's own figures, not the counts: those would be a second pass over every server.
  const health = monitor.lbHealth();
  const loop = { stalledMs: health.loop_stalled_ms, longestStallMs: health.loop_longest_stall_ms };
  return {
    lbId: monitor.settings.lbId,
    version,
    servers,
    sessions,
    reconnects,
    loop,
    services,
    logLinesDropped: stderrStream.droppedTotal,
    ...(health.fleet_downs === undefined ? {} : { fleetDowns: health.fleet_downs }),
    ...(health.fleet_stale_ms === undefined ? {} : { fleetStaleMs: health.fleet_stale_ms ?? 0 }),
  };
}

/** Renders the snapshot in the Prometheus text format. */
export function renderPrometheus(s: MetricsSnapshot): string {
  const out: string[] = [];
  const family = (name: string, type: string, help: string) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const labels = (l: Record<string, string>) =>
    "{" + Object.entries(l).map(([k, v]) => `${k}="${_escape(v)}"`).join(",") + "}";
  const perServer = (
    name: string,
    type: string,
    help: string,
    value: (m: ServerMetrics) => number | null,
  ) => {
    family(name, type, help);
    for (const m of s.servers) {
      // Counters belong to the LB that checks; elsewhere a server has gauges only.
      if (type === "counter" && !m.checkedHere) continue;
      const v = value(m);
      if (v !== null) out.push(`${name}${labels({ server: m.address })} ${_num(v)}`);
    }
  };

  family("qhcp_info", "gauge", "QHCP load balancer build and identity.");
  out.push(`qhcp_info${labels({ lb_id: s.lbId, version: s.version })} 1`);
  perServer(
    "qhcp_server_up",
    "gauge",
    "1 when the server is UP, 0 when DOWN or UNKNOWN.",
    (m) => m.up ? 1 : 0,
  );
  family("qhcp_server_state", "gauge", "1 for the server's current verdict (UP, DOWN or UNKNOWN).");
  for (const m of s.servers) {
    for (const state of ["UP", "DOWN", "UNKNOWN"]) {
      out.push(
        `qhcp_server_state${labels({ server: m.address, state })} ${m.state === state ? 1 : 0}`,
      );
    }
  }
  perServer(
    "qhcp_server_weight",
    "gauge",
    "Traffic weight 0..100 (0: no traffic).",
    (m) => m.weight,
  );
  perServer(
    "qhcp_server_cpu_percent",
    "gauge",
    "CPU busy on the server, percent, as last reported.",
    (m) => m.cpu,
  );
  perServer(
    "qhcp_server_mem_percent",
    "gauge",
    "Memory in use on the server, percent, as last reported.",
    (m) => m.mem,
  );
  family(
    "qhcp_check_duration_seconds",
    "histogram",
    "Round trip of successful checks (HEALTH_REQUEST to HEALTH_RESPONSE).",
  );
  for (const m of s.servers) {
    if (!m.checkedHere) continue;
    const h = m.durations;
    DURATION_BUCKETS.forEach((le, i) => {
      out.push(
        `qhcp_check_duration_seconds_bucket${labels({ server: m.address, le: String(le) })} ${
          h.counts[i]
        }`,
      );
    });
    out.push(
      `qhcp_check_duration_seconds_bucket${labels({ server: m.address, le: "+Inf" })} ${h.count}`,
    );
    out.push(`qhcp_check_duration_seconds_sum${labels({ server: m.address })} ${_num(h.sum)}`);
    out.push(`qhcp_check_duration_seconds_count${labels({ server: m.address })} ${h.count}`);
  }
  family(
    "qhcp_checks_total",
    "counter",
    "Checks by outcome (a failed dial counts as a failed check).",
  );
  for (const m of s.servers) {
    if (!m.checkedHere) continue;
    out.push(`qhcp_checks_total${labels({ server: m.address, result: "ok" })} ${m.checksOk}`);
    out.push(`qhcp_checks_total${labels({ server: m.address, result: "fail" })} ${m.checksFailed}`);
  }
  perServer(
    "qhcp_state_changes_total",
    "counter",
    "Verdict changes (UP, DOWN).",
    (m) => m.stateChanges,
  );
  perServer(
    "qhcp_checks_late_total",
    "counter",
    "Good checks answered more than one check interval after they were due (the LB is overloaded).",
    (m) => m.checksLate,
  );
  perServer(
    "qhcp_server_suspicion",
    "gauge",
    "Suspicion level (phi) of the heartbeat silence: about 0 while heartbeats come on time; the LB probes at --suspect-phi. Absent without heartbeats.",
    (m) => m.suspicion,
  );
  perServer(
    "qhcp_heartbeats_total",
    "counter",
    "Heartbeats received (datagrams or stream messages).",
    (m) => m.heartbeats,
  );
  perServer(
    "qhcp_heartbeats_missed_total",
    "counter",
    "Heartbeats the server's counter says never arrived (lost, or out of order).",
    (m) => m.heartbeatsMissed,
  );
  perServer(
    "qhcp_probes_total",
    "counter",
    "Probes sent because the heartbeat silence turned suspicious.",
    (m) => m.probes,
  );
  perServer(
    "qhcp_probes_failed_total",
    "counter",
    "Probes unanswered while the heartbeats stayed silent (each marked the server DOWN).",
    (m) => m.probesFailed,
  );
  perServer(
    "qhcp_pushes_total",
    "counter",
    "Status changes pushed by the server (STATUS).",
    (m) => m.pushes,
  );
  family(
    "qhcp_downs_total",
    "counter",
    "Changes to DOWN, all servers, by the evidence that decided them.",
  );
  for (const evidence of _EVIDENCE) {
    const n = s.servers.reduce((sum, m) => sum + m.downsBy[evidence], 0);
    out.push(`qhcp_downs_total${labels({ evidence })} ${n}`);
  }
  family("qhcp_servers", "gauge", "Servers watched, by verdict.");
  for (const state of ["UP", "DOWN", "UNKNOWN"]) {
    out.push(
      `qhcp_servers${labels({ state })} ${s.servers.filter((m) => m.state === state).length}`,
    );
  }
  family("qhcp_service_servers", "gauge", "Servers that front a service (--service on the agent).");
  for (const x of s.services) {
    out.push(`qhcp_service_servers${labels({ service: x.name })} ${x.total}`);
  }
  family(
    "qhcp_service_healthy_servers",
    "gauge",
    "Servers of a service that should get traffic (UP, not draining or failing).",
  );
  for (const x of s.services) {
    out.push(`qhcp_service_healthy_servers${labels({ service: x.name })} ${x.healthy}`);
  }
  family("qhcp_sessions", "gauge", "QUIC sessions in READY.");
  out.push(`qhcp_sessions ${s.sessions}`);
  family(
    "qhcp_reconnects_total",
    "counter",
    "Dials after a server's first one (redials), all servers.",
  );
  out.push(`qhcp_reconnects_total ${s.reconnects}`);
  family(
    "qhcp_loop_stalled_seconds_total",
    "counter",
    "Time this LB's event loop was stalled (its timers fired over 40 ms late); replies and heartbeats wait meanwhile.",
  );
  out.push(`qhcp_loop_stalled_seconds_total ${s.loop.stalledMs / 1000}`);
  family(
    "qhcp_loop_longest_stall_seconds",
    "gauge",
    "The longest stall of this LB's event loop in the last minute.",
  );
  out.push(`qhcp_loop_longest_stall_seconds ${s.loop.longestStallMs / 1000}`);
  family(
    "qhcp_log_lines_dropped_total",
    "counter",
    "Log lines this LB dropped because stderr did not keep up (its reader stopped reading).",
  );
  out.push(`qhcp_log_lines_dropped_total ${s.logLinesDropped}`);
  if (s.fleetDowns !== undefined) {
    family(
      "qhcp_fleet_verdict_downs_total",
      "counter",
      "Times the fleet's verdict on a server (its owners' verdicts combined, as in etcd) turned DOWN.",
    );
    out.push(`qhcp_fleet_verdict_downs_total ${s.fleetDowns}`);
  }
  if (s.fleetStaleMs !== undefined) {
    family(
      "qhcp_fleet_stale_seconds",
      "gauge",
      "Seconds since etcd last answered once longer than a lease (the fleet's verdicts served are that old at most); 0 while in touch.",
    );
    out.push(`qhcp_fleet_stale_seconds ${s.fleetStaleMs / 1000}`);
  }
  return out.join("\n") + "\n";
}

/** The counters of a server this LB does not check. */
const _NONE: Readonly<WatchCounters> = zeroCounters();

const _EVIDENCE: readonly Evidence[] = [
  "polls",
  "heartbeat_silence+probe",
  "pushed_status",
  "terminate",
];

function _escape(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function _num(v: number): string {
  return Number.isFinite(v) ? String(v) : v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN";
}
