// The Telegram edge: one grammY bot with a composer per feature, grammY's own plugins for the plumbing
// (runner, 429 retries, outgoing throttling, per-user rate limit), per-sender order with a bound (order.ts), a
// bounded outbox per group (outbox.ts), undici as its HTTP client (http.ts), one error boundary, and notifications
// sent through the chat handle sealed at /start. Updates come by long polling, a webhook, or — for the local chat,
// scripts and tests — straight into `bot.handleUpdate`.
//
// No chat waits for another: all chats share the updates in flight (MAX_UPDATES_IN_FLIGHT), so an update may hold one
// only while it is worked on or waits for its own sender's previous update. A group's chatter is dropped before
// anything; a group's replies go out from its outbox without holding their update; a sender's line is bounded.
import { createHmac, randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { Bot, Composer, GrammyError, HttpError, type Transformer } from "grammy";
import type { Message, UserFromGetMe } from "grammy/types";
import { run, type RunnerHandle } from "@grammyjs/runner";
import { autoRetry } from "@grammyjs/auto-retry";
import { apiThrottler } from "@grammyjs/transformer-throttler";
import { limit } from "@grammyjs/ratelimiter";
import type { Config } from "../../config.ts";
import { IdentityBusy } from "../../store/identity.ts";
import { commandIdKey, deriveCommandId, type EdgeContext, type EdgeDeps } from "./context.ts";
import { orderedPerKey } from "./order.ts";
import { GroupOutbox } from "./outbox.ts";
import { CAPTION_COMMAND } from "./render.ts";
import { forwardNotifications, type NoticeForwarder } from "./notifications.ts";
import { listenForWebhooks } from "./webhook.ts";
import { botApiFetch } from "./http.ts";
import { startFeature } from "./features/start.ts";
import { depositFeature } from "./features/deposit.ts";
import { balanceFeature } from "./features/balance.ts";
import { historyFeature } from "./features/history.ts";
import { otherCommandEndsWithdrawal, withdrawFeature } from "./features/withdraw.ts";
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
  /** Updates handled at once, all chats together (default MAX_UPDATES_IN_FLIGHT). */
  maxUpdatesInFlight?: number;
  /** Webhook mode: Telegram gets its 200 after this long even if the update is still being handled (default 9 s). */
  webhookTimeoutMs?: number;
  /** How long `stop()` waits for notice sends under way or queued (default NOTICE_STOP_WAIT_MS). */
  noticeStopWaitMs?: number;
}

export interface TelegramEdge {
  bot: Bot<EdgeContext>;
  start(): Promise<{ webhookPort?: number }>;
  stop(): Promise<void>;
  readonly stats: {
    /** Updates dropped because their sender already had MAX_PER_SENDER in line. */
    readonly droppedUpdates: number;
    /** Updates being handled now. */
    readonly inFlight: number;
  };
}

/**
 * Updates handled at once, all chats together: the runner's slots (long polling fetches no more beyond it) and, in
 * webhook mode, the handlers that may still run after Telegram got its answer (beyond it Telegram is answered 503 and
 * delivers the update again later). The runner's own default, now explicit; it is enough because an update holds one
 * only while it is worked on or waits behind its own sender's previous update (at most MAX_PER_SENDER of those), never
 * while its group's reply waits for the group's send budget.
 */
export const MAX_UPDATES_IN_FLIGHT = 500;
/**
 * Updates of one sender (one private chat) running or waiting at once. Replies to a person go out at about one a second
 * (Telegram's pace per chat) and nobody sends ten commands before the first is answered: beyond it is a flood, and what
 * would wait is dropped (counted in the log) instead of holding more of the slots everybody shares.
 */
export const MAX_PER_SENDER = 10;
/** Telegram's webhook request is answered after this long even if its update is still being handled (it retries at ~10 s). */
const WEBHOOK_TIMEOUT_MS = 9_000;
/**
 * How long a stop waits for the notices being sent or queued behind the throttler (about one a second per chat): a
 * few seconds, well inside the process's stop deadline (app.ts, STOP_DEADLINE_MS). What is not sent by then is not
 * acknowledged: the engine keeps it for the next bot, or its own next start.
 */
export const NOTICE_STOP_WAIT_MS = 5_000;
export const BUSY = "⏳ I'm busy right now; try again in a moment. Nothing was moved.";
/** To a command forwarded into the private chat, or sent through another bot: someone else chose its words. */
export const NOT_TYPED = "⚠️ I don't act on forwarded commands or commands sent through another bot: type the command yourself. Nothing was moved.";

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
export const GROUP_COMMANDS = [{ command: "tip", description: "Reply to a message: /tip 1000 sats (say sats or btc)" }];

