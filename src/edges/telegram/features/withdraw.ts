// /withdraw: a quote with the fee and Confirm / Cancel buttons. Only a Confirm press moves money, and the
// relay makes a second press of the same quote a no-op. Missing arguments are asked for step by step; that
// conversation lives in this edge's memory only (bounded, short-lived, keyed by an HMAC of the sender, never by raw id),
// and any other command ends it.
import { createHmac } from "node:crypto";
import { Composer, InlineKeyboard } from "grammy";
import { isRefusal, type Refusal } from "../../../domain/refusals.ts";
import { amountUnit, parseAmount } from "../../../domain/money.ts";
import { checkAddressFor, parseAddress, type Network } from "../../../domain/address.ts";
import * as say from "../render.ts";
import { args, type EdgeContext, type EdgeDeps } from "../context.ts";

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
  /** The amount, when /withdraw came with one and no address ("/withdraw 0.001"): the address is asked for. */
  amount?: string;
  at: number;
}

export const ASK_ADDRESS = "Which address should I send to? (/cancel to stop)";
export const ASK_AMOUNT = "How much? (e.g. 0.001 BTC or 100000 sats, /cancel to stop)";

/**
 * The conversations of one edge (its deps), where any feature can end one: a command other than /withdraw or /cancel
 * ends it (otherCommandEndsWithdrawal, which the bot runs before every feature: the features before this one answer
 * their commands without passing them on).
 * Keyed by an HMAC of the sender's Telegram id under a key of the edge's own, not by the user key: ending one must not
 * cost every other command a user-key derivation (argon2id, store/identity.ts).
 */
const edges = new WeakMap<EdgeDeps, { conversations: Map<string, Conversation>; key: Buffer }>();

function stepsOf(deps: EdgeDeps) {
  let steps = edges.get(deps);
  if (!steps) {
    const key = createHmac("sha256", deps.handleKey).update("runigun/telegram/withdraw-steps/v1").digest();
    edges.set(deps, (steps = { conversations: new Map(), key }));
  }
  return steps;
}

function senderTag(ctx: EdgeContext): string | undefined {
  const from = ctx.from;
  return from && createHmac("sha256", stepsOf(ctx.deps).key).update(String(from.id)).digest("base64url");
}

/**
 * Ends the sender's step-by-step withdrawal when a private command other than /withdraw and /cancel comes: its next
 * plain text is no longer an answer to "Which address?" (a /balance between the steps left the conversation open, and
 * the next words were taken for an address). The bot runs it before every feature, so that it sees every command.
 */
export async function otherCommandEndsWithdrawal(ctx: EdgeContext, next: () => Promise<void>): Promise<void> {
  // The update's own message only (a button press carries the bot's message, whose text is no command of the sender's).
  const command = ctx.chat?.type === "private" ? /^\/([A-Za-z0-9_]+)/.exec(ctx.message?.text ?? "")?.[1]?.toLowerCase() : undefined;
  if (command !== undefined && command !== "withdraw" && command !== "cancel") {
    const tag = senderTag(ctx);
    if (tag !== undefined) stepsOf(ctx.deps).conversations.delete(tag);
  }
  return next();
}

/** Why this service cannot pay `text`, from the address alone (the relay checks it again, with the node). */
function addressRefusal(ctx: EdgeContext, text: string): Refusal | undefined {
  const checked = checkAddressFor(ctx.deps.relay.info().network as Network, text);
  return checked === true ? undefined : checked;
}

const isAddress = (text: string | undefined) => text !== undefined && !isRefusal(parseAddress(text));

/** Refusals that are about the amount: said with how a bare number was read. */
const ABOUT_THE_AMOUNT = new Set(["insufficient_funds", "below_dust", "over_limit", "bad_amount"]);

