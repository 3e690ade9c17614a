// The script edge: YAML scenarios (docs/scripts.md) run against a fresh engine, feeding real Telegram updates
// through the same bot users talk to, in process. The first failed expectation stops the script with a
// readable account of what was sent, what was expected and what the bot said.
import { readFileSync } from "node:fs";
import type { Config } from "../../config.ts";
import { silentLogger } from "../../log.ts";
import type { Relay } from "../../relay.types.ts";
import { openHandle } from "../../store/sealed.ts";
import { buildTelegramEdge, type TelegramEdge } from "../telegram/bot.ts";
import { isRefusalText, notice } from "../telegram/render.ts";
import { InProcessTelegram, type Outgoing } from "../chat/transport.ts";
import { matches, overridesOf, parseScript, type Script, type Step } from "./format.ts";
import { regtestEngine, type MakeEngine, type ScriptEngineParts } from "./engine.ts";

export { matches, parseScript, type Script, type Step } from "./format.ts";
export { regtestEngine, type MakeEngine, type ScriptEngine, type ScriptEngineParts } from "./engine.ts";

export interface RunOptions {
  /** Where ✓/✗ lines and failures go (default: stdout). */
  output?: NodeJS.WritableStream;
  /** A fresh engine per script (default: a fresh regtest node and engine). */
  makeEngine?: MakeEngine;
}

export class ScriptFailure extends Error {}

const NOTIFIED_TIMEOUT_MS = 15_000;
/** The edge's settings when the engine does not say: Telegram's own limits, as users meet them. */
const EDGE_DEFAULTS: Pick<Config, "telegram"> = {
  telegram: { apiRoot: "https://api.telegram.org", mode: "polling", webhookHost: "127.0.0.1", webhookUrl: "", webhookPort: 0, commandsPerMinute: 30 },
};

