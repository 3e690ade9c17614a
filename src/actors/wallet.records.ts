// What a wallet writes with its journal, in the same atomic batch as the events: records beside it (the journal
// applies a record's `r`) — its outbox flag (the start-up outbox scan), the index of transfer ids it has sent or
// received, and its deposits and withdrawals once finished (they leave the state then); what its balance parts add
// to the store's running sums (`s`: the solvency watchdog); and the history entries the command created or rewrote,
// kept in the journal record itself (`h`), where a history page reads them. None of this is in the actor's state,
// so a wallet with a long past activates, snapshots and evolves as fast as a new one, and a transfer id, an outpoint
// or a withdrawal id is recognised however old it is. Each record costs ~20 µs of CPU all told
// (encoding, sealing, the disk, the collector), so a command writes no record that its journal record can carry, and
// the transfer index, which only needs to say "this id was used", writes marks: a key and no value, nothing sealed.
import type { Logger } from "../log.ts";
import { META, type EncryptedStore, type StoreOp, type Sums } from "../store/db.ts";
import { Journal } from "../store/journal.ts";
import { StoreError } from "../store/errors.ts";
import { adjustmentOf, changedBy, emptyWallet, evolve, historyEntryOf, isFinished, own, rebookedEntryOf, refOf, restoreWallet, type WalletIndex } from "./wallet.ts";
import { walletJournalKey } from "./wallet.actor.ts";
import { idMap } from "./idmap.ts";
import { chequeUserKey } from "./cheques.ts";
import { Shelf } from "../store/shelf.ts";
import type { Adjustment, Deposit, HistoryEntry, WalletEvent, WalletState, Withdrawal } from "./wallet.messages.ts";
import type { HistoryPage } from "../relay.types.ts";

/** Format 4's balance record of a wallet, `balances/<userKey>` (format 5 deletes them: the sums replace them). */
interface WalletView {
  a: bigint;
  p: bigint;
  r: bigint;
  o: boolean;
}

/**
 * Formats 2 to 5 kept history entries in records of their own, `history/<userKey>\u0001<entry number>`, kept up to
 * date and trimmed to the newest `limit`. Format 6 leaves them in place for the wallets that have them: a page
 * reads the journal back to the first record written before format 6 and the older entries from here.
 */
const HISTORY = "history";
const TRANSFERS = "xfer";
/** Wallets with unfinished transfers or withdrawals, which the engine resumes at start: marks keyed by the user key. */
const OUTBOX = "outbox";
/** Finished deposits and withdrawals (format 7), keyed by a MAC of the wallet and the outpoint or id. */
const DEPOSITS = "deposit-done";
const WITHDRAWALS = "withdrawal-done";
/** Operators' adjustments (`adjust`), keyed by a MAC of the wallet and the adjustment's id: a repeat is answered from them. */
const ADJUSTMENTS = "adjustment";
const SEP = "\u0001";
/** A transfer to a cheque is addressed to its pseudo-user. */
const CHEQUE_PREFIX = chequeUserKey("");
const seqKey = (userKey: string, n: number) => userKey + SEP + n.toString().padStart(12, "0");

/** The history entries one command created or rewrote, by entry number (1 = the wallet's first). */
export type HistoryChanges = ReadonlyArray<readonly [number, HistoryEntry]>;
/** Most commands change no entry: one shared empty list (it is only ever encoded). */
const NO_CHANGES: HistoryChanges = Object.freeze([]);

/**
 * What a wallet's journal record holds: its events, and the history entries they created or rewrote — present in
 * every record since format 6 (empty when none), which is how a reader tells the records from before it.
 */
interface WalletRecordData {
  e: WalletEvent[];
  h?: HistoryChanges;
}

/**
 * The store's running sums over every wallet (db.ts, `Sums`): what the solvency watchdog reads instead of summing
 * the balance views. `wallets` counts the opened ones. `transit` is what users have sent each other that has left
 * the sender and not yet reached the receiver (a wallet, or a cheque's escrow): a debit adds its amount, the one
 * credit that takes it (the courier's, or the cheque book's funding) takes it out — or its return to the sender, when
 * the receiver refused it for good (`transfer_returned`). Between the two the money is in no balance, and still owed
 * (format 9; see `countTransit` for a store written before).
 */
export interface WalletSums {
  available: bigint;
  pending: bigint;
  reserved: bigint;
  wallets: bigint;
  transit: bigint;
}

