// The payout actor's protocol. One payout per withdrawal id; payouts that arrive within the batch window
// go out together as one transaction (a "batch"). Event fields are the durable format.
import type { Reply } from "./runtime.ts";
import type { Refusal } from "../domain/refusals.ts";

export type PayoutStatus = "queued" | "signed" | "broadcast" | "confirmed" | "stuck";

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
   * left the node but are still reserved in the wallet: the watchdog counts such a payout as in flight.
   */
  walletSettled?: true;
  at: number;
}

export interface Batch {
  ids: string[];
  hex: string;
  txid: string;
  fee: bigint;
  /** Sum of the quoted fees: what the batch saves is quoted − fee. */
  quoted: bigint;
  status: "signed" | "broadcast" | "confirmed" | "stuck";
  /** Earlier txids of this batch, replaced by fee bumps. */
  replaced: string[];
  at: number;
  reason?: string;
  /** Made after a restore from a transaction the node sent after the backup (the "adopt" command), not built here. */
  adopted?: true;
}

export interface PayoutState {
  payouts: Record<string, Payout>;
  batches: Record<string, Batch>;
  seq: number;
}

export type PayoutEvent =
  | { t: "queued"; id: string; userKey: string; address: string; amount: string; quotedFee: string; at: number }
  | { t: "signed"; batch: string; ids: string[]; hex: string; txid: string; fee: string; shares: string[]; at: number; adopted?: true }
  | { t: "broadcast"; batch: string; at: number }
  /**
   * The batch's transaction has its confirmations. `txid` (with its `fee` and per-payout `shares`) when the one in the
   * block is not the batch's latest: a transaction its fee bump replaced, mined first.
   */
  | { t: "confirmed"; batch: string; at: number; txid?: string; fee?: string; shares?: string[] }
  | { t: "replaced"; batch: string; hex: string; txid: string; fee: string; shares: string[]; at: number }
  | { t: "stuck"; batch: string; reason: string; at: number }
  /** These confirmed payouts' wallets answered that they have journalled the settlement. */
  | { t: "wallet_settled"; ids: string[]; at: number }
  /**
   * Finished payouts (confirmed, their wallets settled) beyond the newest `retainFinished` leave the book, with the
   * batches left with none; the record of each that stays in the store answers a late re-submission.
   */
  | { t: "pruned"; ids: string[]; batches: string[]; at: number };

export interface PayoutSummary {
  id: string;
  status: PayoutStatus;
  txid?: string;
  fee?: bigint;
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
  | { type: "state"; reply: Reply<PayoutState> }
  /**
   * After a restore: queued payouts that a transaction the node made after the backup already paid (found by
   * address and amount) become a batch of that transaction, broadcast, so they are confirmed and settled, never
   * paid again. Idempotent per transaction.
   */
  | { type: "adopt"; txid: string; ids: string[]; outputs: number; reply: Reply<{ batch: string } | Refusal> }
  /** Runs `read` with the payout book's state while holding it still: no payout moves until it is done. */
  | { type: "hold"; read: (s: PayoutState) => Promise<unknown>; reply: Reply<{ value: unknown } | { error: unknown }> };
