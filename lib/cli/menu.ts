/**
 * The launcher's interactive menu (`./run_quic.sh` with no argument): asks
 * for the settings of the LB or the server one at a time, checks each answer
 * at once with the program's own flag parser, and asks again until it is
 * good, so a typo never loses the answers already given. The result is the
 * program's command line.
 *
 * @module
 */

import { checkCertificatePair } from "../security/names.ts";
import { CliError, type FlagSpec } from "./flags.ts";
import { AGENT_DEFAULTS } from "../util/defaults.ts";
import { defaultCertsDir, defaultFiles } from "../security/files.ts";
import { LB_FLAGS, parseLbArgs } from "./lb_flags.ts";
import { parseServerArgs, SERVER_FLAGS } from "./server_flags.ts";

/** One question of the menu. */
export interface Question {
  /** The flag the answer becomes. */
  flag: string;
  prompt: string;
  /** Shown in brackets; an empty answer takes it. */
  default: string;
  /**
   * True when the default needs no flag (a file the program creates on first
   * start): the flag is passed only when the answer differs.
   */
  implicitDefault?: boolean;
  /**
   * Checks one answer, given the answers so far by flag: the problem in
   * words, or undefined.
   */
  check: (
    answer: string,
    earlier: ReadonlyMap<string, string>,
  ) => string | undefined | Promise<string | undefined>;
}

/** A program the menu starts, with its questions. */
export interface MenuProgram {
  script: "lb.ts" | "server.ts";
  questions: Question[];
}

/** What the menu reads and writes. */
export interface MenuIo {
  /** The next line typed, without its newline; null at the end of input. */
  readLine(): Promise<string | null>;
  /** Prompts and complaints (stderr: they show even when stdout is piped). */
  ask(text: string): void;
  /** The menu itself (stdout). */
  show(text: string): void;
}

/** Checks `answer` as the value of `flag` with `parse`; the CliError's message, or undefined. */
function _byParser(
  parse: (args: readonly string[]) => unknown,
  flag: string,
): (answer: string) => string | undefined {
  return (answer) => {
    try {
      parse([`--${flag}`, answer]);
      return undefined;
    } catch (e) {
      if (e instanceof CliError) return e.message;
      throw e;
    }
  };
}

/** A file that must be readable (when it is not the program's default, created on first start). */
function _readable(flag: string, dflt: string): (answer: string) => Promise<string | undefined> {
  return async (answer) => {
    if (answer === dflt) return undefined;
    try {
      const st = await Deno.stat(answer);
      return st.isFile ? undefined : `--${flag}: ${answer} is not a file`;
    } catch (e) {
      return `--${flag}: cannot read ${answer}: ${(e as Error).message}`;
    }
  };
}

function _default(specs: readonly FlagSpec[], name: string): string {
  return specs.find((s) => s.name === name)?.default ?? "";
}

/** The LB's questions. */
export function lbQuestions(certsDir: string = defaultCertsDir()): Question[] {
  const check = (flag: string) => _byParser(parseLbArgs, flag);
  const ca = defaultFiles(certsDir).caCert;
  return [
    {
      flag: "servers",
      prompt: "Servers (host:port, comma-separated)",
      default: `127.0.0.1:${AGENT_DEFAULTS.port}`,
      check: check("servers"),
    },
    {
      flag: "loadbalancer-port",
      prompt: "Load balancer HTTP port",
      default: _default(LB_FLAGS, "loadbalancer-port"),
      check: check("loadbalancer-port"),
    },
    {
      flag: "max-fail-attempts",
      prompt: "Max fail attempts",
      default: _default(LB_FLAGS, "max-fail-attempts"),
      check: check("max-fail-attempts"),
    },
    {
      flag: "check-interval",
      prompt: "Check interval (seconds)",
      default: _default(LB_FLAGS, "check-interval"),
      check: check("check-interval"),
    },
    {
      flag: "reconnect-interval",
      prompt: "Reconnect interval (seconds)",
      default: _default(LB_FLAGS, "reconnect-interval"),
      check: check("reconnect-interval"),
    },
    {
      flag: "cert-file",
      prompt: "CA certificate file",
      default: ca,
      implicitDefault: true,
      check: _readable("cert-file", ca),
    },
  ];
}

