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
