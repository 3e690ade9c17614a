// How the Telegram edge says things: short, plain, one line per refusal. No money rule lives here.
// Every refusal code has the edge's own words; the engine's message adds specifics where it is safe to show.
import { describeAmount, groupDigits } from "../../domain/money.ts";
import type { RefusalCode } from "../../domain/refusals.ts";
import type { BalanceView, Cheque, ConfirmedWithdrawal, HistoryEntry, HistoryPage, MyChequeView, Refusal, WalletNotice, WithdrawalQuote } from "../../relay.types.ts";

/** The edge's words and mark for each refusal code (a Record, so a new code cannot go unrendered). */
const WORDS: Record<RefusalCode, [mark: string, words: string]> = {
  bad_amount: ["⚠️", "That is not an amount I can use. Write it like 0.001 BTC or 100000 sats."],
  bad_address: ["⚠️", "That is not a Bitcoin address."],
  wrong_network: ["⚠️", "That address belongs to another Bitcoin network."],
  insufficient_funds: ["💸", "Not enough available for that."],
  below_dust: ["⚠️", "That amount is too small to send on chain."],
  over_limit: ["⛔", "That is over a limit."],
  frozen: ["🧊", "This wallet is frozen; contact support."],
  not_found: ["❓", "I can't find that."],
  unknown_command: ["❓", "I don't know that command. Send /help for the list."],
  bad_input: ["⚠️", "I can't use that."],
  duplicate: ["⚠️", "That was already done."],
  self_transfer: ["⚠️", "You cannot send to yourself."],
  expired: ["⌛", "That has expired."],
  already_claimed: ["⚠️", "That has already been claimed."],
  revoked: ["⚠️", "That was revoked."],
  not_allowed: ["⛔", "That is not allowed."],
  stale: ["⌛", "That button has expired. Start again."],
  // A wallet that did not answer in time may still do it: never "nothing was moved" here.
  busy: ["⏳", "Busy right now; it may still go through. Check /balance before you try again."],
  node_unavailable: ["⏳", "The Bitcoin node is unavailable; try again in a minute."],
  draining: ["🚪", "This service is winding down."],
  paused: ["⏸", "Withdrawals are paused for now; your money is safe."],
  too_many_pending: ["⏳", "Too many unconfirmed deposits; the next is credited once it is confirmed."],
  internal: ["⚠️", "Something went wrong; nothing was moved."],
};

/** Codes whose engine message may carry internals (an operator's reason, an RPC error): own words only. */
const OWN_WORDS_ONLY = new Set<RefusalCode>(["internal", "paused"]);
/** In a group only these engine messages are shown: they speak of the command, never of anyone's wallet. */
const GROUP_SAFE = new Set<RefusalCode>(["bad_amount", "self_transfer"]);

/** The marks a refusal line starts with (the script edge's `expect_error` looks for them). */
export const REFUSAL_MARKS: readonly string[] = [...new Set(Object.values(WORDS).map(([m]) => m))];

export function isRefusalText(text: string): boolean {
  return REFUSAL_MARKS.some((m) => text.trimStart().startsWith(m));
}

/** One line, bounded: engine text never breaks the layout. */
const oneLine = (s: string) => {
  const line = s.replace(/\s+/g, " ").trim();
  return line.length > 180 ? `${line.slice(0, 177)}…` : line;
};

export function refusal(r: Refusal): string {
  const [mark, words] = WORDS[r.code] ?? WORDS.internal;
  return `${mark} ${OWN_WORDS_ONLY.has(r.code) || !r.message ? words : oneLine(r.message)}`;
}

/** A tip's amount without its unit: nothing is sent (a bare number would be bitcoin). */
export const TIP_UNIT = "⚠️ Say the unit: /tip 1000 sats or /tip 0.00001 btc. Nothing was sent.";

/** A tip in reply to a forwarded message: its sender is the forwarder, not the author the group sees. */
export const TIP_FORWARDED = "⚠️ That message was forwarded: reply to a message its author wrote here to tip them. Nothing was sent.";

/**
 * A tip in reply to a service message ("Bob added Carol", "Bob pinned …"): its sender is who caused it, not the person
 * it is about.
 */
export const TIP_NOT_AUTHORED = "⚠️ Reply to a message its author wrote to tip them (not to a join, a pin or another notice). Nothing was sent.";

