// The cheque book: one persistent actor holding every cheque's escrow. A cheque is funded by an ordinary
// transfer from its creator's wallet (to the pseudo-user "cheque:<hash>"), and paid out by an ordinary
// transfer with an id derived from the cheque, so each leg takes effect once. Only an HMAC of the claim
// code is stored: a leaked journal does not leak claimable codes.
import type { PersistentBehaviour, Reply } from "./runtime.ts";
import { refuse, type Refusal } from "../domain/refusals.ts";
import type { EncryptedStore, StoreOp } from "../store/db.ts";
import { idMap } from "./idmap.ts";
import { CopyOnWrite, emptyLevel, FAN, levelOf, lookup, slotOf, type Level } from "./shards.ts";
import { Shelf } from "../store/shelf.ts";
import type { ChequePayoutReason } from "./wallet.messages.ts";

export interface ChequeRecord {
  creator: string;
  amount: bigint;
  expiresAt: number;
  status: "awaiting_funds" | "open" | "claimed" | "revoked";
  /** Who receives the payout (claimant or, after a revoke, the creator) and whether they acknowledged it. */
  payee?: string;
  paid?: boolean;
  /**
   * The creator's command id, from which the engine derives the claim code again for its creator's list (an HMAC
   * under a key sealed in the store: the journal alone still gives no code). Absent for cheques made before.
   */
  id?: string;
  /**
   * Revoked because it expired unclaimed (not by its creator's command): its payout back says so, and its creator is
   * told. Absent for a revoke, and for cheques returned at their expiry before this was recorded.
   */
  expired?: boolean;
}

/**
 * A snapshot's shape, and the book as it was kept before it was sharded: every cheque by hash, in the order they were
 * made. Snapshots are still written this way (ChequeBook.toJSON), so a snapshot of either version loads in the other.
 */
export interface FlatCheques {
  readonly cheques: Readonly<Record<string, ChequeRecord>>;
}

/** The book's state: a ChequeBook (its `cheques` is a flat view, built on demand). */
export type ChequeState = ChequeBook;

export type ChequeEvent =
  | { t: "created"; hash: string; creator: string; amount: string; expiresAt: number; id?: string }
  | { t: "funded"; hash: string }
  | { t: "claimed"; hash: string; by: string }
  /** `expired`: returned at its expiry (the "expire" command), not revoked by its creator; absent in older journals. */
  | { t: "revoked"; hash: string; expired?: true }
  | { t: "paid"; hash: string }
  /** A cheque whose funding its creator's wallet refused outright (nothing was sent): it leaves the book. */
  | { t: "dropped"; hash: string }
  /**
   * Finished cheques (paid out, to the claimant or back to the creator) beyond the newest `retainFinished` leave the
   * book; the record of each that stays in the store answers whatever still names it.
   */
  | { t: "pruned"; hashes: string[] };

export type ChequeCommand =
  /** Answers the cheque as it stands: as it was made, when the same command comes again later. */
  | { type: "create"; hash: string; creator: string; id: string; amount: bigint; expiresAt: number; now: number; reply: Reply<{ amount: bigint; expiresAt: number } | Refusal> }
  /** A creator's cheques that can still be claimed or funded, newest first (at most `limit`), and how many there are. */
  | { type: "mine"; creator: string; now: number; limit: number; reply: Reply<{ cheques: MyCheque[]; total: number }> }
  | { type: "fund"; hash: string; from: string; amount: bigint; reply: Reply<{ ok: true } | Refusal> }
  /**
   * The creator of a cheque that can be claimed now (open, not expired), undefined for any other: a claim first checks
   * that its creator's wallet is not frozen (the book holds no wallet state).
   */
  | { type: "creator"; hash: string; now: number; reply: Reply<{ creator: string } | undefined> }
  | { type: "claim"; hash: string; by: string; now: number; reply: Reply<{ amount: bigint } | Refusal> }
  | { type: "revoke"; hash: string; by: string; reply: Reply<{ amount: bigint } | Refusal> }
  | { type: "paid"; hash: string; reply: Reply<{ ok: true } | Refusal> }
  /** The creator's wallet refused to fund it, for good (insufficient funds, frozen…): forget it. */
  | { type: "drop"; hash: string; creator: string; reply: Reply<{ ok: true }> }
  /**
   * Returns every funded cheque past its expiry to its creator (at each block, and at start), and names the cheques
   * past their expiry still waiting for their funds (`stale`): the service drops those whose funding is not on its way.
   */
  | { type: "expire"; now: number; reply: Reply<{ expired: number; stale: Array<{ hash: string; creator: string }> }> }
  /** Re-sends every payout not yet acknowledged (after a restart, or a store outage). */
  | { type: "resume"; reply: Reply<{ resent: number }> }
  /**
   * Resets the book from its journal (BookReplay): after a write the store could not confirm turned out to be on
   * disk, the book as it stands may lack it (a claim, a revoke), until it writes again.
   */
  | { type: "replay"; reply: Reply<{ ok: true }> }
  | { type: "state"; reply: Reply<ChequeState> };

