// What the local chat tells the person at the terminal besides the bot's answers: the engine's alerts (its log goes to
// a file, and the chat went quiet while deposits were stalled), and an outside address to withdraw to (one's own
// deposit address is refused, and the chat offered no other).
import t from "tap";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { Bot } from "grammy";
import { pino } from "pino";
import { alertEcho, startLocalChat } from "../../src/edges/chat/local-chat.ts";
import { LOCAL_BOT } from "../../src/edges/chat/transport.ts";
import { runigunBin } from "../support/cli.ts";

/** Resolves with the first match of `re` in what `read()` returns, checked at each chunk `stream` gives. */
function waitFor(stream: NodeJS.ReadableStream, read: () => string, re: RegExp, what: string, ms = 60_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(read());
      if (!m) return;
      clearTimeout(timer);
      stream.off("data", check);
      resolve(m);
    };
    const timer = setTimeout(() => (stream.off("data", check), reject(new Error(`no ${what} (${re}) in:\n${read()}`))), ms);
    stream.on("data", check);
    check();
  });
}

t.test("alert lines reach the chat: the message only, on a line of its own, the prompt after it", async (t) => {
  const input = new PassThrough();
  const output = new PassThrough();
  let out = "";
  output.on("data", (d: Buffer) => (out += d.toString()));
  const chat = startLocalChat({ bot: new Bot("0:local", { botInfo: LOCAL_BOT }), input, output });
  t.teardown(() => chat.close());
  // As runAllInOne builds it: the log file and the chat, side by side.
  const file: string[] = [];
  const log = pino({ level: "info" }, pino.multistream([
    { level: "trace", stream: { write: (l: string) => void file.push(l) } },
    { level: "warn", stream: alertEcho((line) => chat.say(line)) },
  ]));
  t.ok(out.endsWith("you> "), "the prompt is showing");
  log.error({ alert: true, userKey: "uk-not-for-the-terminal", cursorHeight: 130, tipHeight: 128 }, "deposit scans stalled: the node does not know the deposit cursor's block");
  log.warn({ alert: true, toKeyId: 2 }, "a master key rotation was cut short");
  log.error({ err: "boom" }, "an error that is not an alert");
  log.info({ alert: true }, "below the alert levels: never written as one");
  t.match(out, /you> \n\(alert\) deposit scans stalled: the node does not know the deposit cursor's block\nyou> \n\(alert\) a master key rotation was cut short\nyou> $/, "each alert on its own line, the prompt again after it");
  t.notMatch(out, /uk-not-for-the-terminal|130|toKeyId|not an alert|below the alert levels/, "no field of the line, no other line");
  t.equal(file.length, 4, "the log file still has every line");
  chat.say("(alert) " + "x".repeat(10));
  t.ok(out.endsWith("(alert) xxxxxxxxxx\nyou> "), "a line said at the prompt: on a line of its own, the prompt again");
});

t.test("runigun start's local chat: :address gives an outside address, and the engine's alerts are said in the chat", { timeout: 180_000 }, async (t) => {
  const dir = t.testdir();
  const env: NodeJS.ProcessEnv = {
    ...process.env, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "", RUNIGUN_TELEGRAM_TOKEN_FILE: "", RUNIGUN_ADMIN_ENABLED: "false",
    RUNIGUN_NETWORK: "regtest", RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "info",
  };
  const run = spawn(process.execPath, [runigunBin, "start"], { env, stdio: ["pipe", "pipe", "pipe"] });
  t.teardown(() => void run.kill("SIGKILL"));
  let out = "";
  run.stdout.on("data", (d: Buffer) => (out += d.toString()));
  run.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const read = () => out;
  await waitFor(run.stdout, read, /local chat: {2}this terminal[\s\S]*you> /, "the chat");
  t.match(out, /:address +a fresh address of the outside wallet/, "the help lists :address");
  run.stdin.write("/start\n/deposit\n");
  const [, own] = await waitFor(run.stdout, read, /\[QR code image for (bcrt1[0-9a-z]+)\]/, "a deposit address");
  run.stdin.write(":address\n");
  const [, outside] = await waitFor(run.stdout, read, /\(an outside address, not yours: \/withdraw (bcrt1[0-9a-z]+) <amount> sends there\)/, "an outside address");
  t.not(outside, own, "not the person's own deposit address");
  // The engine's bitcoind gone behind its back: its node actor raises an alert, which used to reach only engine.log.
  const pid = Number(readFileSync(join(dir, "bitcoind", "regtest", "bitcoind.pid"), "utf8").trim());
  process.kill(pid, "SIGKILL");
  await waitFor(run.stdout, read, /\n\(alert\) bitcoind is unavailable; money-moving work waits for it\n/, "the alert in the chat", 30_000);
  t.match(readFileSync(join(dir, "engine.log"), "utf8"), /"alert":true.*bitcoind is unavailable/, "and in the log file, with its fields");
});
