// /start (creates or opens the wallet, remembers the sealed chat handle, follows cheque deep links) and /help.
import { Composer } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import { sealHandle } from "../../../store/sealed.ts";
import * as say from "../render.ts";
import type { EdgeContext } from "../context.ts";

/**
 * Whether this is the wallet's first /start: made now, or opened before by a tip or a cheque payout to someone who had
 * never started the bot (no chat handle then, so nobody told them). `created` says only the first; the engine's
 * `firstStart` says both (true when this /start sealed the wallet's first chat handle). Undefined when the engine does
 * not say (an engine from before it did): the greeting then claims neither.
 */
function firstStart(opened: { created: boolean }): boolean | undefined {
  if (opened.created) return true;
  const first = (opened as { firstStart?: unknown }).firstStart;
  return typeof first === "boolean" ? first : undefined;
}

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
    return ctx.reply(say.welcome(firstStart(opened), opened.balance, info.network, info.confirmations));
  });

  dm.command("help", (ctx) => ctx.reply(say.HELP));
  return feature;
}
