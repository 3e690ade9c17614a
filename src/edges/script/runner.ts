// The script edge: YAML scenarios (docs/scripts.md) run against a fresh regtest node and engine, feeding real
// Telegram updates through the same bot users talk to. The first failed expectation stops the script with
// a readable account of what was sent, what was expected and what the bot said.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { loadConfig, type ConfigFile, type DeepPartial } from "../../config.ts";
import { silentLogger } from "../../log.ts";
import { startEngine, type Running } from "../../app.ts";
import { startRegtest, type RegtestNode } from "../../regtest/harness.ts";
import { buildTelegramEdge, type TelegramEdge } from "../telegram/bot.ts";
import { InProcessTelegram, type Outgoing } from "../chat/transport.ts";

export interface Step {
  user?: string;
  says?: string;
  press?: string;
  notified?: string;
  group?: string;
  reply_to?: string;
  expect?: string;
  expect_not?: string;
  expect_error?: string;
  capture?: Record<string, string>;
  chain?: { fund?: string; btc?: string; mine?: number; address?: string };
  restart?: "engine";
  timeout_ms?: number;
}

export interface Script {
  name: string;
  config?: Record<string, unknown>;
  steps: Step[];
}

export class ScriptFailure extends Error {}

/** Lines that mark a refusal in the bot's words (see edges/telegram/render.ts). */
const REFUSAL = /^(⚠️|💸|⛔|🧊|❓|⌛|⏳|🚪|⏸)/u;

export function matches(expect: string, text: string): boolean {
  const re = /^\/(.*)\/([a-z]*)$/s.exec(expect);
  return re ? new RegExp(re[1]!, re[2]).test(text) : text.includes(expect);
}

/** Shorthands a script may use in `config:` besides full nested keys. */
function overridesOf(c: Record<string, unknown> = {}): DeepPartial<ConfigFile> {
  const { confirmations, batch_window_ms, ...rest } = c;
  const o = rest as DeepPartial<ConfigFile>;
  if (confirmations !== undefined) o.deposits = { ...o.deposits, confirmations: Number(confirmations) };
  if (batch_window_ms !== undefined) o.withdrawals = { ...o.withdrawals, batchWindowMs: Number(batch_window_ms) };
  return o;
}

