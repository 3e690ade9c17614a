// The local chat: what `npm start` offers without a bot token. Typed lines become real Telegram updates for
// the same grammY bot that serves Telegram; its answers print here, with inline buttons as numbered choices.
// `:fund` and `:mine` drive the regtest chain so deposit → confirm → withdraw takes two minutes.
import { createInterface } from "node:readline";
import type { Bot } from "grammy";
import type { InProcessTelegram, Outgoing } from "./transport.ts";

export interface LocalChatOptions {
  bot: Bot<never> | Bot<any>;
  telegram: InProcessTelegram;
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** The regtest chain, when there is one. */
  chain?: { mine(n: number): Promise<void>; fund(address: string, btc: string): Promise<string> };
  user?: string;
  onQuit?: () => void;
}

const HELP = `Type what you would send the bot: /start, /deposit, /balance, /withdraw <address> <amount>, /history, /help.
Buttons show as [1] [2]…: type the number to press one.
:fund <address> <btc>   an outside wallet pays that address (regtest)
:mine <n>               mine n blocks (regtest)
:quit                   stop everything`;

export function startLocalChat(o: LocalChatOptions): { close(): void; done: Promise<void> } {
  const user = o.user ?? "you";
  const chatId = o.telegram.chatOf(user);
  const print = (s: string) => o.output.write(s.endsWith("\n") ? s : s + "\n");
  let lastButtons: Outgoing | undefined;
  const off = o.telegram.onOutgoing((m) => {
    if (m.chatId !== chatId) return;
    const prefix = m.kind === "answer" ? "  (bot) " : m.kind === "edit" ? "bot (edited)> " : "bot> ";
    print(prefix + m.text.split("\n").join("\n     "));
    if (m.buttons.length) {
      lastButtons = m;
      print("     " + m.buttons.map((b, i) => `[${i + 1}] ${b.text}`).join("  "));
    }
  });
  const rl = createInterface({ input: o.input, output: o.output, prompt: "you> ", terminal: false });
  let closed = false;
  const done = new Promise<void>((resolve) => rl.on("close", () => {
    closed = true;
    off();
    resolve();
  }));
  const send = async (line: string) => {
    const text = line.trim();
    if (!text) return;
    if (text === ":quit" || text === ":q") {
      rl.close();
      o.onQuit?.();
      return;
    }
    if (text === ":help") return print(HELP);
    if (text.startsWith(":mine")) {
      if (!o.chain) return print("(no regtest chain in this mode)");
      const n = Number(text.split(/\s+/)[1] ?? "1");
      if (!Number.isInteger(n) || n < 1 || n > 1000) return print("usage: :mine <1..1000>");
      await o.chain.mine(n);
      return print(`(mined ${n} block${n === 1 ? "" : "s"})`);
    }
    if (text.startsWith(":fund")) {
      if (!o.chain) return print("(no regtest chain in this mode)");
      const [, address, btc] = text.split(/\s+/);
      if (!address || !btc) return print("usage: :fund <address> <btc>");
      try {
        const txid = await o.chain.fund(address, btc);
        return print(`(sent ${btc} BTC to ${address}: ${txid}; :mine 1 to confirm)`);
      } catch (e) {
        return print(`(could not fund: ${(e as Error).message})`);
      }
    }
    if (/^\d{1,2}$/.test(text) && lastButtons) {
      return o.bot.handleUpdate(o.telegram.press(user, text));
    }
    return o.bot.handleUpdate(o.telegram.message(user, text));
  };
  // One line at a time, in order, like a person typing.
  let queue = Promise.resolve();
  rl.on("line", (line) => {
    queue = queue.then(() => send(line)).catch((e: unknown) => print(`(error: ${(e as Error).message})`)).then(() => {
      if (!closed) rl.prompt();
    });
  });
  print(HELP);
  rl.prompt();
  return { close: () => rl.close(), done };
}
