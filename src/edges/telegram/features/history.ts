// /history: newest first, paged with ◀ / ▶ inline buttons. Callback data is tiny and checked by a strict
// pattern; the page number is only a request, the engine clamps it to what exists.
import { Composer, InlineKeyboard } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import { unlessNotModified, type EdgeContext } from "../context.ts";

export const HISTORY_PAGE = /^hist:(\d{1,4})$/;

async function showHistory(ctx: EdgeContext, page: number, edit: boolean) {
  const h = await ctx.deps.relay.history(await ctx.userKey(), page);
  if (isRefusal(h)) return edit ? ctx.answerCallbackQuery({ text: h.message }) : ctx.reply(say.refusal(h));
  const kb = new InlineKeyboard();
  if (h.page > 0) kb.text("◀ Newer", `hist:${h.page - 1}`);
  if (h.page + 1 < h.pages) kb.text("Older ▶", `hist:${h.page + 1}`);
  const opts = h.pages > 1 ? { reply_markup: kb } : {};
  if (!edit) return ctx.reply(say.history(h), opts);
  await ctx.answerCallbackQuery();
  return ctx.editMessageText(say.history(h), opts).catch(unlessNotModified);
}

export function historyFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");
  dm.command("history", (ctx) => showHistory(ctx, 0, false));
  dm.callbackQuery(HISTORY_PAGE, (ctx) => showHistory(ctx, Number(ctx.match[1]), true));
  return feature;
}
