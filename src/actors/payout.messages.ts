// The payout actor's protocol. One payout per withdrawal id; payouts that arrive within the batch window
// go out together as one transaction (a "batch"). Event fields are the durable format.
import type { Reply } from "./runtime.ts";
import type { Refusal } from "../domain/refusals.ts";

export type PayoutStatus = "queued" | "signed" | "broadcast" | "confirmed" | "stuck" | "cancelling" | "released";

export interface Payout {
  userKey: string;
  address: string;
  amount: bigint;
  quotedFee: bigint;
  status: PayoutStatus;
  batch?: string;
  /** This payout's share of its batch's fee (≤ quotedFee). */
  fee?: bigint;
  /**
   * Confirmed, and its wallet has journalled the settlement (the reservation is gone). Until then the coins have
   * left the node but are still reserved in the wallet: the watchdog counts such a payout as in flight. For a
   * released payout: its wallet has journalled the release (the amount is available to the user again).
   */
  walletSettled?: true;
  at: number;
}

/**
 * A batch's cancellations, the engine's own spends back to its wallet: `txid` when there is one, and `earlier` also
 * without it (a release that went on to wait for the spend of an input keeps its cancellation there). The book, the
 * pruned batches' records and a restore's comparison all count them as the engine's own.
 */
export function cancelTxids(b: Pick<Batch, "cancel">): string[] {
  const c = b.cancel;
  if (!c) return [];
  return [...(c.txid !== undefined ? [c.txid] : []), ...(c.earlier ?? [])];
}

export interface Batch {
  ids: string[];
  hex: string;
  txid: string;
  fee: bigint;
  /** Sum of the quoted fees: what the batch saves is quoted − fee. */
  quoted: bigint;
  status: "signed" | "broadcast" | "confirmed" | "stuck" | "cancelling" | "released";
  /** Earlier txids of this batch, replaced by fee bumps. */
  replaced: string[];
  at: number;
  reason?: string;
  /**
   * The coins each version of the batch spends ("txid:vout"), by the version's txid: the first and every fee bump's
   * replacement, as journalled. A fee bump may add inputs, so one coin spent elsewhere kills only the versions that
   * spend it. A version journalled before this was recorded (an older journal or snapshot) has no entry: its inputs
   * are asked of the node's wallet, and if it does not have them, nothing spent elsewhere proves the batch dead.
   */
  inputs?: Record<string, string[]>;
  /** Made after a restore from a transaction the node sent after the backup (the "adopt" command), not built here. */
  adopted?: true;
  /** A stuck batch an operator is releasing (see the "cancelling" event), and why. */
  cancel?: Cancel;
}

/**
 * How a stuck batch is made impossible to mine before its payouts are released: a transaction of the engine's own
 * (`txid`, `hex`, `fee`; `earlier`: the ones its fee bumps replaced, and, after a release went on to wait for the spend
 * of an input (no `txid`), the cancellation that lost to it) spends its inputs back to the node's wallet; or,
 * when one of its inputs was already spent in a block (`spentAt`: the height of the tip when that was seen; `spentIn`:
 * that block's hash), that spend, once the tip is deep enough.
 */
export interface Cancel {
  reason: string;
  /**
   * "txid:vout": with a cancellation, the first of the coins it spends; waiting for an earlier spend, the coin spent —
   * one every version of the batch spends, so that spend kills them all.
   */
  input: string;
  txid?: string;
  hex?: string;
  fee?: bigint;
  earlier: string[];
  spentAt?: number;
  spentIn?: string;
}

/**
 * The payout book as its readers see it: every payout and batch by id, live and finished. The actor's state is a
 * PayoutBook (payout.ts), which keeps finished ones apart (an event does not copy them) and builds these two maps on
 * first use; its snapshots are this shape. Read one payout with `payoutOf`, the ones still moving with `livePayouts`.
 */
export interface PayoutState {
  payouts: Record<string, Payout>;
  batches: Record<string, Batch>;
  seq: number;
}

export type PayoutEvent =
  | { t: "queued"; id: string; userKey: string; address: string; amount: string; quotedFee: string; at: number }
  /** A batch built (or adopted); `inputs`: the coins it spends, "txid:vout" (absent in journals from before they were recorded). */
  | { t: "signed"; batch: string; ids: string[]; hex: string; txid: string; fee: string; shares: string[]; at: number; adopted?: true; inputs?: string[] }
  | { t: "broadcast"; batch: string; at: number }
  /**
   * The batch's transaction has its confirmations. `txid` (with its `fee` and per-payout `shares`) when the one in the
   * block is not the batch's latest: a transaction its fee bump replaced, mined first.
   */
  | { t: "confirmed"; batch: string; at: number; txid?: string; fee?: string; shares?: string[] }
  /**
   * The version the batch follows from now on: a fee bump's replacement, or an earlier version found in the node's
   * mempool after a replacement was refused (it leaves `replaced`; the one it takes over from joins it). `inputs` as
   * for "signed" (a bump may add coins to those it replaces).
   */
  | { t: "replaced"; batch: string; hex: string; txid: string; fee: string; shares: string[]; at: number; inputs?: string[] }
  | { t: "stuck"; batch: string; reason: string; at: number }
  /**
   * An operator releases a stuck batch. Either the engine spends the batch's inputs back to its own wallet (`hex`,
   * `txid`, `fee`: journalled before it is broadcast, as a batch is), or one of them was already spent in a block,
   * seen at height `spentAt` (block `spentIn`; recorded again, from the tip, if that block leaves the chain). Recorded
   * again when the cancellation's fee is bumped.
   */
  | { t: "cancelling"; batch: string; reason: string; input: string; hex?: string; txid?: string; fee?: string; spentAt?: number; spentIn?: string; at: number }
  /**
   * The batch can never be mined: the cancellation (`txid`) or the earlier spend of its input is deep enough. Its
   * payouts go back to their wallets (the reservations are released), never paid.
   */
  | { t: "released"; batch: string; txid?: string; at: number }
  /**
   * An operator gave back a queued payout (never in a batch, so never signed: nothing of it can be mined). Its status
   * is `released`, without a batch; its wallet is told, as for a released batch.
   */
  | { t: "unqueued"; id: string; at: number }
  /** These confirmed (or released) payouts' wallets answered that they have journalled the settlement. */
  | { t: "wallet_settled"; ids: string[]; at: number }
  /**
   * Finished payouts (confirmed or released, their wallets settled; a released batch's once the spend that killed it
   * is deep) beyond the newest `retainFinished` leave the book, with the batches left with none; the record of each
   * that stays in the store answers a late re-submission.
   */
  | { t: "pruned"; ids: string[]; batches: string[]; at: number };