/** Runs each file; prints one line per script and `N passed, N failed`. Returns the exit code. */
export async function runScripts(files: string[], o: RunOptions = {}): Promise<number> {
  const out = o.output ?? process.stdout;
  if (files.length === 0) {
    out.write("usage: runigun simulate FILE.yaml [FILE.yaml …]\n");
    return 2;
  }
  let failed = 0;
  for (const file of files) {
    let script: Script;
    try {
      script = parseScript(readFileSync(file, "utf8"));
    } catch (e) {
      out.write(`✗ ${file}: ${(e as Error).message}\n`);
      failed++;
      continue;
    }
    const started = Date.now();
    try {
      await runScript(script, o);
      out.write(`✓ ${script.name} (${script.steps.length} steps, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    } catch (e) {
      failed++;
      const detail = e instanceof ScriptFailure ? e.message : `    ${(e as Error).stack ?? String(e)}`;
      out.write(`✗ ${script.name} (${file})\n${detail}\n`);
    }
  }
  out.write(`${files.length - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

/** Runs one parsed script; throws a ScriptFailure at the first failed step. */
export async function runScript(script: Script, o: RunOptions = {}): Promise<void> {
  const engine = await (o.makeEngine ?? regtestEngine)(overridesOf(script.config));
  const telegram = new InProcessTelegram();
  const inbox = new Inbox(telegram);
  let edge: TelegramEdge | undefined;
  const boot = async (p: ScriptEngineParts) => {
    inbox.watch(p.relay, p.handleKey); // before the edge subscribes, so each notice is known before it is sent
    edge = buildTelegramEdge({
      token: "0:script", config: p.config ?? EDGE_DEFAULTS, relay: p.relay, identity: p.identity, handleKey: p.handleKey,
      log: p.log ?? silentLogger, transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual",
    });
    await edge.start();
  };
  const vars: Record<string, string> = {};
  try {
    await boot(engine);
    for (const [i, step] of script.steps.entries()) {
      const where = `  step ${i + 1}: ${JSON.stringify(step)}`;
      const sub = (s: string) => s.replace(/\$\{(\w+)\}/g, (_, k: string) => {
        if (!(k in vars)) throw new ScriptFailure(`${where}\n    \${${k}} is not captured yet`);
        return vars[k]!;
      });
      let sent = "";
      try {
        if (step.chain) {
          const c = step.chain;
          if (c.address) vars[c.address] = await engine.chain.address();
          if (c.fund) await engine.chain.fund(sub(c.fund), sub(String(c.btc)));
          if (c.mine) await engine.chain.mine(c.mine);
          continue;
        }
        if (step.restart) {
          await edge!.stop();
          await boot(await engine.restart());
          continue;
        }
        const user = step.user!;
        let text: string;
        if (step.notified !== undefined) {
          sent = `(waiting for a notification to ${user})`;
          text = await inbox.waitFor(telegram.chatOf(user), sub(step.notified), step.timeout_ms ?? NOTIFIED_TIMEOUT_MS);
        } else {
          const update = step.press !== undefined
            ? telegram.press(user, sub(step.press))
            : telegram.message(user, sub(step.says!), { ...(step.group ? { group: step.group } : {}), ...(step.reply_to ? { replyTo: step.reply_to } : {}) });
          sent = step.press !== undefined ? `${user} presses ${JSON.stringify(sub(step.press))}` : `${user}${step.group ? ` in ${step.group}` : ""} says ${JSON.stringify(update.message?.text)}`;
          inbox.takeReplies();
          await edge!.bot.handleUpdate(update);
          // The step's own answers are all in once handleUpdate returns; notices are set apart by the inbox.
          const chat = step.group ? telegram.groupOf(step.group) : telegram.chatOf(user);
          text = inbox.takeReplies().filter((m) => m.chatId === chat).map((m) => m.text).join("\n");
        }
        check(step, text, sub, vars, `${where}\n    ${sent}`);
      } catch (e) {
        const logged = engine.warnings?.() ?? [];
        const said = logged.length ? `\n    the engine logged:\n${logged.map((l) => `      | ${l}`).join("\n")}` : "";
        if (e instanceof ScriptFailure) throw new ScriptFailure(e.message + said);
        throw new ScriptFailure(`${where}${sent ? `\n    ${sent}` : ""}\n    ${(e as Error).message}${said}`);
      }
    }
  } finally {
    inbox.close();
    await edge?.stop().catch(() => undefined);
    await engine.stop();
  }
}

function check(step: Step, text: string, sub: (s: string) => string, vars: Record<string, string>, where: string): void {
  const fail = (what: string, hint?: string) => {
    const said = text.split("\n").map((l) => `      | ${l}`).join("\n");
    throw new ScriptFailure(`${where}\n    expected ${what}\n    the bot said:\n${text ? said : "      (nothing)"}${hint ? `\n${hint}` : ""}`);
  };
  if (step.expect !== undefined) {
    const expect = sub(step.expect);
    if (!matches(expect, text)) fail(JSON.stringify(expect), closest(expect, text));
  }
  if (step.expect_not !== undefined) {
    const expect = sub(step.expect_not);
    if (matches(expect, text)) fail(`not ${JSON.stringify(expect)}`);
  }
  if (step.expect_error !== undefined) {
    const expect = sub(step.expect_error);
    if (!isRefusalText(text) || !matches(expect, text)) fail(`a refusal matching ${JSON.stringify(expect)}`);
  }
  for (const [name, pattern] of Object.entries(step.capture ?? {})) {
    const m = new RegExp(sub(pattern)).exec(text);
    if (!m) fail(`to capture ${name} with /${pattern}/`);
    vars[name] = m![1] ?? m![0];
  }
}

/** For a plain-text expectation: the bot's line that comes closest, as a two-line diff. */
function closest(expect: string, text: string): string | undefined {
  if (expect.startsWith("/") || !text) return undefined;
  const common = (a: string, b: string) => {
    let n = 0;
    while (n < a.length && n < b.length && a[n] === b[n]) n++;
    return n;
  };
  let best = "";
  let score = 0;
  for (const line of text.split("\n")) {
    for (let start = 0; start < line.length; start++) {
      const s = common(expect, line.slice(start));
      if (s > score) [best, score] = [line.slice(start, start + 120), s];
    }
  }
  return score >= 3 ? `    closest:\n      - ${expect}\n      + ${best}` : undefined;
}

/**
 * Everything the bot sends, split in two: notifications (a message whose text is the rendering of a notice the
 * relay just addressed to that chat) wait in a per-chat inbox for `notified:`; the rest are a step's replies.
 */
class Inbox {
  readonly #off: () => void;
  #unwatch: (() => void) | undefined;
  #announced: Array<{ chatId: number; text: string }> = [];
  readonly #notices = new Map<number, Outgoing[]>();
  #replies: Outgoing[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(telegram: InProcessTelegram) {
    this.#off = telegram.onOutgoing((m) => {
      const i = m.kind === "message" ? this.#announced.findIndex((a) => a.chatId === m.chatId && a.text === m.text) : -1;
      if (i < 0) {
        this.#replies.push(m);
        return;
      }
      this.#announced.splice(i, 1);
      this.#notices.set(m.chatId, [...(this.#notices.get(m.chatId) ?? []), m]);
      for (const w of this.#waiters) w();
    });
  }

  watch(relay: Relay, handleKey: Uint8Array): void {
    this.#unwatch?.();
    // An observer: the notices held while nothing listened go to the edge (which sends them) and to this inbox together.
    this.#unwatch = relay.onNotification((n) => {
      if (!n.chatHandle) return;
      try {
        const { chatId } = openHandle<{ chatId: number }>(handleKey, n.chatHandle);
        this.#announced.push({ chatId, text: notice(n.notice) });
        if (this.#announced.length > 10_000) this.#announced.shift();
      } catch {
        // Not a handle of this edge: the edge will not send it either.
      }
    }, { observer: true });
  }

  takeReplies(): Outgoing[] {
    const r = this.#replies;
    this.#replies = [];
    return r;
  }

  /** The first unread notification to `chatId` matching `expect` (already arrived, or within the timeout); marks it read. */
  waitFor(chatId: number, expect: string, timeoutMs: number): Promise<string> {
    const take = () => {
      const list = this.#notices.get(chatId) ?? [];
      const i = list.findIndex((m) => matches(expect, m.text));
      return i < 0 ? undefined : list.splice(i, 1)[0]!.text;
    };
    const now = take();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const waiter = () => {
        const hit = take();
        if (hit === undefined) return;
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const unread = (this.#notices.get(chatId) ?? []).map((m) => m.text);
        reject(new Error(`no notification matching ${JSON.stringify(expect)} within ${timeoutMs} ms` +
          (unread.length ? `\n    unread notifications:\n${unread.map((t) => `      | ${t}`).join("\n")}` : "")));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    this.#off();
    this.#unwatch?.();
  }
}
