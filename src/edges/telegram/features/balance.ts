// /balance: available, pending and reserved, in BTC with sats (private chat only).
import { Composer } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import type { EdgeContext } from "../context.ts";

export function balanceFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  feature.chatType("private").command("balance", async (ctx) => {
    const b = await ctx.deps.relay.balance(await ctx.userKey());
    return ctx.reply(isRefusal(b) ? say.refusal(b) : say.balance(b));
  });
  return feature;
}
