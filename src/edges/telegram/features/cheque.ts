// /cheque <amount>: a one-time claim link t.me/<bot>?start=<code>; `/cheque list` shows the user's open ones with
// their links again; `/cheque revoke <code>` takes one back.
import { Composer } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import { args, type EdgeContext } from "../context.ts";

export function chequeFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");

  dm.command("cheque", async (ctx) => {
    const words = args(ctx);
    const { relay } = ctx.deps;
    const link = (code: string) => `https://t.me/${ctx.me.username}?start=${code}`;
    const userKey = await ctx.userKey();
    if (words[0]?.toLowerCase() === "revoke") {
      if (!words[1]) return ctx.reply("Which cheque? /cheque revoke <code>");
      const r = await relay.revokeCheque(userKey, words[1]);
      if (isRefusal(r)) return ctx.reply(say.refusal(r));
      ctx.moved = true;
      return ctx.reply(say.chequeRevoked(r.amount, r.balance));
    }
    if (words[0]?.toLowerCase() === "list") {
      const r = await relay.myCheques(userKey);
      if (isRefusal(r)) return ctx.reply(say.refusal(r));
      return ctx.reply(say.myCheques(r.cheques, link, r.more));
    }
    const amount = words.join(" ");
    if (!amount) return ctx.reply("How much? /cheque 0.001 BTC or /cheque 100k sats");
    // The command id makes a redelivered /cheque return the same cheque instead of a second one.
    const r = await relay.createCheque(userKey, ctx.commandId(), amount);
    if (isRefusal(r)) return ctx.reply(say.refusal(r));
    ctx.moved = true;
    return ctx.reply(say.cheque(r, link(r.code)));
  });
  return feature;
}
