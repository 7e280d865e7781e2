#!/usr/bin/env -S deno run -A
/**
 * The real programs some tests drive (HAProxy, promtool, Chromium, etcd, dig,
 * systemd-analyze), in one table: `./run_quic.sh test` installs the missing ones with apt-get before
 * the suite when it can (as root, or with passwordless sudo), and says what to
 * install when it cannot; the tests call {@linkcode requirePeer} so that a
 * missing one fails with the package to install, not a confusing error.
 *
 *   deno run -A tools/peers.ts install   install what is missing, or say what to install
 *   deno run -A tools/peers.ts check     list what is missing; exit 1 if anything is
 *
 * @module
 */

/** A program a test runs, and the Debian package that brings it. */
export interface Peer {
  /** Absolute path of the program. */
  path: string;
  /** Debian package. */
  pkg: string;
  /** Which tests need it. */
  usedBy: string;
}

/** Every real peer of the suite, by short name. */
export const PEERS = {
  haproxy: { path: "/usr/sbin/haproxy", pkg: "haproxy", usedBy: "the HAProxy agent-check tests" },
  promtool: { path: "/usr/bin/promtool", pkg: "prometheus", usedBy: "the /metrics test" },
  chromium: { path: "/usr/bin/chromium", pkg: "chromium", usedBy: "the dashboard test" },
  etcd: { path: "/usr/bin/etcd", pkg: "etcd-server", usedBy: "the fleet tests" },
  dig: { path: "/usr/bin/dig", pkg: "bind9-dnsutils", usedBy: "the DNS tests" },
  "systemd-analyze": {
    path: "/usr/bin/systemd-analyze",
    pkg: "systemd",
    usedBy: "the test of the systemd units",
  },
} as const satisfies Record<string, Peer>;

/** A peer's short name. */
export type PeerName = keyof typeof PEERS;

/** True when the program is there and executable. */
export function havePeer(name: PeerName): boolean {
  try {
    const st = Deno.statSync(PEERS[name].path);
    return st.isFile && ((st.mode ?? 0o755) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Returns the peer's path, or throws an error that names the package to
 * install and how.
 */
export function requirePeer(name: PeerName): string {
  const peer: Peer = PEERS[name];
  if (!havePeer(name)) {
    throw new Error(
      `${name} is not installed at ${peer.path} (${peer.usedBy} need it): ` +
        `install it with "sudo apt-get install ${peer.pkg}", ` +
        `or run ./run_quic.sh test as root, which installs it`,
    );
  }
  return peer.path;
}

/** Names of the peers that are missing. */
export function missingPeers(): PeerName[] {
  return (Object.keys(PEERS) as PeerName[]).filter((n) => !havePeer(n));
}

async function _run(cmd: string[], quiet = false): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      stdin: "null",
      stdout: quiet ? "null" : "inherit",
      stderr: quiet ? "null" : "inherit",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** How to run apt-get here: directly as root, through passwordless sudo, or not at all. */
async function _apt(): Promise<string[] | undefined> {
  if (!await _run(["apt-get", "--version"], true)) return undefined;
  if (Deno.uid() === 0) return ["apt-get"];
  if (await _run(["sudo", "-n", "true"], true)) return ["sudo", "-n", "apt-get"];
  return undefined;
}

/** Installs what is missing when it can; returns the names still missing. */
export async function installMissingPeers(say: (line: string) => void): Promise<PeerName[]> {
  const missing = missingPeers();
  if (missing.length === 0) return [];
  const pkgs = [...new Set(missing.map((n) => PEERS[n].pkg))];
  const apt = await _apt();
  if (apt) {
    say(`installing the tests' real peers with apt-get: ${pkgs.join(" ")} ...`);
    const ok = await _run([...apt, "update", "-qq"]) &&
      await _run([...apt, "install", "-y", "-qq", "--no-install-recommends", ...pkgs]);
    if (!ok) say("apt-get failed; see its output above");
  }
  const still = missingPeers();
  if (still.length > 0) {
    const list = [...new Set(still.map((n) => PEERS[n].pkg))].join(" ");
    say(
      `MISSING: ${still.join(", ")} (${still.map((n) => PEERS[n].usedBy).join("; ")} will fail). ` +
        `Install with: sudo apt-get install ${list}`,
    );
  }
  return still;
}

if (import.meta.main) {
  const say = (line: string) => console.error(`peers: ${line}`);
  const command = Deno.args[0] ?? "check";
  if (command === "install") {
    await installMissingPeers(say);
  } else if (command === "check") {
    const missing = missingPeers();
    for (const n of missing) say(`${n} missing: apt-get install ${PEERS[n].pkg}`);
    Deno.exit(missing.length === 0 ? 0 : 1);
  } else {
    say(`unknown command ${JSON.stringify(command)}: expected install or check`);
    Deno.exit(2);
  }
}
