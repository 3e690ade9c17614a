// `runigun backup` with no engine running, into a backup directory: the same check of the directory the engine's start
// makes, read only. Another store's directory (its marker) is refused with nothing written or pruned there; in its own
// directory the offline backup prunes only its own timeline (another history there is not known to be its own).
import t from "tap";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { silentLogger } from "../../src/log.ts";
import { runigun } from "../support/cli.ts";

const snapshots = (dir: string) => readdirSync(join(dir, "snapshots")).filter((n) => n.endsWith(".rga")).sort();
const segments = (dir: string) => readdirSync(join(dir, "segments")).sort();

/** A store at `data`/store that has backed up `n` snapshots (with the engine's own start) into `backupDir`. */
async function backedUp(root: string, data: string, backupDir: string, n: number): Promise<string> {
  const ring = loadKeyRingFile(join(root, "ring.key"));
  const config = loadConfig({ env: {}, overrides: { backup: { dir: backupDir, snapshotIntervalMs: 0, keep: 3 } }, cwd: join(root, data) });
  const store = await EncryptedStore.open({ path: join(root, data, "store"), keyring: ring });
  const service = new BackupService({ config, store, log: silentLogger });
  await service.start();
  for (let i = 0; i < n; i++) {
    await store.put("journal", `${data}:${i}`, i);
    await service.snapshot();
  }
  await service.close();
  const timeline = store.timeline;
  await store.close();
  return timeline;
}

t.test("offline backup into another store's backup directory: refused, nothing there written or pruned", async (t) => {
  const root = t.testdir();
  generateKeyRingFile(join(root, "ring.key"));
  const X = join(root, "backupdisk");
  await backedUp(root, "A", X, 5);
  const marker = readFileSync(join(X, "RUNIGUN-BACKUP"), "utf8");
  const before = { snapshots: snapshots(X), segments: segments(X) };
  t.equal(before.snapshots.length, 3, "store A keeps its newest three");

  // Store B, never started with backups, given A's directory by mistake; no engine runs on it.
  const b = await EncryptedStore.open({ path: join(root, "B", "store"), keyring: loadKeyRingFile(join(root, "ring.key")) });
  for (let i = 0; i < 3; i++) await b.put("journal", `b:${i}`, i);
  await b.close();
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(root, "B"), RUNIGUN_MASTER_KEY_FILE: join(root, "ring.key"), RUNIGUN_BACKUP_DIR: X, RUNIGUN_BACKUP_KEEP: "3", RUNIGUN_LOG_LEVEL: "error" };
  for (let i = 0; i < 4; i++) {
    const r = await runigun(["backup"], env);
    t.equal(r.code, 1, `refused (run ${i + 1})`);
    t.match(r.out, /nothing was written or pruned: backup directory .* holds another store's backups/, "with the reason");
  }
  t.same({ snapshots: snapshots(X), segments: segments(X) }, before, "A's snapshots and segments are all still there, and nothing of B");
  t.equal(readFileSync(join(X, "RUNIGUN-BACKUP"), "utf8"), marker, "the marker is untouched");

  // --out still backs B up (nothing of the backup directory is used).
  const out = await runigun(["backup", "--out", join(root, "b.rga")], env);
  t.equal(out.code, 0, "--out still backs it up");
  t.ok(existsSync(join(root, "b.rga")));
  t.same(snapshots(X), before.snapshots, "and the directory is still untouched");
});

t.test("offline backup into its own backup directory: written, and the prune keeps to its own timeline", async (t) => {
  const root = t.testdir();
  generateKeyRingFile(join(root, "ring.key"));
  const X = join(root, "backupdisk");
  const timeline = await backedUp(root, "A", X, 2);
  // Files of another timeline in the same directory (a history the offline command cannot tell is this store's).
  const other = await backedUp(root, "A2", join(root, "other"), 1);
  const { copyFileSync } = await import("node:fs");
  for (const n of snapshots(join(root, "other"))) copyFileSync(join(root, "other", "snapshots", n), join(X, "snapshots", n));
  for (const n of segments(join(root, "other"))) copyFileSync(join(root, "other", "segments", n), join(X, "segments", n));
  const theirs = (names: string[]) => names.filter((n) => n.includes(other));

  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: join(root, "A"), RUNIGUN_MASTER_KEY_FILE: join(root, "ring.key"), RUNIGUN_BACKUP_DIR: X, RUNIGUN_BACKUP_KEEP: "1", RUNIGUN_LOG_LEVEL: "error" };
  const r = await runigun(["backup"], env);
  t.equal(r.code, 0, "written");
  t.match(r.out, /backup written: .*snapshots\/runigun-regtest-/);
  const mine = snapshots(X).filter((n) => n.includes(timeline));
  t.equal(mine.length, 1, "its own older snapshots are pruned to backup.keep");
  t.equal(theirs(snapshots(X)).length, 1, "the other timeline's snapshot is left");
  t.ok(theirs(segments(X)).length >= 1, "and so are its segments");
});
