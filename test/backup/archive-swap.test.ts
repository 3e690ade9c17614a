// A restore loads the archive it checked: a file put at the archive's path after the check is never loaded, and one
// rewritten in place after the check is refused before the restored store is moved into place — never an older
// archive's records under the checked one's manifest (its position and timeline), with the segments replayed on top.
import t, { type Test } from "tap";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import * as archive from "../../src/backup/archive.ts";
import { SegmentShipper } from "../../src/backup/segments.ts";
import { silentLogger } from "../../src/log.ts";

const master = randomBytes(32);
const ring = () => new KeyRing(new Map([[1, master]]), 1);

/**
 * Two valid archives of one store and its segments: `older` (alice holds 100), `newer` (alice withdrew the 100: the
 * withdrawal w1 is recorded), and after both a credit to bob that only the segments hold.
 */
async function history(dir: string) {
  const segs = join(dir, "backups", "segments");
  const s = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const ship = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await ship.attach(s);
  await s.put("bal", "alice", 100);
  const older = join(dir, "backups", "older.rga");
  await archive.writeArchive({ store: s, path: older, network: "regtest" });
  await s.put("bal", "alice", 0);
  await s.put("withdrawals", "w1", { amount: 100, txid: "aa" });
  const newer = join(dir, "backups", "newer.rga");
  const info = await archive.writeArchive({ store: s, path: newer, network: "regtest" });
  await s.put("bal", "bob", 5);
  await ship.close();
  await s.close();
  return { segs, older, newer, manifest: info.manifest };
}

/** The restore, with `change(path)` run on the archive's file right after it passed its check. */
async function restoreChanging(t: Test, change: (path: string) => void) {
  const after = async <T>(checked: Promise<T>, path: string): Promise<T> => {
    const r = await checked;
    change(path);
    return r;
  };
  const { restoreArchive } = await t.mockImport<typeof import("../../src/backup/restore.ts")>("../../src/backup/restore.ts", {
    "../../src/backup/archive.ts": {
      ...archive,
      // Whichever function the restore checks the archive with, the file changes as soon as the check has passed.
      openArchive: (p: string, k: KeyRing) => after(archive.openArchive(p, k), p),
      verifyArchive: (p: string, k: KeyRing) => after(archive.verifyArchive(p, k), p),
    },
  });
  return restoreArchive;
}

t.test("an older archive renamed over the checked one: the checked one is loaded", async (t) => {
  const dir = t.testdir({ backups: {} });
  const { segs, older, newer, manifest } = await history(dir);
  const restoreArchive = await restoreChanging(t, (p) => {
    copyFileSync(older, `${p}.swap`);
    renameSync(`${p}.swap`, p);
  });
  const r = await restoreArchive({ archive: newer, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.equal(r.records, manifest.records, "as many records as the checked manifest says");
  t.same(readFileSync(newer), readFileSync(older), "the path now holds the older archive");
  const x = await EncryptedStore.open({ path: join(dir, "r", "store"), keyring: ring() });
  t.teardown(() => x.close());
  t.equal(await x.get("bal", "alice"), 0, "alice's withdrawal is there…");
  t.same(await x.get("withdrawals", "w1"), { amount: 100, txid: "aa" });
  t.equal(await x.get("bal", "bob"), 5, "…and bob's later credit, from the segments");
});

t.test("an older archive written over the checked one in place: refused, nothing restored", async (t) => {
  const dir = t.testdir({ backups: {} });
  const { segs, older, newer } = await history(dir);
  const restoreArchive = await restoreChanging(t, (p) => writeFileSync(p, readFileSync(older)));
  await t.rejects(restoreArchive({ archive: newer, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" }), { name: "BackupError" });
  t.notOk(existsSync(join(dir, "r", "store")), "no store was moved into place");
  t.same(readdirSync(join(dir, "r")), [], "and the half-loaded copy is gone");
});

t.test("one byte of a record changed in place after the check: refused by the load's own tag check", async (t) => {
  const dir = t.testdir({ backups: {} });
  const { segs, newer } = await history(dir);
  const restoreArchive = await restoreChanging(t, (p) => {
    const b = readFileSync(p);
    // Inside the first record's sealed value (header 37 bytes, then kind, key length, key, value length): the frames
    // still parse, and nothing opens a record's value while loading.
    const keyLength = b.readUInt32BE(37 + 1);
    b[37 + 1 + 4 + keyLength + 4 + 5]! ^= 0x01;
    writeFileSync(p, b);
  });
  await t.rejects(restoreArchive({ archive: newer, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" }), { name: "BackupError", code: "tampered", message: /changed while it was being restored/ });
  t.notOk(existsSync(join(dir, "r", "store")), "no store was moved into place");
});
