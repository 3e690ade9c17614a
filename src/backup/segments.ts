// Continuous backup: every durable store batch is appended, still sealed, to numbered segment files in the
// backup directory (a second disk in production). Frames are buffered and written + fdatasync'ed once per
// interval, so the write path never waits for the backup disk and a restore loses at most one interval.
//
// File:   "RUNIGUN-SEGMENT" | version u8 (2) | key id u32 | key check 8 | timeline 12 | header MAC 16
//         named seg-<timeline>-<first position, 16 digits>.rgs
// Frame:  u32 body length | length check 4 | body | HMAC-SHA256(frame key, u32 body length | body)
// Body:   u64 position | u32 op count | ops: u8 type (1 put, 2 del) | u32 key length | key | [u32 length | value]
// The header MAC is under the segment key; the frame key is the segment key bound to the timeline, and the length
// check is HMAC-SHA256(frame key, u32 body length)'s first 4 bytes. A damaged length is found before it is trusted,
// and a file of another timeline (another history, or another store under the same master key) fails under this one.
//
// A clean stop: the backup service's last write before it closes is a put of META "backup-stop" (STOP_KEY), an
// ordinary frame (a reader of any version replays it as a record). A reader recognises it by its key, which is in
// the clear, and a timeline whose last frame is one ends where its engine stopped cleanly: nothing was written after
// it. Segments that end on any other frame end where the engine died, with up to an interval (more while the backup
// disk failed) written and never shipped.
//
// Version 1, the first format (its magic ended in "\n", read as the version byte), is still read:
//   "RUNIGUN-SEGMENT\n" | key id u32 | key check 8, frames u32 body length | body | HMAC-SHA256(segment key, body).
// Nothing in it covers the length or names the timeline, so a version-1 file cannot tell a damaged length (in its
// newest file) from a crash's torn tail, nor a file of another timeline renamed into this one's name from its own.
import { createHmac, timingSafeEqual } from "node:crypto";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { mkdir, open, stat, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Logger } from "../log.ts";
import { EncryptedStore, META, type RawOp } from "../store/db.ts";
import type { KeyRing } from "../store/keyring.ts";
import { BackupError, FileReader, backupMacKey, keyCheck, refuseRetired, writeFully } from "./format.ts";

const MAGIC = Buffer.from("RUNIGUN-SEGMENT", "latin1");
const V1 = 0x0a;
const VERSION = 2;
const HEADER_V1 = MAGIC.length + 1 + 4 + 8;
const TIMELINE_RE = /^[0-9a-f]{12}$/;
const HEADER_MAC = 16;
const HEADER = HEADER_V1 + 12 + HEADER_MAC;
const NAME_RE = /^seg-([0-9a-f]{12})-(\d{16})\.rgs$/;
const LENGTH_CHECK = 4;
const MAC = 32;

/** The store record (in META) of a clean stop: see the top of this file. */
export const STOP_KEY = "backup-stop";
const STOP_RECORD = EncryptedStore.recordKey(META, STOP_KEY);

/** Whether a frame holds a clean stop's record (the last write of a clean close). */
const isStop = (ops: readonly RawOp[]): boolean => ops.some((o) => o.type === "put" && o.key === STOP_RECORD);

/** What an operator is told when the backup directory itself is not there (a disk not mounted, its mount point gone). */
export const missingBackupDir = (dir: string): string =>
  `backup directory ${dir} is missing or not mounted: mount the backup disk there (or create the directory, 0700, on it); backups resume by themselves once it is there`;

/**
 * Makes `sub` (snapshots/, segments/) inside the backup directory `dir` where a file is about to be created in it: a
 * new, empty backup disk mounted at `dir` while the engine runs gets them again. `dir` itself is never made here — a
 * missing one is a disk not mounted, and backups written in its place would land on the engine's own disk — it is a
 * BackupError ("no_target") that says so. Returns whether `sub` had to be made.
 */
