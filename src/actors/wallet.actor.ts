// Runs the wallet's pure decide/evolve inside a persistent actor: decide, check invariants, journal one
// record, answer, then hand notices and outbox work to the hooks (never during replay).
import type { Logger } from "../log.ts";
import type { PersistentBehaviour } from "./runtime.ts";
import { StoreError } from "../store/errors.ts";
import type { KeptRecord } from "../held.ts";
import type { StoreOp } from "../store/db.ts";
import { sumsDelta, type WalletRecords } from "./wallet.records.ts";
import {
  checkInvariants, decide, emptyWallet, evolve, isRefusal, noticeOf, own, restoreWallet,
  type WalletCommand, type WalletEvent, type WalletNotice, type WalletState, type Withdrawal,
} from "./wallet.ts";

/** What a wallet tells the rest of the engine once its events are durable. */
export interface WalletHooks {
  /** `record`: the notice's record, written with the command's own (`keepNotice`). */
  notice(userKey: string, notice: WalletNotice, chatHandle: string | undefined, record?: KeptRecord): void;
  /**
   * A record keeping the notice until it is delivered (the engine's KeptNotices), to write in the same atomic batch as
   * the command's journal record: a crash between the commit and a later write of its own lost the notice.
   */
  keepNotice?(userKey: string, notice: WalletNotice, chatHandle: string | undefined): KeptRecord | undefined;
  /** A debit is durable: deliver the credit to the receiver (at least once; the receiver dedupes). */
  deliverTransfer(from: string, id: string, to: string, amount: bigint): void;
  /** A reservation is durable: the payout side must pay it exactly once (it dedupes by id). */
  submitWithdrawal(userKey: string, id: string, withdrawal: Withdrawal): void;
  /**
   * Transfers of this wallet whose receivers have them, not journalled as acknowledged yet: the wallet journals
   * them with the record it is writing (the courier sends them on their own when no record comes soon).
   */
  takeAcks?(userKey: string): CarriedAcks | undefined;
  /**
   * The notices of a record whose write's outcome is unknown (a disk fault), with their records when they were written
   * with it: to send if the store finds it on disk when it reopens, and drop if not. Left out, a credit that landed
   * never told its user: the courier's repeat of it is answered "repeated", with no events and so no notice.
   */
  unsureNotices?(userKey: string, notices: Notified[], chatHandle: string | undefined): void;
}

/** A notice an event makes, and its record when it is written with the command (`WalletHooks.keepNotice`). */
export interface Notified {
  notice: WalletNotice;
  record: KeptRecord | undefined;
}

/** Acknowledgements a wallet's record carries (`WalletHooks.takeAcks`). */
export interface CarriedAcks {
  ids: string[];
  /**
   * The record carrying them was not written (`err`: why): they are the courier's again, to send on their own later
   * or with the sender's next record. Some may have been on disk after all (a write whose outcome was unknown): a
   * repeat is harmless, the wallet acknowledges only what is still in its outbox.
   */
  giveBack(err: unknown): void;
}

export interface WalletOptions {
  /** The wallet's records beside its journal: history, transfer index, balance view. */
  records: WalletRecords;
  snapshotEvery: number;
  hooks: WalletHooks;
  log: Logger;
  now?: () => number;
  /**
   * Called with the wallet's committed state: when a message is handled (nothing is being persisted then) and
   * after each persist, before the reply. The registry answers pure reads from it without a message.
   */
  publish?: (userKey: string, s: WalletState) => void;
}

const WALLET_KEY_PREFIX = "wallet:";
export const walletJournalKey = (userKey: string) => WALLET_KEY_PREFIX + userKey;

/** The parts of a wallet's behaviour that do not depend on which wallet: built once per options object. */
const shared = new WeakMap<WalletOptions, Omit<PersistentBehaviour<WalletState, WalletCommand, WalletEvent>, "key">>();

export function walletBehaviour(userKey: string, o: WalletOptions): PersistentBehaviour<WalletState, WalletCommand, WalletEvent> {
  let common = shared.get(o);
  if (!common) {
    common = sharedBehaviour(o);
    shared.set(o, common);
  }
  return { key: walletJournalKey(userKey), ...common };
}

