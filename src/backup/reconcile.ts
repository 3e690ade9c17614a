// After a restore, before anything is paid: compare the restored books with the chain. Deposits made after
// the backup are found again by the deposit watcher (its cursor came back with the store). Spends of the
// engine's coins that the restored payout journal does not know — a payout made after the last backup —
// cannot be matched to a withdrawal the books no longer hold, so they are never absorbed silently: the
// wallets they may concern are frozen, payouts stay paused, and operators are told what and why.
import type { Logger } from "../log.ts";
import { btcNumberToSats, formatBtc } from "../domain/money.ts";
import type { ListSinceBlock } from "../actors/node.ts";
import { cancelTxids, type PayoutState } from "../actors/payout.messages.ts";

export interface UnknownSpend {
  txid: string;
  confirmations: number;
  outputs: Array<{ address: string; sats: string }>;
}

/** Readings of every wallet's holdings after a restore, at most (see reconcileAfterRestore). */
const MAX_FREEZE_ROUNDS = 5;

export interface Incident {
  at: number;
  archive: string;
  unknownSpends: UnknownSpend[];
  /** Wallets frozen because an unknown spend may have paid their money out. */
  frozen: string[];
  /**
   * Queued payouts an unknown spend paid (an output to the same address and amount; of several such payouts of one
   * wallet, the oldest): recorded as its batch.
   */
  adopted?: Array<{ txid: string; ids: string[] }>;
  /**
   * Queued payouts of several wallets alike (address and amount) to an output of an unknown spend: one of them was
   * paid, which one the chain cannot say. They stay queued: an operator must settle them before payouts resume.
   */
  ambiguous?: string[];
  /** Incidents of earlier restores still open when this one was found (nothing of theirs is dropped). */
  earlier?: Incident[];
  /**
   * Why the restored books may not reach the crash (restore.ts, restoreLoss): a lossy restore is an incident even when
   * the chain shows no unknown spend, since a payout sent after the backup and not mined yet shows in no chain.
   */
  lost?: string;
  /** Cheques open in the restored books held for review (Engine.releaseHeldCheques), when the comparison was made. */
  heldCheques?: number;
  /** When and by whom payouts were resumed: the incident is kept, resolved, for the record (Engine.lastRestoreIncident). */
  resolved?: { at: number; by: string };
}

export interface ReconcileDeps {
  log: Logger;
  /** Every transaction of the node wallet since the block (all of them when undefined). */
  listSinceBlock: (hash: string | undefined) => Promise<ListSinceBlock>;
  payouts: () => Promise<PayoutState>;
  /** Whether a transaction paid a batch that has left the payout book (finished, pruned: see payout.ts). */
  paidBy: (txid: string) => boolean;
  freeze: (userKey: string, reason: string) => Promise<unknown>;
  /**
   * Records queued payouts as paid by a transaction of the node with `outputs` outputs to others (payout.ts,
   * "adopt"); throws if it cannot. Idempotent per transaction.
   */
  adopt: (txid: string, ids: string[], outputs: number) => Promise<unknown>;
  /** Every wallet and what it holds that a payout could take (available + reserved; undefined: unknown). */
  holdings: () => AsyncIterable<[userKey: string, sats: bigint | undefined]>;
}

/**
 * Finds the node wallet's sends the restored payout journal does not know, and freezes the wallets they may
 * concern: those with a queued payout to the same address and amount, and — for outputs no queued payout
 * explains (the withdrawal itself came after the backup) — every wallet that held at least that amount.
 */
