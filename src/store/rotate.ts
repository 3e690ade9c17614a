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
}

const SEP = "\u0000";
const CURSOR_KEY = EncryptedStore.recordKey(META, "rotation");

/**
 * The key a rotation was moving the store to, when it was cut short (a crash, Ctrl-C) and not resumed: part of the
 * store is still sealed under the older key, which a rotation after a leak means to leave behind.
 */
export async function rotationCutShort(store: EncryptedStore): Promise<number | undefined> {
  return (await store.get<{ to: number }>(META, "rotation"))?.to;
}

export async function rotateStore(store: EncryptedStore, o: RotateOptions = {}): Promise<RotationProgress> {
  const to = store.keyring.current;
  const saved = await store.get<{ to: number; after: string }>(META, "rotation");
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
  await store.del(META, "rotation");
  await store.compact();
  progress.done = true;
  return progress;
}
