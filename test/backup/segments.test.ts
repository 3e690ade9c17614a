// Journal segment files on real LevelDB and real files, damaged or moved the way a backup disk or a person can: a
// flipped bit in a frame's length is damage and the restore says where, a crash's torn tail is still a normal end,
// a file of another timeline renamed into this one's name is refused, and files of the first segment version (written
// by earlier releases) still restore, also when a newer release carries on the same timeline in new files.
import t from "tap";
import { createHmac, randomBytes } from "node:crypto";
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EncryptedStore, type RawOp } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { writeArchive } from "../../src/backup/archive.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { SegmentShipper, listSegments, segmentName } from "../../src/backup/segments.ts";
import { backupMacKey, keyCheck } from "../../src/backup/format.ts";
import { silentLogger } from "../../src/log.ts";

const master = randomBytes(32);
const ring = () => new KeyRing(new Map([[1, master]]), 1);

/**
 * Where each frame of a segment file starts and the position it holds. Reads both versions' layouts: version 1
 * ("RUNIGUN-SEGMENT\n", 28-byte header, u32 length) and version 2 (version byte 2, 56-byte header, u32 length + 4-byte
 * length check).
 */
function frames(bytes: Buffer): Array<{ at: number; position: number }> {
  const v1 = bytes[15] === 0x0a;
  const [header, head] = v1 ? [28, 4] : [56, 8];
  const out: Array<{ at: number; position: number }> = [];
  for (let at = header; at < bytes.length; at += head + bytes.readUInt32BE(at) + 32) {
    out.push({ at, position: Number(bytes.readBigUInt64BE(at + head)) });
  }
  return out;
}

/** A store shipping its writes to segments, with a snapshot archive taken before its `n` writes. */
async function shipped(dir: string, n: number, tag = "w") {
  const segs = join(dir, "backups", "segments");
  mkdirSync(join(dir, "backups"), { recursive: true }); // the backup disk, mounted (the shipper never makes it)
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const shipper = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await shipper.attach(store);
  const archive = join(dir, "backups", "a.rga");
  const snap = await writeArchive({ store, path: archive, network: "regtest" });
  for (let i = 0; i < n; i++) await store.put("journal", `${tag}:${String(i).padStart(3, "0")}`, { i });
  await shipper.close();
  const timeline = store.timeline;
  const position = store.position;
  await store.close();
  return { segs, archive, from: snap.manifest.position, timeline, position };
}

/** The `journal` records `tag:…` in a restored store. */
async function restoredCount(path: string, tag: string): Promise<number> {
  const s = await EncryptedStore.open({ path, keyring: ring() });
  let n = 0;
  for (let i = 0; i < 1000; i++) if ((await s.get("journal", `${tag}:${String(i).padStart(3, "0")}`)) !== undefined) n++;
  await s.close();
  return n;
}

t.test("a flipped bit in the length of a frame that is not the last is damage: the restore stops there and says where", async (t) => {
  const dir = t.testdir({ backups: {} });
  const { segs, archive, from, timeline, position } = await shipped(dir, 100);
  const file = listSegments(segs, timeline).at(-1)!;
  const path = join(segs, file.name);
  const bytes = readFileSync(path);
  t.equal(bytes[15], 2, "the shipper writes the current segment version");
  t.equal(bytes.toString("latin1", 28, 40), timeline, "with its timeline in the header");

  // One bit of frame 21's length (+16 MiB): the file now "ends inside" that frame, as a crash's torn tail would.
  const damaged = frames(bytes).find((f) => f.position === from + 21)!;
  bytes[damaged.at]! ^= 0x01;
  writeFileSync(path, bytes);
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.equal(r.segments?.stop?.file, file.name, "the restore stops, naming the file");
  t.match(r.segments?.stop?.reason ?? "", new RegExp(`length of the frame after position ${from + 20} \\(at byte ${damaged.at}\\) is damaged`), "and where and why");
  t.equal(r.segments!.last, from + 20, "everything before the damaged frame is restored");
  t.equal(await restoredCount(join(dir, "r", "store"), "w"), 20);
  t.ok(r.segments!.last < position);

  // The same bit flipped in a length's check instead: damage too, not a torn tail.
  bytes[damaged.at]! ^= 0x01;
  bytes[damaged.at + 5]! ^= 0x10;
  writeFileSync(path, bytes);
  const r2 = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r2"), keyring: ring(), network: "regtest" });
  t.match(r2.segments?.stop?.reason ?? "", /length of the frame .* is damaged/);
  t.equal(r2.segments!.last, from + 20);
});

