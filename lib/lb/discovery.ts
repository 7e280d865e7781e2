/**
 * Server discovery: the LB follows a fleet that changes, from a file of
 * addresses (reloaded when it changes or on SIGHUP) or from DNS names
 * (A and AAAA records, re-resolved every reconnect interval).
 *
 * Each source reports its full list; a {@linkcode Discovery} adds what is new
 * and removes what no source lists any more. It only ever removes servers it
 * added itself, never ones given on the command line or over the HTTP API,
 * and it keeps a source's previous list when a read or a lookup fails, so a
 * half-written file or a DNS outage never empties the pool.
 *
 * @module
 */

import { fewOf } from "../util/text.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { ServerSetError } from "./monitor.ts";
import type { ServerSet } from "./directory.ts";
import { formatAddress, parseServerAddress } from "../protocol/address.ts";
import type { ServerAddress } from "./watch.ts";

/** The outcome of parsing a servers file. */
export interface ServersFile {
  servers: ServerAddress[];
  /** "line N: why" for each bad line. */
  errors: string[];
}

/**
 * Parses a servers file: one `host:port` (or `host`, port 4243) per line;
 * `#` starts a comment; blank lines are ignored.
 *
 * @example
 * ```ts
 * import { parseServersFile } from "./discovery.ts";
 * parseServersFile("# web tier\n10.0.0.7:4243\n10.0.0.8   # canary\n").servers.length; // 2
 * ```
 */
export function parseServersFile(text: string): ServersFile {
  const servers: ServerAddress[] = [];
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) return;
    try {
      servers.push(parseServerAddress(line));
    } catch (e) {
      errors.push(`line ${i + 1}: ${(e as Error).message}`);
    }
  });
  return { servers, errors };
}

