/**
 * Shared building blocks: the logger, the process guard, the defaults table,
 * time limits, rate budgets, batches and text made safe to show.
 *
 * @module
 */

export * from "./log.ts";
export * from "./log_stream.ts";
export * from "./bytes.ts";
export * from "./guard.ts";
export * from "./defaults.ts";
export * from "./timeout.ts";
export * from "./rate.ts";
export * from "./text.ts";
export * from "./chunks.ts";
export * from "./iso_time.ts";
export { VERSION } from "./version.ts";
