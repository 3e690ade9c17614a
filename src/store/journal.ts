// The journal: nact's persistence engine on the encrypted store. Events are keyed by persistence key and a
// zero-padded sequence number, so replay is an ordered range scan. Writes that arrive while a batch is being
// written (or in the same tick) share the next batch: one fsync for many wallets (group commit). A sequence
// gap is refused (nact leaves one after a failed persist; the actor must replay instead of resuming).
import type { Logger } from "../log.ts";
import { addSums, EncryptedStore, type RawOp, type StoreOp, type Sums } from "./db.ts";
import type { EncodedOp } from "./sealer.ts";
import { StoreError } from "./errors.ts";

const EVENTS = "journal";
const SNAPSHOTS = "snapshot";
const SEP = "\u0001";
const pad = (n: number) => n.toString().padStart(12, "0");

/** nact's event and snapshot shapes (see nact/lib/persistence/persistence-engine.js). */
export interface JournalEvent {
  data: unknown;
  sequenceNumber: number;
  key: string;
  tags: string[];
  createdAt: number;
  isDeleted: boolean;
}
export interface JournalSnapshot {
  data: unknown;
  sequenceNumber: number;
  key: string;
  createdAt: number;
}

/**
 * What a persistent actor journals per command: its events; store records (a read model) to write in the same
 * atomic batch, and what they add to the store's running sums — applied, not journalled; and `h`, kept in the
 * journal beside the events for readers of the journal (a wallet's history entries), never replayed.
 */
export interface JournalRecord<E> {
  e: E[];
  r?: StoreOp[];
  s?: Sums;
  h?: unknown;
}

/** What a command persists besides its events. */
export type JournalExtras = Omit<JournalRecord<never>, "e">;

export interface JournalOptions {
  log?: Pick<Logger, "warn" | "error">;
  /** Queued store operations that start a batch at once, without waiting for the end of the turn (default 512). */
  cutAt?: number;
  /**
   * How many keys' last sequence numbers are kept in memory before the oldest half is forgotten (default 100,000;
   * a forgotten one is read from disk again when needed). Without a bound, every wallet the process ever touched
   * would stay in this map.
   */
  remember?: number;
}

export interface JournalStats {
  batches: number;
  events: number;
  snapshots: number;
  snapshotFailures: number;
  lastCommitMs: number;
  maxBatch: number;
}

interface Pending {
  ops: EncodedOp[];
  /** What the records add to the store's sums. */
  add: Sums | undefined;
  /** Sequence numbers this entry claims, to release them if the batch fails. */
  claims: Array<[string, number]>;
  /** The store's epoch when they were claimed (EncryptedStore.epoch). */
  epoch: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class Journal {
  readonly store: EncryptedStore;
  readonly stats: JournalStats = { batches: 0, events: 0, snapshots: 0, snapshotFailures: 0, lastCommitMs: 0, maxBatch: 0 };
  readonly #o: JournalOptions;
  /** The last sequence number of each recently used key, in two generations (see `remember`). */
  #last = new Map<string, number>();
  #older = new Map<string, number>();
  readonly #remember: number;
  #queue: Pending[] = [];
  #queuedOps = 0;
  readonly #cutAt: number;
  #scheduled = false;
  /** Settles once the last batch handed to the store has settled (it never rejects). */
  #tail: Promise<void> = Promise.resolve();
  /** Batches cut and not yet durable (or failed). */
  #unsettled = 0;

  constructor(store: EncryptedStore, o: JournalOptions = {}) {
    this.store = store;
    this.#o = o;
    this.#cutAt = o.cutAt ?? 512;
    this.#remember = Math.max(1, o.remember ?? 100_000);
    // A batch the store could not say was written turned out to be on disk: numbers read meanwhile (an actor's replay
    // during the outage) may lack its events. All are read from disk again; the claims made on them are refused by
    // the store (their epoch is older), and the next persist of such a number is refused as a gap: the actor replays.
    store.onUnsureSettled((landed) => {
      if (!landed) return;
      this.#last.clear();
      this.#older.clear();
    });
  }

  /** nact: a crashed actor's replay waits until the store can be read (see PersistenceEngine.readable). */
  readable(): Promise<void> | undefined {
    return this.store.whenOpen();
  }

  /** How many keys' last sequence numbers are in memory. */
  get remembered(): number {
    return this.#last.size + this.#older.size;
  }

  #lastOf(key: string): number | undefined {
    const n = this.#last.get(key);
    if (n !== undefined) return n;
    const old = this.#older.get(key);
    if (old !== undefined) this.#setLast(key, old);
    return old;
  }