/** Reconciles a set of servers (the monitor's, or this LB's part of a fleet's) with what the discovery sources list. */
export class Discovery {
  readonly #monitor: ServerSet;
  readonly #log: Logger;
  readonly #sources = new Map<string, Set<string>>();
  /** Servers this discovery added (and so may remove). */
  readonly #managed = new Set<string>();
  /** Updates run one after another, so two sources never interleave. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(monitor: ServerSet, log: Logger = silentLogger) {
    this.#monitor = monitor;
    this.#log = log;
  }

  /** Servers currently listed by a source. */
  listed(source: string): string[] {
    return [...(this.#sources.get(source) ?? [])];
  }

  /** Replaces one source's list and applies the difference to the monitor. */
  update(
    source: string,
    servers: readonly ServerAddress[],
  ): Promise<{ added: string[]; removed: string[] }> {
    const run = this.#queue.then(() => this.#apply(source, servers));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #apply(
    source: string,
    servers: readonly ServerAddress[],
  ): Promise<{ added: string[]; removed: string[] }> {
    this.#sources.set(source, new Set(servers.map((s) => formatAddress(s.host, s.port))));
    const wanted = new Set<string>();
    for (const list of this.#sources.values()) for (const a of list) wanted.add(a);
    const present = new Set(this.#monitor.addresses());
    const added: string[] = [];
    const removed: string[] = [];
    // Removals first, so that a list replaced by another fits the LB's limit.
    for (const address of [...this.#managed]) {
      if (wanted.has(address)) continue;
      this.#managed.delete(address);
      if (await this.#monitor.removeServer(address)) removed.push(address);
    }
    let full = 0;
    // Together, so that a fleet writes a long list in a few transactions.
    await Promise.all(
      [...wanted].filter((a) => !present.has(a)).map(async (address) => {
        try {
          await this.#monitor.addServer(parseServerAddress(address));
        } catch (e) {
          if (!(e instanceof ServerSetError)) throw e;
          if (e.kind === "limit") full++;
          return;
        }
        this.#managed.add(address);
        added.push(address);
      }),
    );
    if (full > 0) {
      this.#log.warn("server limit reached: some listed servers are not watched", {
        source,
        left_out: full,
        limit: this.#monitor.maxServers,
      });
    }
    if (added.length || removed.length) {
      this.#log.info("server list changed", {
        source,
        added: fewOf(added),
        removed: fewOf(removed),
        servers: this.#monitor.addresses().length,
      });
    }
    return { added, removed };
  }
}

/** A watched servers file. */
export interface ServersFileWatch {
  /** Reads the file again now (SIGHUP). */
  reload(): Promise<void>;
  close(): void;
}

/**
 * Loads `path` into `discovery` now and again whenever it changes (the
 * directory is watched, so editors that replace the file are seen too).
 * A file that cannot be read or has a bad line leaves the list as it was.
 */
export async function watchServersFile(
  path: string,
  discovery: Discovery,
  log: Logger = silentLogger,
): Promise<ServersFileWatch> {
  const source = `file:${path}`;
  let last = "";
  const reload = async () => {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      log.warn("cannot read the servers file; keeping the current list", {
        file: path,
        error: (e as Error).message,
      });
      return;
    }
    if (text === last) return;
    const parsed = parseServersFile(text);
    if (parsed.errors.length > 0) {
      log.error("bad servers file; keeping the current list", {
        file: path,
        errors: parsed.errors.join("; "),
      });
      return;
    }
    last = text;
    await discovery.update(source, parsed.servers);
  };
  await reload();
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
  const name = path.slice(path.lastIndexOf("/") + 1);
  let watcher: Deno.FsWatcher | undefined;
  try {
    watcher = Deno.watchFs(dir, { recursive: false });
  } catch (e) {
    log.warn("cannot watch the servers file's directory; reload with SIGHUP", {
      dir,
      error: (e as Error).message,
    });
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (watcher) {
    const w = watcher;
    void (async () => {
      try {
        for await (const event of w) {
          if (!event.paths.some((p) => p.endsWith(`/${name}`) || p === name)) continue;
          // Coalesce the several events of one write.
          clearTimeout(timer);
          timer = setTimeout(() => void reload(), 100);
        }
      } catch { /* closed */ }
    })();
  }
  return {
    reload,
    close() {
      clearTimeout(timer);
      try {
        watcher?.close();
      } catch { /* already closed */ }
    },
  };
}

/** Consecutive empty DNS answers before a name's servers are all removed. */
export const EMPTY_LOOKUPS_TO_APPLY = 3;

/** Options of {@linkcode watchDnsName}. */
export interface DnsWatchOptions {
  /** Re-resolve every this many ms (the reconnect interval). */
  intervalMs: number;
  /** Ask this resolver instead of the system's, e.g. { ipAddr: "127.0.0.1", port: 5353 }. */
  nameServer?: { ipAddr: string; port: number };
  log?: Logger;
}

/** A DNS name being followed. */
export interface DnsWatch {
  /** Resolves again now. */
  refresh(): Promise<void>;
  close(): void;
}

/**
 * Follows `name`'s A and AAAA records: every address with `port` is a server.
 * A failed lookup keeps the previous list. Deno reports "no records" the same
 * way for an empty answer, NXDOMAIN and a SERVFAIL, so an empty result only
 * empties the list once it has come back {@linkcode EMPTY_LOOKUPS_TO_APPLY}
 * times in a row: a DNS hiccup never drains the pool, a name that is gone
 * for good does after three reconnect intervals.
 */
export async function watchDnsName(
  name: string,
  port: number,
  discovery: Discovery,
  options: DnsWatchOptions,
): Promise<DnsWatch> {
  const log = options.log ?? silentLogger;
  const source = `dns:${name}:${port}`;
  const lookup = async (type: "A" | "AAAA"): Promise<string[]> => {
    try {
      return await Deno.resolveDns(
        name,
        type,
        options.nameServer ? { nameServer: options.nameServer } : {},
      );
    } catch (e) {
      // No records of this type is an answer, not a failure.
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
  };
  let empties = 0;
  const refresh = async () => {
    let addresses: string[];
    try {
      const [v4, v6] = await Promise.all([lookup("A"), lookup("AAAA")]);
      addresses = [...v4, ...v6];
    } catch (e) {
      log.warn("DNS lookup failed; keeping the current list", {
        name,
        error: (e as Error).message,
      });
      return;
    }
    if (addresses.length === 0 && ++empties < EMPTY_LOOKUPS_TO_APPLY) {
      log.warn("DNS name has no A or AAAA records; keeping the current list for now", {
        name,
        times: empties,
      });
      return;
    }
    if (addresses.length > 0) empties = 0;
    await discovery.update(source, addresses.map((host) => ({ host, port })));
  };
  await refresh();
  const timer = setInterval(() => void refresh(), options.intervalMs);
  return {
    refresh,
    close() {
      clearInterval(timer);
    },
  };
}
