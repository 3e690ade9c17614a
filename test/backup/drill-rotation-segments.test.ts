// A key rotation with backups on ships its batches as the engine's writes are shipped: a restore from an archive
// made before the rotation, with the segments, replays the rotation and what the engine wrote after it, without a gap.
// (The drill: a snapshot, writes, `runigun keys rotate` with the engine stopped, the engine writes again and dies
// before its next snapshot is written; the data disk is lost.)
import t from "tap";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../../src/config.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { generateKeyRingFile, loadKeyRingFile } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { silentLogger } from "../../src/log.ts";
import { runigun } from "../support/cli.ts";

t.test("a restore from an archive made before a key rotation replays the rotation and the writes after it", async (t) => {
  const root = t.testdir();
  const X = join(root, "backupdisk"), ringFile = join(root, "ring.key"), data = join(root, "data");
  generateKeyRingFile(ringFile);
  const config = loadConfig({ env: {}, overrides: { backup: { dir: X, snapshotIntervalMs: 0, segmentIntervalMs: 10 } }, cwd: data });
  /** A run of the engine's backup duty over the store: started, `n` writes, flushed; a snapshot first if asked. */
  async function run(label: string, n: number, snapshot: boolean) {
    const store = await EncryptedStore.open({ path: join(data, "store"), keyring: loadKeyRingFile(ringFile) });
    const backup = new BackupService({ config, store, log: silentLogger });
    await backup.start();
    const snap = snapshot ? await backup.snapshot() : undefined;
    for (let i = 0; i < n; i++) await store.put("journal", `${label}${i}`, { i });
    await backup.flush();
    const position = store.position;
    // The engine dies: what it shipped is on the backup disk, no snapshot after the rotation was written.
    backup.abandon();
    await store.close();
    return { snap, position };
  }
  const { snap } = await run("before-", 5, true);
  const env = { RUNIGUN_NETWORK: "regtest", RUNIGUN_DATA_DIR: data, RUNIGUN_MASTER_KEY_FILE: ringFile, RUNIGUN_BACKUP_DIR: X, RUNIGUN_LOG_LEVEL: "error" };
  const rot = await runigun(["keys", "rotate"], env);
  t.equal(rot.code, 0, "the rotation completes");
  t.match(rot.out, /rotation to key 2 complete/);
  const { position } = await run("after-", 5, false);
  t.equal(readdirSync(join(X, "snapshots")).filter((n) => n.endsWith(".rga")).length, 1, "the only snapshot is the one before the rotation");

  // The data disk is lost: restore that snapshot and the segments, with the ring as it is now (key 1 retired, named).
  const ring = loadKeyRingFile(ringFile);
  const r = await restoreArchive({ archive: snap!.path, segmentsDir: join(X, "segments"), dataPath: join(root, "new"), keyring: ring.allowing([1]), network: "regtest" });
  t.notOk(r.segments?.stop, `the segments do not stop early${r.segments?.stop ? `: ${r.segments.stop.reason}` : ""}`);
  t.equal(r.segments?.last, position, "they reach the last write the engine shipped");
  const restored = await EncryptedStore.open({ path: join(root, "new", "store"), keyring: ring });
  t.teardown(() => restored.close());
  t.same(await restored.get("journal", "after-4"), { i: 4 }, "the writes after the rotation are back");
  t.same(await restored.get("journal", "before-0"), { i: 0 }, "and those before it");
  t.notOk(r.olderKeyIds, "every record is under the current key: the rotation's batches came back with it");
});
