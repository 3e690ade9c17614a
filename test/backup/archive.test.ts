// Snapshot archives and journal segments on real LevelDB and real files: a restore equals the store it came
// from; a damaged, truncated or foreign archive is refused with its own message and the data directory is
// left as it was; a backup killed mid-write leaves the previous archive whole.
import t from "tap";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync, truncateSync, writeFileSync, appendFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore, META, POSITION_KEY } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { verifyArchive, writeArchive } from "../../src/backup/archive.ts";
import { restoreArchive, RESTORED_KEY } from "../../src/backup/restore.ts";
import { SegmentShipper, listSegments } from "../../src/backup/segments.ts";
import { BackupError } from "../../src/backup/format.ts";
import { silentLogger } from "../../src/log.ts";

const master = randomBytes(32);
const ring = () => new KeyRing(new Map([[1, master]]), 1);

async function fill(store: EncryptedStore, n: number, from = 0, size = 200): Promise<void> {
  for (let i = from; i < from + n; i += 500) {
    await store.batch(Array.from({ length: Math.min(500, from + n - i) }, (_, j) => ({
      type: "put" as const, ns: "journal", key: `wallet:u_${String(i + j).padStart(6, "0")}\u0001000000000001`, value: { d: randomBytes(size).toString("base64"), n: BigInt(i + j) },
    })));
  }
}

/** Every record except the restore mark, the position and the timeline (a restore starts a new history). */
async function contents(path: string): Promise<Map<string, string>> {
  const s = await EncryptedStore.open({ path, keyring: ring() });
  const out = new Map<string, string>();
  for await (const [k, v] of s.db.iterator()) {
    if (k === POSITION_KEY || k === `${META}\u0000${RESTORED_KEY}` || k === `${META}\u0000timeline`) continue;
    const sep = k.indexOf("\u0000");
    out.set(k, JSON.stringify(s.openValue(k.slice(0, sep), k.slice(sep + 1), v), (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x)));
  }
  await s.close();
  return out;
}

t.test("a snapshot taken while writes go on restores to exactly the state it captured", async (t) => {
  const dir = t.testdir({ backups: {} });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  t.teardown(() => store.close());
  await fill(store, 3000);
  const archive = join(dir, "backups", "a.rga");
  // Writes racing the snapshot: the archive holds the state at the moment its iterator was opened.
  const racing = fill(store, 1000, 3000);
  const info = await writeArchive({ store, path: archive, network: "regtest" });
  await racing;
  t.ok(info.manifest.records >= 3003, `${info.manifest.records} records captured`);
  t.same(info.manifest.keyIds, [1]);
  t.equal((await verifyArchive(archive, ring())).position, info.manifest.position);
  t.same(readdirSync(join(dir, "backups")), ["a.rga"], "no temporary file left behind");

  const target = join(dir, "restored");
  const r = await restoreArchive({ archive, dataPath: target, keyring: ring(), network: "regtest" });
  t.equal(r.records, info.manifest.records);
  const restored = await contents(join(target, "store"));
  t.equal(restored.size, info.manifest.records - 2, "every record (position and timeline aside)");
  // The restored store is a prefix of the writes: records 0..2999 all there, with their values.
  const s = await EncryptedStore.open({ path: join(target, "store"), keyring: ring() });
  t.same(await s.get("journal", "wallet:u_002999\u0001000000000001").then((v) => (v as { n: bigint }).n), 2999n);
  t.ok(await s.get(META, RESTORED_KEY), "marked as restored: the engine reconciles before serving");
  await s.close();
});

