/**
 * What the agent's session machine ({@linkcode ServerSession}) asks of its
 * driver, and the driver's answer to a token check.
 *
 * @module
 */

import type { CloseAction, DatagramAction, SendAction } from "./session_rules.ts";
import type { Capability, SessionConfig } from "./wire.ts";

/** Ask the driver to verify a HELLO's token, then call `authenticated()`. */
export interface AuthenticateAction {
  kind: "authenticate";
  token: string;
  lbId: string;
}

/** Reports that the session reached READY. */
export interface ServerReadyAction {
  kind: "ready";
  lbId: string;
  config: SessionConfig;
  /** The extensions negotiated (empty for a plain QHCP/1 session). */
  capabilities: Capability[];
}

/** Reports a configuration change accepted by CONFIG_UPDATE. */
export interface ConfiguredAction {
  kind: "configured";
  config: SessionConfig;
}

/** Everything a {@linkcode ServerSession} can ask of its driver. */
export type ServerAction =
  | SendAction
  | DatagramAction
  | CloseAction
  | AuthenticateAction
  | ServerReadyAction
  | ConfiguredAction;

/** The outcome of verifying a HELLO token. */
export type AuthResult =
  | { ok: true; /** Time (ms since epoch) after which the session must end. */ expiresAt: number }
  | { ok: false; reason: string };
