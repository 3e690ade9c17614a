// A store whose disk is full, for tests: every write fails with ENOSPC and the disk reports no free bytes (so the
// store waits to reopen its LevelDB, open for reads), until `free()`, as when space is freed.
import { writeBatch, type EncryptedStore, type RawOp } from "../../src/store/db.ts";

export function fillDisk(store: EncryptedStore): { free(): void; readonly full: boolean } {
  const db = store.db;
  const batch = db.batch.bind(db);
  const freeBytes = store.freeBytes;
  db.batch = (() => {
    const b = batch();
    b.write = async () => {
      await b.close();
      throw new Error("IO error: No space left on device (simulated)");
    };
    return b;
  }) as typeof db.batch;
  store.freeBytes = () => 0;
  let full = true;
  return {
    free: () => {
      full = false;
      db.batch = batch;
      store.freeBytes = freeBytes;
    },
    get full() {
      return full;
    },
  };
}

/**
 * The next write fails on a full disk with its fate unknown, and LevelDB's recovery brings it back at the next reopen
 * (simulated by writing its bytes as the database opens again): until then no read sees it. `free()` frees the disk;
 * the next reopen (the store's timer, or its next write) finds it.
 */
export function lostUntilReopen(store: EncryptedStore): { free(): void } {
  const disk = fillDisk(store);
  const failing = store.db.batch.bind(store.db);
  let lost: RawOp[] = [];
  store.db.batch = (() => {
    const b = failing();
    const put = b.put.bind(b);
    b.put = ((key: string, value: Uint8Array) => (lost.push({ type: "put", key, value: value as Buffer }), put(key, value))) as typeof b.put;
    return b;
  }) as typeof store.db.batch;
  return {
    free() {
      store.db.batch = failing;
      disk.free();
      const open = store.db.open.bind(store.db);
      store.db.open = (async (...a: Parameters<typeof open>) => {
        await open(...a);
        store.db.open = open;
        await writeBatch(store.db, lost, true);
        lost = [];
      }) as typeof open;
    },
  };
}
