// The backup service on real files: scheduled-style snapshots with retention (old archives and the segments
// only they needed are pruned, a dead backup's partial file is removed), the last backup's age, and a start
// that notices when continuous backup does not reach the store (first run, or a crash lost the interval).
import t from "tap";
import { randomBytes } from "node:crypto";
import { cpSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { RESTORED_KEY } from "../../src/backup/restore.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { listSegments } from "../../src/backup/segments.ts";
import { verifyArchive } from "../../src/backup/archive.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";

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
