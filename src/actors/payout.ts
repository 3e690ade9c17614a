// The payout actor: turns reserved withdrawals into signed transactions, exactly once whatever crashes.
// Pipeline per batch: walletcreatefundedpsbt → walletprocesspsbt → finalizepsbt → testmempoolaccept →
// journal the signed tx and its txid → sendrawtransaction → journal "broadcast" → follow confirmations.
// After a restart, signed and broadcast batches are rebroadcast (the same bytes: paying twice is impossible)
// before anything new is built. Never sendtoaddress/sendmany: a retry after a timeout could pay twice.
import type { Logger } from "../log.ts";
import { btcNumberToSats, satsToBtcString } from "../domain/money.ts";
import { refuse, type Refusal } from "../domain/refusals.ts";
import type { PersistentBehaviour } from "./runtime.ts";
import type { EncryptedStore, StoreOp } from "../store/db.ts";
import { idMap, withKey } from "./idmap.ts";
import { Shelf } from "../store/shelf.ts";
import type { Batch, Payout, PayoutCommand, PayoutEvent, PayoutState, PayoutSummary } from "./payout.messages.ts";

export * from "./payout.messages.ts";

/** The RPC calls the payout actor makes, through the node actor's mailbox. */
export interface PayoutNode {
  call<T = unknown>(method: string, params: unknown[]): Promise<T>;
  /** Runs the signing step with the node's wallet unlocked (and locked again after). */
  signing<T>(sign: () => Promise<T>): Promise<T>;
}

export interface PayoutHooks {
  /** Tell the owning wallet; the wallet dedupes, so repeats are harmless. */
  broadcast(userKey: string, id: string, txid: string): void;
  /**
   * Tell the owning wallet the payout is settled. `sync` waits for the answer: true once the wallet has journalled
   * the settlement (or had already), a refusal if it will not.
   */
  settled(userKey: string, id: string, txid: string, fee: bigint): Promise<true | Refusal>;
  /** Operators must look: a batch could not be broadcast or funded. */
  alert(reason: string, detail: Record<string, unknown>): void;
  /** A batch went out: how much the users were quoted and what it cost. */
  batchSent?(info: { batch: string; outputs: number; fee: bigint; quoted: bigint }): void;
}

/** The pipeline's steps, for tests that crash at each: a batch funded, signed, recorded, sent; sync's confirmations recorded. */
export type PayoutStep = "funded" | "signed" | "recorded" | "sent" | "confirmed";

/**
 * Payouts that left the book (see the "pruned" event): one store record each, keyed by an HMAC of its id, written
 * in the same batch as the event. A wallet re-submitting one (its message was late) is told it is confirmed.
 */
export class FinishedPayouts {
  /** By payout id: its transaction and fee. */
  readonly #paid: Shelf<{ txid: string; fee: bigint }>;
  /** By transaction id: the pruned batches' transactions. */
  readonly #txs: Shelf<true>;

  constructor(store: EncryptedStore) {
    this.#paid = new Shelf(store, "paid", (id) => store.mac("payout", id));
    this.#txs = new Shelf(store, "paid", (txid) => store.mac("payout-tx", txid));
  }

  get(id: string): PayoutSummary | undefined {
    const r = this.#paid.get(id);
    return r && { id, status: "confirmed", txid: r.txid, fee: r.fee };
  }

  op(id: string, txid: string, fee: bigint): StoreOp {
    return this.#paid.op(id, { txid, fee });
  }

  /** Whether this transaction is one of a batch that left the book (a restore's reconciliation asks). */
  paidBy(txid: string): boolean {
    return this.#txs.has(txid);
  }

