/**
 * The server agent: sessions with LBs, admission limits, host metrics, local
 * checks of the application, and draining.
 *
 * @module
 */

export * from "./agent.ts";
export * from "./admission.ts";
export * from "./metrics.ts";
export * from "./local_checks.ts";
export * from "./drain.ts";
export type { ReadFile } from "./cgroup.ts";
export type { FsBlocks } from "./statvfs.ts";
