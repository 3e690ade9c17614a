// The Telegram edge: one grammY bot with a composer per feature, grammY's own plugins for the plumbing
// (runner with per-chat order, 429 retries, outgoing throttling, per-user rate limit), undici as its HTTP
// client (http.ts), one error boundary, and notifications sent through the chat handle sealed at /start.
// Updates come by long polling, a webhook, or — for the local chat, scripts and tests — straight into
// `bot.handleUpdate`.
import { createHmac, randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { Bot, Composer, GrammyError, HttpError, type Transformer } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import { run, sequentialize, type RunnerHandle } from "@grammyjs/runner";
import { autoRetry } from "@grammyjs/auto-retry";
import { apiThrottler } from "@grammyjs/transformer-throttler";
import { limit } from "@grammyjs/ratelimiter";
import type { Config } from "../../config.ts";
import { IdentityBusy } from "../../store/identity.ts";
import { commandIdKey, deriveCommandId, type EdgeContext, type EdgeDeps } from "./context.ts";
import { forwardNotifications } from "./notifications.ts";
import { listenForWebhooks } from "./webhook.ts";
import { botApiFetch } from "./http.ts";
import { startFeature } from "./features/start.ts";
import { depositFeature } from "./features/deposit.ts";
import { balanceFeature } from "./features/balance.ts";
import { historyFeature } from "./features/history.ts";
import { withdrawFeature } from "./features/withdraw.ts";
import { tipFeature } from "./features/tip.ts";
import { chequeFeature } from "./features/cheque.ts";

export interface TelegramEdgeOptions extends EdgeDeps {
  token: string;
  /** Only `telegram` (and the webhook secret, if any) is read. */
  config: Pick<Config, "telegram"> & { secrets?: { telegramWebhookSecret?: string } };
  /** Bot API server (a local stand-in in tests). Default: config.telegram.apiRoot. */
  apiRoot?: string;
  /** Known bot identity: skips getMe (local chat, scripts). */
  botInfo?: UserFromGetMe;
  /** "manual": updates are fed with bot.handleUpdate (local chat, scripts, tests). Default: config.telegram.mode. */
  mode?: "polling" | "webhook" | "manual";
  /** Telegram's secret_token for webhook mode. Default: config.secrets.telegramWebhookSecret. */
  webhookSecret?: string;
  /** Innermost API transformer (the local chat's in-process Bot API). */
  transport?: Transformer;
  /** How many recent update ids are remembered to drop redeliveries. */
  dedupeWindow?: number;
  /** Keep outgoing calls within Telegram's limits (default: yes, except in "manual" mode). Off only for a stand-in. */
  throttle?: boolean;
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
  { command: "send", description: "How to send to someone" },
  { command: "help", description: "What I can do" },
];
export const GROUP_COMMANDS = [{ command: "tip", description: "Reply to a message: /tip <amount>" }];

export const SOMETHING_WRONG = "⚠️ Something went wrong; nothing was moved. Please try again.";
/** When the failure came after the engine accepted a money command: saying "nothing was moved" would be false. */
export const SOMETHING_WRONG_AFTER = "⚠️ Something went wrong showing the result, but your request went through. Check /balance.";
export const BUSY = "⏳ I'm busy right now; try again in a moment. Nothing was moved.";
const MAX_TEXT = 1000;

export function buildTelegramEdge(o: TelegramEdgeOptions): TelegramEdge {
  const log = o.log.child({ edge: "telegram" });
  const apiRoot = o.apiRoot ?? o.config.telegram.apiRoot;
  const bot = new Bot<EdgeContext>(o.token, {
    client: { apiRoot, fetch: botApiFetch(apiRoot) },
    ...(o.botInfo ? { botInfo: o.botInfo } : {}),
  });
  if (o.transport) bot.api.config.use(o.transport);
  // Telegram's "retry after" (429) and its 5xx are retried, three times at most. A network error is not: the request
  // may have been carried out (a message sent twice), and auto-retry's own network retries have no bound (doubling up
  // to an hour). Polling retries getUpdates itself, every 2 s (the runner's options below).
  bot.api.config.use(autoRetry({ maxRetryAttempts: 3, maxDelaySeconds: 60, rethrowHttpErrors: true }));
  const mode = o.mode ?? o.config.telegram.mode;
  // Outgoing calls stay inside Telegram's limits (30/s overall, ~1/s per chat); in-process there is no limit.
  if (o.throttle ?? mode !== "manual") bot.api.config.use(apiThrottler());

  bot.use(dedupe(o.dedupeWindow ?? 50_000));
  // Per chat and per sender, in order: a user's commands never race each other (prefixes keep ids apart).
  bot.use(sequentialize((ctx) => [ctx.chat && `c${ctx.chat.id}`, ctx.from && `u${ctx.from.id}`].filter((k): k is string => !!k)));
  bot.use(edgeContext(o));
  // The limiter's keys are HMACs of the id under a per-process key: no raw id as a map key.
  const limiterKey = randomBytes(32);
  bot.use(limit<EdgeContext, never>({
    timeFrame: 60_000,
    limit: o.config.telegram.commandsPerMinute,
    // What is addressed to the bot counts (a private message, a command, a button press); a group's chatter does not:
    // a talkative member would use up their commands and have "too many requests" posted into the group.
    keyGenerator: (ctx) => {
      const addressed = ctx.callbackQuery !== undefined || ctx.chat?.type === "private" || ctx.msg?.text?.startsWith("/") === true;
      return ctx.from && addressed ? createHmac("sha256", limiterKey).update(String(ctx.from.id)).digest("base64url") : undefined;
    },
    onLimitExceeded: (ctx) => void answer(ctx, "⏳ Too many requests; wait a minute and try again. Nothing was moved.").catch(() => undefined),
  }));
  bot.on("message:text", async (ctx, next) => {
    if (ctx.msg.text.length <= MAX_TEXT) return next();
    // Long chatter in a group is none of the bot's business; a long command or private message gets one line.
    if (ctx.chat.type === "private" || ctx.msg.text.startsWith("/")) return ctx.reply("⚠️ That message is too long for me. Send one command at a time.");
  });

  bot.use(startFeature(), depositFeature(), balanceFeature(), historyFeature(), withdrawFeature(), tipFeature(), chequeFeature());
  bot.use(fallbacks());

  // The one error boundary: the person gets one line, the log gets what failed without who or what was said.
  bot.catch(async (err) => {
    const ctx = err.ctx;
    if (err.error instanceof IdentityBusy && !ctx.moved) {
      // Not a failure: the user-key derivations are queued to their bound (store/identity.ts). Counted there.
      log.debug({ updateKind: updateKind(ctx) }, "identity busy: update answered 'try again'");
      await answer(ctx, BUSY).catch(() => undefined);
      return;
    }
    log.error({ err: errorSummary(err.error), updateId: ctx.update.update_id, updateKind: updateKind(ctx) }, "update failed");
    await answer(ctx, ctx.moved ? SOMETHING_WRONG_AFTER : SOMETHING_WRONG).catch(() => undefined);
  });

  let unsubscribe: (() => void) | undefined;
  let runner: RunnerHandle | undefined;
  let server: Server | undefined;
  return {
    bot,
    async start() {
      // The calls a start makes are tried again on a network error (a few times, 1 s to 8 s apart): auto-retry no
      // longer does (a message could be sent twice), and a blip must not end the start of the whole process.
      const startupCall = async <T>(call: () => Promise<T>): Promise<T> => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await call();
          } catch (e) {
            if (!(e instanceof HttpError) || attempt >= 4) throw e;
            log.warn({ err: errorSummary(e), attempt: attempt + 1 }, "Telegram unreachable at start; trying again");
            await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
          }
        }
      };
      try {
        await startupCall(() => bot.init());
      } catch (e) {
        if (e instanceof GrammyError && e.error_code === 401) {
          throw Object.assign(new Error("Telegram refused the bot token (401 Unauthorized): check RUNIGUN_TELEGRAM_TOKEN (from @BotFather)"), { code: "setup" });
        }
        throw e;
      }
      await bot.api.setMyCommands(COMMANDS, { scope: { type: "all_private_chats" } })
        .then(() => bot.api.setMyCommands(GROUP_COMMANDS, { scope: { type: "all_group_chats" } }))
        .catch((e: unknown) => log.warn({ err: errorSummary(e) }, "setMyCommands failed"));
      unsubscribe ??= forwardNotifications({ relay: o.relay, api: bot.api, handleKey: o.handleKey, log });
      if (mode === "polling") {
        // A webhook left registered (a switch from webhook mode) makes every getUpdates fail with 409: polling takes
        // over, as grammY's own bot.start() does. Updates waiting for the webhook are kept.
        await startupCall(() => bot.api.deleteWebhook());
        // Edited messages are not even fetched: an edit never moves money (nor does anything else here). Silent: else
        // the runner writes its errors, whole, to the console, outside the log and its redaction.
        runner = run(bot, { runner: { fetch: { allowed_updates: ["message", "callback_query"] }, silent: true, retryInterval: 2000 } });
        // The runner gives up for good on 401 (a revoked token) and 409 (another process polling, or a webhook set
        // meanwhile), and after retrying getUpdates too long: this edge stops answering, the rest of the process
        // (the engine, payouts, the admin edge) goes on. Unhandled, that rejection would end the whole process.
        void runner.task()?.catch((e: unknown) => {
          log.error({ alert: true, err: errorSummary(e) }, "Telegram polling stopped (a revoked token, another process polling with the same token, or a webhook set): the bot answers nobody until this edge is restarted");
        });
        log.info({ bot: bot.botInfo.username }, "Telegram edge polling");
        return {};
      }
      if (mode === "webhook") {
        const secret = o.webhookSecret ?? o.config.secrets?.telegramWebhookSecret ?? "";
        if (secret.length < 16) throw Object.assign(new Error("webhook mode needs RUNIGUN_TELEGRAM_WEBHOOK_SECRET (16+ characters)"), { code: "setup" });
        const listening = await listenForWebhooks(bot, { host: o.config.telegram.webhookHost, port: o.config.telegram.webhookPort, secret, log });
        server = listening.server;
        const url = o.config.telegram.webhookUrl;
        if (url) {
          // Telegram learns where to post, with the secret it must send back on every update.
          await bot.api.setWebhook(url, { secret_token: secret, allowed_updates: ["message", "callback_query"] });
          log.info({ port: listening.port }, "Telegram edge listening for webhooks; webhook registered with Telegram");
        } else {
          log.info({ port: listening.port }, "Telegram edge listening for webhooks (telegram.webhookUrl is empty: register the webhook with Telegram yourself)");
        }
        return { webhookPort: listening.port };
      }
      return {};
    },
    async stop() {
      unsubscribe?.();
      unsubscribe = undefined;
      if (runner?.isRunning()) await runner.stop();
      if (server) {
        server.closeAllConnections();
        await new Promise((r) => server!.close(r));
        server = undefined;
      }
    },
  };
}

