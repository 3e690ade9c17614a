// /start, /help, /balance, /history, /deposit: private chat only (a group never sees a balance or address).
import { Composer, InlineKeyboard, InputFile } from "grammy";
import QRCode from "qrcode";
import { isRefusal } from "../../../domain/refusals.ts";
import { sealHandle } from "../../../store/sealed.ts";
import * as say from "../render.ts";
import type { EdgeContext } from "../context.ts";

export const account = new Composer<EdgeContext>();
const dm = account.chatType("private");

dm.command("start", async (ctx) => {
  const { relay, handleKey } = ctx.deps;
  const userKey = await ctx.userKey();
  const opened = await relay.start(userKey, sealHandle(handleKey, { chatId: ctx.chat.id }));
  if (isRefusal(opened)) return ctx.reply(say.refusal(opened));
  const code = ctx.match.trim();
  if (code) {
    // A cheque link: t.me/<bot>?start=<code>
    const claimed = await relay.claimCheque(userKey, code);
    if (isRefusal(claimed)) return ctx.reply(say.refusal(claimed));
    return ctx.reply(`🎁 Cheque claimed: ${say.btc(claimed.amount)} is yours.\n\n${say.balance(claimed.balance)}`);
  }
  const info = relay.info();
  return ctx.reply(say.welcome(opened.created, info.network, info.confirmations));
});

dm.command("help", (ctx) => ctx.reply(say.HELP));

dm.command("balance", async (ctx) => {
  const b = await ctx.deps.relay.balance(await ctx.userKey());
  return ctx.reply(isRefusal(b) ? say.refusal(b) : say.balance(b));
});

const PAGE = /^hist:(\d{1,4})$/;

async function showHistory(ctx: EdgeContext, page: number, edit: boolean) {
  const h = await ctx.deps.relay.history(await ctx.userKey(), page);
  if (isRefusal(h)) return ctx.reply(say.refusal(h));
  const kb = new InlineKeyboard();
  if (h.page > 0) kb.text("◀ Newer", `hist:${h.page - 1}`);
  if (h.page + 1 < h.pages) kb.text("Older ▶", `hist:${h.page + 1}`);
  const opts = h.pages > 1 ? { reply_markup: kb } : {};
  return edit ? ctx.editMessageText(say.history(h), opts) : ctx.reply(say.history(h), opts);
}

dm.command("history", (ctx) => showHistory(ctx, 0, false));
dm.callbackQuery(PAGE, async (ctx) => {
  await ctx.answerCallbackQuery();
  await showHistory(ctx, Number(ctx.match[1]), true);
});

dm.command("deposit", async (ctx) => {
  const { relay } = ctx.deps;
  const a = await relay.depositAddress(await ctx.userKey());
  if (isRefusal(a)) return ctx.reply(say.refusal(a));
  const png = await QRCode.toBuffer(`bitcoin:${a.address}`, { type: "png", margin: 2, scale: 6 });
  await ctx.replyWithPhoto(new InputFile(png, "deposit.png"), { caption: a.address });
  return ctx.reply(say.deposit(a.address, relay.info().confirmations));
});