export async function ensureBackupSubdir(dir: string, sub: string): Promise<boolean> {
  if (existsSync(sub)) return false;
  if (!existsSync(dir)) throw new BackupError("no_target", missingBackupDir(dir));
  try {
    await mkdir(sub, { recursive: true, mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new BackupError("no_target", missingBackupDir(dir));
    throw e;
  }
  // The new directory's entry must survive a power cut, as the files written into it do.
  const d = await open(dir, "r");
  await d.sync().finally(() => d.close());
  return true;
}

export const segmentName = (timeline: string, firstPosition: number) => `seg-${timeline}-${String(firstPosition).padStart(16, "0")}.rgs`;

/** The segment files of one timeline (a store's history; a restore starts a new one), in position order. */
export function listSegments(dir: string, timeline?: string): Array<{ name: string; first: number; timeline: string }> {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const m = NAME_RE.exec(name);
    return m && (timeline === undefined || m[1] === timeline) ? [{ name, first: Number(m[2]), timeline: m[1]! }] : [];
  }).sort((a, b) => a.first - b.first);
}

/** The key of one timeline's frames: a frame MACs only under the timeline it was written for. */
export const frameKey = (macKey: Buffer, timeline: string): Buffer => createHmac("sha256", macKey).update(`runigun-segment-timeline-${timeline}`).digest();

const lengthCheck = (key: Buffer, length: Buffer): Buffer => createHmac("sha256", key).update(length).digest().subarray(0, LENGTH_CHECK);

/** One frame of the current version, under the timeline's `frameKey`. */
export function encodeFrame(key: Buffer, position: number, ops: readonly RawOp[]): Buffer {
  let size = 8 + 4;
  const keys = ops.map((o) => Buffer.from(o.key, "utf8"));
  ops.forEach((o, i) => (size += 1 + 4 + keys[i]!.length + (o.type === "put" ? 4 + o.value!.length : 0)));
  const out = Buffer.allocUnsafe(4 + LENGTH_CHECK + size + MAC);
  out.writeUInt32BE(size, 0);
  lengthCheck(key, out.subarray(0, 4)).copy(out, 4);
  let at = 4 + LENGTH_CHECK;
  at = out.writeBigUInt64BE(BigInt(position), at);
  at = out.writeUInt32BE(ops.length, at);
  ops.forEach((o, i) => {
    at = out.writeUInt8(o.type === "put" ? 1 : 2, at);
    at = out.writeUInt32BE(keys[i]!.length, at);
    at += keys[i]!.copy(out, at);
    if (o.type === "put") {
      at = out.writeUInt32BE(o.value!.length, at);
      at += o.value!.copy(out, at);
    }
  });
  createHmac("sha256", key).update(out.subarray(0, 4)).update(out.subarray(4 + LENGTH_CHECK, at)).digest().copy(out, at);
  return out;
}

/** The position in an encoded frame (after its length and length check). */
const framePosition = (frame: Buffer): number => Number(frame.readBigUInt64BE(4 + LENGTH_CHECK));

/** The current version's file header for `timeline`, authenticated under the segment key. */
function encodeHeader(keyring: KeyRing, keyId: number, macKey: Buffer, timeline: string): Buffer {
  const h = Buffer.alloc(HEADER);
  let at = MAGIC.copy(h, 0);
  at = h.writeUInt8(VERSION, at);
  at = h.writeUInt32BE(keyId, at);
  at += keyCheck(keyring, keyId).copy(h, at);
  at += h.write(timeline, at, "latin1");
  createHmac("sha256", macKey).update(h.subarray(0, at)).digest().copy(h, at, 0, HEADER_MAC);
  return h;
}

/**
 * Checks a segment file's header: the key that wrote it (another master key throws), and for the current version that
 * it is whole and belongs to `timeline`. Returns the header's length and the frames' key, or why the file is refused.
 */
