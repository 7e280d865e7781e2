/**
 * The driver of one agent session: runs a {@linkcode ServerSession} over one
 * channel and performs its actions (write frames, send datagrams, verify
 * tokens, close, keep the deadline and heartbeat timers), within the
 * session's budget of messages and bytes.
 *
 * @module
 */

import { AGENT_DEFAULTS } from "../util/defaults.ts";
import { _readMessages } from "../transport/read_messages.ts";
import { CodecError, encodeMessage } from "../protocol/codec.ts";
import { checkTokenBinding } from "../security/jwt.ts";
import type { SubjectName } from "../security/names.ts";
import type { Logger } from "../util/log.ts";
import { CAPABILITIES, CLOSE_CODES, type CloseCode } from "../protocol/wire.ts";
import { TokenBucket } from "../util/rate.ts";
import { type AuthResult, type ServerAction, ServerSession } from "../protocol/server_session.ts";
import type { Channel } from "../transport/transport.ts";
import type { AgentOptions, AgentSessionInfo } from "./agent.ts";

/** What a session asks of its agent. */
export interface SessionHooks {
  /** The session's token is valid: the reason to refuse it anyway (limits), or undefined. */
  admit(lbId: string, token: string): string | undefined;
}

/**
 * What one session may cost, per message allowed per second: bursts of five
 * seconds' worth, and 1.6 KiB per message (a check is a few dozen bytes, a
 * HELLO a few hundred) with bursts of 12.8 KiB. An LB sends one request at a
 * time, at most ten a second at the shortest interval; a peer far beyond
 * that (pipelining thousands of requests) is closed with REFUSED before it
 * can cost the agent its memory or CPU.
 */
const _BURST_SECONDS = 5;
const _BYTES_PER_MESSAGE = 1638;
const _BYTE_BURST_PER_MESSAGE = 12_800;

/** Drives one {@linkcode ServerSession} over one channel. */
export class AgentSession {
  readonly done: Promise<void>;
  readonly #channel: Channel;
  readonly #options: AgentOptions;
  readonly #names: readonly SubjectName[];
  readonly #machine: ServerSession;
  readonly #log: Logger;
  readonly #since = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: { timer: ReturnType<typeof setInterval>; ms: number } | undefined;
  /** The deadline #timer is armed for. */
  #armedFor: number | undefined;
  #closed = false;
  readonly #hooks: SessionHooks;
  /** The session config as last logged. */
  #configText = "";
  readonly #messages: TokenBucket;
  readonly #bytes: TokenBucket;