export const SOMETHING_WRONG = "⚠️ Something went wrong; nothing was moved. Please try again.";
/** When the failure came after the engine accepted a money command: saying "nothing was moved" would be false. */
export const SOMETHING_WRONG_AFTER = "⚠️ Something went wrong showing the result, but your request went through. Check /balance.";
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
  // Outgoing calls stay inside Telegram's limits (30/s overall, ~1/s per chat, ~20/min per group); in-process there is
  // no limit. A group's replies then go out from its outbox, so that no update waits for its group's budget.
  const throttled = o.throttle ?? mode !== "manual";
  if (throttled) bot.api.config.use(apiThrottler());
  const outbox = throttled ? new GroupOutbox(bot.api, log) : undefined;
  const maxInFlight = o.maxUpdatesInFlight ?? MAX_UPDATES_IN_FLIGHT;

  let inFlight = 0;
  bot.use(async (_ctx, next) => {
    inFlight++;
    try {
      await next();
    } finally {
      inFlight--;
    }
  });
  // A group's chatter (and other bots' commands) is none of the bot's business: dropped before any line or limit.
  bot.use((ctx, next) => (ctx.update.message && isGroup(ctx.update.message.chat) && !commandForMe(ctx.update.message, ctx.me.username) ? undefined : next()));
  bot.use(dedupe(o.dedupeWindow ?? 50_000));
  bot.use(edgeContext(o, outbox));
  // The limiter's keys are HMACs of the id under a per-process key: no raw id as a map key. It comes before the
  // sender's line: a flood beyond the limit is refused without waiting in it.
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
  // One at a time per person, in order: a user's commands never race each other, in private or in a group (the same
  // wallet answers both). In a group the line is the sender's, not the group's: its members do not wait for each
  // other. Prefixes keep chat and user ids apart.
  // Keyed by HMACs of the ids under the limiter's key, as the limiter is: no raw id as a map key.
  const tag = (prefix: string, id: number) => createHmac("sha256", limiterKey).update(prefix + id).digest("base64url");
  let reportedDrops = 0, reportedAt = 0;
  const ordered = orderedPerKey<EdgeContext>(
    (ctx) => [ctx.chat && !isGroup(ctx.chat) && tag("c", ctx.chat.id), ctx.from && tag("u", ctx.from.id)].filter((k): k is string => !!k),
    MAX_PER_SENDER,
    (dropped) => {
      // The first drop, then at most a line every 10 s with the count since the last one.
      const now = Date.now();
      if (reportedDrops > 0 && now - reportedAt < 10_000) return;
      log.warn({ dropped: dropped - reportedDrops, perSender: MAX_PER_SENDER }, "updates dropped: a sender had too many waiting (a flood)");
      reportedDrops = dropped;
      reportedAt = now;
    },
  );
  bot.use(ordered.middleware);
  // A command forwarded (someone else's words: "/cheque 0.5" would be funded from the forwarder's balance) or sent
  // through an inline bot (whose text that bot chose) is not the sender's request: no feature sees it. A group hears
  // nothing (the same as its chatter); the person is told in private. After the limit and the sender's line, so a flood
  // of them is bounded like any other. Forwarded text that is no command goes on as before.
  bot.on("message", (ctx, next) => {
    if (!relayed(ctx.msg) || !commandForMe(ctx.msg, ctx.me.username)) return next();
    if (ctx.chat.type === "private") return ctx.tell(NOT_TYPED);
  });
  bot.on("message:text", async (ctx, next) => {
    if (ctx.msg.text.length <= MAX_TEXT) return next();
    // Long chatter in a group is none of the bot's business; a long command or private message gets one line.
    if (ctx.chat.type === "private" || ctx.msg.text.startsWith("/")) return ctx.tell("⚠️ That message is too long for me. Send one command at a time.");
  });

  // Before every feature, so that it sees every command: one other than /withdraw or /cancel ends a step-by-step
  // withdrawal, also one a feature answers without passing it on (/balance, /history).
  bot.use(otherCommandEndsWithdrawal, startFeature(), depositFeature(), balanceFeature(), historyFeature(), withdrawFeature(), tipFeature(), chequeFeature());
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

  let notices: NoticeForwarder | undefined;
  let runner: RunnerHandle | undefined;
  let server: Server | undefined;
  return {
    bot,
    stats: {
      get droppedUpdates() {
        return ordered.stats.dropped;
      },
      get inFlight() {
        return inFlight;
      },
    },
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
      // A call that still fails ends the start with a setup error said from its summary, never with grammY's error: that
      // carries the call's payload (setWebhook's: the webhook secret), and an error that ends the process is printed
      // whole, payload and all.
      const atStart = async <T>(method: string, call: () => Promise<T>): Promise<T> => {
        try {
          return await startupCall(call);
        } catch (e) {
          throw startError(method, e);
        }
      };
      await atStart("getMe", () => bot.init());
      await bot.api.setMyCommands(COMMANDS, { scope: { type: "all_private_chats" } })
        .then(() => bot.api.setMyCommands(GROUP_COMMANDS, { scope: { type: "all_group_chats" } }))
        .catch((e: unknown) => log.warn({ err: errorSummary(e) }, "setMyCommands failed"));
      // Notices are taken (from the engine, or its stream in the split shape) only once this edge can serve: a start
      // that fails after subscribing left them taken and never sent, where the engine would have kept them for the
      // next start.
      const subscribe = () => void (notices ??= forwardNotifications({ relay: o.relay, api: bot.api, handleKey: o.handleKey, log }));
      if (mode === "polling") {
        // A webhook left registered (a switch from webhook mode) makes every getUpdates fail with 409: polling takes
        // over, as grammY's own bot.start() does. Updates waiting for the webhook are kept.
        await atStart("deleteWebhook", () => bot.api.deleteWebhook());
        // Edited messages are not even fetched: an edit never moves money (nor does anything else here). Silent: else
        // the runner writes its errors, whole, to the console, outside the log and its redaction.
        // At most maxInFlight updates at once (see MAX_UPDATES_IN_FLIGHT); no timeout: one would free the slot of an
        // update still being handled, and such handlers would then pile up without bound.
        runner = run(bot, {
          runner: { fetch: { allowed_updates: ["message", "callback_query"] }, silent: true, retryInterval: 2000 },
          sink: { concurrency: maxInFlight },
        });
        // The runner gives up for good on 401 (a revoked token) and 409 (another process polling, or a webhook set
        // meanwhile), and after retrying getUpdates too long: this edge stops answering, the rest of the process
        // (the engine, payouts, the admin edge) goes on. Unhandled, that rejection would end the whole process.
        void runner.task()?.catch((e: unknown) => {
          log.error({ alert: true, err: errorSummary(e) }, "Telegram polling stopped (a revoked token, another process polling with the same token, or a webhook set): the bot answers nobody until this edge is restarted");
        });
        subscribe();
        log.info({ bot: bot.botInfo.username }, "Telegram edge polling");
        return {};
      }
      if (mode === "webhook") {
        const secret = o.webhookSecret ?? o.config.secrets?.telegramWebhookSecret ?? "";
        if (secret.length < 16) throw Object.assign(new Error("webhook mode needs RUNIGUN_TELEGRAM_WEBHOOK_SECRET (16+ characters)"), { code: "setup" });
        const listening = await listenForWebhooks(bot, {
          host: o.config.telegram.webhookHost, port: o.config.telegram.webhookPort, secret, log,
          timeoutMs: o.webhookTimeoutMs ?? WEBHOOK_TIMEOUT_MS, busy: () => inFlight >= maxInFlight,
        });
        server = listening.server;
        const url = o.config.telegram.webhookUrl;
        if (url) {
          // Telegram learns where to post, with the secret it must send back on every update.
          await atStart("setWebhook", () => bot.api.setWebhook(url, { secret_token: secret, allowed_updates: ["message", "callback_query"] }));
          log.info({ port: listening.port }, "Telegram edge listening for webhooks; webhook registered with Telegram");
        } else {
          log.info({ port: listening.port }, "Telegram edge listening for webhooks (telegram.webhookUrl is empty: register the webhook with Telegram yourself)");
        }
        subscribe();
        return { webhookPort: listening.port };
      }
      subscribe();
      return {};
    },
    async stop() {
      // Notices first stop being taken (what comes now is left to the engine), and the sends under way get a few
      // seconds to settle while the updates in flight finish: settled ones are released (acknowledged to the engine in
      // the split shape), the rest are not, and go to the next bot.
      const forwarder = notices;
      notices = undefined;
      const sent = forwarder?.stop(o.noticeStopWaitMs ?? NOTICE_STOP_WAIT_MS);
      outbox?.close();
      if (runner?.isRunning()) await runner.stop();
      await sent;
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

/** The edge's additions to the context: deps, the sender's user key (derived at most once), command ids, `tell`. */
function edgeContext(o: EdgeDeps, outbox: GroupOutbox | undefined) {
  const idKey = commandIdKey(o.handleKey);
  return async (ctx: EdgeContext, next: () => Promise<void>) => {
    ctx.deps = o;
    ctx.moved = false;
    const chat = ctx.chat;
    ctx.tell = outbox && chat && isGroup(chat)
      ? async (text, t) => {
        // In a forum topic, the answer goes to that topic (as ctx.reply would send it).
        const threadId = ctx.msg?.is_topic_message ? ctx.msg.message_thread_id : undefined;
        const from = ctx.from;
        // Money moved: its answer is never lost to a full outbox; the person is told in private instead.
        const otherwise = t?.moved && from ? () => {
          const where = "title" in chat && chat.title ? chat.title : "the group";
          ctx.api.sendMessage(from.id, `${text} (in ${where})`).catch((e: unknown) => o.log.warn({ err: errorSummary(e) }, "a group answer that money moved could be sent neither in the group nor in private"));
        } : undefined;
        // A reply to the command it answers: the group sees whose command this is.
        const replyTo = ctx.message?.message_id;
        outbox.post(chat.id, text, { ...(threadId !== undefined ? { threadId } : {}), ...(replyTo !== undefined ? { replyTo } : {}), ...(otherwise ? { otherwise } : {}) });
      }
      : async (text) => void (await ctx.reply(text));
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
  c.chatType("private").on("message", (ctx) => {
    if (ctx.msg.text === undefined && commandForMe(ctx.msg, ctx.me.username)) return ctx.reply(CAPTION_COMMAND);
    return ctx.reply(ctx.msg.text?.startsWith("/") ? "❓ I don't know that command. Send /help for the list." : "❓ I don't understand that. Send /help for what I can do.");
  });
  // In a group only commands meant for this bot get an answer: `/x@other_bot` belongs to another bot.
  c.chatType(["group", "supergroup"]).on("message", (ctx) => {
    if (!commandForMe(ctx.msg, ctx.me.username)) return;
    // A photo captioned "/tip 1000 sats" reaches no feature (commands are read from a message's text only).
    if (ctx.msg.text === undefined) return ctx.tell(CAPTION_COMMAND);
    return ctx.tell("I only take /tip in groups (as a reply). Talk to me in a private chat for everything else.");
  });
  c.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: "This button is no longer valid." }));
  return c;
}