function checkHeader(header: Buffer, keyring: KeyRing, name: string, timeline: string): { version: number; start: number; key: Buffer } | { refused: string } {
  const version = header.length >= HEADER_V1 && header.subarray(0, MAGIC.length).equals(MAGIC) ? header[MAGIC.length]! : undefined;
  if (version !== V1 && version !== VERSION) {
    return { refused: version === undefined ? "not a segment file (bad header)" : `segment format ${version} is not one this version of RuniGun reads; restore with the version that wrote it` };
  }
  if (version === VERSION && header.length < HEADER) return { refused: "not a segment file (bad header)" };
  const keyId = header.readUInt32BE(MAGIC.length + 1);
  if (!keyring.has(keyId) || !timingSafeEqual(header.subarray(MAGIC.length + 1 + 4, HEADER_V1), keyCheck(keyring, keyId))) {
    throw new BackupError("foreign_key", `segment ${name} was written under another master key (id ${keyId}); use the key ring that wrote it`);
  }
  refuseRetired(keyring, keyId, `segment ${name}`);
  const macKey = backupMacKey(keyring, keyId, "segments");
  if (version === V1) return { version, start: HEADER_V1, key: macKey };
  const mac = createHmac("sha256", macKey).update(header.subarray(0, HEADER - HEADER_MAC)).digest().subarray(0, HEADER_MAC);
  if (!timingSafeEqual(header.subarray(HEADER - HEADER_MAC, HEADER), mac)) return { refused: "its header failed authentication (damaged or altered)" };
  const own = header.toString("latin1", HEADER_V1, HEADER - HEADER_MAC);
  if (own !== timeline) {
    return { refused: `it belongs to timeline ${own}, not ${timeline}: a file of another history under this one's name; move it out of the segments directory` };
  }
  return { version, start: HEADER, key: frameKey(macKey, timeline) };
}

export interface SegmentFrame {
  position: number;
  ops: RawOp[];
}

/** Where reading stopped, and why, when it did not reach the end cleanly. */
export interface SegmentsEnd {
  last: number;
  /** A torn last frame (the writer died mid-append) is normal; anything else is damage and is reported. */
  stop?: { file: string; reason: string };
  /**
   * The last frame, at `last` (replayed, or already in the archive at its position), is a clean stop's record: the
   * engine wrote nothing after it. Absent when the segments end on anything else (a crash's end: the last interval
   * before it may never have been shipped).
   */
  cleanStop?: true;
  /**
   * The segments hold the frame at `last` (replayed, or at the archive's position): they are this store's history up
   * to there. Absent when they hold nothing of it from the archive's position on (another directory, an empty one).
   */
  holdsLast?: true;
}

/**
 * Reads every frame of the segments in `dir` in position order, checking each frame's MAC and that positions
 * follow each other. Stops (without throwing) at a gap or a damaged frame and says where in `end.stop`.
 */
