// The local chat driven through streams, as a newcomer would type it: the same grammY bot, its API calls
// answered in process, buttons as numbers, and :fund / :mine moving a real regtest chain.
import t from "tap";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { PassThrough } from "node:stream";
import { startTestEngine, testLog, type TestEngine } from "../support/engine.ts";
import { buildTelegramEdge } from "../../src/edges/telegram/bot.ts";
import { startLocalChat } from "../../src/edges/chat/local-chat.ts";
import { InProcessTelegram, LOCAL_BOT } from "../../src/edges/chat/transport.ts";
import { deriveCommandId } from "../../src/edges/telegram/context.ts";
import { runigun, runigunBin } from "../support/cli.ts";

/** The Telegram edge in manual mode, a local chat on streams in front of it, and what it has printed so far. */
function chatOn(te: TestEngine, userId: number | undefined, chain?: Parameters<typeof startLocalChat>[0]["chain"]) {
  const edge = buildTelegramEdge({
    token: "0:local", config: te.config, relay: te.engine.relay, identity: te.identity, handleKey: te.handleKey, log: testLog(),
    botInfo: LOCAL_BOT, mode: "manual",
  });
  const input = new PassThrough();
  const output = new PassThrough();
  const out = { text: "" };
  output.on("data", (d: Buffer) => (out.text += d.toString()));
  const chat = startLocalChat({ bot: edge.bot, input, output, ...(userId !== undefined ? { userId } : {}), ...(chain ? { chain } : {}) });
  return { edge, input, output, out, chat };
}

t.test("deposit → confirm → withdraw in the terminal chat", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const { edge, input, output, out, chat } = chatOn(te, 424242, {
    mine: async (n) => (await te.mine(n), await te.engine.payouts.sync()), fund: (a, b) => te.node.fund(a, b),
  });
  await edge.start(); // after the chat installed its in-process Telegram: setMyCommands stays local too
  t.teardown(() => edge.stop());

  /** Types a line (if any) and waits until everything printed since `from` matches `expect` (bounded, event-driven). */
  const type = (line: string | undefined, expect: RegExp, timeoutMs = 20_000, from = out.text.length) => {
    if (line !== undefined) input.write(line + "\n");
    return new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = expect.exec(out.text.slice(from));
        if (!m) return;
        clearTimeout(timer);
        output.off("data", check);
        resolve(m[1] ?? m[0]);
      };
      const timer = setTimeout(() => {
        output.off("data", check);
        reject(new Error(`after ${JSON.stringify(line)}: no ${expect} in:\n${out.text.slice(from)}`));
      }, timeoutMs);
      output.on("data", check);
      check();
    });
  };

  t.match(out.text, /:fund <address> <btc>/, "the local commands are explained first");
  await type("/start", /Your wallet is ready/);
  const address = await type("/deposit", /\[QR code image for (bcrt1[0-9a-z]+)\]/);
  await type("/deposit", /Send bitcoin to:\n\s*bcrt1/);
  await type(`:fund ${address} 0.2`, /\(sent 0\.2 BTC to bcrt1/);
  await type(":mine 1", /Deposit confirmed: 0\.2 BTC/);
  await type("/balance", /Available: 0\.2 BTC/);
  const ext = await te.node.outsideAddress();
  await type(`/withdraw ${ext} 0.05`, /\[1\] Confirm {2}\[2\] Cancel/);
  await type("3", /\(choose 1 to 2\)/);
  await type("1", /\(bot\) Confirmed[\s\S]*bot \(edited\)> Withdrawal of 0\.05 BTC/);
  await type("1", /don't understand/, 5_000); // the edit took the buttons away: "1" is just text now
  // The payout is broadcast when the payout service next runs (at the latest after a block), then confirmed by one.
  const mark = out.text.length;
  await type(":mine 1", /mined 1 block/);
  await type(undefined, /📤 Withdrawal of 0\.05 BTC .* broadcast/, 20_000, mark);
  await type(":mine 1", /✅ Withdrawal of 0\.05 BTC .*confirmed/, 20_000, mark);
  await type(":mine lots", /usage: :mine/);
  await type(":fund", /usage: :fund/);
  await type(":bogus", /unknown: :bogus/);
  await type(":help", /:quit/);
  input.write(":quit\n");
  t.equal(await chat.done, "quit", "quit ends the chat (and the run: start ends on \"quit\" even without a terminal)");
});