/** A button press is answered on the button; anything else in the chat (a group's through its outbox). */
async function answer(ctx: EdgeContext, text: string): Promise<unknown> {
  if (ctx.callbackQuery) return ctx.answerCallbackQuery({ text, show_alert: true });
  if (ctx.chat) return ctx.tell ? ctx.tell(text) : ctx.reply(text);
  return undefined;
}

const isGroup = (chat: { type: string }) => chat.type === "group" || chat.type === "supergroup";

/** A message that starts with a command for this bot: `/x`, or `/x@this_bot` (`/x@other_bot` is another bot's). */
function commandForMe(m: Message, me: string): boolean {
  const text = m.text ?? m.caption;
  const first = (m.entities ?? m.caption_entities)?.find((e) => e.type === "bot_command" && e.offset === 0);
  if (!text || !first) return false;
  const addressee = text.slice(0, first.length).split("@")[1];
  return !addressee || addressee.toLowerCase() === me.toLowerCase();
}

/** A message someone else wrote or chose: forwarded (or a channel's post copied into its discussion group), or sent through an inline bot. */
function relayed(m: Message): boolean {
  return m.forward_origin !== undefined || m.via_bot !== undefined;
}

function updateKind(ctx: EdgeContext): string {
  return Object.keys(ctx.update).find((k) => k !== "update_id") ?? "unknown";
}

/**
 * A Bot API call at the edge's start that failed, as a setup error: the method, Telegram's code and its description (a
 * line of Telegram's own, cut short), or the network error's kind. Never the error itself nor its payload.
 */
function startError(method: string, e: unknown): Error & { code: "setup" } {
  const setup = (message: string) => Object.assign(new Error(message), { code: "setup" as const });
  if (e instanceof GrammyError && e.error_code === 401) {
    return setup("Telegram refused the bot token (401 Unauthorized): check RUNIGUN_TELEGRAM_TOKEN (from @BotFather)");
  }
  if (e instanceof GrammyError) {
    const description = String(e.description).replace(/[\u0000-\u001f\u007f]+/g, " ").slice(0, 200);
    return setup(`the Telegram edge could not start: Telegram refused ${method} (${e.error_code}: ${description})`);
  }
  const network = e instanceof HttpError;
  const cause = errorSummary(network ? e.error : e);
  const kind = [cause.name, cause.code].filter((v) => typeof v === "string").join(" ") || "unknown error";
  return setup(`the Telegram edge could not start: ${method} failed (${kind})${network ? ": check that this host reaches telegram.apiRoot (RUNIGUN_TELEGRAM_API_ROOT)" : ""}`);
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