export async function readSegments(dir: string, keyring: KeyRing, timeline: string, after: number, onFrame: (f: SegmentFrame) => Promise<void>): Promise<SegmentsEnd> {
  let last = after;
  /** Whether the frame at `last` is a clean stop's record, and whether it was read at all (see SegmentsEnd). */
  let clean = false;
  let holds = false;
  const end = (): SegmentsEnd => ({ last, ...(clean ? { cleanStop: true } : {}), ...(holds ? { holdsLast: true } : {}) });
  const files = listSegments(dir, timeline);
  for (let i = 0; i < files.length; i++) {
    const { name, first } = files[i]!;
    const next = files[i + 1]?.first;
    // A file wholly at or before `after` has nothing for us.
    if (next !== undefined && next - 1 <= after) continue;
    if (first > last + 1) return { last, stop: { file: name, reason: `positions ${last + 1}–${first - 1} are missing (a gap in continuous backup)` } };
    const path = join(dir, name);
    const fh = await open(path, "r");
    try {
      const size = (await fh.stat()).size;
      const header = Buffer.alloc(Math.min(size, HEADER));
      await fh.read(header, 0, header.length, 0);
      const h = checkHeader(header, keyring, name, timeline);
      if ("refused" in h) return { last, stop: { file: name, reason: h.refused } };
      // Version 1 has no length check: whatever its length says is believed (see the top of this file).
      const head = h.version === V1 ? 4 : 4 + LENGTH_CHECK;
      const r = new FileReader(fh, `segment ${name}`, h.start);
      while (!(await r.atEnd())) {
        const at = h.start + r.consumed;
        let frame: SegmentFrame;
        try {
          // Lengths are checked against what the file holds before anything is read: a frame longer than the rest of
          // the file is cut short, without reading (or allocating) what its length claims.
          if (size - at < head) throw new BackupError("truncated", `segment ${name} ends inside a frame`);
          const length = await r.take(head);
          const len = length.readUInt32BE();
          if (h.version !== V1 && !timingSafeEqual(length.subarray(4), lengthCheck(h.key, length.subarray(0, 4)))) {
            return { last, stop: { file: name, reason: `the length of the frame after position ${last} (at byte ${at}) is damaged (its check fails); what follows it cannot be read` } };
          }
          if (size - at < head + len + MAC) throw new BackupError("truncated", `segment ${name} ends inside a frame`);
          const body = await r.take(len);
          const mac = createHmac("sha256", h.key);
          if (h.version !== V1) mac.update(length.subarray(0, 4));
          if (!timingSafeEqual(await r.take(MAC), mac.update(body).digest())) {
            return { last, stop: { file: name, reason: `a frame after position ${last} (at byte ${at}) failed authentication (damaged or altered)` } };
          }
          frame = decodeBody(body);
        } catch (e) {
          if (e instanceof BackupError && e.code === "truncated") {
            // A torn tail is what a crash (or a failed write, retried in a new file) leaves mid-append: normal at
            // the end of the newest file, or when the next file takes over from here; anything else is damage. (In
            // the current version the length was checked first: a damaged one never gets here.)
            // Neither is a clean end: the torn frame was written after the one before it.
            if (i === files.length - 1) {
              clean = false;
              return end();
            }
            if (next !== undefined && next <= last + 1) {
              clean = false;
              break;
            }
            return { last, stop: { file: name, reason: `a frame after position ${last} (at byte ${at}) is cut short` } };
          }
          throw e;
        }
        if (frame.position <= last) {
          // Shipped twice (an earlier run's file overlaps): already applied. Or one the archive holds: the frame at its
          // very position says whether the engine stopped cleanly there.
          if (frame.position === last) {
            clean = isStop(frame.ops);
            holds = true;
          }
          continue;
        }
        if (frame.position !== last + 1) return { last, stop: { file: name, reason: `positions ${last + 1}–${frame.position - 1} are missing (a gap in continuous backup)` } };
        await onFrame(frame);
        last = frame.position;
        clean = isStop(frame.ops);
        holds = true;
      }
    } finally {
      await fh.close();
    }
  }
  return end();
}

function decodeBody(body: Buffer): SegmentFrame {
  let at = 0;
  const position = Number(body.readBigUInt64BE(at));
  at += 8;
  const n = body.readUInt32BE(at);
  at += 4;
  const ops: RawOp[] = [];
  for (let i = 0; i < n; i++) {
    const type = body.readUInt8(at++);
    const kl = body.readUInt32BE(at);
    at += 4;
    const key = body.toString("utf8", at, at + kl);
    at += kl;
    if (type === 1) {
      const vl = body.readUInt32BE(at);
      at += 4;
      ops.push({ type: "put", key, value: Buffer.from(body.subarray(at, at + vl)) });
      at += vl;
    } else {
      ops.push({ type: "del", key });
    }
  }
  return { position, ops };
}

/** The last position held by the segments of a timeline in `dir` (0 if none): see shippedEnd. */
export async function lastShipped(dir: string, keyring: KeyRing, timeline: string): Promise<number> {
  return (await shippedEnd(dir, keyring, timeline)).last;
}

/**
 * Where the segments of a timeline in `dir` end: the last position they hold (0 if none), and whether the frame there
 * is a clean stop's record (the last run stopped cleanly and nothing of a later run reached them). Reads the newest
 * file that holds a frame: one with only its header (a write that failed or died after making it) says nothing of
 * how the file before it ends.
 */
