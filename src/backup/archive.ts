// Snapshot archives: one file holding every record of the store as it stood at one instant (LevelDB's
// iterator reads from an implicit snapshot, so the engine keeps serving while it is taken), an optional
// sealed copy of the node's wallet file, and a manifest — authenticated as a whole.
//
// Layout:  header | frames | trailer
//   header  "RUNIGUN-ARCHIVE\n" | version u8 | key id u32 | key check 8 | total length u64
//   frames  0x01 record: u32 key length | key | u32 value length | sealed value (as stored)
//           0x02 blob:   u16 name length | name | u32 length | sealed bytes
//           0x03 manifest (last): u32 length | JSON
//   trailer HMAC-SHA256(archive key, header | SHA-256(frames))
// Values stay sealed under the store's keys, so an archive is as private as the store. It is written to a
// temporary name, synced and renamed: a crash mid-backup leaves the previous archive whole.
import { createHash, createHmac, randomBytes, timingSafeEqual, type Hash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, rename, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { EncryptedStore } from "../store/db.ts";
import { META, POSITION_KEY } from "../store/db.ts";
import { keyIdOf, open as openEnvelope, seal } from "../store/envelope.ts";
import type { KeyRing } from "../store/keyring.ts";
import { BackupError, backupMacKey, keyCheck, refuseRetired, writeFully } from "./format.ts";

const MAGIC = Buffer.from("RUNIGUN-ARCHIVE\n", "latin1");
const VERSION = 1;
const HEADER = MAGIC.length + 1 + 4 + 8 + 8;
const TRAILER = 32;
const REC = 1, BLOB = 2, MANIFEST = 3;
const SEP = "\u0000";
const TIMELINE_KEY = META + SEP + "timeline";

/**
 * Names this process's temporary files (archives being written, here and in the backup service): drawn at each start,
 * so a file left by a process killed with -9 is told from ours even when the pid repeats (PID 1 in a container).
 */
export const runToken = randomBytes(6).toString("hex");

export interface Manifest {
  format: "runigun-archive-1";
  network: string;
  createdAt: string;
  /** The store's commit position the snapshot reflects: segments after it (of its timeline) replay on top. */
  position: number;
  /** The store's history id: only segments of this timeline continue this snapshot. */
  timeline: string;
  records: number;
  /** Master key ids the records are sealed under (more than one during a key rotation). */
  keyIds: number[];
  /** The node wallet's `backupwallet` file, sealed in the archive, or why it is not. */
  nodeWallet: { included: true; bytes: number } | { included: false; reason: string };
}

export interface ArchiveInfo {
  path: string;
  bytes: number;
  manifest: Manifest;
  ms: number;
}

export interface WriteArchiveOptions {
  store: EncryptedStore;
  /** Where the archive goes; with `name`, only its directory counts and the name comes from the manifest. */
  path: string;
  /** Names the archive after what it holds (e.g. its position), known only once it is written. */
  name?: (m: Manifest) => string;
  network: string;
  nodeWallet?: { bytes: Buffer } | { absent: string };
  /** Tests: called after each chunk written to the temporary file (a kill test stops here). */
  onChunk?: (bytesSoFar: number) => void;
}

/** Packs frames into 1 MiB blocks (no allocation per record), hashes and writes them after the header. */
class ChunkWriter {
  #buf = Buffer.allocUnsafe(1 << 20);
  #at = 0;
  written = 0;
  readonly hash = createHash("sha256");
  constructor(private readonly fh: import("node:fs/promises").FileHandle, private readonly onChunk?: (n: number) => void) {}

  /** Room for `n` more bytes in the block (flushing it first if needed); returns the block and the offset. */
  async reserve(n: number): Promise<[Buffer, number]> {
    if (this.#at + n > this.#buf.length) {
      await this.flush();
      if (n > this.#buf.length) this.#buf = Buffer.allocUnsafe(n);
    }
    const at = this.#at;
    this.#at += n;
    return [this.#buf, at];
  }

  async push(b: Buffer): Promise<void> {
    const [buf, at] = await this.reserve(b.length);
    b.copy(buf, at);
  }

  async flush(): Promise<void> {
    if (this.#at === 0) return;
    const block = this.#buf.subarray(0, this.#at);
    this.hash.update(block);
    await writeFully(this.fh, block, HEADER + this.written);
    this.written += block.length;
    this.#at = 0;
    // The block may still be referenced by the write until it resolves (it has): reuse it.
    this.onChunk?.(this.written);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

/** Takes a consistent snapshot of the whole store into `path` (atomically: temp file, fsync, rename). */
export async function writeArchive(o: WriteArchiveOptions): Promise<ArchiveInfo> {
  const started = performance.now();
  const keyring = o.store.keyring;
  const keyId = keyring.current;
  // The rename at the end replaces whatever has the name: a path given by hand (`--out`) may be a file that is not a
  // backup at all. Named by the manifest, it is one of the service's own archives.
  if (!o.name) await refuseToReplace(o.path);
  // A new file of our own: an unpredictable name, created exclusively and never through a symbolic link (`--out` may
  // point into a directory others can write to, where a link planted under the name would receive the archive).
  const tmp = join(dirname(o.path), `.${basename(o.path)}.partial-${runToken}-${randomBytes(4).toString("hex")}`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    const w = new ChunkWriter(fh, o.onChunk);
    let records = 0;
    let position = 0;
    let timeline = "";
    const keyIds = new Set<number>();
    // The iterator reads from a snapshot taken now: writes that follow are not in this archive.
    const it = o.store.db.iterator();
    try {
      for (let entries = await it.nextv(1000); entries.length > 0; entries = await it.nextv(1000)) {
        for (const [k, v] of entries) {
          const ns = k.slice(0, k.indexOf(SEP));
          // A mark (an empty value) is sealed under no key.
          if (v.length > 0) keyIds.add(keyIdOf(v, ns));
          if (k === POSITION_KEY) position = o.store.openValue<number>(META, "position", v);
          else if (k === TIMELINE_KEY) timeline = o.store.openValue<string>(META, "timeline", v);
          const klen = Buffer.byteLength(k, "utf8");
          const [buf, at] = await w.reserve(1 + 4 + klen + 4 + v.length);
          buf[at] = REC;
          buf.writeUInt32BE(klen, at + 1);
          buf.write(k, at + 5, klen, "utf8");
          buf.writeUInt32BE(v.length, at + 5 + klen);
          buf.set(v, at + 9 + klen);
          records++;
        }
      }
    } finally {
      await it.close();
    }
    let nodeWallet: Manifest["nodeWallet"] = { included: false, reason: "not requested" };
    if (o.nodeWallet && "bytes" in o.nodeWallet) {
      const sealed = seal(keyring.dataKey("backup", keyId), keyId, "backup", "node-wallet", o.nodeWallet.bytes);
      const name = Buffer.from("node-wallet", "utf8");
      const nl = Buffer.allocUnsafe(2);
      nl.writeUInt16BE(name.length);
      await w.push(Buffer.concat([Buffer.from([BLOB]), nl, name, u32(sealed.length), sealed]));
      nodeWallet = { included: true, bytes: o.nodeWallet.bytes.length };
    } else if (o.nodeWallet) {
      nodeWallet = { included: false, reason: o.nodeWallet.absent };
    }
    const manifest: Manifest = {
      format: "runigun-archive-1", network: o.network, createdAt: new Date().toISOString(), position, timeline, records,
      keyIds: [...keyIds].sort((a, b) => a - b), nodeWallet,
    };
    const mj = Buffer.from(JSON.stringify(manifest), "utf8");
    await w.push(Buffer.concat([Buffer.from([MANIFEST]), u32(mj.length), mj]));
    await w.flush();
    const total = HEADER + w.written + TRAILER;
    const header = Buffer.alloc(HEADER);
    MAGIC.copy(header, 0);
    header.writeUInt8(VERSION, MAGIC.length);
    header.writeUInt32BE(keyId, MAGIC.length + 1);
    keyCheck(keyring, keyId).copy(header, MAGIC.length + 5);
    header.writeBigUInt64BE(BigInt(total), MAGIC.length + 13);
    const mac = createHmac("sha256", backupMacKey(keyring, keyId, "archive")).update(header).update(w.hash.digest()).digest();
    await writeFully(fh, header, 0);
    await writeFully(fh, mac, HEADER + w.written);
    await fh.sync();
    await fh.close();
    const path = o.name ? join(dirname(o.path), o.name(manifest)) : o.path;
    await rename(tmp, path);
    await syncDir(dirname(path));
    return { path, bytes: total, manifest, ms: performance.now() - started };
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Only an archive (an older one, under the same name) may be replaced by a new one; anything else is refused. */
async function refuseToReplace(path: string): Promise<void> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw e;
  });
  if (!st) return;
  if (st.isDirectory()) throw new BackupError("no_target", `${path} is a directory; give the path of the archive to write, e.g. --out ${join(path, "runigun.rga")}`);
  if (!st.isFile()) throw new BackupError("no_target", `${path} exists and is not a regular file; give the path of a new file`);
  const fh = await open(path, "r");
  const head = Buffer.alloc(MAGIC.length);
  try {
    await fh.read(head, 0, MAGIC.length, 0);
  } finally {
    await fh.close();
  }
  if (!head.equals(MAGIC)) throw new BackupError("no_target", `${path} exists and is not a RuniGun archive; nothing was written. Give the path of a new file, or remove that one first if it is not needed`);
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** An archive checked end to end and still open: what `load` reads is the file that was checked. */
export interface OpenedArchive {
  readonly path: string;
  readonly manifest: Manifest;
  /**
   * Reads the records in batches, and the node wallet's file if the archive holds one, through the handle that was
   * checked, hashing every byte again: refused (after the last batch, so before the caller uses what it loaded) unless
   * what was read has the tag that was checked and as many records as the manifest says.
   */
  load(onRecords: (batch: Array<{ key: string; value: Buffer }>) => Promise<void>): Promise<{ nodeWallet?: Buffer; records: number }>;
  close(): Promise<void>;
}

/**
 * Checks an archive end to end before anything is restored from it: its length, that it was sealed under a
 * master key of this ring, and its authentication tag over every byte. Returns its manifest.
 */
export async function verifyArchive(path: string, keyring: KeyRing): Promise<Manifest> {
  const archive = await openArchive(path, keyring);
  await archive.close();
  return archive.manifest;
}

/**
 * Opens an archive once and checks it as verifyArchive does. A restore loads it through the same handle: a file put
 * at the path after the check is never read, and one rewritten in place fails the load's second tag check.
 */
export async function openArchive(path: string, keyring: KeyRing): Promise<OpenedArchive> {
  const fh = await open(path, "r").catch((e: NodeJS.ErrnoException) => {
    throw e.code === "ENOENT" ? new BackupError("bad_format", `no archive at ${path}`) : e;
  });
  try {
    const st = await fh.stat();
    // A directory opens for reading too, and fails only at the first read, with EISDIR and no word of what was meant.
    if (!st.isFile()) throw new BackupError("bad_format", `${path} is ${st.isDirectory() ? "a directory" : "not a regular file"}, not an archive; give the archive's file (a backup's snapshots/runigun-….rga)`);
    const size = st.size;
    if (size < HEADER + TRAILER) throw new BackupError("truncated", `${path} is only ${size} bytes: truncated, or not an archive`);
    const header = Buffer.alloc(HEADER);
    await fh.read(header, 0, HEADER, 0);
    if (!header.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError("bad_format", `${path} is not a RuniGun archive`);
    if (header.readUInt8(MAGIC.length) !== VERSION) throw new BackupError("bad_format", `${path} has archive format ${header.readUInt8(MAGIC.length)}; this version reads ${VERSION}`);
    const keyId = header.readUInt32BE(MAGIC.length + 1);
    const total = Number(header.readBigUInt64BE(MAGIC.length + 13));
    if (size < total) throw new BackupError("truncated", `${path} is truncated: ${size} of ${total} bytes; use an intact copy`);
    if (size > total) throw new BackupError("tampered", `${path} has ${size - total} bytes more than its header says; it was altered`);
    if (!keyring.has(keyId)) throw new BackupError("foreign_key", `${path} was sealed under master key ${keyId}, which this key ring does not have; restore with the key ring that made it`);
    refuseRetired(keyring, keyId, path);
    if (!timingSafeEqual(header.subarray(MAGIC.length + 5, MAGIC.length + 13), keyCheck(keyring, keyId))) {
      throw new BackupError("foreign_key", `${path} was sealed under another master key (with id ${keyId}); restore with the key ring that made it`);
    }
    const macKey = backupMacKey(keyring, keyId, "archive");
    const hash = createHash("sha256");
    const buf = Buffer.allocUnsafe(1 << 20);
    for (let at = HEADER; at < total - TRAILER;) {
      const n = Math.min(buf.length, total - TRAILER - at);
      const { bytesRead } = await fh.read(buf, 0, n, at);
      if (bytesRead === 0) throw new BackupError("truncated", `${path} ends early; use an intact copy`);
      hash.update(buf.subarray(0, bytesRead));
      at += bytesRead;
    }
    const tag = Buffer.alloc(TRAILER);
    await fh.read(tag, 0, TRAILER, total - TRAILER);
    const mac = createHmac("sha256", macKey).update(header).update(hash.digest()).digest();
    if (!timingSafeEqual(tag, mac)) throw new BackupError("tampered", `${path} failed authentication: a byte was changed after it was written; use another copy`);
    let manifest: Manifest | undefined;
    let records = 0;
    for await (const block of frames(fh, path, total)) {
      for (const f of block) {
        if (f.kind === REC) records++;
        else if (f.kind === MANIFEST) manifest = f.manifest;
      }
    }
    if (!manifest) throw new BackupError("bad_format", `${path} has no manifest`);
    if (manifest.records !== records) throw new BackupError("bad_format", `${path} holds ${records} records but its manifest says ${manifest.records}`);
    for (const id of manifest.keyIds) {
      if (!keyring.has(id)) throw new BackupError("foreign_key", `${path} holds records sealed under master key ${id}, which this key ring does not have`);
      refuseRetired(keyring, id, `records of ${path}`);
    }
    const checked = manifest;
    return {
      path,
      manifest: checked,
      load: (onRecords) => loadArchive(fh, path, keyring, { header, tag, macKey, total, keyId, manifest: checked }, onRecords),
      close: () => fh.close(),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

type Frame =
  | { kind: 1; key: string; value: Buffer }
  | { kind: 2; name: string; sealed: Buffer }
  | { kind: 3; manifest: Manifest };

/**
 * The frames of an archive, parsed synchronously from 4 MiB blocks (a frame cut by a block's end waits for
 * the next block). Only for archives whose length and tag were checked: a frame running past the end is damage.
 */
async function* frames(fh: FileHandle, path: string, total: number, hash?: Hash): AsyncGenerator<Frame[]> {
  const end = total - TRAILER;
  let filePos = HEADER;
  let carry = Buffer.alloc(0);
  while (filePos < end || carry.length > 0) {
    const want = Math.min(4 << 20, end - filePos);
    let buf = carry;
    if (want > 0) {
      const block = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(block, 0, want, filePos);
      // Shorter than the length checked (cut while being read): nothing more will come.
      if (bytesRead === 0) throw new BackupError("truncated", `${path} ends early; use an intact copy`);
      hash?.update(block.subarray(0, bytesRead));
      filePos += bytesRead;
      buf = carry.length ? Buffer.concat([carry, block.subarray(0, bytesRead)]) : block.subarray(0, bytesRead);
    }
    const out: Frame[] = [];
    let at = 0;
    // A field prefixed by its 2- or 4-byte length; undefined when the buffer ends inside it (the rest comes next read).
    const field = (prefix: 2 | 4): Buffer | undefined => {
      if (at + prefix > buf.length) return undefined;
      const n = prefix === 2 ? buf.readUInt16BE(at) : buf.readUInt32BE(at);
      if (at + prefix + n > buf.length) return undefined;
      at += prefix + n;
      return buf.subarray(at - n, at);
    };
    for (;;) {
      const start = at;
      if (at + 1 > buf.length) break;
      const kind = buf[at]!;
      at += 1;
      if (kind === REC) {
        const key = field(4);
        const value = key && field(4);
        if (!value) { at = start; break; }
        out.push({ kind: REC, key: key.toString("utf8"), value: Buffer.from(value) });
      } else if (kind === BLOB) {
        const name = field(2);
        const sealed = name && field(4);
        if (!sealed) { at = start; break; }
        out.push({ kind: BLOB, name: name.toString("utf8"), sealed: Buffer.from(sealed) });
      } else if (kind === MANIFEST) {
        const manifest = field(4);
        if (!manifest) { at = start; break; }
        let parsed: Manifest;
        try {
          parsed = JSON.parse(manifest.toString("utf8")) as Manifest;
        } catch {
          throw new BackupError("bad_format", `${path} has a manifest that is not JSON`);
        }
        out.push({ kind: MANIFEST, manifest: parsed });
      } else {
        throw new BackupError("bad_format", `${path} has an unknown frame kind ${kind}`);
      }
    }
    carry = buf.subarray(at);
    if (out.length) yield out;
    if (filePos >= end && carry.length > 0 && out.length === 0) throw new BackupError("bad_format", `${path} ends inside a frame`);
  }
}

/** What openArchive checked, kept to check the load against: the header, the tag, and the manifest's record count. */
interface Checked {
  header: Buffer;
  tag: Buffer;
  macKey: Buffer;
  total: number;
  keyId: number;
  manifest: Manifest;
}

async function loadArchive(fh: FileHandle, path: string, keyring: KeyRing, c: Checked, onRecords: (batch: Array<{ key: string; value: Buffer }>) => Promise<void>): Promise<{ nodeWallet?: Buffer; records: number }> {
  const hash = createHash("sha256");
  let batch: Array<{ key: string; value: Buffer }> = [];
  let records = 0;
  let nodeWallet: Buffer | undefined;
  for await (const block of frames(fh, path, c.total, hash)) {
    for (const f of block) {
      if (f.kind === REC) {
        batch.push({ key: f.key, value: f.value });
        records++;
        if (batch.length >= 5000) {
          await onRecords(batch);
          batch = [];
        }
      } else if (f.kind === BLOB && f.name === "node-wallet") {
        nodeWallet = openEnvelope(keyring.dataKey("backup", c.keyId), "backup", "node-wallet", f.sealed);
      }
    }
  }
  if (batch.length) await onRecords(batch);
  // The bytes loaded must be the bytes checked: a file rewritten in place since (another archive copied over it)
  // would otherwise be loaded under the manifest — position, timeline — of the one that was checked.
  const mac = createHmac("sha256", c.macKey).update(c.header).update(hash.digest()).digest();
  if (!timingSafeEqual(mac, c.tag)) {
    throw new BackupError("tampered", `${path} changed while it was being restored (what was loaded is not what was checked); nothing was restored: restore from a copy nothing writes to`);
  }
  if (records !== c.manifest.records) {
    throw new BackupError("tampered", `${path} gave ${records} records while being restored but its manifest says ${c.manifest.records}; nothing was restored: restore from a copy nothing writes to`);
  }
  return nodeWallet ? { nodeWallet, records } : { records };
}