t.test("a torn tail a crash leaves is still a normal end, in the length or in the body of the last frame", async (t) => {
  const dir = t.testdir({ backups: {} });
  const { segs, archive, from, timeline } = await shipped(dir, 30);
  const path = join(segs, listSegments(segs, timeline).at(-1)!.name);
  const whole = readFileSync(path);
  const last = frames(whole).at(-1)!;
  for (const [what, cut] of [["inside the length", last.at + 3], ["inside the length check", last.at + 6], ["inside the body", last.at + 20], ["inside the MAC", whole.length - 1]] as const) {
    writeFileSync(path, whole);
    truncateSync(path, cut);
    const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, `r-${cut}`), keyring: ring(), network: "regtest" });
    t.notOk(r.segments?.stop, `cut ${what}: a normal end`);
    t.equal(r.segments!.last, from + 29, `cut ${what}: every whole frame restored`);
  }
});

t.test("a torn frame at the end of a file the next file takes over from (a write retried in a new file) is not damage", async (t) => {
  const dir = t.testdir({ backups: {} });
  const segs = join(dir, "backups", "segments");
  mkdirSync(join(dir, "backups"), { recursive: true }); // the backup disk, mounted (the shipper never makes it)
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const shipper = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  await shipper.attach(store);
  const archive = join(dir, "backups", "a.rga");
  await writeArchive({ store, path: archive, network: "regtest" });
  for (let i = 0; i < 10; i++) await store.put("journal", `w:${String(i).padStart(3, "0")}`, { i });
  await shipper.rollover();
  for (let i = 10; i < 20; i++) await store.put("journal", `w:${String(i).padStart(3, "0")}`, { i });
  await shipper.close();
  const position = store.position;
  await store.close();
  const [one, two] = listSegments(segs, store.timeline);
  // What the failed write left in the first file: the start of the frame the second file begins with.
  const second = readFileSync(join(segs, two!.name));
  appendFileSync(join(segs, one!.name), second.subarray(frames(second)[0]!.at, frames(second)[0]!.at + 30));
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.notOk(r.segments?.stop, "the next file continues where the torn frame stopped");
  t.equal(r.segments!.last, position);
  t.equal(await restoredCount(join(dir, "r", "store"), "w"), 20);
});

t.test("a segment file of another timeline, renamed into this timeline's name, is refused and reported", async (t) => {
  const dir = t.testdir();
  // Two histories under the same master key: each store has a timeline of its own.
  const one = await shipped(join(dir, "one"), 40, "old-history");
  const two = await shipped(join(dir, "two"), 5, "new-history");
  t.not(one.timeline, two.timeline);
  // Someone with write access to the backup disk (and no key) copies the first history's file in under the second's
  // name, starting right after the second's last position.
  const foreign = segmentName(two.timeline, two.position + 1);
  copyFileSync(join(one.segs, listSegments(one.segs, one.timeline)[0]!.name), join(two.segs, foreign));
  const r = await restoreArchive({ archive: two.archive, segmentsDir: two.segs, dataPath: join(dir, "r"), keyring: ring(), network: "regtest" });
  t.equal(r.segments?.stop?.file, foreign, "the restore stops at the foreign file");
  t.match(r.segments?.stop?.reason ?? "", new RegExp(`belongs to timeline ${one.timeline}, not ${two.timeline}`));
  t.equal(r.segments!.last, two.position, "the second history is restored up to its own end");
  t.equal(await restoredCount(join(dir, "r", "store"), "new-history"), 5);
  t.equal(await restoredCount(join(dir, "r", "store"), "old-history"), 0, "nothing of the other history");

  // The header rewritten to claim this timeline: its MAC no longer holds.
  const bytes = readFileSync(join(two.segs, foreign));
  bytes.write(two.timeline, 28, "latin1");
  writeFileSync(join(two.segs, foreign), bytes);
  const r2 = await restoreArchive({ archive: two.archive, segmentsDir: two.segs, dataPath: join(dir, "r2"), keyring: ring(), network: "regtest" });
  t.match(r2.segments?.stop?.reason ?? "", /header failed authentication/);
  t.equal(await restoredCount(join(dir, "r2", "store"), "old-history"), 0);
});