export async function shippedEnd(dir: string, keyring: KeyRing, timeline: string): Promise<{ last: number; cleanStop: boolean }> {
  const files = listSegments(dir, timeline);
  // The newest file may predate a rotation (written under the key it retired): where the shipping goes on from, not
  // what a restore would trust.
  const ring = keyring.allowing([...keyring.retired]);
  for (let i = files.length - 1; i >= 0; i--) {
    let last = files[i]!.first - 1;
    const end = await readSegments(dir, ring, timeline, last, async (f) => {
      last = f.position;
    }).catch(() => undefined);
    if (!end) return { last, cleanStop: false };
    if (end.holdsLast || end.stop || i === 0) return { last: Math.max(last, end.last), cleanStop: end.cleanStop === true };
  }
  return { last: 0, cleanStop: false };
}

export interface ShipperOptions {
  dir: string;
  keyring: KeyRing;
  intervalMs: number;
  log: Pick<Logger, "warn" | "error">;
  /** Start a new file past this size. */
  maxFileBytes?: number;
  /** Frames kept in memory while the backup disk fails, before giving up on continuity (a snapshot heals it). */
  maxBufferedBytes?: number;
  /**
   * Called when the segments directory was missing at a write and has been made again (a new, empty backup disk
   * mounted while the engine runs): the earlier segments are not on it, and only a snapshot makes it a backup again.
   */
  onDirRecreated?: () => void;
  /**
   * Called every time frames are dropped (continuity broken), even while an earlier break waits for its repair: only a
   * snapshot taken after this drop covers it (see `repaired`). Called again when writes resume after the backup
   * directory was missing while broken (the snapshot asked for meanwhile could not be written there).
   */
  onBroken?: () => void;
}

/** Ships a store's durable batches to segment files. */
export class SegmentShipper {
  readonly #o: ShipperOptions;
  readonly #macKey: Buffer;
  readonly #keyId: number;
  /** The frames' key, bound to the store's timeline (known once attached). */
  #frameKey: Buffer = Buffer.alloc(0);
  /** Frames not yet on the backup disk, in position order (not always consecutive: frames may be dropped between them). */
  #frames: Buffer[] = [];
  #bufferedBytes = 0;
  #fh: FileHandle | undefined;
  /** The open file's path: a write checks that it is still the file there (see #stillThere). */
  #path = "";
  #fileBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  #detach: (() => void) | undefined;
  #timeline = "";
  /** The last position on the backup disk (fdatasync'ed). */
  shipped = 0;
  /** At attach: the segments end on a clean stop's record (see shippedEnd). */
  endsOnStop = false;
  #broken = false;
  /** The last position dropped. */
  #lostUpTo = 0;
  /** The backup directory is missing (said once, with an alert, until a write succeeds again). */
  #dirMissing = false;
  readonly stats = { frames: 0, bytes: 0, flushes: 0, failures: 0, lastFlushMs: 0 };

  constructor(o: ShipperOptions) {
    this.#o = o;
    this.#keyId = o.keyring.current;
    this.#macKey = backupMacKey(o.keyring, this.#keyId, "segments");
    // Never the backup directory itself (a disk not mounted: see ensureBackupSubdir); the first write says it is missing.
    if (existsSync(dirname(o.dir))) mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  }

  /** Positions were lost to a failing backup disk, and no snapshot since covers them: one is needed to heal it. */
  get broken(): boolean {
    return this.#broken;
  }

  /**
   * A snapshot at `position` is written: the positions dropped up to it are in it. Continuity is whole again when no
   * position was dropped after it (a break during the snapshot waits for the next one). Returns whether it is broken.
   */
  repaired(position: number): boolean {
    if (this.#broken && position >= this.#lostUpTo) {
      this.#broken = false;
      this.#o.log.warn({ position, lostUpTo: this.#lostUpTo }, "continuous backup is whole again: a snapshot covers the frames it dropped");
    }
    return this.#broken;
  }