function sharedBehaviour(o: WalletOptions): Omit<PersistentBehaviour<WalletState, WalletCommand, WalletEvent>, "key"> {
  const now = o.now ?? Date.now;
  return {
    initial: (key) => emptyWallet(key.slice(WALLET_KEY_PREFIX.length)),
    // Every field present again, as in a new wallet (see emptyWallet: it keeps the state's hidden class shared).
    restore: restoreWallet,
    evolve,
    snapshotEvery: o.snapshotEvery,
    async handle(state, cmd, persist) {
      // The wallet's identity is in its state (from `initial`), so one handler serves every wallet.
      const userKey = state.userKey;
      o.publish?.(userKey, state);
      // Transfer ids, and finished deposits and withdrawals, are looked up in the wallet's records: a repeat is
      // answered, never applied twice.
      const decision = decide(state, cmd as WalletCommand, { now: now(), index: o.records });
      if (isRefusal(decision)) {
        (cmd.reply as (r: unknown) => void)(decision);
        return state;
      }
      if (decision.events.length === 0) {
        // A read or a repeat: nothing to check, journal or announce (but a resume re-sends the outbox).
        (cmd.reply as (r: unknown) => void)(decision.answer(state));
        if (cmd.type === "resume") afterCommit(userKey, [state], [], cmd, o);
        return state;
      }
      // Acknowledgements taken here live in this record only: if it is not written (the store refused it, an invariant
      // or its records threw), they go back to the courier, which sends them again. Left lost, nothing would while the
      // sender stays resident: their transfers would wait in the outbox for its next activation or the next start.
      const carried = o.hooks.takeAcks?.(userKey);
      let events: WalletEvent[] = [], after = state;
      const states: WalletState[] = [];
      // Each event's notice with its record, when the notices are kept in the store (by event; undefined: none).
      let notified: (Notified | undefined)[] | undefined;
      try {
        events = withAcks(state, decision.events, carried?.ids);
        for (const e of events) states.push(after = evolve(after, e));
        const broken = checkInvariants(after);
        // A decision that would break an invariant is a bug: crash (the caller is answered, nothing persists).
        if (broken) throw new Error(`wallet invariant violated by ${cmd.type}: ${broken}`);
        const { ops, history } = o.records.forCommand(state, events, states);
        if (o.hooks.keepNotice) notified = keepNotices(userKey, [state, ...states], events, after.chatHandle, o.hooks.keepNotice, ops);
        await persist(events, { r: ops, s: sumsDelta(state, after, transitDelta(cmd as WalletCommand, events)), h: history });
      } catch (e) {
        carried?.giveBack(e);
        if (e instanceof StoreError && e.written === "unknown" && o.hooks.unsureNotices && states.length === events.length) {
          const notices = notified ? notified.filter((n): n is Notified => n !== undefined) : noticesOf([state, ...states], events).map((notice) => ({ notice, record: undefined }));
          if (notices.length > 0) o.hooks.unsureNotices(userKey, notices, after.chatHandle);
        }
        throw e;
      }
      o.publish?.(userKey, after);
      (cmd.reply as (r: unknown) => void)(decision.answer(after));
      afterCommit(userKey, [state, ...states], events, cmd, o, notified);
      return after;
    },
  };
}

/**
 * What a command adds to the transfers in flight between users (wallet.records.ts, `WalletSums`): a debit its
 * amount; a credit of another wallet's debit (the courier's `receive_transfers`, the only command that delivers them)
 * takes it out, and so does its return to the sender when its receiver refused it for good (`transfer_returned`: it
 * will never be credited). A single `receive_transfer` is a credit from outside the wallets (a cheque's payout, which
 * the cheque book's escrow held): it was never in flight.
 */
function transitDelta(cmd: WalletCommand, events: readonly WalletEvent[]): bigint {
  let d = 0n;
  for (const e of events) {
    if (e.t === "transfer_sent") d += BigInt(e.amount);
    else if (e.t === "transfer_returned") d -= BigInt(e.amount);
    else if (e.t === "transfer_received" && cmd.type === "receive_transfers") d -= BigInt(e.amount);
  }
  return d;
}

/**
 * The decision's events, then acknowledgements of transfers still in the outbox that it does not acknowledge or give
 * back itself (a transfer the courier returns was refused, never credited, so it has no acknowledgement to carry; one
 * would only find it gone).
 */
