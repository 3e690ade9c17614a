// Solvency: what the engine owes (every wallet's available + pending + reserved, plus cheque escrow and the
// transfers between users that have left their senders and not reached their receivers yet) against
// what the node's wallet holds. Reservations whose payout already left the node (signed, broadcast, or confirmed
// with the wallet's settlement not acknowledged yet) are counted as paid, so a payout in flight does not look
// like a hole.
import type { PayoutState } from "./payout.messages.ts";

export interface SolvencyReport {
  liabilities: { available: bigint; pending: bigint; reserved: bigint; escrow: bigint; transit: bigint; inFlightPayouts: bigint; total: bigint; wallets: number };
  /**
   * The node wallet's balances, and `stranded`: coins of stuck batches it holds but does not count (see
   * payout.ts, strandedCoins), counted here with the trusted ones.
   */
  node: { trusted: bigint; untrustedPending: bigint; immature: bigint; stranded: bigint; strandedBatches: string[] };
  /** What must be covered by confirmed (or our own change) coins: available + reserved − payouts in flight + escrow + transit. */
  firm: bigint;
  surplus: bigint;
  /** Whether the node covers the firm balances; `reason` says why not. Only this pauses payouts. */
  ok: boolean;
  reason?: string;
  /**
   * Pending deposits the node does not hold (unconfirmed, and gone from its mempool: replaced, or dropped with a
   * restart) until the deposit watcher's next scan removes them. Nobody can spend a pending balance, so this is
   * reported, not a reason to pause: else anyone could stop everyone's payouts by replacing their own deposit.
   */
  warning?: string;
  checkedAt: number;
}

export interface SolvencyInputs {
  /** `transit`: transfers between users debited and not yet credited (absent: none). */
  liabilities: { available: bigint; pending: bigint; reserved: bigint; escrow: bigint; transit?: bigint; wallets: number };
  node: { trusted: bigint; untrustedPending: bigint; immature: bigint };
  /** Coins of stuck batches the node's wallet holds and does not count (payout.ts, strandedCoins). */
  stranded?: { sats: bigint; batches: string[] };
  payouts: PayoutState;
  toleranceSats?: bigint;
  now?: number;
}

export function assessSolvency(i: SolvencyInputs): SolvencyReport {
  let inFlight = 0n;
  for (const p of Object.values(i.payouts.payouts)) {
    if (p.status === "signed" || p.status === "broadcast" || (p.status === "confirmed" && !p.walletSettled)) inFlight += p.amount + (p.fee ?? p.quotedFee);
  }
  const l = { ...i.liabilities, transit: i.liabilities.transit ?? 0n };
  const firm = l.available + l.reserved - inFlight + l.escrow + l.transit;
  const total = firm + l.pending;
  const tolerance = i.toleranceSats ?? 0n;
  const stranded = i.stranded?.sats ?? 0n;
  const trusted = i.node.trusted + stranded;
  const surplus = trusted + i.node.untrustedPending - total;
  let reason: string | undefined, warning: string | undefined;
  const strandedText = stranded > 0n ? `, ${stranded} of them in stuck batches it holds` : "";
  if (firm > trusted + tolerance) {
    reason = `the wallets' firm balances (${firm} sats) exceed the node's trusted balance (${trusted} sats${strandedText}) by ${firm - trusted} sats`;
  } else if (total > trusted + i.node.untrustedPending + tolerance) {
    warning = `all liabilities (${total} sats) exceed everything the node holds (${trusted + i.node.untrustedPending} sats${strandedText}): pending deposits the node no longer holds, until the deposit watcher drops them`;
  }
  return {
    liabilities: { ...l, inFlightPayouts: inFlight, total },
    node: { ...i.node, stranded, strandedBatches: i.stranded?.batches ?? [] }, firm, surplus, ok: reason === undefined, ...(reason ? { reason } : {}), ...(warning ? { warning } : {}), checkedAt: i.now ?? Date.now(),
  };
}
