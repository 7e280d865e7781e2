/**
 * What the @matrixai/quic wrapper does when the library's orderly stop of a
 * connection, client or server hangs: how long it waits, and how it then
 * frees the UDP socket underneath.
 *
 * @module
 */

import { settlesWithin } from "../util/timeout.ts";
import type { _QuicClient } from "./matrixai_lib.ts";

/** Longest wait for an orderly stop of a connection or server (they take ~0.3 s). */
export const _STOP_MS = 1000;
/** Longest wait for the library to tear a socket down by force. */
export const _TEARDOWN_MS = 2000;

type _Socket = { stop(o: { force: boolean }): Promise<void> };

/**
 * A client whose orderly stop hung: with a socket of its own, close that
 * socket by force; on a shared socket, only take its connection off the
 * socket's routing table, so that the other sessions carry on.
 */
export async function _forceClient(client: _QuicClient): Promise<void> {
  const inner = client as unknown as {
    isSocketShared?: boolean;
    socket: { connectionMap: { delete(id: unknown): void } };
  };
  if (!inner.isSocketShared) return await _forceSocket(client);
  inner.socket.connectionMap.delete(client.connection.connectionId);
}

/**
 * Closes the UDP socket under a server or client whose orderly stop is stuck
 * (a connection aborted mid-handshake can wait forever for quiche's draining
 * timer), so that the port is free again: a restarted server must be able to
 * bind it, and an LB must not leak sockets.
 */
export async function _forceSocket(owner: unknown): Promise<void> {
  const socket = (owner as { socket?: _Socket }).socket;
  if (socket) await settlesWithin(socket.stop({ force: true }), _TEARDOWN_MS);
}