  /** Starts shipping the store's writes; returns the last position already on the backup disk. */
  async attach(store: EncryptedStore): Promise<number> {
    if (!TIMELINE_RE.test(store.timeline)) throw new BackupError("bad_format", `the store's timeline "${store.timeline}" is not 12 hex digits; segments could not be named after it`);
    this.#timeline = store.timeline;
    this.#frameKey = frameKey(this.#macKey, this.#timeline);
    const end = await shippedEnd(this.#o.dir, this.#o.keyring, this.#timeline);
    this.shipped = end.last;
    this.endsOnStop = end.cleanStop;
    this.#detach = store.onWrite((position, ops) => {
      const f = encodeFrame(this.#frameKey, position, ops);
      this.#frames.push(f);
      this.#bufferedBytes += f.length;
      if (this.#bufferedBytes > (this.#o.maxBufferedBytes ?? 256 << 20)) {
        // The backup disk has been failing for a while: drop the buffer rather than the engine's memory. Every drop is
        // a break of its own, also one while an earlier break is still unrepaired: a snapshot taken before it does not
        // hold what it dropped.
        this.#frames = [];
        this.#bufferedBytes = 0;
        this.#broken = true;
        this.#lostUpTo = position;
        this.#o.log.error({ alert: true, lostUpTo: position }, "continuous backup dropped frames (backup disk failing); a snapshot will restore continuity");
        this.#o.onBroken?.();
      }
    });
    this.#timer = setInterval(() => void this.flush(), this.#o.intervalMs);
    this.#timer.unref();
    return this.shipped;
  }

  /** Writes and syncs whatever is buffered (also what the timer calls). Serialized. */
  flush(): Promise<void> {
    return this.#inTurn(() => this.#flushNow());
  }