/** A segment file of version 1, the format earlier releases wrote (built here byte by byte, as they wrote it). */
function versionOneFile(frames: Array<{ position: number; ops: readonly RawOp[] }>): Buffer {
  const mac = backupMacKey(ring(), 1, "segments");
  const header = Buffer.concat([Buffer.from("RUNIGUN-SEGMENT\n", "latin1"), Buffer.from([0, 0, 0, 1]), keyCheck(ring(), 1)]);
  return Buffer.concat([header, ...frames.map(({ position, ops }) => {
    const parts: Buffer[] = [Buffer.alloc(8), Buffer.alloc(4)];
    parts[0]!.writeBigUInt64BE(BigInt(position));
    parts[1]!.writeUInt32BE(ops.length);
    for (const o of ops) {
      const key = Buffer.from(o.key, "utf8");
      const kl = Buffer.alloc(5);
      kl.writeUInt8(o.type === "put" ? 1 : 2, 0);
      kl.writeUInt32BE(key.length, 1);
      parts.push(kl, key);
      if (o.type === "put") {
        const vl = Buffer.alloc(4);
        vl.writeUInt32BE(o.value!.length);
        parts.push(vl, o.value!);
      }
    }
    const body = Buffer.concat(parts);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    return Buffer.concat([len, body, createHmac("sha256", mac).update(body).digest()]);
  })]);
}

t.test("segment files of the first version still restore, also when a newer release carries on the timeline", async (t) => {
  const dir = t.testdir({ backups: { segments: {} } });
  const segs = join(dir, "backups", "segments");
  mkdirSync(join(dir, "backups"), { recursive: true }); // the backup disk, mounted (the shipper never makes it)
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring: ring() });
  const archive = join(dir, "backups", "a.rga");
  const snap = await writeArchive({ store, path: archive, network: "regtest" });
  // An earlier release ships 30 commits (a torn tail of the 31st after them, as its crash left it).
  const old: Array<{ position: number; ops: readonly RawOp[] }> = [];
  const stop = store.onWrite((position, ops) => old.push({ position, ops: ops.map((o) => ({ ...o })) }));
  for (let i = 0; i < 30; i++) await store.put("journal", `w:${String(i).padStart(3, "0")}`, { i });
  stop();
  const v1 = join(segs, segmentName(store.timeline, old[0]!.position));
  writeFileSync(v1, Buffer.concat([versionOneFile(old), versionOneFile([{ position: store.position + 1, ops: [] }]).subarray(28, 28 + 20)]));
  t.equal(frames(readFileSync(v1)).length, 31, "a version-1 file of 30 whole frames and a torn one");

  const alone = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r1"), keyring: ring(), network: "regtest" });
  t.notOk(alone.segments?.stop, "a version-1 file reads as before, its torn tail a normal end");
  t.equal(alone.replayed, 30);
  t.equal(await restoredCount(join(dir, "r1", "store"), "w"), 30);

  // This release starts on the same store and timeline: it knows what the old file holds and goes on in a new file.
  const shipper = new SegmentShipper({ dir: segs, keyring: ring(), intervalMs: 60_000, log: silentLogger });
  t.equal(await shipper.attach(store), snap.manifest.position + 30, "the version-1 file counts as shipped");
  for (let i = 30; i < 60; i++) await store.put("journal", `w:${String(i).padStart(3, "0")}`, { i });
  await shipper.close();
  const position = store.position;
  await store.close();
  const files = listSegments(segs, store.timeline);
  t.same(files.map((f) => readFileSync(join(segs, f.name))[15]), [0x0a, 2], "the old file as it was, then a current-version one");
  // The old file's torn tail is not at the end any more: the next file takes over from there.
  const r = await restoreArchive({ archive, segmentsDir: segs, dataPath: join(dir, "r2"), keyring: ring(), network: "regtest" });
  t.notOk(r.segments?.stop, "both versions read in turn, to the end");
  t.equal(r.segments!.last, position);
  t.equal(await restoredCount(join(dir, "r2", "store"), "w"), 60);
});
