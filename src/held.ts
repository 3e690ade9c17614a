// Notices kept while nobody is there to take them — the engine's start-up catch-up (payouts confirmed while it was
// down, outbox re-sends, a drain's announcements) runs before the edges subscribe, and a bot connects to the engine's
// notice stream after the engine is up — then handed to the first taker. Bounded: the oldest go first, counted.
// The engine also keeps each notice in its store until it is delivered (KeptNotices, below), so that what is held or
// on its way when the process dies is sent after its next start.
import type { EncryptedStore, StoreOp } from "./store/db.ts";

export class Held<T> {
  #items: T[] = [];
  /** How many were dropped for room since the last take. */
  dropped = 0;

  /** `onDrop`: told of what is dropped for room (to let go of what it holds elsewhere). */
  constructor(readonly max: number, readonly onDrop?: (items: T[]) => void) {}

  /** Keeps `item`; true when an older one was dropped for it (the first drop since the last take: worth a log line). */
  hold(item: T): boolean {
    this.#items.push(item);
    if (this.#items.length <= this.max) return false;
    const gone = this.#items.shift()!;
    this.onDrop?.([gone]);
    return ++this.dropped === 1;
  }

  /**
   * Keeps `items` before everything kept, in their order (older than anything kept: notices handed to a bot that never
   * acknowledged them); true as `hold`. Past `max`, the oldest go, these first.
   */
  putBack(items: T[]): boolean {
    if (items.length === 0) return false;
    this.#items = [...items, ...this.#items];
    const over = this.#items.length - this.max;
    if (over <= 0) return false;
    const gone = this.#items.splice(0, over);
    this.onDrop?.(gone);
    const first = this.dropped === 0;
    this.dropped += over;
    return first;
  }

  /** Everything kept, oldest first; keeps nothing after. */
  take(): T[] {
    const items = this.#items;
    this.#items = [];
    this.dropped = 0;
    return items;
  }

  get size(): number {
    return this.#items.length;
  }
}

/**
 * How a listener hears notices. An observer (a test script's inbox) only watches. A deliverer (an edge) releases
 * what is held when it subscribes; one that `settles` calls the `settled` it is given with each notice once it is done
 * with it (the Telegram edge: once its send was answered, or refused for good), and what it has not settled when it
 * unsubscribes goes back to be held for the next deliverer. A deliverer that does not settle is done with a notice
 * once it was handed to it.
 */
export interface NoticeListening {
  observer?: boolean;
  settles?: boolean;
}

/**
 * A deliverer's word that it is done with a notice: delivered (or refused for good), so it is released. "given up":
 * done with it without delivering it (the Telegram edge keeps no more failed sends than it can retry): not released,
 * its owner keeps it (the engine's store, for its next start; a bot's stream, which does not acknowledge it).
 */
export type NoticeSettle = (outcome?: "given up") => void;

/**
 * How a notice reaches a listener: `settled` as above; `cancelled`, when its publisher may take it back before it is
 * settled (a notice of the split link's stream: aborted when that stream closes, the engine then gives it to the next
 * stream), so a send not gone out yet is dropped, not made twice.
 */
export type NoticeListener<T> = (n: T, settled: NoticeSettle, cancelled?: AbortSignal) => void;

/** A notice on its way: `release` is the owner's (the engine's store record, a bot's acknowledgement), called once it is settled. */
interface Entry<T> {
  n: T;
  release: (() => void) | undefined;
  /** Aborted when its publisher takes it back (its stream closed): never released, held, or told again here. */
  cancelled: AbortSignal | undefined;
  /** Deliverers that settle, told it and not done with it yet. */
  owed: number;
  settled: boolean;
  /** A deliverer gave it up (NoticeSettle): never released here. */
  givenUp: boolean;
}

interface Subscriber<T> {
  listener: NoticeListener<T>;
  deliverer: boolean;
  settles: boolean;
  /** What this deliverer was told and has not settled, oldest first. */
  owes: Set<Entry<T>>;
}

const nothing = () => undefined;
/** Still to be delivered: neither settled nor taken back by its publisher. */
const open = <T>(e: Entry<T>) => !e.settled && !e.cancelled?.aborted;

/** Notices held for an edge, at most (the engine's relay, its internal edge, a bot's side of the link). */
export const HELD_NOTICES = 10_000;

/**
 * Who hears notices, and the notices held until an edge does (the engine's relay and the bot's side of the internal
 * link share it). A listener that delivers them (an edge) releases what is held, to every listener there is; an
 * observer (a test script's inbox) only watches: it neither receives nor releases held notices on its own. A notice
 * is settled once every deliverer that settles has settled it (see NoticeListening): its `release` is called then,
 * once. One dropped for room, or still held when this closes, is never released: its owner keeps it (the engine's
 * store, bounded on its own; the engine, for a bot's notice that was not acknowledged).
 */
export class Notices<T> {
  readonly #subscribers = new Set<Subscriber<T>>();
  readonly #held: Held<Entry<T>>;
  readonly #log: { warn(o: object, msg: string): void };
  /** Entries told or held and not settled, by the signal that takes them back (one a stream: one listener each). */
  readonly #cancellable = new Map<AbortSignal, Set<Entry<T>>>();