  #setLast(key: string, n: number): void {
    if (this.#last.size >= this.#remember && !this.#last.has(key)) {
      // A generation is full: the older one is forgotten. A key has at most one event in flight and that is in the
      // newer generation, unless as many other keys were used since it was claimed; a persist after a forgotten
      // claim reads the disk, and if its event is still on the way, is refused as a gap and the actor replays.
      this.#older = this.#last;
      this.#last = new Map();
    }
    this.#last.set(key, n);
  }

  #forget(key: string): void {
    this.#last.delete(key);
    this.#older.delete(key);
  }

  /** nact: the events of `key` with sequence number > offset, as something with an async `reduce`. */
  events(key: string, offset = 0) {
    return {
      reduce: async <T>(f: (acc: T, ev: JournalEvent, index: number) => T, init: T): Promise<T> => {
        const evs = await this.readEvents(key, offset);
        return evs.reduce(f, init);
      },
    };
  }

  async readEvents(key: string, offset = 0): Promise<JournalEvent[]> {
    // This process wrote the key's last event (or read it before): when that is the offset, there is nothing after
    // it — an activation after a passivation reads no range at all.
    if (this.#lastOf(key) === offset) return [];
    const out: JournalEvent[] = [];
    let expected = offset + 1;
    for await (const [k, v] of this.store.iterate<{ d: unknown; t: number; g?: string[] }>(EVENTS, { gt: key + SEP + pad(offset), lt: key + SEP + "~" })) {
      const seq = Number(k.slice(key.length + 1));
      if (seq !== expected) throw new StoreError("sequence_gap", `journal ${key} jumps from ${expected - 1} to ${seq}; restore it from a backup`);
      expected++;
      out.push({ data: v.d, sequenceNumber: seq, key, tags: v.g ?? [], createdAt: v.t, isDeleted: false });
    }
    // The scan reached the end: its last number is the key's last (unless a persist claimed a newer one meanwhile).
    if (this.#lastOf(key) === undefined) this.#setLast(key, expected - 1);
    return out;
  }

  async lastSequence(key: string): Promise<number> {
    const cached = this.#lastOf(key);
    if (cached !== undefined) return cached;
    let last = 0;
    for await (const k of this.store.keys(EVENTS, { gt: key + SEP, lt: key + SEP + "~", reverse: true, limit: 1 })) last = Number(k.slice(key.length + 1));
    // Someone may have claimed a number while we read the disk: keep the larger.
    const now = this.#lastOf(key);
    if (now !== undefined) return now;
    this.#setLast(key, last);
    return last;
  }

  async latestSnapshot(key: string): Promise<JournalSnapshot | undefined> {
    // Read on this thread: an activation must not queue behind group commit's fsyncs in the thread pool.
    const s = this.store.getSync<{ d: unknown; s: number; t: number }>(SNAPSHOTS, key);
    return s && { data: s.d, sequenceNumber: s.s, key, createdAt: s.t };
  }

  /** nact: persists one event; resolves once it is durable. Refuses anything but last + 1. */
  async persist(ev: JournalEvent): Promise<void> {
    // Before the number is read: a reopen that finds a lost write during that read makes this claim stale.
    const epoch = this.store.epoch;
    // Known keys are queued before persist returns (no await on the way): a flushed() called after it covers it.
    const last = this.#lastOf(ev.key) ?? (await this.lastSequence(ev.key));
    if (ev.sequenceNumber !== last + 1) {
      // The actor's counter is ahead of the disk (an earlier persist failed): make it replay.
      throw new StoreError("sequence_gap", `journal ${ev.key}: event ${ev.sequenceNumber} does not follow ${last}; the actor must replay`);
    }
    let data = ev.data, records: StoreOp[] | undefined, add: Sums | undefined;
    if (data !== null && typeof data === "object" && ("r" in data || "s" in data)) {
      // What is kept in the record: its events and `h`, in a record of one fixed shape (built field by field, not by a
      // rest pattern, which copies through V8's generic path).
      const record = data as JournalRecord<unknown>;
      records = record.r;
      add = record.s;
      data = record.h === undefined ? { e: record.e } : { e: record.e, h: record.h };
    }
    const ops: StoreOp[] = [Journal.eventOp(ev.key, ev.sequenceNumber, data, ev.createdAt, ev.tags)];
    if (records) for (const op of records) ops.push(op);
    // Encoded before the number is claimed: a record that cannot be stored fails here and claims nothing.
    const encoded = this.store.encodeOps(ops);
    this.#setLast(ev.key, ev.sequenceNumber);
    return this.#enqueue(encoded, [[ev.key, ev.sequenceNumber]], add, epoch);
  }

  /**
   * The data of `key`'s journal records, newest first, as stored (`d`: for an actor, its `e` and `h`). A reader
   * stops when it has what it wants.
   */
  static async *backwards(store: EncryptedStore, key: string): AsyncGenerator<unknown> {
    for await (const [, v] of store.iterate<{ d: unknown }>(EVENTS, { gt: key + SEP, lt: key + SEP + "~", reverse: true })) yield v.d;
  }

  /** The record an event is stored as (also for an upgrade rewriting a record with what later formats keep). */
  static eventOp(key: string, sequenceNumber: number, data: unknown, createdAt: number, tags: readonly string[]): StoreOp {
    return { type: "put", ns: EVENTS, key: key + SEP + pad(sequenceNumber), value: tags.length ? { d: data, t: createdAt, g: tags } : { d: data, t: createdAt } };
  }

  /** The record a snapshot is stored as, for writers that must put one in a batch of their own (an upgrade). */
  static snapshotOp(s: JournalSnapshot): StoreOp {
    return { type: "put", ns: SNAPSHOTS, key: s.key, value: { d: s.data, s: s.sequenceNumber, t: s.createdAt } };
  }

  /**
   * The keys that have journal events, in order, reading one key per key (not every event); those after `from`
   * when given (a cursor: the last key a caller handled).
   */
  async *keys(prefix = "", from?: string): AsyncGenerator<string> {
    let after = from === undefined ? prefix : from + SEP + "~";
    for (;;) {
      let next: string | undefined;
      for await (const k of this.store.keys(EVENTS, { gte: after, lt: prefix + "\uffff", limit: 1 })) next = k.slice(0, k.indexOf(SEP));
      if (next === undefined) return;
      yield next;
      after = next + SEP + "~";
    }
  }

  /** nact: snapshots are fire-and-forget upstream; here a failure is logged and counted, never silent. */
  async takeSnapshot(s: JournalSnapshot): Promise<void> {
    try {
      const epoch = this.store.epoch;
      // A snapshot past the key's last event (one that failed to persist) would make replay skip it for good.
      const last = await this.lastSequence(s.key);
      if (s.sequenceNumber > last) throw new StoreError("sequence_gap", `snapshot of ${s.key} at ${s.sequenceNumber} is past its last event ${last}; not taken`);
      await this.#enqueue(this.store.encodeOps([Journal.snapshotOp(s)]), [], undefined, epoch);
      this.stats.snapshots++;
    } catch (e) {
      this.stats.snapshotFailures++;
      this.#o.log?.error({ err: e, journal: s.key }, "snapshot failed; replay will be longer until the next one");
    }
  }

  /** Resolves when everything queued so far is durable (or has failed). */
  async flushed(): Promise<void> {
    if (this.#queue.length > 0) await this.#enqueue([], [], undefined).catch(() => undefined);
    await this.#tail;
  }

  #enqueue(ops: EncodedOp[], claims: Array<[string, number]>, add: Sums | undefined, epoch = this.store.epoch): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ ops, add, claims, epoch, resolve, reject });
      this.#queuedOps += ops.length;
      if (this.#queuedOps >= this.#cutAt) {
        // A burst (hundreds of wallets answering in one turn): this part is sealed on the worker while the rest is decided.
        this.#cut(true);
      } else if (!this.#scheduled) {
        this.#scheduled = true;
        // Wait for the rest of this turn's writers: they join the same batch. While an earlier batch is still on its
        // way to disk this one waits for that fsync anyway, so it is sealed on the worker meanwhile; otherwise here,
        // at once (a chain of commits that each wait for the last gains nothing from a round trip to the worker).
        setImmediate(() => {
          this.#scheduled = false;
          this.#cut(this.#unsettled > 0);
        });
      }
    });
  }

  /**
   * Hands what is queued to sealing (`busy`: on the worker, store.sealEncoded) and then to the store,
   * without waiting for the batches before it to be durable: the store merges what queues behind a write into its
   * next fsync. Batches reach the store in the order they were cut (the sealer answers in order). A key has one
   * event in flight at most (an actor persists, then waits), so a batch that fails cannot leave a gap behind a
   * later one.
   */
  #cut(busy: boolean): void {
    if (this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#queuedOps = 0;
    const started = performance.now();
    let sealing: Promise<RawOp[]>;
    try {
      sealing = this.store.sealEncoded(batch.length === 1 ? batch[0]!.ops : batch.flatMap((p) => p.ops), busy);
    } catch (e) {
      sealing = Promise.reject(e);
    }
    let add: Sums | undefined;
    for (const p of batch) if (p.add) add = addSums(add ?? {}, p.add);
    const before = this.#tail;
    // Nothing to write (a flush marker alone): done when the batches before it are.
    // The oldest epoch of the batch's claims: a batch built on a read from before a reopen found a lost write is refused.
    let epoch = batch[0]!.epoch;
    for (const p of batch) if (p.epoch < epoch) epoch = p.epoch;
    const write = sealing.then((sealed) => (sealed.length > 0 ? this.store.writeRaw(sealed, add, epoch) : before));
    this.#unsettled++;
    this.#tail = write.then(() => this.#committed(batch, started), (e: unknown) => this.#failed(batch, e)).finally(() => void this.#unsettled--);
  }

  #committed(batch: Pending[], started: number): void {
    this.stats.lastCommitMs = performance.now() - started;
    this.stats.batches++;
    this.stats.maxBatch = Math.max(this.stats.maxBatch, batch.length);
    for (const p of batch) this.stats.events += p.claims.length;
    for (const p of batch) p.resolve();
  }

  #failed(batch: Pending[], e: unknown): void {
    // This batch is not on disk, or not known to be (the store says which; if it turns up, see the constructor):
    // forget the claimed numbers, so the next persist and the actors' replays read the disk.
    for (const p of batch) for (const [k] of p.claims) this.#forget(k);
    for (const p of batch) p.reject(e);
  }
}