/** A cheque's amount without its unit: nothing is made (a bare number would be bitcoin, and a cheque has no confirmation step). */
export const CHEQUE_UNIT = "⚠️ Say the unit: /cheque 1000 sats or /cheque 0.00001 btc. No cheque was made.";

/** Tips while the service winds down (drain mode): closed for everyone, whoever the receiver. */
export const TIPS_CLOSED = "🚪 This service is winding down: tips are closed. Nothing was sent.";

/** A command in a photo's (or a file's) caption: grammY's commands read only a message's text. */
export const CAPTION_COMMAND = "⚠️ Send the command as a text message of its own: I do not read commands in captions. Nothing was done.";

export const TIP_NOT_SENT = "⚠️ That tip could not be sent; send me /balance (or /start) in a private chat to see why.";

/** A refusal said in a group: never a balance, an address or the state of someone's wallet. */
export function refusalInGroup(r: Refusal): string {
  // The state of the tipper's wallet is theirs alone — none, frozen or short of the amount, the group hears the same
  // words (distinct ones would tell it which, and bound the tipper's balance); /balance in private says why. The
  // wallet checks the per-transfer limit before the balance, so its "over the limit" would tell the group the tipper
  // has the amount: the edge says the limit before it reads the balance (tip.ts), and the wallet's own is these words.
  // `draining` too: the edge says the service is winding down before it reads anything (tip.ts); the engine's own
  // refusal comes after the balance check, so in its own words it would tell the group the tipper has the amount.
  if (r.code === "insufficient_funds" || r.code === "not_found" || r.code === "frozen" || r.code === "over_limit" || r.code === "draining") return TIP_NOT_SENT;
  const [mark, words] = WORDS[r.code] ?? WORDS.internal;
  return `${mark} ${GROUP_SAFE.has(r.code) && r.message ? oneLine(r.message) : words}`;
}

/** "0.001 BTC (100,000 sats)"; one satoshi is "1 sat" (describeAmount). */
export const btc = (sats: bigint) => describeAmount(sats);

/**
 * How an amount written without a unit was read (a bare number is bitcoin), said beside the answer to it: "1000" meant
 * as satoshis is a thousand bitcoin, and "Not enough available" alone would not tell the person why.
 */
export function readAsBtc(text: string, sats: bigint): string {
  const words = oneLine(text);
  const satoshis = /^\d+$/.test(words) ? `for satoshis, write ${words} ${words === "1" ? "sat" : "sats"}` : "write sats for satoshis (100000 sats)";
  return `(${words} has no unit, so it was read as ${btc(sats)}: ${satoshis}.)`;
}

export function balance(b: BalanceView & { frozen?: string }): string {
  const lines = [
    `Available: ${btc(b.available)}`,
    `Pending: ${btc(b.pending)}`,
    `Reserved: ${btc(b.reserved)}`,
  ];
  // Not the freeze's own reason: written for operators, it can name what is not this user's (after a restore, the
  // transactions of other users' withdrawals).
  if (b.frozen) lines.push("🧊 Frozen for review: withdrawals and sending are paused until support has looked. Deposits are still credited. Contact support.");
  return lines.join("\n");
}

/**
 * The /start greeting. `first`: the first /start of this wallet (made now, or opened earlier by a tip or a cheque
 * payout sent to someone who had not started the bot, who was told nothing then); undefined when the engine does not
 * say, and then the words claim neither. What such a wallet already holds is said: nobody told its owner of it.
 */
export function welcome(first: boolean | undefined, b: BalanceView | undefined, network: string, confirmations: number): string {
  const held = b && (b.available > 0n || b.pending > 0n)
    ? `${btc(b.available)}${b.pending > 0n ? ` (and ${btc(b.pending)} pending)` : ""}`
    : undefined;
  const greeting = first === true
    ? `Your wallet is ready.${held ? ` You have ${held} waiting: received before you started the bot.` : ""}`
    : first === false ? "Welcome back." : `Your wallet is open.${held ? ` You have ${held}.` : ""}`;
  return [
    greeting,
    "",
    `/deposit — an address to send bitcoin to (credited after ${confirmations} confirmation${confirmations === 1 ? "" : "s"})`,
    "/balance — what you have",
    "/withdraw <address> <amount> — send bitcoin out",
    "/history — what happened",
    "/cheque <amount> <unit> — a one-time link anyone can claim (/cheque 1000 sats)",
    "/help — this list",
    network === "mainnet" ? "" : `\nThis service runs on ${network}: its coins have no value.`,
  ].join("\n").trim();
}

