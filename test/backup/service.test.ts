// The backup service on real files: scheduled-style snapshots with retention (old archives and the segments
// only they needed are pruned, a dead backup's partial file is removed), the last backup's age, and a start
// that notices when continuous backup does not reach the store (first run, or a crash lost the interval).
import t from "tap";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { RESTORED_KEY, restoreArchive } from "../../src/backup/restore.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { listSegments } from "../../src/backup/segments.ts";
import { verifyArchive } from "../../src/backup/archive.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger, silentLogger } from "../../src/log.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);

async function write(store: EncryptedStore, n: number, tag: string) {
  for (let i = 0; i < n; i++) await store.put("journal", `${tag}:${i}`, { v: randomBytes(64).toString("hex") });
}

t.test("retention, age, and a start that knows when a snapshot is needed", async (t) => {
  const dir = t.testdir();
  const config = loadConfig({ env: {}, cwd: dir, overrides: { backup: { dir: join(dir, "backup"), segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
  let store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  let svc = new BackupService({ config, store, log: silentLogger });
  t.same(await svc.start(), { needsSnapshot: true }, "first run: no backup covers the store yet");
  t.equal(svc.status().lastBackupAgeS, undefined, "no backup yet");

  const snaps = [];
  for (let round = 0; round < 3; round++) {
    await write(store, 20, `r${round}`);
    snaps.push(await svc.snapshot());
  }
  writeFileSync(join(dir, "backup", "snapshots", ".old.rga.partial-999999"), "half an archive");
  await write(store, 5, "after");
  svc.prune();
  const kept = readdirSync(join(dir, "backup", "snapshots")).sort();
  t.same(kept, [snaps[1]!.path, snaps[2]!.path].map((p) => p.split("/").at(-1)).sort(), "the newest two archives are kept, nothing else");
  t.equal((await verifyArchive(snaps[2]!.path, ring)).position, snaps[2]!.manifest.position);
  const firstKept = snaps[1]!.manifest.position;
  const segs = listSegments(join(dir, "backup", "segments"));
  t.ok(segs.length >= 1);
  for (let i = 0; i + 1 < segs.length; i++) t.ok(segs[i + 1]!.first - 1 > firstKept, `segment ${segs[i]!.name} holds positions after the oldest kept snapshot`);
  const status = svc.status();
  t.ok(status.lastBackupAgeS !== undefined && status.lastBackupAgeS <= 1, "the last good backup is seconds old");
  t.equal(status.lastGood?.position, snaps[2]!.manifest.position);

  // The engine stops (cleanly, or as a crash: nothing more shipped) and starts again on the same store.
  const restart = async (how: "clean" | "crash") => {
    if (how === "clean") await svc.close();
    else svc.abandon();
    await store.close();
    store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
    svc = new BackupService({ config, store, log: silentLogger });
    return svc.start();
  };
  // A clean stop: everything shipped; the next start needs no snapshot.
  t.same(await restart("clean"), { needsSnapshot: false }, "segments reach the store: continuity holds");
  t.equal(svc.status().shippingLag, 0);

  // A crash with an unshipped interval: the next start sees the hole.
  await write(store, 3, "lost");
  t.same(await restart("crash"), { needsSnapshot: true }, "the lost interval is noticed: a snapshot heals it");

  // The engine writes on and dies again before that snapshot: the newest segment file now starts after the hole, and
  // reaches the store. The hole is remembered all the same.
  await write(store, 3, "after-hole");
  await svc.flush();
  t.same(await restart("crash"), { needsSnapshot: true }, "a restart before the snapshot does not forget the hole");
  await svc.snapshot();
  t.same(await restart("clean"), { needsSnapshot: false }, "the snapshot covered it");
  await svc.close();
  await store.close();
});

t.test("a store behind its own continuous backup (an older copy put back): no start, unless taken as it is — then as after a restore, on a new timeline", async (t) => {
  const dir = t.testdir();
  const config = loadConfig({ env: {}, cwd: dir, overrides: { backup: { dir: join(dir, "backup"), segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
  const accepting = loadConfig({ env: { RUNIGUN_BACKUP_ACCEPT_OLDER_STORE: "true" }, cwd: dir, overrides: { backup: { dir: join(dir, "backup"), segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
  let store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  let svc = new BackupService({ config, store, log: silentLogger });
  await svc.start();
  await svc.snapshot();
  await svc.close();
  await store.close();
  cpSync(join(dir, "store"), join(dir, "older"), { recursive: true });
  store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  svc = new BackupService({ config, store, log: silentLogger });
  await svc.start();
  await write(store, 5, "later");
  await svc.close();
  await store.close();
  // The older copy is put back by hand.
  rmSync(join(dir, "store"), { recursive: true });
  renameSync(join(dir, "older"), join(dir, "store"));
  store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const timeline = store.timeline, position = store.position;
  // Found by a review: the engine went on on the older copy (a new timeline, an alert), forgetting what came after it:
  // a withdrawal paid since was paid again (test/backup/rollback.test.ts).
  svc = new BackupService({ config, store, log: silentLogger });
  await t.rejects(svc.start(), { name: "BackupError", code: "store_behind", message: /position \d+\) is behind its own continuous backup \(segments up to \d+\).*runigun restore .*segments.*RUNIGUN_BACKUP_ACCEPT_OLDER_STORE=true/s });
  t.equal(store.timeline, timeline, "nothing written: the same timeline");
  t.equal(store.position, position, "nothing written");
  t.equal(await store.get(META, RESTORED_KEY), undefined, "no restore mark");
  await svc.close();
  // Taken as it is: as after a restore (the engine pauses payouts and compares with the chain), on a new timeline.
  svc = new BackupService({ config: accepting, store, log: silentLogger });
  t.same(await svc.start(), { needsSnapshot: true });
  t.not(store.timeline, timeline, "a new timeline: the old one's segments are never continued");
  t.match(await store.get(META, RESTORED_KEY), { archive: /an older copy of the store, put back/, archivePosition: position, position });
  await svc.close();
  await store.close();
});

t.test("a new, empty backup disk mounted while the engine runs: the directories are made again and a snapshot makes it a backup; a missing backup directory is said once, clearly", async (t) => {
  // The node wallet's backup, the first step of every snapshot, tells when the service starts one by itself: from then
  // on it is the snapshot in progress, which snapshot() returns (a second caller gets it) — asked right after the step,
  // with nothing between but promise callbacks, so before it can end. The deadline only makes a missing one fail clearly.
  const starting: Array<() => void> = [];
  const backupNodeWallet = async (path: string) => {
    for (const started of starting.splice(0)) started();
    writeFileSync(path, "node wallet");
  };
  const nextSnapshot = async (what: string, ms = 10_000) => {
    let timer: NodeJS.Timeout | undefined;
    const started = new Promise<void>((r) => starting.push(r));
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for: ${what}`)), ms)));
    return Promise.race([started, late]).finally(() => clearTimeout(timer));
  };
  const dir = t.testdir();
  const backup = join(dir, "backup");
  const config = loadConfig({ env: {}, cwd: dir, overrides: { backup: { dir: backup, segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: true } } });
  const lines: Array<{ level: number; msg: string; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const svc = new BackupService({ config, store, log, backupNodeWallet });
  await svc.start();
  await svc.snapshot();
  await write(store, 5, "a");
  await svc.flush();
  const snapshots = () => (existsSync(join(backup, "snapshots")) ? readdirSync(join(backup, "snapshots")).filter((n) => n.endsWith(".rga")) : []);

  // The old disk goes, a new empty one is mounted at the same place (here: the directory emptied under the engine).
  const onNewDisk = nextSnapshot("a snapshot on the new disk");
  for (const name of readdirSync(backup)) rmSync(join(backup, name), { recursive: true });
  await write(store, 5, "b");
  await svc.flush();
  t.equal(statSync(join(backup, "segments")).mode & 0o777, 0o700, "segments/ made again, 0700");
  await onNewDisk;
  await svc.snapshot(); // the one the service started by itself
  t.equal(snapshots().length, 1, "a snapshot on the new disk");
  t.notOk(svc.status().snapshotInProgress, "and no other running or waiting");
  t.equal(statSync(join(backup, "snapshots")).mode & 0o777, 0o700, "snapshots/ made again, 0700");
  await write(store, 5, "c");
  await svc.flush();
  // The new disk alone restores the store as it is.
  const r = await restoreArchive({ archive: join(backup, "snapshots", snapshots()[0]!), segmentsDir: join(backup, "segments"), dataPath: join(dir, "r1"), keyring: ring, network: "regtest" });
  t.equal(r.segments?.last, store.position, "the new disk's snapshot and segments reach the store");
  t.same(lines.filter((l) => l.alert), [], "nothing lost, nothing to alert");

  // The mount point itself gone: a clear message, once, not one per retry; a snapshot says the same.
  rmSync(backup, { recursive: true });
  for (let i = 0; i < 3; i++) {
    await write(store, 2, `d${i}`);
    await svc.flush();
  }
  const alerts = lines.filter((l) => l.alert);
  t.equal(alerts.length, 1, "one alert for the outage");
  t.match(alerts[0]?.msg, new RegExp(`backup directory ${backup} is missing or not mounted`));
  t.notMatch(JSON.stringify(lines), /ENOENT/, "no raw error");
  await t.rejects(svc.snapshot(), { name: "BackupError", code: "no_target", message: /backup directory .* is missing or not mounted/ });
  t.notOk(existsSync(backup), "never made in its place (the engine's own disk)");

  // The disk is back: shipping resumes by itself and a snapshot makes it a backup again.
  const onBack = nextSnapshot("a snapshot once the directory is back");
  mkdirSync(backup);
  await svc.flush();
  await onBack;
  await svc.snapshot(); // the one the service started by itself
  t.equal(snapshots().length, 1, "a snapshot once the directory is back");
  t.notOk(svc.status().snapshotInProgress, "and no other running or waiting");
  t.ok(lines.some((l) => /the backup directory is back/.test(l.msg)), "said when it is back");
  await svc.flush(); // the snapshot's own write (the gap it covered, cleared)
  t.equal(svc.status().shippingLag, 0);
  const r2 = await restoreArchive({ archive: join(backup, "snapshots", snapshots()[0]!), segmentsDir: join(backup, "segments"), dataPath: join(dir, "r2"), keyring: ring, network: "regtest" });
  t.equal(r2.segments?.last, store.position, "restorable from the disk that came back");
  await svc.close();
  await store.close();
});

t.test("at start, a backup directory that is not this store's (a disk not mounted) is an alert, and a missing one is not made on the engine's disk", async (t) => {
  const dir = t.testdir();
  const backup = join(dir, "backup"), disk = join(dir, "the-backup-disk");
  const config = loadConfig({ env: {}, cwd: dir, overrides: { backup: { dir: backup, segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
  const lines: Array<{ level: number; msg: string; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const alerts = () => lines.filter((l) => l.alert).map((l) => l.msg);
  let store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  let svc = new BackupService({ config, store, log });
  const start = async () => {
    await svc.close();
    await store.close();
    lines.length = 0;
    store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
    svc = new BackupService({ config, store, log });
    return svc.start();
  };

  // A first run makes the directory and marks it, quietly.
  await svc.start();
  await svc.snapshot();
  await write(store, 5, "a");
  t.ok(existsSync(join(backup, "RUNIGUN-BACKUP")), "the directory is marked");
  t.same(alerts(), []);
  t.same(await start(), { needsSnapshot: false }, "the same directory again: nothing to say");
  t.same(alerts(), []);

  // The backup disk not mounted, its mount point empty: the engine's own disk under the same name.
  renameSync(backup, disk);
  mkdirSync(backup);
  t.same(await start(), { needsSnapshot: true });
  t.equal(alerts().length, 1, "one alert");
  t.match(alerts()[0], /holds none of this store's backups .*not mounted/);
  // Used from now on (marked with this store's id): the next start is quiet.
  t.same(await start(), { needsSnapshot: true });
  t.same(alerts(), [], "said once: the directory is this store's now");

  // The mount point itself gone after a clean stop: the start is refused (its backup ends on that stop, and a crash of
  // this run would restore from it as lossless), with the alert, and the directory is not made.
  rmSync(backup, { recursive: true });
  await t.rejects(start(), { code: "no_target", message: /clean stop/ });
  t.match(alerts()[0], /missing or not mounted.*not made on the engine's own disk/);
  t.notOk(existsSync(backup), "not made in its place");
  // After a run that died (no clean stop): an alert, and it is not made; the engine goes on.
  await store.del(META, "backup-stop");
  t.same(await start(), { needsSnapshot: true });
  t.equal(alerts().length, 1);
  t.match(alerts()[0], /missing or not mounted.*not made on the engine's own disk/);
  t.notOk(existsSync(backup), "not made in its place");
  // The disk is mounted again: shipping goes on where it is, quietly at the next start.
  renameSync(disk, backup);
  await write(store, 3, "b");
  await svc.flush();
  await svc.snapshot();
  lines.length = 0;
  t.same(await start(), { needsSnapshot: false });
  t.same(alerts(), []);

  // A store from before the marker (none kept) takes the directory's marker: its backups are there.
  await store.del(META, "backup-target");
  await start();
  t.same(alerts(), [], "a store that kept no directory and has backups there takes its marker");
  t.same(await store.get(META, "backup-target"), await readMarkerId(), "and keeps its id");

  // Another store given the same directory on its first start: said, and at every start after (it keeps an id of its
  // own; taking the marker, both would think the directory theirs and say nothing ever again).
  const other = join(dir, "other-store");
  const startOther = async (check?: (svc: BackupService) => Promise<void>) => {
    const otherStore = await EncryptedStore.open({ path: other, keyring: ring });
    const otherSvc = new BackupService({ config, store: otherStore, log });
    lines.length = 0;
    const started = await otherSvc.start();
    if (otherSvc.status().off) t.same(started, { needsSnapshot: false }, "no snapshot asked for: there is nowhere to put it");
    await write(otherStore, 3, "other");
    await otherSvc.flush();
    await check?.(otherSvc);
    const kept = await otherStore.get<{ id: string }>(META, "backup-target");
    await otherSvc.close();
    await otherStore.close();
    return kept;
  };
  const before = { snapshots: readdirSync(join(backup, "snapshots")).sort(), segments: readdirSync(join(backup, "segments")).sort() };
  const kept = await startOther();
  t.match(alerts(), [/holds another store's backups .*does NOT back up there/], "a store new to the directory says whose it is, and that it has no backups");
  t.equal(kept, undefined, "it keeps no id: neither the other store's nor one of its own");
  const second = await startOther(async (svc) => {
    t.equal(svc.status().enabled, false, "its status says backups are off");
    t.match(svc.status().off, /another store's backups/, "and why");
    await t.rejects(svc.snapshot(), /holds another store's backups/, "a snapshot there is refused");
    t.same(svc.prune(), { snapshots: 0, segments: 0 }, "and it prunes nothing of the other store's");
  });
  t.equal(second, undefined);
  t.match(alerts(), [/holds another store's backups/], "and says it again at its next start");
  t.same({ snapshots: readdirSync(join(backup, "snapshots")).sort(), segments: readdirSync(join(backup, "segments")).sort() }, before, "nothing of it was written there, nothing of the first store's removed");
  // Its own disk mounted there at last (here: a marker it wrote, with its timeline): recognised, backups on. Had it kept
  // an id of its own while the directory was another store's, this marker would look another store's for ever.
  const firstMarker = readFileSync(join(backup, "RUNIGUN-BACKUP"));
  const otherTimeline = await (async () => {
    const s = await EncryptedStore.open({ path: other, keyring: ring });
    const tl = s.timeline;
    await s.close();
    return tl;
  })();
  writeFileSync(join(backup, "RUNIGUN-BACKUP"), JSON.stringify({ id: "feedfeedfeedfeed", timeline: otherTimeline }) + "\n");
  t.same(await startOther(async (svc) => void t.equal(svc.status().enabled, true, "backups on")), { id: "feedfeedfeedfeed" }, "its own marker, taken");
  t.same(alerts(), [], "nothing to say");
  writeFileSync(join(backup, "RUNIGUN-BACKUP"), firstMarker);
  await start();
  t.same(alerts(), [], "the directory is still the first store's");

  // A store restored from an archive taken before the marker (it keeps no id; a restore starts a new timeline) takes
  // the marker of the directory its archive is in.
  const archive = readdirSync(join(backup, "snapshots")).find((n) => n.endsWith(".rga"))!;
  const restored = await EncryptedStore.open({ path: join(dir, "restored-store"), keyring: ring });
  await restored.put(META, RESTORED_KEY, { at: Date.now(), archive: join(backup, "snapshots", archive), archivePosition: 1, position: 1 });
  const restoredSvc = new BackupService({ config, store: restored, log });
  lines.length = 0;
  await restoredSvc.start();
  t.same(alerts(), [], "restored from an archive of this directory: its marker is taken, nothing to say");
  t.same(await restored.get(META, "backup-target"), await readMarkerId());
  await restoredSvc.close();
  await restored.close();

  // A first start that marked the directory and died before keeping the id: its own marker (its timeline), taken.
  const third = await EncryptedStore.open({ path: join(dir, "third-store"), keyring: ring });
  const thirdBackup = join(dir, "third-backup");
  mkdirSync(thirdBackup);
  writeFileSync(join(thirdBackup, "RUNIGUN-BACKUP"), JSON.stringify({ id: "00aa00aa00aa00aa", timeline: third.timeline }) + "\n");
  const thirdConfig = loadConfig({ env: {}, cwd: dir, overrides: { backup: { dir: thirdBackup, segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
  const thirdSvc = new BackupService({ config: thirdConfig, store: third, log });
  lines.length = 0;
  await thirdSvc.start();
  t.same(alerts(), [], "its own marker: nothing to say");
  t.same(await third.get(META, "backup-target"), { id: "00aa00aa00aa00aa" });
  await thirdSvc.close();
  await third.close();

  writeFileSync(join(backup, "RUNIGUN-BACKUP"), JSON.stringify({ id: "0123456789abcdef" }) + "\n");
  await start();
  t.match(alerts()[0], /holds another store's backups/);
  await svc.close();
  await store.close();

  async function readMarkerId(): Promise<{ id: string }> {
    return { id: (JSON.parse(readFileSync(join(backup, "RUNIGUN-BACKUP"), "utf8")) as { id: string }).id };
  }
});

t.test("with real money, backups off or on the data directory's own disk are an alert at every start", async (t) => {
  const dir = t.testdir();
  const lines: Array<{ msg: string; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const on = async (network: "signet" | "regtest", backupDir: string) => {
    lines.length = 0;
    const config = loadConfig({ env: {}, cwd: dir, overrides: { network, dataDir: dir, backup: { dir: backupDir, segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep: 2, nodeWallet: false } } });
    const svc = new BackupService({ config, store, log });
    await svc.start();
    await svc.close();
    return lines.filter((l) => l.alert).map((l) => l.msg);
  };
  t.match(await on("signet", ""), [/backups are off \(backup.dir is not set\) on signet/]);
  t.match(await on("signet", join(dir, "backup")), [/is on the same disk as the data directory/]);
  t.same(await on("regtest", ""), [], "regtest: nothing said");
  t.same(await on("regtest", join(dir, "backup")), []);
  await store.close();
});
