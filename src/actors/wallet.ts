// The wallet actor: one per user key. `decide` (pure, no I/O) turns a command into events or a refusal;
// `evolve` (pure) applies one event. The actor persists the events of one command as one journal record,
// then answers — so an answered command is durable, and a repeated id is answered from the state (or, for a
// transfer, from the wallet's transfer index: wallet.records.ts).
import { refuse, type Refusal, isRefusal } from "../domain/refusals.ts";
import { describeAmount, MAX_SATS } from "../domain/money.ts";
import { withKey } from "./idmap.ts";
import type {
  Adjustment, Answer, BalanceView, Deposit, HistoryEntry, WalletCommand, WalletEvent, WalletNotice, WalletState, Withdrawal,
} from "./wallet.messages.ts";

export * from "./wallet.messages.ts";

/**
 * What a wallet's records beside its journal know (wallet.records.ts): the transfers it has sent, or received from a
 * sender, by id; its deposits and withdrawals once finished (they have left the state). A repeat is answered from
 * them, never applied again.
 */
export interface WalletIndex {
  sent(userKey: string, id: string): boolean;
  received(userKey: string, from: string, id: string): boolean;
  deposit(userKey: string, outpoint: string): Deposit | undefined;
  withdrawal(userKey: string, id: string): Withdrawal | undefined;
  /** An operator's adjustment of this wallet by id (`adjust`); without it, `adjust` is refused (it could not tell a repeat). */
  adjustment?(userKey: string, id: string): Adjustment | undefined;
}

export interface DecideContext {
  now: number;
  /** The wallet's records: the actor passes them (WalletRecords); reads need none. */
  index?: WalletIndex;
}

/** A decision: the events to journal, and how to answer once they are applied. */
export interface Decision<R> {
  events: WalletEvent[];
  answer: (after: WalletState) => R;
}

// Shared, frozen empties: evolve never mutates state (it copies), so every new wallet can point at the same
// empty maps until its first deposit, transfer or withdrawal — a few hundred bytes per idle wallet.
const NONE = Object.freeze(Object.create(null)) as Record<string, never>;
const NO_LIST = Object.freeze([]) as unknown as never[];

/**
 * Every field of the state, the optional ones as undefined: a spread that adds a field the source lacks
 * (`{ ...s, openedAt }`) gives each object a hidden class of its own in V8 (~380 bytes per resident wallet), while
 * one that only replaces fields shares the source's.
 */
export function emptyWallet(userKey: string): WalletState {
  return {
    userKey, opened: false, openedAt: undefined, chatHandle: undefined, frozen: undefined, available: 0n, pending: 0n, reserved: 0n,
    addresses: NO_LIST, addressUsed: false, deposits: NONE, withdrawals: NONE, outgoing: NONE, historyTotal: 0, withdrawnByHour: NO_LIST, told: undefined,
  };
}

/**
 * A state from a snapshot's data, with every field again (JSON drops those set to undefined). A snapshot from before
 * format 7 has no `addressUsed`, every deposit the wallet had, and every address.
 */
export function restoreWallet(data: WalletState): WalletState {
  // Before the 24-hour window, a snapshot held the calendar day's total (`day`): it counts from that day's start.
  const { day, ...rest } = data as WalletState & { day?: { date: string; withdrawn: bigint } };
  const s = { ...emptyWallet(data.userKey), ...rest };
  if (day && day.withdrawn > 0n && !data.withdrawnByHour) s.withdrawnByHour = [[hourOf(Date.parse(`${day.date}T00:00:00Z`)), day.withdrawn]];
  if (data.addressUsed === undefined) s.addressUsed = Object.values(s.deposits).some((d) => d.address === s.addresses.at(-1));
  // A snapshot from before the state kept ADDRESSES_KEPT of them.
  if (s.addresses.length > ADDRESSES_KEPT) s.addresses = s.addresses.slice(-ADDRESSES_KEPT);
  return s;
}

/**
 * How many of its deposit addresses a wallet's state keeps (the newest): `/deposit` needs the last one, a repeated
 * `add_address` is recognised among them, and the state stays as small as a new wallet's however many it was given.
 */
export const ADDRESSES_KEPT = 20;

export const balanceOf = (s: WalletState): BalanceView => ({ available: s.available, pending: s.pending, reserved: s.reserved });

const outpointOf = (txid: string, vout: number) => `${txid}:${vout}`;
const HOUR_MS = 3_600_000;
const hourOf = (ms: number) => Math.floor(ms / HOUR_MS);
/** The hours a withdrawal counts against the daily limit: the 24 up to and including the current one. */
const LIMIT_HOURS = 24;

/** What the wallet's withdrawals reserved in the 24 hours up to `at` (to the hour), and when the oldest of it stops counting. */
function withdrawnInWindow(s: WalletState, at: number): { sats: bigint; freesAt: number | undefined } {
  const first = hourOf(at) - LIMIT_HOURS + 1;
  let sats = 0n, freesAt: number | undefined;
  for (const [h, x] of s.withdrawnByHour) {
    if (h < first || x <= 0n) continue;
    sats += x;
    freesAt ??= (h + LIMIT_HOURS) * HOUR_MS;
  }
  return { sats, freesAt };
}

