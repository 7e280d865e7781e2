/**
 * The package version, taken from deno.json at build time (so it is embedded
 * by `deno compile` and never read from disk at run time).
 *
 * @module
 */

import meta from "../../deno.json" with { type: "json" };

/** The QHCP package version. */
export const VERSION: string = meta.version;