/** One of a creator's cheques as the book has it (no code: the service derives it from `id`). */
export interface MyCheque {
  amount: bigint;
  expiresAt: number;
  funded: boolean;
  id: string | undefined;
}

export const CHEQUE_JOURNAL_KEY = "cheques";
/** Expired cheques returned in one turn at most. */
const EXPIRE_CHUNK = 500;
export const chequeUserKey = (hash: string) => `cheque:${hash}`;
/** The transfer id of a cheque's payout: derived, so a re-sent payout is credited once. */
export const chequePayoutId = (hash: string) => `chq:${hash}`;

export const emptyCheques = (): ChequeState => ChequeBook.empty();

/** Thrown by the book on a "replay" command: its owner answers it and resets the book from its journal. */
export class BookReplay extends Error {
  constructor() {
    super("the cheque book reads its journal again");
  }
}

/**
 * Pure: applies one event, to a ChequeBook (or to a flat book, converted first: a snapshot's data, an old caller's).
 * Its cost does not grow with the book: it copies one small shard of the cheques (and of the creators' index), two
 * arrays of FAN pointers each, and a list of paid cheques of its bucket; see ChequeBook.
 */
export function evolveCheques(s: ChequeState | FlatCheques, e: ChequeEvent): ChequeState {
  return ChequeBook.of(s).apply(e);
}

/** A cheque as the book keeps it: its record, and its number in the order cheques were made (never stored). */
interface Entry extends ChequeRecord {
  readonly n: number;
}

/** Keys (cheque hashes, creators) are spread over shards (shards.ts). Paid cheques are listed in FAN buckets (by the first level of their hash's shard), each oldest first. */
const NO_HASHES: readonly string[] = Object.freeze([]);

/** Every field, in one order (one hidden class for every entry: a spread adding a field gives each its own). */
function entry(c: ChequeRecord, n: number): Entry {
  return { creator: c.creator, amount: c.amount, expiresAt: c.expiresAt, status: c.status, payee: c.payee, paid: c.paid, id: c.id, expired: c.expired, n };
}

/** The record of an entry, as the book had it before entries had a number: for snapshots, views, the store. */
function recordOf(c: ChequeRecord): ChequeRecord {
  return { creator: c.creator, amount: c.amount, expiresAt: c.expiresAt, status: c.status, payee: c.payee, paid: c.paid, id: c.id, expired: c.expired };
}

/** What a cheque holds in escrow (escrowOf): open, or claimed or revoked and not yet paid out. */
function heldBy(c: ChequeRecord | undefined): bigint {
  return c && (c.status === "open" || ((c.status === "claimed" || c.status === "revoked") && !c.paid)) ? c.amount : 0n;
}

/** Awaiting its funds or open: in its creator's list and counted against the creator's limit (until it expires). */
const isLive = (c: ChequeRecord | undefined) => c !== undefined && (c.status === "awaiting_funds" || c.status === "open");

/** For tests and the bench: entries of shards (cheques, creators' index) copied by evolve so far, in all. */
export const bookWork = { copied: 0 };