/** The window with `sats` added to hour `hour` (negative: taken back), as of `at`: the hours before it dropped. */
function inWindow(list: WalletState["withdrawnByHour"], at: number, hour: number, sats: bigint): WalletState["withdrawnByHour"] {
  const first = hourOf(at) - LIMIT_HOURS + 1;
  const out = list.filter(([h]) => h >= first && h !== hour);
  const total = (list.find(([h]) => h === hour)?.[1] ?? 0n) + sats;
  if (hour >= first && total > 0n) out.push([hour, total]);
  out.sort((a, b) => a[0] - b[0]);
  return out.length === 0 ? NO_LIST : out;
}
const noChange = <R>(answer: (s: WalletState) => R): Decision<R> => ({ events: [], answer });

/** A command to a wallet not opened yet (the user's own words: the admin edge names the key instead). */
export const NO_WALLET = "You have no wallet yet. Send /start to create one.";

/** An adjustment's id: what the admin edge takes for its other ids. */
const ADJUST_ID = /^[\w:.-]{1,128}$/;
/** The longest reason an adjustment keeps (it rides in the wallet's journal, and operators read it). */
export const ADJUST_REASON_MAX = 200;
const OUTPOINT = /^[0-9a-f]{64}:\d{1,10}$/;

/** An adjustment as its event says it and its record keeps it; `h`: its history entry's number. */
export function adjustmentOf(e: Extract<WalletEvent, { t: "adjusted" }>, h: number): Adjustment {
  return { amount: BigInt(e.amount), reason: e.reason, by: e.by, ...(e.outpoint !== undefined ? { outpoint: e.outpoint } : {}), at: e.at, h };
}

/**
 * Decides what a command does. Never reads the clock or the disk: `ctx` carries the time. The answer's
 * type is the one the command's `reply` expects.
 */