  /** Runs `step` after every flush or rollover asked before it: none of them touches the file while another does. */
  #inTurn(step: () => Promise<void>): Promise<void> {
    this.#flushing = this.#flushing.then(step, step);
    return this.#flushing;
  }

  async #flushNow(): Promise<void> {
    if (this.#frames.length === 0) return;
    const frames = this.#frames;
    const first = framePosition(frames[0]!);
    this.#frames = [];
    this.#bufferedBytes = 0;
    const started = performance.now();
    /** The file's length before this write, when the write may have left part of it there. */
    let torn: number | undefined;
    try {
      if (!this.#fh || this.#fileBytes > (this.#o.maxFileBytes ?? 64 << 20) || !(await this.#stillThere())) await this.#newFile(first);
      const buf = Buffer.concat(frames);
      torn = this.#fileBytes;
      await writeFully(this.#fh!, buf);
      await this.#fh!.datasync();
      torn = undefined;
      this.#fileBytes += buf.length;
      this.stats.frames += frames.length;
      this.stats.bytes += buf.length;
      this.stats.flushes++;
      this.stats.lastFlushMs = performance.now() - started;
      // The last frame's own position: frames dropped while this write was under way may leave a gap after the ones
      // it had taken, and a failed write puts those back ahead of the ones that followed the gap.
      this.shipped = framePosition(frames.at(-1)!);
      if (this.#dirMissing) {
        this.#dirMissing = false;
        this.#o.log.warn({ dir: dirname(this.#o.dir), shipped: this.shipped }, "the backup directory is back: continuous backup resumed");
        // The snapshot asked for at a drop could not be written while the directory was missing: asked again.
        if (this.#broken) this.#o.onBroken?.();
      }
    } catch (e) {
      this.stats.failures++;
      // Keep the frames for the next try, in order, ahead of anything that arrived meanwhile.
      this.#frames = [...frames, ...this.#frames];
      this.#bufferedBytes += frames.reduce((n, f) => n + f.length, 0);
      // Part of the frames may be in the file (a disk filling up takes what fits): cut them off, so the file ends on a
      // whole frame and the retry, in a new file, starts where this one stops. Should that fail too, a restore reads
      // the torn tail as the end of this file and the next file as what follows.
      if (torn !== undefined) await this.#fh?.truncate(torn).catch(() => undefined);
      await this.#fh?.close().catch(() => undefined);
      this.#fh = undefined;
      if (e instanceof BackupError && e.code === "no_target") {
        // Every interval retries; the operator is told once, not at every retry.
        if (!this.#dirMissing) this.#o.log.error({ err: e.message, dir: dirname(this.#o.dir), alert: true }, `${e.message}. Continuous backup keeps the frames in memory meanwhile (up to its limit, then a snapshot is needed and taken once the directory is back)`);
        this.#dirMissing = true;
        return;
      }
      this.#o.log.error({ err: (e as Error).message, alert: true }, "continuous backup could not write its segment; retrying");
    }
  }

  /**
   * Whether the open file is still the one at its name: a backup disk swapped under the engine (a new one mounted at
   * the backup directory, the directory removed) leaves it writing, without an error, into a file nobody will read.
   */
  async #stillThere(): Promise<boolean> {
    const [open, named] = await Promise.all([this.#fh!.stat().catch(() => undefined), stat(this.#path).catch(() => undefined)]);
    return open !== undefined && named !== undefined && open.ino === named.ino && open.dev === named.dev;
  }

  async #newFile(first: number): Promise<void> {
    await this.#fh?.close();
    this.#fh = undefined;
    // The directory is made again here, not only at the start: a new, empty disk mounted at the backup directory while
    // the engine runs would otherwise fail every write until a restart.
    if (await ensureBackupSubdir(dirname(this.#o.dir), this.#o.dir)) {
      this.#o.log.warn({ dir: this.#o.dir }, "the segments directory was missing (a new or empty backup disk?) and was made again; a snapshot is taken to make it a backup again");
      this.#o.onDirRecreated?.();
    }
    const path = join(this.#o.dir, segmentName(this.#timeline, first));
    const header = encodeHeader(this.#o.keyring, this.#keyId, this.#macKey, this.#timeline);
    // Appends, and reads what an earlier try left at this name.
    const fh = await open(path, "a+", 0o600);
    let size = (await stat(path)).size;
    if (size > 0) {
      const had = Buffer.alloc(Math.min(size, HEADER));
      await fh.read(had, 0, had.length, 0);
      const ours = had.equals(header.subarray(0, had.length));
      // Frames of two versions or keys never share a file: one that holds more than a header not ours (an earlier
      // run's, before an upgrade or a key rotation) is left as it is, and this write fails, loudly.
      if (!ours && size > HEADER) {
        await fh.close();
        throw new BackupError("bad_format", `${path} already holds frames of another segment version, master key or timeline; move it aside so continuous backup can go on`);
      }
      // A header cut short by a full disk (an earlier try at this file), or one of another version or key with no
      // whole frame after it (a run that died before its first flush): written again whole.
      if (!ours || size < HEADER) {
        await fh.truncate(0);
        size = 0;
      }
    }
    if (size === 0) await writeFully(fh, header);
    this.#fh = fh;
    this.#path = path;
    this.#fileBytes = Math.max(size, HEADER);
    // The directory entry must survive a power cut too.
    const d = await open(this.#o.dir, "r");
    await d.sync().finally(() => d.close());
  }

  /** Starts the next frame in a new file (after a snapshot, so old files can be pruned whole). */
  rollover(): Promise<void> {
    return this.#inTurn(() => this.#flushAndClose());
  }

  async #flushAndClose(): Promise<void> {
    await this.#flushNow();
    const fh = this.#fh;
    this.#fh = undefined;
    await fh?.close();
  }

  /** A crash, for tests: stop where it stands; what is buffered is lost, as it would be. */
  abandon(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#detach?.();
    this.#frames = [];
    void this.#fh?.close().catch(() => undefined);
    this.#fh = undefined;
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#detach?.();
    await this.#inTurn(() => this.#flushAndClose());
  }
}