interface Parts {
  cheques: Level<Entry>;
  live: Level<readonly string[]>;
  paid: ReadonlyArray<readonly string[]>;
  size: number;
  paidCount: number;
  held: bigint;
  next: number;
}

/**
 * The cheque book's state, immutable: applying an event gives a new book and never writes to a Map or array a
 * previous book (or a snapshot being encoded, or a handler) still holds — it copies only what it touches. Besides the
 * cheques (by hash) it keeps what used to take a scan of every cheque, all derived from the cheques and rebuilt by
 * `fromFlat` (a snapshot) or by replaying the events:
 * - each cheque's number in the order cheques were made (the order the flat book kept), so every answer that depended
 *   on that order (the creator's list, which cheques are pruned or expired first, a snapshot's order) is the same;
 * - per creator, the hashes of their cheques awaiting funds or open, oldest first (`create`'s per-creator limit, the
 *   creator's list);
 * - the paid cheques, oldest first in FAN buckets, and their count (pruning);
 * - the escrow's total (escrowOf).
 */
export class ChequeBook implements FlatCheques {
  readonly #p: Readonly<Parts>;
  /** The flat view, once asked for (a cache of derived data: the book itself never changes). */
  #flat: Record<string, ChequeRecord> | undefined;

  private constructor(p: Readonly<Parts>) {
    this.#p = p;
  }

  static empty(): ChequeBook {
    return new ChequeBook({ cheques: emptyLevel(), live: emptyLevel(), paid: Object.freeze(new Array<readonly string[]>(FAN).fill(NO_HASHES)), size: 0, paidCount: 0, held: 0n, next: 0 });
  }

  /** The book itself, or one built from a flat book (a snapshot's data, of this version or the one before). */
  static of(s: ChequeBook | FlatCheques): ChequeBook {
    return s instanceof ChequeBook ? s : ChequeBook.fromFlat(s.cheques);
  }

  /**
   * A book from a flat map of cheques in the order they were made (a snapshot; JSON may have dropped undefined fields):
   * built in one pass, every part new (no copy on write), each cheque numbered in the map's order.
   */
  static fromFlat(flat: Readonly<Record<string, ChequeRecord>> | undefined): ChequeBook {
    const cheques: Array<[string, Entry]> = [];
    const creators = new Map<string, string[]>();
    const paid = Array.from({ length: FAN }, (): string[] => []);
    let n = 0, paidCount = 0, held = 0n;
    for (const h in flat) {
      const r = flat[h]!;
      // A bigint already (the codec revives it); a number or text only from a caller that made the map by hand.
      const c = entry(typeof r.amount === "bigint" ? r : { ...r, amount: BigInt(r.amount) }, n++);
      cheques.push([h, c]);
      held += heldBy(c);
      if (isLive(c)) {
        const mine = creators.get(c.creator);
        if (mine) mine.push(h);
        else creators.set(c.creator, [h]);
      }
      if (c.paid === true) paid[slotOf(h) >>> 6]!.push(h), paidCount++;
    }
    return new ChequeBook({ cheques: levelOf(cheques), live: levelOf<readonly string[]>(creators), paid: paid.map((x) => (x.length > 0 ? x : NO_HASHES)), size: n, paidCount, held, next: n });
  }

  /** Cheques in the book. */
  get size(): number {
    return this.#p.size;
  }

  /** Paid cheques in the book (those pruning takes out beyond the newest `retainFinished`). */
  get paidCount(): number {
    return this.#p.paidCount;
  }

  /** Money the book holds for its cheques (escrowOf). */
  get held(): bigint {
    return this.#p.held;
  }