export function decide(s: WalletState, cmd: WalletCommand, ctx: DecideContext): Decision<unknown> | Refusal {
  const at = ctx.now;
  if (!s.opened && cmd.type !== "open" && cmd.type !== "state" && cmd.type !== "resume" && cmd.type !== "receive_transfer" && cmd.type !== "receive_transfers" && cmd.type !== "return_transfer" && cmd.type !== "crash") {
    // Transfers may reach a user who has not opened yet (a tip): it opens the wallet implicitly below.
    return refuse("not_found", NO_WALLET);
  }
  switch (cmd.type) {
    case "open": {
      if (s.opened) {
        const events: WalletEvent[] = cmd.chatHandle && cmd.chatHandle !== s.chatHandle ? [{ t: "handle_set", chatHandle: cmd.chatHandle }] : [];
        // A wallet opened by a transfer (a tip, a cheque payout) to someone who had not started the bot has no chat
        // handle: this /start is its owner's first, and the edge greets them as new and says what it already holds.
        const firstStart = cmd.chatHandle !== undefined && s.chatHandle === undefined;
        return { events, answer: (a) => ({ created: false, firstStart, balance: balanceOf(a) }) };
      }
      return { events: [{ t: "opened", at, ...(cmd.chatHandle ? { chatHandle: cmd.chatHandle } : {}) }], answer: (a) => ({ created: true, balance: balanceOf(a) }) };
    }
    case "balance":
      return noChange((a) => ({ ...balanceOf(a), ...(a.frozen ? { frozen: a.frozen.reason } : {}) }));
    case "history":
      return noChange((a) => ({ total: a.historyTotal }));
    case "state":
      return noChange((a) => a);
    case "withdrawal": {
      const w = withdrawalOf(s, cmd.id, ctx);
      return noChange((a) => ({ ...(w ? { withdrawal: w } : {}), balance: balanceOf(a) }));
    }
    case "resume":
      return noChange((a) => ({ transfers: Object.keys(a.outgoing).length, withdrawals: Object.values(a.withdrawals).filter((w) => w.status === "reserved" || w.status === "broadcast").length }));
    case "crash":
      throw new Error("crash requested");
    case "current_address": {
      // The newest address is reused until a deposit arrives on it, so /deposit does not burn addresses.
      const last = s.addresses.at(-1);
      return noChange(() => (last && !s.addressUsed ? { address: last } : {}));
    }
    case "add_address":
      if (s.addresses.includes(cmd.address)) return noChange(() => ({ address: cmd.address }));
      return { events: [{ t: "address_added", address: cmd.address, at }], answer: () => ({ address: cmd.address }) };
    case "deposit":
      return decideDeposit(s, cmd, at, ctx);
    case "deposit_ignored": {
      const { txid, vout, address, amount } = cmd.deposit;
      const outpoint = outpointOf(txid, vout);
      const known = depositOf(s, outpoint, ctx);
      // Once per outpoint (a scan lists it again); one already credited or pending stays as it is.
      if (known) return noChange(() => ({ status: known.status }));
      if (amount <= 0n) return refuse("bad_amount", "A deposit must be more than zero.");
      if (amount >= cmd.minimum) return refuse("bad_input", `A deposit of ${amount} sats is not below the minimum of ${cmd.minimum}; credit it instead.`);
      return {
        events: [{ t: "deposit_ignored", outpoint, txid, vout, address, amount: amount.toString(), minimum: cmd.minimum.toString(), at }],
        answer: () => ({ status: "ignored" as const }),
      };
    }
    case "deposit_removed": {
      const d = depositOf(s, cmd.outpoint, ctx);
      if (!d) return noChange(() => ({ status: "unknown" as const }));
      if (d.status === "pending") return { events: [{ t: "deposit_dropped", outpoint: cmd.outpoint, at }], answer: () => ({ status: "dropped" as const }) };
      if (d.status === "confirmed") {
        // Deeper than the confirmation target: never silently taken back; the wallet freezes for review.
        return { events: [{ t: "deposit_reversed", outpoint: cmd.outpoint, at }], answer: () => ({ status: "reversed" as const }) };
      }
      return noChange(() => ({ status: d.status }));
    }
    case "reserve_withdrawal":
      return decideWithdrawal(s, cmd.request, at, ctx);
    case "withdrawal_broadcast": {
      const w = withdrawalOf(s, cmd.id, ctx);
      if (!w) return refuse("not_found", `No withdrawal ${cmd.id} in this wallet.`);
      if (w.status !== "reserved" && w.status !== "broadcast") return noChange(() => ({ ok: true as const }));
      if (w.status === "broadcast" && w.txid === cmd.txid) return noChange(() => ({ ok: true as const }));
      return { events: [{ t: "withdrawal_broadcast", id: cmd.id, txid: cmd.txid, at }], answer: () => ({ ok: true as const }) };
    }
    case "withdrawal_settled": {
      const w = withdrawalOf(s, cmd.id, ctx);
      if (!w) return refuse("not_found", `No withdrawal ${cmd.id} in this wallet.`);
      if (w.status === "sent" || w.status === "released") return noChange(() => ({ ok: true as const }));
      if (cmd.fee < 0n) return refuse("bad_input", "A settled fee cannot be negative.");
      // Never charge more than quoted, whatever the batch finally paid.
      const fee = cmd.fee > w.quotedFee ? w.quotedFee : cmd.fee;
      return { events: [{ t: "withdrawal_settled", id: cmd.id, txid: cmd.txid, fee: fee.toString(), at }], answer: () => ({ ok: true as const }) };
    }
    case "withdrawal_released": {
      const w = withdrawalOf(s, cmd.id, ctx);
      if (!w) return refuse("not_found", `No withdrawal ${cmd.id} in this wallet.`);
      // Broadcast too: the payout side releases a batch only once its transaction can never be mined.
      if (w.status !== "reserved" && w.status !== "broadcast") return noChange(() => ({ ok: true as const }));
      return { events: [{ t: "withdrawal_released", id: cmd.id, reason: cmd.reason, at }], answer: () => ({ ok: true as const }) };
    }
    case "send_transfer":
      return decideSend(s, cmd, at, ctx.index?.sent(s.userKey, cmd.id) === true);
    case "receive_transfer": {
      if (ctx.index?.received(s.userKey, cmd.from, cmd.id)) return noChange(() => ({ repeated: true }));
      if (cmd.amount <= 0n) return refuse("bad_amount", "A transfer must move more than zero.");
      const events: WalletEvent[] = s.opened ? [] : [{ t: "opened", at }];
      // Why a cheque pays rides in the event (noticeOf reads it); only a cheque's payout has one.
      events.push(cmd.cheque !== undefined && cmd.from.startsWith("cheque:")
        ? { t: "transfer_received", id: cmd.id, from: cmd.from, amount: cmd.amount.toString(), at, cheque: cmd.cheque }
        : { t: "transfer_received", id: cmd.id, from: cmd.from, amount: cmd.amount.toString(), at });
      return { events, answer: () => ({ repeated: false }) };
    }
    case "receive_transfers": {
      // Several credits in one record (the courier gathers them for a busy receiver); each id counts once.
      if (cmd.transfers.some((x) => x.amount <= 0n)) return refuse("bad_amount", "A transfer must move more than zero.");
      const fresh = new Set<string>();
      const repeated = cmd.transfers.map((x) => {
        const both = x.from + "\u0000" + x.id;
        if (fresh.has(both) || ctx.index?.received(s.userKey, x.from, x.id)) return true;
        fresh.add(both);
        return false;
      });
      const events: WalletEvent[] = s.opened || fresh.size === 0 ? [] : [{ t: "opened", at }];
      cmd.transfers.forEach((x, i) => {
        if (!repeated[i]) events.push({ t: "transfer_received", id: x.id, from: x.from, amount: x.amount.toString(), at });
      });
      return { events, answer: () => ({ repeated }) };
    }
    case "transfer_acked": {
      const ids = [...new Set(cmd.ids)].filter((id) => own(s.outgoing, id) !== undefined);
      return { events: ids.map((id) => ({ t: "transfer_acked", id })), answer: () => ({ ok: true as const }) };
    }
    case "return_transfer": {
      // Only what is still in the outbox: a repeat (the first answer lost), or a transfer acknowledged meanwhile,
      // changes nothing. An unopened wallet has nothing in it (answered so, not "no wallet").
      const out = own(s.outgoing, cmd.id);
      if (!out) return noChange(() => ({ returned: false }));
      return {
        events: [{ t: "transfer_returned", id: cmd.id, to: out.to, amount: out.amount.toString(), reason: cmd.reason, at }],
        answer: () => ({ returned: true }),
      };
    }
    case "freeze":
      if (s.frozen) return noChange(() => ({ frozen: true }));
      return { events: [{ t: "frozen", reason: cmd.reason, by: cmd.by, at }], answer: () => ({ frozen: true }) };
    case "unfreeze":
      if (!s.frozen) return noChange(() => ({ frozen: false }));
      return { events: [{ t: "unfrozen", by: cmd.by, at }], answer: () => ({ frozen: false }) };
    case "announce":
      if (!s.opened || s.told?.includes(cmd.id)) return noChange(() => ({ told: false }));
      return { events: [{ t: "told", id: cmd.id, text: cmd.text, at }], answer: () => ({ told: true }) };
    case "adjust":
      return decideAdjust(s, cmd, at, ctx);
  }
}