export const HELP = [
  "/start — create or open your wallet",
  "/deposit — your deposit address (text and QR code)",
  "/balance — available, pending and reserved",
  "/history — your transactions, newest first",
  "/withdraw <address> <amount> — amounts like 0.001, 0.001 BTC, 100000 sats, 100k sats",
  "/cheque <amount> <unit> — a claim link (/cheque 1000 sats); /cheque list shows yours; /cheque revoke <code> takes one back",
  "/send — how to send to someone",
  "In a group: reply to someone's message with /tip <amount> and its unit, like /tip 1000 sats or /tip 0.00001 btc",
].join("\n");

export function deposit(address: string, confirmations: number, minSats?: bigint): string {
  // A deposit below the dust limit is not credited (it would cost more to spend than it holds): said before it is sent.
  const least = minSats ? ` Deposits under ${btc(minSats)} are not credited.` : "";
  return `Send bitcoin to:\n${address}\n\nIt shows as pending at once and becomes available after ${confirmations} confirmation${confirmations === 1 ? "" : "s"}.${least}`;
}

/** `readAs`: how an amount written without a unit was read (readAsBtc). */
export function quote(q: WithdrawalQuote, readAs?: string): string {
  return [
    "Withdrawal quote",
    `To: ${q.address}`,
    `Amount: ${btc(q.amount)}`,
    `Network fee (at most): ${btc(q.fee)}`,
    `Total: ${btc(q.total)}`,
    ...(readAs ? [readAs] : []),
    "",
    "Press Confirm to send. Nothing moves until you do.",
  ].join("\n");
}

/** /withdraw with its words the other way round ("/withdraw 0.001 bcrt1q…"): nothing is quoted. */
export const WITHDRAW_ORDER = "⚠️ Address first, then amount: /withdraw <address> <amount>";

/** An address sent when the step-by-step withdrawal asked for the amount (it has its address already). */
export const ADDRESS_NOT_AMOUNT = "⚠️ That is an address; I have the address already and need the amount now.";

/** "/withdraw 0.001": the amount is kept, and the address asked for. */
export function askAddressFor(sats: bigint): string {
  return `Which address should I send ${btc(sats)} to? (/cancel to stop)`;
}

export function confirmed(r: ConfirmedWithdrawal): string {
  return `Withdrawal of ${btc(r.amount)} confirmed (fee at most ${btc(r.fee)}). It will be broadcast shortly; I will tell you.\n\n${balance(r.balance)}`;
}

export function cheque(c: Cheque, link: string): string {
  return `🧾 Cheque for ${btc(c.amount)} — anyone can claim it once:\n${link}\n\nIt expires ${new Date(c.expiresAt).toISOString().slice(0, 10)}; unclaimed by then, it comes back to you. Take it back sooner with /cheque revoke ${c.code}`;
}

/** A creator's open cheques, each with its link (`link(code)`) and how to take it back. */
export function myCheques(cheques: readonly MyChequeView[], link: (code: string) => string, more = 0): string {
  if (cheques.length === 0) return "You have no open cheques. /cheque 1000 sats makes one.";
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const lines = cheques.map((c) => {
    if (!c.funded) return `• ${btc(c.amount)}, not funded yet: if the amount left your balance, its link shows here once it arrives`;
    const head = `• ${btc(c.amount)}, expires ${day(c.expiresAt)}`;
    if (c.code === undefined) return `${head}\n  (made before links could be shown again; unclaimed, it comes back to you when it expires)`;
    return `${head}\n  ${link(c.code)}\n  take it back: /cheque revoke ${c.code}`;
  });
  const rest = more > 0 ? `\n\n…and ${more} older ${more === 1 ? "one" : "ones"}, shown here once newer ones are claimed, revoked or expired.` : "";
  return `🧾 Your open cheques (newest first):\n\n${lines.join("\n\n")}${rest}`;
}

/** The balance after a claim or revoke, when the wallet could say (the claim or revoke is done either way). */
const after = (b: BalanceView | undefined) => (b ? `\n\n${balance(b)}` : "\n\n/balance shows your balance.");

export function chequeClaimed(amount: bigint, b: BalanceView | undefined): string {
  return `🎁 Cheque claimed: ${btc(amount)} is yours.${after(b)}`;
}

