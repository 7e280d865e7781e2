/**
 * A real etcd cluster on loopback (Debian's `etcd-server`) for the tests, the
 * fleet demo and the fleet benchmark: N members on free ports in a temporary
 * directory, each a process that can be killed, stopped, continued and
 * started again.
 *
 * @example
 * ```ts
 * import { EtcdCluster } from "./etcd_cluster.ts";
 * await using etcd = await EtcdCluster.start(3);
 * etcd.endpoints; // ["http://127.0.0.1:…", …]
 * await etcd.kill(0);
 * ```
 *
 * @module
 */

import { requirePeer } from "./peers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface Member {
  name: string;
  client: number;
  peer: number;
  child: Deno.ChildProcess | undefined;
  log: string[];
}

/** A running cluster. */
export class EtcdCluster implements AsyncDisposable {
  readonly #members: Member[];
  readonly #dir: string;

  private constructor(members: Member[], dir: string) {
    this.#members = members;
    this.#dir = dir;
  }

  /** Starts `n` members and waits until the cluster answers. */
  static async start(n: number): Promise<EtcdCluster> {
    requirePeer("etcd");
    const dir = await Deno.makeTempDir({ prefix: "qhcp-etcd-" });
    const members: Member[] = Array.from({ length: n }, (_, i) => ({
      name: `e${i}`,
      client: freeTcpPort(),
      peer: freeTcpPort(),
      child: undefined,
      log: [],
    }));
    const cluster = new EtcdCluster(members, dir);
    for (let i = 0; i < n; i++) cluster.#spawn(i, "new");
    await cluster.ready();
    return cluster;
  }

  /** Client URLs of every member. */
  get endpoints(): string[] {
    return this.#members.map((m) => `http://127.0.0.1:${m.client}`);
  }

  /** Waits until every running member answers a read. */
  async ready(timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (const [i, m] of this.#members.entries()) {
      if (!m.child) continue;
      for (;;) {
        try {
          const r = await fetch(`http://127.0.0.1:${m.client}/v3/kv/range`, {
            method: "POST",
            body: JSON.stringify({ key: btoa("ready") }),
            signal: AbortSignal.timeout(1000),
          });
          await r.body?.cancel();
          if (r.ok) break;
        } catch { /* not yet */ }
        if (Date.now() > end) {
          throw new Error(`etcd member ${i} did not answer:\n${m.log.join("")}`);
        }
        await sleep(100);
      }
    }
  }

  /** The member that leads now, by index. */
  async leader(): Promise<number> {
    for (const [i, m] of this.#members.entries()) {
      if (!m.child) continue;
      try {
        const r = await fetch(`http://127.0.0.1:${m.client}/v3/maintenance/status`, {
          method: "POST",
          body: "{}",
          signal: AbortSignal.timeout(1000),
        });
        const s = await r.json() as { leader?: string; header?: { member_id?: string } };
        if (s.leader && s.leader === s.header?.member_id) return i;
      } catch { /* ask another */ }
    }
    throw new Error("no etcd leader");
  }

  /** SIGKILL of member `i`. */
  async kill(i: number): Promise<void> {
    const m = this.#members[i]!;
    this.#signal(i, "SIGKILL");
    await m.child?.status;
    m.child = undefined;
  }

  /** SIGSTOP / SIGCONT of member `i`. */
  pause(i: number, on: boolean): void {
    this.#signal(i, on ? "SIGSTOP" : "SIGCONT");
  }

  #signal(i: number, signal: Deno.Signal): void {
    try {
      this.#members[i]!.child?.kill(signal);
    } catch { /* it ended already (a terminal's Ctrl-C reaches it too) */ }
  }

  /** Starts member `i` again (its data directory kept). */
  restart(i: number): void {
    this.#spawn(i, "existing");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (let i = 0; i < this.#members.length; i++) {
      this.pause(i, false);
      await this.kill(i);
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  #spawn(i: number, state: "new" | "existing"): void {
    const m = this.#members[i]!;
    const cluster = this.#members.map((x) => `${x.name}=http://127.0.0.1:${x.peer}`).join(",");
    m.child = new Deno.Command(requirePeer("etcd"), {
      args: [
        "--name",
        m.name,
        "--data-dir",
        `${this.#dir}/${m.name}`,
        "--listen-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${m.client}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${m.peer}`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        state,
        "--initial-cluster-token",
        `qhcp-test-${this.#dir}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = m.log;
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of m.child!.stderr) {
        log.push(dec.decode(chunk));
        if (log.length > 200) log.splice(0, 100);
      }
    })().catch(() => {});
  }
}
