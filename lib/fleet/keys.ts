/**
 * Where fleet mode keeps things in etcd, under one prefix (`--etcd-prefix`,
 * default `/qhcp/`). docs/FLEET.md lists them with what each holds.
 *
 * - `members/<lb>`: a live LB (under its lease);
 * - `servers/<address>/<lb>`: the server set, one entry per LB that added a
 *   server (no lease: a dead LB does not take servers away);
 * - `owners/<address>/<lb>`: an LB checking a server (under its lease; its
 *   creation revision fences the LB's verdict writes);
 * - `verdicts/<address>/<lb>`: an owner's verdict on a server (no lease, so
 *   that a verdict outlives its writer until a new owner replaces it).
 *
 * @module
 */

/** The key families. */
export type KeyKind = "members" | "servers" | "owners" | "verdicts";

/** The keys of one fleet. */
export class FleetKeys {
  constructor(readonly prefix: string) {
    if (!prefix.endsWith("/")) this.prefix = `${prefix}/`;
  }

  /** The prefix of a family. */
  of(kind: KeyKind): string {
    return `${this.prefix}${kind}/`;
  }

  member(lb: string): string {
    return `${this.of("members")}${lb}`;
  }

  server(address: string, lb: string): string {
    return `${this.of("servers")}${address}/${lb}`;
  }

  owner(address: string, lb: string): string {
    return `${this.of("owners")}${address}/${lb}`;
  }

  verdict(address: string, lb: string): string {
    return `${this.of("verdicts")}${address}/${lb}`;
  }

  /**
   * Splits a key of the fleet into its family, address and LB (members have
   * no address). Undefined for a key that is not one of the fleet's.
   */
  parse(key: string): { kind: KeyKind; address: string; lb: string } | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const rest = key.slice(this.prefix.length);
    const slash = rest.indexOf("/");
    if (slash < 0) return undefined;
    const kind = rest.slice(0, slash) as KeyKind;
    const tail = rest.slice(slash + 1);
    if (kind === "members") return tail ? { kind, address: "", lb: tail } : undefined;
    if (kind !== "servers" && kind !== "owners" && kind !== "verdicts") return undefined;
    // The LB id is the last segment; an address never has a slash.
    const last = tail.lastIndexOf("/");
    if (last <= 0 || last === tail.length - 1) return undefined;
    return { kind, address: tail.slice(0, last), lb: tail.slice(last + 1) };
  }
}
