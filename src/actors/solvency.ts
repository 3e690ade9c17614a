// Solvency: what the engine owes (every wallet's available + pending + reserved, plus cheque escrow and the
// transfers between users that have left their senders and not reached their receivers yet) against
// what the node's wallet holds. Reservations whose payout already left the node (signed, broadcast, or confirmed
// with the wallet's settlement not acknowledged yet) are counted as paid, so a payout in flight does not look
// like a hole. The node counts a deposit's coin as trusted from its first confirmation, its wallet as available only
// from `deposits.confirmations`: in between that coin backs a pending balance only, so it covers no firm one.
import type { PayoutState } from "./payout.messages.ts";
import { livePayouts } from "./payout.ts";
import { btcNumberToSats } from "../domain/money.ts";

export interface SolvencyReport {
  liabilities: { available: bigint; pending: bigint; reserved: bigint; escrow: bigint; transit: bigint; inFlightPayouts: bigint; total: bigint; wallets: number };
  /**
   * The node wallet's balances, and `stranded`: coins of stuck batches it holds but does not count (see
   * payout.ts, strandedCoins), counted here with the trusted ones. `maturingDeposits`: the part of `trusted` that is
   * deposits confirmed but below `deposits.confirmations`, which their wallets hold as pending: not counted against
   * the firm balances.
   */
  node: { trusted: bigint; untrustedPending: bigint; immature: bigint; stranded: bigint; strandedBatches: string[]; maturingDeposits: bigint };
  /**
   * What must be covered by confirmed (or our own change) coins other than maturing deposits: available + reserved −
   * payouts in flight + escrow + transit.
   */
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
  /**
   * The node's trusted coins (1 to deposits.confirmations − 1 deep) that pay deposits their wallets hold as pending
   * (absent: none). Read before `node`, so a coin counted here is in its trusted balance (see Engine.solvency).
   */
  maturingDeposits?: bigint;
  payouts: PayoutState;
  toleranceSats?: bigint;
  now?: number;
}

export function assessSolvency(i: SolvencyInputs): SolvencyReport {
  let inFlight = 0n;
  // In flight: signed, broadcast, or confirmed and not settled — live payouts all (the finished ones are not read).
  for (const p of Object.values(livePayouts(i.payouts))) {
    if (p.status === "signed" || p.status === "broadcast" || (p.status === "confirmed" && !p.walletSettled)) inFlight += p.amount + (p.fee ?? p.quotedFee);
  }
  const l = { ...i.liabilities, transit: i.liabilities.transit ?? 0n };
  const firm = l.available + l.reserved - inFlight + l.escrow + l.transit;
  const total = firm + l.pending;
  const tolerance = i.toleranceSats ?? 0n;
  const stranded = i.stranded?.sats ?? 0n;
  const maturing = i.maturingDeposits ?? 0n;
  const trusted = i.node.trusted + stranded;
  // The coins of deposits still pending in their wallets cover those pending balances, not the firm ones: counted
  // there, a hole of their size (coins gone from the node) would not be seen until they reach the target.
  const covering = trusted - maturing;
  const surplus = trusted + i.node.untrustedPending - total;
  let reason: string | undefined, warning: string | undefined;
  const strandedText = stranded > 0n ? `, ${stranded} of them in stuck batches it holds` : "";
  if (firm > covering + tolerance) {
    const maturingText = maturing > 0n ? `, less ${maturing} sats of deposits not yet at the confirmation target, which back only pending balances` : "";
    reason = `the wallets' firm balances (${firm} sats) exceed the node's trusted balance (${trusted} sats${strandedText}${maturingText}) by ${firm - covering} sats`;
  } else if (total > trusted + i.node.untrustedPending + tolerance) {
    warning = `all liabilities (${total} sats) exceed everything the node holds (${trusted + i.node.untrustedPending} sats${strandedText}): pending deposits the node no longer holds, until the deposit watcher drops them`;
  }
  return {
    liabilities: { ...l, inFlightPayouts: inFlight, total },
    node: { ...i.node, stranded, strandedBatches: i.stranded?.batches ?? [], maturingDeposits: maturing }, firm, surplus, ok: reason === undefined, ...(reason ? { reason } : {}), ...(warning ? { warning } : {}), checkedAt: i.now ?? Date.now(),
  };
}

/**
 * The part of the node's trusted balance that backs pending deposits: its coins 1 to `confirmations` − 1 deep (bitcoind
 * trusts them, their wallets do not count them as available yet) whose outpoint is a deposit its wallet holds as
 * pending (`isPending`: the deposit watcher's open deposits). Not chosen by address label: change carries none, but a
 * house float sent to a labelled address, dust, a payment nobody owns, or a deposit credited as available under a
 * lower target backs no pending balance, and taking it off would show a hole that is not there.
 */
export async function maturingDeposits(
  confirmations: number,
  node: { call<T>(method: string, params?: unknown[]): Promise<T> },
  isPending: (outpoint: string) => boolean,
): Promise<bigint> {
  if (confirmations <= 1) return 0n;
  const coins = await node.call<Array<{ txid: string; vout: number; amount: number }>>("listunspent", [1, confirmations - 1]);
  return coins.reduce((sum, c) => (isPending(`${c.txid}:${c.vout}`) ? sum + btcNumberToSats(c.amount) : sum), 0n);
}
