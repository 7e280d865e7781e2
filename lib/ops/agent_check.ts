/**
 * HAProxy's agent-check protocol, served by the LB, so that HAProxy acts on
 * the QHCP verdict. HAProxy connects over TCP (one connection per check),
 * sends its `agent-send` string, which names the QHCP server as
 * `host:port\n`, and reads one line back:
 *
 * - `up ready`: the server is UP; `ready` ends a drain. With weights on
 *   (`--agent-weights`), `up ready 75%`: its weight becomes that percentage
 *   of the weight configured in HAProxy. Off by default: HAProxy's default
 *   server weight is 1, and any percentage below 100 of 1 rounds to 0, which
 *   would take every healthy server's traffic away; weights need `weight
 *   100` (or more) on HAProxy's server lines. A healthy server is never sent
 *   below 1 %;
 * - `up drain`: UP but draining (weight 0): no new traffic, existing
 *   connections finish (`up` so that a server HAProxy had set DOWN by an
 *   earlier reply comes back in DRAIN, not DOWN);
 * - `down #reason`: DOWN or UNKNOWN, or an unknown server; the text after `#`
 *   shows in HAProxy's logs and stats page.
 *
 * @module
 */

import { acceptLoop } from "./accept_loop.ts";
import { within } from "../util/timeout.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { ServerDirectory } from "../lb/directory.ts";
import { oneLine } from "../util/text.ts";
import type { WatchView } from "../lb/watch.ts";

const _encoder = new TextEncoder();

/**
 * The reply line (with its newline) for a QHCP server's view; `undefined`
 * means the name matched no watched server.
 *
 * @example
 * ```ts
 * import { agentReply } from "./agent_check.ts";
 * agentReply("10.0.0.7:4243", undefined); // "down #QHCP: unknown server 10.0.0.7:4243\n"
 * ```
 */
export function agentReply(name: string, view: WatchView | undefined, weights = false): string {
  if (!view) return `down #QHCP: unknown server ${_clean(name)}\n`;
  if (view.state !== "UP") {
    const why = view.last_error ?? (view.state === "UNKNOWN" ? "not checked yet" : "DOWN");
    return `down #QHCP ${view.state}: ${_clean(why)}\n`;
  }
  if (view.weight === 0) return "up drain\n";
  return weights ? `up ready ${Math.max(1, view.weight)}%\n` : "up ready\n";
}

/** Options of {@linkcode startAgentCheckServer}. */
export interface AgentCheckServerOptions {
  monitor: ServerDirectory;
  /** Address to bind. Default "0.0.0.0". */
  host?: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /**
   * Send each server's weight as a percentage (`up ready 75%`). Default
   * false: HAProxy's servers then need `weight 100` or more (see
   * {@linkcode agentReply}).
   */
  weights?: boolean;
  /** Wait this long for the `agent-send` line, ms. Default 2000. */
  readTimeoutMs?: number;
  /**
   * Connections at once; more are closed at once. Default 1024. HAProxy
   * opens one per check, all from its own address, so there is no smaller
   * cap per address.
   */
  maxConnections?: number;
  log?: Logger;
}

/** A running agent-check endpoint. */
export interface AgentCheckServer {
  readonly port: number;
  /** Replies sent since start. */
  readonly replies: number;
  close(): Promise<void>;
}

/**
 * Listens for HAProxy agent checks.
 *
 * HAProxy side, per server (see the README for a whole configuration):
 * `server web1 10.0.0.7:80 weight 100 agent-check agent-addr LB agent-port 4241 agent-send "10.0.0.7:4243\n" agent-inter 2s`
 */
export function startAgentCheckServer(options: AgentCheckServerOptions): AgentCheckServer {
  const log = options.log ?? silentLogger;
  const listener = Deno.listen({ hostname: options.host ?? "0.0.0.0", port: options.port });
  const readTimeoutMs = options.readTimeoutMs ?? 2000;
  let replies = 0;
  const serve = async (conn: Deno.Conn) => {
    try {
      const name = await _readLine(conn, readTimeoutMs);
      let view: WatchView | undefined;
      if (name) {
        try {
          view = options.monitor.server(name);
        } catch {
          view = undefined; // not a host:port
        }
      }
      const reply = name
        ? agentReply(name, view, options.weights ?? false)
        : "down #QHCP: set agent-send to the QHCP server's host:port\n";
      await _writeAll(conn, _encoder.encode(reply));
      replies++;
    } catch (e) {
      log.debug("agent check connection failed", { error: (e as Error).message });
    }
  };
  // Accept errors (out of descriptors) are temporary: the loop backs off and goes on.
  const max = options.maxConnections ?? 1024;
  const loop = acceptLoop(listener, {
    what: "agent-check",
    maxConnections: max,
    maxPerAddress: max,
    serve,
    log,
  });
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get replies() {
      return replies;
    },
    async close() {
      listener.close();
      for (const c of loop.connections()) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await loop.done;
    },
  };
}

/** Reads up to the first newline (at most 256 bytes) or until the timeout; "" for nothing. */
async function _readLine(conn: Deno.Conn, timeoutMs: number): Promise<string> {
  const buf = new Uint8Array(256);
  let used = 0;
  const deadline = Date.now() + timeoutMs;
  while (used < buf.length) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    // A read left pending by the timeout fails when the connection is closed.
    const r = await within(conn.read(buf.subarray(used)).catch(() => null), left);
    if (!r.ok || r.value === null) break;
    used += r.value;
    if (buf.subarray(0, used).includes(0x0a)) break;
  }
  const text = new TextDecoder().decode(buf.subarray(0, used));
  return text.split(/\r?\n/)[0]!.trim();
}

async function _writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Keeps a reason on one line, free of control characters and short, for HAProxy's log. */
function _clean(text: string): string {
  const one = oneLine(text);
  return one.length > 200 ? one.slice(0, 199) + "…" : one;
}
