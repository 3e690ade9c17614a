// The operators' audit log after a disk fault, on a real LevelDB: an entry whose put failed with its fate unknown, and
// that the store later finds on disk, keeps its number, and the entries after it are numbered after it — never refused
// ("exists") until a restart, never written over it.
import t from "tap";
import { EncryptedStore } from "../../../src/store/db.ts";
import { KeyRing } from "../../../src/store/keyring.ts";
import { AuditLog } from "../../../src/edges/admin/audit.ts";
import { fillDisk, lostUntilReopen } from "../../support/store.ts";

function ring(): KeyRing {
  return new KeyRing(new Map([[1, Buffer.alloc(32, 5)]]), 1);
}

const act = (action: string) => ({ operator: "op", action, target: "t", reason: "r" });

t.test("an entry found on disk after a failed put (a failed fsync, no room to reopen at once): the next appends go on after it", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  const audit = new AuditLog(store);
  t.equal((await audit.append(act("a1"))).seq, 1);
  // The batch reaches LevelDB's log, then its write reports an I/O error; the disk is full, so the store cannot reopen
  // at once to learn whether it is there.
  const freeBytes = store.freeBytes;
  store.freeBytes = () => 0;
  const batch = store.db.batch.bind(store.db);
  store.db.batch = (() => {
    const b = batch();
    const write = b.write.bind(b);
    b.write = (async (...w: Parameters<typeof write>): Promise<void> => {
      await write(...w);
      throw new Error("IO error: fsync failed (simulated, after the write)");
    }) as typeof write;
    return b;
  }) as typeof store.db.batch;
  await t.rejects(audit.append(act("a2")), { code: "write_failed", written: "unknown" });
  store.db.batch = batch;
  store.freeBytes = freeBytes;
  const settled = new Promise<boolean>((resolve) => store.onUnsureSettled(resolve));
  t.equal(await settled, true, "the store's reopen finds entry 2 on disk");
  const third = await audit.append(act("a3"));
  t.equal(third.seq, 3, "numbered after the entry found on disk");
  t.equal((await audit.append(act("a4"))).seq, 4);
  t.same((await audit.list()).map((e) => [e.seq, e.action]), [[4, "a4"], [3, "a3"], [2, "a2"], [1, "a1"]]);
});

t.test("an entry that turns up only when the store reopens, after the next append read the disk: not overwritten", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  t.teardown(() => store.close());
  const audit = new AuditLog(store);
  await audit.append(act("a1"));
  // The put fails on a full disk with its fate unknown; LevelDB's recovery at the reopen brings it back (simulated by
  // writing its bytes as the database opens again), so until then no read sees it.
  const lost = lostUntilReopen(store);
  await t.rejects(audit.append(act("a2")), { code: "write_failed", written: "unknown" });
  lost.free();
  const settled = new Promise<boolean>((resolve) => store.onUnsureSettled(resolve));
  // Before the reopen timer: this append reads the disk without entry 2, and its write reopens the store, which finds it.
  const third = await audit.append(act("a3"));
  t.equal(await settled, true, "entry 2 was found on disk");
  t.equal(third.seq, 3, "numbered after it");
  t.same((await audit.list()).map((e) => [e.seq, e.action]), [[3, "a3"], [2, "a2"], [1, "a1"]], "entry 2 is the one written first");
});
