// Money between users by Telegram identity: in groups only `/tip <amount> <unit>` as a reply (the receiver is the
// replied-to message's author; the unit, sats or btc, is required: a tip has no confirmation step); in private chat
// /send and /tip explain how. A group never sees a balance or an address, not even in a refusal.
import { Composer } from "grammy";
import { isRefusal, refuse } from "../../../domain/refusals.ts";
import { amountUnit, parseAmount } from "../../../domain/money.ts";
import * as say from "../render.ts";
import { amountWords, args, type EdgeContext } from "../context.ts";
import type { Message } from "grammy/types";

/**
 * What a message's sender wrote or sent themselves. A service message has a sender too, but it is who caused it, not
 * whom it is about: "Bob added Carol" (new_chat_members) and "Bob pinned «Carol's post»" come from Bob, and a tip in
 * reply to either, meant for Carol, would pay Bob. Only these kinds name a receiver; anything else (a service message,
 * a kind Telegram adds later) is refused. A shared story is someone's only if it is their own: its message comes from
 * whoever shared it, while the group sees the story's poster.
 */
const AUTHORED: ReadonlyArray<keyof Message> = [
  "text", "photo", "animation", "audio", "document", "paid_media", "sticker", "video", "video_note", "voice",
  "contact", "dice", "game", "poll", "venue", "location", "checklist",
];
function authoredBySender(msg: Message): boolean {
  // Optional chains: an update's shape is Telegram's word, not checked (a story without its chat is nobody's).
  if (msg.story) return msg.story.chat?.id !== undefined && msg.story.chat.id === msg.from?.id;
  return AUTHORED.some((k) => msg[k] !== undefined);
}

/** The newest history entries searched for a redelivered tip's id (the relay's largest page). */
const RECENT = 50;

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
    // A service message ("Bob added Carol", a pin) comes from who caused it, not whom it is about: the same.
    if (reply && !authoredBySender(reply)) return ctx.tell(say.TIP_NOT_AUTHORED);
    // The number and its unit; words after them are a note ("/tip 1000 sats thanks for the help"), not the amount.
    const amount = amountWords(args(ctx));
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
    // (this is a read: money may move meanwhile), after the limit, said above.
    const mine = await relay.balance(from);
    if (isRefusal(mine)) return ctx.tell(say.refusalInGroup(mine));
    if (target.id === ctx.from.id) return ctx.tell(say.refusalInGroup(refuse("self_transfer", "You cannot send to yourself.")));
    const short = mine.frozen ? refuse("frozen", mine.frozen) : shown > mine.available ? refuse("insufficient_funds", "") : undefined;
    if (short) {
      // The engine answers a repeated id before it looks at the balance; this read-ahead must too. A tip redelivered
      // after a restart (Telegram sends again what it did not see acknowledged) to a tipper who has since spent, or been
      // frozen, was answered "could not be sent" though it had gone. Looked up only here, in the tipper's newest entries
      // (a redelivery comes minutes after the tip, not a page of history later): a tip that goes costs nothing more.
      // A lookup that fails leaves the answer as it was without it (the tipper's /balance says the rest).
      const id = ctx.commandId();
      const recent = await relay.history(from, 0, RECENT).catch((e: unknown) => {
        ctx.deps.log.warn({ err: e instanceof Error ? e.name : typeof e }, "a tip's history lookup failed");
        return undefined;
      });
      const sent = recent !== undefined && !isRefusal(recent) && recent.entries.some((e) => e.kind === "transfer_out" && e.ref === id);
      if (!sent) return ctx.tell(say.refusalInGroup(short));
      ctx.moved = true;
      return ctx.tell("That tip was already sent.", { moved: true });
    }
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
