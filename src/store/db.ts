// The encrypted store: LevelDB (classic-level through `level`) where every value is an AES-256-GCM envelope
// bound to its namespace and key. Record keys are `ns \0 key`; keys that would reveal something (addresses,
// outpoints, cheque codes) go through `mac()` first, an HMAC under a random index key kept sealed in the store.
import { createHmac, randomBytes } from "node:crypto";
import { readdirSync, statSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { Level } from "level";
import { decode, encode, encodeText } from "./codec.ts";
import { keyIdOf, open as openEnvelope, seal } from "./envelope.ts";
import { StoreError } from "./errors.ts";
import type { KeyRing } from "./keyring.ts";
import { Sealer, type EncodedOp } from "./sealer.ts";

export const META = "_meta";
const NS_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const SEP = "\u0000";
const CANARY = "runigun-store-canary-v1";
const TIMELINE = "timeline";

export type StoreOp =
  | { type: "put"; ns: string; key: string; value: unknown }
  | { type: "del"; ns: string; key: string }
  /**
   * A record whose presence is all it says (an id already used, a wallet with unfinished work): its key, which must
   * name nothing in the clear (an HMAC, a user key), and an empty value, so there is nothing to encode or seal. Read
   * it with `hasSync` or `keys`; `get` and `iterate` refuse it (a sealed value is never empty).
   */
  | { type: "mark"; ns: string; key: string };

/** A write as it goes to disk (sealed), for listeners such as continuous backup. */
export interface RawOp {
  type: "put" | "del";
  key: string;
  value?: Buffer;
}

export interface Range {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  reverse?: boolean;
  limit?: number;
}

export interface StoreOptions {
  path: string;
  keyring: KeyRing;
  /** fsync every write (default). Turning it off trades durability for speed; tests and benches only. */
  sync?: boolean;
  /** Batches of at least this many values, sealed while the thread is busy, go to a worker (`sealEncoded`; default 64). */
  sealInWorkerFrom?: number;
}

/** Called after each durable write with its commit position and its sealed operations (continuous backup). */
export type WriteListener = (position: number, ops: readonly RawOp[]) => void;

/**
 * Whether writes reach the disk: a failed batch (a full disk, an I/O error) leaves `failing` set until a batch
 * succeeds again, or the store reopens its database with nothing waiting to be written (see #drain). Its writers got a
 * `write_failed` error saying whether it is known not to be on disk.
 */
export interface WriteHealth {
  failing: boolean;
  failures: number;
  lastError?: { at: number; message: string };
}

/** The record holding the last commit position; written in every batch, so a snapshot knows where it stands. */
export const POSITION_KEY = META + SEP + "position";

/**
 * Running sums over records (the wallets' balance parts), kept by the store itself: a write may carry what it adds
 * to them, and a batch that changes them records the new sums beside its position, in the same atomic write. So the
 * sums always match the records they sum, whatever crashes, and reading them costs nothing (summing a million
 * balance records took ~15 s).
 */
export type Sums = Readonly<Record<string, bigint>>;
const SUMS = "sums";
const SUMS_KEY = META + SEP + SUMS;

/** `a` plus `b`, part by part; `b` may be undefined. */
export function addSums(a: Sums, b: Sums | undefined): Sums {
  if (b === undefined) return a;
  const out: Record<string, bigint> = { ...a };
  for (const k in b) out[k] = (out[k] ?? 0n) + b[k]!;
  return out;
}

interface QueuedWrite {
  ops: RawOp[];
  add: Sums | undefined;
  /** The store's epoch its writer read the disk in (see `epoch`); undefined: written whatever happened since. */
  epoch: number | undefined;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class EncryptedStore {
  readonly db: Level<string, Uint8Array>;
  readonly keyring: KeyRing;
  readonly sync: boolean;
  #indexKey: Buffer = Buffer.alloc(0);
  readonly #macKeys = new Map<string, Buffer>();
  /** One writer: batches queued while one is on its way to disk share the next (group commit for everyone). */
  #queue: QueuedWrite[] = [];
  #writing = false;
  #idle: Promise<void> = Promise.resolve();
  #position = 0;
  #sums: Sums = {};
  /** A write failed: the database must be reopened before anything else is written (see #drain). */
  #mustReopen = false;
  #reopenTimer: NodeJS.Timeout | undefined;
  #closing = false;
  readonly #settledListeners = new Set<(landed: boolean) => void>();
  readonly #openWaiters: Array<() => void> = [];
  #epoch = 0;
  #readers = 0;
  #noReaders: (() => void) | undefined;
  #reopening: Promise<void> | undefined;
  readonly #path: string;
  /**
   * Free bytes on the store's disk (statfs). A reopen is tried only with room for LevelDB's recovery: one that fails
   * leaves the database closed, reads included, where waiting keeps it open for reads. Tests set it to simulate a
   * full disk.
   */
  freeBytes: () => number = () => {
    const f = statfsSync(this.#path);
    return Number(f.bavail) * Number(f.bsize);
  };
  /** The failed batch whose fate is not known yet (it may be on disk): settled by the next successful reopen. */
  #unsure: { position: number; ops: RawOp[]; sums: Sums; told?: true } | undefined;
  #timeline = "";
  readonly #listeners = new Set<WriteListener>();
  readonly #healthListeners = new Set<(health: WriteHealth) => void>();
  readonly writeHealth: WriteHealth = { failing: false, failures: 0 };
  readonly sealer: Sealer;

  /**
   * LevelDB's settings for a store whose values are ciphertext. Compression off: sealed values never compress, and
   * compressing them was wasted work at every flush and compaction. A 16 MB write buffer (the default is 4 MB; two
   * may be in memory at once): fewer, larger level-0 files, and records rewritten less often by compaction. In
   * `npm run bench:write-rounds` (bench/README.md, "write"), the fourth round of 20,000 transfers on a growing store
   * took 150–160 µs of CPU per transfer instead of 175–204, most of the saving compaction's.
   */
  static readonly levelOptions = Object.freeze({ compression: false, writeBufferSize: 16 * 1024 * 1024 });

  private constructor(o: StoreOptions) {
    this.db = new Level<string, Uint8Array>(o.path, { keyEncoding: "utf8", valueEncoding: "view" });
    this.#path = o.path;
    this.keyring = o.keyring;
    this.sync = o.sync ?? true;
    this.sealer = new Sealer({ dataKey: o.keyring.dataKey("store"), keyId: o.keyring.current, workerFrom: o.sealInWorkerFrom });
  }

  /** Opens (or creates) a store; a wrong master key is refused here, before anything is read or written. */
  static async open(o: StoreOptions): Promise<EncryptedStore> {
    const s = new EncryptedStore(o);
    await s.db.open(EncryptedStore.levelOptions);
    try {
      await s.#checkCanary();
      const pos = await s.db.get(POSITION_KEY);
      if (pos !== undefined) s.#position = s.openValue<number>(META, "position", pos);
      s.#sums = (await s.get<Sums>(META, SUMS)) ?? {};
      const timeline = await s.get<string>(META, TIMELINE);
      if (timeline) s.#timeline = timeline;
      else await s.newTimeline();
    } catch (e) {
      // The whole store: its sealer, and a reopen timer a failed first write may have armed.
      await s.close();
      throw e;
    }
    return s;
  }

  static recordKey(ns: string, key: string): string {
    if (!NS_RE.test(ns)) throw new StoreError("bad_input", `invalid namespace "${ns}"`);
    if (key.length === 0 || key.length > 512) throw new StoreError("bad_input", `a record key in "${ns}" must be 1 to 512 characters`);
    return ns + SEP + key;
  }

  /** Seals a value for a record: exposed for the journal's batches. */
  sealValue(ns: string, key: string, value: unknown): Buffer {
    return seal(this.keyring.dataKey("store"), this.keyring.current, ns, key, encode(value));
  }

  openValue<T>(ns: string, key: string, sealed: Uint8Array): T {
    const keyId = keyIdOf(sealed, ns);
    return decode<T>(openEnvelope(this.keyring.dataKey("store", keyId), ns, key, sealed));
  }

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const raw = await this.db.get(EncryptedStore.recordKey(ns, key));
    return raw === undefined ? undefined : this.openValue<T>(ns, key, raw);
  }

  /**
   * A read on the calling thread, for small lookups on a hot path (a transfer id in a wallet's index): LevelDB's
   * bloom filters answer a miss from memory, and it skips the thread-pool round trip of `get`, which the
   * fsyncs of group commit share. Not for scans or large values.
   */
  getSync<T>(ns: string, key: string): T | undefined {
    const raw = this.db.getSync(EncryptedStore.recordKey(ns, key));
    return raw === undefined ? undefined : this.openValue<T>(ns, key, raw);
  }

  /** Whether a record is there, on the calling thread, without opening it (a mark: see StoreOp). */
  hasSync(ns: string, key: string): boolean {
    return this.db.getSync(EncryptedStore.recordKey(ns, key)) !== undefined;
  }

  put(ns: string, key: string, value: unknown): Promise<void> {
    return this.batch([{ type: "put", ns, key, value }]);
  }

  del(ns: string, key: string): Promise<void> {
    return this.batch([{ type: "del", ns, key }]);
  }

  /**
   * Atomic: all or nothing, one fsync. `epoch`: the store's epoch (see `epoch`) in which the caller read what these
   * writes are built on (the last number of a numbered log); refused, nothing written, if a write of unknown fate has
   * turned up on disk since — it may be what the read missed.
   */
  async batch(ops: StoreOp[], epoch?: number): Promise<void> {
    await this.writeRaw(this.sealer.sealHere(this.encodeOps(ops)), undefined, epoch);
  }

  /**
   * Checks and encodes operations now, on the caller's turn (a bad key or value fails this caller alone), for
   * `sealEncoded` to seal later — the journal's group commits, sealed beside this thread.
   */
  encodeOps(ops: StoreOp[]): EncodedOp[] {
    return ops.map((op) => {
      const key = EncryptedStore.recordKey(op.ns, op.key);
      return op.type === "put" ? { type: "put", key, text: encodeText(op.value) } : { type: op.type, key };
    });
  }

  /**
   * Seals encoded operations under the current key, in order. `offThread`: the calling thread is busy, a large
   * batch goes to the sealing worker (sealer.ts).
   */
  sealEncoded(ops: EncodedOp[], offThread = true): Promise<RawOp[]> {
    return this.sealer.seal(ops, offThread);
  }

  /**
   * Writes sealed operations atomically. Writes are applied one batch at a time, in commit-position order;
   * writes that arrive while one is on its way to disk are merged into the next batch (one fsync for all).
   * Each batch also records its position (and the new sums when a write adds to them: `add`), and listeners see
   * exactly what reached the disk, in order.
   */
  writeRaw(ops: RawOp[], add?: Sums, epoch?: number): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ ops, add, epoch, resolve, reject });
      if (!this.#writing) this.#idle = this.#drain();
    });
  }

  /**
   * The store's history id: commit positions are only comparable within one timeline. A restore starts a new
   * one, so journal segments shipped after it never mix with segments of the history it replaced.
   */
  get timeline(): string {
    return this.#timeline;
  }

  async newTimeline(): Promise<string> {
    const t = randomBytes(6).toString("hex");
    await this.put(META, TIMELINE, t);
    this.#timeline = t;
    return t;
  }

  /** The position of the last durable write (0 for a new store). */
  get position(): number {
    return this.#position;
  }

  /** The running sums as of the last durable write (see `Sums`). */
  get sums(): Sums {
    return this.#sums;
  }

  /**
   * Sets the sums outright, in one batch with `ops` (a store upgrade that has just counted the records). Nothing
   * else may add to them meanwhile: call it before the writers start.
   */
  async resetSums(sums: Sums, ops: StoreOp[] = []): Promise<void> {
    await this.batch([...ops, { type: "put", ns: META, key: SUMS, value: sums }]);
    this.#sums = sums;
  }

  onWrite(listener: WriteListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called when writes start failing and when they can succeed again (`writeHealth.failing` tells which). */
  onWriteHealth(listener: (health: WriteHealth) => void): () => void {
    this.#healthListeners.add(listener);
    return () => this.#healthListeners.delete(listener);
  }

  #setFailing(e: unknown): void {
    const h = this.writeHealth;
    h.failures++;
    h.lastError = { at: Date.now(), message: e instanceof Error ? e.message : String(e) };
    if (h.failing) return;
    h.failing = true;
    this.#tellHealth();
  }

  #tellHealth(): void {
    for (const l of this.#healthListeners) {
      try {
        l(this.writeHealth);
      } catch {
        // A listener (logging, alerting) must not stop the writer.
      }
    }
  }

  /**
   * The one writer. After a failed write, LevelDB must not be written again through the same handle: it goes on
   * appending to its log out of step with the log's blocks (a failed append still moves its offset), and the next
   * open's recovery silently drops the records written after it — acknowledged ones included; after a failed fsync
   * it refuses every write. So a failure reopens the database first (its recovery keeps what reached the log and drops
   * a torn tail), and the store's position then tells whether the failed batch is on disk. Until a reopen succeeds
   * (the disk still full: tried at each write, and every second), every write is refused; reads go on meanwhile.
   */
  async #drain(): Promise<void> {
    this.#writing = true;
    if (this.#mustReopen && !this.#closing && (await this.#reopen()) !== "failed" && this.#queue.length === 0 && this.writeHealth.failing) {
      // Reopened with nothing waiting to be written (the reopen timer): the store can write again, and the batch whose
      // fate was unknown is settled (its position counted if it landed), so the disk and the position agree. Said now,
      // not at the next write: the outboxes waiting for it (engine.ts) must not wait for unrelated traffic. With a
      // write waiting, its own outcome says it.
      this.writeHealth.failing = false;
      this.#tellHealth();
    }
    while (this.#queue.length > 0) {
      let batch = this.#queue;
      this.#queue = [];
      if (this.#mustReopen || this.#closing) {
        const why = this.#closing ? "the store is closed" : `the store cannot be written (${this.writeHealth.lastError?.message ?? "unknown error"})`;
        const e = new StoreError("write_failed", `${why}; nothing was written`, { written: "no" });
        for (const w of batch) w.reject(e);
        continue;
      }
      // Built on a read of the disk from before a failed batch was found on it (a journal's sequence numbers): written
      // now, it could take that batch's numbers again. Not written; its writers read again and retry.
      const stale = (w: QueuedWrite) => w.epoch !== undefined && w.epoch !== this.#epoch;
      if (batch.some(stale)) {
        const e = new StoreError("write_failed", "an earlier write turned out to be on disk when the store reopened, and this one was built without it; nothing was written", { written: "no" });
        for (const w of batch) if (stale(w)) w.reject(e);
        batch = batch.filter((w) => !stale(w));
        if (batch.length === 0) continue;
      }
      const position = this.#position + 1;
      const ops = batch.length === 1 ? [...batch[0]!.ops] : batch.flatMap((w) => w.ops);
      let sums = this.#sums;
      for (const w of batch) sums = addSums(sums, w.add);
      if (sums !== this.#sums) ops.push({ type: "put", key: SUMS_KEY, value: this.sealValue(META, SUMS, sums) });
      ops.push({ type: "put", key: POSITION_KEY, value: this.sealValue(META, "position", position) });
      try {
        await writeBatch(this.db, ops, this.sync);
      } catch (e) {
        if (this.#closing) {
          // Failed while the store closes (a shutdown, a simulated crash): nothing is reopened, so nothing settles
          // whether the batch reached the log before it failed — the next open's recovery keeps it or drops it. Its
          // writers must not be told it is not there (a caller told "nothing was done" may do it again).
          const err = new StoreError("write_failed", `a write failed while the store was closing (${e instanceof Error ? e.message : String(e)}); whether it reached the disk is known only at the next start`, { cause: e, written: "unknown" });
          for (const w of batch) w.reject(err);
          continue;
        }
        this.#setFailing(e);
        this.#mustReopen = true;
        this.#unsure = { position, ops, sums };
        // A batch is atomic: after a reopen, the position on disk says whether it is there.
        const settled = await this.#reopen();
        if (settled === "landed") {
          this.writeHealth.failing = false;
          this.#tellHealth();
          for (const w of batch) w.resolve();
          continue;
        }
        const known = settled === "absent";
        const written = known ? "no" : "unknown";
        // Its writers are told it may not be on disk: whoever reads the disk from now on may read it without it.
        if (!known) this.#unsure!.told = true;
        const err = new StoreError("write_failed", `a write failed (${e instanceof Error ? e.message : String(e)}); ${known ? "nothing of it is on disk" : "whether it reached the disk is not known until the store can be reopened"}`, { cause: e, written });
        for (const w of batch) w.reject(err);
        continue;
      }
      if (this.writeHealth.failing) {
        this.writeHealth.failing = false;
        this.#tellHealth();
      }
      this.#durable(position, ops, sums);
      for (const w of batch) w.resolve();
    }
    this.#writing = false;
    if (this.#mustReopen && !this.#reopenTimer && !this.#closing) {
      this.#reopenTimer = setTimeout(() => {
        this.#reopenTimer = undefined;
        if (!this.#writing && !this.#closing) this.#idle = this.#drain();
      }, 1000);
    }
  }

  /** What LevelDB's recovery writes at most: its logs' size again (as a table; values are not compressed), and 4 MB. */
  #recoveryRoom(): number {
    let logs = 0;
    for (const f of readdirSync(this.#path)) if (f.endsWith(".log")) logs += statSync(join(this.#path, f)).size;
    return logs + 4 * 1024 * 1024;
  }

  #durable(position: number, ops: RawOp[], sums: Sums): void {
    this.#position = position;
    this.#sums = sums;
    for (const l of this.#listeners) {
      try {
        l(position, ops);
      } catch {
        // A listener (backup shipping) must never fail a write that is already durable; it reports its own errors.
      }
    }
  }

  /**
   * Closes and opens the database again (LevelDB's recovery), then settles the batch whose write failed: on disk
   * (the position there is its own), it counts as written, listeners included ("landed"); else it is gone for good
   * ("absent": recovery dropped it; a later open cannot bring it back). "failed" while the database cannot be opened.
   * Those waiting for the store to be readable again (whenOpen) go on once it is.
   */
  async #reopen(): Promise<"failed" | "landed" | "absent"> {
    if (this.#closing) return "failed";
    try {
      // Room for recovery (a table of what the logs hold, a new log, a manifest): else wait, open for reads.
      if (this.db.status === "open" && this.freeBytes() < this.#recoveryRoom()) return "failed";
    } catch {
      // No statfs here: try.
    }
    let done!: () => void;
    this.#reopening = new Promise<void>((r) => (done = r));
    try {
      if (this.#readers > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          new Promise<void>((r) => (this.#noReaders = r)),
          new Promise<void>((r) => (timer = setTimeout(r, 10_000))),
        ]);
        clearTimeout(timer);
        this.#noReaders = undefined;
      }
      if (this.db.status === "open") await this.db.close();
      await this.db.open(EncryptedStore.levelOptions);
    } catch (e) {
      this.#setFailing(e);
      return "failed";
    } finally {
      this.#reopening = undefined;
      done();
    }
    this.#mustReopen = false;
    for (const w of this.#openWaiters.splice(0)) w();
    const unsure = this.#unsure;
    this.#unsure = undefined;
    if (!unsure) return "absent";
    const raw = this.db.getSync(POSITION_KEY);
    const onDisk = raw === undefined ? 0 : this.openValue<number>(META, "position", raw);
    const landed = onDisk === unsure.position;
    if (landed) {
      this.#durable(unsure.position, unsure.ops, unsure.sums);
      // Only a batch whose writers were told it may not be written could have been read around meanwhile; one found at
      // once (the reopen right after its failure) was not, and the writes queued behind it stay good.
      if (unsure.told) this.#epoch++;
    }
    for (const l of this.#settledListeners) {
      try {
        l(landed);
      } catch {
        // A listener must not stop the writer.
      }
    }
    return landed ? "landed" : "absent";
  }

  /**
   * Told when a batch whose fate was not known (a failed write, then no room to reopen) is settled by a reopen:
   * `landed` if it is on disk after all — its writers were told it may not be, and whoever read the disk meanwhile
   * (a journal, an actor's replay) read it without the batch.
   */
  onUnsureSettled(listener: (landed: boolean) => void): () => void {
    this.#settledListeners.add(listener);
    return () => this.#settledListeners.delete(listener);
  }

  /**
   * Undefined while the store can be read; else resolves once it can again (reopened after a failure). Never, once it
   * is closing: a replay against a closed store would only crash again, at once.
   */
  whenOpen(): Promise<void> | undefined {
    if (this.#closing) return new Promise<void>(() => undefined);
    if (this.db.status === "open") return undefined;
    return new Promise<void>((resolve) => this.#openWaiters.push(resolve));
  }

  /**
   * Goes up each time a batch whose fate was not known is found on disk by a reopen: a writer that read the disk in an
   * older epoch (a journal claiming sequence numbers) may have read it without that batch; its writes are refused.
   */
  get epoch(): number {
    return this.#epoch;
  }

  /** Decrypted records of one namespace, in key order. */
  async *iterate<T>(ns: string, range: Range = {}): AsyncGenerator<[string, T]> {
    const prefix = EncryptedStore.recordKey(ns, "x").slice(0, -1);
    await this.#enterRead();
    try {
      for await (const [k, v] of this.db.iterator(this.#bounds(prefix, range))) {
        const key = k.slice(prefix.length);
        yield [key, this.openValue<T>(ns, key, v)];
      }
    } finally {
      this.#leaveRead();
    }
  }

  /** Keys of one namespace without decrypting anything. */
  async *keys(ns: string, range: Range = {}): AsyncGenerator<string> {
    const prefix = EncryptedStore.recordKey(ns, "x").slice(0, -1);
    await this.#enterRead();
    try {
      for await (const k of this.db.keys(this.#bounds(prefix, range))) yield k.slice(prefix.length);
    } finally {
      this.#leaveRead();
    }
  }

  /**
   * The read gate around a reopen (#reopen): a reader starting meanwhile waits for it, and the reopen waits for the
   * readers already going (10 s at most) — closing LevelDB would close their iterators under them.
   */
  async #enterRead(): Promise<void> {
    while (this.#reopening) await this.#reopening;
    this.#readers++;
  }

  #leaveRead(): void {
    if (--this.#readers === 0) this.#noReaders?.();
  }

  /**
   * A stable pseudonym for something private (an address, an outpoint, a cheque code): HMAC-SHA256 under the
   * store's index key and the purpose, base64url. The same input always maps to the same record key.
   */
  mac(purpose: string, data: string): string {
    let k = this.#macKeys.get(purpose);
    if (!k) {
      k = createHmac("sha256", this.#indexKey).update(`purpose:${purpose}`).digest();
      this.#macKeys.set(purpose, k);
    }
    return createHmac("sha256", k).update(data).digest("base64url");
  }

  /** Drops old table files so deleted or re-encrypted values leave the disk (NOTES: LevelDB keeps them). */
  async compact(): Promise<void> {
    // `level` resolves to classic-level on Node, which has compactRange; its union type does not say so.
    await (this.db as unknown as { compactRange(start: string, end: string): Promise<void> }).compactRange("", "\uffff");
  }

  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#reopenTimer);
    // Those waiting for a reopen are left waiting: the store will not be read again.
    this.#openWaiters.splice(0);
    await this.sealer.close();
    await this.#idle;
    if (this.db.status === "open") await this.db.close();
  }

  #bounds(prefix: string, r: Range) {
    const o: { gt?: string; gte?: string; lt?: string; lte?: string; reverse?: boolean; limit?: number } = {};
    if (r.gt !== undefined) o.gt = prefix + r.gt;
    else if (r.gte !== undefined) o.gte = prefix + r.gte;
    else o.gte = prefix;
    if (r.lt !== undefined) o.lt = prefix + r.lt;
    else if (r.lte !== undefined) o.lte = prefix + r.lte;
    else o.lt = prefix.slice(0, -1) + String.fromCharCode(SEP.charCodeAt(0) + 1);
    if (r.reverse) o.reverse = true;
    if (r.limit !== undefined) o.limit = r.limit;
    return o;
  }

  async #checkCanary(): Promise<void> {
    const key = EncryptedStore.recordKey(META, "canary");
    const raw = await this.db.get(key);
    if (raw === undefined) {
      const existing = await this.db.keys({ limit: 1 }).all();
      if (existing.length > 0) throw new StoreError("bad_format", "this directory holds a LevelDB that is not a RuniGun store (no canary record); refusing to write into it");
      this.#indexKey = randomBytes(32);
      await this.batch([
        { type: "put", ns: META, key: "canary", value: CANARY },
        { type: "put", ns: META, key: "index-key", value: this.#indexKey.toString("base64") },
      ]);
      return;
    }
    const keyId = keyIdOf(raw, META);
    if (!this.keyring.has(keyId)) {
      throw new StoreError("unknown_key_id", `this store was sealed under master key ${keyId}, which the given key ring does not have — check RUNIGUN_MASTER_KEY_FILE`);
    }
    let canary: string;
    try {
      canary = this.openValue<string>(META, "canary", raw);
    } catch {
      throw new StoreError("wrong_key", `the master key does not open this store (key id ${keyId}) — check RUNIGUN_MASTER_KEY_FILE`);
    }
    if (canary !== CANARY) throw new StoreError("tampered", "the store's canary record holds an unexpected value");
    const index = await this.get<string>(META, "index-key");
    if (!index) throw new StoreError("tampered", "the store's index key record is missing");
    this.#indexKey = Buffer.from(index, "base64");
  }
}

/**
 * One atomic LevelDB write of raw operations. A chained batch, not an array: abstract-level clones, validates and
 * re-encodes each operation of an array batch in JavaScript (about 15 µs each, measured), where a chained batch
 * hands each to the native WriteBatch at once (about 2 µs) — at thousands of operations per group commit (or per
 * restored archive chunk), that is most of the write's cost.
 */
export async function writeBatch(db: Level<string, Uint8Array>, ops: readonly RawOp[], sync: boolean): Promise<void> {
  const batch = db.batch();
  try {
    for (const op of ops) {
      if (op.type === "put") batch.put(op.key, op.value!);
      else batch.del(op.key);
    }
  } catch (e) {
    await batch.close();
    throw e;
  }
  await batch.write({ sync });
}
