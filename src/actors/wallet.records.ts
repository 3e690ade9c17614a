// The records a wallet writes beside its journal, in the same atomic batch as the events (the journal applies a
// record's `r` and adds its `s` to the store's running sums): its outbox flag (the start-up outbox scan), its
// history entries, and the index of transfer ids it has sent or received; and what its balance parts add to the
// sums every wallet's balance is kept in (the solvency watchdog). History and index live here rather than in the
// actor's state, so a wallet with a long history activates, snapshots and evolves as fast as a new one, and a
// transfer id is recognised however old it is. Each record costs ~20 µs of CPU all told (encoding, sealing, the
// disk, the collector), so a command writes only what someone reads.
import { META, type EncryptedStore, type StoreOp, type Sums } from "../store/db.ts";
import { Journal } from "../store/journal.ts";
import type { JournalRecord } from "./runtime.ts";
import { emptyWallet, evolve, historyEntryOf } from "./wallet.ts";
import { walletJournalKey } from "./wallet.actor.ts";
import type { HistoryEntry, WalletEvent, WalletState } from "./wallet.messages.ts";
import type { HistoryPage } from "../relay.types.ts";

/** Format 4's balance record of a wallet, `balances/<userKey>` (format 5 deletes them: the sums replace them). */
interface WalletView {
  a: bigint;
  p: bigint;
  r: bigint;
  o: boolean;
}

const HISTORY = "history";
const TRANSFERS = "xfer";
const SEP = "\u0001";
const seqKey = (userKey: string, n: number) => userKey + SEP + n.toString().padStart(12, "0");

/**
 * The store's running sums over every wallet (db.ts, `Sums`): what the solvency watchdog reads instead of summing
 * the balance views. `wallets` counts the opened ones.
 */
export interface WalletSums {
  available: bigint;
  pending: bigint;
  reserved: bigint;
  wallets: bigint;
}

/** What one command adds to the wallets' sums (undefined: nothing). */
export function sumsDelta(before: WalletState, after: WalletState): Sums | undefined {
  const opened = !before.opened && after.opened ? 1n : 0n;
  if (opened === 0n && before.available === after.available && before.pending === after.pending && before.reserved === after.reserved) return undefined;
  return { available: after.available - before.available, pending: after.pending - before.pending, reserved: after.reserved - before.reserved, wallets: opened };
}

/** The wallets' sums as the store holds them (parts never written are 0). */
export function walletSums(s: Sums): WalletSums {
  return { available: s.available ?? 0n, pending: s.pending ?? 0n, reserved: s.reserved ?? 0n, wallets: s.wallets ?? 0n };
}

/** Transfers awaiting acknowledgement or withdrawals awaiting settlement (twice per command: no arrays made). */
export function hasOpenWork(s: WalletState): boolean {
  for (const _ in s.outgoing) return true;
  for (const id in s.withdrawals) {
    const status = s.withdrawals[id]!.status;
    if (status === "reserved" || status === "broadcast") return true;
  }
  return false;
}

export class WalletRecords {
  readonly #store: EncryptedStore;
  /** Entries kept per wallet: the newest `limit` (older ones are deleted as new ones arrive). */
  readonly limit: number;
  readonly #recent = new Map<string, string>();

  constructor(store: EncryptedStore, limit: number) {
    this.#store = store;
    this.limit = limit;
  }

  /** Whether this wallet has already sent a transfer with this id. */
  sent(userKey: string, id: string): boolean {
    return this.#store.getSync<number>(TRANSFERS, this.#transferKey(outboundInput(userKey, id))) !== undefined;
  }

  /** Whether this wallet has already been credited this sender's transfer with this id (ids are the sender's own). */
  received(userKey: string, from: string, id: string): boolean {
    return this.#store.getSync<number>(TRANSFERS, this.#transferKey(inboundInput(userKey, from, id))) !== undefined;
  }

