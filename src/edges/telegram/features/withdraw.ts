// /withdraw: a quote with the fee and Confirm / Cancel buttons. Only a Confirm press moves money, and the
// relay makes a second press of the same quote a no-op. Missing arguments are asked for step by step; that
// conversation lives in this edge's memory only (bounded, short-lived, keyed by user key, never by raw id).
import { Composer, InlineKeyboard } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import { args, type EdgeContext } from "../context.ts";

/** Callback data: action and the relay's quote id (which is also the withdrawal id). At most 49 bytes. */
export const QUOTE_BUTTON = /^wd:(ok|no):(wd_[A-Za-z0-9_-]{8,40})$/;

export interface WithdrawOptions {
  /** How long a half-finished step-by-step withdrawal waits for the next answer. */
  stepTtlMs?: number;
  /** At most this many conversations at once; the oldest is forgotten first. */
  maxConversations?: number;
  now?: () => number;
}

interface Conversation {
  address?: string;
  at: number;
}

const ASK_ADDRESS = "Which address should I send to? (/cancel to stop)";
const ASK_AMOUNT = "How much? (e.g. 0.001 BTC or 100000 sats, /cancel to stop)";

export function withdrawFeature(o: WithdrawOptions = {}): Composer<EdgeContext> {
  const ttl = o.stepTtlMs ?? 10 * 60_000;
  const max = o.maxConversations ?? 10_000;
  const now = o.now ?? Date.now;
  const conversations = new Map<string, Conversation>();
  const remember = (userKey: string, c: Conversation) => {
    conversations.delete(userKey); // re-inserted last: Map order is the eviction order
    if (conversations.size >= max) conversations.delete(conversations.keys().next().value!);
    conversations.set(userKey, c);
  };

  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");

  async function sendQuote(ctx: EdgeContext, address: string, amount: string) {
    const q = await ctx.deps.relay.quoteWithdrawal(await ctx.userKey(), address, amount);
    if (isRefusal(q)) return ctx.reply(say.refusal(q));
    const kb = new InlineKeyboard().text("Confirm", `wd:ok:${q.id}`).text("Cancel", `wd:no:${q.id}`);
    return ctx.reply(say.quote(q), { reply_markup: kb });
  }

  dm.command("withdraw", async (ctx) => {
    const [address, ...amount] = args(ctx);
    const userKey = await ctx.userKey();
    if (address && amount.length) {
      conversations.delete(userKey);
      return sendQuote(ctx, address, amount.join(" "));
    }
    remember(userKey, { ...(address ? { address } : {}), at: now() });
    return ctx.reply(address ? ASK_AMOUNT : ASK_ADDRESS);
  });

  dm.command("cancel", async (ctx) => {
    const had = conversations.delete(await ctx.userKey());
    return ctx.reply(had ? "Withdrawal cancelled. Nothing was moved." : "Nothing to cancel.");
  });

  // Plain text while a step-by-step withdrawal is open is its next missing piece; anything else passes on.
  dm.on("message:text", async (ctx, next) => {
    if (ctx.msg.text.startsWith("/")) return next();
    const userKey = await ctx.userKey();
    const c = conversations.get(userKey);
    if (!c || now() - c.at > ttl) {
      conversations.delete(userKey);
      return next();
    }
    const answer = ctx.msg.text.trim();
    if (!c.address) {
      remember(userKey, { address: answer, at: now() });
      return ctx.reply(ASK_AMOUNT);
    }
    conversations.delete(userKey);
    return sendQuote(ctx, c.address, answer);
  });

  feature.callbackQuery(QUOTE_BUTTON, async (ctx) => {
    const [, action, id] = ctx.match;
    const userKey = await ctx.userKey();
    const { relay } = ctx.deps;
    if (action === "no") {
      const r = await relay.cancelQuote(userKey, id!);
      if (isRefusal(r)) return ctx.answerCallbackQuery({ text: say.refusal(r), show_alert: true });
      await ctx.answerCallbackQuery({ text: r.cancelled ? "Cancelled" : "Expired" });
      return ctx.editMessageText(r.cancelled ? "Withdrawal cancelled. Nothing was moved." : "This quote had expired. Nothing was moved.");
    }
    const r = await relay.confirmWithdrawal(userKey, id!);
    if (isRefusal(r)) return ctx.answerCallbackQuery({ text: say.refusal(r), show_alert: true });
    ctx.moved = true;
    if (r.repeated) return ctx.answerCallbackQuery({ text: "Already confirmed; nothing more was done." });
    await ctx.answerCallbackQuery({ text: "Confirmed" });
    // Editing the quote removes its buttons, so the usual second press is not even possible.
    return ctx.editMessageText(say.confirmed(r));
  });
  return feature;
}