/** Where a release stands: waiting for the cancellation (or the earlier spend) to be deep enough, or done. */
export interface ReleaseAnswer {
  batch: string;
  status: "cancelling" | "released";
  /** The cancelling transaction and its fee (paid by the service), when the engine made one. */
  txid?: string;
  fee?: bigint;
}

export interface PayoutSummary {
  id: string;
  status: PayoutStatus;
  txid?: string;
  fee?: bigint;
}

/**
 * How the payouts are moving, for health and metrics: kept in memory by the payout actor (a restart counts afresh), read
 * between its commands. Times are epoch milliseconds.
 */
export interface PayoutHealth {
  /** Payouts waiting to be built into a batch (held ones too: a frozen wallet's wait in the queue). */
  queued: number;
  /** When the oldest of them was queued, and how long ago (seconds); null with none queued. */
  oldestQueuedAt: number | null;
  oldestQueuedAgeS: number | null;
  /** Flushes that failed in a row (the node refused to sign, could not be asked...); 0 once one runs to its end. */
  failedFlushes: number;
  /** When the first of those failed; null with none failing. */
  failingSince: number | null;
  /** The last failed flush's error, as the node (or the store, for a write that failed) gave it. */
  lastFlushError: string | null;
  /**
   * Payouts wait for the node's fee floor: flushes end without building anything because the highest rate allowed
   * (withdrawals.maxFeeRateSatVb) is below the mempool's minimum fee, and/or batches already signed and recorded
   * (`batches`) are refused by the mempool for their fee alone — kept as they are and sent again at every block. Since
   * when, and the node's reason (the latest). Null once a batch is taken again and none recorded is refused so.
   */
  feeWait: { since: number; why: string; batches: string[] } | null;
}

export type PayoutCommand =
  /** A durable reservation to pay; idempotent per id (a repeat re-announces the current status). */
  | { type: "submit"; id: string; userKey: string; address: string; amount: bigint; quotedFee: bigint; reply: Reply<PayoutSummary | Refusal> }
  /** Builds, signs, records and broadcasts whatever is queued. */
  | { type: "flush"; reply: Reply<{ batches: number } | Refusal> }
  /**
   * Rebroadcasts signed/broadcast batches, checks confirmations, and tells the wallets of confirmed payouts they
   * have not acknowledged yet (after a block or a restart).
   */
  | { type: "sync"; reply: Reply<{ confirmed: number; rebroadcast: number; settled: number } | Refusal> }
  /** Operator: RBF a stuck batch; the replacement's txid replaces the old one. */
  | { type: "bump"; batch: string; feeRateSatVb: bigint; reply: Reply<{ txid: string; fee: bigint } | Refusal> }
  /**
   * Operator: give up a stuck batch that is in no block and no mempool. Its inputs are spent back to the node's
   * wallet at this fee rate (again, with a higher rate, while that is unconfirmed); once that is deep enough, its
   * payouts are released to their wallets. Never a payout released while its transaction could still be mined.
   */
  | { type: "release"; batch: string; feeRateSatVb: bigint; reason: string; reply: Reply<ReleaseAnswer | Refusal> }
  /**
   * Operator: give back a payout that is still queued (the node cannot fund it, or it should not go): released to its
   * wallet at once. Refused for one in a batch (a signed transaction may still be mined: release the batch instead).
   */
  | { type: "unqueue"; id: string; reply: Reply<PayoutSummary | Refusal> }
  | { type: "state"; reply: Reply<PayoutState> }
  /** How payouts are moving: what waits, since when, and whether flushes fail (for health and metrics). */
  | { type: "status"; reply: Reply<PayoutHealth> }
  /**
   * After a restore: queued payouts that a transaction the node made after the backup already paid (found by
   * address and amount) become a batch of that transaction, broadcast, so they are confirmed and settled, never
   * paid again. Idempotent per transaction.
   */
  | { type: "adopt"; txid: string; ids: string[]; outputs: number; reply: Reply<{ batch: string } | Refusal> }
  /** Runs `read` with the payout book's state while holding it still: no payout moves until it is done. */
  | { type: "hold"; read: (s: PayoutState) => Promise<unknown>; reply: Reply<{ value: unknown } | { error: unknown }> };
