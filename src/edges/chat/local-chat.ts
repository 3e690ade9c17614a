// The local chat: what `npm start` offers without a bot token. Typed lines become real Telegram updates for
// the same grammY bot that serves Telegram; its answers print here, with inline buttons as numbered choices.
// `:fund` and `:mine` drive the regtest chain so deposit → confirm → withdraw takes two minutes; `:address` gives an
// outside address to withdraw to. The engine's alert lines are said here too (alertEcho), not only in its log file.
import { createInterface } from "node:readline";
import type { Bot, Context } from "grammy";
import { InProcessTelegram, LOCAL_BOT, type Outgoing } from "./transport.ts";

export interface LocalChain {
  mine(n: number): Promise<unknown>;
  /** An outside wallet pays `address` (BTC as decimal text); may return the txid. */
  fund(address: string, btc: string): Promise<unknown>;
  /** A fresh address of the outside wallet: somewhere to withdraw to that is not the engine's. */
  address?(): Promise<string>;
}

export interface LocalChatOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the edge's bot, whatever its context flavour
  bot: Bot<any>;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /**
   * The in-process Telegram the bot was built with (`buildTelegramEdge({ transport: telegram.transformer })`).
   * Without it, one is made and installed on `bot.api` as an API transformer, so nothing leaves the process.
   */
  telegram?: InProcessTelegram;
  /** The regtest chain, when there is one. */
  chain?: LocalChain;
  /** The person typing: a name (default "you") and, optionally, their Telegram id (default: one past 2^52, which no Telegram account has). */
  user?: string;
  userId?: number;
  onQuit?: () => void;
}

export interface LocalChat {
  telegram: InProcessTelegram;
  close(): void;
  /** Resolves, once every line read has been answered, when the person types :quit or the input ends. */
  done: Promise<"quit" | "eof">;
  /** Resolves when every line typed so far has been handled (tests use it instead of sleeping). */
  idle(): Promise<void>;
  /** Says a line that is not part of the conversation (an alert), on a line of its own, the prompt after it again. */
  say(line: string): void;
}

export const LOCAL_HELP = `Type what you would send the bot: /start, /deposit, /balance, /withdraw <address> <amount>, /history, /help.
Buttons show as [1] [2]…: type the number to press one.
:fund <address> <btc>   an outside wallet pays that address (regtest)
:mine <n>               mine n blocks (regtest)
:address                a fresh address of the outside wallet, to withdraw to (regtest)
:help                   this text
:quit                   stop everything`;

