import assert from "node:assert/strict";
import { ensureDefaultFiles } from "../lib/security/files.ts";
import { askQuestions, lbQuestions, type MenuIo, runMenu } from "../lib/cli/menu.ts";
import { tempDir } from "./_helpers.ts";

/** A menu session fed with `answers`; records what it asked and showed. */
function io(answers: string[]): MenuIo & { asked: string[]; shown: string[] } {
  const queue = [...answers];
  const asked: string[] = [];
  const shown: string[] = [];
  return {
    asked,
    shown,
    readLine: () => Promise.resolve(queue.length ? queue.shift()! : null),
    ask: (t) => asked.push(t),
    show: (t) => shown.push(t),
  };
}

Deno.test("runMenu() asks again after a bad answer and keeps the answers already given", async () => {
  const session = io(["9", "1", "127.0.0.1:4300", "abc", "0", "x", "5", "soon", "2.5", "", ""]);
  const chosen = await runMenu(session, "certs");
  assert.deepEqual(chosen, {
    script: "lb.ts",
    args: [
      "--servers",
      "127.0.0.1:4300",
      "--loadbalancer-port",
      "0",
      "--max-fail-attempts",
      "5",
      "--check-interval",
      "2.5",
      "--reconnect-interval",
      "30",
    ],
  });
  const asked = session.asked.join("");
  assert.match(asked, /Please answer 1, 2 or 3\./);
  assert.match(
    asked,
    /--loadbalancer-port: expected an integer in 0\.\.65535, got "abc"; please try again\./,
  );
  assert.match(asked, /--max-fail-attempts: expected an integer in 1\.\.1000, got "x"/);
  assert.match(asked, /--check-interval: expected seconds in 0\.1\.\.3600, got "soon"/);
  // Each question is asked again right after its bad answer, with its default.
  assert.equal(asked.match(/Load balancer HTTP port \[4242\]: /g)?.length, 2);
  assert.match(asked, /CA certificate file \[certs\/ca\.pem\]: /);
});

Deno.test("runMenu() ends quietly at the end of input and on Exit", async () => {
  assert.equal(await runMenu(io([]), "certs"), null);
  assert.equal(await runMenu(io(["3"]), "certs"), null);
  assert.equal(await runMenu(io(["2", "127.0.0.1"]), "certs"), null);
});

Deno.test("askQuestions() names a changed CA file only when it is readable", async () => {
  const session = io(["", "", "", "", "", "/no/such/ca.pem", "/etc/hostname"]);
  const args = await askQuestions(lbQuestions("certs"), session);
  assert.ok(args);
  assert.deepEqual(args.slice(-2), ["--cert-file", "/etc/hostname"]);
  assert.match(session.asked.join(""), /--cert-file: cannot read \/no\/such\/ca\.pem/);
});

Deno.test("runMenu() for the server checks that the key and certificate files belong together", async () => {
  const dir = await tempDir("menu");
  try {
    const f = await ensureDefaultFiles(dir);
    const session = io([
      "2",
      "127.0.0.1",
      "0",
      f.caKey, // the CA's key ...
      f.serverCert, // ... does not belong to the server's certificate: asked again
      f.caCert, // the CA's own certificate matches the CA's key
    ]);
    const chosen = await runMenu(session, dir);
    assert.match(session.asked.join(""), /the private key does not belong to the certificate/);
    assert.deepEqual(chosen?.args, [
      "--server-ip",
      "127.0.0.1",
      "--server-port",
      "0",
      "--key-file",
      f.caKey,
      "--cert-file",
      f.caCert,
    ]);
    // Defaults name no files: the program creates them on first start.
    const plain = await runMenu(io(["2", "", "", "", ""]), dir);
    assert.deepEqual(plain?.args, ["--server-ip", "0.0.0.0", "--server-port", "4243"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
