// The payout actor: turns reserved withdrawals into signed transactions, exactly once whatever crashes.
// Pipeline per batch: walletcreatefundedpsbt → walletprocesspsbt → finalizepsbt → testmempoolaccept →
// journal the signed tx and its txid → sendrawtransaction → journal "broadcast" → follow confirmations.
// After a restart, signed and broadcast batches are rebroadcast (the same bytes: paying twice is impossible)
// before anything new is built. Never sendtoaddress/sendmany: a retry after a timeout could pay twice.
import type { Logger } from "../log.ts";
import { btcNumberToSats, satsToBtcString } from "../domain/money.ts";
import { refuse, type Refusal } from "../domain/refusals.ts";
import { canonicalAddress } from "../domain/address.ts";
import type { PersistentBehaviour } from "./runtime.ts";
import type { EncryptedStore, StoreOp } from "../store/db.ts";
import { idMap } from "./idmap.ts";
import { CopyOnWrite, EMPTY_ROW, emptyLevel, entriesOf, levelOf, lookup, type Level } from "./shards.ts";
import { Shelf } from "../store/shelf.ts";
import { StoreError } from "../store/errors.ts";
import { feeFloorOf, type MempoolInfo } from "./node.ts";
import { cancelTxids, type Batch, type Cancel, type Payout, type PayoutCommand, type PayoutEvent, type PayoutHealth, type PayoutState, type PayoutSummary, type ReleaseAnswer } from "./payout.messages.ts";

export * from "./payout.messages.ts";

/** The RPC calls the payout actor makes, through the node actor's mailbox. */
export interface PayoutNode {
  call<T = unknown>(method: string, params: unknown[]): Promise<T>;
  /** Runs the signing step with the node's wallet unlocked (and locked again after). */
  signing<T>(sign: () => Promise<T>): Promise<T>;
}

export interface PayoutHooks {
  /**
   * Tell the owning wallet; the wallet dedupes, so repeats are harmless. Resolves true once the wallet took it, false
   * if it did not (busy, timed out: it is told again at the next send of the batch, see tellBroadcast); a hook that
   * returns nothing counts as delivered.
   */
  broadcast(userKey: string, id: string, txid: string): Promise<boolean> | void;
  /**
   * Tell the owning wallet the payout is settled. `sync` waits for the answer: true once the wallet has journalled
   * the settlement (or had already), a refusal if it will not.
   */
  settled(userKey: string, id: string, txid: string, fee: bigint): Promise<true | Refusal>;
  /**
   * Tell the owning wallet its payout will never be paid (an operator released its stuck batch): the reservation
   * goes back to the user. As `settled`: true once the wallet has journalled it.
   */
  released(userKey: string, id: string, reason: string): Promise<true | Refusal>;
  /** Operators must look: a batch could not be broadcast or funded. */
  alert(reason: string, detail: Record<string, unknown>): void;
  /** A batch went out: how much the users were quoted and what it cost. */
  batchSent?(info: { batch: string; outputs: number; fee: bigint; quoted: bigint }): void;
}

/**
 * The pipeline's steps, for tests that crash at each: a batch funded, signed, recorded, sent; sync's confirmations
 * recorded; a fee bump's replacement, a release's cancellation journalled (not yet broadcast).
 */
export type PayoutStep = "funded" | "signed" | "recorded" | "sent" | "confirmed" | "bump_recorded" | "cancel_recorded";

/**
 * Payouts that left the book (see the "pruned" event): one store record each, keyed by an HMAC of its id, written
 * in the same batch as the event. A wallet re-submitting one (its message was late) is told it is confirmed, or, for
 * one released, that it is released: never queued, so never paid, again.
 */
export class FinishedPayouts {
  /** By payout id: its transaction and fee; for a released one (never paid, its amount given back), that alone. */
  readonly #paid: Shelf<{ txid: string; fee: bigint } | { released: true }>;
  /** By transaction id: the pruned batches' transactions. */
  readonly #txs: Shelf<true>;

  constructor(store: EncryptedStore) {
    this.#paid = new Shelf(store, "paid", (id) => store.mac("payout", id));
    this.#txs = new Shelf(store, "paid", (txid) => store.mac("payout-tx", txid));
  }

  get(id: string): PayoutSummary | undefined {
    const r = this.#paid.get(id);
    if (!r) return undefined;
    return "released" in r ? { id, status: "released" } : { id, status: "confirmed", txid: r.txid, fee: r.fee };
  }

  op(id: string, txid: string, fee: bigint): StoreOp {
    return this.#paid.op(id, { txid, fee });
  }

  /** The record of a released payout that leaves the book (its batch released, or given back while queued). */
  releasedOp(id: string): StoreOp {
    return this.#paid.op(id, { released: true });
  }

  /** Whether this transaction is one of a batch that left the book (a restore's reconciliation asks). */
  paidBy(txid: string): boolean {
    return this.#txs.has(txid);
  }