/**
 * An operator's correction of the books: a confirmed deposit a deep reorg took back (still in available), a payout the
 * restored books do not know (after a lossy restore), or a credit owed. Once per id: its record (written with the
 * event) answers a repeat, however old. A debit takes only what is available: what is beyond it (the user withdrew or
 * sent the coins meanwhile) is the house's loss, covered from the node wallet; the refusal says how much can be booked.
 * Frozen wallets take it (settling one is what it is for), and stay frozen.
 */
function decideAdjust(s: WalletState, cmd: Extract<WalletCommand, { type: "adjust" }>, at: number, ctx: DecideContext): Decision<unknown> | Refusal {
  if (typeof cmd.id !== "string" || !ADJUST_ID.test(cmd.id)) return refuse("bad_input", "An adjustment's id is 1 to 128 letters, digits, '_', ':', '.' or '-'.");
  const lookup = ctx.index?.adjustment;
  // Without the records a repeat cannot be told from a new one: nothing is booked blind.
  if (!lookup) return refuse("internal", "This wallet's records are not available to check the adjustment's id; nothing was changed.");
  const done = lookup.call(ctx.index, s.userKey, cmd.id);
  if (done) {
    if (done.amount !== cmd.amount || done.outpoint !== cmd.outpoint) {
      return refuse("duplicate", `Adjustment ${cmd.id} was already booked, for ${describeAmount(done.amount)}${done.outpoint ? ` against deposit ${done.outpoint}` : ""}; nothing was changed. A new adjustment takes a new id.`);
    }
    return noChange((a) => ({ repeated: true, adjustment: done, balance: balanceOf(a) }));
  }
  if (typeof cmd.amount !== "bigint" || cmd.amount === 0n) return refuse("bad_amount", "An adjustment must move more than zero.");
  const size = cmd.amount < 0n ? -cmd.amount : cmd.amount;
  if (size > MAX_SATS) return refuse("bad_amount", "That is more bitcoin than will ever exist.");
  const reason = typeof cmd.reason === "string" ? cmd.reason.trim() : "";
  // One line: it is shown to operators in lists and logs of actions.
  if (reason.length === 0 || reason.length > ADJUST_REASON_MAX || /[\u0000-\u001f\u007f]/.test(reason)) {
    return refuse("bad_input", `An adjustment needs a reason of one line, 1 to ${ADJUST_REASON_MAX} characters.`);
  }
  if (typeof cmd.by !== "string" || cmd.by.length === 0) return refuse("bad_input", "An adjustment must name the operator who makes it.");
  if (cmd.outpoint !== undefined) {
    if (typeof cmd.outpoint !== "string" || !OUTPOINT.test(cmd.outpoint)) return refuse("bad_input", "A deposit is named by its outpoint, txid:vout.");
    const d = depositOf(s, cmd.outpoint, ctx);
    if (!d) return refuse("not_found", `No deposit ${cmd.outpoint} in this wallet.`);
    if (d.status !== "reversed") return refuse("not_allowed", `Deposit ${cmd.outpoint} is ${d.status}, not reversed: only a deposit a reorg took back after it was confirmed is booked this way.`);
    if (cmd.amount > 0n) return refuse("bad_amount", "An adjustment for a reversed deposit takes its coins back: a debit (a negative amount).");
    const left = d.amount - (d.adjusted ?? 0n);
    if (size > left) return refuse("over_limit", `Deposit ${cmd.outpoint} was ${describeAmount(d.amount)}, of which ${describeAmount(left)} is left to book; nothing was changed.`);
  }
  if (cmd.amount < 0n && size > s.available) {
    return refuse("insufficient_funds", `Available is ${describeAmount(s.available)}: a debit of ${describeAmount(size)} would make it negative; nothing was changed. Book at most the available amount; the rest is a loss the house covers.`);
  }
  const e: Extract<WalletEvent, { t: "adjusted" }> = { t: "adjusted", id: cmd.id, amount: cmd.amount.toString(), reason, by: cmd.by, ...(cmd.outpoint !== undefined ? { outpoint: cmd.outpoint } : {}), at };
  return { events: [e], answer: (a) => ({ repeated: false, adjustment: adjustmentOf(e, a.historyTotal), balance: balanceOf(a) }) };
}

/** A deposit of this wallet: pending (in the state) or confirmed, dropped, reversed or ignored (in its records). */
function depositOf(s: WalletState, outpoint: string, ctx: DecideContext): Deposit | undefined {
  return own(s.deposits, outpoint) ?? ctx.index?.deposit(s.userKey, outpoint);
}

/** A withdrawal of this wallet: open (in the state) or finished (in its records). */
function withdrawalOf(s: WalletState, id: string, ctx: DecideContext): Withdrawal | undefined {
  return own(s.withdrawals, id) ?? ctx.index?.withdrawal(s.userKey, id);
}