  /** A pruned batch's transaction, and those its fee bumps replaced. */
  txOps(b: Batch): StoreOp[] {
    return [b.txid, ...b.replaced].map((txid) => this.#txs.op(txid, true));
  }
}

export interface PayoutOptions {
  node: PayoutNode;
  /** Where pruned payouts are remembered. */
  finished: FinishedPayouts;
  /**
   * Finished payouts the book keeps (the newest; what /payouts and the console show): more would make every event,
   * which copies the book, and every snapshot of it grow with the service's whole past.
   */
  retainFinished: number;
  hooks: PayoutHooks;
  log: Logger;
  confirmations: number;
  maxOutputsPerBatch: number;
  feeRate: () => Promise<bigint>;
  now?: () => number;
  /** Test hook: called at each pipeline step; throwing simulates a crash at that point. */
  step?: (name: PayoutStep) => void;
}

export const PAYOUT_JOURNAL_KEY = "payouts";

export function emptyPayouts(): PayoutState {
  return { payouts: idMap(), batches: idMap(), seq: 0 };
}

/** Pure: applies one event. */
export function evolvePayouts(s: PayoutState, e: PayoutEvent): PayoutState {
  switch (e.t) {
    case "queued": {
      // Every field from the start (a spread adding one later gives each payout a hidden class of its own).
      const p: Payout = {
        userKey: e.userKey, address: e.address, amount: BigInt(e.amount), quotedFee: BigInt(e.quotedFee), status: "queued", batch: undefined, fee: undefined,
        walletSettled: undefined, at: e.at,
      };
      return { ...s, payouts: withKey(s.payouts, e.id, p) };
    }
    case "signed": {
      const payouts = idMap(s.payouts);
      let quoted = 0n;
      e.ids.forEach((id, i) => {
        const p = payouts[id]!;
        quoted += p.quotedFee;
        payouts[id] = { ...p, status: "signed", batch: e.batch, fee: BigInt(e.shares[i]!) };
      });
      const b: Batch = { ids: e.ids, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), quoted, status: "signed", replaced: [], at: e.at, reason: undefined, ...(e.adopted ? { adopted: true as const } : {}) };
      return { ...s, seq: s.seq + 1, payouts, batches: withKey(s.batches, e.batch, b) };
    }
    case "broadcast":
    case "confirmed":
    case "stuck": {
      const b = s.batches[e.batch]!;
      if (e.t === "confirmed" && e.txid !== undefined && e.txid !== b.txid) {
        // An earlier transaction of the batch is the one in the block: its fee, split as it was.
        const payouts = idMap(s.payouts);
        b.ids.forEach((id, i) => (payouts[id] = { ...payouts[id]!, fee: BigInt(e.shares![i]!), status: "confirmed" }));
        const batch: Batch = { ...b, txid: e.txid, fee: BigInt(e.fee!), status: "confirmed", replaced: [...b.replaced.filter((t) => t !== e.txid), b.txid] };
        return { ...s, payouts, batches: withKey(s.batches, e.batch, batch) };
      }
      const status = e.t === "broadcast" ? "broadcast" : e.t === "confirmed" ? "confirmed" : "stuck";
      const payouts = idMap(s.payouts);
      for (const id of b.ids) payouts[id] = { ...payouts[id]!, status };
      return { ...s, payouts, batches: withKey(s.batches, e.batch, { ...b, status, ...(e.t === "stuck" ? { reason: e.reason } : {}) }) };
    }
    case "wallet_settled": {
      const payouts = idMap(s.payouts);
      for (const id of e.ids) payouts[id] = { ...payouts[id]!, walletSettled: true };
      return { ...s, payouts };
    }
    case "pruned": {
      const payouts = idMap(s.payouts), batches = idMap(s.batches);
      for (const id of e.ids) delete payouts[id];
      for (const b of e.batches) delete batches[b];
      return { ...s, payouts, batches };
    }
    case "replaced": {
      const b = s.batches[e.batch]!;
      const payouts = idMap(s.payouts);
      b.ids.forEach((id, i) => (payouts[id] = { ...payouts[id]!, fee: BigInt(e.shares[i]!), status: "signed" }));
      const batch: Batch = { ...b, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), status: "signed", replaced: [...b.replaced, b.txid] };
      return { ...s, payouts, batches: withKey(s.batches, e.batch, batch) };
    }
  }
}

/**
 * Splits a batch's fee into per-output shares: equal parts (the remainder to the first outputs), each capped
 * at what that user was quoted. Whatever the caps cut is paid by the service, never by another user.
 */
export function feeShares(fee: bigint, quoted: bigint[]): bigint[] {
  const n = BigInt(quoted.length);
  const base = fee / n;
  let rest = fee % n;
  return quoted.map((q) => {
    let share = base;
    if (rest > 0n) {
      share += 1n;
      rest -= 1n;
    }
    return share > q ? q : share;
  });
}

/** Journals events (with store records written in the same batch) and moves the book on. */
type Commit = (events: PayoutEvent[], records?: StoreOp[]) => Promise<void>;

interface RpcError {
  code?: number;
  message?: string;
}