  /**
   * A pruned batch's transaction, those its fee bumps replaced and, for a released one, its cancellations: the book's
   * own spends, which a restore's reconciliation must not take for spends it does not know.
   */
  txOps(b: Batch): StoreOp[] {
    return [b.txid, ...b.replaced, ...cancelTxids(b)].map((txid) => this.#txs.op(txid, true));
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
  /** Whether payouts are paused now (checked before each batch a flush builds). */
  paused?: () => boolean;
  /**
   * The users among `userKeys` whose payouts are held now: their wallets are frozen (by an operator, a reorg, a
   * restore's comparison). Asked once per flush; a queued payout of a held user stays queued until a flush after the
   * wallet is unfrozen. A payout already signed when the wallet is frozen still goes out (its coins are spoken for).
   */
  held?: (userKeys: string[]) => Promise<Set<string>>;
  now?: () => number;
  /** Test hook: called at each pipeline step; throwing simulates a crash at that point. */
  step?: (name: PayoutStep) => void;
}

export const PAYOUT_JOURNAL_KEY = "payouts";

export function emptyPayouts(): PayoutState {
  return PayoutBook.empty();
}

/**
 * Pure: applies one event, to a PayoutBook (or to a flat book, converted first: a snapshot's data, an old caller's).
 * Its cost does not grow with the finished payouts the book keeps: it copies the live payouts and batches (those
 * still moving, a few) and, for an event that finishes or prunes one, a small shard of the finished ones; see PayoutBook.
 */
export function evolvePayouts(s: PayoutState, e: PayoutEvent): PayoutState {
  return PayoutBook.of(s).apply(e);
}

/**
 * Finished: confirmed or released, and its wallet has journalled that (walletSettled). Nothing moves it again: a
 * batch of them is looked at only for an alert (a deep reorg that mines a released one, or takes a recently confirmed
 * one out of the chain: see sync). Only a late re-submission asks.
 */
const payoutFinished = (p: Payout) => (p.status === "confirmed" || p.status === "released") && p.walletSettled === true;
/** A batch confirmed or released: no event of the payout actor changes it again (see sync, bump, release). */
const batchFinished = (b: Batch) => b.status === "confirmed" || b.status === "released";

/**
 * A finished batch as the book keeps it: without its signed bytes (nor its cancellation's). A confirmed or released
 * batch is never sent, bumped or released again (the journal keeps them), and kept they weighed ~1 KB a batch in
 * memory and in every snapshot (10 MB at 10,000 retained).
 */
const withoutBytes = (b: Batch): Batch => (b.hex === "" && !b.cancel?.hex ? b : { ...b, hex: "", ...(b.cancel?.hex ? { cancel: { ...b.cancel, hex: "" } } : {}) });

/**
 * Finished payouts and batches are spread over shards (shards.ts), as the cheque book keeps its cheques: an event that
 * finishes or prunes one copies the path to its shard and the shard (2–3 entries at 10,000).
 */

/** Oldest first: by `at`, then by id. */
const byAt = <V extends { at: number }>(a: [string, V], b: [string, V]) => a[1].at - b[1].at || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** Every field, in one order (one hidden class for every payout: a snapshot's JSON dropped the undefined ones). */
function payoutOfRecord(p: Payout): Payout {
  return { userKey: p.userKey, address: p.address, amount: p.amount, quotedFee: p.quotedFee, status: p.status, batch: p.batch, fee: p.fee, walletSettled: p.walletSettled, at: p.at };
}

/** Finished first, oldest first (by `at`, then id), then the live ones in the order the flat book kept them. */
function flatView<V extends { at: number }>(done: Level<V>, live: Readonly<Record<string, V>>): Record<string, V> {
  const old = entriesOf(done).sort(byAt);
  const view = idMap<V>();
  for (const [k, v] of old) view[k] = v;
  for (const k in live) view[k] = live[k]!;
  return view;
}

/** For tests and the bench: entries of finished shards copied by evolve so far, in all. */
export const payoutBookWork = { copied: 0 };

interface Parts {
  /** Payouts not finished (queued, signed, broadcast, stuck, cancelling; confirmed or released until settled), by id. */
  live: Readonly<Record<string, Payout>>;
  /** Batches not finished (signed, broadcast, stuck, cancelling), by id. */
  liveBatches: Readonly<Record<string, Batch>>;
  done: Level<Payout>;
  doneBatches: Level<Batch>;
  doneCount: number;
  /** Finished payouts that are confirmed (the rest of `doneCount` are released). */
  doneConfirmed: number;
  doneBatchCount: number;
  seq: number;
}

/**
 * The payout book's state, immutable: applying an event gives a new book and never writes to a map or array a
 * previous book (or a snapshot being encoded, or a handler) still holds. Live payouts and batches — those still
 * moving, a few — are two small dictionaries copied by the events that touch them, in the order the flat book kept
 * them; finished ones — up to `retainFinished` confirmed payouts, with their batches — are sharded (shards.ts) and
 * touched only by the events that finish or prune them (a batch's "confirmed" or "released", "wallet_settled",
 * "pruned"), one small shard each. A payout's event (`queued` above all) copies none of them.
 *
 * Readers see the book as it was kept before (`payouts`, `batches`: every one by id, built on first use and kept) or
 * ask it directly: `payout(id)`, `batch(id)`, `live`, `liveBatches`, `finishedPayouts()`. A snapshot is the flat book
 * (toJSON), the same bytes' shape the version before wrote, so either version loads the other's.
 */
export class PayoutBook implements PayoutState {
  readonly #p: Readonly<Parts>;
  #payouts: Record<string, Payout> | undefined;
  #batches: Record<string, Batch> | undefined;
  readonly seq: number;

  private constructor(p: Readonly<Parts>) {
    this.#p = p;
    this.seq = p.seq;
  }

  static empty(): PayoutBook {
    return new PayoutBook({ live: idMap(), liveBatches: idMap(), done: emptyLevel(), doneBatches: emptyLevel(), doneCount: 0, doneConfirmed: 0, doneBatchCount: 0, seq: 0 });
  }

  /** The book itself, or one built from a flat book (a snapshot's data, of this version or the one before). */
  static of(s: PayoutState): PayoutBook {
    return s instanceof PayoutBook ? s : PayoutBook.fromFlat(s);
  }

  /**
   * A book from the flat book (a snapshot; JSON may have dropped undefined fields), split as replaying the journal
   * splits it: the same live payouts and batches in the same order, the same finished ones.
   */
  static fromFlat(flat: Partial<PayoutState>): PayoutBook {
    const live = idMap<Payout>(), liveBatches = idMap<Batch>();
    const done: Array<[string, Payout]> = [], doneBatches: Array<[string, Batch]> = [];
    let doneConfirmed = 0;
    for (const id in flat.payouts) {
      const p = payoutOfRecord(flat.payouts[id]!);
      if (!payoutFinished(p)) live[id] = p;
      else {
        done.push([id, p]);
        if (p.status === "confirmed") doneConfirmed++;
      }
    }
    for (const id in flat.batches) {
      const b = flat.batches[id]!;
      if (batchFinished(b)) doneBatches.push([id, withoutBytes(b)]);
      else liveBatches[id] = b;
    }
    return new PayoutBook({
      live, liveBatches, done: levelOf(done), doneBatches: levelOf(doneBatches), doneCount: done.length, doneConfirmed, doneBatchCount: doneBatches.length, seq: flat.seq ?? 0,
    });
  }

  /** A payout in the book, live or finished. */
  payout(id: string): Payout | undefined {
    return this.#p.live[id] ?? lookup(this.#p.done, id);
  }

  /** A batch in the book, live or finished. */
  batch(id: string): Batch | undefined {
    return this.#p.liveBatches[id] ?? lookup(this.#p.doneBatches, id);
  }

  /** The payouts not finished, by id (read only). */
  get live(): Readonly<Record<string, Payout>> {
    return this.#p.live;
  }

  /** The batches not confirmed or released, by id (read only). */
  get liveBatches(): Readonly<Record<string, Batch>> {
    return this.#p.liveBatches;
  }

  /** Finished payouts in the book; `confirmed` of them (pruning's count). */
  get finishedCount(): { payouts: number; confirmed: number; batches: number } {
    return { payouts: this.#p.doneCount, confirmed: this.#p.doneConfirmed, batches: this.#p.doneBatchCount };
  }

  /** Every finished payout with its id (those `keep` keeps), in no particular order. */
  finishedPayouts(keep?: (p: Payout) => boolean): Array<[string, Payout]> {
    return entriesOf(this.#p.done, keep);
  }

  /** Every finished batch (confirmed or released) with its id (those `keep` keeps), in no particular order. */
  finishedBatches(keep?: (b: Batch) => boolean): Array<[string, Batch]> {
    return entriesOf(this.#p.doneBatches, keep);
  }

  /**
   * The `k` oldest finished confirmed payouts (by `at`, then id), oldest first: those pruning takes. One pass over
   * the finished ones, keeping the k oldest (usually a few: those over the limit since the last block).
   */
  oldestConfirmed(k: number): Array<[string, Payout]> {
    return this.oldestFinished(k, (p) => p.status === "confirmed");
  }

  /** The `k` oldest finished payouts that `keep` keeps (every one: confirmed and released), as oldestConfirmed. */
  oldestFinished(k: number, keep: (p: Payout) => boolean = () => true): Array<[string, Payout]> {
    if (k <= 0) return [];
    if (k > 64) return entriesOf(this.#p.done, keep).sort(byAt).slice(0, k);
    const out: Array<[string, Payout]> = [];
    for (const row of this.#p.done) {
      if (row === EMPTY_ROW) continue;
      for (const shard of row) {
        for (const x of shard) {
          if (!keep(x[1]) || (out.length === k && byAt(x, out[k - 1]!) >= 0)) continue;
          let i = out.length === k ? k - 1 : out.length;
          while (i > 0 && byAt(x, out[i - 1]!) < 0) (out[i] = out[i - 1]!), i--;
          out[i] = x;
        }
      }
    }
    return out;
  }

  /** For tests: the finished parts themselves (an event that does not touch them leaves these very objects). */
  get finishedParts(): readonly [object, object] {
    return [this.#p.done, this.#p.doneBatches];
  }

  /**
   * Every payout by id: the book as it was kept before (the "state" answer's readers, tests, snapshots). Built on first
   * use (finished ones sorted by `at`, then the live ones): never on an event's path.
   */
  get payouts(): Record<string, Payout> {
    return (this.#payouts ??= flatView(this.#p.done, this.#p.live));
  }

  /** Every batch by id, as `payouts`. */
  get batches(): Record<string, Batch> {
    return (this.#batches ??= flatView(this.#p.doneBatches, this.#p.liveBatches));
  }

  /** A snapshot: the flat book, as the version before wrote it (so either version reads the other's). */
  toJSON(): PayoutState {
    return { payouts: this.payouts, batches: this.batches, seq: this.seq };
  }

  /** Pure: the book after one event. */
  apply(e: PayoutEvent): PayoutBook {
    const d = new Draft(this.#p);
    switch (e.t) {
      case "queued": {
        // Every field from the start (a spread adding one later gives each payout a hidden class of its own).
        const p: Payout = {
          userKey: e.userKey, address: e.address, amount: BigInt(e.amount), quotedFee: BigInt(e.quotedFee), status: "queued", batch: undefined, fee: undefined,
          walletSettled: undefined, at: e.at,
        };
        d.setPayout(e.id, p, true);
        break;
      }
      case "signed": {
        let quoted = 0n;
        e.ids.forEach((id, i) => {
          const p = d.payout(id)!;
          quoted += p.quotedFee;
          d.setPayout(id, { ...p, status: "signed", batch: e.batch, fee: BigInt(e.shares[i]!) });
        });
        const b: Batch = {
          ids: e.ids, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), quoted, status: "signed", replaced: [], at: e.at, reason: undefined,
          inputs: e.inputs ? { [e.txid]: e.inputs } : undefined, ...(e.adopted ? { adopted: true as const } : {}),
        };
        d.setBatch(e.batch, b);
        d.p.seq++;
        break;
      }
      case "broadcast":
      case "confirmed":
      case "stuck":
      case "released": {
        const b = d.batch(e.batch)!;
        if (e.t === "confirmed" && e.txid !== undefined && e.txid !== b.txid) {
          // An earlier transaction of the batch is the one in the block: its fee, split as it was.
          b.ids.forEach((id, i) => d.setPayout(id, { ...d.payout(id)!, fee: BigInt(e.shares![i]!), status: "confirmed" }));
          d.setBatch(e.batch, { ...b, txid: e.txid, fee: BigInt(e.fee!), status: "confirmed", replaced: [...b.replaced.filter((t) => t !== e.txid), b.txid] });
          break;
        }
        // The event names the status the batch and its payouts move to.
        const status = e.t;
        for (const id of b.ids) d.setPayout(id, { ...d.payout(id)!, status });
        d.setBatch(e.batch, { ...b, status, ...(e.t === "stuck" ? { reason: e.reason } : {}) });
        break;
      }
      case "unqueued":
        d.setPayout(e.id, { ...d.payout(e.id)!, status: "released" }, true);
        break;
      case "wallet_settled":
        for (const id of e.ids) d.setPayout(id, { ...d.payout(id)!, walletSettled: true });
        break;
      case "pruned":
        for (const id of e.ids) d.removePayout(id);
        for (const b of e.batches) d.removeBatch(b);
        break;
      case "cancelling": {
        const b = d.batch(e.batch)!, was = b.cancel;
        // A cancellation whose fee was bumped: any of them in a block releases the batch.
        const earlier = was?.txid !== undefined && was.txid !== e.txid ? [...was.earlier, was.txid] : (was?.earlier ?? []);
        const cancel: Cancel = {
          reason: e.reason, input: e.input, earlier,
          ...(e.txid !== undefined ? { txid: e.txid, hex: e.hex!, fee: BigInt(e.fee!) } : {}), ...(e.spentAt !== undefined ? { spentAt: e.spentAt } : {}), ...(e.spentIn !== undefined ? { spentIn: e.spentIn } : {}),
        };
        for (const id of b.ids) d.setPayout(id, { ...d.payout(id)!, status: "cancelling" });
        d.setBatch(e.batch, { ...b, status: "cancelling", cancel });
        break;
      }
      case "replaced": {
        const b = d.batch(e.batch)!;
        b.ids.forEach((id, i) => d.setPayout(id, { ...d.payout(id)!, fee: BigInt(e.shares[i]!), status: "signed" }));
        // Every version's inputs are kept: the one replaced may still be mined, and a bump may have added coins to it.
        const inputs = e.inputs ? { ...b.inputs, [e.txid]: e.inputs } : b.inputs;
        // A fee bump's replacement is a new transaction. An earlier version can be followed again too (sync: the node
        // refused a bump's replacement, and the version it replaced is in the mempool): it leaves `replaced`, the one
        // it takes over from joins it. Journals from before that never name an earlier version, and replay the same.
        const replaced = [...b.replaced.filter((t) => t !== e.txid), b.txid];
        d.setBatch(e.batch, { ...b, hex: e.hex, txid: e.txid, fee: BigInt(e.fee), status: "signed", replaced, inputs });
        break;
      }
    }
    return new PayoutBook(d.p);
  }
}

/**
 * The next book's parts while one event is applied: each dictionary, array and shard is copied on its first write in
 * this draft and written in place after that. Positions in the live dictionaries are the flat book's: a payout's
 * "queued" and "unqueued", and every batch event, put theirs last (the flat book's withKey); other events keep it.
 */
class Draft {
  readonly p: Parts;
  readonly #w = new CopyOnWrite(payoutBookWork);

  constructor(p: Readonly<Parts>) {
    this.p = { ...p };
  }

  payout(id: string): Payout | undefined {
    return this.p.live[id] ?? lookup(this.p.done, id);
  }

  batch(id: string): Batch | undefined {
    return this.p.liveBatches[id] ?? lookup(this.p.doneBatches, id);
  }

  /** Sets a payout, where it belongs now: live, or (finished) in its shard. `last`: at the end of the live ones. */
  setPayout(id: string, p: Payout, last = false): void {
    if (payoutFinished(p)) {
      if (id in this.p.live) delete this.#live()[id];
      const old = lookup(this.p.done, id);
      this.p.done = this.#w.write(this.p.done, id, (m) => m.set(id, p));
      if (!old) this.p.doneCount++;
      this.p.doneConfirmed += (p.status === "confirmed" ? 1 : 0) - (old?.status === "confirmed" ? 1 : 0);
      return;
    }
    // Never in a journal: a finished payout is not moved again. Put back with the live ones, as the flat book had it.
    this.#unfinish(id);
    const live = this.#live();
    if (last) delete live[id];
    live[id] = p;
  }

  removePayout(id: string): void {
    if (id in this.p.live) delete this.#live()[id];
    this.#unfinish(id);
  }

  /** Sets a batch, last (as the flat book's withKey did), live or (confirmed or released) in its shard. */
  setBatch(id: string, b: Batch): void {
    if (batchFinished(b)) {
      if (id in this.p.liveBatches) delete this.#liveBatches()[id];
      if (!lookup(this.p.doneBatches, id)) this.p.doneBatchCount++;
      this.p.doneBatches = this.#w.write(this.p.doneBatches, id, (m) => m.set(id, withoutBytes(b)));
      return;
    }
    this.#unfinishBatch(id);
    const live = this.#liveBatches();
    delete live[id];
    live[id] = b;
  }

  removeBatch(id: string): void {
    if (id in this.p.liveBatches) delete this.#liveBatches()[id];
    this.#unfinishBatch(id);
  }

  #unfinish(id: string): void {
    const old = lookup(this.p.done, id);
    if (!old) return;
    this.p.done = this.#w.write(this.p.done, id, (m) => m.delete(id));
    this.p.doneCount--;
    if (old.status === "confirmed") this.p.doneConfirmed--;
  }

  #unfinishBatch(id: string): void {
    if (!lookup(this.p.doneBatches, id)) return;
    this.p.doneBatches = this.#w.write(this.p.doneBatches, id, (m) => m.delete(id));
    this.p.doneBatchCount--;
  }

  #live(): Record<string, Payout> {
    return (this.p.live = this.#w.mine(this.p.live, (x) => idMap(x))) as Record<string, Payout>;
  }

  #liveBatches(): Record<string, Batch> {
    return (this.p.liveBatches = this.#w.mine(this.p.liveBatches, (x) => idMap(x))) as Record<string, Batch>;
  }
}

/** A payout of a book, live or finished (a PayoutBook, or a flat book a caller made). */
export function payoutOf(s: PayoutState, id: string): Payout | undefined {
  if (s instanceof PayoutBook) return s.payout(id);
  return Object.hasOwn(s.payouts, id) ? s.payouts[id] : undefined;
}

/** A batch of a book, live or finished. */
export function batchOf(s: PayoutState, id: string): Batch | undefined {
  if (s instanceof PayoutBook) return s.batch(id);
  return Object.hasOwn(s.batches, id) ? s.batches[id] : undefined;
}

/**
 * The payouts still moving — every one but those confirmed or released and settled in their wallets — without
 * building the flat view (a flat book: all of them; its readers filter by status anyway).
 */
export function livePayouts(s: PayoutState): Readonly<Record<string, Payout>> {
  return s instanceof PayoutBook ? s.live : s.payouts;
}

/** The batches neither confirmed nor released (a flat book: all of them). */
export function liveBatches(s: PayoutState): Readonly<Record<string, Batch>> {
  return s instanceof PayoutBook ? s.liveBatches : s.batches;
}

/**
 * Splits a batch's fee into per-output shares in proportion to what each user was quoted (the remainder, a sat each,
 * to the first outputs), so each pays the same fraction of their quote: a withdrawal quoted many inputs' worth pays for
 * them, not the others in its batch. Never above a user's quote: a fee beyond the quotes (a fee bump) is the service's.
 */
export function feeShares(fee: bigint, quoted: bigint[]): bigint[] {
  const total = quoted.reduce((sum, q) => sum + q, 0n);
  if (fee >= total) return [...quoted];
  const shares = quoted.map((q) => (fee * q) / total);
  let rest = fee - shares.reduce((sum, x) => sum + x, 0n);
  // Fewer sats left than outputs; each share is below its quote here (fee < total), so one more sat fits.
  for (let i = 0; rest > 0n && i < shares.length; i++) {
    if (shares[i]! < quoted[i]!) {
      shares[i]! += 1n;
      rest -= 1n;
    }
  }
  return shares;
}

/** psbtbumpfee's answer for a transaction the node's wallet does not have (-5: "Invalid or non-wallet transaction id"). */
const notInWallet = (e: RpcError) => e.code === -5 || /non-wallet transaction/i.test(e.message ?? "");

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
    // A snapshot is the flat book (PayoutBook.toJSON; a snapshot of the version before is the same shape): split again
    // into live and finished parts, as replaying the journal splits it.
    restore: (d) => PayoutBook.fromFlat(d),
    evolve: evolvePayouts,
    // An event costs microseconds now, so a restart replays 1,000 records quickly; a snapshot writes every payout and batch
    // the book keeps (~0.3 s at 10,000 on the engine's thread: bench/payouts.bench.ts), five times less often than at 200.
    snapshotEvery: 1000,
    async handle(state, cmd, persist) {
      const start = PayoutBook.of(state);
      let s = start;
      const commit = async (events: PayoutEvent[], records?: StoreOp[]) => {
        await persist(events, records ? { r: records } : undefined);
        s = events.reduce((b, e) => b.apply(e), s);
      };
      switch (cmd.type) {
        case "state":
          cmd.reply(s);
          return s;
        case "status":
          cmd.reply(healthOf(s, o, now));
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
          // Finished payouts too: a wallet's late re-submission of one is answered, never queued again.
          const known = s.payout(cmd.id);
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
        case "unqueue": {
          const p = s.payout(cmd.id);
          if (!p) {
            cmd.reply(refuse("not_found", `No payout ${cmd.id} in the book (GET /payouts?status=queued lists those that can be given back).`));
            return s;
          }
          if (p.status !== "queued" && !(p.status === "released" && p.batch === undefined)) {
            cmd.reply(refuse("not_allowed", `Payout ${cmd.id} is ${p.status}${p.batch ? ` in batch ${p.batch}` : ""}, not queued: only a payout in no batch can be given back (a stuck batch is released as a whole).`));
            return s;
          }
          if (p.status === "queued") await commit([{ t: "unqueued", id: cmd.id, at: now() }]);
          // Its wallet is told now (and again at every block until it has journalled the release: settleWallets).
          if (!s.payout(cmd.id)!.walletSettled && (await tellReleased(cmd.id, s.payout(cmd.id)!, () => s, o)) === true) {
            await commit([{ t: "wallet_settled", ids: [cmd.id], at: now() }]);
          }
          cmd.reply(summary(cmd.id, s));
          return s;
        }
        case "flush": {
          try {
            const batches = await flush(() => s, commit, o, now, step);
            flushRan(o);
            cmd.reply({ batches });
          } catch (e) {
            flushFailed(e as Error, s, o, now);
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
            // Recorded before it failed (the node did not take the replacement now): it is sent again after each block.
            cmd.reply(s !== start
              ? refuse("node_unavailable", `the fee bump is recorded but the node did not take it now (${(e as Error).message}); it is sent again after each block. Check GET /payouts before bumping again.`)
              : notInWallet(e as RpcError)
                ? refuse("bad_input", `Batch ${cmd.batch} cannot be bumped: the node's wallet does not have its transaction (the node never took it). Release it instead.`)
                : refuse("bad_input", `the fee bump failed: ${(e as Error).message}`));
          }
          return s;
        }
        case "release": {
          try {
            cmd.reply(await release(cmd.batch, cmd.feeRateSatVb, cmd.reason, () => s, commit, o, now));
          } catch (e) {
            cmd.reply(s !== start
              ? refuse("node_unavailable", `the release is recorded but the node did not take its cancelling transaction now (${(e as Error).message}); it is sent again after each block. Check GET /payouts.`)
              : refuse("node_unavailable", `the batch could not be released now: ${(e as Error).message}`));
          }
          return s;
        }
      }
    },
  };
}

function summary(id: string, s: PayoutBook): PayoutSummary {
  const p = s.payout(id)!;
  const b = p.batch ? s.batch(p.batch) : undefined;
  return { id, status: p.status, ...(b ? { txid: b.txid } : {}), ...(p.fee !== undefined ? { fee: p.fee } : {}) };
}

/**
 * A wallet re-submitted a payout we already know: tell it where it stands (its earlier message may be lost). A
 * confirmed payout its wallet has not acknowledged is left to `sync`, which runs at every start and block and
 * records the acknowledgement.
 */
function reannounce(id: string, p: Payout, s: PayoutBook, o: PayoutOptions): void {
  const b = p.batch ? s.batch(p.batch) : undefined;
  if (b?.status === "broadcast") void o.hooks.broadcast(p.userKey, id, b.txid);
}

/**
 * bitcoind's answers to walletcreatefundedpsbt that refuse these outputs, not the node's state: a wallet error
 * (insufficient funds, a transaction over the weight limit), insufficient funds, an invalid parameter (a duplicated
 * destination, an amount), an invalid address, a type error. Anything else (HTTP 401/503 while it restarts, -18 its
 * wallet not loaded, -28 still warming up) is the node, and the flush waits.
 */
const FUNDING_REFUSED = new Set([-3, -4, -5, -6, -8]);

/**
 * The node's answer that its coins (those with the deposits' confirmations: payouts are funded with those) do not
 * cover what was asked.
 */
const insufficient = (e: RpcError) => e.code === -6 || /insufficient funds/i.test(e.message ?? "");

async function flush(
  get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number, step: NonNullable<PayoutOptions["step"]>,
): Promise<number> {
  // Anything signed but not yet broadcast goes out first: those coins are spoken for. Batches already broadcast are
  // sent again by sync, once a block: sending each of them at every flush (the batch timer's too) did nothing more.
  await rebroadcastAll(get, commit, o, now, "signed");
  const w = watchOf(o);
  let built = 0;
  // Payouts the node would not fund even alone, this time: they wait for the next flush and hold no one else up.
  const unfunded = new Set<string>();
  // Payouts of frozen wallets wait too, for a flush after the wallet is unfrozen.
  // Queued payouts are live ones (as every payout not yet settled in its wallet), in the order the flat book kept them.
  const waiting = o.held ? Object.entries(get().live).filter(([, p]) => p.status === "queued") : [];
  if (o.held && waiting.length > 0) {
    const held = await o.held([...new Set(waiting.map(([, p]) => p.userKey))]);
    for (const [id, p] of waiting) if (held.has(p.userKey)) unfunded.add(id);
  }
  let most = o.maxOutputsPerBatch;
  /** A payout the node's coins cannot cover alone: none as large is tried again in this flush (see below). */
  let tooMuch: bigint | undefined;
  for (;;) {
    // Paused meanwhile (the watchdog found a hole while this flush waited its turn): nothing more goes out.
    if (o.paused?.()) return built;
    const queued = Object.entries(get().live)
      .filter(([id, p]) => p.status === "queued" && !unfunded.has(id) && (tooMuch === undefined || p.amount < tooMuch))
      .sort((a, b) => a[1].at - b[1].at);
    if (queued.length === 0) {
      // None left to build (given back, held): none waits for the fee floor either.
      w.feeWait = undefined;
      return built;
    }
    // One output per address per transaction: bitcoind refuses a destination twice, however it is spelled.
    const seen = new Set<string>();
    const pick = queued.filter(([, p]) => {
      const to = canonicalAddress(p.address);
      return seen.has(to) ? false : (seen.add(to), true);
    }).slice(0, most);
    // The node's floor, read with the rate (one round trip): the rate is capped (withdrawals.maxFeeRateSatVb), the floor
    // is not, and a batch below it is refused by the mempool whatever else is right with it.
    const [rate, pool] = await Promise.all([o.feeRate(), mempoolInfo(o)]);
    const floor = feeFloorOf(pool);
    if (rate * 1000n < floor.satPerKvb) {
      // Nothing is funded: each funding takes a new key from the node wallet's change chain (bitcoind keeps it even for a
      // transaction nobody sends), and a flush per block through a long fee spike walked that chain past what a restored
      // copy of the wallet looks ahead for, leaving its real change unseen (node.ts, soloFee). The payouts stay queued.
      const why = `${floor.full ? "mempool min fee not met" : "min relay fee not met"}: the node's minimum is ${satPerVb(floor.satPerKvb)} sat/vB (getmempoolinfo), above the ${rate} sat/vB allowed`;
      waitForFees(why, pick.length, rate, o, now);
      return built;
    }
    const outputs = pick.map(([, p]) => ({ [p.address]: satsToBtcString(p.amount) }));
    let funded: { psbt: string; fee: number; changepos: number };
    try {
      funded = await o.node.call<{ psbt: string; fee: number; changepos: number }>("walletcreatefundedpsbt", [
        // No lockUnspents: this actor is the only spender and works one batch at a time, and locks that
        // outlive a crash would strand coins. Signed-but-unsent batches are rebroadcast before any new build.
        // Only coins as deep as a deposit must be to be credited: a younger one is a deposit nobody has yet (a reorg
        // that double-spends it would invalidate the batch, and every payout in it). bitcoind applies this to every
        // coin, the batches' own change too: that waits as long (and never was spent unconfirmed: minconf 1 before).
        // The change address of a batch the mempool refused for its fee, if one is kept (see below); else bitcoind's next.
        [], outputs, 0, { fee_rate: Number(rate), replaceable: true, ...(w.change ? { changeAddress: w.change } : { change_type: "bech32" }), minconf: o.confirmations },
      ]);
    } catch (e) {
      // The node could not be asked, or cannot answer now (restarting, its wallet not loaded): the whole flush waits.
      if (!FUNDING_REFUSED.has((e as RpcError).code as number)) throw e;
      // The node will not fund these together (not enough confirmed coins for one of them, a transaction over the
      // size limit, an address it refuses): half as many, down to the one it refuses alone, which is left out.
      if (pick.length > 1) {
        most = Math.ceil(pick.length / 2);
        continue;
      }
      const [id, p] = pick[0]!;
      unfunded.add(id);
      // Not enough coins for it alone: none as large can be funded either, in this flush (the coins do not change
      // meanwhile). Without this, a queue the coins cannot cover (the last batch's change not mined yet, a hot wallet
      // run low) took a descent by halves per payout: 673 funding calls for 100 queued, 7,873 for 1,000.
      if (insufficient(e as RpcError) && (tooMuch === undefined || p.amount < tooMuch)) tooMuch = p.amount;
      most = o.maxOutputsPerBatch;
      o.hooks.alert("a payout cannot be funded now; it waits for the next flush, the others go", { id, why: (e as RpcError).message ?? "" });
      continue;
    }
    step("funded");
    const processed = await o.node.signing(() => o.node.call<{ psbt: string; complete: boolean }>("walletprocesspsbt", [funded.psbt, true, "ALL", true]));
    const final = await o.node.call<{ hex?: string; complete: boolean }>("finalizepsbt", [processed.psbt]);
    if (!final.complete || !final.hex) throw new Error("the node could not sign the payout transaction (is the wallet locked?)");
    const accept = await o.node.call<Array<{ txid: string; allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[final.hex]]);
    const verdict = accept[0]!;
    step("signed");
    if (!verdict.allowed && feeRefused(verdict["reject-reason"])) {
      // The mempool's minimum fee is above the rate the flush may pay (withdrawals.maxFeeRateSatVb caps it: node.ts,
      // estimateFeeRate). Journalled and marked stuck, as before, the batch was never sent again, the next one was built
      // from the same coins and stuck too, and so on through the queue: each needed an operator's release, paid by the
      // house, and its users had to withdraw again. Nothing is journalled instead: these bytes went only to
      // testmempoolaccept, which neither keeps nor relays them, and the funding locked no coin (no lockUnspents), so
      // nothing of them is in the node's wallet; they are dropped here and can never be mined. The payouts stay queued,
      // and a later flush builds them anew, at the rate of its time, once the mempool takes it. The floor was read
      // above, so this is a floor that rose since (or a node that did not say): the change key this funding took is
      // kept, and the next one pays its change there rather than taking another (see the check of the floor above).
      if (funded.changepos >= 0) {
        const out = (await o.node.call<{ vout: RawOutput[] }>("decoderawtransaction", [final.hex])).vout[funded.changepos];
        w.change ??= out?.scriptPubKey.address;
      }
      waitForFees(verdict["reject-reason"]!, pick.length, rate, o, now);
      return built;
    }
    w.feeWait = undefined;
    const fee = btcNumberToSats(funded.fee);
    const ids = pick.map(([id]) => id);
    const shares = feeShares(fee, pick.map(([, p]) => p.quotedFee));
    const batch = `b${get().seq + 1}`;
    const inputs = outpoints(await batchInputs(final.hex, o));
    // Journal the signed bytes and txid BEFORE broadcasting: after a crash we rebroadcast these, never re-sign.
    await commit([{ t: "signed", batch, ids, hex: final.hex, txid: verdict.txid, fee: fee.toString(), shares: shares.map(String), at: now(), inputs }]);
    // Its change went to the kept address: the next batch takes a fresh one (one without change leaves it unused, kept).
    if (funded.changepos >= 0) w.change = undefined;
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

/**
 * Failed flushes are alerted at most this often, with the error: a flush fails at every block while the cause lasts
 * (the node wallet's passphrase changed on the node, say), and a warning per block was all operators had. Counted
 * across flushes that run in between: a node that fails one flush in two (timeouts) paged at every failure. Each reason
 * has its own hour: a lasting failure that began just after a blip (a timeout, then the wallet's passphrase changed) is
 * alerted at once, and a node flapping between two reasons pages twice an hour, not at every failure.
 */
const FLUSH_ALERT_EVERY_MS = 3600_000;
/** Reasons whose last alert is remembered, at most (the oldest forgotten first). */
const FLUSH_ALERT_REASONS = 16;

/** A flush failed (thrown by the node, the signing, or the store): counted, and alerted as FLUSH_ALERT_EVERY_MS says. */
function flushFailed(e: Error, s: PayoutBook, o: PayoutOptions, now: () => number): void {
  const w = watchOf(o), t = now(), why = e.message;
  const f = (w.failing ??= { count: 0, since: t, lastError: why });
  f.count++;
  f.lastError = why;
  const h = healthOf(s, o, now);
  const detail = { failedFlushes: f.count, since: new Date(f.since).toISOString(), why, queued: h.queued, ...(h.oldestQueuedAgeS !== null ? { oldestQueuedAgeS: h.oldestQueuedAgeS } : {}) };
  if (t - (w.flushAlerted.get(why) ?? -Infinity) < FLUSH_ALERT_EVERY_MS) {
    o.log.warn(detail, "payout flush failed again; queued payouts wait, tried again at the next block");
    return;
  }
  w.flushAlerted.delete(why);
  w.flushAlerted.set(why, t);
  if (w.flushAlerted.size > FLUSH_ALERT_REASONS) w.flushAlerted.delete(w.flushAlerted.keys().next().value!);
  // The journal's write failed (the disk full or failing): the node did its part, and nothing was sent.
  if (e instanceof StoreError) {
    o.hooks.alert("payouts are not being built: the flush could not write to the store (the store's error is `why`); nothing was sent, queued payouts wait and are tried again at every block. Free space or fix the disk: writes resume by themselves", detail);
    return;
  }
  o.hooks.alert("payouts are not being built: the flush failed (the node's error is `why`); queued payouts wait and are tried again at every block. Fix what the node says (the node wallet's passphrase changed on the node: configure the new one and restart; the wallet locked, missing, out of coins)", detail);
}

/**
 * A flush ran to its end (whether it built anything or not): failures before it are over. When the last alert was is
 * kept (Watch.flushAlerted): a failure soon after is a warning, not another page.
 */
function flushRan(o: PayoutOptions): void {
  const w = watchOf(o);
  if (!w.failing) return;
  o.log.warn({ failedFlushes: w.failing.count, since: new Date(w.failing.since).toISOString() }, "payout flushes run again after failing");
  w.failing = undefined;
}

/** The "status" answer: the queue, and what this life of the actor saw of flushes (see PayoutHealth). */
function healthOf(s: PayoutBook, o: PayoutOptions, now: () => number): PayoutHealth {
  const w = watchOf(o);
  let queued = 0, oldest: number | null = null;
  for (const id in s.live) {
    const p = s.live[id]!;
    if (p.status !== "queued") continue;
    queued++;
    if (oldest === null || p.at < oldest) oldest = p.at;
  }
  return {
    queued, oldestQueuedAt: oldest, oldestQueuedAgeS: oldest === null ? null : Math.max(0, Math.floor((now() - oldest) / 1000)),
    failedFlushes: w.failing?.count ?? 0, failingSince: w.failing?.since ?? null, lastFlushError: w.failing?.lastError ?? null,
    feeWait: feeWaitOf(w),
  };
}

/** The flush's wait and the recorded batches the mempool refuses for their fee, as one (see PayoutHealth.feeWait). */
function feeWaitOf(w: Watch): PayoutHealth["feeWait"] {
  const waits = [...(w.feeWait ? [w.feeWait] : []), ...w.feeRefused.values()];
  if (waits.length === 0) return null;
  const latest = waits.reduce((a, b) => (b.at > a.at ? b : a));
  return { since: Math.min(...waits.map((x) => x.since)), why: latest.why, batches: [...w.feeRefused.keys()] };
}

/** The node's getmempoolinfo, or undefined where it does not answer it (testmempoolaccept is the guard then). */
const mempoolInfo = (o: PayoutOptions) => o.node.call<MempoolInfo>("getmempoolinfo", []).catch(() => undefined);

/** sat/kvB as sat/vB, to the sat/kvB ("5", "1.01"). */
function satPerVb(satPerKvb: bigint): string {
  const frac = (satPerKvb % 1000n).toString().padStart(3, "0").replace(/0+$/, "");
  return `${satPerKvb / 1000n}${frac ? `.${frac}` : ""}`;
}

/**
 * testmempoolaccept's reasons for refusing a transaction for its fee alone, against the node's floor: the relay minimum
 * ("min relay fee not met") or the mempool's minimum, raised while it is full ("mempool min fee not met", "mempool full").
 */
const feeRefused = (reason: string | undefined) => /min relay fee not met|mempool min fee not met|mempool full/i.test(reason ?? "");

/** Once per wait (see Watch.feeWait): operators are told what holds the payouts and what to do. */
function waitForFees(why: string, outputs: number, rate: bigint, o: PayoutOptions, now: () => number): void {
  const w = watchOf(o);
  if (w.feeWait) {
    w.feeWait.why = why;
    w.feeWait.at = now();
    o.log.info({ why, outputs, feeRateSatVb: rate.toString() }, "payouts still wait: the node's mempool refuses a batch at the highest fee rate allowed");
    return;
  }
  w.feeWait = { since: now(), at: now(), why };
  o.hooks.alert("payouts wait: the node's mempool refuses a batch at the highest fee rate allowed (withdrawals.maxFeeRateSatVb), its minimum fee is above it. Nothing was sent or recorded; the payouts stay queued and are built again at every block. Raise withdrawals.maxFeeRateSatVb above the mempool's minimum fee (getmempoolinfo: mempoolminfee) to pay them now, or wait for that minimum to fall", { why, feeRateSatVb: rate.toString() });
}

async function broadcast(batch: string, get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<boolean> {
  const b = get().batch(batch)!;
  try {
    await o.node.call("sendrawtransaction", [b.hex]);
  } catch (e) {
    const err = e as RpcError;
    // -27: already in the chain (or its outputs are already in the UTXO set): it went out before. Success.
    if (err.code !== -27) {
      if (err.code === -25 || err.code === -26) {
        // Refused because one of its transactions is already in a block (the one a fee bump replaced, mined first;
        // or this one, its outputs since spent): not stuck; `sync` confirms it with the one mined.
        const { mined, latest } = await minedTx(b, o);
        if (mined) {
          // In a block already: out of the node's wallet (in flight for the watchdog) until sync confirms it. Its
          // wallets are told, with the transaction in the block.
          watchOf(o).feeRefused.delete(batch);
          if (b.status === "signed") await commit([{ t: "broadcast", batch, at: now() }]);
          tellBroadcast(batch, mined.txid, get, o);
          return false;
        }
        // Replaced by a transaction of the node's wallet the book did not make (a fee bump made on the node by hand):
        // followed from now on if it pays the batch's payouts exactly (see adoptRival).
        if (await adoptRival(batch, get, commit, o, now)) {
          watchOf(o).feeRefused.delete(batch);
          return false;
        }
        if (feeRefused(err.message) && latest && latest.confirmations >= 0) {
          // Refused for its fee alone: the mempool's floor is above what it pays (a node restarted with a higher
          // -minrelaytxfee, a fee spike that evicted it). Nothing else is wrong with it (bitcoind checks its inputs
          // first), and it is recorded: it stays as it is and is sent again at every block (sync), going out once the
          // floor falls back. Marked stuck, it was never sent again, and each such batch needed an operator.
          // Only one the node's wallet has: the wallet counts its coins as spent, so no later batch takes them. One it
          // never took (a crash between recording and sending, a floor that rose between testmempoolaccept and the
          // send, a fee bump's replacement) leaves its coins free in the wallet's eyes: the next flush spent them in
          // another batch, this one could never go out, and meanwhile the watchdog counted its payouts as in flight
          // while their coins still stood in the wallet. That one is stuck below, to be released, as before.
          feeRefusedBatch(batch, `${err.code}: ${err.message ?? ""}`, o, now);
          return false;
        }
        // The node's wallet has it, in no block (sent before, then dropped from the mempool: fees rose, it expired):
        // a fee bump sends it again and pays the users. One the wallet never had can only be released.
        const next = !latest ? "the node's wallet never had this version: release it"
          : latest.confirmations < 0 ? "it conflicts with a transaction in a block: release it" : "the node's wallet has it: bump its fee";
        await markStuck(batch, `broadcast refused (${err.code}): ${err.message ?? ""}; ${next}`, get, commit, o, now);
        return false;
      }
      throw e;
    }
  }
  if (b.status === "signed") await commit([{ t: "broadcast", batch, at: now() }]);
  const w = watchOf(o);
  if (w.feeRefused.delete(batch)) o.log.warn({ batch, txid: b.txid }, "a payout batch the mempool refused for its fee is taken again");
  tellBroadcast(batch, b.txid, get, o);
  return true;
}

/**
 * A recorded batch whose (re)broadcast the mempool refuses for its fee alone: kept (signed or broadcast), under the
 * fee wait (the status), sent again at every block. Operators are alerted once per batch while it lasts.
 */
function feeRefusedBatch(batch: string, why: string, o: PayoutOptions, now: () => number): void {
  const w = watchOf(o), was = w.feeRefused.get(batch);
  if (was) {
    was.why = why;
    was.at = now();
    o.log.info({ batch, why }, "a payout batch is still refused by the node's mempool for its fee; sent again at the next block");
    return;
  }
  w.feeRefused.set(batch, { since: now(), at: now(), why });
  o.hooks.alert("a payout batch already signed is refused by the node's mempool for its fee alone: the mempool's minimum fee is above what it pays (raising withdrawals.maxFeeRateSatVb does not change a batch already signed). It is kept as it is and sent again at every block, and goes out once that minimum falls back; to send it sooner, bump its fee above the mempool's minimum (getmempoolinfo: mempoolminfee)", { batch, why });
}

/**
 * Tells a batch's wallets it is out, with this transaction: each once per batch and transaction in this life of the
 * engine, once its wallet took it. Every send of it again (sync's, at every block) told them all again, and woke every
 * one of those wallets each time, for nothing (they dedupe). A wallet that did not take it (busy, timed out: the hook
 * answers false) is told at the next send; marked told before the answer, it missed it for the rest of the run. The
 * send is not waited for (the flush goes on); one under way is not made again. A wallet still learns it after a crash:
 * the first sync after the start sends every batch not yet confirmed and tells each once (this memory starts empty),
 * and a wallet re-submitting the payout (at its activation) is answered by reannounce.
 */
function tellBroadcast(batch: string, txid: string, get: () => PayoutBook, o: PayoutOptions): void {
  const told = watchOf(o).told;
  let t = told.get(batch);
  if (t?.txid !== txid) told.set(batch, (t = { txid, ids: new Set(), asking: new Set() }));
  const entry = t;
  for (const id of get().batch(batch)!.ids) {
    if (entry.ids.has(id) || entry.asking.has(id)) continue;
    const answer = o.hooks.broadcast(get().payout(id)!.userKey, id, txid);
    if (!answer) {
      entry.ids.add(id);
      continue;
    }
    entry.asking.add(id);
    void answer.catch(() => false).then((took) => {
      entry.asking.delete(id);
      if (took) entry.ids.add(id);
    });
  }
}

async function markStuck(batch: string, reason: string, get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number) {
  if (get().batch(batch)?.status !== "stuck") await commit([{ t: "stuck", batch, reason, at: now() }]);
  // No longer waiting for the fee floor (a stuck batch is never sent again): not listed in the fee wait any more.
  watchOf(o).feeRefused.delete(batch);
  o.hooks.alert("payout batch stuck", { batch, reason });
}

/** Sends the batches signed (and, without `only`, those broadcast) again: the same bytes. */
async function rebroadcastAll(get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number, only?: "signed"): Promise<number> {
  let n = 0;
  for (const [batch, b] of Object.entries(get().liveBatches)) {
    if (b.status === "signed" || (b.status === "broadcast" && only === undefined)) {
      if (await broadcast(batch, get, commit, o, now)) n++;
    }
  }
  return n;
}

interface WalletTx {
  confirmations: number;
  fee?: number;
  replaced_by_txid?: string;
  /** The wallet's transactions that spend a coin this one spends. */
  walletconflicts?: string[];
  blockheight?: number;
  hex?: string;
  /** `abandoned`: someone ran abandontransaction on it (the node's wallet will not send it, nor count its coins spent). */
  details?: Array<{ abandoned?: boolean }>;
}

/**
 * The first of a batch's transactions — its latest, then those its fee bumps replaced — that is in a block, with
 * its confirmations and fee (`mined`; none: a transaction the node's wallet never saw counts as not mined), and the
 * node's record of the latest (`latest`, when the wallet has it).
 */
async function minedTx(b: Batch, o: PayoutOptions): Promise<{ mined?: { txid: string; confirmations: number; fee: bigint }; latest?: WalletTx }> {
  let latest: WalletTx | undefined;
  for (const txid of [b.txid, ...b.replaced]) {
    const tx = await walletTx(txid, o);
    if (!tx) continue;
    if (txid === b.txid) latest = tx;
    if (tx.confirmations > 0) return { mined: { txid, confirmations: tx.confirmations, fee: btcNumberToSats(Math.abs(tx.fee ?? 0)) }, latest };
  }
  return { latest };
}

/**
 * What the node's wallet holds but does not count in its balances: the coins of stuck (or releasing) batches whose
 * transaction it still has, in no block and no mempool (dropped: fees rose, it expired). The wallet counts their
 * inputs as spent and their change as nothing (a transaction in no block and no mempool is not trusted), yet they
 * are the engine's coins until a fee bump pays the users or a release spends them back. Without them the watchdog
 * would see a hole of the whole batch, and pause every payout, for one batch waiting for a bump.
 * `sats`: the sum of those transactions' inputs (their outputs plus their fee); `batches`: which. A batch still
 * signed or broadcast that is dropped so (the mempool refuses it for its fee: it waits, sent again at every block; see
 * broadcast) has its payouts in flight already, their amounts and fees off the books: only its change counts here.
 */
export async function strandedCoins(state: PayoutState, node: Pick<PayoutNode, "call">): Promise<{ sats: bigint; batches: string[] }> {
  let sats = 0n;
  const batches: string[] = [];
  for (const [batch, b] of Object.entries(liveBatches(state))) {
    if (b.status === "confirmed" || b.status === "released") continue;
    const inFlight = b.status === "signed" || b.status === "broadcast";
    // One of these holds the batch's coins in the wallet's view; they all spend the same coins (a fee bump and a
    // cancellation spend them again), so at most one counts.
    const candidates = [...(b.cancel?.txid ? [b.cancel.txid, ...(b.cancel.earlier ?? [])] : []), b.txid, ...b.replaced];
    for (const txid of candidates) {
      const tx = await unlessUnknown(node.call<WalletTx & { hex: string; walletconflicts?: string[]; details?: Array<{ abandoned?: boolean }> }>("gettransaction", [txid]));
      if (!tx || tx.confirmations !== 0 || tx.details?.some((d) => d.abandoned)) continue;
      // In the mempool: the wallet counts its change already, and the batch may still be mined; nothing stranded.
      if (await unlessUnknown(node.call("getmempoolentry", [txid]))) break;
      if (await heldByRival(tx, node)) break;
      const decoded = await node.call<{ vout: Array<{ value: number }> }>("decoderawtransaction", [tx.hex]);
      let value = inFlight ? 0n : btcNumberToSats(Math.abs(tx.fee ?? 0));
      for (const out of decoded.vout) value += btcNumberToSats(out.value);
      // Every version pays the same payouts: what is left is its change.
      if (inFlight) for (const id of b.ids) value -= payoutOf(state, id)?.amount ?? 0n;
      sats += value;
      batches.push(batch);
      break;
    }
  }
  return { sats, batches };
}

/**
 * Whether another transaction spending the same coins is in the mempool or a block (a fee bump made on the node by
 * hand, which the book does not know): that one holds them, and the wallet counts its change.
 */
async function heldByRival(tx: WalletTx & { walletconflicts?: string[] }, node: Pick<PayoutNode, "call">): Promise<boolean> {
  for (const rival of [...(tx.replaced_by_txid ? [tx.replaced_by_txid] : []), ...(tx.walletconflicts ?? [])]) {
    if (await unlessUnknown(node.call("getmempoolentry", [rival]))) return true;
    if (((await unlessUnknown(node.call<WalletTx>("gettransaction", [rival])))?.confirmations ?? 0) > 0) return true;
  }
  return false;
}

/** An RPC's answer, or undefined where the node says it does not know the transaction (-5). */
async function unlessUnknown<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (e) {
    if ((e as RpcError).code === -5) return undefined;
    throw e;
  }
}

/** The node wallet's record of a transaction; undefined for one it never took (refused, never sent). */
const walletTx = (txid: string, o: PayoutOptions) => unlessUnknown(o.node.call<WalletTx>("gettransaction", [txid]));

async function sync(get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number, step: NonNullable<PayoutOptions["step"]>) {
  const rebroadcast = await rebroadcastAll(get, commit, o, now);
  let confirmed = 0;
  // The live batches, and the released ones among the finished (a deep reorg may mine one): the confirmed ones are done.
  const released = get().finishedBatches((b) => b.status === "released");
  for (const [batch, b] of [...Object.entries(get().liveBatches), ...released]) {
    // A stuck batch too: its broadcast may have been refused because one of its transactions was already mined, or
    // it may be mined from other nodes' mempools after ours dropped it. Its wallets are then settled like any other.
    if (b.status === "released") {
      // Released when its cancellation (or another spend) was deep enough: mined now, only a reorg deeper than the
      // confirmation target did it, and its users have been paid and given the amount back. Operators must know.
      const { mined } = await minedTx(b, o);
      if (mined) o.hooks.alert("a released payout batch is in a block after a deep reorg: its payouts were paid and released", { batch, txid: mined.txid });
      continue;
    }
    if (b.status !== "broadcast" && b.status !== "stuck" && b.status !== "cancelling") continue;
    const { mined, latest } = await minedTx(b, o);
    if (mined && mined.confirmations >= o.confirmations) {
      const earlier = mined.txid !== b.txid
        ? { txid: mined.txid, fee: mined.fee.toString(), shares: feeShares(mined.fee, b.ids.map((id) => get().payout(id)!.quotedFee)).map(String) }
        : {};
      await commit([{ t: "confirmed", batch, at: now(), ...earlier }]);
      if (b.status !== "broadcast") o.log.warn({ batch, txid: mined.txid }, `a payout batch marked ${b.status} is confirmed on chain after all`);
      confirmed++;
    } else if (mined && b.status !== "broadcast") {
      // In a block, not deep enough yet: out of the node's wallet, so in flight for the watchdog, as a broadcast one.
      await commit([{ t: "broadcast", batch, at: now() }]);
      tellBroadcast(batch, mined.txid, get, o);
      o.log.warn({ batch, txid: mined.txid }, `a payout batch marked ${b.status} is in a block after all`);
    } else if (b.status === "cancelling" || (b.status === "stuck" && b.cancel?.txid !== undefined)) {
      // A stuck batch with a cancellation out: marked stuck again after its release began (a reorg, a fee bump).
      await followCancel(batch, b, get, commit, o, now);
    } else if (!mined && b.status === "stuck") {
      // Stuck, yet one of its versions may be back in the node's mempool: see backInMempool.
      const pooled = await inMempool(b, o);
      if (pooled) await backInMempool(batch, b, pooled, get, commit, o, now);
      // Or replaced by a fee bump made on the node outside the engine, in the mempool or a block: see adoptRival.
      else await adoptRival(batch, get, commit, o, now);
    } else if (!mined && b.status === "broadcast" && latest && latest.confirmations < 0 && !latest.replaced_by_txid) {
      o.hooks.alert("payout conflicted on chain", { batch, txid: b.txid });
    }
  }
  if (confirmed > 0) step("confirmed");
  // Batches confirmed or released are not sent again: their wallets' "told" is forgotten. Nor is one that left the fee
  // wait another way (in a block, stuck, released) still waiting for it.
  const { told, feeRefused: refused } = watchOf(o);
  for (const batch of told.keys()) if (!(batch in get().liveBatches)) told.delete(batch);
  for (const batch of refused.keys()) {
    const status = get().liveBatches[batch]?.status;
    if (status !== "signed" && status !== "broadcast") refused.delete(batch);
  }
  const settled = await settleWallets(get, commit, o, now);
  await prune(get, commit, o, now);
  await watchConfirmed(get, o);
  return { confirmed, rebroadcast, settled };
}

/**
 * A confirmed batch is asked of the node at every block until it is this deep; a released one leaves the book only once
 * the spend that killed it is this deep (see prune). 100 blocks is the depth at which the protocol itself lets a miner
 * spend a new coinbase: no reorg has come near it, and one beyond it is a catastrophe operators hear of another way.
 */
const REORG_WATCH_DEPTH = 100;

/**
 * Confirmed batches asked of the node in one sync at most (one JSON-RPC batch through the node actor). After a start
 * none is known deep yet: the newest are asked first, the older ones at the next blocks.
 */
const REORG_WATCH_PER_SYNC = 200;

/**
 * Blocks a confirmed batch that a reorg took out of the chain may stay out of a block — while it can still be mined: in
 * the node's mempool, or sent again by the engine — before operators are alerted, counted from the tip when it was
 * first seen out. A reorg's transactions go back to the mempools, with the fee that was good enough for a block a
 * moment ago, and are mined again at the next block or two: at the default target (1 block) a one-block reorg, which
 * happens, must not call anyone. 6 blocks (an hour on average) is past a run of slow blocks and a fee market that
 * moved a little, and short enough that users told they were paid are not left unpaid long without anyone looking.
 */
const REORG_UNMINED_BLOCKS = 6;

/**
 * What syncs found out about batches in this life of the engine, kept in memory only, per payout actor (its options):
 * which confirmed batches are deep enough to be left alone, and what operators were told already, so that a finding
 * is told once rather than at every block. A restart asks again, tells once more what still holds, and counts a
 * confirmed batch's blocks out of the chain again from its tip then (a later alert, never an earlier one).
 */
interface Watch {
  /** Confirmed batches REORG_WATCH_DEPTH deep or more when asked (or whose transaction the node's wallet lacks). */
  deep: Set<string>;
  /**
   * Confirmed batches found in no block (see watchConfirmed): the tip when that was first seen (`since`), and the
   * findings operators were told of since (each once).
   */
  unmined: Map<string, { since: number; told: Set<string> }>;
  /** "batch txid": transactions that replaced a batch's and were not adopted, operators told (see adoptRival). */
  rivals: Set<string>;
  /**
   * Live batches whose wallets were told they are out: the transaction they were told of, the payouts whose wallet
   * took it, and those being told now (see tellBroadcast).
   */
  told: Map<string, { txid: string; ids: Set<string>; asking: Set<string> }>;
  /** Flushes failing in a row (see flushFailed); undefined once one runs to its end. */
  failing?: { count: number; since: number; lastError: string };
  /** When a failed flush was last alerted, by its error; kept when flushes run again (see FLUSH_ALERT_EVERY_MS). */
  flushAlerted: Map<string, number>;
  /**
   * Flushes ending without a batch because the mempool's floor is above the fee rate allowed (see waitForFees): since
   * when, the latest reason and when it was seen.
   */
  feeWait?: { since: number; at: number; why: string };
  /** Recorded batches whose (re)broadcast the mempool refuses for their fee alone (see feeRefusedBatch), as feeWait. */
  feeRefused: Map<string, { since: number; at: number; why: string }>;
  /**
   * The change address of a batch the mempool refused for its fee after it was funded (see flush): the next batch pays
   * its change there, so a run of such refusals takes one key of the node wallet's change chain, not one each.
   */
  change?: string;
}

const watches = new WeakMap<PayoutOptions, Watch>();

function watchOf(o: PayoutOptions): Watch {
  let w = watches.get(o);
  if (!w) watches.set(o, (w = { deep: new Set(), unmined: new Map(), rivals: new Set(), told: new Map(), flushAlerted: new Map(), feeRefused: new Map() }));
  return w;
}

/**
 * Confirmed batches not yet REORG_WATCH_DEPTH deep: one whose transaction a reorg took out of the chain has users who
 * were told they were paid, and are not until it is mined again. The book cannot pay them again by itself (the batch
 * is done, its wallets settled), and nobody may while its transaction can still be mined: a payment by hand, then the
 * original mined, pays them twice. So: back in the node's mempool, a warning (usually mined again at the next block),
 * an alert only if it is still in no block REORG_UNMINED_BLOCKS later; in no block and no mempool of ours (dropped),
 * the engine sends the same transaction again, from the node wallet's copy (the book keeps no bytes of a finished
 * batch), with a warning, and alerts if the node refuses it; only one a block conflicts with (it can never be mined)
 * is for operators to pay again, once they have checked the conflicting transaction (a fee bump made on the node pays
 * the same payouts). Each finding is told once per batch. Per block this asks the node about the batches confirmed in
 * the last REORG_WATCH_DEPTH blocks, at most REORG_WATCH_PER_SYNC of them (the deeper ones are remembered as such and
 * not asked again).
 */
async function watchConfirmed(get: () => PayoutBook, o: PayoutOptions): Promise<void> {
  const w = watchOf(o);
  const recent = get().finishedBatches((b) => b.status === "confirmed").filter(([id]) => !w.deep.has(id))
    .sort((a, b) => byAt(b, a)).slice(0, REORG_WATCH_PER_SYNC);
  if (recent.length === 0) return;
  const txs = await Promise.all(recent.map(([, b]) => walletTx(b.txid, o)));
  let tip: number | undefined;
  const height = async () => (tip ??= await o.node.call<number>("getblockcount", []));
  for (let i = 0; i < recent.length; i++) {
    const [batch, b] = recent[i]!, tx = txs[i];
    // Deep enough to be left alone; or a transaction the node's wallet does not have (adopted after a restore from
    // another wallet?): nothing to watch it by.
    if (!tx || tx.confirmations >= REORG_WATCH_DEPTH) {
      w.deep.add(batch);
      continue;
    }
    if (tx.confirmations > 0) {
      if (w.unmined.delete(batch)) o.log.warn({ batch, txid: b.txid }, "a confirmed payout batch that a reorg took out of the chain is in a block again: its payouts are paid");
      continue;
    }
    let u = w.unmined.get(batch);
    if (!u) w.unmined.set(batch, (u = { since: await height(), told: new Set() }));
    const told = u.told;
    const first = (finding: string) => {
      if (told.has(finding)) return false;
      told.add(finding);
      return true;
    };
    const detail = { batch, txid: b.txid, payouts: b.ids.length };
    // An earlier version of it (one a fee bump replaced) may be in the new chain instead: paid all the same.
    const { mined } = await minedTx(b, o);
    if (mined) {
      if (first("another version")) o.log.warn({ ...detail, mined: mined.txid }, "after a reorg, a confirmed payout batch is in a block by another of its versions: its payouts are paid, by that transaction, not the one the book names");
      continue;
    }
    if (tx.confirmations < 0) {
      if (first("conflicted")) {
        o.hooks.alert("a confirmed payout batch left the chain in a reorg and conflicts with a transaction in a block, so it can never be mined while that block stands: its users were told they were paid. Check the conflicting transaction first: if it pays the batch's payouts (a fee bump made on the node), they are paid; if not, pay each payout again by hand or give its amount back (the book still says confirmed)", { ...detail, ...(tx.walletconflicts?.length ? { conflicts: tx.walletconflicts } : {}) });
      }
      continue;
    }
    if (await unlessUnknown(o.node.call("getmempoolentry", [b.txid]))) {
      if (first("mempool")) o.log.warn(detail, `a confirmed payout batch left the chain in a reorg and is back in the node's mempool: it is paid once mined again, usually at the next block; operators are alerted if it is not within ${REORG_UNMINED_BLOCKS} blocks`);
    } else {
      // Dropped (the node restarted without its mempool, the fee floor rose): the same transaction, sent again. It is
      // still valid, and may be in other nodes' mempools: sending it is the only safe way to get it mined. Not one an
      // operator abandoned on the node (abandontransaction): that is someone deciding it must not be mined — its
      // payouts paid by hand, perhaps — and sending it would pay them twice.
      if (tx.details?.some((d) => d.abandoned)) {
        if (first("abandoned")) {
          o.hooks.alert("a confirmed payout batch left the chain in a reorg, and its transaction is abandoned on the node (abandontransaction): the engine does not send it again. Its users were told they were paid: if its payouts were not paid another way, pay them (the book still says confirmed); if they were, leave it abandoned", detail);
        }
        continue;
      }
      const refused = tx.hex ? await resend(tx.hex, o) : "the node's wallet has no copy of it";
      if (refused === undefined) {
        if (first("sent again")) o.log.warn(detail, "a confirmed payout batch left the chain in a reorg and was in no block and not in the node's mempool: sent again (the same transaction, from the node's wallet); it is paid once mined");
      } else if (first("refused")) {
        o.hooks.alert("a confirmed payout batch left the chain in a reorg, is in no block and not in the node's mempool, and the node refuses to take it again: its users were told they were paid and are not until it is mined. It is still valid (other nodes may hold it), so do not pay its payouts again by hand: check why it is refused (a fee below the node's floor: raise it on the node with bumpfee); the engine sends it again at every block, and says so if a block ever conflicts with it", { ...detail, why: refused });
      }
    }
    if ((await height()) - u.since >= REORG_UNMINED_BLOCKS && first("unmined")) {
      o.hooks.alert(`a confirmed payout batch that a reorg took out of the chain is still in no block ${REORG_UNMINED_BLOCKS} blocks later: its users were told they were paid and are not until it is mined. It can still be mined, so do not pay its payouts again by hand: check its fee rate against the mempool's and raise it on the node (bumpfee) if it is too low; the engine says so if a block ever conflicts with it`, detail);
    }
  }
}

/**
 * Sends a transaction that is in no block again (the same bytes: it can only pay what it paid). Undefined once the
 * node has it (or has it already); the node's reason if it refuses it. Anything else (the node not answering) throws:
 * the sync is tried again at the next block.
 */
async function resend(hex: string, o: PayoutOptions): Promise<string | undefined> {
  try {
    await o.node.call("sendrawtransaction", [hex]);
    return undefined;
  } catch (e) {
    const err = e as RpcError;
    // -27: already in the mempool or the chain.
    if (err.code === -27) return undefined;
    if (err.code === -25 || err.code === -26) return `${err.code}: ${err.message ?? ""}`;
    throw e;
  }
}

/**
 * A transaction of the node's wallet that replaced one of the batch's versions and that the book did not make — a fee
 * bump an operator made on the node (bumpfee) — in the mempool or a block. Not followed, the batch looked stuck while
 * its payouts were being paid: the watchdog saw their amount gone from the node's wallet and not in flight, and paused
 * every payout. One the wallet made itself (it knows its fee), that spends every coin of a version of the batch (a
 * replacement keeps them all and may add some) and pays each of its payouts exactly — address and amount; only its
 * change and fee differ — is the batch: adopted as its new version, journalled as the engine's own fee bump is
 * ("replaced", then "broadcast"), so its fee and the payouts' shares of it are in the book. Any other is not the
 * batch's to follow: operators are told (once) which transaction it is, and the batch stays as it was. True if adopted.
 */
async function adoptRival(batch: string, get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<boolean> {
  const b = get().batch(batch)!;
  const w = watchOf(o);
  const own = bookTxids(get());
  const rivals = new Set<string>();
  const versions: Array<[string, WalletTx | undefined]> = [];
  for (const txid of [b.txid, ...b.replaced]) {
    const tx = await walletTx(txid, o);
    versions.push([txid, tx]);
    for (const r of [...(tx?.replaced_by_txid ? [tx.replaced_by_txid] : []), ...(tx?.walletconflicts ?? [])]) if (!own.has(r)) rivals.add(r);
  }
  if (rivals.size === 0) return false;
  const inputs: string[][] = [];
  for (const [txid, tx] of versions) {
    const hex = txid === b.txid ? b.hex : tx?.hex;
    const ins = b.inputs?.[txid] ?? (hex ? outpoints(await batchInputs(hex, o)) : undefined);
    if (ins?.length) inputs.push(ins);
  }
  for (const rival of rivals) {
    const tx = await walletTx(rival, o);
    // In no block and no mempool (replaced in turn, conflicted): nothing to follow; or another batch's (pruned).
    if (!tx?.hex || tx.confirmations < 0 || o.finished.paidBy(rival)) continue;
    if (tx.confirmations === 0 && !(await unlessUnknown(o.node.call("getmempoolentry", [rival])))) continue;
    const decoded = await o.node.call<{ vin: Outpoint[]; vout: RawOutput[] }>("decoderawtransaction", [tx.hex]);
    const spends = new Set(outpoints(decoded.vin));
    const why = tx.fee === undefined ? "it spends coins that are not the node wallet's"
      : !inputs.some((v) => v.every((i) => spends.has(i))) ? "it does not spend every coin of a version of the batch"
        : !(await paysExactly(b, decoded.vout, get, o)) ? "it does not pay each of the batch's payouts exactly (address and amount), with only change besides"
          : undefined;
    if (why !== undefined) {
      if (!w.rivals.has(`${batch} ${rival}`)) {
        w.rivals.add(`${batch} ${rival}`);
        o.hooks.alert("a transaction the book did not make replaced a payout batch's and is not adopted: the batch's payouts may not be paid by it; check it, and release or bump the batch as it stands", { batch, txid: rival, why });
      }
      continue;
    }
    const fee = btcNumberToSats(Math.abs(tx.fee!));
    const shares = feeShares(fee, b.ids.map((id) => get().payout(id)!.quotedFee));
    await commit([
      { t: "replaced", batch, hex: tx.hex, txid: rival, fee: fee.toString(), shares: shares.map(String), at: now(), inputs: outpoints(decoded.vin) },
      { t: "broadcast", batch, at: now() },
    ]);
    tellBroadcast(batch, rival, get, o);
    o.log.warn({ batch, txid: rival, replaced: b.txid, fee: fee.toString() }, "a fee bump made on the node outside the engine pays every payout of a batch exactly: adopted as the batch's new version, followed until it is confirmed");
    return true;
  }
  return false;
}

type RawOutput = { value: number; scriptPubKey: { address?: string } };

/**
 * Whether a transaction's outputs pay each of the batch's payouts once, to its address and its amount, and nothing
 * else but change (outputs to the node's own wallet).
 */
async function paysExactly(b: Batch, vout: RawOutput[], get: () => PayoutBook, o: PayoutOptions): Promise<boolean> {
  const owed = new Set(b.ids.map((id) => get().payout(id)!).map((p) => `${canonicalAddress(p.address)} ${p.amount}`));
  for (const out of vout) {
    const to = out.scriptPubKey.address;
    if (to === undefined) return false;
    const k = `${canonicalAddress(to)} ${btcNumberToSats(out.value)}`;
    if (owed.delete(k)) continue;
    if (!(await o.node.call<{ ismine?: boolean }>("getaddressinfo", [to])).ismine) return false;
  }
  return owed.size === 0;
}

/**
 * A stuck batch one of whose versions is in the node's mempool after all: broadcast again, followed as any other. It
 * got there by itself — dropped (the fee floor rose, the node restarted without its mempool) and marked stuck, then
 * put back by the node's wallet, which resubmits its own transactions, or relayed back by a peer — or never left: a
 * fee bump whose replacement the node refused marks the batch stuck with the replacement's txid while the version it
 * replaced is still in the mempool. Left stuck, its coins were neither stranded (the mempool holds them) nor in flight
 * (stuck payouts are not): the watchdog saw a hole of its amount and fee and paused every payout, and neither a
 * release (it is in the mempool) nor a resume (the hole) was allowed. An earlier version is followed again, with its
 * bytes and fee as the node has them (the book keeps only the latest's bytes); the refused one stays among `replaced`.
 */
async function backInMempool(batch: string, b: Batch, txid: string, get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<void> {
  const events: PayoutEvent[] = [];
  if (txid !== b.txid) {
    // The node's wallet has it: it spends the wallet's coins, and the wallet saw it enter the mempool.
    const tx = await walletTx(txid, o);
    // Not in the wallet's view, or in a block meanwhile: the next sync sees where it is.
    if (!tx?.hex || tx.fee === undefined || tx.confirmations !== 0) return;
    const hex = tx.hex;
    const fee = btcNumberToSats(Math.abs(tx.fee));
    const shares = feeShares(fee, b.ids.map((id) => get().payout(id)!.quotedFee));
    events.push({ t: "replaced", batch, hex, txid, fee: fee.toString(), shares: shares.map(String), at: now(), inputs: outpoints(await batchInputs(hex, o)) });
  }
  events.push({ t: "broadcast", batch, at: now() });
  await commit(events);
  tellBroadcast(batch, txid, get, o);
  o.log.warn({ batch, txid }, "a payout batch marked stuck is in the node's mempool after all: broadcast again, and followed until it is confirmed");
}

/** At most this many payouts leave the book in one event (one journal record, one store batch). */
const PRUNE_CHUNK = 1000;

/**
 * Finished payouts — confirmed or released, and their wallets have journalled the settlement (or the release), so
 * nothing will ask about them but a late re-submission — beyond the newest `retainFinished` leave the book, oldest
 * first, each remembered by a store record written in the same batch (a released one as released: a re-submission is
 * answered so, never queued and paid); so do the batches left with no payout. A released batch's payouts stay until
 * the spend that killed the batch is REORG_WATCH_DEPTH deep: until then sync looks at it for a deep reorg that mines
 * it after all, which needs the batch in the book. Released payouts never in a batch (given back queued) go at once.
 */
async function prune(get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<void> {
  // Counted as they finish: the finished ones are read only when some must go.
  const excess = get().oldestFinished(get().finishedCount.payouts - o.retainFinished);
  if (excess.length === 0) return;
  // Released batches among them whose end is not deep yet: asked once each; their payouts wait for a later block.
  const shallow = new Set<string>(), asked = new Set<string>();
  let tip: number | undefined;
  const height = async () => (tip ??= await o.node.call<number>("getblockcount", []));
  for (const [, p] of excess) {
    if (p.status !== "released" || p.batch === undefined || asked.has(p.batch)) continue;
    asked.add(p.batch);
    if (!(await releaseDeep(get().batch(p.batch)!, o, height))) shallow.add(p.batch);
  }
  const going = excess.filter(([, p]) => p.batch === undefined || !shallow.has(p.batch));
  for (let i = 0; i < going.length; i += PRUNE_CHUNK) {
    const chunk = going.slice(i, i + PRUNE_CHUNK);
    const s = get();
    const records = chunk.map(([id, p]) => (p.status === "released" ? o.finished.releasedOp(id) : o.finished.op(id, s.batch(p.batch!)!.txid, p.fee ?? p.quotedFee)));
    const leaving = new Set(chunk.map(([id]) => id));
    const batches = [...new Set(chunk.flatMap(([, p]) => (p.batch === undefined ? [] : [p.batch])))]
      .filter((b) => batchFinished(s.batch(b)!) && s.batch(b)!.ids.every((id) => leaving.has(id) || !s.payout(id)));
    for (const b of batches) records.push(...o.finished.txOps(s.batch(b)!));
    await commit([{ t: "pruned", ids: chunk.map(([id]) => id), batches, at: now() }], records);
    for (const b of batches) {
      watchOf(o).deep.delete(b);
      watchOf(o).unmined.delete(b);
    }
  }
}

/**
 * Whether the spend that made a released batch impossible to mine — its cancellation (any of them: a fee bump's, or
 * the one it replaced), or the earlier spend of an input, seen at `spentAt` — is REORG_WATCH_DEPTH deep.
 */
async function releaseDeep(b: Batch, o: PayoutOptions, height: () => Promise<number>): Promise<boolean> {
  const c = b.cancel;
  // Every release goes through "cancelling", which records this; without it, nothing says how deep its end is: kept.
  if (!c) return false;
  if (c.txid !== undefined) {
    for (const txid of [c.txid, ...c.earlier]) if (((await walletTx(txid, o))?.confirmations ?? 0) >= REORG_WATCH_DEPTH) return true;
    return false;
  }
  return c.spentAt !== undefined && (await height()) - c.spentAt + 1 >= REORG_WATCH_DEPTH;
}

/** Wallets told at once; more would activate a crowd of wallets together (after an upgrade, every old payout). */
const SETTLE_CONCURRENCY = 64;

/**
 * Every confirmed payout whose wallet has not acknowledged its settlement — just confirmed, or confirmed before a
 * crash that came before the wallet journalled it — is told to its wallet, and the acknowledgements are recorded.
 * Wallets never wait on this actor, so waiting for them here cannot deadlock. A wallet that refuses keeps its
 * payout counted in flight by the watchdog, and operators are told.
 */
async function settleWallets(get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<number> {
  // Not settled: live ones.
  const open = Object.entries(get().live).filter(([, p]) => (p.status === "confirmed" || p.status === "released") && !p.walletSettled);
  let settled = 0;
  const tell = (id: string, p: Payout) => (p.status === "released" ? tellReleased(id, p, get, o) : o.hooks.settled(p.userKey, id, get().batch(p.batch!)!.txid, p.fee ?? p.quotedFee));
  for (let i = 0; i < open.length; i += SETTLE_CONCURRENCY) {
    const chunk = open.slice(i, i + SETTLE_CONCURRENCY);
    const answers = await Promise.all(chunk.map(([id, p]) => tell(id, p).catch((e: unknown) => refuse("internal", (e as Error).message))));
    const ids = chunk.filter((_, j) => answers[j] === true).map(([id]) => id);
    answers.forEach((a, j) => {
      if (a === true) return;
      const [id, p] = chunk[j]!;
      const what = p.status === "released" ? "a wallet did not release a released payout; it is told again at the next block" : "a wallet did not settle a confirmed payout; it stays counted as in flight";
      o.hooks.alert(what, { id, refusal: a.code, why: a.message });
    });
    if (ids.length) await commit([{ t: "wallet_settled", ids, at: now() }]);
    settled += ids.length;
  }
  return settled;
}

/** Tells a released payout's wallet that it will never be paid: its batch was released, or it was given back queued. */
function tellReleased(id: string, p: Payout, get: () => PayoutBook, o: PayoutOptions): Promise<true | Refusal> {
  const b = p.batch === undefined ? undefined : get().batch(p.batch)!;
  return o.hooks.released(p.userKey, id, b ? `its transaction could not be sent (${b.cancel?.reason ?? b.reason ?? "released by an operator"})` : "given back by an operator before it was sent");
}

async function adopt(txid: string, ids: string[], outputs: number, get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<{ batch: string } | Refusal> {
  const had = [...Object.entries(get().liveBatches), ...get().finishedBatches()].find(([, b]) => b.txid === txid || b.replaced.includes(txid));
  if (had) return { batch: had[0] };
  const payouts = ids.map((id) => get().payout(id));
  if (ids.length === 0 || payouts.some((p) => p?.status !== "queued")) return refuse("not_allowed", `Only queued payouts can be adopted by ${txid}.`);
  // The node's own record of its send: its bytes (for the book) and the fee it paid.
  const tx = await o.node.call<{ hex: string; fee?: number }>("gettransaction", [txid]);
  // The adopted payouts' part of the fee: the transaction also paid outputs the restored books do not know.
  const fee = btcNumberToSats(Math.abs(tx.fee ?? 0)) * BigInt(ids.length) / BigInt(Math.max(outputs, ids.length));
  const shares = feeShares(fee, payouts.map((p) => p!.quotedFee));
  const batch = `b${get().seq + 1}`;
  await commit([
    { t: "signed", batch, ids, hex: tx.hex, txid, fee: fee.toString(), shares: shares.map(String), at: now(), adopted: true, inputs: outpoints(await batchInputs(tx.hex, o)) },
    { t: "broadcast", batch, at: now() },
  ]);
  tellBroadcast(batch, txid, get, o);
  o.log.warn({ batch, txid, payouts: ids.length }, "queued payouts found paid by a transaction made after the backup: recorded as its batch");
  return { batch };
}

/**
 * What the node says of one of its transaction's inputs: unspent (with its value), spent by a transaction in its
 * mempool, spent in a block, or made by a transaction in no block (after a reorg).
 */
type InputState =
  | { state: "unspent"; value: bigint }
  | { state: "spent_in_mempool"; value: bigint }
  | { state: "spent_in_block" }
  /** Made by a transaction a block conflicts with (a reorg double-spent it), that block `depth` deep: it never will be. */
  | { state: "gone"; depth: number }
  | { state: "unconfirmed" };

/** Whether an input can never be spent by the batch again, as long as the chain keeps what makes it so. */
const isDead = (x: InputState) => x.state === "spent_in_block" || x.state === "gone";

async function inputState(input: { txid: string; vout: number }, o: PayoutOptions): Promise<InputState> {
  // gettxout answers null for an output spent (or never made): without the mempool, for one spent in a block — if the
  // transaction that made it is in a block (a reorg can send it back to the mempool, and the output with it). A
  // negative count of confirmations is the depth of a block that conflicts with that transaction.
  const inChain = await o.node.call<{ value: number } | null>("gettxout", [input.txid, input.vout, false]);
  if (inChain === null) {
    const made = await o.node.call<WalletTx>("gettransaction", [input.txid]);
    if (made.confirmations > 0) return { state: "spent_in_block" };
    return made.confirmations < 0 ? { state: "gone", depth: -made.confirmations } : { state: "unconfirmed" };
  }
  const withMempool = await o.node.call<{ value: number } | null>("gettxout", [input.txid, input.vout, true]);
  const value = btcNumberToSats(inChain.value);
  return withMempool === null ? { state: "spent_in_mempool", value } : { state: "unspent", value };
}

/** Whether the node's mempool holds one of the batch's transactions (it may still be mined: bump it instead). */
async function inMempool(b: Batch, o: PayoutOptions): Promise<string | undefined> {
  for (const txid of [b.txid, ...b.replaced]) if (await unlessUnknown(o.node.call("getmempoolentry", [txid]))) return txid;
  return undefined;
}

/**
 * Operator: a stuck batch's payouts go back to their wallets — but only once its transaction can never be mined.
 * The batch must be in no block and no mempool. If a coin that every version of it spends is already spent in a
 * block, that spend is waited for until it is as deep as a deposit must be (a coin a fee bump added kills only the
 * versions that spend it). Otherwise the engine spends every coin still live of all its versions back to its own
 * wallet (so every version of the batch conflicts with it or is dead already), journalled before it is broadcast, and
 * waits for that. `sync` (every block) finishes it: the batch is released and its
 * wallets told. Called again while the cancellation is unconfirmed, it bumps the cancellation's fee.
 */
async function release(batch: string, feeRate: bigint, reason: string, get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<ReleaseAnswer | Refusal> {
  const b = get().batch(batch);
  if (!b) return refuse("not_found", `No payout batch ${batch}.`);
  if (b.status === "released") return { batch, status: "released" };
  // One the mempool refuses for its fee alone waits for the floor, signed or broadcast, not stuck (see broadcast): an
  // operator may still give it up rather than wait (a floor raised for good).
  const feeWait = (b.status === "signed" || b.status === "broadcast") && watchOf(o).feeRefused.has(batch);
  if (b.status !== "stuck" && b.status !== "cancelling" && !feeWait) {
    return refuse("not_allowed", `Batch ${batch} is ${b.status}, not stuck: only a stuck batch can be released (or one the mempool refuses for its fee; a batch in the mempool can have its fee bumped).`);
  }
  const { mined } = await minedTx(b, o);
  if (mined) return refuse("not_allowed", `Batch ${batch} is in a block (${mined.txid}): it is paid, and confirmed at the next blocks.`);
  const pooled = await inMempool(b, o);
  if (pooled) return refuse("not_allowed", `Batch ${batch} is in the node's mempool (${pooled}) and may still be mined: bump its fee instead.`);
  const c = b.cancel;
  // Waiting for the earlier spend of an input to be deep enough: nothing to add.
  if (b.status === "cancelling" && c?.spentAt !== undefined) return { batch, status: "cancelling" };
  if (c?.txid !== undefined) {
    // A cancellation is out: wait for it, or bump its fee. One the node's wallet never took (its broadcast refused) or
    // one a transaction in a block conflicts with: the inputs are looked at again, below.
    const tx = await walletTx(c.txid, o);
    if (tx && tx.confirmations > 0) {
      // In a block while the batch was marked stuck again (a reorg, a fee bump in between): follow it again.
      if (b.status !== "cancelling") await commit([{ t: "cancelling", batch, reason: c.reason, input: c.input, hex: c.hex!, txid: c.txid, fee: c.fee!.toString(), at: now() }]);
      return { batch, status: "cancelling", txid: c.txid, fee: c.fee! };
    }
    if (tx?.confirmations === 0) {
      const bumped = await o.node.call<{ psbt: string; fee: number }>("psbtbumpfee", [c.txid, { fee_rate: Number(feeRate) }]);
      return cancelWith(batch, c.input, reason, bumped.psbt, btcNumberToSats(bumped.fee), commit, o, now);
    }
  }
  const { inputs, everyVersion, states } = await inputsOf(b, o);
  if (states.some((x) => x.state === "unconfirmed")) {
    return refuse("not_allowed", `An input of batch ${batch} comes from a transaction in no block (a reorg?); try again once it is mined.`);
  }
  if (states.some(isDead)) {
    // Spent by something in a block: by a version of this batch the book does not know (a fee bump made on the node
    // by hand, a restore from before one), its payouts are paid, and must not be given back too.
    const paid = await paidElsewhere(b, inputs, get, o);
    if (paid) return refuse("not_allowed", `Batch ${batch} looks paid by ${paid}, a transaction in a block that pays one of its payouts: it is not released. Check that transaction.`);
  }
  // Only a coin every version of the batch spends proves, spent elsewhere, that none of them can be mined. One a fee
  // bump added kills the replacement alone: the version it replaced is still valid, and is cancelled like any other.
  const spent = provenDead(states, everyVersion);
  if (spent >= 0) {
    await waitForSpend(batch, reason, inputs[spent]!, states[spent]!, commit, o, now);
    return { batch, status: "cancelling" };
  }
  // The coins still live, of every version: the cancellation spends them all, so each version conflicts with it.
  const live = inputs.map((input, i) => ({ input, state: states[i]! })).filter((x) => !isDead(x.state));
  if (live.some((x) => x.state.state === "spent_in_mempool")) {
    return refuse("not_allowed", `An input of batch ${batch} is spent by a transaction in the node's mempool; try again once that is mined.`);
  }
  if (live.length === 0) {
    return refuse("not_allowed", `Every coin batch ${batch} spends is spent in a block, but none by every version of it (or a version's coins are unknown to the book and the node's wallet): it is not released. An operator must check that no version of it can still be mined.`);
  }
  // Everything back to one change address of the node's wallet, the fee taken from it.
  const total = live.reduce((sum, x) => sum + (x.state as { value: bigint }).value, 0n);
  const to = await o.node.call<string>("getrawchangeaddress", ["bech32"]);
  const funded = await o.node.call<{ psbt: string; fee: number }>("walletcreatefundedpsbt", [
    live.map(({ input }) => ({ txid: input.txid, vout: input.vout })), [{ [to]: satsToBtcString(total) }], 0,
    { add_inputs: false, subtractFeeFromOutputs: [0], fee_rate: Number(feeRate), replaceable: true },
  ]);
  return cancelWith(batch, key(live[0]!.input), reason, funded.psbt, btcNumberToSats(funded.fee), commit, o, now);
}

type Outpoint = { txid: string; vout: number };
const key = (i: Outpoint) => `${i.txid}:${i.vout}`;
const outpoints = (vin: ReadonlyArray<Outpoint>) => vin.map(key);
function outpoint(k: string): Outpoint {
  const at = k.lastIndexOf(":");
  return { txid: k.slice(0, at), vout: Number(k.slice(at + 1)) };
}

/** The inputs of a signed transaction. */
const batchInputs = async (hex: string, o: PayoutOptions) => (await o.node.call<{ vin: Outpoint[] }>("decoderawtransaction", [hex])).vin;

/**
 * The coins the batch's versions spend — its latest and those its fee bumps replaced: each may still be mined until
 * one of its own coins is spent elsewhere — all of them (`inputs`, the latest's first), and for each whether every
 * version spends it (`everyVersion`). A version the book has no inputs for (journalled before they were recorded)
 * is read from the node's wallet; one the wallet does not have either is unknown, and then no coin is known to be
 * spent by every version.
 */
async function versionsOf(b: Batch, o: PayoutOptions): Promise<{ inputs: Outpoint[]; everyVersion: boolean[] }> {
  const versions: Array<string[] | undefined> = [];
  for (const txid of [b.txid, ...b.replaced]) {
    let ins = b.inputs?.[txid];
    if (!ins && txid === b.txid) ins = outpoints(await batchInputs(b.hex, o));
    if (!ins) {
      const tx = await walletTx(txid, o);
      if (tx?.hex) ins = outpoints(await batchInputs(tx.hex, o));
    }
    versions.push(ins);
  }
  const all = [...new Set(versions.flatMap((v) => v ?? []))];
  return { inputs: all.map(outpoint), everyVersion: all.map((k) => versions.every((v) => v?.includes(k) === true)) };
}

/** The coins of every version of a batch (see versionsOf) and what the node says of each. */
async function inputsOf(b: Batch, o: PayoutOptions): Promise<{ inputs: Outpoint[]; everyVersion: boolean[]; states: InputState[] }> {
  const v = await versionsOf(b, o);
  return { ...v, states: await Promise.all(v.inputs.map((i) => inputState(i, o))) };
}

/** A coin that every version of the batch spends and that is dead: none of them can ever be mined (its index, or -1). */
const provenDead = (states: InputState[], everyVersion: boolean[]) => states.findIndex((x, i) => everyVersion[i] === true && isDead(x));

/**
 * One of the batch's inputs is dead (spent in a block, or made by a transaction a block conflicts with): the release
 * waits for that to be deep enough. `spentAt` is the tip when it was seen (for a conflicted one, the conflicting
 * block's height), so the wait counts from there.
 */
async function waitForSpend(batch: string, reason: string, input: { txid: string; vout: number }, state: InputState, commit: Commit, o: PayoutOptions, now: () => number): Promise<void> {
  const height = await o.node.call<number>("getblockcount", []);
  const spentAt = state.state === "gone" ? height - state.depth + 1 : height;
  const spentIn = await o.node.call<string>("getblockhash", [spentAt]);
  await commit([{ t: "cancelling", batch, reason, input: key(input), spentAt, spentIn, at: now() }]);
  o.log.warn({ batch, input: key(input) }, "releasing a stuck payout batch: one of its inputs is spent in a block; released once that is deep enough");
}

/** Wallet entries read per `listtransactions` call while looking for a payout paid elsewhere. */
const HISTORY_PAGE = 500;

/**
 * Every transaction the book made: each batch's versions (its latest and those its fee bumps replaced) and
 * cancellations, live or finished. Batches pruned from the book are asked of FinishedPayouts (`paidBy`).
 */
function bookTxids(s: PayoutBook): Set<string> {
  const txids = new Set<string>();
  for (const b of [...Object.values(s.liveBatches), ...s.finishedBatches().map(([, b]) => b)]) {
    txids.add(b.txid);
    for (const t of b.replaced) txids.add(t);
    // Its cancellations (also one a release moved to `earlier` to wait for a spend: a reorg that undoes that spend puts
    // the batch back to stuck, and that cancellation is still the engine's own, never a rival to alert about).
    for (const t of cancelTxids(b)) txids.add(t);
  }
  return txids;
}

/**
 * A transaction of the node's wallet, in a block, that spends one of the batch's coins and pays one of its payouts (its
 * address and amount) and is none of the transactions the book made: a version of the batch the book does not know.
 * Looked for among the wallet's entries, newest first, a page at a time, back to the block that made the oldest of the
 * coins the batch spends (nothing before it can have spent them). A payment of the same amount to the same address that
 * spends none of the batch's coins is another payout (the same user withdrawing the same again), not this one; so is
 * one that is another batch's (that user's later withdrawal, built with a coin of this batch that the node never took:
 * the batch was refused at build or broadcast), live, finished or pruned.
 */
async function paidElsewhere(b: Batch, inputs: ReadonlyArray<Outpoint>, get: () => PayoutBook, o: PayoutOptions): Promise<string | undefined> {
  let from = Infinity;
  for (const i of inputs) from = Math.min(from, (await walletTx(i.txid, o))?.blockheight ?? 0);
  const payouts = new Set(b.ids.map((id) => get().payout(id)!).map((p) => `${p.address} ${p.amount}`));
  // Read once the wallet has a payment that looks like one of the batch's (rarely: a release that finds none reads none).
  let ours: Set<string> | undefined;
  const known = (txid: string) => (ours ??= bookTxids(get())).has(txid) || o.finished.paidBy(txid);
  const coins = new Set(outpoints(inputs));
  // Payments already looked at (a transaction has an entry per output; pages can overlap as the wallet grows).
  const seen = new Set<string>();
  type Entry = { txid: string; category: string; address?: string; amount: number; confirmations: number; blockheight?: number };
  for (let skip = 0; ; skip += HISTORY_PAGE) {
    // Oldest first within a page; `skip` steps back from the newest.
    const page = await o.node.call<Entry[]>("listtransactions", ["*", HISTORY_PAGE, skip, false]);
    let older = false;
    for (const t of page) {
      if (t.blockheight !== undefined && t.blockheight < from) older = true;
      if (t.category === "send" && t.confirmations > 0 && payouts.has(`${t.address} ${-btcNumberToSats(t.amount)}`) && !seen.has(t.txid) && !known(t.txid)) {
        const spends = (await o.node.call<{ decoded: { vin: Array<{ txid: string; vout: number }> } }>("gettransaction", [t.txid, false, true])).decoded.vin;
        if (spends.some((x) => coins.has(key(x)))) return t.txid;
        seen.add(t.txid);
      }
    }
    if (page.length < HISTORY_PAGE || older) return undefined;
  }
}

/** Signs a cancellation, journals it (its bytes, before the broadcast: a restart sends the same ones) and sends it. */
async function cancelWith(batch: string, input: string, reason: string, psbt: string, fee: bigint, commit: Commit, o: PayoutOptions, now: () => number): Promise<ReleaseAnswer | Refusal> {
  const processed = await o.node.signing(() => o.node.call<{ psbt: string }>("walletprocesspsbt", [psbt, true, "ALL", true]));
  const final = await o.node.call<{ hex?: string; complete: boolean }>("finalizepsbt", [processed.psbt]);
  if (!final.complete || !final.hex) throw new Error("the node could not sign the cancelling transaction (is the wallet locked?)");
  const verdict = (await o.node.call<Array<{ txid: string; allowed: boolean; "reject-reason"?: string }>>("testmempoolaccept", [[final.hex]]))[0]!;
  // Refused now: nothing journalled, nothing changed; the operator may try a higher fee rate.
  if (!verdict.allowed) return refuse("not_allowed", `The node refuses the cancelling transaction (${verdict["reject-reason"] ?? "no reason given"}); try a higher fee rate.`);
  await commit([{ t: "cancelling", batch, reason, input, hex: final.hex, txid: verdict.txid, fee: fee.toString(), at: now() }]);
  o.log.warn({ batch, txid: verdict.txid, fee: fee.toString() }, "releasing a stuck payout batch: its inputs are spent back to the node's wallet (the service pays this fee); released once that is deep enough");
  o.step?.("cancel_recorded");
  await sendCancel(batch, final.hex, o);
  return { batch, status: "cancelling", txid: verdict.txid, fee };
}

async function sendCancel(batch: string, hex: string, o: PayoutOptions): Promise<void> {
  try {
    await o.node.call("sendrawtransaction", [hex]);
  } catch (e) {
    const err = e as RpcError;
    if (err.code === -27) return;
    if (err.code === -25 || err.code === -26) {
      o.hooks.alert("a stuck batch's cancellation was refused; release it again with a higher fee rate", { batch, why: err.message ?? "" });
      return;
    }
    throw e;
  }
}

/** At every block: a releasing batch whose cancellation (or the earlier spend of its input) is deep enough is released. */
async function followCancel(batch: string, b: Batch, get: () => PayoutBook, commit: Commit, o: PayoutOptions, now: () => number): Promise<void> {
  const c = b.cancel!;
  if (c.txid !== undefined) {
    let latest: WalletTx | undefined;
    for (const txid of [c.txid, ...c.earlier]) {
      const tx = await walletTx(txid, o);
      if (txid === c.txid) latest = tx;
      if (tx && tx.confirmations >= o.confirmations) {
        await commit([{ t: "released", batch, txid, at: now() }]);
        o.log.warn({ batch, txid, payouts: b.ids.length }, "a stuck payout batch is released: its cancellation is confirmed; its wallets get the amounts back");
        return;
      }
      if (tx && tx.confirmations > 0) return;
    }
    if (!latest || latest.confirmations < 0) {
      // Another transaction in a block spent one of the inputs first (or the node never took the cancellation and
      // something else spent them since): if every version of the batch spends that coin, none can be mined while
      // that holds; wait for it instead.
      const { inputs, everyVersion, states } = await inputsOf(b, o);
      const spent = provenDead(states, everyVersion);
      if (spent >= 0) {
        await waitForSpend(batch, c.reason, inputs[spent]!, states[spent]!, commit, o, now);
        return;
      }
      if (latest) {
        // The cancellation can never be mined, and a version of the batch without the coin that beat it still can:
        // a new cancellation must spend the coins still live. Sending this one again is useless.
        if (b.status !== "stuck") {
          const why = `its cancellation ${c.txid} conflicts with a transaction in a block, which spends a coin not every version of it spends: a version may still be mined; release it again (a new cancellation spends the coins still live)`;
          await commit([{ t: "stuck", batch, reason: why, at: now() }]);
          o.hooks.alert("payout batch stuck", { batch, reason: why });
        }
        return;
      }
    }
    await sendCancel(batch, c.hex!, o);
    return;
  }
  const { txid, vout } = outpoint(c.input);
  const versions = await versionsOf(b, o);
  const k = versions.inputs.findIndex((i) => key(i) === c.input);
  if (k < 0 || !versions.everyVersion[k]) {
    // Waiting for a spend of a coin not every version spends (a fee bump added it; a wait begun before versions were
    // told apart): that spend does not stop the others being mined. Back to stuck: released again, a cancellation
    // spends the coins still live.
    const why = `the coin its release waited for (${c.input}) is not spent by every version of it: a version may still be mined; release it again (a cancellation spends the coins still live)`;
    await commit([{ t: "stuck", batch, reason: why, at: now() }]);
    o.hooks.alert("payout batch stuck", { batch, reason: why });
    return;
  }
  const state = await inputState({ txid, vout }, o);
  if (!isDead(state)) {
    // The block that spent it (or made it) left the chain: back to stuck, for the operator to release again.
    await commit([{ t: "stuck", batch, reason: `the spend of its input ${c.input} left the chain; release it again`, at: now() }]);
    o.hooks.alert("payout batch stuck", { batch, reason: "the spend of its input left the chain" });
    return;
  }
  if (c.spentIn !== undefined && (await o.node.call<{ confirmations: number }>("getblockheader", [c.spentIn])).confirmations < 1) {
    // The block the count started from left the chain (a reorg): the spend may be in a later block now, and which one
    // takes an index to find. Counted again from the tip: a later start only waits longer.
    o.log.warn({ batch, input: c.input }, "releasing a stuck payout batch: a reorg went below the block its wait counts from; counting again from the tip");
    await waitForSpend(batch, c.reason, { txid, vout }, state, commit, o, now);
    return;
  }
  const height = await o.node.call<number>("getblockcount", []);
  if (height - c.spentAt! + 1 >= o.confirmations) {
    const paid = await paidElsewhere(b, versions.inputs, get, o);
    if (paid) {
      // A version of the batch the book does not know is in a block: its payouts are paid; never give them back too.
      await commit([{ t: "stuck", batch, reason: `its payouts look paid by ${paid}, a transaction the book does not know; not released: an operator must check it`, at: now() }]);
      o.hooks.alert("a payout batch being released looks paid by a transaction the book does not know; not released", { batch, txid: paid });
      return;
    }
    await commit([{ t: "released", batch, at: now() }]);
    o.log.warn({ batch, payouts: b.ids.length }, "a stuck payout batch is released: its input was spent elsewhere, deep enough; its wallets get the amounts back");
  }
}

async function bump(batch: string, feeRate: bigint, get: () => PayoutBook, commit: (e: PayoutEvent[]) => Promise<void>, o: PayoutOptions, now: () => number): Promise<{ txid: string; fee: bigint } | Refusal> {
  const b = get().batch(batch);
  if (!b) return refuse("not_found", `No payout batch ${batch}.`);
  if (b.status === "confirmed") return refuse("not_allowed", `Batch ${batch} is already confirmed; there is nothing to bump.`);
  if (b.status === "cancelling" || b.status === "released") return refuse("not_allowed", `Batch ${batch} is ${b.status === "released" ? "released" : "being released"}; it is not bumped.`);
  // psbtbumpfee gives an unsigned replacement, so the replacement is journalled before it is broadcast.
  let bumped: { psbt: string; fee: number };
  try {
    bumped = await o.node.call<{ psbt: string; fee: number }>("psbtbumpfee", [b.txid, { fee_rate: Number(feeRate) }]);
  } catch (e) {
    // A replacement must pay the fee of the one it replaces plus the node's incremental fee on its size (BIP125), and
    // the mempool's minimum: the node's own words gave the operator a total in BTC, not the rate to ask for.
    if (!/Insufficient total fee|lower than the minimum fee rate/i.test((e as RpcError).message ?? "")) throw e;
    const floor = feeFloorOf(await mempoolInfo(o));
    return refuse("bad_input", `The node refuses a fee bump of batch ${batch} at ${feeRate} sat/vB: too low to replace it (${(e as RpcError).message}). A replacement pays more than the transaction it replaces, by the node's incremental fee on its size, and at least the node's minimum fee rate, ${satPerVb(floor.satPerKvb)} sat/vB now (getmempoolinfo: ${floor.full ? "mempoolminfee" : "minrelaytxfee"}). Nothing was changed; bump at a higher rate.`);
  }
  // psbtbumpfee adds coins of the node's wallet when the batch's change cannot pay the higher fee: any confirmed one
  // (it has no minconf). One less deep than a deposit must be to be credited is a deposit nobody has yet, and a reorg
  // that double-spends it would take the replacement, and every payout in it, away; the flush never spends such a
  // coin (minconf), nor may a bump. Refused before anything is signed or journalled: nothing changes. (Locking the
  // young coins around psbtbumpfee would avoid them, but a lock that outlives a crash strands them: see flush.)
  const young = await youngCoinAdded(b, bumped.psbt, o);
  if (young) {
    return refuse("not_allowed", `The fee bump of batch ${batch} would add coin ${young.coin}, ${Math.max(young.depth, 0)} block(s) deep: payouts spend only coins ${o.confirmations} deep, as deposits must be to be credited (a reorg could take a younger one away, and the batch with it). Nothing was changed; bump again in ${o.confirmations - Math.max(young.depth, 0)} block(s), or at a fee rate the batch's own change can pay.`);
  }
  const processed = await o.node.signing(() => o.node.call<{ psbt: string }>("walletprocesspsbt", [bumped.psbt, true, "ALL", true]));
  const final = await o.node.call<{ hex?: string; complete: boolean }>("finalizepsbt", [processed.psbt]);
  if (!final.complete || !final.hex) throw new Error("the node could not sign the replacement");
  const decoded = await o.node.call<{ txid: string; vin: Outpoint[] }>("decoderawtransaction", [final.hex]);
  const fee = btcNumberToSats(bumped.fee);
  const shares = feeShares(fee, b.ids.map((id) => get().payout(id)!.quotedFee));
  // With its inputs: a bump may add coins, and the version it replaces stays valid (and may be mined) without them.
  await commit([{ t: "replaced", batch, hex: final.hex, txid: decoded.txid, fee: fee.toString(), shares: shares.map(String), at: now(), inputs: outpoints(decoded.vin) }]);
  o.step?.("bump_recorded");
  if (!(await broadcast(batch, get, commit, o, now))) {
    const after = get().batch(batch);
    if (after && after.txid !== decoded.txid) {
      return refuse("not_allowed", `The node has another fee bump of batch ${batch} (${after.txid}), made outside the engine, which pays its payouts exactly: the batch follows it now; check GET /payouts before bumping again.`);
    }
    if (after?.status !== "stuck") return refuse("not_allowed", `Batch ${batch} is already in a block (the transaction the bump replaced was mined first); it is confirmed at the next block.`);
    return refuse("not_allowed", `The node refused the replacement (${after.reason ?? "no reason given"}); batch ${batch} is marked stuck.`);
  }
  return { txid: decoded.txid, fee };
}

/** A coin a fee bump's replacement (`psbt`) adds to those of the version it replaces that is less deep than deposits must be, if any. */
async function youngCoinAdded(b: Batch, psbt: string, o: PayoutOptions): Promise<{ coin: string; depth: number } | undefined> {
  const had = new Set(b.inputs?.[b.txid] ?? outpoints(await batchInputs(b.hex, o)));
  const { tx } = await o.node.call<{ tx: { vin: Outpoint[] } }>("decodepsbt", [psbt]);
  for (const i of tx.vin) {
    if (had.has(key(i))) continue;
    const depth = (await walletTx(i.txid, o))?.confirmations ?? 0;
    if (depth < o.confirmations) return { coin: key(i), depth };
  }
  return undefined;
}