t.test("snapshot + segments restore the latest state; a torn tail is a normal end, a damaged frame is reported where it is", async (t) => {
  const dir = t.testdir({ backups: {} });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const segs = join(dir, "backups", "segments");
  const shipper = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await shipper.attach(store);
  await fill(store, 500);
  const archive = join(dir, "backups", "a.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  await fill(store, 700, 500);
  await store.del("journal", "wallet:u_000001\u0001000000000001");
  await shipper.flush();
  t.equal(shipper.shipped, store.position, "everything durable is on the backup disk after a flush");
  await shipper.close();
  await store.close();
  const expected = await contents(join(dir, "store"));

  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r1"), keyring: ring(), network: "regtest" });
  t.ok(r.replayed > 0, `${r.replayed} batches replayed`);
  t.notOk(r.segments?.stop, "the segments reach the end");
  t.same(await contents(join(dir, "r1", "store")), expected, "restored = the store at its last write");

  // A crash mid-append leaves half a frame at the end of the newest file: restore stops before it.
  const newest = listSegments(segs).at(-1)!;
  appendFileSync(join(segs, newest.name), Buffer.from([0, 0, 1, 0, 7, 7]));
  const torn = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r2"), keyring: ring(), network: "regtest" });
  t.notOk(torn.segments?.stop, "a torn last frame is a normal end");
  t.same(await contents(join(dir, "r2", "store")), expected);

  // A damaged frame in the middle: restored up to it, and said where and why.
  const file = join(segs, newest.name);
  const bytes = readFileSync(file);
  bytes[bytes.length - 300]! ^= 0x40;
  writeFileSync(file, bytes);
  const damaged = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r3"), keyring: ring(), network: "regtest" });
  t.match(damaged.segments?.stop?.reason ?? "", /failed authentication/);
  t.ok(damaged.segments!.last < store.position, "stopped before the damage");
});

t.test("a flipped byte, a truncated archive, another master key: each refused with its own message, the data directory untouched", async (t) => {
  const dir = t.testdir({ backups: {}, data: { "keep.txt": "the operator's notes" } });
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  await fill(store, 400);
  const archive = join(dir, "backups", "good.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  await store.close();
  const good = readFileSync(archive);
  const data = join(dir, "data");
  const untouched = () => t.same(readdirSync(data), ["keep.txt"], "the data directory is as it was");

  const flipped = join(dir, "backups", "flipped.rga");
  const f = Buffer.from(good);
  f[Math.floor(f.length / 2)]! ^= 0x01;
  writeFileSync(flipped, f);
  await t.rejects(restoreArchive({ archive: flipped, dataPath: data, keyring: ring(), network: "regtest" }), { name: "BackupError", code: "tampered", message: /failed authentication/ });
  untouched();

  const truncated = join(dir, "backups", "truncated.rga");
  writeFileSync(truncated, good);
  truncateSync(truncated, good.length - 1000);
  await t.rejects(restoreArchive({ archive: truncated, dataPath: data, keyring: ring(), network: "regtest" }), { code: "truncated", message: /truncated/ });
  untouched();

  const other = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  await t.rejects(restoreArchive({ archive, dataPath: data, keyring: other, network: "regtest" }), { code: "foreign_key", message: /another master key/ });
  const unknownId = new KeyRing(new Map([[7, randomBytes(32)]]), 7);
  await t.rejects(restoreArchive({ archive, dataPath: data, keyring: unknownId, network: "regtest" }), { code: "foreign_key", message: /master key 1, which this key ring does not have/ });
  untouched();

  await t.rejects(restoreArchive({ archive, dataPath: data, keyring: ring(), network: "mainnet" }), { code: "bad_format", message: /archive is of regtest/ });
  untouched();

  // And into a data directory that already has a store: refused before anything is read.
  await restoreArchive({ archive, dataPath: data, keyring: ring(), network: "regtest" });
  await t.rejects(restoreArchive({ archive, dataPath: data, keyring: ring(), network: "regtest" }), { code: "not_empty", message: /not empty/ });
  t.ok(new BackupError("io", "x") instanceof Error);
});

t.test("kill -9 during a backup: the previous archive stays whole and restorable", async (t) => {
  const dir = t.testdir({ backups: {} });
  const storeDir = join(dir, "store");
  const store = await EncryptedStore.open({ path: storeDir, keyring: ring() });
  await fill(store, 2000, 0, 1000);
  const archive = join(dir, "backups", "latest.rga");
  const first = await writeArchive({ store, path: archive, network: "regtest" });
  await fill(store, 2000, 2000, 1000);
  await store.close();
  const before = statSync(archive).size;

  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "fixtures", "backup-and-die.ts"), storeDir, archive, master.toString("hex")], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, sig) => resolve(sig)));
  t.equal(signal, "SIGKILL", "the backup died by SIGKILL");
  t.match(out, /dying/);
  t.notMatch(out, /finished/, "before it could finish");
  t.ok(readdirSync(join(dir, "backups")).some((n) => n.includes(".partial-")), "its half-written temporary file is left (a later prune removes it)");
  t.equal(statSync(archive).size, before, "the previous archive was not touched");
  t.equal((await verifyArchive(archive, ring())).position, first.manifest.position, "and still verifies");
  const r = await restoreArchive({ archive, dataPath: join(dir, "restored"), keyring: ring(), network: "regtest" });
  t.equal(r.records, first.manifest.records);
  t.ok(existsSync(join(dir, "restored", "store")));
});

