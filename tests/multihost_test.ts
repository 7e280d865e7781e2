/**
 * Certificates on several hosts, as the README tells an operator to set them
 * up: the CA stays on one host, each server host gets its own certificate,
 * a copied CA certificate is never replaced, and a directory that holds
 * everything a program uses is only read (a read-only secret mount works).
 */

import assert from "node:assert/strict";
import { DefaultFilesError, ensureDefaultFiles } from "../lib/security/files.ts";
import { fetchStatus, Program, startLbProcess, tempDir, waitFor } from "./_helpers.ts";

const root = new URL("..", import.meta.url).pathname;

/** Names and contents of the files in a directory (not recursive). */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) out[e.name] = await Deno.readTextFile(`${dir}/${e.name}`);
  }
  return out;
}

Deno.test("ensureDefaultFiles() never replaces a copied CA certificate and says how to get a server certificate without its key", async () => {
  const lbHost = await tempDir("ca-host");
  const other = await tempDir("other-host");
  try {
    const ca = await ensureDefaultFiles(lbHost, { need: ["ca", "jwt"] });
    await Deno.copyFile(ca.caCert, `${other}/ca.pem`);
    await Deno.copyFile(ca.jwtSecret, `${other}/jwt.secret`);
    const before = await snapshot(other);
    const e = await ensureDefaultFiles(other, { need: ["server", "jwt"] }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(e instanceof DefaultFilesError, String(e));
    assert.match(e.message, /ca\.pem is here but not the CA's key .*ca\.key/);
    assert.match(e.message, /\.\/run_quic\.sh task issue/);
    assert.deepEqual(await snapshot(other), before, "nothing written, the CA certificate kept");
  } finally {
    await Deno.remove(lbHost, { recursive: true });
    await Deno.remove(other, { recursive: true });
  }
});

Deno.test("ensureDefaultFiles() takes no lock and writes nothing when the files a program uses are there", async () => {
  const dir = await tempDir("readonly");
  try {
    const f = await ensureDefaultFiles(dir);
    // An agent's directory: its certificate, key and the secret only.
    const agentDir = await tempDir("agent-only");
    for (const p of [f.serverCert, f.serverKey, f.jwtSecret]) {
      await Deno.copyFile(p, `${agentDir}/${p.slice(p.lastIndexOf("/") + 1)}`);
    }
    await Deno.chmod(agentDir, 0o500);
    const before = await snapshot(agentDir);
    const mtime = (await Deno.stat(agentDir)).mtime?.getTime();
    await ensureDefaultFiles(agentDir, { need: ["server", "jwt"] });
    assert.deepEqual(await snapshot(agentDir), before);
    assert.equal((await Deno.stat(agentDir)).mtime?.getTime(), mtime, "no lock file came and went");
    await Deno.chmod(agentDir, 0o700);
    await Deno.remove(agentDir, { recursive: true });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "The README's multi-host steps work: the CA host issues the server host's certificate, the server host gets three files, the LB sees it UP",
  sanitizeResources: false,
  async fn() {
    const lbHost = await tempDir("lb-host");
    const serverHost = await tempDir("server-host");
    let server: Program | undefined;
    let lb: Awaited<ReturnType<typeof startLbProcess>> | undefined;
    try {
      // 1. On the LB host (it holds the CA): issue a certificate for the server host.
      const issue = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${root}tools/issue.ts`,
          "--certs-dir",
          lbHost,
          "127.0.0.1",
          "localhost",
        ],
        env: { NO_COLOR: "1" },
      }).output();
      assert.ok(issue.success, new TextDecoder().decode(issue.stderr));
      assert.match(
        new TextDecoder().decode(issue.stdout),
        /wrote .*issued\/127\.0\.0\.1\/server\.pem/,
      );
      // 2. Copy server.pem, server.key and jwt.secret to the server host.
      for (
        const [from, to] of [
          [`${lbHost}/issued/127.0.0.1/server.pem`, "server.pem"],
          [`${lbHost}/issued/127.0.0.1/server.key`, "server.key"],
          [`${lbHost}/jwt.secret`, "jwt.secret"],
        ]
      ) await Deno.copyFile(from!, `${serverHost}/${to}`);
      const copied = await snapshot(serverHost);
      // 3. Start the agent there and the LB on the LB host.
      server = new Program("server.ts", ["--server-ip", "127.0.0.1", "--server-port", "0"], {
        QHCP_CERTS_DIR: serverHost,
      });
      const port = Number((await server.waitForLine(/server listening .*port=(\d+)/))[1]);
      lb = await startLbProcess(["--servers", `127.0.0.1:${port}`, "--check-interval", "0.5"], {
        QHCP_CERTS_DIR: lbHost,
      });
      await waitFor("UP", async () => (await fetchStatus(lb!.httpPort))[0]?.state === "UP", 15_000);
      assert.deepEqual(await snapshot(serverHost), copied, "the agent wrote nothing");
      // The README's earlier advice (copy ca.pem and jwt.secret) now fails clearly instead of
      // making a second CA that the LB refuses.
      const wrong = await tempDir("wrong-host");
      await Deno.copyFile(`${lbHost}/ca.pem`, `${wrong}/ca.pem`);
      await Deno.copyFile(`${lbHost}/jwt.secret`, `${wrong}/jwt.secret`);
      const refused = new Program("server.ts", ["--server-ip", "127.0.0.1", "--server-port", "0"], {
        QHCP_CERTS_DIR: wrong,
      });
      const status = await refused.done;
      await refused.stop();
      assert.equal(status.code, 2, refused.output());
      assert.match(refused.output(), /qhcp-server: cannot create .*server\.pem for this host/);
      assert.equal(
        await Deno.readTextFile(`${wrong}/ca.pem`),
        await Deno.readTextFile(`${lbHost}/ca.pem`),
      );
      await Deno.remove(wrong, { recursive: true });
    } finally {
      await lb?.program.stop();
      await server?.stop();
      await Deno.remove(lbHost, { recursive: true });
      await Deno.remove(serverHost, { recursive: true });
    }
  },
});