export function chequeRevoked(amount: bigint, b: BalanceView | undefined): string {
  return `↩️ Cheque revoked: ${btc(amount)} is back.${after(b)}`;
}

/** A cheque code posted in a group (a revoke typed in the wrong chat): the group's answer, the same whatever happened. */
export const CHEQUE_CODE_IN_GROUP = "🔒 Cheque codes are not for groups: anyone here could claim one. I answered you in a private chat.";
/** The same, when the private answer could not be sent (no private chat with the bot yet, or the bot blocked). */
export const CHEQUE_CODE_IN_GROUP_NOT_TOLD = "🔒 Cheque codes are not for groups: anyone here could claim one. A cheque of yours whose code you post here is taken back; talk to me in a private chat to see your balance.";
/** The same, from an anonymous admin or a channel: nobody to take it back for. */
export const CHEQUE_CODE_IN_GROUP_ANONYMOUS = "🔒 Cheque codes are not for groups: anyone here could claim one. Its maker should take it back now, in a private chat with me: /cheque revoke <code>.";

const POSTED_IN_GROUP = "You posted a cheque code in a group, where others can see it";

/** In private, to the one who posted their cheque's code in a group: taken back (the code is never repeated). */
export function chequeRevokedInGroup(amount: bigint, b: BalanceView | undefined): string {
  return `↩️ Cheque revoked: ${POSTED_IN_GROUP}, so I took it back before anyone could claim it. ${btc(amount)} is back.${after(b)}`;
}

/** In private, when a code posted in a group could not be checked (the engine failed): the code is not repeated. */
export const CHEQUE_CODE_IN_GROUP_NOT_CHECKED = `⚠️ ${POSTED_IN_GROUP}. I could not check this one just now: if it is yours, revoke it here with /cheque revoke <code> (/cheque list shows your open cheques).`;

/** The cheque book's answers to a revoke that say the code is no open cheque of the poster's. */
const NOT_AN_OPEN_CHEQUE: ReadonlySet<string> = new Set(["not_found", "already_claimed", "revoked", "expired"]);

/** In private, when a code posted in a group was not taken back: why only if it is the poster's own state. */
export function chequeCodeInGroupNotRevoked(r: Refusal): string {
  // Busy (try again) or frozen: the poster's own state, theirs to know. The book's own answers about the code —
  // someone else's, one claimed, revoked or expired — get the same words: this never tells anyone about another's
  // cheque. Anything else (the wallet held off after errors, a failed write) says nothing of the code: "not yours"
  // there left a poster's own live cheque claimable by the group, its poster told to do nothing.
  if (r.code === "busy" || r.code === "frozen") return `${refusal(r)}\n(${POSTED_IN_GROUP}: take it back here with /cheque revoke and its code.)`;
  if (!NOT_AN_OPEN_CHEQUE.has(r.code)) return CHEQUE_CODE_IN_GROUP_NOT_CHECKED;
  return `⚠️ ${POSTED_IN_GROUP}. It was not taken back: it is not one of your open cheques (someone else's, or one already claimed, revoked or expired). /cheque list shows yours.`;
}

/** A transfer's other side is a cheque (its escrow, "cheque:<hash>": cheques.ts), not a person. */
export const isChequeSide = (counterparty: string | undefined) => counterparty?.startsWith("cheque:") === true;

/**
 * Which cheques the wallet whose history is shown made, as far as the edge looked (`cheques`: their counterparties), and
 * whether it looked at all of that history (`complete`). A cheque's payout is one kind of entry whoever receives it:
 * its claimant, or its maker when it was revoked or expired (a maker cannot claim their own). Only the maker has the
 * entry that funded it.
 */
export interface ChequesMade {
  cheques: ReadonlySet<string>;
  complete: boolean;
}

/**
 * What an entry was, in the words a person used for it: the counterparty tells a tip from a cheque (an entry without
 * one, if any was ever written so, is only "sent" or "received").
 */