export function payoutBehaviour(o: PayoutOptions): PersistentBehaviour<PayoutState, PayoutCommand, PayoutEvent> {
  const now = o.now ?? Date.now;
  const step = o.step ?? (() => undefined);
  return {
    key: PAYOUT_JOURNAL_KEY,
    initial: emptyPayouts,
    // A snapshot's maps come back from JSON with a prototype: dictionaries again, as evolve keeps them.
    restore: (d) => ({ ...d, payouts: idMap(d.payouts), batches: idMap(d.batches) }),
    evolve: evolvePayouts,
    snapshotEvery: 200,
    async handle(state, cmd, persist) {
      let s = state;
      const commit = async (events: PayoutEvent[], records?: StoreOp[]) => {
        await persist(events, records ? { r: records } : undefined);
        s = events.reduce(evolvePayouts, s);
      };
      switch (cmd.type) {
        case "state":
          cmd.reply(s);
          return s;
        case "adopt":
          try {
            cmd.reply(await adopt(cmd.txid, cmd.ids, cmd.outputs, () => s, commit, o, now));
          } catch (e) {
            cmd.reply(refuse("node_unavailable", `the transaction could not be read from the node: ${(e as Error).message}`));
          }
          return s;
        case "hold":
          try {
            cmd.reply({ value: await cmd.read(s) });
          } catch (error) {
            cmd.reply({ error });
          }
          return s;
        case "submit": {
          const known = s.payouts[cmd.id];
          if (!known) {
            const finished = o.finished.get(cmd.id);
            if (finished) {
              cmd.reply(finished);
              return s;
            }
            await commit([{ t: "queued", id: cmd.id, userKey: cmd.userKey, address: cmd.address, amount: cmd.amount.toString(), quotedFee: cmd.quotedFee.toString(), at: now() }]);
          } else {
            reannounce(cmd.id, known, s, o);
          }
          cmd.reply(summary(cmd.id, s));
          return s;
        }
        case "flush": {
          try {
            const batches = await flush(() => s, commit, o, now, step);
            cmd.reply({ batches });
          } catch (e) {
            cmd.reply(refuse("node_unavailable", `payouts could not be built now: ${(e as Error).message}`));
          }
          return s;
        }
        case "sync": {
          try {
            cmd.reply(await sync(() => s, commit, o, now, step));
          } catch (e) {
            cmd.reply(refuse("node_unavailable", `payouts could not be checked now: ${(e as Error).message}`));
          }
          return s;
        }
        case "bump": {
          try {
            cmd.reply(await bump(cmd.batch, cmd.feeRateSatVb, () => s, commit, o, now));
          } catch (e) {
            cmd.reply(refuse("bad_input", `the fee bump failed: ${(e as Error).message}`));
          }
          return s;
        }
      }
    },
  };
}

function summary(id: string, s: PayoutState): PayoutSummary {
  const p = s.payouts[id]!;
  const b = p.batch ? s.batches[p.batch] : undefined;
  return { id, status: p.status, ...(b ? { txid: b.txid } : {}), ...(p.fee !== undefined ? { fee: p.fee } : {}) };
}

/**
 * A wallet re-submitted a payout we already know: tell it where it stands (its earlier message may be lost). A
 * confirmed payout its wallet has not acknowledged is left to `sync`, which runs at every start and block and
 * records the acknowledgement.
 */
function reannounce(id: string, p: Payout, s: PayoutState, o: PayoutOptions): void {
  const b = p.batch ? s.batches[p.batch] : undefined;
  if (b?.status === "broadcast") o.hooks.broadcast(p.userKey, id, b.txid);
}

