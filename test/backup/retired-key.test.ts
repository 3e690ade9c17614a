// After a completed rotation the older keys are retired: they still open what was sealed under them, but a backup
// sealed under one (made before the rotation, or forged with a leaked key) is restored only when the operator names
// the key. The ring file keeps the list; the engine's own shipping carries on over an older segment file.
import t from "tap";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing, generateKeyRingFile, loadKeyRingFile, writeKeyRingFile } from "../../src/store/keyring.ts";
import { verifyArchive, writeArchive } from "../../src/backup/archive.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { SegmentShipper, lastShipped } from "../../src/backup/segments.ts";
import { silentLogger } from "../../src/log.ts";

t.test("a retired key's archive and segments are refused unless named; the ring file keeps the list", async (t) => {
  const dir = t.testdir();
  const file = join(dir, "ring.key");
  const first = generateKeyRingFile(file);
  const segs = join(dir, "segments");
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: first });
  const shipper = new SegmentShipper({ dir: segs, keyring: first, intervalMs: 60_000, log: silentLogger });
  await shipper.attach(store);
  const archive = join(dir, "before.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  for (let i = 0; i < 5; i++) await store.put("journal", `w:${i}`, { i });
  await shipper.close();
  const timeline = store.timeline, position = store.position;
  await store.close();

  // The rotation's end: every key but the new current one retired, in the file.
  writeKeyRingFile(file, first.withNewKey().withRetired());
  const ring = loadKeyRingFile(file);
  t.same([ring.current, [...ring.retired]], [2, [1]], "read back with its retired key");
  t.same([...ring.withNewKey().retired], [1], "a later key keeps the list");
  await t.rejects(verifyArchive(archive, ring), { code: "retired_key", message: /sealed under master key 1, which a key rotation retired.*--allow-retired-key 1/ });
  await t.rejects(restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r1"), keyring: ring, network: "regtest" }), { code: "retired_key" });
  t.equal(await lastShipped(segs, ring, timeline), position, "the engine still finds where its own shipping stopped");
  const allowed = ring.allowing([1]);
  t.same([...allowed.retired], [], "named, it is trusted for this use");
  t.same([...ring.retired], [1], "the ring itself unchanged");
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r2"), keyring: allowed, network: "regtest" });
  t.equal(r.replayed, 5, "archive and segments restored");
  t.throws(() => ring.allowing([7]), { code: "missing_key" }, "a key the ring does not have cannot be allowed");
});

t.test("a ring without retired keys is written as before", async (t) => {
  const ring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  t.notOk("retired" in ring.toJSON());
  t.throws(() => KeyRing.parse(JSON.stringify({ ...ring.toJSON(), retired: "1" }), "x"), { code: "bad_format", message: /"retired" must be a list of key ids/ });
});

t.test("an archive from before a rotation, restored: the store is marked to re-seal, the start alerts until a rotation re-seals it", async (t) => {
  const { openStorage } = await import("../../src/storage.ts");
  const { rotateStore } = await import("../../src/store/rotate.ts");
  const { createLogger } = await import("../../src/log.ts");
  const dir = t.testdir();
  const file = join(dir, "ring.key");
  const first = generateKeyRingFile(file);
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: first });
  for (let i = 0; i < 20; i++) await store.put("journal", `w:${i}`, { i });
  const archive = join(dir, "before.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  await store.close();
  writeKeyRingFile(file, first.withNewKey().withRetired());
  const ring = loadKeyRingFile(file);
  const data = join(dir, "restored");
  const r = await restoreArchive({ archive, dataPath: data, keyring: ring.allowing([1]), network: "regtest" });
  t.same(r.olderKeyIds, [1], "the restore reports the records under the retired key");

  const lines: Array<{ msg: string; alert?: boolean; keyIds?: number[] }> = [];
  const log = createLogger({ level: "info", destination: { write: (x: string) => void lines.push(JSON.parse(x)) } });
  let storage = await openStorage({ dataPath: data, keyring: ring, sync: false, log });
  t.match(lines.filter((l) => l.alert), [{ keyIds: [1], msg: /restored store holds records sealed under master key 1 \(retired by a rotation.*runigun keys rotate --resume/ }], "an alert at start");
  await storage.close();
  lines.length = 0;
  storage = await openStorage({ dataPath: data, keyring: ring, sync: false, log });
  t.equal(lines.filter((l) => l.alert).length, 1, "at every start, until re-sealed");
  // What `runigun keys rotate --resume` does: re-seal everything under the current key.
  const p = await rotateStore(storage.store);
  t.ok(p.rotated >= 20, `${p.rotated} records re-sealed`);
  let old = 0;
  for await (const v of storage.store.db.values()) if (v.length > 0 && Buffer.from(v).readUInt32BE(1) !== 2) old++;
  t.equal(old, 0, "nothing left under key 1");
  await storage.close();
  lines.length = 0;
  await (await openStorage({ dataPath: data, keyring: ring, sync: false, log })).close();
  t.same(lines.filter((l) => l.alert), [], "no alert once re-sealed");
  // An archive made under the current key needs nothing.
  const fresh = await restoreArchive({ archive: await (async () => {
    const s = await EncryptedStore.open({ path: join(data, "store"), keyring: ring });
    try {
      return (await writeArchive({ store: s, path: join(dir, "after.rga"), network: "regtest" })).path;
    } finally {
      await s.close();
    }
  })(), dataPath: join(dir, "r3"), keyring: ring, network: "regtest" });
  t.equal(fresh.olderKeyIds, undefined, "an archive under the current key: nothing to re-seal");
});