function decideDeposit(s: WalletState, cmd: Extract<WalletCommand, { type: "deposit" }>, at: number, ctx: DecideContext): Decision<unknown> | Refusal {
  const { txid, vout, address, amount, confirmations } = cmd.deposit;
  if (amount <= 0n) return refuse("bad_amount", "A deposit must be more than zero.");
  const outpoint = outpointOf(txid, vout);
  // Pending in the state; confirmed, dropped or reversed in the records (a block scanned again lists it again).
  const known = depositOf(s, outpoint, ctx);
  const events: WalletEvent[] = [];
  // A dropped deposit that comes back (re-mined after a reorg) is pending again; an ignored one (below the minimum then)
  // is credited if the watcher now sends it as a deposit (the minimum was lowered), as a new entry.
  const again = !known || known.status === "dropped" || known.status === "ignored";
  if (again) {
    events.push({ t: "deposit_seen", outpoint, txid, vout, address, amount: amount.toString(), at });
  } else if (known.amount !== amount) {
    return refuse("bad_input", `Deposit ${outpoint} was seen with a different amount; refusing to change it.`);
  }
  // Each of the wallet's deposit events copies its pending deposits, and a snapshot writes them all: a wallet holds at
  // most `maxPending`. One more that is not confirmed yet waits outside (the watcher lists it again until it has
  // `target`, and it is then credited confirmed in one go, never entering the state); repeats and confirmations of the
  // deposits it holds, and deposits that arrive confirmed, are always taken.
  if (again && confirmations < cmd.target && pendingDeposits(s.deposits) >= cmd.maxPending) {
    return refuse("too_many_pending", `This wallet already holds ${cmd.maxPending} unconfirmed deposits; a new one is credited once it is confirmed.`);
  }
  if (known?.status === "reversed" && confirmations >= cmd.target) {
    // A deep reorg took it back, and a block has it again (its transaction went back to the mempool): the node holds
    // the coins again. What operators booked out for it is credited back, and the deposit is confirmed again, once (its
    // record says so, and a later reversal books it from nothing). Nothing booked: the user kept the credit, and only
    // the record changes. The wallet stays frozen either way: an operator reviews it, and unfreezes it.
    return { events: [{ t: "deposit_rebooked", outpoint, amount: (known.adjusted ?? 0n).toString(), at }], answer: () => ({ status: "confirmed" as const }) };
  }
  let status = again ? "pending" : known.status;
  if (status === "pending" && confirmations >= cmd.target) {
    events.push({ t: "deposit_confirmed", outpoint, at });
    status = "confirmed";
  }
  return { events, answer: () => ({ status }) };
}

function decideWithdrawal(s: WalletState, r: { id: string; address: string; amount: bigint; fee: bigint; dustLimit: bigint; dailyLimit: bigint }, at: number, ctx: DecideContext): Decision<unknown> | Refusal {
  const existing = withdrawalOf(s, r.id, ctx);
  if (existing) return noChange((a) => ({ withdrawal: existing, repeated: true, balance: balanceOf(a) }));
  if (s.frozen) return refuse("frozen", "This wallet is frozen by an operator; withdrawals are paused. Contact support.");
  if (r.amount < r.dustLimit) return refuse("below_dust", `The amount must be at least ${describeAmount(r.dustLimit)} (the network's dust limit).`);
  if (r.fee < 0n) return refuse("bad_input", "The fee cannot be negative.");
  const total = r.amount + r.fee;
  if (total > s.available) {
    return refuse("insufficient_funds", `Not enough available: ${describeAmount(r.amount)} plus a fee of ${describeAmount(r.fee)} is more than your ${describeAmount(s.available)}.`);
  }
  const used = withdrawnInWindow(s, at);
  if (used.sats + r.amount > r.dailyLimit) {
    const left = r.dailyLimit > used.sats ? r.dailyLimit - used.sats : 0n;
    const more = used.freesAt === undefined ? "" : `, and more from ${new Date(used.freesAt).toISOString().slice(0, 16).replace("T", " ")} UTC`;
    return refuse("over_limit", `That is over your withdrawal limit of ${describeAmount(r.dailyLimit)} in 24 hours; you can withdraw ${describeAmount(left)} now${more}.`);
  }
  return {
    events: [{ t: "withdrawal_reserved", id: r.id, address: r.address, amount: r.amount.toString(), fee: r.fee.toString(), at }],
    answer: (a) => ({ withdrawal: a.withdrawals[r.id]!, repeated: false, balance: balanceOf(a) }),
  };
}

function decideSend(s: WalletState, cmd: Extract<WalletCommand, { type: "send_transfer" }>, at: number, seen: boolean): Decision<unknown> | Refusal {
  if (seen || own(s.outgoing, cmd.id) !== undefined) return noChange((a) => ({ repeated: true, balance: balanceOf(a) }));
  if (cmd.to === s.userKey) return refuse("self_transfer", "You cannot send to yourself.");
  if (s.frozen) return refuse("frozen", "This wallet is frozen by an operator; sending is paused. Contact support.");
  if (cmd.amount <= 0n) return refuse("bad_amount", "The amount must be more than zero.");
  if (cmd.amount > cmd.maxAmount) return refuse("over_limit", `A single transfer can move at most ${describeAmount(cmd.maxAmount)}.`);
  if (cmd.amount > s.available) return refuse("insufficient_funds", `Not enough available: you have ${describeAmount(s.available)}.`);
  return {
    events: [{ t: "transfer_sent", id: cmd.id, to: cmd.to, amount: cmd.amount.toString(), at }],
    answer: (a) => ({ repeated: false, balance: balanceOf(a) }),
  };
}

/**
 * How many pending deposits each deposits map holds, counted once per map: evolve never changes a map, it copies it,
 * so a count stays true as long as its map lives, and the copies evolve makes carry it on (withDeposit). A refused
 * deposit (one beyond the cap, listed again at every scan) costs no walk over the wallet's deposits. A cache of a pure
 * function, outside the state: decide stays pure, and snapshots and replay are as before.
 */
const pendingCounts = new WeakMap<Readonly<Record<string, Deposit>>, number>();

