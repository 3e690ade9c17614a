// /start (creates or opens the wallet, remembers the sealed chat handle, follows cheque deep links) and /help.
import { Composer } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import { sealHandle } from "../../../store/sealed.ts";
import * as say from "../render.ts";
import type { EdgeContext } from "../context.ts";

export function startFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");

  dm.command("start", async (ctx) => {
    const { relay, handleKey } = ctx.deps;
    const userKey = await ctx.userKey();
    // The engine keeps the handle for notifications but cannot read it: only this edge holds handleKey.
    const opened = await relay.start(userKey, sealHandle(handleKey, { chatId: ctx.chat.id }));
    if (isRefusal(opened)) return ctx.reply(say.refusal(opened));
    const code = ctx.match.trim();
    if (code) {
      // A cheque link: t.me/<bot>?start=<code>. The engine checks the code; the edge only relays it.
      const claimed = await relay.claimCheque(userKey, code);
      if (isRefusal(claimed)) return ctx.reply(say.refusal(claimed));
      ctx.moved = true;
      return ctx.reply(say.chequeClaimed(claimed.amount, claimed.balance));
    }
    const info = relay.info();
    return ctx.reply(say.welcome(opened.created, info.network, info.confirmations));
  });

  dm.command("help", (ctx) => ctx.reply(say.HELP));
  return feature;
}
