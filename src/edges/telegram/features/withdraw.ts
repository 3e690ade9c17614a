// /withdraw: a quote with the fee and Confirm / Cancel buttons. Only a Confirm press moves money, and the
// relay makes a second press of the same quote a no-op. Missing arguments are asked for step by step.
import { Composer, InlineKeyboard } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import { args, type EdgeContext } from "../context.ts";

export const withdraw = new Composer<EdgeContext>();
const dm = withdraw.chatType("private");

/** Who is in the middle of a step-by-step withdrawal, by user key; bounded and short-lived. */
const steps = new Map<string, { address?: string; at: number }>();
const STEP_TTL = 10 * 60_000;
const MAX_STEPS = 10_000;

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
    steps.delete(userKey);
    return sendQuote(ctx, address, amount.join(" "));
  }
  if (steps.size >= MAX_STEPS) steps.delete(steps.keys().next().value!);
  steps.set(userKey, { ...(address ? { address } : {}), at: Date.now() });
  return ctx.reply(address ? "How much? (e.g. 0.001 BTC or 100000 sats, /cancel to stop)" : "Which address should I send to? (/cancel to stop)");
});

dm.command("cancel", async (ctx) => {
  steps.delete(await ctx.userKey());
  return ctx.reply("Cancelled. Nothing was moved.");
});

// Plain text while a step-by-step withdrawal is open: the next missing piece.
dm.on("message:text", async (ctx, next) => {
  if (ctx.msg.text.startsWith("/")) return next();
  const userKey = await ctx.userKey();
  const s = steps.get(userKey);
  if (!s || Date.now() - s.at > STEP_TTL) {
    steps.delete(userKey);
    return next();
  }
  if (!s.address) {
    steps.set(userKey, { address: ctx.msg.text.trim(), at: Date.now() });
    return ctx.reply("How much? (e.g. 0.001 BTC or 100000 sats, /cancel to stop)");
  }
  steps.delete(userKey);
  return sendQuote(ctx, s.address, ctx.msg.text);
});

withdraw.callbackQuery(/^wd:(ok|no):(wd_[A-Za-z0-9_-]{8,40})$/, async (ctx) => {
  const [, action, id] = ctx.match;
  const userKey = await ctx.userKey();
  const { relay } = ctx.deps;
  if (action === "no") {
    const r = await relay.cancelQuote(userKey, id!);
    if (isRefusal(r)) return ctx.answerCallbackQuery({ text: r.message, show_alert: true });
    await ctx.answerCallbackQuery({ text: "Cancelled" });
    return ctx.editMessageText("Withdrawal cancelled. Nothing was moved.");
  }
  const r = await relay.confirmWithdrawal(userKey, id!);
  if (isRefusal(r)) return ctx.answerCallbackQuery({ text: r.message, show_alert: true });
  if (r.repeated) return ctx.answerCallbackQuery({ text: "Already confirmed; nothing more was done." });
  await ctx.answerCallbackQuery({ text: "Confirmed" });
  return ctx.editMessageText(`Withdrawal of ${say.btc(r.amount)} confirmed (fee at most ${say.btc(r.fee)}). It will be broadcast shortly; I will tell you.\n\n${say.balance(r.balance)}`);
});