async function flush(
  get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number, step: NonNullable<PayoutOptions["step"]>,
): Promise<number> {
  // Anything signed but not yet broadcast goes out first: those coins are spoken for.
  await rebroadcastAll(get, commit, o, now);
  let built = 0;
  for (;;) {
    const queued = Object.entries(get().payouts).filter(([, p]) => p.status === "queued").sort((a, b) => a[1].at - b[1].at);
    if (queued.length === 0) return built;
    // One output per address per transaction: bitcoind refuses duplicated addresses.
    const seen = new Set<string>();
    const pick = queued.filter(([, p]) => (seen.has(p.address) ? false : (seen.add(p.address), true))).slice(0, o.maxOutputsPerBatch);
    const rate = await o.feeRate();
    const outputs = pick.map(([, p]) => ({ [p.address]: satsToBtcString(p.amount) }));
    const funded = await o.node.call<{ psbt: string; fee: number; changepos: number }>("walletcreatefundedpsbt", [
      // No lockUnspents: this actor is the only spender and works one batch at a time, and locks that
      // outlive a crash would strand coins. Signed-but-unsent batches are rebroadcast before any new build.
      [], outputs, 0, { fee_rate: Number(rate), replaceable: true, change_type: "bech32", minconf: 1 },
    ]);
    step("funded");
    const processed = await o.node.signing(() => o.node.call<{ psbt: string; complete: boolean }>("walletprocesspsbt", [funded.psbt, true, "ALL", true]));
    const final = await o.node.call<{ hex?: string; complete: boolean }>("finalizepsbt", [processed.psbt]);
    if (!final.complete || !final.hex) throw new Error("the node could not sign the payout transaction (is the wallet locked?)");
    const accept = await o.node.call<Array<{ txid: string; allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[final.hex]]);
    const verdict = accept[0]!;
    step("signed");
    const fee = btcNumberToSats(funded.fee);
    const ids = pick.map(([id]) => id);
    const shares = feeShares(fee, pick.map(([, p]) => p.quotedFee));
    const batch = `b${get().seq + 1}`;
    // Journal the signed bytes and txid BEFORE broadcasting: after a crash we rebroadcast these, never re-sign.
    await commit([{ t: "signed", batch, ids, hex: final.hex, txid: verdict.txid, fee: fee.toString(), shares: shares.map(String), at: now() }]);
    step("recorded");
    if (!verdict.allowed) {
      await markStuck(batch, `the node's mempool refuses it: ${verdict["reject-reason"] ?? "unknown reason"}`, get, commit, o, now);
    } else {
      await broadcast(batch, get, commit, o, now);
      step("sent");
    }
    const quoted = pick.reduce((sum, [, p]) => sum + p.quotedFee, 0n);
    o.hooks.batchSent?.({ batch, outputs: ids.length, fee, quoted });
    o.log.info({ batch, outputs: ids.length, fee: fee.toString(), saved: (quoted - fee).toString() }, "payout batch signed");
    built++;
  }
}

