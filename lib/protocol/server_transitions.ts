/**
 * The states of the agent's session machine ({@linkcode ServerSession}) and
 * its transition table: the message types each state accepts, and the
 * handler each one goes to.
 *
 * @module
 */

import type { ServerAction } from "./server_actions.ts";
import type { ServerSession } from "./server_session.ts";
import type { MessageOf, MessageType } from "./wire.ts";

/** States of a server session. */
export type ServerSessionState =
  | "AWAIT_HELLO"
  | "AUTHENTICATING"
  | "READY"
  | "TERMINATING"
  | "CLOSED";

/** A handler of one message type, called with the session it is for. */
export type _Handler<T extends MessageType> = (
  session: ServerSession,
  message: MessageOf<T>,
  now: number,
) => ServerAction[];

type _Table = {
  [S in ServerSessionState]: { [T in MessageType]?: _Handler<T> };
};

/** The transition table: for each state, the message types it accepts. */
export const _TABLE: _Table = {
  AWAIT_HELLO: {
    HELLO: (s, m) => s._onHello(m),
  },
  AUTHENTICATING: {},
  READY: {
    HEALTH_REQUEST: (s, m, now) => s._onHealthRequest(m, now),
    CONFIG_UPDATE: (s, m) => s._onConfigUpdate(m),
    TERMINATE: (s, m) => s._onTerminate(m),
    ERROR: (s, m) => s._onPeerError(m),
  },
  TERMINATING: {
    HEALTH_REQUEST: (s) => s._ignore(),
    CONFIG_UPDATE: (s) => s._ignore(),
    TERMINATE: (s, m) => s._onTerminate(m),
    TERMINATE_ACK: (s, m) => s._onTerminateAck(m),
    ERROR: (s, m) => s._onPeerError(m),
  },
  CLOSED: {},
};
