// Seals the journal's group commits off the engine's thread while it is busy. Encoding a value (JSON) needs the
// object and stays with the writer; AES-GCM needs only bytes, and at hundreds of records per commit it was a sixth
// of a durable command's CPU (bench/README.md, "write"). A batch asked `offThread` with `workerFrom` values or more
// goes to one worker thread as one message (plaintexts back to back, handed over without a copy) and comes back
// the same way. Other batches are sealed here: when the thread has nothing else to do, the round trip only adds
// latency (a block's deposits were credited at half the speed with every batch on the worker). Both run
// envelope-core.mjs.
import { Worker } from "node:worker_threads";
import { HEADER, seal, TAG } from "./envelope-core.mjs";
import { StoreError } from "./errors.ts";

/**
 * A write with its value encoded (JSON text, sealed as UTF-8) and not yet sealed; `key` is the record key (`ns \0 key`).
 * A mark (db.ts, StoreOp) has no value: it goes to disk as a put of an empty one, unsealed.
 */
export interface EncodedOp {
  type: "put" | "del" | "mark";
  key: string;
  text?: string;
}

/** What a mark stores: nothing (LevelDB copies it). */
const MARK_VALUE = Buffer.alloc(0);

/** A write with nothing to seal (a delete or a mark) as it goes to disk. */
const unsealed = (op: EncodedOp): SealedOp => (op.type === "mark" ? { type: "put", key: op.key, value: MARK_VALUE } : { type: "del", key: op.key });

/** The same write sealed, as it goes to disk. */
export interface SealedOp {
  type: "put" | "del";
  key: string;
  value?: Buffer;
}

export interface SealerOptions {
  dataKey: Uint8Array;
  keyId: number;
  /** Batches with at least this many values are sealed by the worker (default 64). */
  workerFrom?: number;
}

interface Request {
  ops: EncodedOp[];
  resolve: (ops: SealedOp[]) => void;
  reject: (e: unknown) => void;
}

export class Sealer {
  readonly #o: SealerOptions;
  readonly #pending = new Map<number, Request>();
  readonly #inFlight = new Set<Promise<SealedOp[]>>();
  #worker: Worker | undefined;
  #seq = 0;
  #closed = false;
  readonly stats = { inline: 0, offThread: 0 };

  constructor(o: SealerOptions) {
    this.#o = o;
  }

  /**
   * Seals the values of `ops`, in order; deletes pass through. `offThread`: the caller's thread has more to do
   * meanwhile, so a large batch goes to the worker.
   */
  seal(ops: EncodedOp[], offThread = true): Promise<SealedOp[]> {
    let values = 0;
    for (const op of ops) if (op.text !== undefined) values++;
    // Sealed here unless the worker still has earlier batches: answers keep the order of requests.
    if (this.#pending.size === 0 && (!offThread || values < (this.#o.workerFrom ?? 64) || this.#closed)) {
      try {
        return Promise.resolve(this.sealHere(ops));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    // Closing: nothing more goes to the worker (it is about to end); sealed here once the earlier batches are back.
    if (this.#closed) return this.#track(Promise.allSettled([...this.#inFlight]).then(() => this.sealHere(ops)));
    this.stats.offThread++;
    // One message: the record keys as one string with their lengths, the values' UTF-8 back to back with theirs.
    const keys: string[] = new Array(values);
    const keyLengths = new Uint32Array(values);
    const lengths = new Uint32Array(values);
    let total = 0, n = 0;
    for (const op of ops) {
      if (op.text === undefined) continue;
      keys[n] = op.key;
      keyLengths[n] = op.key.length;
      total += lengths[n] = Buffer.byteLength(op.text, "utf8");
      n++;
    }
    // Its own ArrayBuffer (not Buffer's shared pool), so it can be handed to the worker without a copy.
    const plain = Buffer.from(new ArrayBuffer(total));
    let at = 0;
    for (const op of ops) if (op.text !== undefined) at += plain.write(op.text, at, "utf8");
    const sealed = new Promise<SealedOp[]>((resolve, reject) => {
      const id = ++this.#seq;
      this.#pending.set(id, { ops, resolve, reject });
      const w = this.#start();
      w.ref();
      w.postMessage({ id, keys: keys.join(""), keyLengths, plain: plain.buffer, lengths }, [plain.buffer, keyLengths.buffer, lengths.buffer]);
    });
    return this.#track(sealed);
  }

  #track(sealed: Promise<SealedOp[]>): Promise<SealedOp[]> {
    this.#inFlight.add(sealed);
    const done = () => void this.#inFlight.delete(sealed);
    sealed.then(done, done);
    return sealed;
  }

  /** Waits for the batches being sealed, then ends the worker. Later batches are sealed on the calling thread. */
  async close(): Promise<void> {
    this.#closed = true;
    // Batches asked meanwhile are sealed here, after the ones before them: wait for those too.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }

  /** The worker thread while there is one (tests, diagnostics). */
  get worker(): Worker | undefined {
    return this.#worker;
  }

  /** Seals on the calling thread, now (the store's own small batches, and what `seal` keeps here). */
  sealHere(ops: EncodedOp[]): SealedOp[] {
    this.stats.inline++;
    return ops.map((op) => {
      if (op.text === undefined) return unsealed(op);
      const sep = op.key.indexOf("\u0000");
      return { type: "put", key: op.key, value: seal(this.#o.dataKey, this.#o.keyId, op.key.slice(0, sep), op.key.slice(sep + 1), Buffer.from(op.text, "utf8")) };
    });
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const w = new Worker(new URL("./seal-worker.mjs", import.meta.url), { workerData: { dataKey: Uint8Array.from(this.#o.dataKey), keyId: this.#o.keyId } });
    w.on("message", (m: { id: number; sealed?: ArrayBuffer; lengths?: Uint32Array; error?: string }) => {
      const r = this.#pending.get(m.id);
      if (!r) return;
      this.#pending.delete(m.id);
      // An idle worker must not keep the process alive; a busy one must.
      if (this.#pending.size === 0) w.unref();
      if (!m.sealed) return r.reject(new StoreError("seal_failed", `sealing a batch failed: ${m.error}`));
      const out: SealedOp[] = new Array(r.ops.length);
      let at = 0, v = 0;
      for (let i = 0; i < r.ops.length; i++) {
        const op = r.ops[i]!;
        if (op.text === undefined) {
          out[i] = unsealed(op);
          continue;
        }
        const n = HEADER + m.lengths![v++]! + TAG;
        out[i] = { type: "put", key: op.key, value: Buffer.from(m.sealed, at, n) };
        at += n;
      }
      r.resolve(out);
    });
    const fail = (e: unknown) => {
      if (this.#worker === w) this.#worker = undefined;
      const error = e instanceof Error ? e : new StoreError("seal_failed", `the sealing worker stopped (${String(e)})`);
      for (const r of this.#pending.values()) r.reject(error);
      this.#pending.clear();
    };
    w.on("error", fail);
    w.on("exit", (code) => {
      if (this.#worker === w) fail(new StoreError("seal_failed", `the sealing worker exited with code ${code}`));
    });
    this.#worker = w;
    return w;
  }
}