export function startLocalChat(o: LocalChatOptions): LocalChat {
  const telegram = o.telegram ?? installInProcessTelegram(o.bot);
  const user = o.user ?? "you";
  const chatId = telegram.person(user, o.userId).id;
  /** Whether the prompt is the last thing written (a line said then starts on a line of its own). */
  let prompting = false;
  const print = (s: string) => {
    prompting = false;
    o.output.write(s.endsWith("\n") ? s : s + "\n");
  };
  const prompt = () => {
    rl.prompt();
    prompting = true;
  };
  /** The message whose buttons the numbers press: set by the bot, cleared by the next thing typed. */
  let choices: Outgoing | undefined;
  const off = telegram.onOutgoing((m) => {
    if (m.chatId !== chatId) return;
    const prefix = m.kind === "answer" ? "  (bot) " : m.kind === "edit" ? "bot (edited)> " : "bot> ";
    print(prefix + m.text.split("\n").join("\n     "));
    if (m.buttons.length) {
      choices = m;
      print("     " + m.buttons.map((b, i) => `[${i + 1}] ${b.text}`).join("  "));
    } else if (m.kind === "edit" && choices?.messageId === m.messageId) {
      choices = undefined; // the buttons were taken away with the edit
    }
  });
  const rl = createInterface({ input: o.input, output: o.output, prompt: "you> ", terminal: false });
  let closed = false;
  let quit = false;
  // The end of input (piped lines read to the end) comes before their answers: finish the queue first.
  const done = new Promise<"quit" | "eof">((resolve) => rl.on("close", () => {
    closed = true;
    void queue.then(() => {
      off();
      resolve(quit ? "quit" : "eof");
    });
  }));

  const chainCommand = async (text: string) => {
    if (!o.chain) return print("(no regtest chain in this mode)");
    const [cmd, a, b] = text.split(/\s+/);
    if (cmd === ":address") {
      if (!o.chain.address) return print("(no outside wallet in this mode)");
      return print(`(an outside address, not yours: /withdraw ${await o.chain.address()} <amount> sends there)`);
    }
    if (cmd === ":mine") {
      const n = Number(a ?? "1");
      if (!Number.isInteger(n) || n < 1 || n > 1000) return print("usage: :mine <1..1000>");
      await o.chain.mine(n);
      return print(`(mined ${n} block${n === 1 ? "" : "s"})`);
    }
    if (!a || !b || !/^\d{1,8}(\.\d{1,8})?$/.test(b)) return print("usage: :fund <address> <btc>, e.g. :fund bcrt1q… 0.5");
    try {
      const txid = await o.chain.fund(a, b);
      return print(`(sent ${b} BTC to ${a}${typeof txid === "string" ? `: ${txid}` : ""}; :mine 1 to confirm)`);
    } catch (e) {
      return print(`(could not fund: ${(e as Error).message})`);
    }
  };

  const handle = async (line: string) => {
    const text = line.trim();
    if (!text) return;
    if (text === ":quit" || text === ":q") {
      quit = true;
      rl.close();
      o.onQuit?.();
      return;
    }
    if (text === ":help") return print(LOCAL_HELP);
    if (/^:(mine|fund|address)\b/.test(text)) return chainCommand(text);
    if (text.startsWith(":")) return print(`(unknown: ${text.split(/\s/)[0]}; :help lists the local commands)`);
    if (/^\d{1,2}$/.test(text) && choices) {
      const n = Number(text);
      if (n < 1 || n > choices.buttons.length) return print(`(choose 1 to ${choices.buttons.length})`);
      return o.bot.handleUpdate(telegram.press(user, text, choices.messageId));
    }
    choices = undefined;
    return o.bot.handleUpdate(telegram.message(user, text));
  };

  // One line at a time, in order, like a person typing.
  let queue = Promise.resolve();
  rl.on("line", (line) => {
    queue = queue.then(() => handle(line)).catch((e: unknown) => print(`(error: ${(e as Error).message})`)).then(() => {
      if (!closed) prompt();
    });
  });
  // An error reading the terminal (EIO once it is closed) ends the input, as the end of input does.
  rl.on("error", () => rl.close());
  print(LOCAL_HELP);
  prompt();
  const say = (line: string) => {
    const again = prompting && !closed;
    if (prompting) o.output.write("\n");
    print(line);
    if (again) prompt();
  };
  return { telegram, close: () => rl.close(), done, idle: () => queue, say };
}

/**
 * A log destination (for pino.multistream, next to the log file) that passes the engine's alert lines (`alert: true`)
 * to `say` as "(alert) <message>": the message only, one line, never the line's fields (user keys, outpoints) — the
 * log file has those. Without it the local chat just went quiet while, say, deposit scans were stalled.
 */
export function alertEcho(say: (line: string) => void): { write(line: string): void } {
  return {
    write(line: string) {
      if (!line.includes('"alert":true')) return;
      let rec: { alert?: unknown; msg?: unknown };
      try {
        rec = JSON.parse(line) as typeof rec;
      } catch {
        return;
      }
      if (rec.alert !== true || typeof rec.msg !== "string") return;
      const msg = rec.msg.replace(/\s+/g, " ").trim();
      say(`(alert) ${msg.length > 300 ? `${msg.slice(0, 299)}…` : msg}`);
    },
  };
}

/** Answers every API call of `bot` in this process: the outermost transformer, so nothing reaches the network. */
function installInProcessTelegram(bot: Bot<Context>): InProcessTelegram {
  const telegram = new InProcessTelegram(bot.isInited() ? bot.botInfo : LOCAL_BOT);
  bot.api.config.use(telegram.transformer);
  return telegram;
}