/** The pending deposits of a wallet's deposits map (the state holds only pending ones; a count, for the cap). */
export function pendingDeposits(deposits: Readonly<Record<string, Deposit>>): number {
  let n = pendingCounts.get(deposits);
  if (n === undefined) {
    n = 0;
    for (const k in deposits) if (deposits[k]!.status === "pending") n++;
    pendingCounts.set(deposits, n);
  }
  return n;
}

/** withKey for a deposits map, carrying its pending count on to the copy when it is known. */
function withDeposit(m: Readonly<Record<string, Deposit>>, outpoint: string, d: Deposit | undefined): Record<string, Deposit> {
  const c = withKey(m, outpoint, d);
  const n = pendingCounts.get(m);
  if (n !== undefined) pendingCounts.set(c, n - (own(m, outpoint)?.status === "pending" ? 1 : 0) + (d?.status === "pending" ? 1 : 0));
  return c;
}

/**
 * The entry of a map keyed by ids, if it has one of its own: an id is whatever an edge sent, and "__proto__" or
 * "toString" must not find Object.prototype's (a map read back from a snapshot has that prototype).
 */
export function own<T>(m: Readonly<Record<string, T>>, id: string): T | undefined {
  return Object.hasOwn(m, id) ? m[id] : undefined;
}

/** Applies one event. Pure; the same code runs live and on replay. */
export function evolve(s: WalletState, e: WalletEvent): WalletState {
  switch (e.t) {
    case "opened":
      return { ...s, opened: true, openedAt: e.at, ...(e.chatHandle ? { chatHandle: e.chatHandle } : {}) };
    case "handle_set":
      return { ...s, chatHandle: e.chatHandle };
    case "address_added":
      return { ...s, addresses: [...s.addresses.slice(1 - ADDRESSES_KEPT), e.address], addressUsed: false };
    case "deposit_seen": {
      const amount = BigInt(e.amount);
      const h = s.historyTotal + 1;
      // Every field from the start, as for the state (see emptyWallet): the deposit stays in the state.
      const d: Deposit = { txid: e.txid, vout: e.vout, address: e.address, amount, status: "pending", seenAt: e.at, confirmedAt: undefined, h };
      return { ...s, pending: s.pending + amount, deposits: withDeposit(s.deposits, e.outpoint, d), historyTotal: h,
        addressUsed: s.addressUsed || e.address === s.addresses.at(-1) };
    }
    case "deposit_ignored":
      // Never in the state: its record (changedBy) keeps it. It has an entry, and its address counts as used.
      return { ...s, historyTotal: s.historyTotal + 1, addressUsed: s.addressUsed || e.address === s.addresses.at(-1) };
    // A deposit that is no longer pending leaves the state (its record keeps it: see WalletState.deposits).
    case "deposit_confirmed": {
      const d = s.deposits[e.outpoint]!;
      return { ...s, pending: s.pending - d.amount, available: s.available + d.amount, deposits: withDeposit(s.deposits, e.outpoint, undefined) };
    }
    case "deposit_dropped": {
      const d = s.deposits[e.outpoint]!;
      return { ...s, pending: s.pending - d.amount, deposits: withDeposit(s.deposits, e.outpoint, undefined) };
    }
    case "deposit_reversed":
      // Confirmed before, so in the records (a store before format 7 kept it in the state too).
      return { ...s, deposits: own(s.deposits, e.outpoint) ? withDeposit(s.deposits, e.outpoint, undefined) : s.deposits,
        frozen: s.frozen ?? { reason: `deposit ${e.outpoint} left the chain after it was confirmed; an operator must review`, by: "engine", at: e.at } };
    case "deposit_rebooked": {
      // In the records, not the state (it left it when it was confirmed); what was booked out comes back to available,
      // as an entry of its own (none when nothing was booked).
      const amount = BigInt(e.amount);
      return amount === 0n ? s : { ...s, available: s.available + amount, historyTotal: s.historyTotal + 1 };
    }
    case "withdrawal_reserved": {
      const amount = BigInt(e.amount), fee = BigInt(e.fee);
      const h = s.historyTotal + 1;
      const w: Withdrawal = { address: e.address, amount, quotedFee: fee, status: "reserved", txid: undefined, fee: undefined, at: e.at, h };
      return {
        ...s, available: s.available - amount - fee, reserved: s.reserved + amount + fee,
        withdrawals: withKey(s.withdrawals, e.id, w), historyTotal: h,
        withdrawnByHour: inWindow(s.withdrawnByHour, e.at, hourOf(e.at), amount),
      };
    }
    case "withdrawal_broadcast": {
      const w = s.withdrawals[e.id]!;
      return { ...s, withdrawals: withKey(s.withdrawals, e.id, { ...w, status: "broadcast", txid: e.txid }) };
    }
    case "withdrawal_settled": {
      const w = s.withdrawals[e.id]!;
      const refund = w.quotedFee - BigInt(e.fee);
      return { ...s, reserved: s.reserved - w.amount - w.quotedFee, available: s.available + refund, withdrawals: withKey(s.withdrawals, e.id, undefined) };
    }
    case "withdrawal_released": {
      const w = s.withdrawals[e.id]!;
      // Given back: it no longer counts against the limit (if it still did).
      return { ...s, reserved: s.reserved - w.amount - w.quotedFee, available: s.available + w.amount + w.quotedFee, withdrawnByHour: inWindow(s.withdrawnByHour, e.at, hourOf(w.at), -w.amount),
        withdrawals: withKey(s.withdrawals, e.id, undefined) };
    }
    case "transfer_sent": {
      const amount = BigInt(e.amount);
      return { ...s, available: s.available - amount, outgoing: withKey(s.outgoing, e.id, { to: e.to, amount, at: e.at }), historyTotal: s.historyTotal + 1 };
    }
    case "transfer_acked":
      return { ...s, outgoing: withKey(s.outgoing, e.id, undefined) };
    case "transfer_returned":
      // Out of the outbox, back in available, and an entry of its own in the history (decide returns only what is in
      // the outbox, with its amount).
      return { ...s, available: s.available + BigInt(e.amount), outgoing: withKey(s.outgoing, e.id, undefined), historyTotal: s.historyTotal + 1 };
    case "transfer_received": {
      return { ...s, available: s.available + BigInt(e.amount), historyTotal: s.historyTotal + 1 };
    }
    case "frozen":
      return { ...s, frozen: { reason: e.reason, by: e.by, at: e.at } };
    case "unfrozen": {
      const { frozen: _f, ...rest } = s;
      return rest;
    }
    case "told":
      return { ...s, told: [...(s.told ?? []).slice(-19), e.id] };
    case "adjusted":
      // Available only: a reversed deposit's coins are there (they left pending when it was confirmed), and so are a
      // withdrawal's the restored books lost (its reservation is not in them). An entry of its own in the history.
      return { ...s, available: s.available + BigInt(e.amount), historyTotal: s.historyTotal + 1 };
  }
}

