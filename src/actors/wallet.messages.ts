// The wallet actor's protocol: commands it accepts, events it journals, the state they build.
// Event names and fields are the durable format: change them only with a migration.
import type { Reply } from "./runtime.ts";
import type { Refusal } from "../domain/refusals.ts";

export type Answer<T> = T | Refusal;

export interface Deposit {
  txid: string;
  vout: number;
  address: string;
  amount: bigint;
  /** "ignored": below the deposit minimum (withdrawals.dustSats) when it arrived: never credited, shown in history. */
  status: "pending" | "confirmed" | "dropped" | "reversed" | "ignored";
  seenAt: number;
  confirmedAt?: number;
  /** The number of this deposit's entry in the wallet's history (its status is shown there). */
  h: number;
  /**
   * A reversed deposit only: what operator adjustments naming it have debited so far (the `adjust` command), kept on
   * its record so the same vanished coins are never booked twice, under two ids. Gone once the deposit is confirmed
   * again (`deposit_rebooked` credits it back): a later reversal is booked from nothing again.
   */
  adjusted?: bigint;
}

/**
 * An operator's correction of a wallet's books (the `adjust` command), as its record keeps it: a repeat of its id is
 * answered from it. `amount` is signed (negative: a debit); `outpoint`, the reversed deposit it books, if any; `h`, the
 * number of its history entry.
 */
export interface Adjustment {
  amount: bigint;
  reason: string;
  by: string;
  outpoint?: string;
  at: number;
  h: number;
}

export interface Withdrawal {
  address: string;
  amount: bigint;
  /** Fee quoted and reserved; the user is never charged more. */
  quotedFee: bigint;
  status: "reserved" | "broadcast" | "sent" | "released";
  txid?: string;
  /** Fee actually charged once settled (this user's share of the batch's fee). */
  fee?: bigint;
  at: number;
  /** The number of this withdrawal's entry in the wallet's history. */
  h: number;
}

export interface OutgoingTransfer {
  to: string;
  amount: bigint;
  at: number;
}

export interface HistoryEntry {
  at: number;
  kind: "deposit" | "withdrawal" | "transfer_in" | "transfer_out" | "adjustment";
  /** Signed change to the user's total (available + pending + reserved); fees included for withdrawals. */
  amount: bigint;
  ref: string;
  status: string;
  counterparty?: string;
}

export interface WalletState {
  userKey: string;
  opened: boolean;
  openedAt?: number;
  chatHandle?: string;
  frozen?: { reason: string; by: string; at: number };
  available: bigint;
  pending: bigint;
  reserved: bigint;
  /**
   * The deposit addresses handed out to this wallet, the newest last: the newest `ADDRESSES_KEPT` (wallet.ts). The
   * deposit watcher's address index, not this list, finds an address's owner.
   */
  addresses: string[];
  /** Whether a deposit has been seen on the newest address (then `/deposit` hands out a new one). */
  addressUsed: boolean;
  /**
   * Pending deposits, by outpoint. A deposit leaves the state once confirmed, dropped or reversed (and a withdrawal
   * once sent or released): its final version is a record beside the journal (wallet.records.ts), where a repeat is
   * answered from. So a wallet's state, and the cost of each of its commands, do not grow with its past.
   */
  deposits: Record<string, Deposit>;
  /** Reserved and broadcast withdrawals, by id (see `deposits`). */
  withdrawals: Record<string, Withdrawal>;
  /** Transfers debited here whose credit the receiver has not acknowledged yet: re-sent after a restart. */
  outgoing: Record<string, OutgoingTransfer>;
  /**
   * How many history entries the wallet has made, numbered from 1. The entries ride in the journal records of the
   * commands that made or changed them, and the index of transfer ids that makes a re-sent transfer count once is
   * records written with the events (wallet.records.ts) — not state — so a long history costs neither memory nor
   * activation time.
   */
  historyTotal: number;
  /**
   * What the wallet's withdrawals reserved, per hour (hours since 1970, UTC), over the last 24 hours as of its newest
   * reservation, oldest first: the daily limit counts the last 24 hours (to the hour), not the calendar day, so it
   * cannot be drawn twice across a midnight. At most 25 entries however many withdrawals.
   */
  withdrawnByHour: ReadonlyArray<readonly [number, bigint]>;
  /** Ids of the announcements this user has been told (the newest few), so each is told once. */
  told?: string[];
}