/** The server's questions. */
export function serverQuestions(certsDir: string = defaultCertsDir()): Question[] {
  const check = (flag: string) => _byParser(parseServerArgs, flag);
  const files = defaultFiles(certsDir);
  return [
    {
      flag: "server-ip",
      prompt: "Server IP",
      default: _default(SERVER_FLAGS, "server-ip"),
      check: check("server-ip"),
    },
    {
      flag: "server-port",
      prompt: "Server port",
      default: _default(SERVER_FLAGS, "server-port"),
      check: check("server-port"),
    },
    {
      flag: "key-file",
      prompt: "Key file",
      default: files.serverKey,
      implicitDefault: true,
      check: _readable("key-file", files.serverKey),
    },
    {
      flag: "cert-file",
      prompt: "Certificate file",
      default: files.serverCert,
      implicitDefault: true,
      check: async (answer, earlier) => {
        const problem = await _readable("cert-file", files.serverCert)(answer);
        const key = earlier.get("key-file");
        if (
          problem || key === undefined || (answer === files.serverCert && key === files.serverKey)
        ) {
          return problem;
        }
        // The server would refuse a pair that does not match: say so now.
        const pair = await checkCertificatePair(
          await Deno.readTextFile(answer),
          await Deno.readTextFile(key).catch(() => ""),
          Date.now(),
        );
        if (!("file" in pair)) return undefined;
        return pair.file === "key"
          ? `--key-file: ${key}: ${pair.reason} (answer the key file again after this one)`
          : `--cert-file: ${answer}: ${pair.reason}`;
      },
    },
  ];
}

/**
 * Asks every question, each until its answer is good. Returns the flags, or
 * null when the input ended.
 */
export async function askQuestions(questions: readonly Question[], io: MenuIo): Promise<
  string[] | null
> {
  const answers = new Map<Question, string>();
  for (const q of questions) {
    for (;;) {
      io.ask(`${q.prompt} [${q.default}]: `);
      const line = await io.readLine();
      if (line === null) {
        io.ask("\n");
        return null;
      }
      const answer = line.trim() || q.default;
      const problem = await q.check(answer, _byFlag(answers));
      if (problem === undefined) {
        answers.set(q, answer);
        break;
      }
      io.ask(`${problem}; please try again.\n`);
    }
  }
  return _flags(questions, answers);
}

function _byFlag(answers: Map<Question, string>): Map<string, string> {
  return new Map([...answers].map(([q, a]) => [q.flag, a]));
}

function _flags(questions: readonly Question[], answers: Map<Question, string>): string[] {
  const out: string[] = [];
  // Files created on first start are named only when the user changed one;
  // a key and certificate pair goes together.
  const changedFiles = questions.filter((q) => q.implicitDefault && answers.get(q) !== q.default);
  for (const q of questions) {
    const answer = answers.get(q)!;
    if (q.implicitDefault && changedFiles.length === 0) continue;
    out.push(`--${q.flag}`, answer);
  }
  return out;
}

/**
 * The whole menu: which program, then its questions. Returns the program and
 * its flags, or null for Exit or the end of input.
 */
export async function runMenu(
  io: MenuIo,
  certsDir: string = defaultCertsDir(),
): Promise<{ script: MenuProgram["script"]; args: string[] } | null> {
  for (;;) {
    io.show(
      "QHCP - Quick Health Check Protocol over QUIC\n" +
        "  1) Run Load Balancer\n  2) Run Server\n  3) Exit\n",
    );
    io.ask("Choose [1-3]: ");
    const choice = await io.readLine();
    if (choice === null) {
      io.show("\n");
      return null;
    }
    const program: MenuProgram | undefined = choice.trim() === "1"
      ? { script: "lb.ts", questions: lbQuestions(certsDir) }
      : choice.trim() === "2"
      ? { script: "server.ts", questions: serverQuestions(certsDir) }
      : undefined;
    if (["3", "q", "exit"].includes(choice.trim())) return null;
    if (!program) {
      io.ask("Please answer 1, 2 or 3.\n");
      continue;
    }
    const args = await askQuestions(program.questions, io);
    return args === null ? null : { script: program.script, args };
  }
}