export async function runScripts(files: string[], o: { output: NodeJS.WritableStream }): Promise<number> {
  if (files.length === 0) {
    o.output.write("usage: runigun simulate FILE.yaml [FILE.yaml …]\n");
    return 2;
  }
  let failed = 0;
  for (const file of files) {
    let script: Script;
    try {
      script = parse(readFileSync(file, "utf8")) as Script;
      if (!script || !Array.isArray(script.steps)) throw new Error("a script needs `name` and a list of `steps`");
    } catch (e) {
      o.output.write(`✗ ${file}: cannot read it: ${(e as Error).message}\n`);
      failed++;
      continue;
    }
    const started = Date.now();
    try {
      await runScript(script, o.output);
      o.output.write(`✓ ${script.name ?? file} (${script.steps.length} steps, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
    } catch (e) {
      failed++;
      o.output.write(`✗ ${script.name ?? file}\n${(e as Error).message}\n`);
    }
  }
  o.output.write(`${files.length - failed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

export async function runScript(script: Script, output?: NodeJS.WritableStream): Promise<void> {
  const node: RegtestNode = await startRegtest();
  const dataDir = mkdtempSync(join(tmpdir(), "runigun-script-"));
  const fromScript = overridesOf(script.config);
  const cfg = loadConfig({
    env: { RUNIGUN_NODE_RPC_PASSWORD: node.password },
    overrides: {
      ...fromScript,
      dataDir,
      node: { ...fromScript.node, managed: false, rpcUrl: node.rpcUrl, rpcUser: node.user, addressPoolSize: 20 },
      deposits: { pollMs: 60_000, ...fromScript.deposits },
      identity: { timeCost: 1, memoryKiB: 1024 },
      store: { sync: false },
    },
  });
  const telegram = new InProcessTelegram();
  let app: Running | undefined;
  let edge: TelegramEdge | undefined;
  const boot = async () => {
    app = await startEngine(cfg, silentLogger);
    edge = buildTelegramEdge({ token: "0:script", config: cfg, relay: app.engine.relay, identity: app.identity, handleKey: app.handleKey, log: silentLogger, transport: telegram.transformer, botInfo: telegram.botInfo, mode: "manual" });
    await edge.start();
  };
  const vars: Record<string, string> = {};
  /** Per user: how far into the bot's output `notified:` has already looked, so old messages never match twice. */
  const seenUpTo = new Map<number, number>();
  const sub = (s: string) => s.replace(/\$\{(\w+)\}/g, (_, k: string) => {
    if (!(k in vars)) throw new ScriptFailure(`\${${k}} is not captured yet`);
    return vars[k]!;
  });
  try {
    await node.ensureMatureCoins();
    await boot();
    for (const [i, step] of script.steps.entries()) {
      const where = `  step ${i + 1}: ${JSON.stringify(step)}`;
      const said: Outgoing[] = [];
      const off = telegram.onOutgoing((m) => said.push(m));
      try {
        if (step.chain) {
          const c = step.chain;
          if (c.address) vars[c.address] = await node.outsideAddress();
          if (c.fund) await node.fund(sub(c.fund), String(c.btc ?? "0.1"));
          if (c.mine) {
            await node.mine(Number(c.mine));
            await app!.engine.watcher.poke();
          }
          continue;
        }
        if (step.restart) {
          // The engine dies where it stands (nothing flushed on purpose) and starts again on the same data.
          await edge!.stop();
          app!.engine.watcher.stop();
          app!.engine.registry.close();
          app!.engine.system.shutdown();
          await app!.engine.storage.store.close();
          await app!.identity.close();
          await boot();
          continue;
        }
        if (!step.user) throw new ScriptFailure(`${where}\n    a step needs user:, chain: or restart:`);
        let text: string;
        if (step.notified !== undefined) {
          const chat = telegram.chatOf(step.user);
          text = await waitFor(telegram, chat, sub(step.notified), step.timeout_ms ?? 15_000, seenUpTo.get(chat) ?? 0);
          seenUpTo.set(chat, telegram.sent);
        } else {
          const update = step.press !== undefined
            ? telegram.press(step.user, sub(step.press))
            : telegram.message(step.user, sub(step.says ?? ""), { ...(step.group ? { group: step.group } : {}), ...(step.reply_to ? { replyTo: step.reply_to } : {}) });
          await edge!.bot.handleUpdate(update);
          // Notifications triggered by this step arrive asynchronously; the step's own answers are already in.
          const chat = step.group ? undefined : telegram.chatOf(step.user);
          text = said.filter((m) => chat === undefined || m.chatId === chat || m.kind === "answer").map((m) => m.text).join("\n");
        }
        const fail = (what: string) => {
          throw new ScriptFailure(`${where}\n    expected ${what}\n    the bot said:\n${text.split("\n").map((l) => `      | ${l}`).join("\n") || "      (nothing)"}`);
        };
        if (step.expect !== undefined && !matches(sub(step.expect), text)) fail(`${JSON.stringify(step.expect)}`);
        if (step.expect_not !== undefined && matches(sub(step.expect_not), text)) fail(`not ${JSON.stringify(step.expect_not)}`);
        if (step.expect_error !== undefined && (!REFUSAL.test(text.trim()) || !matches(sub(step.expect_error), text))) fail(`a refusal with ${JSON.stringify(step.expect_error)}`);
        for (const [name, pattern] of Object.entries(step.capture ?? {})) {
          const m = new RegExp(pattern).exec(text);
          if (!m) fail(`to capture ${name} with /${pattern}/`);
          vars[name] = m![1] ?? m![0];
        }
        output?.write("");
      } finally {
        off();
      }
    }
  } finally {
    await edge?.stop().catch(() => undefined);
    await app?.stop().catch(() => undefined);
    await node.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Waits (bounded, event-driven) for a notification to `chatId` matching `expect`: a new message (not an
 * edit or a button answer) sent after position `from` of the bot's output.
 */
function waitFor(telegram: InProcessTelegram, chatId: number, expect: string, timeoutMs: number, from: number): Promise<string> {
  const isHit = (m: Outgoing) => m.chatId === chatId && m.kind === "message" && matches(expect, m.text);
  const hit = telegram.since(from).find(isHit);
  if (hit) return Promise.resolve(hit.text);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new ScriptFailure(`    no notification matching ${JSON.stringify(expect)} within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = telegram.onOutgoing((m) => {
      if (isHit(m)) {
        clearTimeout(timer);
        off();
        resolve(m.text);
      }
    });
  });
}