  constructor(
    channel: Channel,
    options: AgentOptions,
    names: readonly SubjectName[],
    log: Logger,
    hooks: SessionHooks,
  ) {
    this.#channel = channel;
    this.#hooks = hooks;
    const rate = options.sessionRate ?? AGENT_DEFAULTS.sessionRate;
    this.#messages = new TokenBucket(rate, rate * _BURST_SECONDS, this.#since);
    this.#bytes = new TokenBucket(
      rate * _BYTES_PER_MESSAGE,
      rate * _BYTE_BURST_PER_MESSAGE,
      this.#since,
    );
    this.#options = options;
    this.#names = names;
    this.#log = log.child({ remote: channel.remoteAddress });
    const metrics = options.metrics;
    const status = options.status ?? (() => "UP" as const);
    // Datagrams only where the stack has them; none of it for a plain QHCP/1 agent.
    const capabilities = (options.extensions ?? CAPABILITIES).filter((c) =>
      c !== "datagram" || channel.datagrams !== undefined
    );
    this.#machine = new ServerSession({
      serverId: options.serverId,
      availableMetrics: metrics.names,
      capabilities,
      ...(options.services ? { services: options.services } : {}),
      ...(options.defaultMetrics ? { defaultMetrics: options.defaultMetrics } : {}),
      ...(options.helloTimeoutMs === undefined ? {} : { helloTimeoutMs: options.helloTimeoutMs }),
      health: (names) => {
        const checks = options.checks?.();
        return checks
          ? { status: status(), metrics: metrics.snapshot(names), checks }
          : { status: status(), metrics: metrics.snapshot(names) };
      },
    }, this.#since);
    this.#log.debug("connection accepted");
    this.#schedule();
    this.done = this.#run();
  }

  /** True until HELLO has been accepted. */
  get unauthenticated(): boolean {
    const state = this.#machine.state;
    return state === "AWAIT_HELLO" || state === "AUTHENTICATING";
  }

  info(): AgentSessionInfo {
    return {
      remote: this.#channel.remoteAddress,
      state: this.#machine.state,
      lbId: this.#machine.lbId,
      config: this.#machine.config,
      extensions: this.#machine.capabilities,
      since: this.#since,
    };
  }

  terminate(reason: string): void {
    void this.#perform(this.#machine.terminate(reason, Date.now()));
  }

  /** The status may have changed: with push negotiated, tell the LB now if it did. */
  statusChanged(): void {
    const actions = this.#machine.push(Date.now());
    if (actions.length > 0) void this.#perform(actions);
  }

  /** A newer session of the same LB from the same address replaces this one. */
  supersede(): void {
    void this.#refuse(CLOSE_CODES.GOING_AWAY, "superseded by a newer session of the same LB");
  }

  /** Closes at once with `code`, outside the protocol's own rules (limits). */
  async #refuse(code: CloseCode, reason: string): Promise<void> {
    if (this.#closed) return;
    this.#log.debug("closing session", { lb: this.#machine.lbId, reason });
    this.#machine.closed();
    await this.#perform([{ kind: "close", code, reason }]);
  }

  async #run(): Promise<void> {
    // Every byte read is charged to the session's budget before it is decoded.
    const metered = {
      read: async () => {
        const chunk = await this.#channel.read();
        if (chunk && !this.#bytes.take(chunk.length, Date.now())) {
          await this.#refuse(CLOSE_CODES.REFUSED, "byte rate exceeded");
          return null;
        }
        return chunk;
      },
    } as Channel;
    void this.#readDatagrams();
    try {
      await _readMessages(metered, () => !this.#closed, async (input) => {
        if (!this.#messages.take(1, Date.now())) {
          this.#log.warn("closing session: the peer sends messages far faster than an LB", {
            lb: this.#machine.lbId,
            per_second: this.#options.sessionRate ?? AGENT_DEFAULTS.sessionRate,
          });
          await this.#refuse(CLOSE_CODES.REFUSED, "message rate exceeded");
          return;
        }
        await this.#perform(
          input instanceof CodecError
            ? this.#machine.receiveInvalid(input, Date.now())
            : this.#machine.receive(input, Date.now()),
        );
      });
    } catch (e) {
      this.#log.error("session failed", { error: (e as Error).message });
      await this.#perform([{
        kind: "close",
        code: CLOSE_CODES.INTERNAL,
        reason: "internal error",
      }]);
    }
    // The peer finished the stream or the connection is gone.
    if (!this.#closed) {
      this.#machine.closed();
      this.#closed = true;
      await this.#channel.close(CLOSE_CODES.NO_ERROR, "stream finished", 0);
    }
    clearTimeout(this.#timer);
    this.#beat(undefined);
    const info = await this.#channel.closed;
    this.#log.debug("connection closed", { by: info.by, code: info.code, reason: info.reason });
  }

  /** Datagrams (probes), charged to the same budget as messages. */
  async #readDatagrams(): Promise<void> {
    const port = this.#channel.datagrams;
    if (!port) return;
    for (;;) {
      const datagram = await port.read();
      if (datagram === null || this.#closed) return;
      if (!this.#messages.take(1, Date.now())) {
        await this.#refuse(CLOSE_CODES.REFUSED, "datagram rate exceeded");
        return;
      }
      await this.#perform(this.#machine.receiveDatagram(datagram, Date.now()));
    }
  }

  /** Keeps the heartbeat timer at `ms` (undefined: none). */
  #beat(ms: number | undefined): void {
    if (this.#heartbeat?.ms === ms) return;
    clearInterval(this.#heartbeat?.timer);
    this.#heartbeat = undefined;
    if (ms === undefined || this.#closed) return;
    const timer = setInterval(() => {
      const actions = this.#machine.heartbeat(Date.now());
      if (actions.length > 0) void this.#perform(actions);
    }, ms);
    this.#heartbeat = { timer, ms };
  }

  async #perform(actions: ServerAction[]): Promise<void> {
    for (const action of actions) {
      switch (action.kind) {
        case "datagram":
          if (!this.#closed) this.#channel.datagrams?.send(action.bytes);
          break;
        case "send": {
          if (this.#closed) break;
          let frame: Uint8Array;
          try {
            frame = encodeMessage(action.message);
          } catch (e) {
            // Our own message is invalid (a metrics source without cpu_percent, say): a bug here.
            this.#log.error("cannot encode a reply; closing the session", {
              error: (e as Error).message,
            });
            await this.#perform([{
              kind: "close",
              code: CLOSE_CODES.INTERNAL,
              reason: "internal error",
            }]);
            return;
          }
          try {
            await this.#channel.write(frame);
          } catch (e) {
            this.#log.debug("write failed", { error: (e as Error).message });
            this.#machine.closed();
            this.#closed = true;
            await this.#channel.close(CLOSE_CODES.INTERNAL, "write failed", 0);
          }
          break;
        }
        case "authenticate": {
          const verified = await this.#options.verifier.verify(
            action.token,
            action.lbId,
            Date.now(),
          );
          const refusal = verified.ok
            ? checkTokenBinding(
              verified.boundTo,
              this.#names,
              this.#options.requireBoundTokens ?? false,
            )
            : undefined;
          const result: AuthResult = refusal ? { ok: false, reason: refusal } : verified;
          if (result.ok) {
            const limit = this.#hooks.admit(action.lbId, action.token);
            if (limit) {
              await this.#refuse(CLOSE_CODES.REFUSED, limit);
              break;
            }
          }
          if (!result.ok) {
            this.#log.warn("LB refused", {
              lb: action.lbId,
              code: "UNAUTHORIZED",
              reason: result.reason,
            });
          }
          await this.#perform(this.#machine.authenticated(result, Date.now()));
          break;
        }
        case "ready":
          this.#configText = `${action.config.interval_ms} ${action.config.metrics.join(",")}`;
          this.#log.info("LB session ready", {
            lb: action.lbId,
            interval_ms: action.config.interval_ms,
            metrics: action.config.metrics.join(","),
            extensions: action.capabilities.join(","),
            heartbeat_ms: action.config.heartbeat_ms,
          });
          this.#beat(action.config.heartbeat_ms);
          // The first push says where things stand, so the LB need not wait for a check.
          this.statusChanged();
          break;
        case "configured": {
          // Logged when something changed; a repeated update is debug noise.
          const text = `${action.config.interval_ms} ${action.config.metrics.join(",")}`;
          (text !== this.#configText ? this.#log.info : this.#log.debug)(
            "LB changed session config",
            {
              lb: this.#machine.lbId,
              interval_ms: action.config.interval_ms,
              metrics: action.config.metrics.join(","),
            },
          );
          this.#configText = text;
          this.#beat(action.config.heartbeat_ms);
          break;
        }
        case "close": {
          this.#closed = true;
          clearTimeout(this.#timer);
          this.#beat(undefined);
          if (action.error) {
            this.#log.warn("closing session: peer broke the protocol", {
              lb: this.#machine.lbId,
              code: action.error.code,
              reason: action.error.message,
            });
          } else {
            this.#log.info("closing session", { lb: this.#machine.lbId, reason: action.reason });
          }
          await this.#channel.close(action.code, action.reason);
          break;
        }
      }
    }
    this.#schedule();
  }

  #schedule(): void {
    const deadline = this.#machine.deadline;
    if (this.#closed || deadline === undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#armedFor = undefined;
      return;
    }
    // In READY the deadline (token expiry) stays put from check to check: keep the timer.
    if (deadline === this.#armedFor) return;
    clearTimeout(this.#timer);
    this.#armedFor = deadline;
    // setTimeout cannot wait longer than 2^31-1 ms; re-arm in steps.
    const delay = Math.min(Math.max(0, deadline - Date.now()), 2 ** 31 - 1);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#armedFor = undefined;
      void this.#perform(this.#machine.tick(Date.now()));
    }, delay);
  }
}