/** What one command adds to the wallets' sums (undefined: nothing); `transit`: what it adds to the transfers in flight. */
export function sumsDelta(before: WalletState, after: WalletState, transit = 0n): Sums | undefined {
  const opened = !before.opened && after.opened ? 1n : 0n;
  if (opened === 0n && transit === 0n && before.available === after.available && before.pending === after.pending && before.reserved === after.reserved) return undefined;
  return { available: after.available - before.available, pending: after.pending - before.pending, reserved: after.reserved - before.reserved, wallets: opened, transit };
}

/** The wallets' sums as the store holds them (parts never written are 0). */
export function walletSums(s: Sums): WalletSums {
  return { available: s.available ?? 0n, pending: s.pending ?? 0n, reserved: s.reserved ?? 0n, wallets: s.wallets ?? 0n, transit: s.transit ?? 0n };
}

/** Transfers awaiting acknowledgement or withdrawals awaiting settlement (twice per command: no arrays made). */
function hasOpenWork(s: WalletState): boolean {
  for (const _ in s.outgoing) return true;
  for (const id in s.withdrawals) {
    const status = s.withdrawals[id]!.status;
    if (status === "reserved" || status === "broadcast") return true;
  }
  return false;
}

export class WalletRecords implements WalletIndex {
  readonly #store: EncryptedStore;
  /** Entries a history shows: the newest `limit`. */
  readonly limit: number;
  readonly #recent = new Map<string, string>();
  /** The transfer index: a mark per id sent, and per sender and id received (see #transferKey). */
  readonly #transfers: Shelf<never>;
  /** Finished deposits by wallet and outpoint, finished withdrawals by wallet and id (format 7). */
  readonly #deposits: Shelf<Deposit>;
  readonly #withdrawals: Shelf<Withdrawal>;
  readonly #adjustments: Shelf<Adjustment>;

  constructor(store: EncryptedStore, limit: number) {
    this.#store = store;
    this.limit = limit;
    this.#transfers = new Shelf(store, TRANSFERS, (input) => this.#transferKey(input));
    this.#deposits = new Shelf(store, DEPOSITS, (ref) => store.mac("wallet-deposit", ref));
    this.#withdrawals = new Shelf(store, WITHDRAWALS, (ref) => store.mac("wallet-withdrawal", ref));
    this.#adjustments = new Shelf(store, ADJUSTMENTS, (ref) => store.mac("wallet-adjustment", ref));
  }

  /** Whether this wallet has already sent a transfer with this id. */
  sent(userKey: string, id: string): boolean {
    return this.#transfers.has(outboundInput(userKey, id));
  }

  /** Whether this wallet has already been credited this sender's transfer with this id (ids are the sender's own). */
  received(userKey: string, from: string, id: string): boolean {
    return this.#transfers.has(inboundInput(userKey, from, id));
  }

  /** A deposit of this wallet that has left its state: confirmed, dropped or reversed. */
  deposit(userKey: string, outpoint: string): Deposit | undefined {
    return this.#deposits.get(userKey + SEP + outpoint);
  }

  /** A withdrawal of this wallet that has left its state: sent or released. */
  withdrawal(userKey: string, id: string): Withdrawal | undefined {
    return this.#withdrawals.get(userKey + SEP + id);
  }

  /** An operator's adjustment of this wallet, by its id. */
  adjustment(userKey: string, id: string): Adjustment | undefined {
    return this.#adjustments.get(userKey + SEP + id);
  }

  /** The record of a finished deposit (by outpoint) or withdrawal (by id). */
  finishedOp(userKey: string, ref: string, x: Deposit | Withdrawal): StoreOp {
    return "vout" in x ? this.#deposits.op(userKey + SEP + ref, x) : this.#withdrawals.op(userKey + SEP + ref, x);
  }

