// A start after a clean stop, where the backup disk does not simply go on from that stop:
// - a new, empty backup disk (the old one died), or a run with backups off between: what the store wrote since is on
//   no backup disk, and one frame shipped at the start does not make up for it: the start asks for a snapshot;
// - a run with backups off: said at its start (the old directory's backups end on the clean stop);
// - a start that died after its first write and before shipping it (the store's stop record gone, the segments still
//   ending on the stop, a file with only its header after it): the next start ships a frame after the stop before it
//   goes on, decided from the segments, and a crash after it restores lossy.
// Real stores on disk, the real backup service and restore.
import t from "tap";
import { closeSync, mkdirSync, openSync, readSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { restoreArchive, restoreLoss, RESTORED_KEY, type RestoredMark } from "../../src/backup/restore.ts";
import { listSegments, segmentName, shippedEnd, STOP_KEY } from "../../src/backup/segments.ts";
import { createLogger, silentLogger, type Logger } from "../../src/log.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
const INTERVAL = 60_000;

/** The backup duty over a store in `root`, backing up to `dir` ("" for backups off): nothing ships but what is flushed. */
async function running(root: string, dir: string, o: { network?: "regtest" | "signet"; log?: Logger } = {}) {
  const config = loadConfig({ env: {}, overrides: { network: o.network ?? "regtest", dataDir: join(root, "data"), backup: { dir, snapshotIntervalMs: 0, segmentIntervalMs: INTERVAL, nodeWallet: false } }, cwd: join(root, "data") });
  const store = await EncryptedStore.open({ path: join(root, "data", "store"), keyring: ring });
  return { store, backup: new BackupService({ config, store, log: o.log ?? silentLogger }) };
}

const write = async (store: EncryptedStore, label: string, n: number) => {
  for (let i = 0; i < n; i++) await store.put("journal", `${label}:${i}`, { i });
};

async function restoredLoss(root: string, archive: string, segmentsDir: string, name: string): Promise<string | undefined> {
  const dataPath = join(root, name);
  mkdirSync(dataPath);
  await restoreArchive({ archive, segmentsDir, dataPath, keyring: ring, network: "regtest", segmentIntervalMs: INTERVAL });
  const store = await EncryptedStore.open({ path: join(dataPath, "store"), keyring: ring });
  try {
    return restoreLoss((await store.get<RestoredMark>(META, RESTORED_KEY))!);
  } finally {
    await store.close();
  }
}

/** A first run with a snapshot and some writes, stopped cleanly. */
async function cleanStop(root: string, dir: string) {
  const e = await running(root, dir);
  await e.backup.start();
  const snap = await e.backup.snapshot();
  await write(e.store, "run1", 5);
  await e.backup.close();
  const timeline = e.store.timeline;
  await e.store.close();
  return { snap, timeline };
}

t.test("a new, empty backup disk after a clean stop: the start asks for a snapshot", async (t) => {
  const root = t.testdir();
  const dir = join(root, "backup");
  await cleanStop(root, dir);
  renameSync(dir, join(root, "dead-disk"));
  mkdirSync(dir, { mode: 0o700 });
  const e = await running(root, dir);
  t.same(await e.backup.start(), { needsSnapshot: true }, "nothing before this start is on the new disk");
  await e.backup.close();
  await e.store.close();
});

t.test("a run with backups off after a clean stop: an alert at its start; backups on again: a snapshot asked", async (t) => {
  const root = t.testdir();
  const dir = join(root, "backup");
  await cleanStop(root, dir);
  const lines: Array<{ msg: string; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const off = await running(root, "", { network: "signet", log });
  t.same(await off.backup.start(), { needsSnapshot: false }, "not refused: the operator chose it");
  t.ok(lines.some((l) => l.alert && /end on that clean stop, and a restore from them will not know of this run/.test(l.msg)), "the old directory's backups ending on the stop are said, as an alert");
  t.ok(await off.store.get(META, STOP_KEY), "the store keeps the record: the next start is told again");
  await write(off.store, "dark", 5);
  await off.backup.close();
  await off.store.close();

  const on = await running(root, dir);
  t.same(await on.backup.start(), { needsSnapshot: true }, "the backups-off run's writes are in no backup: a snapshot");
  t.equal(await on.store.get(META, STOP_KEY), undefined, "the record is gone once a frame after it is shipped");
  await on.backup.close();
  await on.store.close();
});

t.test("a start that died before its first write was shipped: the next start ships one first, decided from the segments", async (t) => {
  const root = t.testdir();
  const dir = join(root, "backup");
  const segments = join(dir, "segments");
  const { snap, timeline } = await cleanStop(root, dir);
  t.equal((await shippedEnd(segments, ring, timeline)).cleanStop, true, "the segments end on the clean stop");
  // What a start that deleted the stop record and died before shipping it left: the record gone from the store, and
  // a segment file with only its header (made, then the write never done).
  const s = await EncryptedStore.open({ path: join(root, "data", "store"), keyring: ring });
  await s.del(META, STOP_KEY);
  const position = s.position;
  await s.close();
  const newest = join(segments, listSegments(segments, timeline).at(-1)!.name);
  const header = Buffer.alloc(56);
  const fd = openSync(newest, "r");
  readSync(fd, header, 0, header.length, 0);
  closeSync(fd);
  writeFileSync(join(segments, segmentName(timeline, position)), header, { mode: 0o600 });
  t.same(await shippedEnd(segments, ring, timeline), { last: position - 1, cleanStop: true }, "a file with only its header does not hide how the one before it ends");

  const e = await running(root, dir);
  t.same(await e.backup.start(), { needsSnapshot: true }, "the unshipped removal is a gap: a snapshot");
  t.equal((await shippedEnd(segments, ring, timeline)).cleanStop, false, "before it goes on, the segments no longer end on the clean stop");
  await write(e.store, "paid", 4);
  e.backup.abandon();
  await e.store.close();
  const lost = await restoredLoss(root, snap.path, segments, "r1");
  t.not(lost, undefined, `a crash after it restores lossy (${lost})`);
});
