// When does a restore reach the moment its engine stopped? Only when the segments replayed end on the record of a clean
// stop (the backup service's last write before it closes). Otherwise restoreLoss says why it may not, and the engine
// keeps payouts paused and the cheques held:
// - a segments directory with no file of the archive's timeline (the wrong one, an empty one): nothing past the archive;
// - segments that end where the engine died: the frames of its last interval were never shipped;
// - a clean stop, then a start whose first write cannot reach the backup disk: the engine does not start (a crash of
//   that run would otherwise restore as lossless, its writes unknown).
// Real stores on disk, the real backup service and restore.
import t from "tap";
import { mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { restoreArchive, restoreLoss, RESTORED_KEY, type RestoredMark } from "../../src/backup/restore.ts";
import { STOP_KEY } from "../../src/backup/segments.ts";
import { silentLogger } from "../../src/log.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
const INTERVAL = 60_000;

/** An engine's backup duty over a store in `root`: a long interval, so nothing ships but what a test flushes. */
async function running(root: string) {
  const config = loadConfig({ env: {}, overrides: { backup: { dir: join(root, "backup"), snapshotIntervalMs: 0, segmentIntervalMs: INTERVAL } }, cwd: join(root, "data") });
  const store = await EncryptedStore.open({ path: join(root, "data", "store"), keyring: ring });
  const backup = new BackupService({ config, store, log: silentLogger });
  return { store, backup, start: () => backup.start(), segments: join(root, "backup", "segments") };
}

const write = async (store: EncryptedStore, label: string, n: number) => {
  for (let i = 0; i < n; i++) await store.put("journal", `${label}:${i}`, { i });
};

/** Restores `archive` (with `segmentsDir`) into a new data directory; the mark the engine reads at its start. */
async function restore(root: string, archive: string, segmentsDir: string | undefined, name: string) {
  const dataPath = join(root, name);
  mkdirSync(dataPath);
  const r = await restoreArchive({ archive, ...(segmentsDir ? { segmentsDir } : {}), dataPath, keyring: ring, network: "regtest", segmentIntervalMs: INTERVAL });
  const store = await EncryptedStore.open({ path: join(dataPath, "store"), keyring: ring });
  try {
    const mark = (await store.get<RestoredMark>(META, RESTORED_KEY))!;
    const keys = new Set<string>();
    for await (const [key] of store.iterate("journal")) keys.add(key);
    const stopRecord = await store.get(META, STOP_KEY);
    return { r, mark, lost: restoreLoss(mark), has: async (key: string) => keys.has(key), stopRecord };
  } finally {
    await store.close();
  }
}

t.test("a segments directory with nothing of the archive's timeline: the restore is lossy (the writes after the archive are not in it)", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "after", 10);
  await e.backup.close();
  await e.store.close();

  const empty = join(root, "empty-segments");
  mkdirSync(empty);
  const a = await restore(root, snap.path, empty, "r1");
  t.equal(a.r.replayed, 0);
  t.match(a.lost, /^the segments replayed nothing past the archive/, "an empty directory: lossy");

  // Another store's segments (another timeline) there: the same.
  const other = await running(join(root, "other"));
  await other.start();
  await write(other.store, "other", 20);
  await other.backup.close();
  await other.store.close();
  const b = await restore(root, snap.path, other.segments, "r2");
  t.equal(b.r.replayed, 0);
  t.match(b.lost, /^the segments replayed nothing past the archive/, "another timeline's segments: lossy");
  t.equal(b.r.lost, b.lost, "the restore's answer says it too");

  // Its own segments: the writes after the archive and the clean stop, lossless.
  const c = await restore(root, snap.path, e.segments, "r3");
  t.ok(c.r.replayed >= 10);
  t.equal(c.lost, undefined, "its own segments, ending on the clean stop: lossless");
  t.ok(await c.has("after:9"));
});

t.test("a crash with writes not shipped yet: the segments end where the engine died, and the restore says the last interval may be lost", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "shipped", 5);
  await e.backup.flush();
  await write(e.store, "tail", 5);
  // The crash: the last interval's frames never reach the backup disk.
  e.backup.abandon();
  await e.store.close();

  const a = await restore(root, snap.path, e.segments, "r1");
  t.notOk(a.r.segments?.stop, "no gap, no damage");
  t.ok(await a.has("shipped:4"), "what was shipped is restored");
  t.notOk(await a.has("tail:0"), "the unshipped tail is not");
  t.equal(a.lost, `the journal segments end at position ${a.mark.position}, where the engine died, not at a clean stop: the last interval before the crash (up to ${INTERVAL} ms, more while the backup disk was failing) may be lost`);
});

