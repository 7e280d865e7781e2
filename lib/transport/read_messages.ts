/**
 * The read side shared by both peers: pulls bytes off a channel, cuts frames,
 * decodes messages and hands each one (or its decode failure) to `handle`,
 * strictly one at a time, so a state machine sees input in order.
 *
 * @module
 */

import { CodecError, decodeMessage, FrameDecoder } from "../protocol/codec.ts";
import type { Message } from "../protocol/wire.ts";
import type { Channel } from "./transport.ts";

/**
 * Reads until the channel ends or `keepGoing()` turns false. A framing error
 * is handed over and ends reading (no later byte can be trusted); a message
 * that fails to decode is handed over and the frames after it are still read.
 */
export async function _readMessages(
  channel: Channel,
  keepGoing: () => boolean,
  handle: (input: Message | CodecError) => Promise<void>,
): Promise<void> {
  const frames = new FrameDecoder();
  while (keepGoing()) {
    const chunk = await channel.read();
    if (chunk === null) return;
    frames.push(chunk);
    while (keepGoing()) {
      let payload: Uint8Array | null;
      try {
        payload = frames.next();
      } catch (e) {
        await handle(e as CodecError);
        return;
      }
      if (payload === null) break;
      let message: Message;
      try {
        message = decodeMessage(payload);
      } catch (e) {
        if (!(e instanceof CodecError)) throw e;
        await handle(e);
        continue;
      }
      await handle(message);
    }
  }
}
