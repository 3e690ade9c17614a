// /history: newest first, paged with ◀ / ▶ inline buttons. Callback data is tiny and checked by a strict
// pattern; the page number is only a request, the engine clamps it to what exists.
import { Composer, InlineKeyboard } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import type { HistoryPage } from "../../../relay.types.ts";
import * as say from "../render.ts";
import { unlessNotModified, type EdgeContext } from "../context.ts";

export const HISTORY_PAGE = /^hist:(\d{1,4})$/;

/** Entries per page shown (the relay's default) and per page read to look further back (the relay's largest). */
const PAGE = 5;
const LOOKBACK_PAGE = 50;

/**
 * Which of the cheques whose payouts `h` shows this wallet made (say.ChequesMade): their funding entries are older than
 * the payouts, on this page or further back. Looked for on this page and, only when a payout's funding is not there, in
 * the next fifty to a hundred older entries (at most two reads of the relay's largest page): a cheque is taken back or expires
 * within days of being made. A lookup that fails leaves the payout said as "from a cheque".
 */
async function chequesMade(ctx: EdgeContext, userKey: string, h: HistoryPage): Promise<say.ChequesMade> {
  const cheques = new Set<string>();
  const note = (entries: HistoryPage["entries"]) => {
    for (const e of entries) if (e.kind === "transfer_out" && e.status === "sent" && say.isChequeSide(e.counterparty)) cheques.add(e.counterparty!);
  };
  note(h.entries);
  // The whole history was read only when its oldest entry was: the pages cover the newest entries kept (a thousand by
  // default), and a funding older than those would be missing, saying a cheque of this wallet's came from someone else.
  const reachesFirst = (page: HistoryPage, size: number) => page.page + 1 >= page.pages && page.total <= (page.page + 1) * size;
  const payouts = h.entries.filter((e) => e.kind === "transfer_in" && say.isChequeSide(e.counterparty) && !cheques.has(e.counterparty!));
  if (payouts.length === 0 || h.page + 1 >= h.pages) return { cheques, complete: reachesFirst(h, PAGE) };
  // The entries older than this page begin at this offset from the newest.
  const first = Math.floor(((h.page + 1) * PAGE) / LOOKBACK_PAGE);
  for (let page = first; page < first + 2; page++) {
    const older = await ctx.deps.relay.history(userKey, page, LOOKBACK_PAGE).catch(() => undefined);
    if (older === undefined || isRefusal(older)) return { cheques, complete: false };
    note(older.entries);
    if (page + 1 >= older.pages) return { cheques, complete: reachesFirst(older, LOOKBACK_PAGE) };
    if (payouts.every((e) => cheques.has(e.counterparty!))) break;
  }
  return { cheques, complete: false };
}

async function showHistory(ctx: EdgeContext, page: number, edit: boolean) {
  const userKey = await ctx.userKey();
  const h = await ctx.deps.relay.history(userKey, page, PAGE);
  if (isRefusal(h)) return edit ? ctx.answerCallbackQuery({ text: h.message }) : ctx.reply(say.refusal(h));
  const text = say.history(h, await chequesMade(ctx, userKey, h));
  const kb = new InlineKeyboard();
  if (h.page > 0) kb.text("◀ Newer", `hist:${h.page - 1}`);
  if (h.page + 1 < h.pages) kb.text("Older ▶", `hist:${h.page + 1}`);
  const opts = h.pages > 1 ? { reply_markup: kb } : {};
  if (!edit) return ctx.reply(text, opts);
  await ctx.answerCallbackQuery();
  return ctx.editMessageText(text, opts).catch(unlessNotModified);
}

export function historyFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");
  dm.command("history", (ctx) => showHistory(ctx, 0, false));
  dm.callbackQuery(HISTORY_PAGE, (ctx) => showHistory(ctx, Number(ctx.match[1]), true));
  return feature;
}