t.test("a crash right after everything was shipped is still lossy: nothing on the backup disk says no write followed", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "w", 5);
  await e.backup.flush();
  e.backup.abandon();
  await e.store.close();
  const a = await restore(root, snap.path, e.segments, "r1");
  t.match(a.lost, /the last interval before the crash \(up to 60000 ms/);
});

t.test("a clean stop: lossless, with every write; after a start on the same store, a crash is lossy again", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "run1", 5);
  await e.backup.close();
  await e.store.close();
  const a = await restore(root, snap.path, e.segments, "r1");
  t.equal(a.lost, undefined, "ends on the clean stop: lossless");
  t.equal(a.r.segments?.cleanStop, true);
  t.ok(await a.has("run1:4"));
  t.equal(a.stopRecord, undefined, "the restored store holds no stop record: its engine has not run yet");

  // The next run: its first write (a frame after the stop record) is shipped at its start, before it writes anything.
  const e2 = await running(root);
  t.same(await e2.start(), { needsSnapshot: false }, "a clean restart needs no snapshot");
  t.equal(await e2.store.get(META, STOP_KEY), undefined, "the stop record is gone from the store");
  t.equal(e2.backup.status().shippingLag, 0, "and its removal is on the backup disk");
  await write(e2.store, "run2", 5);
  e2.backup.abandon();
  await e2.store.close();
  const b = await restore(root, snap.path, e.segments, "r2");
  t.ok(await b.has("run1:4"));
  t.notOk(await b.has("run2:0"), "run 2's writes were never shipped");
  t.match(b.lost, /the last interval before the crash/, "lossy: the segments no longer end on the clean stop");
});

t.test("a snapshot taken with the engine stopped cleanly (runigun backup): with its segments lossless, with none of them lossy", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  await write(e.store, "w", 3);
  await e.backup.close();
  await e.store.close();
  // `runigun backup` with no engine running: the store read directly, at the clean stop's position.
  const offline = await running(root);
  t.same(await offline.backup.checkTargetReadOnly(), {});
  const snap = await offline.backup.snapshot();
  await offline.store.close();
  const a = await restore(root, snap.path, e.segments, "r1");
  t.equal(a.r.replayed, 0, "nothing after the archive");
  t.equal(a.lost, undefined, "the segments end on the clean stop at the archive's position: lossless");
  const empty = join(root, "empty");
  mkdirSync(empty);
  const b = await restore(root, snap.path, empty, "r2");
  t.match(b.lost, /^the segments replayed nothing past the archive/);
});

t.test("a start after a clean stop whose first write cannot reach the backup disk: refused, the stop record kept, started once the disk is back", async (t) => {
  const root = t.testdir();
  const e = await running(root);
  await e.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "w", 3);
  await e.backup.close();
  await e.store.close();
  // The backup disk is not mounted at the next start.
  renameSync(join(root, "backup"), join(root, "unmounted"));
  const e2 = await running(root);
  await t.rejects(e2.start(), { code: "no_target", message: /ends? on the last run's clean stop/ }, "the engine does not start");
  t.ok(await e2.store.get(META, STOP_KEY), "the stop record is still in the store: the next start checks again");
  await e2.store.close();
  const e3 = await running(root);
  const refused = (await e3.start().then(() => ({}), (x: unknown) => x)) as { code?: string; message?: string };
  t.equal(refused.code, "no_target", "and again at the next start");
  t.notMatch(refused.message, /RUNIGUN_BACKUP_DIR=/, "not advised to start with backups off: the old disk would still end on the stop");
  await e3.store.close();

  renameSync(join(root, "unmounted"), join(root, "backup"));
  const e4 = await running(root);
  await e4.start();
  await write(e4.store, "later", 2);
  e4.backup.abandon();
  await e4.store.close();
  // The refused starts' writes never reached the backup disk: a gap after the clean stop, never a clean end.
  const a = await restore(root, snap.path, e.segments, "r1");
  t.not(a.lost, undefined, `lossy (${a.lost})`);
  t.notOk(a.r.segments?.cleanStop);
});