  /**
   * The store operations that go with one command's events: history entries written or rewritten, the transfer
   * index, and the outbox flag when it changes.
   */
  ops(before: WalletState, events: readonly WalletEvent[], states: readonly WalletState[]): StoreOp[] {
    const userKey = before.userKey;
    const ops: StoreOp[] = [];
    let prev = before;
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!, after = states[i]!;
      const entry = historyEntryOf(after, e);
      // An entry already trimmed away is not brought back by a late status change (a reorg months later).
      if (entry && entry[0] > after.historyTotal - this.limit) ops.push({ type: "put", ns: HISTORY, key: seqKey(userKey, entry[0]), value: entry[1] });
      // A new entry pushes the oldest kept one out.
      if (after.historyTotal > prev.historyTotal && after.historyTotal > this.limit) ops.push({ type: "del", ns: HISTORY, key: seqKey(userKey, after.historyTotal - this.limit) });
      if (e.t === "transfer_sent") ops.push({ type: "put", ns: TRANSFERS, key: this.#transferKey(outboundInput(userKey, e.id)), value: after.historyTotal });
      else if (e.t === "transfer_received") ops.push({ type: "put", ns: TRANSFERS, key: this.#transferKey(inboundInput(userKey, e.from, e.id)), value: after.historyTotal });
      prev = after;
    }
    const was = hasOpenWork(before), now = hasOpenWork(states[states.length - 1] ?? before);
    if (was !== now) ops.push(now ? { type: "put", ns: "outbox", key: userKey, value: true } : { type: "del", ns: "outbox", key: userKey });
    return ops;
  }

  /** One page of history, newest first, as of `total` committed entries (pages of 1 to 50 entries). */
  async page(userKey: string, total: number, page: number, pageSize: number): Promise<HistoryPage> {
    const size = Math.min(Math.max(1, Math.floor(pageSize) || 10), 50);
    const kept = Math.min(total, this.limit);
    const pages = Math.max(1, Math.ceil(kept / size));
    const p = Math.min(Math.max(0, Math.floor(page) || 0), pages - 1);
    const entries: HistoryEntry[] = [];
    const hi = total - p * size, lo = Math.max(total - kept + 1, hi - size + 1);
    if (hi >= lo && hi > 0) {
      for await (const [, v] of this.#store.iterate<HistoryEntry>(HISTORY, { gte: seqKey(userKey, lo), lte: seqKey(userKey, hi), reverse: true })) entries.push(v);
    }
    return { entries, page: p, pages, total };
  }

  /**
   * Transfer ids are private (they can name chats or cheques): the record key is a MAC of them. A command looks its
   * ids up (`sent`, `received`) and then writes them (`ops`): the last few MACs are kept so each is computed once.
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
 * the wallets' running sums; 5 since the per-wallet balance records are gone (nothing reads them but the sums did).
 */
export const STORE_FORMAT = 5;

/** What an upgrade did: wallets whose journals were replayed, wallets counted into the sums, records deleted. */
export interface UpgradeReport {
  from: number;
  replayed: number;
  counted: number;
  deleted: number;
}

const BALANCES = "balances";

/**
 * Brings a store written before the current format up to it, once (at the engine's start, before any wallet
 * writes). Before format 3, each wallet's journal is replayed with today's `evolve`, its records are written from
 * the replay, and its snapshot is replaced by the replayed state (a format-1 snapshot holds the history inside);
 * a format-2 store's credit entries, keyed by id alone, are deleted. Before format 4, the running sums are counted
 * once: from the replayed states, or from format 3's balance records. Before format 5, those balance records are
 * deleted — after the sums are written with format 4, so a crash part-way never counts a half-deleted set.
 * Repeatable after a crash: every write is a put of the same value or a delete. Undefined when the store is current.
 */
export async function upgradeWalletRecords(journal: Journal, records: WalletRecords): Promise<UpgradeReport | undefined> {
  const store = journal.store;
  const format = (await store.get<number>(META, "format")) ?? 0;
  if (format >= STORE_FORMAT) return undefined;
  const report: UpgradeReport = { from: format, replayed: 0, counted: 0, deleted: 0 };
  if (format < 4) {
    const sums = { available: 0n, pending: 0n, reserved: 0n, wallets: 0n };
    const add = (a: bigint, p: bigint, r: bigint) => {
      sums.available += a;
      sums.pending += p;
      sums.reserved += r;
      sums.wallets++;
    };
    if (format < 3) {
      report.replayed = await replayWallets(journal, records, format, (w) => w.opened && add(w.available, w.pending, w.reserved));
    } else {
      for await (const [, v] of store.iterate<WalletView>(BALANCES)) add(v.a, v.p, v.r);
    }
    report.counted = Number(sums.wallets);
    await store.resetSums(sums, [{ type: "put", ns: META, key: "format", value: 4 }]);
  }
  for (;;) {
    const ops: StoreOp[] = [];
    for await (const key of store.keys(BALANCES, { limit: 1000 })) ops.push({ type: "del", ns: BALANCES, key });
    if (ops.length === 0) break;
    await store.batch(ops);
    report.deleted += ops.length;
  }
  await store.put(META, "format", STORE_FORMAT);
  return report;
}

/** Replays every wallet's journal and rewrites its records and snapshot (see above); `replayed` sees each final state. */
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
      const e = (ev.data as JournalRecord<never>).e;
      const states = [];
      let s = state;
      for (const x of e as WalletEvent[]) {
        states.push((s = evolve(s, x)));
        if (format === 2 && x.t === "transfer_received") ops.push({ type: "del", ns: TRANSFERS, key: store.mac("transfer", userKey + SEP + "in" + SEP + x.id) });
      }
      ops.push(...records.ops(state, e, states));
      state = s;
    }
    const last = events.at(-1);
    if (last) ops.push(Journal.snapshotOp({ key, sequenceNumber: last.sequenceNumber, data: state, createdAt: Date.now() }));
    await store.batch(ops);
    replayed(state);
    wallets++;
  }
  return wallets;
}
