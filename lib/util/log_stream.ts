/**
 * Log output that cannot stall the program. A write to stderr blocks while
 * its reader does not read (a full pipe, a stuck log collector), and a
 * synchronous write would freeze the event loop with it: no check, no
 * deadline, no answer to HAProxy. Lines are queued here and written by one
 * asynchronous writer; past a bound they are dropped and counted, and the
 * logger says how many once it can write again. The cost: a process that
 * dies at once (SIGKILL, an error the process guard does not absorb) loses
 * what was still queued, which is nothing unless stderr was already slow.
 *
 * @module
 */

import { concatBytes } from "./bytes.ts";
import { settlesWithin } from "./timeout.ts";

/** Where the bytes go (`Deno.stderr` by default). */
export interface ByteSink {
  write(p: Uint8Array): Promise<number>;
}

/** Bytes waiting to be written at most, by default: about 8,000 lines. */
export const LOG_QUEUE_BYTES = 1 << 20;

const _encoder = new TextEncoder();

/**
 * Text written in order by one asynchronous writer, at most `maxBytes`
 * waiting. A sink that fails (stderr closed) ends it: later text is dropped.
 *
 * @example
 * ```ts
 * import { LogStream } from "./log_stream.ts";
 * const out = new LogStream(Deno.stderr);
 * out.write("a line\n"); // returns at once, written soon after
 * await out.flush(1000); // before the process exits
 * ```
 */
export class LogStream {
  readonly #out: ByteSink;
  readonly #maxBytes: number;
  #queue: Uint8Array[] = [];
  #pending = 0;
  #dropped = 0;
  #droppedTotal = 0;
  #writing = false;
  #closed = false;
  #drained: (() => void)[] = [];

  constructor(out: ByteSink, maxBytes = LOG_QUEUE_BYTES) {
    this.#out = out;
    this.#maxBytes = maxBytes;
  }

  /** Bytes queued or being written. */
  get pendingBytes(): number {
    return this.#pending;
  }

  /** Writes dropped since the last drop notice was queued. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Writes dropped since start. */
  get droppedTotal(): number {
    return this.#droppedTotal;
  }

  /** Queues `text`; false (and counted) when the queue is full or the sink failed. */
  write(text: string): boolean {
    if (this.#enqueue(text)) return true;
    this.#dropped++;
    this.#droppedTotal++;
    return false;
  }

  /**
   * After writes were dropped, queues `notice(count)` once it fits, and only
   * then starts counting again: the count is never lost with the notice.
   */
  writeDropNotice(notice: (dropped: number) => string): void {
    if (this.#dropped > 0 && this.#enqueue(notice(this.#dropped))) this.#dropped = 0;
  }

  #enqueue(text: string): boolean {
    const bytes = _encoder.encode(text);
    if (this.#closed || this.#pending + bytes.length > this.#maxBytes) return false;
    this.#queue.push(bytes);
    this.#pending += bytes.length;
    if (!this.#writing) void this.#run();
    return true;
  }

  /** Resolves true once everything queued is written, false after `timeoutMs` or on a failed sink. */
  flush(timeoutMs: number): Promise<boolean> {
    if (!this.#writing) return Promise.resolve(!this.#closed);
    const drained = new Promise<void>((resolve) => this.#drained.push(resolve));
    return settlesWithin(drained, timeoutMs).then((done) => done && !this.#closed);
  }

  async #run(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0) {
        // Whatever queued meanwhile goes in one write.
        const chunk = concatBytes(...this.#queue);
        this.#queue = [];
        let off = 0;
        while (off < chunk.length) {
          const n = await this.#out.write(chunk.subarray(off));
          off += n;
          this.#pending -= n;
        }
      }
    } catch {
      // The reader is gone: nothing useful is left to do with log lines.
      this.#closed = true;
      this.#queue = [];
      this.#pending = 0;
    } finally {
      this.#writing = false;
      for (const done of this.#drained.splice(0)) done();
    }
  }
}

/** The program's stderr: every logger and message of the process writes here, in order. */
export const stderrStream: LogStream = new LogStream(Deno.stderr);

/**
 * The program's stdout: the LB's status table. A stalled reader (a paused
 * pager, a full pipe) costs frames, never the event loop; each frame is whole,
 * so the next one replaces what was dropped.
 */
export const stdoutStream: LogStream = new LogStream(Deno.stdout);
