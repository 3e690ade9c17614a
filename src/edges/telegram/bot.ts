// The Telegram edge: one grammY bot with a composer per feature, grammY's own plugins for the plumbing
// (runner with per-chat order, 429 retries, outgoing throttling, per-user rate limit), one error boundary,
// and notifications sent through the chat handle sealed at /start. Updates come by long polling, a
// webhook, or — for the local chat, scripts and tests — straight into `bot.handleUpdate`.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import { Bot, webhookCallback, type Transformer } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import { run, sequentialize, type RunnerHandle } from "@grammyjs/runner";
import { autoRetry } from "@grammyjs/auto-retry";
import { apiThrottler } from "@grammyjs/transformer-throttler";
import { limit } from "@grammyjs/ratelimiter";
import type { Config } from "../../config.ts";
import { openHandle } from "../../store/sealed.ts";
import * as say from "./render.ts";
import type { EdgeContext, EdgeDeps } from "./context.ts";
import { account } from "./features/account.ts";
import { withdraw } from "./features/withdraw.ts";
import { transfers } from "./features/transfers.ts";

export interface TelegramEdgeOptions extends EdgeDeps {
  token: string;
  config: Config;
  /** Known bot identity: skips getMe (local chat, scripts). */
  botInfo?: UserFromGetMe;
  /** "manual": updates are fed with bot.handleUpdate (local chat, scripts, tests). Default: config.telegram.mode. */
  mode?: "polling" | "webhook" | "manual";
  webhookSecret?: string;
  /** Innermost API transformer (the local chat's in-process Bot API). */
  transport?: Transformer;
}

export interface TelegramEdge {
  bot: Bot<EdgeContext>;
  start(): Promise<{ webhookPort?: number }>;
  stop(): Promise<void>;
}

export const COMMANDS = [
  { command: "start", description: "Create or open your wallet" },
  { command: "deposit", description: "Your deposit address" },
  { command: "balance", description: "Available, pending, reserved" },
  { command: "history", description: "Your transactions" },
  { command: "withdraw", description: "Send bitcoin out: /withdraw <address> <amount>" },
  { command: "cheque", description: "A one-time claim link: /cheque <amount>" },
  { command: "help", description: "What I can do" },
];

export function buildTelegramEdge(o: TelegramEdgeOptions): TelegramEdge {
  const log = o.log.child({ edge: "telegram" });
  const bot = new Bot<EdgeContext>(o.token, { client: { apiRoot: o.config.telegram.apiRoot }, ...(o.botInfo ? { botInfo: o.botInfo } : {}) });
  if (o.transport) bot.api.config.use(o.transport);
  bot.api.config.use(autoRetry({ maxRetryAttempts: 3, maxDelaySeconds: 60 }));
  const mode = o.mode ?? o.config.telegram.mode;
  if (mode !== "manual") bot.api.config.use(apiThrottler());

  // Telegram may deliver an update twice (after a polling restart or a webhook retry): drop repeats.
  const seen = new Set<number>();
  bot.use(async (ctx, next) => {
    if (seen.has(ctx.update.update_id)) return;
    seen.add(ctx.update.update_id);
    if (seen.size > 50_000) seen.delete(seen.values().next().value!);
    // Edited messages never move money (nor do anything else here).
    if (ctx.update.edited_message || ctx.update.edited_channel_post) return;
    await next();
  });
  bot.use(sequentialize((ctx) => ctx.chat?.id.toString()));
  const keyCache = new WeakMap<object, Promise<string>>();
  bot.use(async (ctx, next) => {
    ctx.deps = o;
    ctx.userKey = () => {
      const from = ctx.from;
      if (!from) return Promise.reject(new Error("an update without a sender"));
      let k = keyCache.get(ctx.update);
      if (!k) keyCache.set(ctx.update, (k = o.identity.userKey(from.id)));
      return k;
    };
    await next();
  });
  // The limiter's keys are HMACs of the id under a per-process key: no raw id as a map key.
  const limiterKey = randomBytes(32);
  bot.use(limit<EdgeContext, never>({
    timeFrame: 60_000,
    limit: o.config.telegram.commandsPerMinute,
    keyGenerator: (ctx) => (ctx.from ? createHmac("sha256", limiterKey).update(String(ctx.from.id)).digest("base64url") : undefined),
    onLimitExceeded: (ctx) => void ctx.reply("⏳ Too many requests; wait a minute and try again. Nothing was moved.").catch(() => undefined),
  }));
  bot.on("message:text", async (ctx, next) => {
    if (ctx.msg.text.length > 1000) return ctx.reply("⚠️ That message is too long for me. Send one command at a time.");
    return next();
  });

  bot.use(account, withdraw, transfers);

  bot.chatType("private").on("message", (ctx) =>
    ctx.reply(ctx.msg.text?.startsWith("/") ? "❓ I don't know that command. Send /help for the list." : "❓ I don't understand that. Send /help for what I can do."));
  bot.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: "This button is no longer valid." }));

  bot.catch(async (err) => {
    log.error({ err: err.error instanceof Error ? err.error.message : String(err.error), update: err.ctx.update.update_id }, "update failed");
    await err.ctx.reply("⚠️ Something went wrong; nothing was moved. Please try again.").catch(() => undefined);
  });

  const unsubscribe = o.relay.onNotification((n) => {
    if (!n.chatHandle) return;
    let chatId: number;
    try {
      chatId = openHandle<{ chatId: number }>(o.handleKey, n.chatHandle).chatId;
    } catch {
      log.warn({ userKey: n.userKey }, "a chat handle did not open with this edge's key; notification skipped");
      return;
    }
    bot.api.sendMessage(chatId, say.notice(n.notice)).catch((e: unknown) => log.warn({ userKey: n.userKey, err: (e as Error).message }, "notification not delivered"));
  });

  let runner: RunnerHandle | undefined;
  let server: Server | undefined;
  return {
    bot,
    async start() {
      await bot.init();
      await bot.api.setMyCommands(COMMANDS).catch((e: unknown) => log.warn({ err: (e as Error).message }, "setMyCommands failed"));
      if (mode === "polling") {
        runner = run(bot, { runner: { fetch: { allowed_updates: ["message", "callback_query"] } } });
        log.info({ bot: bot.botInfo.username }, "Telegram edge polling");
        return {};
      }
      if (mode === "webhook") {
        const secret = o.webhookSecret ?? "";
        if (secret.length < 16) throw Object.assign(new Error("webhook mode needs RUNIGUN_TELEGRAM_WEBHOOK_SECRET (16+ characters)"), { code: "setup" });
        const handle = webhookCallback(bot, "http");
        const expected = Buffer.from(secret);
        server = createServer((req, res) => {
          const got = Buffer.from(String(req.headers["x-telegram-bot-api-secret-token"] ?? ""));
          if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
            res.writeHead(401).end();
            return;
          }
          void handle(req, res);
        });
        await new Promise<void>((r) => server!.listen(o.config.telegram.webhookPort, o.config.telegram.webhookHost, r));
        const port = (server.address() as { port: number }).port;
        log.info({ port }, "Telegram edge listening for webhooks");
        return { webhookPort: port };
      }
      return {};
    },
    async stop() {
      unsubscribe();
      if (runner?.isRunning()) await runner.stop();
      if (server) await new Promise((r) => server!.close(r));
    },
  };
}