  /**
   * What goes with one command's events: the store records (the transfer index, the deposits and withdrawals it
   * finished, the outbox flag when it changes) and the history entries the events created or rewrote (often none: an
   * empty list, journalled all the same).
   */
  forCommand(before: WalletState, events: readonly WalletEvent[], states: readonly WalletState[]): { ops: StoreOp[]; history: HistoryChanges } {
    const userKey = before.userKey;
    const ops: StoreOp[] = [];
    let history = NO_CHANGES;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!, was = i === 0 ? before : states[i - 1]!, after = states[i]!;
      // A reversal finds its deposit in the records: it left the state when it was confirmed; so does an adjustment that
      // books a reversed deposit (its record counts what was booked against it: changedBy), and a reversed deposit
      // confirmed again (its record, confirmed, no longer counts it: what a repeated listing is answered from).
      const finished = e.t === "deposit_reversed" && !own(was.deposits, e.outpoint) ? this.deposit(userKey, e.outpoint)
        : e.t === "adjusted" && e.outpoint !== undefined ? this.deposit(userKey, e.outpoint)
        : e.t === "deposit_rebooked" ? this.deposit(userKey, e.outpoint) : undefined;
      const changed = changedBy(was, after, e, finished);
      if (changed && isFinished(changed)) ops.push(this.finishedOp(userKey, refOf(e), changed));
      const entry = historyEntryOf(after, e, changed);
      if (entry) history = withEntry(history, entry);
      // A reversed deposit confirmed again writes a second: what it credits back.
      const credit = e.t === "deposit_rebooked" ? rebookedEntryOf(after, e) : undefined;
      if (credit) history = withEntry(history, credit);
      // The index holds a mark per id (a key, no value: nothing to seal). Before format 8 it held the entry's number,
      // sealed, which nothing read; those records count as marks.
      if (e.t === "transfer_sent") ops.push(this.#transfers.mark(outboundInput(userKey, e.id)));
      else if (e.t === "transfer_received") ops.push(this.#transfers.mark(inboundInput(userKey, e.from, e.id)));
      else if (e.t === "adjusted") ops.push(this.#adjustments.op(userKey + SEP + e.id, adjustmentOf(e, after.historyTotal)));
    }
    const was = hasOpenWork(before), now = hasOpenWork(states[states.length - 1] ?? before);
    // A mark (`flagged` lists their keys); before format 8 a sealed `true`.
    if (was !== now) ops.push(now ? { type: "mark", ns: OUTBOX, key: userKey } : { type: "del", ns: OUTBOX, key: userKey });
    return { ops, history };
  }

  /** The wallets flagged with unfinished transfers or withdrawals (the engine resumes them at start). */
  async *flagged(): AsyncGenerator<string> {
    yield* this.#store.keys(OUTBOX);
  }

  /**
   * One page of history, newest first, as of `total` committed entries (pages of 1 to 50 entries). Read from the
   * wallet's journal, newest record first: an entry's newest version (a deposit confirmed, a withdrawal settled)
   * is met before the one that created it. A page costs one record per command back to its oldest entry: the
   * first page a few, the last of 1,000 entries a few thousand (milliseconds).
   */
  async page(userKey: string, total: number, page: number, pageSize: number): Promise<HistoryPage> {
    const size = Math.min(Math.max(1, Math.floor(pageSize) || 10), 50);
    const kept = Math.min(total, this.limit);
    const pages = Math.max(1, Math.ceil(kept / size));
    const p = Math.min(Math.max(0, Math.floor(page) || 0), pages - 1);
    const hi = total - p * size, lo = Math.max(total - kept + 1, hi - size + 1);
    const found = new Map<number, HistoryEntry>();
    const take = (h: HistoryChanges | undefined) => {
      for (const [n, entry] of h ?? []) if (n >= lo && n <= hi && !found.has(n)) found.set(n, entry);
      return found.size === hi - lo + 1;
    };
    if (hi >= lo && hi > 0) {
      let done = false, older = false;
      for await (const data of Journal.backwards(this.#store, walletJournalKey(userKey))) {
        const h = (data as WalletRecordData).h;
        // A record from before format 6: the older entries are in their own records (newer versions came first).
        if (!h) {
          older = true;
          break;
        }
        if ((done = take(h))) break;
      }
      if (!done && older) {
        const rest: Array<[number, HistoryEntry]> = [];
        for await (const [k, entry] of this.#store.iterate<HistoryEntry>(HISTORY, { gte: seqKey(userKey, lo), lte: seqKey(userKey, hi) })) rest.push([Number(k.slice(userKey.length + 1)), entry]);
        take(rest);
      }
    }
    const entries: HistoryEntry[] = [];
    for (let n = hi; n >= lo; n--) {
      const entry = found.get(n);
      if (entry) entries.push(entry);
    }
    return { entries, page: p, pages, total };
  }

  /**
   * Transfer ids are private (they can name chats or cheques): the record key is a MAC of them. A command looks its
   * ids up (`sent`, `received`) and then writes them (`forCommand`): the last few MACs are kept so each is computed once.
   */
  #transferKey(input: string): string {
    let key = this.#recent.get(input);
    if (key === undefined) {
      if (this.#recent.size >= 256) this.#recent.clear();
      this.#recent.set(input, (key = this.#store.mac("transfer", input)));
    }
    return key;
  }
}

/**
 * The entries with `entry` in: one version of an entry per record, the newest (a deposit seen and confirmed at once),
 * for a page takes the first version of an entry it meets in a record.
 */
function withEntry(history: HistoryChanges, entry: readonly [number, HistoryEntry]): HistoryChanges {
  return history === NO_CHANGES ? [entry] : [...history.filter(([n]) => n !== entry[0]), entry];
}

function outboundInput(userKey: string, id: string): string {
  return userKey + SEP + "out" + SEP + id;
}

/** A credit's index entry names its sender: two senders may use the same id, and each credit counts once. */
function inboundInput(userKey: string, from: string, id: string): string {
  return userKey + SEP + "in" + SEP + from + SEP + id;
}

/**
 * The store format these records belong to: 2 since history and the transfer index left the wallets' state; 3 since
 * a credit's index entry is keyed by its sender and id (format 2 keyed it by the id alone); 4 since the store keeps
 * the wallets' running sums; 5 since the per-wallet balance records are gone (nothing reads them but the sums did);
 * 6 since history entries ride in the journal records (every wallet record has its `h`) instead of records of
 * their own; 7 since finished deposits and withdrawals leave the wallets' states for records of their own; 8 since
 * the transfer index and the outbox flags are marks (a key and an empty value, db.ts) instead of sealed values —
 * nothing to rewrite, but code before it cannot read them; 9 since the sums count the transfers between users in
 * flight (`transit`).
 *
 * A new kind of event is not a new format: the records around it are as they were, and a store that never had one
 * is read by the code before it as ever. `transfer_returned` (a transfer its receiver refused for good, given back to
 * its sender) is one, as `told` was, and `deposit_ignored` (a deposit below the minimum, told and kept in history, with
 * a finished-deposit record of status "ignored") another, and `adjusted` (an operator's correction, with a record of
 * its own, `adjustment`) a third, and `deposit_rebooked` (a reversed deposit confirmed again) a fourth: code from before it cannot activate a wallet whose journal holds one after its
 * latest snapshot (its `evolve` does not know the event; that wallet crashes and is stopped, the others work), so
 * going back to such a version takes the version that knows it. Bumping the format for it would refuse every store
 * to the older code, whether it ever returned a transfer or not.
 */
export const STORE_FORMAT = 9;

/**
 * What an upgrade did: wallets whose journals were replayed, wallets counted into the sums, records deleted, wallets
 * whose finished deposits and withdrawals moved out of their state (format 7), transfers found in flight (format 9).
 */
export interface UpgradeReport {
  from: number;
  replayed: number;
  counted: number;
  deleted: number;
  moved: number;
  inFlight: number;
}

const BALANCES = "balances";

/**
 * Brings a store written before the current format up to it, once (at the engine's start, before any wallet
 * writes). Before format 3, each wallet's journal is replayed with today's `evolve`: the transfer index and outbox
 * flag are written from the replay, every journal record is rewritten with the history entries it created or
 * changed (format 2's history records are then deleted), the snapshot is replaced by the replayed state (a
 * format-1 snapshot holds the history inside), and a format-2 store's credit entries, keyed by id alone, are
 * deleted. Before format 4 the running sums are counted, from the replayed states or from format 3's balance
 * records, and written with format 4 (an interrupted upgrade does not count them twice). Before format 5 the
 * balance records are deleted. Formats 3 to 5 keep their history records, which pages read below the journal
 * records written since: nothing is replayed (a replay costs ~50 µs per journal record here). Before format 9 the
 * transfers in flight are counted into the sums (`countTransit`; `chequeFunded` reads the cheque book once and says
 * whether a cheque's funding reached it; without it, none did). Repeatable after a crash: every write is a put of the same value or a delete, and the sums
 * change in one batch with the format that says they did. Undefined when the store is current.
 */
export async function upgradeWalletRecords(journal: Journal, records: WalletRecords, log?: Pick<Logger, "info">, chequeFunded?: () => Promise<(hash: string) => boolean>): Promise<UpgradeReport | undefined> {
  const store = journal.store;
  const format = (await store.get<number>(META, "format")) ?? 0;
  if (format > STORE_FORMAT) {
    // A version rolled back over a store a newer one has upgraded: it would write records (the sums among them) the
    // way it knows, and the newer version would read them wrong later.
    throw new StoreError("bad_format", `this store has format ${format}, written by a newer RuniGun; this one knows formats up to ${STORE_FORMAT}. Start the newer version (or restore a backup taken before the upgrade)`);
  }
  if (format === STORE_FORMAT) return undefined;
  const report: UpgradeReport = { from: format, replayed: 0, counted: 0, deleted: 0, moved: 0, inFlight: 0 };
  if (format < 4) {
    const sums = { available: 0n, pending: 0n, reserved: 0n, wallets: 0n };
    const add = (a: bigint, p: bigint, r: bigint) => {
      sums.available += a;
      sums.pending += p;
      sums.reserved += r;
      sums.wallets++;
    };
    if (format < 3) report.replayed = await replayWallets(journal, records, format, (w) => w.opened && add(w.available, w.pending, w.reserved));
    else for await (const [, v] of store.iterate<WalletView>(BALANCES)) add(v.a, v.p, v.r);
    report.counted = Number(sums.wallets);
    await store.resetSums(sums, [{ type: "put", ns: META, key: "format", value: 4 }]);
  }
  if (format < 3) report.deleted += await deleteAll(store, HISTORY);
  if (format < 5) report.deleted += await deleteAll(store, BALANCES);
  // Before format 3 the replay above wrote the records of finished deposits and withdrawals, as a command does now.
  if (format >= 3 && format < 7) report.moved = await moveFinished(journal, records, log);
  if (format < 9) {
    const transit = await countTransit(journal, records, chequeFunded ? await chequeFunded() : () => false);
    report.inFlight = transit.transfers;
    await store.resetSums({ ...store.sums, transit: transit.sats }, [{ type: "put", ns: META, key: "format", value: 9 }]);
  }
  await store.put(META, "format", STORE_FORMAT);
  return report;
}

/** A wallet as an activation brings it up: its snapshot's state (a new wallet's without one), and the journal records after it. */
async function storedWallet(journal: Journal, userKey: string) {
  const key = walletJournalKey(userKey);
  const snapshot = await journal.latestSnapshot(key);
  const state = snapshot ? restoreWallet(snapshot.data as WalletState) : emptyWallet(userKey);
  return { key, snapshot, state, events: await journal.readEvents(key, snapshot?.sequenceNumber ?? 0) };
}

/**
 * Before format 9: the transfers between users in flight, from the outboxes. Each wallet flagged with unfinished work
 * is brought up as an activation would (its snapshot, then the journal after it); a transfer in its outbox counts
 * unless its receiver has it: a wallet's transfer index knows the sender and id, a cheque is past waiting for funds.
 * (One credited and not yet acknowledged is still in the outbox.)
 */
async function countTransit(journal: Journal, records: WalletRecords, chequeFunded: (hash: string) => boolean): Promise<{ sats: bigint; transfers: number }> {
  let sats = 0n, transfers = 0;
  for await (const userKey of records.flagged()) {
    const stored = await storedWallet(journal, userKey);
    let s = stored.state;
    for (const ev of stored.events) for (const e of (ev.data as WalletRecordData).e) s = evolve(s, e);
    for (const [id, t] of Object.entries(s.outgoing)) {
      const landed = t.to.startsWith(CHEQUE_PREFIX) ? chequeFunded(t.to.slice(CHEQUE_PREFIX.length)) : records.received(t.to, userKey, id);
      if (landed) continue;
      sats += t.amount;
      transfers++;
    }
  }
  return { sats, transfers };
}

/**
 * Before format 7: a wallet's state kept every deposit and withdrawal it ever had. Each wallet is brought up as an
 * activation would (its snapshot, then the journal after it); the deposits and withdrawals finished in the snapshot
 * or by the events after it get their records, and a snapshot without them is written after them, so a crash
 * part-way leaves the old snapshot and a repeat writes the same records again. Several wallets share a batch (one
 * fsync for ~1,000 records: one per wallet took ~1 ms a wallet). Returns the wallets that had any.
 */
async function moveFinished(journal: Journal, records: WalletRecords, log?: Pick<Logger, "info">): Promise<number> {
  const store = journal.store;
  let moved = 0, seen = 0;
  let pending: StoreOp[] = [];
  const prefix = walletJournalKey("");
  for await (const key of journal.keys(prefix)) {
    if (++seen % 100_000 === 0) log?.info({ wallets: seen, moved }, "store upgrade to format 7: finished deposits and withdrawals leaving the wallets' states");
    const userKey = key.slice(prefix.length);
    const { snapshot, state, events } = await storedWallet(journal, userKey);
    let s = state;
    const finished = new Map<string, Deposit | Withdrawal>();
    for (const ev of events) {
      for (const e of (ev.data as WalletRecordData).e) {
        const after = evolve(s, e);
        const changed = changedBy(s, after, e, e.t === "deposit_reversed" ? (finished.get(e.outpoint) as Deposit | undefined) : undefined);
        if (changed && isFinished(changed)) finished.set(refOf(e), changed);
        s = after;
      }
    }
    for (const [outpoint, d] of Object.entries(s.deposits)) if (isFinished(d)) finished.set(outpoint, d);
    for (const [id, w] of Object.entries(s.withdrawals)) if (isFinished(w)) finished.set(id, w);
    if (finished.size === 0) continue;
    const open = <T extends Deposit | Withdrawal>(m: Record<string, T>) => {
      const kept = idMap<T>();
      for (const [k, x] of Object.entries(m)) if (!isFinished(x)) kept[k] = x;
      return kept;
    };
    const last = events.at(-1)?.sequenceNumber ?? snapshot!.sequenceNumber;
    for (const [ref, x] of finished) pending.push(records.finishedOp(userKey, ref, x));
    pending.push(Journal.snapshotOp({ key, sequenceNumber: last, data: { ...s, deposits: open(s.deposits), withdrawals: open(s.withdrawals) }, createdAt: Date.now() }));
    moved++;
    // Batches are written in order, so a wallet's snapshot never lands before its records.
    if (pending.length >= 1000) {
      await store.batch(pending);
      pending = [];
    }
  }
  await store.batch(pending);
  return moved;
}

/** Deletes every record of a namespace, 1,000 to a batch, in one pass (a seek from the start would step over the deleted ones again). */
async function deleteAll(store: EncryptedStore, ns: string): Promise<number> {
  let ops: StoreOp[] = [], deleted = 0;
  for await (const key of store.keys(ns)) {
    ops.push({ type: "del", ns, key });
    if (ops.length === 1000) {
      await store.batch(ops);
      deleted += ops.length;
      ops = [];
    }
  }
  if (ops.length) await store.batch(ops);
  return deleted + ops.length;
}

/** Before format 3: replays every wallet's journal and rewrites what it lacks (see above); `replayed` sees each final state. */
async function replayWallets(journal: Journal, records: WalletRecords, format: number, replayed: (w: WalletState) => void): Promise<number> {
  const store = journal.store;
  let wallets = 0;
  const prefix = walletJournalKey("");
  for await (const key of journal.keys(prefix)) {
    const events = await journal.readEvents(key);
    const userKey = key.slice(prefix.length);
    let state = emptyWallet(userKey);
    const ops: StoreOp[] = [];
    for (const ev of events) {
      const data = ev.data as WalletRecordData;
      // A reversal reads its confirmed deposit's record (forCommand), and an adjustment booking it, or its confirmation
      // again, the reversed one: write what came before it first.
      if (data.e.some((x) => x.t === "deposit_reversed" || x.t === "deposit_rebooked" || (x.t === "adjusted" && x.outpoint !== undefined))) await store.batch(ops.splice(0));
      const states = [];
      let s = state;
      for (const x of data.e) {
        states.push((s = evolve(s, x)));
        if (format === 2 && x.t === "transfer_received") ops.push({ type: "del", ns: TRANSFERS, key: store.mac("transfer", userKey + SEP + "in" + SEP + x.id) });
      }
      const made = records.forCommand(state, data.e, states);
      ops.push(...made.ops);
      if (!data.h) ops.push(Journal.eventOp(key, ev.sequenceNumber, { ...data, h: made.history }, ev.createdAt, ev.tags));
      state = s;
    }
    const last = events.at(-1);
    if (last) ops.push(Journal.snapshotOp({ key, sequenceNumber: last.sequenceNumber, data: state, createdAt: Date.now() }));
    // A long journal is rewritten in several batches (each put stands alone).
    for (let i = 0; i < ops.length; i += 1000) await store.batch(ops.slice(i, i + 1000));
    replayed(state);
    wallets++;
  }
  return wallets;
}
