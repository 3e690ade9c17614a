// Snapshot retention follows the store's history, not the clock: within a timeline by commit position, the store's own
// timeline after the histories it replaced, and the archive just written is never pruned. The last good backup, the
// gap record and the shipper's repair are only ever set by an archive that is still there. Files left by a backup
// killed with -9 are removed even when they carry this process's pid (an engine that is PID 1 in its container).
import t, { type Test } from "tap";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { BackupService } from "../../src/backup/service.ts";
import { runToken } from "../../src/backup/archive.ts";
import { loadConfig } from "../../src/config.ts";
import { silentLogger } from "../../src/log.ts";

const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);

async function service(t: Test, keep: number, o: { nodeWallet?: boolean } = {}) {
  const dir = t.testdir();
  const config = loadConfig({
    env: {}, cwd: dir,
    overrides: { dataDir: join(dir, "data"), backup: { dir: join(dir, "backup"), segmentIntervalMs: 60_000, snapshotIntervalMs: 0, keep, nodeWallet: o.nodeWallet ?? false } },
  });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring });
  const svc = new BackupService({
    config, store, log: silentLogger,
    ...(o.nodeWallet ? { backupNodeWallet: async (p: string) => writeFileSync(p, "wallet.dat bytes") } : {}),
  });
  t.teardown(async () => {
    await svc.close();
    await store.close();
  });
  await svc.start();
  return { dir, config, store, svc, snapDir: join(dir, "backup", "snapshots") };
}

/** Renames a snapshot as if it had been taken while the host's clock read `date` (its name is where the time is). */
function takenOn(snapDir: string, path: string, date: string): string {
  const name = path.split("/").at(-1)!.replace(/-\d{4}-\d\d-\d\dT/, `-${date}T`);
  renameSync(path, join(snapDir, name));
  return name;
}

t.test("snapshots taken while the clock was ahead do not outrank later ones", async (t) => {
  const { store, svc, snapDir } = await service(t, 2);
  const ahead: string[] = [];
  for (let i = 0; i < 2; i++) {
    await store.put("j", `a${i}`, 1);
    ahead.push(takenOn(snapDir, (await svc.snapshot()).path, `2031-01-0${i + 1}`));
  }
  // The clock is corrected; a gap is recorded (as after dropped frames), and the snapshot that heals it is taken.
  await store.put(META, "backup-gap", { from: 0, upTo: store.position, at: Date.now() });
  await store.put("j", "b", 1);
  const s = await svc.snapshot();
  t.ok(existsSync(s.path), "the snapshot just written is kept");
  t.same(readdirSync(snapDir).sort(), [ahead[1]!, s.path.split("/").at(-1)!].sort(), "the oldest by position went, whatever its name says");
  const st = svc.status();
  t.equal(st.lastGood?.path, s.path, "the last good backup is the new one…");
  t.ok(existsSync(st.lastGood!.path), "…and it exists");
  t.equal(await store.get(META, "backup-gap"), undefined, "the gap is covered by an archive that is there");
});

t.test("the archive just written is kept beside one of the same position that sorts after it by name", async (t) => {
  const { store, svc, snapDir } = await service(t, 1);
  await store.put("j", "a", 1);
  const first = takenOn(snapDir, (await svc.snapshot()).path, "2031-01-01");
  // No write in between: the same position, an earlier time.
  const second = await svc.snapshot();
  t.same(readdirSync(snapDir), [second.path.split("/").at(-1)!], "the new one stays, the other goes");
  t.notOk(existsSync(join(snapDir, first)));
  t.equal(svc.status().lastGood?.path, second.path);
});

t.test("an older timeline's snapshots go before the store's own, whatever time their names carry", async (t) => {
  const { store, svc, snapDir } = await service(t, 2);
  // A history this store replaced (a restore starts a new timeline), its snapshot named in the future.
  const other = `runigun-regtest-2031-01-01T00-00-00-000Z-${"ab".repeat(6)}-p999.rga`;
  writeFileSync(join(snapDir, other), "an older history's archive");
  const own: string[] = [];
  for (let i = 0; i < 2; i++) {
    await store.put("j", `a${i}`, 1);
    own.push((await svc.snapshot()).path.split("/").at(-1)!);
  }
  t.same(readdirSync(snapDir).sort(), own.sort(), "both of the store's own are kept; the older history's went");
});

t.test("files left by a killed backup are removed even with this process's pid; this start's own are left", async (t) => {
  const { config, svc, snapDir } = await service(t, 2, { nodeWallet: true });
  const tmp = join(config.dataPath, "tmp");
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  const wallet = join(tmp, `node-wallet-${process.pid}-0123456789ab.tmp`);
  writeFileSync(wallet, "unsealed wallet.dat left by a kill -9");
  const partial = join(snapDir, `.snapshot.rga.partial-${process.pid}`);
  writeFileSync(partial, "half an archive left by a kill -9");
  // One of this start's own, as a snapshot being written would have.
  const mine = join(snapDir, `.snapshot.rga.partial-${runToken}-00000000`);
  writeFileSync(mine, "an archive being written");
  await svc.snapshot();
  t.notOk(existsSync(wallet), "the node wallet's leftover is removed");
  t.notOk(existsSync(partial), "the partial archive is removed");
  t.ok(existsSync(mine), "this start's own temporary file is left alone");
  t.same(readdirSync(tmp), [], "no node wallet file stays behind");
});