  /** A cheque in the book, by hash. */
  get(hash: string): ChequeRecord | undefined {
    return lookup(this.#p.cheques, hash);
  }

  /** The hashes of a creator's cheques awaiting funds or open (expired ones too, until they leave), oldest first. */
  liveOf(creator: string): readonly string[] {
    return lookup(this.#p.live, creator) ?? NO_HASHES;
  }

  /** Every cheque, with its hash and its number in the order cheques were made; in no particular order. */
  *entries(): Generator<[string, ChequeRecord & { readonly n: number }]> {
    for (const row of this.#p.cheques) for (const shard of row) yield* shard;
  }

  /** Every cheque with its hash, in the order they were made. */
  #ordered(): Array<[string, Entry]> {
    const all: Array<[string, Entry]> = [];
    for (const row of this.#p.cheques) for (const shard of row) for (const x of shard) all.push(x);
    return all.sort((a, b) => a[1].n - b[1].n);
  }

  /** The `k` paid cheques made first, oldest first. */
  oldestPaid(k: number): string[] {
    if (k <= 0) return [];
    const { paid } = this.#p;
    const nOf = (h: string) => lookup(this.#p.cheques, h)!.n;
    // The oldest of the buckets' oldest, k times (usually once: one cheque over the limit after a payout).
    const at = new Array<number>(FAN).fill(0);
    const out: string[] = [];
    while (out.length < k) {
      let best = -1, bestN = Infinity;
      for (let i = 0; i < FAN; i++) {
        const h = paid[i]![at[i]!];
        const n = h === undefined ? Infinity : nOf(h);
        if (n < bestN) (best = i), (bestN = n);
      }
      if (best < 0) break;
      out.push(paid[best]![at[best]!++]!);
    }
    return out;
  }

  /**
   * Every cheque by hash, in the order they were made: the book as it was kept before (snapshots, the readers of the
   * "state" answer, tests). Built on first use (every cheque, sorted): never on an event's path.
   */
  get cheques(): Record<string, ChequeRecord> {
    if (this.#flat) return this.#flat;
    const flat = idMap<ChequeRecord>();
    for (const [h, c] of this.#ordered()) flat[h] = recordOf(c);
    return (this.#flat = flat);
  }

  /** A snapshot: the flat book, as the version before wrote it (so either version reads the other's). */
  toJSON(): { cheques: Record<string, ChequeRecord> } {
    return { cheques: this.cheques };
  }

  /** Pure: the book after one event. */
  apply(e: ChequeEvent): ChequeBook {
    const d = new Draft(this.#p);
    switch (e.t) {
      case "created": {
        const old = d.get(e.hash);
        d.put(e.hash, entry({ creator: e.creator, amount: BigInt(e.amount), expiresAt: e.expiresAt, status: "awaiting_funds", payee: undefined, paid: undefined, id: e.id, expired: undefined }, old ? old.n : d.p.next++));
        break;
      }
      case "funded":
      case "claimed":
      case "revoked":
      case "paid": {
        const c = d.get(e.hash);
        // Never in a journal (the book journals these only for a cheque it has): nothing to change.
        if (!c) return this;
        const changed =
          e.t === "funded" ? { ...c, status: "open" as const }
          : e.t === "claimed" ? { ...c, status: "claimed" as const, payee: e.by, paid: false }
          : e.t === "revoked" ? { ...c, status: "revoked" as const, payee: c.creator, paid: false, expired: e.expired === true ? true : undefined }
          : { ...c, paid: true };
        d.put(e.hash, entry(changed, c.n));
        break;
      }
      case "dropped":
        d.remove(e.hash);
        break;
      case "pruned":
        for (const h of e.hashes) d.remove(h);
        break;
    }
    return new ChequeBook(d.p);
  }
}

/**
 * The next book's parts while one event (or a snapshot's cheques) is applied: each array, shard and list is copied on
 * its first write in this draft and written in place after that (a copy is the draft's own until `parts`).
 */
class Draft {
  /** The parts being written: the book's at first, each replaced by this draft's copy when it first writes it. */
  readonly p: Parts;
  /** What this draft copied (its own to write). */
  readonly #w = new CopyOnWrite(bookWork);

  constructor(p: Readonly<Parts>) {
    this.p = { ...p };
  }

  get(hash: string): Entry | undefined {
    return lookup(this.p.cheques, hash);
  }

  /** Sets a cheque (new, or changed), keeping the indexes, the counts and the escrow's total. */
  put(hash: string, c: Entry): void {
    const old = this.get(hash);
    this.p.cheques = this.#w.write(this.p.cheques, hash, (m) => m.set(hash, c));
    if (!old) this.p.size++;
    this.p.held += heldBy(c) - heldBy(old);
    if (isLive(old) && (!isLive(c) || old!.creator !== c.creator)) this.#unlive(old!.creator, hash);
    if (isLive(c) && !(isLive(old) && old!.creator === c.creator)) this.#enlive(c.creator, hash, c.n);
    if (old?.paid === true && c.paid !== true) this.#unpay(hash);
    if (c.paid === true && old?.paid !== true) this.#pay(hash, c.n);
  }

  /** Takes a cheque out of the book (dropped or pruned); one that is not there is no change. */
  remove(hash: string): void {
    const old = this.get(hash);
    if (!old) return;
    this.p.cheques = this.#w.write(this.p.cheques, hash, (m) => m.delete(hash));
    this.p.size--;
    this.p.held -= heldBy(old);
    if (isLive(old)) this.#unlive(old.creator, hash);
    if (old.paid === true) this.#unpay(hash);
  }

  #enlive(creator: string, hash: string, n: number): void {
    const hashes = lookup(this.p.live, creator) ?? NO_HASHES;
    // Oldest first: a new cheque goes last; one made again in place of an old one (never in practice) where it was.
    let at = hashes.length;
    while (at > 0 && (this.get(hashes[at - 1]!)?.n ?? -1) > n) at--;
    const next = [...hashes.slice(0, at), hash, ...hashes.slice(at)];
    this.p.live = this.#w.write(this.p.live, creator, (m) => m.set(creator, next));
  }

  #unlive(creator: string, hash: string): void {
    const hashes = (lookup(this.p.live, creator) ?? NO_HASHES).filter((h) => h !== hash);
    this.p.live = this.#w.write(this.p.live, creator, (m) => (hashes.length > 0 ? m.set(creator, hashes) : m.delete(creator)));
  }

  #paidList(hash: string): string[] {
    const b = slotOf(hash) >>> 6;
    const paid = (this.p.paid = this.#w.mine(this.p.paid, (x) => x.slice())) as Array<readonly string[]>;
    return (paid[b] = this.#w.mine(paid[b]!, (x) => x.slice())) as string[];
  }

  #pay(hash: string, n: number): void {
    const list = this.#paidList(hash);
    // Oldest first, by binary search: cheques are paid in any order.
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.get(list[mid]!)!.n < n) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, hash);
    this.p.paidCount++;
  }

  #unpay(hash: string): void {
    const list = this.#paidList(hash);
    const at = list.indexOf(hash);
    if (at >= 0) {
      list.splice(at, 1);
      this.p.paidCount--;
    }
  }
}

/**
 * Cheques that left the book (see the "pruned" event): one store record each, keyed by the cheque's hash (itself an
 * HMAC of the code), written in the same batch as the event. The book answers from it as from the cheque itself: a
 * claim or revoke of an old code, a re-sent funding transfer, a repeated /cheque command.
 */
export class FinishedCheques extends Shelf<ChequeRecord> {
  constructor(store: EncryptedStore) {
    super(store, "cheque-done");
  }
}

export interface ChequeBookOptions {
  finished: FinishedCheques;
  /** Finished cheques the book keeps (the newest); the rest leave it, remembered in the store. */
  retainFinished: number;
  /**
   * Cheques one creator may have that are not yet claimed, revoked or expired (default 50): every cheque lives in
   * the book (an event copies only its shard, but snapshots and the scan at each block grow with it), so one account
   * making cheques of a satoshi could slow everyone's.
   */
  maxOpenPerCreator?: number;
  /**
   * Whether a cheque is held for review after a restore that may not reach the crash (the engine keeps the list: see
   * Engine, HELD_CHEQUES): it may have been claimed, paid out and withdrawn in the history the restore lost, so it is
   * neither claimed, revoked nor returned at its expiry until an operator releases it. Asked in the book's turn, so a
   * release takes effect between two commands.
   */
  held?: (hash: string) => boolean;
}

/** What a claim or revoke of a held cheque is told (see `held`). */
export const HELD_FOR_REVIEW = "This cheque is held for review after a restore; ask support.";

/** At most this many cheques leave the book in one event. */
const PRUNE_CHUNK = 1000;

/** Money held for open cheques (and for payouts not yet acknowledged): part of the engine's liabilities. */
export function escrowOf(s: ChequeState | FlatCheques): bigint {
  if (s instanceof ChequeBook) return s.held;
  let sum = 0n;
  for (const c of Object.values(s.cheques)) sum += heldBy(c);
  return sum;
}

export interface ChequeHooks {
  /**
   * Deliver a cheque's payout as a transfer from the cheque to the payee (the wallet dedupes by id). `why`: claimed,
   * revoked or expired (what the payee is told; see noticeOf in wallet.ts).
   */
  pay(hash: string, payee: string, amount: bigint, why: ChequePayoutReason): void;
  /**
   * A claim was just committed (live: never on replay, nor when its payout is sent again): its creator is told, once.
   * Optional: a book without it tells nobody.
   */
  claimed?(creator: string, amount: bigint): void;
}

export function chequeBehaviour(hooks: ChequeHooks, o: ChequeBookOptions): PersistentBehaviour<ChequeState, ChequeCommand, ChequeEvent> {
  return {
    key: CHEQUE_JOURNAL_KEY,
    initial: emptyCheques,
    // A snapshot is the flat book (this version's or the one before's, the same shape): the book and its indexes again.
    restore: (d) => ChequeBook.of(d as FlatCheques),
    evolve: evolveCheques,
    // A snapshot writes the whole book (~150 ms on the engine's thread at 50,000 cheques, bench/cheques.bench.ts) while
    // an event costs ~10 µs to replay now: every 1,000 records (200 when each event copied the book) keeps a restart's
    // replay to tens of milliseconds and takes a fifth of the snapshots' cost.
    snapshotEvery: 1000,
    async handle(s, cmd, persist) {
      const commit = async (e: ChequeEvent) => {
        await persist([e]);
        return evolveCheques(s, e);
      };
      // A cheque that left the book is answered from its record: it is finished (paid), so every command below
      // treats it as a claimed or revoked cheque, as before it left.
      const c = "hash" in cmd ? (s.get(cmd.hash) ?? o.finished.get(cmd.hash)) : undefined;
      switch (cmd.type) {
        case "state":
          cmd.reply(s);
          return s;
        case "mine": {
          // The creator's index keeps their cheques in the order they were made: newest first is that order reversed.
          const mine = openOf(s, cmd.creator, cmd.now).map((x): MyCheque => ({ amount: x.amount, expiresAt: x.expiresAt, funded: x.status === "open", id: x.id }));
          cmd.reply({ cheques: mine.reverse().slice(0, cmd.limit), total: mine.length });
          return s;
        }
        case "create": {
          if (c) {
            cmd.reply(c.creator === cmd.creator ? { amount: c.amount, expiresAt: c.expiresAt } : refuse("duplicate", "That cheque code is taken; try again."));
            return s;
          }
          const most = o.maxOpenPerCreator ?? 50;
          const open = openOf(s, cmd.creator, cmd.now).length;
          if (open >= most) {
            cmd.reply(refuse("over_limit", `You have ${open} cheques nobody has claimed yet, the most one account may have. Revoke one (/cheque list shows them) or wait until one is claimed or expires.`));
            return s;
          }
          const next = await commit({ t: "created", hash: cmd.hash, creator: cmd.creator, amount: cmd.amount.toString(), expiresAt: cmd.expiresAt, id: cmd.id });
          cmd.reply({ amount: cmd.amount, expiresAt: cmd.expiresAt });
          return next;
        }
        case "fund": {
          if (!c || c.amount !== cmd.amount || c.creator !== cmd.from) {
            // Money arrived for a cheque we do not know as such (dropped, or never made): refused for good, and the courier
            // gives it back to its sender (transfers.ts, REFUSED_FOR_GOOD). So this answer is only for a funding the book
            // can never take: one it took is answered "ok" below (a funded cheque never waits for funds again, and one
            // that left the book is found in its record), whatever its status now.
            cmd.reply(refuse("not_found", "No such cheque awaiting these funds."));
            return s;
          }
          if (c.status !== "awaiting_funds") {
            cmd.reply({ ok: true });
            return s;
          }
          // The funding leaves the transfers in flight as it enters the escrow, in the same record.
          const funded: ChequeEvent = { t: "funded", hash: cmd.hash };
          await persist([funded], { s: { transit: -cmd.amount } });
          cmd.reply({ ok: true });
          return evolveCheques(s, funded);
        }
        case "creator":
          cmd.reply(c && c.status === "open" && cmd.now <= c.expiresAt ? { creator: c.creator } : undefined);
          return s;
        case "claim": {
          if (c && o.held?.(cmd.hash)) return answer(s, cmd.reply, refuse("not_allowed", HELD_FOR_REVIEW));
          if (!c || c.status === "awaiting_funds") return answer(s, cmd.reply, refuse("not_found", "This cheque does not exist or is not funded."));
          // The claimant again (the answer to the first claim was lost: a crash, a timeout): the same answer, and the
          // payout again while it is not acknowledged (a claim saved during a disk fault, its payout never sent).
          if (c.status === "claimed") {
            if (c.payee !== cmd.by) return answer(s, cmd.reply, refuse("already_claimed", "This cheque has already been claimed."));
            cmd.reply({ amount: c.amount });
            payAgain(hooks, cmd.hash, c);
            return s;
          }
          // Past its expiry a cheque goes back to its creator (the "expire" command): expired, whether that happened yet.
          if (cmd.now > c.expiresAt) return answer(s, cmd.reply, refuse("expired", "This cheque has expired; its amount went back to its creator."));
          if (c.status === "revoked") return answer(s, cmd.reply, refuse("revoked", "This cheque was revoked by its creator."));
          if (c.creator === cmd.by) return answer(s, cmd.reply, refuse("not_allowed", "You cannot claim your own cheque; use /cheque revoke to take it back."));
          const next = await commit({ t: "claimed", hash: cmd.hash, by: cmd.by });
          cmd.reply({ amount: c.amount });
          hooks.pay(cmd.hash, cmd.by, c.amount, "claim");
          hooks.claimed?.(c.creator, c.amount);
          return next;
        }
        case "revoke": {
          if (!c || c.creator !== cmd.by) return answer(s, cmd.reply, refuse("not_found", "You have no such cheque."));
          if (o.held?.(cmd.hash)) return answer(s, cmd.reply, refuse("not_allowed", HELD_FOR_REVIEW));
          if (c.status === "claimed") return answer(s, cmd.reply, refuse("already_claimed", "This cheque has already been claimed."));
          if (c.status === "revoked") {
            // Its creator again: the payout back to them again while it is not acknowledged (see "claim").
            cmd.reply(refuse("revoked", "This cheque was already revoked."));
            payAgain(hooks, cmd.hash, c);
            return s;
          }
          // Its funding may be on its way (a wallet that answered late): revoked now, the funds would then make it
          // claimable again. Nothing to take back yet; once they arrive, a revoke returns them.
          if (c.status === "awaiting_funds") {
            return answer(s, cmd.reply, refuse("busy", "This cheque is still waiting for its funds; try /cheque revoke again in a moment. If the amount never left your balance, there is nothing to take back."));
          }
          const next = await commit({ t: "revoked", hash: cmd.hash });
          cmd.reply({ amount: c.amount });
          hooks.pay(cmd.hash, c.creator, c.amount, "revoke");
          return next;
        }
        case "drop": {
          // Only a cheque still waiting for its funds, and only its creator's: one funded since is kept.
          if (!c || c.status !== "awaiting_funds" || c.creator !== cmd.creator) return answer(s, cmd.reply, { ok: true as const });
          const next = await commit({ t: "dropped", hash: cmd.hash });
          cmd.reply({ ok: true });
          return next;
        }
        case "paid": {
          if (!c || c.paid !== false) return answer(s, cmd.reply, { ok: true as const });
          const next = await commit({ t: "paid", hash: cmd.hash });
          cmd.reply({ ok: true });
          return prune(next, persist, o);
        }
        case "expire": {
          // At most EXPIRE_CHUNK a turn (one journal record), the ones made first: the rest at the next block.
          const dueAll: Array<[string, number]> = [];
          const staleAll: Array<[string, number, string]> = [];
          for (const [hash, x] of s.entries()) {
            // A held one stays in escrow until released (see `held`); the first block after that returns it.
            if (x.status === "open" && cmd.now > x.expiresAt && o.held?.(hash) !== true) dueAll.push([hash, x.n]);
            // Never funded by its expiry: its funding was refused late, or never sent (a /cheque that timed out).
            if (x.status === "awaiting_funds" && cmd.now > x.expiresAt) staleAll.push([hash, x.n, x.creator]);
          }
          const due = dueAll.sort((a, b) => a[1] - b[1]).slice(0, EXPIRE_CHUNK).map(([hash]) => hash);
          const stale = staleAll.sort((a, b) => a[1] - b[1]).slice(0, EXPIRE_CHUNK).map(([hash, , creator]) => ({ hash, creator }));
          if (due.length === 0) return answer(s, cmd.reply, { expired: 0, stale });
          const events: ChequeEvent[] = due.map((hash) => ({ t: "revoked", hash, expired: true }));
          await persist(events);
          const next = events.reduce(evolveCheques, s);
          cmd.reply({ expired: due.length, stale });
          for (const hash of due) hooks.pay(hash, next.get(hash)!.creator, next.get(hash)!.amount, "expiry");
          return next;
        }
        case "replay":
          throw new BookReplay();
        case "resume": {
          // In the order the cheques were made, as before.
          const owed: Array<[string, number, ChequeRecord]> = [];
          for (const [hash, x] of s.entries()) if (x.paid === false && x.payee) owed.push([hash, x.n, x]);
          owed.sort((a, b) => a[1] - b[1]);
          for (const [hash, , x] of owed) hooks.pay(hash, x.payee!, x.amount, payoutReason(x));
          const resent = owed.length;
          cmd.reply({ resent });
          return s;
        }
      }
    },
  };
}

/**
 * Finished cheques beyond the newest `retainFinished` (in the order they were created) leave the book. The book counts
 * and orders its paid cheques itself: no scan of the book.
 */
async function prune(s: ChequeState, persist: (events: ChequeEvent[], extras?: { r: StoreOp[] }) => Promise<void>, o: ChequeBookOptions): Promise<ChequeState> {
  const excess = s.oldestPaid(s.paidCount - o.retainFinished);
  for (let i = 0; i < excess.length; i += PRUNE_CHUNK) {
    const hashes = excess.slice(i, i + PRUNE_CHUNK);
    const e: ChequeEvent = { t: "pruned", hashes };
    // The record as the book had it (no number of order: that is the book's own).
    await persist([e], { r: hashes.map((h) => o.finished.op(h, recordOf(s.get(h)!))) });
    s = evolveCheques(s, e);
  }
  return s;
}

/**
 * A creator's cheques open, or awaiting their funding transfer, until they expire (a funded one then goes back to its
 * creator), in the order they were made: their list, and what counts against their limit.
 */
function openOf(s: ChequeBook, creator: string, now: number): ChequeRecord[] {
  return s.liveOf(creator).map((h) => s.get(h)!).filter((x) => now <= x.expiresAt);
}

/** A claimed or revoked cheque's payout, sent again if not acknowledged yet (the payee's wallet credits its id once). */
function payAgain(hooks: ChequeHooks, hash: string, c: ChequeRecord): void {
  if (c.paid === false && c.payee !== undefined) hooks.pay(hash, c.payee, c.amount, payoutReason(c));
}

/** Why a claimed or revoked cheque pays out, from its record (a payout sent again says what the first said). */
function payoutReason(c: ChequeRecord): ChequePayoutReason {
  return c.status === "claimed" ? "claim" : c.expired === true ? "expiry" : "revoke";
}

function answer<R>(s: ChequeState, reply: Reply<R>, r: R): ChequeState {
  reply(r);
  return s;
}