async function broadcast(batch: string, get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<boolean> {
  const b = get().batches[batch]!;
  try {
    await o.node.call("sendrawtransaction", [b.hex]);
  } catch (e) {
    const err = e as RpcError;
    // -27: already in the chain (or its outputs are already in the UTXO set): it went out before. Success.
    if (err.code !== -27) {
      if (err.code === -25 || err.code === -26) {
        // Refused because one of its transactions is already in a block (the one a fee bump replaced, mined first;
        // or this one, its outputs since spent): not stuck; `sync` confirms it with the one mined.
        if ((await minedTx(b, o)).mined) {
          // In a block already: out of the node's wallet (in flight for the watchdog) until sync confirms it.
          if (b.status === "signed") await commit([{ t: "broadcast", batch, at: now() }]);
          return false;
        }
        await markStuck(batch, `broadcast refused (${err.code}): ${err.message ?? ""}`, get, commit, o, now);
        return false;
      }
      throw e;
    }
  }
  if (b.status === "signed") await commit([{ t: "broadcast", batch, at: now() }]);
  for (const id of b.ids) o.hooks.broadcast(get().payouts[id]!.userKey, id, b.txid);
  return true;
}

async function markStuck(batch: string, reason: string, get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number) {
  if (get().batches[batch]?.status !== "stuck") await commit([{ t: "stuck", batch, reason, at: now() }]);
  o.hooks.alert("payout batch stuck", { batch, reason });
}

async function rebroadcastAll(get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<number> {
  let n = 0;
  for (const [batch, b] of Object.entries(get().batches)) {
    if (b.status === "signed" || b.status === "broadcast") {
      if (await broadcast(batch, get, commit, o, now)) n++;
    }
  }
  return n;
}

interface WalletTx {
  confirmations: number;
  fee?: number;
  replaced_by_txid?: string;
}

/**
 * The first of a batch's transactions — its latest, then those its fee bumps replaced — that is in a block, with
 * its confirmations and fee (`mined`; none: a transaction the node's wallet never saw counts as not mined), and the
 * node's record of the latest (`latest`, when the wallet has it).
 */
async function minedTx(b: Batch, o: PayoutOptions): Promise<{ mined?: { txid: string; confirmations: number; fee: bigint }; latest?: WalletTx }> {
  let latest: WalletTx | undefined;
  for (const txid of [b.txid, ...b.replaced]) {
    let tx: WalletTx;
    try {
      tx = await o.node.call<WalletTx>("gettransaction", [txid]);
    } catch (e) {
      if ((e as RpcError).code === -5) continue;
      throw e;
    }
    if (txid === b.txid) latest = tx;
    if (tx.confirmations > 0) return { mined: { txid, confirmations: tx.confirmations, fee: btcNumberToSats(Math.abs(tx.fee ?? 0)) }, latest };
  }
  return { latest };
}

async function sync(get: () => PayoutState, commit: Commit, o: PayoutOptions, now: () => number, step: NonNullable<PayoutOptions["step"]>) {
  const rebroadcast = await rebroadcastAll(get, commit, o, now);
  let confirmed = 0;
  for (const [batch, b] of Object.entries(get().batches)) {
    // A stuck batch too: its broadcast may have been refused because one of its transactions was already mined, or
    // it may be mined from other nodes' mempools after ours dropped it. Its wallets are then settled like any other.
    if (b.status !== "broadcast" && b.status !== "stuck") continue;
    const { mined, latest } = await minedTx(b, o);
    if (mined && mined.confirmations >= o.confirmations) {
      const earlier = mined.txid !== b.txid
        ? { txid: mined.txid, fee: mined.fee.toString(), shares: feeShares(mined.fee, b.ids.map((id) => get().payouts[id]!.quotedFee)).map(String) }
        : {};
      await commit([{ t: "confirmed", batch, at: now(), ...earlier }]);
      if (b.status === "stuck") o.log.warn({ batch, txid: mined.txid }, "a payout batch marked stuck is confirmed on chain after all");
      confirmed++;
    } else if (mined && b.status === "stuck") {
      // In a block, not deep enough yet: out of the node's wallet, so in flight for the watchdog, as a broadcast one.
      await commit([{ t: "broadcast", batch, at: now() }]);
      o.log.warn({ batch, txid: mined.txid }, "a payout batch marked stuck is in a block after all");
    } else if (!mined && b.status === "broadcast" && latest && latest.confirmations < 0 && !latest.replaced_by_txid) {
      o.hooks.alert("payout conflicted on chain", { batch, txid: b.txid });
    }
  }
  if (confirmed > 0) step("confirmed");
  const settled = await settleWallets(get, commit, o, now);
  await prune(get, commit, o, now);
  return { confirmed, rebroadcast, settled };
}

/** At most this many payouts leave the book in one event (one journal record, one store batch). */
const PRUNE_CHUNK = 1000;

/**
 * Finished payouts — confirmed, and their wallets have journalled the settlement, so nothing will ask about them
 * but a late re-submission — beyond the newest `retainFinished` leave the book, oldest first, each remembered by
 * a store record written in the same batch; so do the confirmed batches left with no payout.
 */
async function prune(get: () => PayoutState, commit: Commit, o: PayoutOptions, now: () => number): Promise<void> {
  const finished = Object.entries(get().payouts).filter(([, p]) => p.status === "confirmed" && p.walletSettled).sort((a, b) => a[1].at - b[1].at);
  const excess = finished.slice(0, Math.max(0, finished.length - o.retainFinished));
  for (let i = 0; i < excess.length; i += PRUNE_CHUNK) {
    const chunk = excess.slice(i, i + PRUNE_CHUNK);
    const s = get();
    const records = chunk.map(([id, p]) => o.finished.op(id, s.batches[p.batch!]!.txid, p.fee ?? p.quotedFee));
    const leaving = new Set(chunk.map(([id]) => id));
    const batches = [...new Set(chunk.map(([, p]) => p.batch!))]
      .filter((b) => s.batches[b]!.status === "confirmed" && s.batches[b]!.ids.every((id) => leaving.has(id) || !s.payouts[id]));
    for (const b of batches) records.push(...o.finished.txOps(s.batches[b]!));
    await commit([{ t: "pruned", ids: chunk.map(([id]) => id), batches, at: now() }], records);
  }
}

/** Wallets told at once; more would activate a crowd of wallets together (after an upgrade, every old payout). */
const SETTLE_CONCURRENCY = 64;

/**
 * Every confirmed payout whose wallet has not acknowledged its settlement — just confirmed, or confirmed before a
 * crash that came before the wallet journalled it — is told to its wallet, and the acknowledgements are recorded.
 * Wallets never wait on this actor, so waiting for them here cannot deadlock. A wallet that refuses keeps its
 * payout counted in flight by the watchdog, and operators are told.
 */
async function settleWallets(get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<number> {
  const open = Object.entries(get().payouts).filter(([, p]) => p.status === "confirmed" && !p.walletSettled);
  let settled = 0;
  for (let i = 0; i < open.length; i += SETTLE_CONCURRENCY) {
    const chunk = open.slice(i, i + SETTLE_CONCURRENCY);
    const answers = await Promise.all(chunk.map(([id, p]) => o.hooks.settled(p.userKey, id, get().batches[p.batch!]!.txid, p.fee ?? p.quotedFee)
      .catch((e: unknown) => refuse("internal", (e as Error).message))));
    const ids = chunk.filter((_, j) => answers[j] === true).map(([id]) => id);
    answers.forEach((a, j) => {
      if (a !== true) o.hooks.alert("a wallet did not settle a confirmed payout; it stays counted as in flight", { id: chunk[j]![0], refusal: a.code, why: a.message });
    });
    if (ids.length) await commit([{ t: "wallet_settled", ids, at: now() }]);
    settled += ids.length;
  }
  return settled;
}

async function adopt(txid: string, ids: string[], outputs: number, get: () => PayoutState, commit: Commit, o: PayoutOptions, now: () => number): Promise<{ batch: string } | Refusal> {
  const had = Object.entries(get().batches).find(([, b]) => b.txid === txid || b.replaced.includes(txid));
  if (had) return { batch: had[0] };
  const payouts = ids.map((id) => get().payouts[id]);
  if (ids.length === 0 || payouts.some((p) => p?.status !== "queued")) return refuse("not_allowed", `Only queued payouts can be adopted by ${txid}.`);
  // The node's own record of its send: its bytes (for the book) and the fee it paid.
  const tx = await o.node.call<{ hex: string; fee?: number }>("gettransaction", [txid]);
  // The adopted payouts' part of the fee: the transaction also paid outputs the restored books do not know.
  const fee = btcNumberToSats(Math.abs(tx.fee ?? 0)) * BigInt(ids.length) / BigInt(Math.max(outputs, ids.length));
  const shares = feeShares(fee, payouts.map((p) => p!.quotedFee));
  const batch = `b${get().seq + 1}`;
  await commit([
    { t: "signed", batch, ids, hex: tx.hex, txid, fee: fee.toString(), shares: shares.map(String), at: now(), adopted: true },
    { t: "broadcast", batch, at: now() },
  ]);
  for (const id of ids) o.hooks.broadcast(get().payouts[id]!.userKey, id, txid);
  o.log.warn({ batch, txid, payouts: ids.length }, "queued payouts found paid by a transaction made after the backup: recorded as its batch");
  return { batch };
}

async function bump(batch: string, feeRate: bigint, get: () => PayoutState, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<{ txid: string; fee: bigint } | Refusal> {
  const b = get().batches[batch];
  if (!b) return refuse("not_found", `No payout batch ${batch}.`);
  if (b.status === "confirmed") return refuse("not_allowed", `Batch ${batch} is already confirmed; there is nothing to bump.`);
  // psbtbumpfee gives an unsigned replacement, so the replacement is journalled before it is broadcast.
  const bumped = await o.node.call<{ psbt: string; fee: number }>("psbtbumpfee", [b.txid, { fee_rate: Number(feeRate) }]);
  const processed = await o.node.signing(() => o.node.call<{ psbt: string }>("walletprocesspsbt", [bumped.psbt, true, "ALL", true]));
  const final = await o.node.call<{ hex?: string; complete: boolean }>("finalizepsbt", [processed.psbt]);
  if (!final.complete || !final.hex) throw new Error("the node could not sign the replacement");
  const decoded = await o.node.call<{ txid: string }>("decoderawtransaction", [final.hex]);
  const fee = btcNumberToSats(bumped.fee);
  const shares = feeShares(fee, b.ids.map((id) => get().payouts[id]!.quotedFee));
  await commit([{ t: "replaced", batch, hex: final.hex, txid: decoded.txid, fee: fee.toString(), shares: shares.map(String), at: now() }]);
  if (!(await broadcast(batch, get, commit, o, now))) {
    const after = get().batches[batch];
    if (after?.status !== "stuck") return refuse("not_allowed", `Batch ${batch} is already in a block (the transaction the bump replaced was mined first); it is confirmed at the next block.`);
    return refuse("not_allowed", `The node refused the replacement (${after.reason ?? "no reason given"}); batch ${batch} is marked stuck.`);
  }
  return { txid: decoded.txid, fee };
}