function withAcks(state: WalletState, events: WalletEvent[], acks: string[] | undefined): WalletEvent[] {
  if (!acks) return events;
  const out = [...events];
  const done = new Set<string>();
  for (const e of events) if (e.t === "transfer_acked" || e.t === "transfer_returned") done.add(e.id);
  for (const id of acks) {
    if (done.has(id) || own(state.outgoing, id) === undefined) continue;
    done.add(id);
    out.push({ t: "transfer_acked", id });
  }
  return out;
}

/** The notices of a command's events; `states` are the state before it, then after each of its events. */
function noticesOf(states: readonly WalletState[], events: readonly WalletEvent[]): WalletNotice[] {
  const out: WalletNotice[] = [];
  for (let i = 0; i < events.length; i++) {
    const n = noticeOf(states[i]!, events[i]!);
    if (n) out.push(n);
  }
  return out;
}

/**
 * Each event's notice and a record for it, whose op joins the command's `ops` (WalletHooks.keepNotice); undefined when
 * no event makes one.
 */
function keepNotices(
  userKey: string, states: readonly WalletState[], events: readonly WalletEvent[], chatHandle: string | undefined,
  keep: NonNullable<WalletHooks["keepNotice"]>, ops: StoreOp[],
): (Notified | undefined)[] | undefined {
  let out: (Notified | undefined)[] | undefined;
  for (let i = 0; i < events.length; i++) {
    const notice = noticeOf(states[i]!, events[i]!);
    if (!notice) continue;
    const record = keep(userKey, notice, chatHandle);
    if (record) ops.push(record.op);
    (out ??= new Array<Notified | undefined>(events.length))[i] = { notice, record };
  }
  return out;
}

/**
 * `states` are the state before the command, then after each of its events; `notified`, the events' notices when
 * they were made before the commit (keepNotices).
 */
function afterCommit(userKey: string, states: WalletState[], events: WalletEvent[], cmd: WalletCommand, o: WalletOptions, notified?: (Notified | undefined)[]): void {
  const after = states[states.length - 1]!;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (notified) {
      const n = notified[i];
      if (n) o.hooks.notice(userKey, n.notice, after.chatHandle, n.record);
    } else {
      // As noticesOf, without an array per command on the write path.
      const n = noticeOf(states[i]!, e);
      if (n) o.hooks.notice(userKey, n, after.chatHandle);
    }
    if (e.t === "transfer_sent") o.hooks.deliverTransfer(userKey, e.id, e.to, BigInt(e.amount));
    if (e.t === "withdrawal_reserved") o.hooks.submitWithdrawal(userKey, e.id, after.withdrawals[e.id]!);
    if (e.t === "deposit_reversed") o.log.error({ alert: true, userKey }, "confirmed deposit left the chain; wallet frozen for operator review (its deposits: /wallets/<userKey>; book the coins back: POST /wallets/<userKey>/adjust with the deposit's outpoint)");
    // The user key, the adjustment's id and who, and nothing else beside the user key: an amount or an outpoint would,
    // with the line's time, point at this user's output on chain (as for deposits: deposit-watcher.ts). The audit log
    // keeps the rest, the operator's reason with it.
    if (e.t === "adjusted") o.log.warn({ userKey, id: e.id, by: e.by }, "wallet's books adjusted by an operator");
    // Once: the deposit's record is confirmed again with the event, and a later listing changes nothing. The user key
    // alone (as above); the wallet's deposits say which one.
    if (e.t === "deposit_rebooked") {
      o.log.error({ alert: true, userKey }, BigInt(e.amount) === 0n
        ? "a deposit a deep reorg took back is confirmed again; nothing was booked out naming it (its user kept the credit, unless an adjustment without its outpoint took it back); the wallet stays frozen: review and unfreeze it (its deposits: /wallets/<userKey>; POST /wallets/<userKey>/unfreeze)"
        : "a deposit a deep reorg took back, booked out by an operator, is confirmed again: what was booked is credited back; the wallet stays frozen: review and unfreeze it (its deposits: /wallets/<userKey>; POST /wallets/<userKey>/unfreeze)");
    }
  }
  if (cmd.type === "resume") {
    for (const [id, t] of Object.entries(after.outgoing)) o.hooks.deliverTransfer(userKey, id, t.to, t.amount);
    for (const [id, w] of Object.entries(after.withdrawals)) {
      if (w.status === "reserved" || w.status === "broadcast") o.hooks.submitWithdrawal(userKey, id, w);
    }
  }
}
