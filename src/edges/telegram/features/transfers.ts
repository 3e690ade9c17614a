// Money between users: /tip as a reply in groups, /cheque links in private chat. Transfer ids come from
// the Telegram message itself, so a redelivered update cannot pay twice.
import { Composer } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import { parseAmount } from "../../../domain/money.ts";
import * as say from "../render.ts";
import { args, type EdgeContext } from "../context.ts";

export const transfers = new Composer<EdgeContext>();
const group = transfers.chatType(["group", "supergroup"]);
const dm = transfers.chatType("private");

group.command("tip", async (ctx) => {
  const target = ctx.msg.reply_to_message?.from;
  if (!target) return ctx.reply("Reply to someone's message with /tip <amount> to tip them.");
  if (target.is_bot) return ctx.reply("Bots cannot receive tips.");
  const amount = args(ctx).join(" ");
  if (!amount) return ctx.reply("How much? Reply with /tip 1000 sats, for example.");
  // Parsed here only to say the amount back; the engine parses (and refuses) on its own.
  const shown = parseAmount(amount);
  if (isRefusal(shown)) return ctx.reply(say.refusal(shown));
  const { relay, identity } = ctx.deps;
  const from = await ctx.userKey();
  const to = await identity.userKey(target.id);
  const r = await relay.transfer(from, `tg:${ctx.chat.id}:${ctx.msg.message_id}`, to, amount);
  // In a group: never a balance, never an address.
  if (isRefusal(r)) return ctx.reply(r.code === "insufficient_funds" ? "💸 Not enough available for that tip." : say.refusal(r));
  return ctx.reply(r.repeated ? "That tip was already sent." : `🎁 Tip sent: ${say.btc(shown)}`);
});

// Anything else in a group is answered with a pointer to the private chat.
group.on("message:entities:bot_command", (ctx) => ctx.reply("I only take /tip in groups. Talk to me in a private chat for everything else."));

dm.command("send", (ctx) => ctx.reply("To send to someone, reply to their message in a group with /tip <amount>, or make a link with /cheque <amount>."));
dm.command("tip", (ctx) => ctx.reply("Tips work in groups: reply to someone's message there with /tip <amount>."));

dm.command("cheque", async (ctx) => {
  const [first, second] = args(ctx);
  const { relay } = ctx.deps;
  const userKey = await ctx.userKey();
  if (first === "revoke") {
    if (!second) return ctx.reply("Which cheque? /cheque revoke <code>");
    const r = await relay.revokeCheque(userKey, second);
    return ctx.reply(isRefusal(r) ? say.refusal(r) : `↩️ Cheque revoked: ${say.btc(r.amount)} is back.\n\n${say.balance(r.balance)}`);
  }
  const amount = args(ctx).join(" ");
  if (!amount) return ctx.reply("How much? /cheque 0.001 BTC or /cheque 100k sats");
  const r = await relay.createCheque(userKey, `tg:${ctx.chat.id}:${ctx.msg.message_id}`, amount);
  if (isRefusal(r)) return ctx.reply(say.refusal(r));
  const link = `https://t.me/${ctx.me.username}?start=${r.code}`;
  return ctx.reply(`🧾 Cheque for ${say.btc(r.amount)} — anyone can claim it once:\n${link}\n\nIt expires ${new Date(r.expiresAt).toISOString().slice(0, 10)}. Take it back with /cheque revoke ${r.code}`);
});
