// /deposit: the user's bech32 address as text and as a QR code image (private chat only).
import { Composer, InputFile } from "grammy";
import QRCode from "qrcode";
import { isRefusal } from "../../../domain/refusals.ts";
import * as say from "../render.ts";
import type { EdgeContext } from "../context.ts";

export function depositFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  feature.chatType("private").command("deposit", async (ctx) => {
    const { relay } = ctx.deps;
    const a = await relay.depositAddress(await ctx.userKey());
    if (isRefusal(a)) return ctx.reply(say.refusal(a));
    // BIP-21 URI: wallets that scan it open a payment to this address.
    const png = await QRCode.toBuffer(`bitcoin:${a.address}`, { type: "png", margin: 2, scale: 6 });
    await ctx.replyWithPhoto(new InputFile(png, "deposit.png"), { caption: a.address });
    const info = relay.info();
    return ctx.reply(say.deposit(a.address, info.confirmations, info.minDepositSats));
  });
  return feature;
}
