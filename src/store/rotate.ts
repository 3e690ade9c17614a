// Key rotation: re-encrypts every record under the key ring's current key, in atomic batches that also
// record how far they got, so an interrupted rotation resumes where it stopped. Compacts at the end so
// the old ciphertext leaves the disk (LevelDB keeps overwritten values in older table files otherwise).
import { EncryptedStore, META, type RawOp } from "./db.ts";
import { keyIdOf } from "./envelope.ts";

export interface RotationProgress {
  rotated: number;
  skipped: number;
  done: boolean;
}

export interface RotateOptions {
  batchSize?: number;
  /** Called after each durable batch (tests interrupt here). */
  onBatch?: (p: RotationProgress) => void;
  /**
   * The rotation's last step, after every record is re-sealed and the old ciphertext compacted away, before the cursor
   * is removed (`runigun keys rotate` retires the old keys in the ring file here): a crash before it is done still
   * leaves the rotation cut short, said at every start until `--resume` finishes it.
   */
  beforeDone?: () => void | Promise<void>;
}

/** The rotation cursor: how far a rotation to key `to` got; `restoredUnder`, written by a restore (markForReseal). */
interface Cursor {
  to: number;
  after: string;
  restoredUnder?: number[];
}

const SEP = "\u0000";
const CURSOR_KEY = EncryptedStore.recordKey(META, "rotation");

/**
 * The key a rotation was moving the store to, when it was cut short (a crash, Ctrl-C) and not resumed: part of the
 * store is still sealed under the older key, which a rotation after a leak means to leave behind.
 */
export async function rotationCutShort(store: EncryptedStore): Promise<number | undefined> {
  return (await resealPending(store))?.to;
}

/**
 * What the start says must be re-sealed: a rotation cut short, or a restore that brought back records sealed under
 * older keys (`restoredUnder`: their ids), both finished by `runigun keys rotate --resume`.
 */
export async function resealPending(store: EncryptedStore): Promise<{ to: number; restoredUnder?: number[] } | undefined> {
  const c = await store.get<Cursor>(META, "rotation");
  return c && { to: c.to, ...(c.restoredUnder?.length ? { restoredUnder: c.restoredUnder } : {}) };
}

/**
 * A restored store holds records sealed under `keyIds`, older keys than the ring's current one (an archive made before
 * a rotation, restored with --allow-retired-key): a rotation to the current key is recorded as started and not
 * finished, so the start raises its alert until `runigun keys rotate --resume` re-seals them all.
 */
export async function markForReseal(store: EncryptedStore, keyIds: readonly number[]): Promise<void> {
  const cursor: Cursor = { to: store.keyring.current, after: "", restoredUnder: [...keyIds] };
  await store.put(META, "rotation", cursor);
}

/**
 * Records a rotation to key `to` as started, in the store while it is still open with the ring that lacks that key:
 * `runigun keys rotate` does this before the ring file gets the key, so a kill at any point after it (before the first
 * re-sealed batch included) leaves the cursor, and every start says the rotation was cut short until `--resume`
 * finishes it. Replaces a cursor already there (a rotation cut short, a restore's): the new rotation re-seals everything.
 */
export async function beginRotation(store: EncryptedStore, to: number): Promise<void> {
  const cursor: Cursor = { to, after: "" };
  await store.put(META, "rotation", cursor);
}

/**
 * The key of a rotation recorded as started (beginRotation) that never reached the ring file: the command was stopped
 * between the two, and nothing is sealed under that key — the first re-sealed batch moves `after` on, in a cursor sealed
 * under the new key, which a ring without it could not read. Undefined for any other store.
 */
export async function rotationWithoutKey(store: EncryptedStore): Promise<number | undefined> {
  const c = await store.get<Cursor>(META, "rotation");
  return c && c.after === "" && !store.keyring.has(c.to) ? c.to : undefined;
}

export async function rotateStore(store: EncryptedStore, o: RotateOptions = {}): Promise<RotationProgress> {
  const to = store.keyring.current;
  const saved = await store.get<Cursor>(META, "rotation");
  let after = saved && saved.to === to ? saved.after : "";
  const progress: RotationProgress = { rotated: 0, skipped: 0, done: false };
  const size = o.batchSize ?? 1000;
  for (;;) {
    const ops: RawOp[] = [];
    let last = after;
    for await (const [k, v] of store.db.iterator(after ? { gt: after, limit: size } : { limit: size })) {
      last = k;
      if (k === CURSOR_KEY) continue;
      const sep = k.indexOf(SEP);
      const ns = k.slice(0, sep);
      const key = k.slice(sep + 1);
      // A mark (an empty value) has nothing sealed to rotate.
      if (v.length === 0 || keyIdOf(v, ns) === to) {
        progress.skipped++;
        continue;
      }
      ops.push({ type: "put", key: k, value: store.sealValue(ns, key, store.openValue(ns, key, v)) });
      progress.rotated++;
    }
    if (last === after) break;
    after = last;
    ops.push({ type: "put", key: CURSOR_KEY, value: store.sealValue(META, "rotation", { to, after }) });
    await store.writeRaw(ops);
    o.onBatch?.({ ...progress });
  }
  // The old ciphertext leaves the disk, the old keys are retired (beforeDone), and only then does the cursor go: a crash
  // between these steps leaves it, and the start says the rotation was cut short until --resume finishes them.
  await store.compact();
  await o.beforeDone?.();
  await store.del(META, "rotation");
  progress.done = true;
  return progress;
}
