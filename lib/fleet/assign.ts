/**
 * Which LBs check which server: rendezvous (highest random weight) hashing.
 * Every LB computes the same answer from the same member list, with no
 * coordination; when a member joins or leaves, only the servers whose top
 * `k` included it move (about k / members of them). Pure.
 *
 * @module
 */

/** A 32-bit score of `member` for `server` (FNV-1a, then a murmur3 finaliser for spread). */
export function score(member: string, server: string): number {
  let h = 0x811c9dc5;
  const text = `${member}\u0000${server}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The `k` members that check `server`, best first (ties broken by name).
 *
 * @example
 * ```ts
 * import { owners } from "./assign.ts";
 * owners("10.0.0.7:4243", ["lb-a", "lb-b", "lb-c"], 2); // two of the three, the same on every LB
 * ```
 */
export function owners(server: string, members: readonly string[], k: number): string[] {
  return [...members]
    .map((m) => ({ m, s: score(m, server) }))
    .sort((a, b) => b.s - a.s || (a.m < b.m ? -1 : a.m > b.m ? 1 : 0))
    .slice(0, Math.max(0, k))
    .map((x) => x.m);
}

/** The servers `member` checks, given every server and the live members. */
export function assigned(
  member: string,
  servers: Iterable<string>,
  members: readonly string[],
  k: number,
): Set<string> {
  const out = new Set<string>();
  for (const s of servers) if (owners(s, members, k).includes(member)) out.add(s);
  return out;
}