export async function reconcileAfterRestore(d: ReconcileDeps, o: { sinceBlock: string | undefined; archive: string }): Promise<Incident | undefined> {
  const state = await d.payouts();
  // A batch adopted by an earlier run of this comparison (one that died before it finished) is no explanation: its
  // transaction is still a spend the backup did not know, and is reported again.
  const known = new Set<string>();
  const adoptedBy = new Map<string, Set<string>>();
  for (const [, b] of Object.entries(state.batches)) {
    if (b.adopted) {
      adoptedBy.set(b.txid, new Set(b.ids));
      continue;
    }
    known.add(b.txid);
    for (const r of b.replaced) known.add(r);
    // A released batch's cancellations: the engine's own spends back to its wallet.
    for (const c of cancelTxids(b)) known.add(c);
  }
  const since = await d.listSinceBlock(o.sinceBlock);
  const byTx = new Map<string, UnknownSpend>();
  for (const t of since.transactions) {
    if (t.category !== "send" || known.has(t.txid) || t.confirmations < 0 || t.abandoned || d.paidBy(t.txid)) continue;
    const u = byTx.get(t.txid) ?? { txid: t.txid, confirmations: t.confirmations, outputs: [] };
    u.outputs.push({ address: t.address ?? "(no address)", sats: (-btcNumberToSats(t.amount)).toString() });
    byTx.set(t.txid, u);
  }
  if (byTx.size === 0) return undefined;
  const unknown = [...byTx.values()];

  const concerned = new Set<string>();
  const unexplained: bigint[] = [];
  const queued = Object.entries(state.payouts).filter(([, p]) => p.status === "queued");
  const adopted: Array<{ txid: string; ids: string[]; outputs: number }> = [];
  const taken = new Set<string>();
  const ambiguous = new Set<string>();
  for (const u of unknown) {
    const ids: string[] = [];
    const before = adoptedBy.get(u.txid);
    for (const out of u.outputs) {
      const sats = BigInt(out.sats);
      const alike = ([id, p]: [string, (typeof state.payouts)[string]]) => p.address === out.address && p.amount === sats && !taken.has(id);
      // Adopted by an earlier run: explained as then (its wallet frozen again).
      const earlier = before ? Object.entries(state.payouts).find(([id, p]) => before.has(id) && alike([id, p])) : undefined;
      if (earlier) {
        taken.add(earlier[0]);
        concerned.add(earlier[1].userKey);
        continue;
      }
      const match = queued.filter(alike).sort((a, b) => a[1].at - b[1].at);
      for (const [, p] of match) concerned.add(p.userKey);
      // Paid by this output: it must not stay queued (a resume would pay it again). Several payouts alike of one
      // wallet (the same withdrawal asked twice) are the same to it: the oldest not yet taken is this one. Payouts
      // alike of several wallets stay queued, their wallets frozen, and are named in the incident for an operator;
      // an output no payout explains freezes the wallets that could have paid it.
      if (match.length > 0 && new Set(match.map(([, p]) => p.userKey)).size === 1) {
        taken.add(match[0]![0]);
        ids.push(match[0]![0]);
      } else if (match.length > 0) {
        for (const [id] of match) ambiguous.add(id);
      } else unexplained.push(sats);
    }
    if (ids.length) adopted.push({ txid: u.txid, ids, outputs: u.outputs.length });
    else if (before) adopted.push({ txid: u.txid, ids: [...before], outputs: u.outputs.length });
  }
  for (const a of adopted) await d.adopt(a.txid, a.ids, a.outputs);
  const txids = unknown.map((u) => u.txid);
  const frozen = new Set<string>();
  const freezeAll = async () => {
    for (const userKey of concerned) {
      if (frozen.has(userKey)) continue;
      await d.freeze(userKey, `restored from a backup: spend ${txids.join(", ")} is not in the restored books and may have paid this wallet's money`);
      frozen.add(userKey);
    }
  };
  if (unexplained.length) {
    const smallest = unexplained.reduce((a, b) => (b < a ? b : a));
    // Wallets are read, then frozen: meanwhile one read with the amount may have sent it to one read without. The
    // reading is repeated until it finds no wallet not yet frozen that holds as much (money moves only among wallets
    // not frozen yet, so each round leaves it fewer places), at most MAX_FREEZE_ROUNDS times; money still moving after
    // that is said in the log for the operator to follow (cheque escrow is not a wallet, and is not read either).
    let settled = false;
    for (let round = 0; round < MAX_FREEZE_ROUNDS && !settled; round++) {
      const before = concerned.size;
      // A wallet that cannot be read is frozen too: it may hold that much.
      for await (const [userKey, sats] of d.holdings()) if (sats === undefined || sats >= smallest) concerned.add(userKey);
      await freezeAll();
      settled = round > 0 && concerned.size === before;
    }
    if (!settled) d.log.warn({ frozen: concerned.size, rounds: MAX_FREEZE_ROUNDS }, "after the restore: wallets holding an unexplained spend's amount were still changing at the last reading; check the wallets that received transfers since (the audit, /wallets)");
  }
  await freezeAll();
  for (const id of taken) ambiguous.delete(id);
  const incident: Incident = {
    at: Date.now(), archive: o.archive, unknownSpends: unknown, frozen: [...concerned], ...(adopted.length ? { adopted: adopted.map(({ txid, ids }) => ({ txid, ids })) } : {}),
    ...(ambiguous.size ? { ambiguous: [...ambiguous] } : {}),
  };
  d.log.error({
    alert: true, txids, frozen: concerned.size,
    sent: unknown.map((u) => formatBtc(u.outputs.reduce((n, x) => n + BigInt(x.sats), 0n))),
  }, "after the restore: the node wallet spent coins the restored books do not know; wallets frozen and payouts paused for an operator");
  return incident;
}

/**
 * The incident's ambiguous payouts still to be settled by an operator, as the payout book now stands: each one still
 * queued while fewer of the payouts alike to it (address and amount) have left the queue (adopted) than the unknown
 * spends have outputs alike to it.
 */
export function stillAmbiguous(incident: Incident, book: Pick<PayoutState, "payouts">): string[] {
  const listed = incident.ambiguous ?? [];
  return listed.filter((q) => {
    const x = book.payouts[q];
    if (!x || x.status !== "queued") return false;
    const outputs = incident.unknownSpends.reduce((n, u) => n + u.outputs.filter((o) => o.address === x.address && BigInt(o.sats) === x.amount).length, 0);
    const paid = listed.filter((y) => {
      const z = book.payouts[y];
      return z !== undefined && z.status !== "queued" && z.address === x.address && z.amount === x.amount;
    }).length;
    return paid < outputs;
  });
}
