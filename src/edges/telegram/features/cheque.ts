// /cheque <amount> <unit>: a one-time claim link t.me/<bot>?start=<code> (the unit, sats or btc, is required, as for a
// tip: a cheque has no confirmation step); `/cheque list` shows the user's open ones with their links again; `/cheque
// revoke <code>` takes one back. In a group, a /cheque carrying a code (a revoke typed in the wrong chat, a link pasted)
// has made that code public: its sender's cheque is revoked at once, and they are answered in private, never with the
// code.
import { Composer, GrammyError } from "grammy";
import { isRefusal } from "../../../domain/refusals.ts";
import { amountUnit, parseAmount } from "../../../domain/money.ts";
import * as say from "../render.ts";
import { amountWords, args, type EdgeContext } from "../context.ts";

/** What a cheque code looks like (the engine's own check: cheque.service.ts), alone or as a link's start parameter. */
const CODE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const LINK_RE = /[?&]start=([A-Za-z0-9_-]{16,64})(?:$|[&#])/;
/** Codes taken back from one group message at most (each costs a command to the cheque book). */
const MOST_CODES = 5;

/** The cheque codes a message's words carry: bare, or as the start parameter of a claim link. */
export function chequeCodes(words: readonly string[]): string[] {
  const codes = new Set<string>();
  for (const w of words) {
    const code = LINK_RE.exec(w)?.[1] ?? (CODE_RE.test(w) ? w : undefined);
    if (code !== undefined) codes.add(code);
    if (codes.size === MOST_CODES) break;
  }
  return [...codes];
}

export function chequeFeature(): Composer<EdgeContext> {
  const feature = new Composer<EdgeContext>();
  const dm = feature.chatType("private");
  const group = feature.chatType(["group", "supergroup"]);

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
    // The number and its unit; words after them are a note ("/cheque 1000 sats for Bob"), as for a tip.
    const amount = amountWords(words);
    if (!amount) return ctx.reply("How much? /cheque 0.001 BTC or /cheque 100k sats");
    // A cheque is made at once, with no confirmation step, and its amount leaves the wallet: a bare number (bitcoin,
    // for parseAmount) is refused, as for a tip. "/cheque 1000" meant as satoshis would ask for 1,000 bitcoin, and
    // "/cheque 1" (or "1.000", a thousand written the European way) would put a whole bitcoin into a link. An amount
    // that is no amount at all gets the engine's own words first.
    const parsed = parseAmount(amount);
    if (isRefusal(parsed)) return ctx.reply(say.refusal(parsed));
    if (amountUnit(amount) === undefined) return ctx.reply(say.CHEQUE_UNIT);
    // The command id makes a redelivered /cheque return the same cheque instead of a second one.
    const r = await relay.createCheque(userKey, ctx.commandId(), amount);
    if (isRefusal(r)) return ctx.reply(say.refusal(r));
    ctx.moved = true;
    return ctx.reply(say.cheque(r, link(r.code)));
  });

  // A code posted in a group can be claimed by anyone there: taken back on its sender's behalf (only the creator's
  // own revoke succeeds, as in private). Without a code, the group's usual answer (the fallback: "only /tip").
  group.command("cheque", async (ctx, next) => {
    const codes = chequeCodes(args(ctx));
    if (codes.length === 0) return next();
    // An anonymous admin or a channel: nobody to revoke for, nor to answer in private.
    if (ctx.msg.sender_chat || ctx.from.is_bot) return ctx.tell(say.CHEQUE_CODE_IN_GROUP_ANONYMOUS);
    const { relay, log } = ctx.deps;
    const userKey = await ctx.userKey();
    const answers: string[] = [];
    // Each code on its own: a failure is never left to the error boundary, whose line in the group would say whether an
    // earlier code was the poster's own live cheque ("went through" or "nothing was moved"). For the same reason
    // ctx.moved stays unset here: what was taken back is said in private only.
    for (const code of codes) {
      let r: Awaited<ReturnType<typeof relay.revokeCheque>>;
      try {
        r = await relay.revokeCheque(userKey, code);
      } catch (e) {
        log.warn({ err: errorKind(e) }, "a cheque code posted in a group could not be checked");
        answers.push(say.CHEQUE_CODE_IN_GROUP_NOT_CHECKED);
        continue;
      }
      answers.push(isRefusal(r) ? say.chequeCodeInGroupNotRevoked(r) : say.chequeRevokedInGroup(r.amount, r.balance));
    }
    let toldInPrivate = true;
    try {
      await ctx.api.sendMessage(ctx.from.id, answers.join("\n\n"));
    } catch (e) {
      // Never started a private chat with the bot, or blocked it: the group gets the general words instead.
      toldInPrivate = false;
      log.warn({ err: errorKind(e) }, "the answer to a cheque code posted in a group could not be sent in private");
    }
    // Said in the group whatever happened: never whether the code was the sender's, nor what the cheque held.
    return ctx.tell(toldInPrivate ? say.CHEQUE_CODE_IN_GROUP : say.CHEQUE_CODE_IN_GROUP_NOT_TOLD);
  });
  return feature;
}

/** What failed, without its message (it may quote a code). */
function errorKind(e: unknown): { name: string; code?: number } {
  return e instanceof GrammyError ? { name: e.name, code: e.error_code } : { name: e instanceof Error ? e.name : typeof e };
}
