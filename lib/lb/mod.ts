/**
 * The load balancer's side: the monitor, one watch (driver) and record per
 * server, the verdict, scheduling, batched timers, the dial gate, weights,
 * selection, history and discovery.
 *
 * @module
 */

export * from "./monitor.ts";
export * from "./watch.ts";
export * from "./watch_types.ts";
export * from "./record.ts";
export * from "./verdict.ts";
export * from "./schedule.ts";
export * from "./timers.ts";
export * from "./dial_gate.ts";
export * from "./weights.ts";
export * from "./select.ts";
export * from "./history.ts";
export * from "./discovery.ts";
export * from "./directory.ts";
export * from "./settings.ts";
export * from "./detector.ts";
export * from "./liveness.ts";
export * from "./loop_health.ts";
export * from "./heartbeat_watch.ts";
export * from "./link.ts";
export * from "./watch_plan.ts";
export * from "./watch_actions.ts";
export * from "./services.ts";