/**
 * The deposit or withdrawal an event created or changed, as the event leaves it: the state's own while it is open;
 * built here when the event finishes it (it leaves the state, and its record keeps this version). `before` is the
 * state before the event, `after` after it; `finished` is the record of a deposit that had already left the state
 * (a confirmed deposit reversed by a reorg, or a reversed one an adjustment books: its record then counts what was
 * booked against it, or one confirmed again: its record drops that count). Undefined for other events.
 */
export function changedBy(before: WalletState, after: WalletState, e: WalletEvent, finished?: Deposit): Deposit | Withdrawal | undefined {
  switch (e.t) {
    case "deposit_seen":
      return after.deposits[e.outpoint];
    case "deposit_ignored":
      return { txid: e.txid, vout: e.vout, address: e.address, amount: BigInt(e.amount), status: "ignored", seenAt: e.at, confirmedAt: undefined, h: after.historyTotal };
    case "deposit_confirmed":
    case "deposit_dropped":
    case "deposit_reversed": {
      const d = own(before.deposits, e.outpoint) ?? finished;
      if (!d) return undefined;
      return e.t === "deposit_confirmed" ? { ...d, status: "confirmed", confirmedAt: e.at } : { ...d, status: e.t === "deposit_dropped" ? "dropped" : "reversed" };
    }
    case "deposit_rebooked": {
      if (!finished) return undefined;
      // What was booked against it is credited back with this event: a later reversal starts from nothing booked.
      const { adjusted: _booked, ...d } = finished;
      return { ...d, status: "confirmed", confirmedAt: e.at };
    }
    case "withdrawal_reserved":
    case "withdrawal_broadcast":
      return after.withdrawals[e.id];
    case "withdrawal_settled": {
      const w = own(before.withdrawals, e.id);
      return w && { ...w, status: "sent", txid: e.txid, fee: BigInt(e.fee) };
    }
    case "withdrawal_released": {
      const w = own(before.withdrawals, e.id);
      return w && { ...w, status: "released" };
    }
    case "adjusted":
      // A debit (decide allows no other) against a reversed deposit: its record keeps the total booked.
      return e.outpoint !== undefined && finished ? { ...finished, adjusted: (finished.adjusted ?? 0n) - BigInt(e.amount) } : undefined;
    default:
      return undefined;
  }
}

/**
 * What a deposit's or withdrawal's event names it by: its outpoint or its id (its record's key). An adjustment that
 * books a reversed deposit changes that deposit's record: its outpoint.
 */
export function refOf(e: WalletEvent): string {
  return "outpoint" in e && e.outpoint !== undefined ? e.outpoint : "id" in e ? e.id : "";
}

/** Whether a deposit or withdrawal is finished: it has left the state, for its record (see WalletState.deposits). */
export function isFinished(x: Deposit | Withdrawal): boolean {
  return x.status !== "pending" && x.status !== "reserved" && x.status !== "broadcast";
}

/**
 * The history entry an event writes or rewrites, as [its number, the entry]: a deposit's or a withdrawal's entry
 * follows it (`changed`, from changedBy: status, and the fee once settled); a transfer adds one, numbered in the
 * state after the event.
 */