export type WalletEvent =
  | { t: "opened"; at: number; chatHandle?: string }
  | { t: "handle_set"; chatHandle: string }
  | { t: "address_added"; address: string; at: number }
  | { t: "deposit_seen"; outpoint: string; txid: string; vout: number; address: string; amount: string; at: number }
  | { t: "deposit_confirmed"; outpoint: string; at: number }
  | { t: "deposit_dropped"; outpoint: string; at: number }
  | { t: "deposit_reversed"; outpoint: string; at: number }
  /**
   * A reversed deposit mined again and confirmed (a deep reorg often puts its transaction back in the mempool, and a
   * later block takes it): its record is confirmed again, and `amount` (satoshis, "0" when none), what operator
   * adjustments had booked against it, is credited back to available, as a history entry of its own.
   */
  | { t: "deposit_rebooked"; outpoint: string; amount: string; at: number }
  /**
   * A deposit below the minimum credited (`minimum`, withdrawals.dustSats then): not credited, but its user is told and
   * it has a history entry (amount 0, status "ignored"), so coins sent to their address never vanish without a word.
   */
  | { t: "deposit_ignored"; outpoint: string; txid: string; vout: number; address: string; amount: string; minimum: string; at: number }
  | { t: "withdrawal_reserved"; id: string; address: string; amount: string; fee: string; at: number }
  | { t: "withdrawal_broadcast"; id: string; txid: string; at: number }
  | { t: "withdrawal_settled"; id: string; txid: string; fee: string; at: number }
  | { t: "withdrawal_released"; id: string; reason: string; at: number }
  | { t: "transfer_sent"; id: string; to: string; amount: string; at: number }
  | { t: "transfer_acked"; id: string }
  /**
   * A transfer its receiver refused for good (`reason`: the receiver's refusal code) leaves the outbox and its amount
   * is back in available, as a new history entry. `to` and `amount` are the outbox entry's, so history, the notice and
   * the transfers in flight read them from the event.
   */
  | { t: "transfer_returned"; id: string; to: string; amount: string; reason: string; at: number }
  /**
   * `cheque`: why a cheque's payout (from "cheque:<hash>") pays, for what its payee is told; absent for every other
   * credit, and for payouts journalled before it was recorded.
   */
  | { t: "transfer_received"; id: string; from: string; amount: string; at: number; cheque?: ChequePayoutReason }
  | { t: "frozen"; reason: string; by: string; at: number }
  | { t: "unfrozen"; by: string; at: number }
  | { t: "told"; id: string; text: string; at: number }
  /**
   * An operator's correction (`adjust`): `amount` (signed, satoshis) is added to available, as a history entry of its
   * own; `outpoint`, present only when it books a reversed deposit (its record counts what was booked against it).
   */
  | { t: "adjusted"; id: string; amount: string; reason: string; by: string; outpoint?: string; at: number };

/**
 * Why a cheque pays out: claimed (to its claimant), revoked or expired (back to its creator). The claimant and the
 * revoker had the command's answer, so their credit makes no notice; an expiry is nobody's command, so its creator is
 * told.
 */
export type ChequePayoutReason = "claim" | "revoke" | "expiry";

export interface BalanceView {
  available: bigint;
  pending: bigint;
  reserved: bigint;
}

export interface DepositNotice {
  txid: string;
  vout: number;
  address: string;
  amount: bigint;
  confirmations: number;
}

export interface WithdrawalRequest {
  id: string;
  address: string;
  amount: bigint;
  fee: bigint;
  dustLimit: bigint;
  dailyLimit: bigint;
}

/** What the wallet says after a change, for notifications. */
export type WalletNotice =
  | { kind: "deposit_seen"; amount: bigint; txid: string }
  | { kind: "deposit_confirmed"; amount: bigint; txid: string }
  | { kind: "deposit_dropped"; amount: bigint; txid: string }
  /** A deposit support booked out after a reorg took it back is confirmed again: `amount`, what was booked, is back. */
  | { kind: "deposit_rebooked"; amount: bigint }
  /** A deposit below `minimum`: not credited (see the deposit_ignored event). */
  | { kind: "deposit_ignored"; amount: bigint; txid: string; minimum: bigint }
  | { kind: "withdrawal_broadcast"; id: string; amount: bigint; txid: string }
  | { kind: "withdrawal_sent"; id: string; amount: bigint; fee: bigint; txid: string }
  | { kind: "withdrawal_released"; id: string; amount: bigint; reason: string }
  | { kind: "transfer_received"; id: string; amount: bigint; from: string }
  /** A transfer of this user's that its receiver refused for good (`reason`: the refusal's code): the amount is back. */
  | { kind: "transfer_returned"; id: string; amount: bigint; to: string; reason: string }
  /** A cheque of this user's that nobody claimed before it expired: its amount is back in their balance. */
  | { kind: "cheque_expired"; amount: bigint }
  /** A cheque of this user's was claimed (told once, by the cheque book, as the claim is committed: cheque.service.ts). */
  | { kind: "cheque_claimed"; amount: bigint }
  /** An operator corrected this user's balance by `amount` (signed): they are told the amount, never the reason. */
  | { kind: "adjusted"; amount: bigint }
  | { kind: "announcement"; id: string; text: string };