/** Telegram may deliver an update twice (after a polling restart or a webhook retry): repeats are dropped. */
function dedupe(window: number) {
  const seen = new Set<number>();
  return async (ctx: EdgeContext, next: () => Promise<void>) => {
    const id = ctx.update.update_id;
    if (seen.has(id)) return;
    seen.add(id);
    if (seen.size > window) seen.delete(seen.values().next().value!);
    // Edited messages never move money (nor do anything else here).
    if (ctx.update.edited_message || ctx.update.edited_channel_post) return;
    await next();
  };
}

/** The edge's additions to the context: deps, the sender's user key (derived at most once), command ids. */
function edgeContext(o: EdgeDeps) {
  const idKey = commandIdKey(o.handleKey);
  return async (ctx: EdgeContext, next: () => Promise<void>) => {
    ctx.deps = o;
    ctx.moved = false;
    let key: Promise<string> | undefined;
    ctx.userKey = () => {
      const from = ctx.from;
      if (!from) return Promise.reject(new Error("an update without a sender"));
      return (key ??= o.identity.userKey(from.id));
    };
    ctx.commandId = () => {
      if (!ctx.chat || !ctx.msg) throw new Error("a money command without a message");
      return deriveCommandId(idKey, ctx.chat.id, ctx.msg.message_id);
    };
    await next();
  };
}

