// Money between users by Telegram identity: in groups only `/tip <amount> <unit>` as a reply (the receiver is the
// replied-to message's author; the unit, sats or btc, is required: a tip has no confirmation step); in private chat
// /send and /tip explain how. A group never sees a balance or an address, not even in a refusal.
import { Composer } from "grammy";
import { isRefusal, refuse } from "../../../domain/refusals.ts";
import { amountUnit, parseAmount } from "../../../domain/money.ts";
import * as say from "../render.ts";
import { args, type EdgeContext } from "../context.ts";

export function tipFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const group = feature.chatType(["group", "supergroup"]);
  const dm = feature.chatType("private");

  // Every answer in the group goes through ctx.tell: the group's outbox, so this update never waits for the group's
  // send budget (~20 messages a minute).
  group.command("tip", async (ctx) => {
    // An anonymous admin or a channel speaks as a bot account: their money would be someone else's.
    if (ctx.msg.sender_chat || ctx.from.is_bot) return ctx.tell("Tip as yourself: anonymous admins and channels cannot tip.");
    const reply = ctx.msg.reply_to_message;
    // In a forum topic every message "replies" to the topic's first message: that is not a choice of receiver.
    const topicStarter = ctx.msg.is_topic_message && reply?.message_id === ctx.msg.message_thread_id;
    const target = topicStarter ? undefined : reply?.from;
    if (!target) return ctx.tell("Reply to someone's message with /tip <amount> and its unit (/tip 1000 sats) to tip them.");
    if (target.is_bot || reply?.sender_chat) return ctx.tell("Only people can receive tips.");
    // A forwarded message's `from` is who forwarded it, not the author the group sees ("Forwarded from Carol"): a tip
    // there would pay the forwarder. Nothing is read or sent.
    if (reply?.forward_origin) return ctx.tell(say.TIP_FORWARDED);
    const amount = args(ctx).join(" ");
    if (!amount) return ctx.tell("How much? Reply with /tip 1000 sats, for example.");
    // Parsed here only to say the amount back (the relay's answer has no amount); the engine parses on its own.
    const shown = parseAmount(amount);
    if (isRefusal(shown)) return ctx.tell(say.refusal(shown));
    // A tip goes at once, with no confirmation: a bare number (bitcoin, for parseAmount) is refused, not read as BTC —
    // "/tip 1" meant as a satoshi or a dollar would send a whole bitcoin.
    if (amountUnit(amount) === undefined) return ctx.tell(say.TIP_UNIT);
    const { relay, identity } = ctx.deps;
    // Winding down: tips are closed for everyone, said before anything is read (whether one went through would tell the
    // group who has a wallet here, and a refusal after the balance check that the tipper has the amount).
    if (relay.info().draining) return ctx.tell(say.TIPS_CLOSED);
    // Over the per-transfer limit: said before anything about the tipper is read, so the group hears the same whatever
    // they have (the wallet checks the limit before the balance: its refusal would tell the group they have the amount).
    const most = relay.info().maxTransferSats;
    if (most !== undefined && shown > most) return ctx.tell(say.refusal(refuse("over_limit", `A single transfer can move at most ${say.btc(most)}; nothing was sent.`)));
    const from = await ctx.userKey();
    // The sender first: the receiver's key costs an argon2id derivation (a quarter of a second of the identity's
    // worker, store/identity.ts), which a tip from someone without a wallet, or without the money, must not cost. The
    // refusals are the engine's own, in its order (no wallet, oneself, frozen, not enough); it checks all of it again
    // (this is a read: money may move meanwhile), after the limit, said above. One differs: a tip already sent,
    // redelivered after a restart to a tipper who now has less than its amount, is answered "not enough" instead of
    // "already sent".
    const mine = await relay.balance(from);
    if (isRefusal(mine)) return ctx.tell(say.refusalInGroup(mine));
    if (target.id === ctx.from.id) return ctx.tell(say.refusalInGroup(refuse("self_transfer", "You cannot send to yourself.")));
    if (mine.frozen) return ctx.tell(say.refusalInGroup(refuse("frozen", mine.frozen)));
    if (shown > mine.available) return ctx.tell(say.refusalInGroup(refuse("insufficient_funds", "")));
    const to = await identity.userKey(target.id);
    const r = await relay.transfer(from, ctx.commandId(), to, amount);
    if (isRefusal(r)) return ctx.tell(say.refusalInGroup(r));
    ctx.moved = true;
    return ctx.tell(r.repeated ? "That tip was already sent." : `🎁 Tip sent: ${say.btc(shown)}`, { moved: true });
  });

  dm.command("send", (ctx) => ctx.reply("To send to someone, reply to their message in a group with /tip <amount> and its unit (/tip 1000 sats), or make a link with /cheque <amount>."));
  dm.command("tip", (ctx) => ctx.reply("Tips work in groups: reply to someone's message there with /tip <amount> and its unit (/tip 1000 sats or /tip 0.00001 btc). Here, /cheque <amount> makes a link."));
  return feature;
}
