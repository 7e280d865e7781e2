/**
 * How the LB names what went wrong with a server: the cause of a
 * {@linkcode Failure} for logs and metrics ("timeout", "unreachable", ...)
 * and its reason in words, kept short because it is stored per server.
 *
 * @module
 */

import { clip } from "../util/text.ts";
import type { Failure } from "./lb_session.ts";

/** Longest reason kept: it is stored in every server's record and history. */
export const MAX_REASON_LENGTH = 300;

/**
 * Classifies a failure for logs and metrics: "timeout", "unreachable",
 * "certificate", "unauthorized", "server_error", "protocol", "terminated",
 * "closed_by_peer", "connection_lost" or "failing".
 *
 * @example
 * ```ts
 * import { failureCause } from "./failure.ts";
 * failureCause({ kind: "peer_error", code: "UNAUTHORIZED", message: "token expired" }); // "unauthorized"
 * ```
 */
export function failureCause(f: Failure): string {
  switch (f.kind) {
    case "timeout":
      return "timeout";
    case "connect":
      return f.cause ?? "unreachable";
    case "peer_error":
      return f.code === "UNAUTHORIZED" ? "unauthorized" : "server_error";
    case "protocol":
      return "protocol";
    case "terminated":
      return "terminated";
    case "closed":
      return f.cause ?? "connection_lost";
    case "failing":
      return "failing";
  }
}

/**
 * Formats a failure for operators ("UNAUTHORIZED: …", "timeout: …"), at most
 * {@linkcode MAX_REASON_LENGTH} characters whatever the peer sent.
 *
 * @example
 * ```ts
 * import { describeFailure } from "./failure.ts";
 * describeFailure({ kind: "timeout", message: "no HEALTH_RESPONSE within 2000 ms" });
 * // "timeout: no HEALTH_RESPONSE within 2000 ms"
 * ```
 */
export function describeFailure(f: Failure): string {
  return clip(_describe(f), MAX_REASON_LENGTH);
}

function _describe(f: Failure): string {
  switch (f.kind) {
    case "peer_error":
      return `${f.code}: ${f.message}`;
    case "protocol":
      return `protocol error ${f.code}: ${f.message}`;
    case "timeout":
      return `timeout: ${f.message}`;
    case "connect":
      return `connect failed: ${f.message}`;
    default:
      return f.message;
  }
}