function what(e: HistoryEntry, made: ChequesMade | undefined): string {
  // "cheque returned": taken back by its maker, or expired unclaimed (the entry does not say which).
  const cheque = isChequeSide(e.counterparty);
  const tip = e.counterparty === undefined ? "" : "tip ";
  switch (e.kind) {
    case "transfer_out":
      // A transfer its receiver refused, back with its sender: an entry of its own after the one that sent it.
      if (e.status === "returned") return cheque ? "cheque not made: back to you" : `${tip}not delivered: back to you`;
      return cheque ? "cheque made" : `${tip}sent`;
    case "transfer_in":
      if (!cheque) return `${tip}received`;
      if (made?.cheques.has(e.counterparty!)) return "cheque returned";
      return made?.complete ? "cheque claimed" : "from a cheque";
    case "deposit":
      // Below the deposit minimum when it came (its amount is 0 here): never credited. "rebooked": what support took
      // back for a deposit that left the chain, back once a block had it again (an entry after the deposit's own).
      if (e.status === "ignored") return "deposit below the minimum (not credited)";
      return e.status === "rebooked" ? "deposit confirmed again: given back" : `deposit (${e.status})`;
    case "withdrawal":
      return `withdrawal (${e.status})`;
    case "adjustment":
      // An operator's correction: its reason is the operators' own and is not in the entry.
      return "adjusted by support";
    default:
      return `${e.kind} (${e.status})`;
  }
}

function entry(e: HistoryEntry, made: ChequesMade | undefined): string {
  const when = new Date(e.at).toISOString().slice(0, 16).replace("T", " ");
  const sign = e.amount < 0n ? "−" : "+";
  const abs = e.amount < 0n ? -e.amount : e.amount;
  return `${when}  ${sign}${btc(abs)}  ${what(e, made)}`;
}

/**
 * Why a transfer came back, in plain words, from its receiver's refusal code. A cheque's funding is refused only when
 * the cheque is gone (its /cheque was answered as failed, or it expired waiting for the funds).
 */
function returnedWhy(toCheque: boolean, reason: string): string {
  if (toCheque) return reason === "not_found" ? "the cheque it was to fund no longer exists (its /cheque did not go through)" : "the cheque book refused it";
  if (reason === "bad_amount") return "its amount could not be taken";
  if (reason === "not_found") return "its receiver could not be found";
  return "its receiver refused it";
}

export function history(h: HistoryPage, made?: ChequesMade): string {
  if (h.total === 0) return "No transactions yet. Send /deposit to get an address.";
  return [`History — page ${h.page + 1} of ${h.pages}`, ...h.entries.map((e) => entry(e, made))].join("\n");
}

export function notice(n: WalletNotice): string {
  switch (n.kind) {
    case "deposit_seen":
      return `📥 Deposit seen: ${btc(n.amount)} (pending until confirmed)`;
    case "deposit_confirmed":
      return `✅ Deposit confirmed: ${btc(n.amount)} is now available`;
    case "deposit_ignored":
      return `⚠️ A deposit of ${btc(n.amount)} was not credited: the minimum is ${btc(n.minimum)} (less costs more to spend than it holds). Send at least that to your deposit address.`;
    case "deposit_dropped":
      return `⚠️ A pending deposit of ${btc(n.amount)} left the network and was not credited`;
    case "deposit_rebooked":
      return `✅ A deposit that support took back when it left the chain is confirmed again: ${btc(n.amount)} is back in your balance`;
    case "withdrawal_broadcast":
      return `📤 Withdrawal of ${btc(n.amount)} broadcast: ${n.txid}`;
    case "withdrawal_sent":
      return `✅ Withdrawal of ${btc(n.amount)} confirmed (fee ${groupDigits(n.fee)} sats)`;
    case "withdrawal_released":
      return `↩️ A withdrawal could not be sent; ${btc(n.amount)} is available again`;
    case "transfer_received":
      return `🎁 You received ${btc(n.amount)}`;
    case "transfer_returned": {
      const toCheque = n.to.startsWith("cheque:");
      return `↩️ ${toCheque ? `The ${btc(n.amount)} for your cheque` : `A transfer of ${btc(n.amount)} you sent`} could not be delivered: ${returnedWhy(toCheque, n.reason)}. ${btc(n.amount)} is back in your balance`;
    }
    case "cheque_expired":
      return `⌛ Your cheque for ${btc(n.amount)} expired unclaimed: ${btc(n.amount)} is back in your balance`;
    case "cheque_claimed":
      return `🧾 Your cheque for ${btc(n.amount)} was claimed`;
    case "adjusted":
      // The amount and who, never the operators' reason (their words, about this user's account).
      return `🛠 Support adjusted your balance: ${n.amount < 0n ? "−" : "+"}${btc(n.amount < 0n ? -n.amount : n.amount)}`;
    case "announcement":
      return `📢 ${n.text}`;
  }
}