export function historyEntryOf(after: WalletState, e: WalletEvent, changed: Deposit | Withdrawal | undefined): [number, HistoryEntry] | undefined {
  switch (e.t) {
    case "deposit_seen":
    case "deposit_confirmed":
    case "deposit_dropped":
    case "deposit_reversed":
    case "deposit_rebooked":
    case "deposit_ignored": {
      // A deposit confirmed again after a reversal: its entry says confirmed again (what it credits back has an entry
      // of its own: rebookedEntryOf).
      const d = changed as Deposit | undefined;
      // A dropped deposit left the user's total as it came: it shows 0, as a released withdrawal does; an ignored one
      // never entered it.
      return d && [d.h, { at: d.seenAt, kind: "deposit", amount: d.status === "dropped" || d.status === "ignored" ? 0n : d.amount, ref: e.outpoint, status: d.status }];
    }
    case "withdrawal_reserved":
    case "withdrawal_broadcast":
    case "withdrawal_settled":
    case "withdrawal_released": {
      const w = changed as Withdrawal | undefined;
      if (!w) return undefined;
      // What left the user's total: the quote while open, the charged fee once sent, nothing once released.
      const amount = w.status === "sent" ? -(w.amount + w.fee!) : w.status === "released" ? 0n : -(w.amount + w.quotedFee);
      return [w.h, { at: w.at, kind: "withdrawal", amount, ref: e.id, status: w.status }];
    }
    case "transfer_sent":
      return [after.historyTotal, { at: e.at, kind: "transfer_out", amount: -BigInt(e.amount), ref: e.id, status: "sent", counterparty: e.to }];
    case "transfer_received":
      return [after.historyTotal, { at: e.at, kind: "transfer_in", amount: BigInt(e.amount), ref: e.id, status: "received", counterparty: e.from }];
    case "transfer_returned":
      // A transfer adds one entry per movement: its "sent" entry stays as it was (the money did leave then), and this
      // one, under the same ref and receiver, says it came back (status "returned", the amount back).
      return [after.historyTotal, { at: e.at, kind: "transfer_out", amount: BigInt(e.amount), ref: e.id, status: "returned", counterparty: e.to }];
    case "adjusted":
      // Its own entry (a reversed deposit's entry stays as the reorg left it). The reason is the operators' and stays
      // out: the user's history says "adjusted by support"; the ref is the operator's id, for the console.
      return [after.historyTotal, { at: e.at, kind: "adjustment", amount: BigInt(e.amount), ref: e.id, status: "adjusted" }];
    default:
      return undefined;
  }
}

/**
 * The second entry a `deposit_rebooked` writes (historyEntryOf gives its deposit's, confirmed again): what operators had
 * booked out for the deposit, credited back, numbered in the state after the event. None when nothing was booked.
 */
export function rebookedEntryOf(after: WalletState, e: WalletEvent): [number, HistoryEntry] | undefined {
  if (e.t !== "deposit_rebooked" || BigInt(e.amount) === 0n) return undefined;
  return [after.historyTotal, { at: e.at, kind: "deposit", amount: BigInt(e.amount), ref: e.outpoint, status: "rebooked" }];
}

/** What a person should be told about an event, if anything. */
export function noticeOf(before: WalletState, e: WalletEvent): WalletNotice | undefined {
  switch (e.t) {
    case "deposit_seen":
      return { kind: "deposit_seen", amount: BigInt(e.amount), txid: e.txid };
    case "deposit_confirmed": {
      const d = before.deposits[e.outpoint];
      return d && { kind: "deposit_confirmed", amount: d.amount, txid: d.txid };
    }
    case "deposit_dropped": {
      const d = before.deposits[e.outpoint];
      return d && { kind: "deposit_dropped", amount: d.amount, txid: d.txid };
    }
    case "deposit_ignored":
      return { kind: "deposit_ignored", amount: BigInt(e.amount), txid: e.txid, minimum: BigInt(e.minimum) };
    case "deposit_rebooked":
      // They were told of the adjustment that booked it out; a reversal nothing was booked for was never told.
      return BigInt(e.amount) === 0n ? undefined : { kind: "deposit_rebooked", amount: BigInt(e.amount) };
    case "withdrawal_broadcast": {
      const w = before.withdrawals[e.id];
      return w && { kind: "withdrawal_broadcast", id: e.id, amount: w.amount, txid: e.txid };
    }
    case "withdrawal_settled": {
      const w = before.withdrawals[e.id];
      return w && { kind: "withdrawal_sent", id: e.id, amount: w.amount, fee: BigInt(e.fee), txid: e.txid };
    }
    case "withdrawal_released": {
      const w = before.withdrawals[e.id];
      return w && { kind: "withdrawal_released", id: e.id, amount: w.amount + w.quotedFee, reason: e.reason };
    }
    case "transfer_received":
      // A cheque's payout to whoever claimed or revoked it: their command's answer said so already (a second message
      // would read as a gift). An expiry is no one's command: its creator is told the cheque came back. A payout
      // journalled without its reason (before it was recorded) is told as any credit, as it was.
      if (e.cheque === "claim" || e.cheque === "revoke") return undefined;
      if (e.cheque === "expiry") return { kind: "cheque_expired", amount: BigInt(e.amount) };
      return { kind: "transfer_received", id: e.id, amount: BigInt(e.amount), from: e.from };
    case "transfer_returned":
      return { kind: "transfer_returned", id: e.id, amount: BigInt(e.amount), to: e.to, reason: e.reason };
    case "told":
      return { kind: "announcement", id: e.id, text: e.text };
    case "adjusted":
      return { kind: "adjusted", amount: BigInt(e.amount) };
    default:
      return undefined;
  }
}

/** Invariants every state must hold; checked after each command and on replay in tests. */
export function checkInvariants(s: WalletState): string | undefined {
  if (s.available < 0n) return `available is negative (${s.available})`;
  if (s.pending < 0n) return `pending is negative (${s.pending})`;
  if (s.reserved < 0n) return `reserved is negative (${s.reserved})`;
  let pending = 0n, reserved = 0n;
  for (const d of Object.values(s.deposits)) if (d.status === "pending") pending += d.amount;
  for (const w of Object.values(s.withdrawals)) if (w.status === "reserved" || w.status === "broadcast") reserved += w.amount + w.quotedFee;
  if (pending !== s.pending) return `pending ${s.pending} differs from the pending deposits ${pending}`;
  if (reserved !== s.reserved) return `reserved ${s.reserved} differs from the open withdrawals ${reserved}`;
  return undefined;
}

export type { Answer, Refusal };
export { isRefusal };