  constructor(log: { warn(o: object, msg: string): void }, max = HELD_NOTICES) {
    this.#log = log;
    this.#held = new Held<Entry<T>>(max);
  }

  subscribe(listener: NoticeListener<T>, o: NoticeListening = {}): () => void {
    const sub: Subscriber<T> = { listener, deliverer: !o.observer, settles: !o.observer && o.settles === true, owes: new Set() };
    this.#subscribers.add(sub);
    // In order, before anything published after this subscription.
    if (sub.deliverer) for (const e of this.#held.take()) if (open(e)) this.#tell(e);
    return () => {
      if (!this.#subscribers.delete(sub)) return;
      // Told and not settled (a send still queued when its edge stopped): held again, or to the deliverers still here.
      const back = [...sub.owes].filter((e) => --e.owed === 0 && open(e));
      sub.owes.clear();
      if (back.length === 0) return;
      if (this.#deliverers() > 0) for (const e of back) this.#tell(e);
      else if (this.#held.putBack(back)) this.#warnDropped();
    };
  }

  /**
   * A failing listener never blocks the others. `release`: called once the notice is settled (see the class).
   * `cancelled`: aborted when the publisher takes it back (NoticeListener): from then on it is neither released nor
   * held nor told again, and its deliverers owe nothing for it.
   */
  publish(n: T, release?: () => void, cancelled?: AbortSignal): void {
    if (cancelled?.aborted) return;
    const e: Entry<T> = { n, release, cancelled, owed: 0, settled: false, givenUp: false };
    if (cancelled) this.#track(e, cancelled);
    if (this.#deliverers() === 0) {
      if (this.#held.hold(e)) this.#warnDropped();
      return;
    }
    this.#tell(e);
  }

  /** How many wait for an edge. */
  get held(): number {
    return this.#held.size;
  }

  clear(): void {
    this.#subscribers.clear();
    this.#held.take();
    this.#cancellable.clear();
  }

  /** Forgets what is held, none of it released (its owner keeps it: the engine, for a bot that did not acknowledge it); how many. */
  dropHeld(): number {
    return this.#held.take().length;
  }

  #deliverers(): number {
    let n = 0;
    for (const s of this.#subscribers) if (s.deliverer) n++;
    return n;
  }

  #warnDropped(): void {
    this.#log.warn({ kept: this.#held.max }, "no edge has listened for notices yet: the oldest kept ones are dropped");
  }

  #track(e: Entry<T>, signal: AbortSignal): void {
    let entries = this.#cancellable.get(signal);
    if (!entries) {
      entries = new Set();
      this.#cancellable.set(signal, entries);
      signal.addEventListener("abort", () => this.#cancel(signal), { once: true });
    }
    entries.add(e);
  }

  /** Its publisher took these back: the deliverers owe nothing for them (their sends were dropped: NoticeListener). */
  #cancel(signal: AbortSignal): void {
    const entries = this.#cancellable.get(signal);
    this.#cancellable.delete(signal);
    for (const e of entries ?? []) {
      if (e.settled) continue;
      for (const s of this.#subscribers) if (s.owes.delete(e)) e.owed--;
    }
  }

  #tell(e: Entry<T>): void {
    const subs = [...this.#subscribers];
    // Every settling deliverer counted before any is told: one that settles at once must not release it for the others.
    for (const s of subs) {
      if (!s.settles) continue;
      e.owed++;
      s.owes.add(e);
    }
    for (const s of subs) {
      const settled = s.settles ? this.#settler(s, e) : nothing;
      try {
        s.listener(e.n, settled, e.cancelled);
      } catch (err) {
        // Settled all the same: told again, it would fail again.
        this.#log.warn({ err }, "notification listener failed");
        settled();
      }
    }
    if (e.owed === 0) this.#settle(e);
  }

  /**
   * `sub`'s settle function for `e`: once; after `sub` unsubscribed (or its publisher took it back) it still counts
   * (the notice was delivered late). Given up: `sub` owes nothing more for it, and it is never released.
   */
  #settler(sub: Subscriber<T>, e: Entry<T>): NoticeSettle {
    let once = false;
    return (outcome) => {
      if (once) return;
      once = true;
      const owed = sub.owes.delete(e);
      if (owed) e.owed--;
      if (outcome === "given up") {
        e.givenUp = true;
        if (e.cancelled) this.#cancellable.get(e.cancelled)?.delete(e);
        return;
      }
      if (owed && e.owed > 0) return;
      this.#settle(e);
    };
  }

  #settle(e: Entry<T>): void {
    if (e.settled) return;
    e.settled = true;
    if (e.cancelled) this.#cancellable.get(e.cancelled)?.delete(e);
    if (e.givenUp) return;
    try {
      e.release?.();
    } catch (err) {
      this.#log.warn({ err }, "releasing a settled notice failed");
    }
  }
}

/** The parts of the engine's store (db.ts) the kept notices use: its public API only. */
export type NoticeStore = Pick<EncryptedStore, "encodeOps" | "sealEncoded" | "writeRaw" | "get" | "keys">;

/** The store's namespace of kept notices: one record a notice, keyed by its number (ordered), its value sealed. */
export const NOTICES_NS = "notices";
/** Kept notices at most: what the engine holds for a bot (10,000) and what one bot has not acknowledged (10,000). */
export const MAX_KEPT_NOTICES = 20_000;
/** A write of kept notices that failed is tried again this much later (or with the next notice, if sooner). */
const RETRY_WRITE_MS = 1_000;
/** Kept notices read at once at a start. */
const LOAD_READS = 256;

const keyOf = (seq: number) => String(seq).padStart(16, "0");

/** A kept notice's record written by another write (KeptNotices.reserve). */
export interface KeptRecord {
  readonly op: StoreOp;
  /** The write carrying `op` is durable: the notice is kept until released (the returned function). */
  committed(): () => void;
}

/**
 * A record that cannot be opened (store/errors.ts: modified, sealed under a key not in the ring, not an envelope; or
 * its plaintext does not decode), as against the store failing to read (LevelDB's errors, LEVEL_*).
 */
function recordFault(err: unknown): boolean {
  if (err instanceof SyntaxError) return true;
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === "tampered" || code === "wrong_key" || code === "unknown_key_id" || code === "bad_format";
}

/**
 * The engine's notices until they are delivered, in its encrypted store (sealed values, in their own namespace,
 * ordered): written when published, deleted once delivered (the Telegram edge's send answered, or refused for good, in
 * the all-in-one shape; acknowledged by the bot in the split shape). What is left at a start was held for a bot, or
 * on its way to one, when the engine stopped or died: sent first, in order, to the first edge.
 *
 * A wallet's notice is written with the journal record whose events make it, in the same atomic batch (`reserve`): a
 * crash leaves both or neither. Other notices (a cheque's creator told it was claimed) are written later (`add`: the
 * next turn, many together), so their write never delays, fails or rolls back a command; a failed write is logged and
 * tried again, the notice still goes out from memory, and a crash before it reaches the disk (a turn and one group
 * commit, a few milliseconds) loses that notice. Deletes are always written by this class, after the put is durable. Bounded (MAX_KEPT_NOTICES): past it the oldest record is deleted, counted in a log line.
 */
export class KeptNotices<T> {
  readonly #store: NoticeStore;
  readonly #log: { warn(o: object, msg: string): void; info(o: object, msg: string): void };
  readonly max: number;
  /** Records not released, by number, oldest first. */
  readonly #live = new Set<number>();
  /** Puts waiting for the next write, and the numbers whose put was written (or tried): a delete is needed for those. */
  readonly #puts = new Map<number, T>();
  readonly #written = new Set<number>();
  readonly #dels = new Set<number>();
  #next = 1;
  #writing: Promise<void> | undefined;
  #scheduled = false;
  #retry: NodeJS.Timeout | undefined;
  #failing = false;
  #closed = false;
  /** Deleted for room since the start (a log line at the first, the total at close). */
  dropped = 0;

  constructor(store: NoticeStore, log: { warn(o: object, msg: string): void; info(o: object, msg: string): void }, max = MAX_KEPT_NOTICES) {
    this.#store = store;
    this.#log = log;
    this.max = max;
  }

  /**
   * What the last run left, oldest first, each with its release (to publish before anything new); past `max`, the
   * oldest are deleted, counted in one line. Each record is opened on its own: one that cannot be (it fails
   * authentication, is sealed under a key not in the ring, or does not decode) is deleted, counted in one line, and the
   * reading goes on. Before, the first such record stopped the reading: those after it were never sent, never counted
   * in the bound nor deleted, and each run's leftovers piled up behind it. A failure of the store itself (not of one
   * record) stops the reading there (logged): the start goes on, and the rest stay until a later start reads them.
   */
  async load(): Promise<{ n: T; release: () => void }[]> {
    const found: { seq: number; n: T }[] = [];
    const unreadable: number[] = [];
    let failure: unknown;
    let read = 0;
    try {
      // The keys first (nothing decrypted), then each value: a record's failure is that record's alone.
      const keys: string[] = [];
      for await (const k of this.#store.keys(NOTICES_NS)) keys.push(k);
      if (keys.length > 0) this.#next = Number(keys[keys.length - 1]) + 1;
      // A few hundred reads at a time (each a trip to LevelDB's thread pool), in order.
      for (let i = 0; i < keys.length; i += LOAD_READS) {
        const chunk = keys.slice(i, i + LOAD_READS);
        const got = await Promise.allSettled(chunk.map((k) => this.#store.get<T>(NOTICES_NS, k)));
        for (const [j, r] of got.entries()) {
          const seq = Number(chunk[j]);
          if (r.status === "rejected") {
            if (!recordFault(r.reason)) throw r.reason;
            failure ??= r.reason;
            unreadable.push(seq);
            continue;
          }
          read++;
          // Deleted meanwhile (not expected: nothing else writes here before the start is over).
          if (r.value !== undefined) found.push({ seq, n: r.value });
        }
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, read }, "kept notices could not all be read; those read are sent, the rest stay in the store");
    }
    for (const seq of unreadable) this.#dels.add(seq);
    // The first one's reason, as a code (the store's message for it asks for a restore: not for a notice).
    if (unreadable.length > 0) this.#log.warn({ unreadable: unreadable.length, reason: (failure as { code?: string }).code ?? "undecodable" }, "kept notices that could not be opened (modified, or sealed under a key not in the ring) are deleted, not sent");
    const over = Math.max(0, found.length - this.max);
    for (const { seq } of found.splice(0, over)) {
      this.#dels.add(seq);
    }
    if (over > 0) this.#log.warn({ dropped: over, kept: this.max }, "more notices were kept than the bound: the oldest are deleted, not sent");
    for (const { seq } of found) {
      this.#live.add(seq);
      this.#written.add(seq);
    }
    if (this.#dels.size > 0) this.#schedule();
    return found.map(({ seq, n }) => ({ n, release: () => this.#release(seq) }));
  }

  /** Keeps `n` (written with the next batch); returns its release. */
  add(n: T): () => void {
    if (this.#closed) return nothing;
    const seq = this.#next++;
    this.#live.add(seq);
    this.#puts.set(seq, n);
    this.#bound();
    this.#schedule();
    return () => this.#release(seq);
  }

  /**
   * A record for `n` that another write carries: a wallet's journal record, in the same atomic batch as the events
   * that make the notice, so no crash falls between the two (with `add`, a crash in the turn after the commit lost
   * it). `op` goes into that write; `committed()` once it is durable (or found on disk after a write whose outcome was
   * unknown): from then on the notice is kept as an added one is, and `committed` returns its release. A write that
   * failed put nothing on disk: nothing is owed, `committed` is never called. After `close` or `abandon` the record is
   * still written if its write goes ahead, and the next start sends it (it was not delivered).
   */
  reserve(n: T): KeptRecord {
    const seq = this.#next++;
    return {
      op: { type: "put", ns: NOTICES_NS, key: keyOf(seq), value: n },
      committed: () => {
        if (this.#closed) return nothing;
        this.#live.add(seq);
        this.#written.add(seq);
        this.#bound();
        return () => this.#release(seq);
      },
    };
  }

  /** Past `max`, the oldest record is deleted (counted; its delete is scheduled by the release). */
  #bound(): void {
    if (this.#live.size <= this.max) return;
    const oldest = this.#live.values().next().value!;
    this.#release(oldest);
    if (++this.dropped === 1) this.#log.warn({ kept: this.max }, "more notices wait for delivery than are kept in the store: the oldest records are deleted (those notices are not sent again after a restart)");
  }

  /** How many are kept and not released. */
  get size(): number {
    return this.#live.size;
  }

  /** Settles once what was added and released so far is written (tests; the engine's close). */
  async flushed(): Promise<void> {
    while (this.#writing || (!this.#closed && (this.#puts.size > 0 || this.#dels.size > 0))) {
      await (this.#writing ?? this.#startWrite());
      // A write that failed leaves its work queued: tried once here, not again and again.
      if (this.#failing) return;
    }
  }

  /** Writes what waits, then nothing more (the engine's clean stop; its store closes next). */
  async close(): Promise<void> {
    clearTimeout(this.#retry);
    await this.flushed().catch(() => undefined);
    this.#closed = true;
    if (this.dropped > 0) this.#log.warn({ dropped: this.dropped }, "kept notices deleted for room during this run");
  }

  /** A crash (tests, a failed start): nothing more is written; what waited to be written is lost. */
  abandon(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#puts.clear();
    this.#dels.clear();
  }

  #release(seq: number): void {
    if (!this.#live.delete(seq)) return;
    // Not written yet: nothing to write for it at all.
    this.#puts.delete(seq);
    if (this.#written.delete(seq)) this.#dels.add(seq);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    // The next turn: every notice of this one in one write, and never inside the command that made it.
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#writing && !this.#closed) void this.#startWrite();
    });
  }

  /** One write at a time: what comes meanwhile goes in the next, after it (a delete never overtakes its put). */
  #startWrite(): Promise<void> {
    const w: Promise<void> = this.#write().finally(() => {
      if (this.#writing === w) this.#writing = undefined;
    });
    this.#writing = w;
    return w;
  }

  async #write(): Promise<void> {
    while ((this.#puts.size > 0 || this.#dels.size > 0) && !this.#closed) {
      const puts = [...this.#puts];
      const dels = [...this.#dels];
      this.#puts.clear();
      this.#dels.clear();
      const ops: StoreOp[] = [
        ...puts.map(([seq, value]): StoreOp => ({ type: "put", ns: NOTICES_NS, key: keyOf(seq), value })),
        ...dels.map((seq): StoreOp => ({ type: "del", ns: NOTICES_NS, key: keyOf(seq) })),
      ];
      for (const [seq] of puts) this.#written.add(seq);
      try {
        // Sealed beside this thread when there are many (sealer.ts), as the journal's group commits are.
        await this.#store.writeRaw(await this.#store.sealEncoded(this.#store.encodeOps(ops)));
        if (this.#failing) {
          this.#failing = false;
          this.#log.info({}, "kept notices are written again");
        }
      } catch (err) {
        if (this.#closed) return;
        // Queued again (a put may have reached the disk after all: its delete is queued when it is released, as for
        // one written), for the next write: with the next notice, or in a second.
        for (const [seq, value] of puts) if (this.#live.has(seq)) this.#puts.set(seq, value);
        for (const seq of dels) this.#dels.add(seq);
        if (!this.#failing) this.#log.warn({ err: (err as Error).message }, "kept notices could not be written (they are still sent from memory, but not after a restart until a write succeeds); tried again");
        this.#failing = true;
        clearTimeout(this.#retry);
        this.#retry = setTimeout(() => this.#schedule(), RETRY_WRITE_MS);
        this.#retry.unref();
        return;
      }
    }
  }
}
