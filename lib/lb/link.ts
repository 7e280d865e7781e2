/**
 * One watch's connection to its server: dialling (after a slot of the dial
 * gate), reading messages and datagrams into the watch, writing frames and
 * datagrams, and closing, with the channels still closing counted for leak
 * checks. The watch decides; the link carries.
 *
 * @module
 */

import type { HostPort } from "../protocol/address.ts";
import { type CodecError, encodeMessage } from "../protocol/codec.ts";
import type { Message } from "../protocol/wire.ts";
import { _readMessages } from "../transport/read_messages.ts";
import {
  type Channel,
  type CloseInfo,
  type Transport,
  TransportError,
} from "../transport/transport.ts";
import type { DialGate } from "./dial_gate.ts";
import type { WatchSettings } from "./watch_types.ts";

/** Why a dial or a session failed, for `LbSession.connectFailed()` and `closed()`. */
export interface ChannelFailure {
  message: string;
  /** "certificate", "unreachable", "closed_by_peer" or "connection_lost". */
  cause: string;
}

/** What the link reports to its watch, with the channel it came from. */
export interface LinkEvents {
  /** A message, or the codec's error for bytes that are not one. */
  input(input: Message | CodecError, channel: Channel): Promise<void>;
  /** A QUIC DATAGRAM. */
  datagram(bytes: Uint8Array, channel: Channel): void;
  /** The current channel's connection ended. */
  closed(failure: ChannelFailure, channel: Channel): Promise<void>;
}

/** The outcome of writing one message. */
export type WriteOutcome =
  | { ok: true }
  /** The channel is no longer the current one: nothing was written. */
  | { ok: false; stale: true }
  /** Our own message would not encode (a bug here), or the write failed. */
  | { ok: false; stale: false; encode: boolean; error: Error };

/** One server's connection. */
export class Link {
  #channel: Channel | undefined;
  readonly #closing = new Set<Promise<void>>();
  #dialAbort: AbortController | undefined;

  constructor(readonly events: LinkEvents) {}

  /** The open channel, if any. */
  get channel(): Channel | undefined {
    return this.#channel;
  }

  /** 1 while a channel is open or being dialled. */
  get sessions(): number {
    return this.#channel || this.#dialAbort ? 1 : 0;
  }

  /** Channels still closing. */
  get closing(): number {
    return this.#closing.size;
  }

  /**
   * Dials `target` once a handshake slot is free (`priority`: how long the
   * server has not been UP; 0 goes first) and starts reading from it. The
   * dial's own timeout starts after the slot. Never throws.
   */
  async open(
    target: HostPort,
    settings: WatchSettings,
    deps: { transport: Transport; dialGate?: DialGate },
    priority: number,
  ): Promise<{ channel: Channel } | { failure: ChannelFailure } | { aborted: true }> {
    const abort = new AbortController();
    this.#dialAbort = abort;
    let release: (() => void) | undefined;
    let channel: Channel;
    try {
      release = await deps.dialGate?.acquire(abort.signal, priority);
      channel = await deps.transport.dial({
        host: target.host,
        port: target.port,
        timeoutMs: settings.checkTimeoutMs,
        idleTimeoutMs: settings.idleTimeoutMs,
        insecure: settings.insecure,
        ...(settings.caPem === undefined ? {} : { caPem: settings.caPem }),
        signal: abort.signal,
      });
    } catch (e) {
      if (abort.signal.aborted) return { aborted: true };
      const message = e instanceof TransportError
        ? e.message
        : `dial failed: ${(e as Error).message}`;
      const cause = e instanceof TransportError && e.kind === "certificate"
        ? "certificate"
        : "unreachable";
      return { failure: { message, cause } };
    } finally {
      release?.();
      this.#dialAbort = undefined;
    }
    if (abort.signal.aborted) {
      await channel.close(0x12, "LB stopping", 0);
      return { aborted: true };
    }
    this.#channel = channel;
    void this.#read(channel);
    return { channel };
  }

  /** Stops a dial in progress. */
  abortDial(): void {
    this.#dialAbort?.abort();
  }

  /** Starts handing the channel's datagrams to the watch (once, after negotiation). */
  readDatagrams(channel: Channel): void {
    const port = channel.datagrams;
    if (!port) return;
    void (async () => {
      for (;;) {
        const datagram = await port.read();
        if (datagram === null || this.#channel !== channel) return;
        this.events.datagram(datagram, channel);
      }
    })();
  }

  /** Encodes and writes one message to `channel` if it is still the current one. */
  async write(channel: Channel | undefined, message: Message): Promise<WriteOutcome> {
    if (!channel || channel !== this.#channel) return { ok: false, stale: true };
    let frame: Uint8Array;
    try {
      frame = encodeMessage(message);
    } catch (e) {
      return { ok: false, stale: false, encode: true, error: e as Error };
    }
    try {
      await channel.write(frame);
      return { ok: true };
    } catch (e) {
      return { ok: false, stale: false, encode: false, error: e as Error };
    }
  }

  /** Sends one datagram on `channel` if it is still the current one. */
  datagram(channel: Channel | undefined, bytes: Uint8Array): void {
    if (channel && channel === this.#channel) channel.datagrams?.send(bytes);
  }

  /** Closes `channel` if it is the current one (no longer current from now on). */
  close(channel: Channel | undefined, code: number, reason: string): void {
    if (!channel || channel !== this.#channel) return;
    this.#channel = undefined;
    const p = channel.close(code, reason);
    this.#closing.add(p);
    void p.then(() => this.#closing.delete(p));
  }

  /** Resolves once every channel being closed is closed. */
  async settled(): Promise<void> {
    await Promise.all(this.#closing);
  }

  async #read(channel: Channel): Promise<void> {
    await _readMessages(
      channel,
      () => this.#channel === channel,
      (input) => this.events.input(input, channel),
    );
    const info = await channel.closed;
    if (this.#channel === channel) await this.events.closed(_describeClose(info), channel);
  }
}

/** What a connection's end means for the session: who ended it, in words, and its cause. */
function _describeClose(info: CloseInfo): ChannelFailure {
  const message = info.by === "remote"
    ? `connection closed by peer${
      info.code === undefined ? "" : ` (code ${info.code})`
    }: ${info.reason}`
    : info.by === "transport"
    ? `connection lost: ${info.reason}`
    : `connection closed: ${info.reason}`;
  return { message, cause: info.by === "remote" ? "closed_by_peer" : "connection_lost" };
}