t.test("a restore starts a new timeline: segments shipped after it never mix with the old history's", async (t) => {
  const dir = t.testdir({ backups: {} });
  const segs = join(dir, "backups", "segments");
  // The first history: a snapshot, then more work that only the segments hold.
  const s1 = await EncryptedStore.open({ path: join(dir, "one", "store"), keyring: ring() });
  const ship1 = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await ship1.attach(s1);
  await fill(s1, 300);
  const x1 = join(dir, "backups", "x1.rga");
  await writeArchive({ store: s1, path: x1, network: "regtest" });
  for (let i = 0; i < 30; i++) await s1.put("journal", `old-history:${i}`, { i });
  await ship1.close();
  await s1.close();

  // Restored from the snapshot alone: a second history begins where the first snapshot stood.
  await restoreArchive({ archive: x1, dataPath: join(dir, "two"), keyring: ring(), network: "regtest" });
  const s2 = await EncryptedStore.open({ path: join(dir, "two", "store"), keyring: ring() });
  const timelines = new Set(listSegments(segs).map((f) => f.timeline));
  t.notOk(timelines.has(s2.timeline), "the restored store has a timeline of its own");
  const ship2 = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  t.equal(await ship2.attach(s2), 0, "nothing of the old history counts as shipped for the new one");
  const x2 = join(dir, "backups", "x2.rga");
  await writeArchive({ store: s2, path: x2, network: "regtest" });
  for (let i = 0; i < 10; i++) await s2.put("journal", `new-history:${i}`, { i });
  await ship2.close();
  await s2.close();
  const expected = await contents(join(dir, "two", "store"));

  // The second history's snapshot + segments: its own frames only, although the old ones use the same positions.
  const r = await restoreArchive({ archive: x2, segmentsDir: segs, dataPath: join(dir, "three"), keyring: ring(), network: "regtest" });
  t.equal(r.replayed, 10, "the ten batches of the new history");
  const restored = await contents(join(dir, "three", "store"));
  t.same(restored, expected, "equal to the second history's store");
  t.notOk([...restored.keys()].some((k) => k.includes("old-history")), "nothing of the old history's later work");
});

/** A store whose writes ship to segments from an empty snapshot archive on: the backup side of a restore test. */
async function shippingFromArchive(dir: string) {
  const segs = join(dir, "backups", "segments");
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const shipper = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await shipper.attach(store);
  const archive = join(dir, "backups", "a.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  return { dir, segs, store, shipper, archive };
}

t.test("a torn frame at the end of a file the next file takes over from (a write retried in a new file) is not damage", async (t) => {
  const { dir, segs, store, shipper, archive } = await shippingFromArchive(t.testdir({ backups: {} }));
  await fill(store, 100);
  await shipper.rollover();
  await fill(store, 100, 100);
  await shipper.close();
  await store.close();
  const files = listSegments(segs, store.timeline);
  t.equal(files.length, 2);
  appendFileSync(join(segs, files[0]!.name), Buffer.from([0, 0, 0, 200, 1, 2, 3])); // half a frame
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.notOk(r.segments?.stop, "the next file continues where the torn frame stopped");
  t.same(await contents(join(dir, "r", "store")), await contents(join(dir, "store")));
});

t.test("a backup disk that fills up mid-write: what did not fit is not counted as shipped, and is written again once there is room", async (t) => {
  const { dir, segs, store, shipper, archive } = await shippingFromArchive(t.testdir({ backups: {} }));
  await fill(store, 5);
  await shipper.flush();
  const before = shipper.shipped;
  await fill(store, 100, 5);
  const file = join(segs, listSegments(segs, store.timeline)[0]!.name);
  const size = statSync(file).size;
  // The kernel's limit on file size, for this process only (the soft limit; the hard one stays): a write crossing it
  // takes what fits and reports that as success — as a disk filling up does — and the next one fails (EFBIG).
  const limit = (soft: string) => execFileSync("prlimit", ["--pid", String(process.pid), `--fsize=${soft}:unlimited`]);
  // Crossing it also raises SIGXFSZ, whose default ends the process: caught, the write fails with EFBIG instead.
  const ignore = () => undefined;
  process.on("SIGXFSZ", ignore);
  limit(String(size + 3000));
  try {
    await shipper.flush();
  } finally {
    limit("unlimited");
    process.off("SIGXFSZ", ignore);
  }
  t.equal(shipper.stats.failures, 1, "the write failed");
  t.equal(shipper.shipped, before, "nothing of it counts as shipped");
  t.equal(statSync(file).size, size, "the part that fitted was cut off again: the file ends on a whole frame");
  await shipper.flush();
  t.ok(shipper.shipped > before, "once there is room, the frames are written");
  await shipper.close();
  await store.close();
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.notOk(r.segments?.stop, "the segments reach the end");
  t.same(await contents(join(dir, "r", "store")), await contents(join(dir, "store")), "and restore every record");
});

t.test("a rollover and a flush asked at the same time take turns: no write lands on the file being closed", async (t) => {
  const { dir, segs, store, shipper, archive } = await shippingFromArchive(t.testdir({ backups: {} }));
  for (let round = 0; round < 20; round++) {
    await fill(store, 5, round * 10);
    // The timer's flush can come while a snapshot's rollover is closing the file.
    const rolled = shipper.rollover();
    const flushed = fill(store, 5, round * 10 + 5).then(() => shipper.flush());
    await Promise.all([rolled, flushed]);
  }
  await shipper.close();
  await store.close();
  t.equal(shipper.stats.failures, 0, "no write failed");
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.notOk(r.segments?.stop, "the segments reach the end");
  t.same(await contents(join(dir, "r", "store")), await contents(join(dir, "store")));
});