/** What nobody else answered: one line each, nothing changes. */
function fallbacks(): Composer<EdgeContext> {
  const c = new Composer<EdgeContext>();
  c.chatType("private").on("message", (ctx) =>
    ctx.reply(ctx.msg.text?.startsWith("/") ? "❓ I don't know that command. Send /help for the list." : "❓ I don't understand that. Send /help for what I can do."));
  // In a group only commands meant for this bot get an answer: `/x@other_bot` belongs to another bot.
  c.chatType(["group", "supergroup"]).on("message:entities:bot_command", (ctx) => {
    const first = ctx.msg.entities.find((e) => e.type === "bot_command" && e.offset === 0);
    const addressee = first ? ctx.msg.text.slice(0, first.length).split("@")[1] : undefined;
    if (!first || (addressee && addressee.toLowerCase() !== ctx.me.username.toLowerCase())) return;
    return ctx.reply("I only take /tip in groups (as a reply). Talk to me in a private chat for everything else.");
  });
  c.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: "This button is no longer valid." }));
  return c;
}

/** A button press is answered on the button; anything else in the chat. */
async function answer(ctx: EdgeContext, text: string): Promise<unknown> {
  if (ctx.callbackQuery) return ctx.answerCallbackQuery({ text, show_alert: true });
  if (ctx.chat) return ctx.reply(text);
  return undefined;
}

function updateKind(ctx: EdgeContext): string {
  return Object.keys(ctx.update).find((k) => k !== "update_id") ?? "unknown";
}

/**
 * Enough to diagnose, nothing personal: the error's kind, its code and where it was thrown. Messages are left
 * out on purpose (an error may quote what the person typed, or an id).
 */
export function errorSummary(e: unknown): Record<string, unknown> {
  if (e instanceof GrammyError) return { name: "GrammyError", method: e.method, code: e.error_code };
  if (e instanceof HttpError) return { name: "HttpError", cause: (e.error as Error | undefined)?.name };
  if (!(e instanceof Error)) return { name: typeof e };
  const code = (e as { code?: unknown }).code;
  const frame = /\(?((?:file:\/\/)?\/[^\s()]+:\d+:\d+)\)?/.exec(e.stack?.split("\n").slice(1).join("\n") ?? "")?.[1];
  return {
    name: e.name,
    ...(typeof code === "string" && /^[\w.-]{1,40}$/.test(code) ? { code } : {}),
    ...(frame ? { at: frame.replace(/^file:\/\//, "").replace(/^.*?\/(src|test|node_modules)\//, "$1/") } : {}),
  };
}
