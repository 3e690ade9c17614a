// A store whose disk is full, for tests: every write fails with ENOSPC and the disk reports no free bytes (so the
// store waits to reopen its LevelDB, open for reads), until `free()`, as when space is freed.
import type { EncryptedStore } from "../../src/store/db.ts";

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
