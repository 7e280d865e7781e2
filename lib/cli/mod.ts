/**
 * The two programs: flag tables and parsing, the interactive menu, the one
 * credential loader, and `startLb` / `startAgent`.
 *
 * @module
 */

export * from "./flags.ts";
export * from "./lb_flags.ts";
export * from "./server_flags.ts";
export * from "./menu.ts";
export * from "./credentials.ts";
export * from "./entry.ts";
export * from "./lb_main.ts";
export * from "./agent_main.ts";