export type WalletCommand =
  /** `firstStart`: this open set the wallet's first chat handle (a wallet opened earlier by a transfer, or made now). */
  | { type: "open"; chatHandle?: string; reply: Reply<Answer<{ created: boolean; firstStart?: boolean; balance: BalanceView }>> }
  | { type: "balance"; reply: Reply<Answer<BalanceView & { frozen?: string }>> }
  /** How many history entries are committed (the relay reads the page itself: see WalletRecords.page). */
  | { type: "history"; reply: Reply<Answer<{ total: number }>> }
  | { type: "state"; reply: Reply<WalletState> }
  /** A withdrawal by id, open or finished (a repeated confirmation answers from it). */
  | { type: "withdrawal"; id: string; reply: Reply<Answer<{ withdrawal?: Withdrawal; balance: BalanceView }>> }
  | { type: "current_address"; reply: Reply<Answer<{ address?: string }>> }
  | { type: "add_address"; address: string; reply: Reply<Answer<{ address: string }>> }
  /**
   * `target`: the confirmations that make it available (deposits.confirmations). `maxPending`: the unconfirmed deposits
   * the wallet may hold (deposits.maxPendingPerWallet); a new one beyond them is refused ("too_many_pending") until it
   * has `target`.
   */
  | { type: "deposit"; deposit: DepositNotice; target: number; maxPending: number; reply: Reply<Answer<{ status: Deposit["status"] }>> }
  /** A deposit below `minimum` (the deposit watcher's dust limit): recorded and told, never credited (once per outpoint). */
  | { type: "deposit_ignored"; deposit: DepositNotice; minimum: bigint; reply: Reply<Answer<{ status: Deposit["status"] }>> }
  | { type: "deposit_removed"; outpoint: string; reply: Reply<Answer<{ status: Deposit["status"] | "unknown" }>> }
  | { type: "reserve_withdrawal"; request: WithdrawalRequest; reply: Reply<Answer<{ withdrawal: Withdrawal; repeated: boolean; balance: BalanceView }>> }
  | { type: "withdrawal_broadcast"; id: string; txid: string; reply: Reply<Answer<{ ok: true }>> }
  | { type: "withdrawal_settled"; id: string; txid: string; fee: bigint; reply: Reply<Answer<{ ok: true }>> }
  | { type: "withdrawal_released"; id: string; reason: string; reply: Reply<Answer<{ ok: true }>> }
  | { type: "send_transfer"; id: string; to: string; amount: bigint; maxAmount: bigint; reply: Reply<Answer<{ repeated: boolean; balance: BalanceView }>> }
  /**
   * A credit from outside the wallets (a cheque's payout): never counted in the transfers in flight. `cheque`: why a
   * cheque pays (its event keeps it, for the notice); not part of what makes a repeat (the id and sender are).
   */
  | { type: "receive_transfer"; id: string; from: string; amount: bigint; cheque?: ChequePayoutReason; reply: Reply<Answer<{ repeated: boolean }>> }
  /**
   * Credits of other wallets' debits, gathered for one receiver (the courier's, and only the courier's): one journal
   * record for all, each fresh one taken out of the transfers in flight; `repeated[i]` answers transfers[i].
   */
  | { type: "receive_transfers"; transfers: Array<{ id: string; from: string; amount: bigint }>; reply: Reply<Answer<{ repeated: boolean[] }>> }
  /** The receivers have the credits of these transfers: they leave the outbox (one journal record for them all). */
  | { type: "transfer_acked"; ids: string[]; reply: Reply<Answer<{ ok: true }>> }
  /**
   * The receiver refused this transfer's credit for good (the courier's, and only the courier's; `reason`: the
   * refusal's code): it leaves the outbox and its amount is available again. `returned`: false when it is not in the
   * outbox (a repeat, or acknowledged): nothing changed.
   */
  | { type: "return_transfer"; id: string; reason: string; reply: Reply<Answer<{ returned: boolean }>> }
  | { type: "freeze"; reason: string; by: string; reply: Reply<Answer<{ frozen: boolean }>> }
  | { type: "unfreeze"; by: string; reply: Reply<Answer<{ frozen: boolean }>> }
  /**
   * An operator's correction of the books, once per `id` whatever the crashes (a repeat, same amount and outpoint, is
   * answered `repeated` from its record): `amount` signed satoshis added to available (a debit never beyond it);
   * `reason` for operators (the user's history says "adjusted by support"); `outpoint`, the reversed deposit it books.
   * Taken while the wallet is frozen (it is how a frozen wallet's books are settled); it does not unfreeze it.
   */
  | { type: "adjust"; id: string; amount: bigint; reason: string; by: string; outpoint?: string; reply: Reply<Answer<{ repeated: boolean; adjustment: Adjustment; balance: BalanceView }>> }
  /** An operator's announcement (e.g. drain mode): told once per wallet, whatever the restarts. */
  | { type: "announce"; id: string; text: string; reply: Reply<Answer<{ told: boolean }>> }
  /** After activation: re-send unacknowledged transfers and unsettled withdrawals (the wallet's outbox). */
  | { type: "resume"; reply: Reply<Answer<{ transfers: number; withdrawals: number }>> }
  /** Test and chaos hook: makes the handler throw, to exercise supervision. */
  | { type: "crash"; reply: Reply<Answer<never>> };

export type WalletCommandType = WalletCommand["type"];
