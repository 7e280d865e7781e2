/**
 * QHCP/1 itself, pure: the wire vocabulary, the codec, typed errors, server
 * addresses, and the two session state machines with the LB's failure
 * classification. No I/O, no clock.
 *
 * @module
 */

export * from "./wire.ts";
export * from "./errors.ts";
export * from "./codec.ts";
export * from "./framing.ts";
export * from "./datagram.ts";
export * from "./lb_actions.ts";
export * from "./address.ts";
export * from "./server_session.ts";
export * from "./lb_session.ts";
export * from "./failure.ts";
export type { CloseAction, DatagramAction, SendAction } from "./session_rules.ts";