export function withdrawFeature(o: WithdrawOptions = {}): Composer<EdgeContext> {
  const ttl = o.stepTtlMs ?? 10 * 60_000;
  const max = o.maxConversations ?? 10_000;
  const now = o.now ?? Date.now;

  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");

  const remember = (ctx: EdgeContext, tag: string, c: Conversation) => {
    const { conversations } = stepsOf(ctx.deps);
    conversations.delete(tag); // re-inserted last: Map order is the eviction order
    if (conversations.size >= max) conversations.delete(conversations.keys().next().value!);
    conversations.set(tag, c);
  };

  async function sendQuote(ctx: EdgeContext, address: string, amount: string) {
    const q = await ctx.deps.relay.quoteWithdrawal(await ctx.userKey(), address, amount);
    // A bare number is bitcoin: the answer says so ("1000" meant as satoshis is a thousand bitcoin).
    const sats = parseAmount(amount);
    const readAs = !isRefusal(sats) && amountUnit(amount) === undefined ? say.readAsBtc(amount.trim(), sats) : undefined;
    if (isRefusal(q)) return ctx.reply(readAs && ABOUT_THE_AMOUNT.has(q.code) ? `${say.refusal(q)}\n${readAs}` : say.refusal(q));
    const kb = new InlineKeyboard().text("Confirm", `wd:ok:${q.id}`).text("Cancel", `wd:no:${q.id}`);
    return ctx.reply(say.quote(q, readAs), { reply_markup: kb });
  }

  dm.command("withdraw", async (ctx) => {
    const words = args(ctx);
    const tag = senderTag(ctx)!;
    stepsOf(ctx.deps).conversations.delete(tag);
    if (words.length === 0) {
      remember(ctx, tag, { at: now() });
      return ctx.reply(ASK_ADDRESS);
    }
    // "/withdraw 0.001 bcrt1q…": the words the other way round, said as such (the relay, reading the amount first,
    // answered "That amount is too long" about the address).
    if (words.length > 1 && isAddress(words.at(-1)) && !isRefusal(parseAmount(words.slice(0, -1).join(" ")))) return ctx.reply(say.WITHDRAW_ORDER);
    const [first, ...rest] = words as [string, ...string[]];
    // An amount and no address ("/withdraw 0.001"): the address is asked for (it was taken for the address).
    const amountOnly = parseAmount(words.join(" "));
    if (!isAddress(first) && !isRefusal(amountOnly)) {
      remember(ctx, tag, { amount: words.join(" "), at: now() });
      return ctx.reply(say.askAddressFor(amountOnly));
    }
    // The address is checked before the amount: a mistyped address gets its own answer whatever the amount says.
    const bad = addressRefusal(ctx, first);
    if (rest.length > 0) return bad ? ctx.reply(say.refusal(bad)) : sendQuote(ctx, first, rest.join(" "));
    if (bad) {
      remember(ctx, tag, { at: now() });
      return ctx.reply(`${say.refusal(bad)}\n${ASK_ADDRESS}`);
    }
    remember(ctx, tag, { address: first, at: now() });
    return ctx.reply(ASK_AMOUNT);
  });

  dm.command("cancel", async (ctx) => {
    const had = stepsOf(ctx.deps).conversations.delete(senderTag(ctx)!);
    return ctx.reply(had ? "Withdrawal cancelled. Nothing was moved." : "Nothing to cancel.");
  });

  // Plain text while a step-by-step withdrawal is open is its next missing piece, checked at that step (a wrong one is
  // said, and asked for again); anything else passes on.
  dm.on("message:text", async (ctx, next) => {
    if (ctx.msg.text.startsWith("/")) return next();
    const tag = senderTag(ctx)!;
    const { conversations } = stepsOf(ctx.deps);
    const c = conversations.get(tag);
    if (!c || now() - c.at > ttl) {
      conversations.delete(tag);
      return next();
    }
    const answer = ctx.msg.text.trim();
    if (c.address === undefined) {
      const bad = addressRefusal(ctx, answer);
      if (bad) {
        remember(ctx, tag, { ...c, at: now() });
        return ctx.reply(`${say.refusal(bad)}\n${ASK_ADDRESS}`);
      }
      if (c.amount === undefined) {
        remember(ctx, tag, { address: answer, at: now() });
        return ctx.reply(ASK_AMOUNT);
      }
      conversations.delete(tag);
      return sendQuote(ctx, answer, c.amount);
    }
    const amount = parseAmount(answer);
    if (isRefusal(amount)) {
      remember(ctx, tag, { ...c, at: now() });
      return ctx.reply(`${isAddress(answer) ? say.ADDRESS_NOT_AMOUNT : say.refusal(amount)}\n${ASK_AMOUNT}`);
    }
    conversations.delete(tag);
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