t.test("piped input: every line is answered before the chat ends, and the end of input is not a :quit", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { edge, input, out, chat } = chatOn(te, 434343);
  await edge.start();
  t.teardown(() => edge.stop());
  // All lines at once, then the end of input — as `printf '/start\n/balance\n' | npm start` does.
  input.end("/start\n/balance\n/history\n");
  t.equal(await chat.done, "eof", "the input ended (no :quit): start keeps the engine serving");
  t.match(out.text, /Welcome|wallet/i, "/start was answered");
  t.match(out.text, /0(\.0+)? BTC/, "/balance was answered");
  t.match(out.text, /No transactions yet/, "/history was answered, after the input had already ended");
});

t.test("a restarted local chat's commands are new ones: message ids go on past the last run's", async (t) => {
  const started = Date.now();
  const first = new InProcessTelegram();
  const before = [first.message("ann", "/balance"), first.message("ann", "/cheque 1000 sats")].map((u) => u.message!);
  const second = new InProcessTelegram();
  const after = second.message("ann", "/cheque 1000 sats").message!;
  t.ok(before[0]!.message_id >= started * 1000, "they start at the clock (µs), so a run after a restart starts past the last");
  t.ok(after.message_id > before[1]!.message_id, "and past every id an earlier transport of this process gave");
  t.equal(after.chat.id, before[1]!.chat.id, "the same person in the same chat");
  const key = Buffer.alloc(32, 1);
  t.not(deriveCommandId(key, after.chat.id, after.message_id), deriveCommandId(key, before[1]!.chat.id, before[1]!.message_id), "so the same command typed again is a new command");
});

t.test("local people have ids no Telegram account can have: past 2^52, and the wallet works with them", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { edge, input, out, chat } = chatOn(te, undefined);
  await edge.start();
  t.teardown(() => edge.stop());
  input.end("/start\n/balance\n");
  t.equal(await chat.done, "eof");
  t.match(out.text, /Your wallet is ready/, "the identity code takes the id: /start made a wallet");
  t.match(out.text, /Available: 0(\.0+)? BTC/, "and /balance reads it");
  // Real Telegram ids fit in 52 bits: anything at or below 2^52 may be a real person's wallet.
  const you = chat.telegram.chatOf("you");
  const other = chat.telegram.chatOf("bea");
  for (const [name, id] of [["you", you], ["bea", other]] as const) t.ok(id > 2 ** 52 && Number.isSafeInteger(id), `${name}'s id is past 52 bits and a safe integer`);
  t.not(you, other, "several local people still get ids of their own");
  t.ok(new InProcessTelegram().chatOf("you") > 2 ** 52, "the script edge's transport too");
});

t.test("start without a token off regtest: refused before anything starts, naming RUNIGUN_TELEGRAM_TOKEN", async (t) => {
  for (const network of ["signet", "mainnet"]) {
    const dir = t.testdir();
    const r = await runigun(["start"], { RUNIGUN_NETWORK: network, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "", RUNIGUN_TELEGRAM_TOKEN_FILE: "" });
    t.equal(r.code, 1, r.out);
    t.match(r.out, new RegExp(`runigun start: the local chat .* runs on regtest only: on ${network}, set RUNIGUN_TELEGRAM_TOKEN`), network);
    t.notMatch(r.out, /at .*\.ts:\d+/, "a sentence, not a stack trace");
    t.same(readdirSync(dir), [], "nothing was started or written (no engine log, no store)");
  }
});

t.test("start without a token on regtest (the default, as on a fresh machine) still opens the local chat", { timeout: 120_000 }, async (t) => {
  const dir = t.testdir();
  const env: NodeJS.ProcessEnv = {
    ...process.env, RUNIGUN_DATA_DIR: dir, RUNIGUN_TELEGRAM_TOKEN: "", RUNIGUN_TELEGRAM_TOKEN_FILE: "", RUNIGUN_ADMIN_ENABLED: "false",
    RUNIGUN_IDENTITY_MEMORY_KI_B: "1024", RUNIGUN_IDENTITY_TIME_COST: "1", RUNIGUN_LOG_LEVEL: "fatal",
  };
  delete env.RUNIGUN_NETWORK; // the default network, as `npm start` on a fresh machine has it
  const run = spawn(process.execPath, [runigunBin, "start"], { env, stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise<number | null>((r) => run.once("exit", r));
  t.teardown(() => void run.kill("SIGKILL"));
  let out = "";
  run.stderr.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    run.stdout.on("data", (d: Buffer) => (out += d.toString(), /Your wallet is ready/.test(out) && resolve()));
    run.once("exit", (code) => reject(new Error(`start exited (${code}): ${out}`)));
    run.stdin.write("/start\n");
  });
  t.match(out, /RuniGun on regtest[\s\S]*local chat: {2}this terminal/);
  run.stdin.end(":quit\n");
  t.equal(await exited, 0, "and :quit stops it cleanly");
});
