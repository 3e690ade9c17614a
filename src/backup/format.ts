// Shared pieces of the backup formats (archives and journal segments): errors that name what is wrong and
// what to do, the keys that authenticate them (derived from the master key ring's "backup" data key), and a
// buffered file reader that tells a truncated file from a damaged one.
import { createHmac } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import type { KeyRing } from "../store/keyring.ts";

export type BackupErrorCode = "truncated" | "tampered" | "foreign_key" | "retired_key" | "bad_format" | "not_empty" | "in_use" | "no_target" | "io" | "store_behind";

export class BackupError extends Error {
  override readonly name = "BackupError";
  constructor(readonly code: BackupErrorCode, message: string) {
    super(message);
  }
}

/**
 * Refuses a backup sealed under a key a rotation retired (KeyRing.retired) unless the ring allows it: one made before
 * the rotation, or one forged with a leaked key; only the operator can tell.
 */
export function refuseRetired(keyring: KeyRing, keyId: number, what: string): void {
  if (!keyring.retired.has(keyId)) return;
  throw new BackupError("retired_key", `${what}: sealed under master key ${keyId}, which a key rotation retired. It was made before that rotation, or forged with a leaked key. If it is yours and from before the rotation, restore with --allow-retired-key ${keyId}`);
}

/** The MAC key for one backup format under master key `keyId` (domain-separated per format). */
export function backupMacKey(keyring: KeyRing, keyId: number, purpose: "archive" | "segments"): Buffer {
  return createHmac("sha256", keyring.dataKey("backup", keyId)).update(`runigun-${purpose}-mac-v1`).digest();
}

/** A key check value: tells "sealed under another master key" apart from "altered" before anything is read. */
export function keyCheck(keyring: KeyRing, keyId: number): Buffer {
  return createHmac("sha256", keyring.dataKey("backup", keyId)).update("runigun-backup-key-check-v1").digest().subarray(0, 8);
}

/**
 * Writes all of `buf` (at `position`, or at the end of a file opened to append). A write may take fewer bytes than it
 * was given and still succeed — a disk or quota nearly full — and the rest must not be counted as written: this writes
 * again until every byte is taken, so a full disk surfaces as the error of the next write (ENOSPC).
 */
export async function writeFully(fh: FileHandle, buf: Uint8Array, position?: number): Promise<void> {
  for (let at = 0; at < buf.length;) {
    const { bytesWritten } = await fh.write(buf, at, buf.length - at, position === undefined ? null : position + at);
    if (bytesWritten <= 0) throw new BackupError("io", `a write to the backup disk took no bytes (${buf.length - at} left); is it full?`);
    at += bytesWritten;
  }
}

/** Reads a file through a buffer; `take` fails with "truncated" when the file ends early. */
export class FileReader {
  #buf = Buffer.alloc(0);
  #pos = 0;
  #filePos: number;
  #eof = false;
  /** Bytes consumed so far (from the start offset). */
  consumed = 0;

  constructor(private readonly fh: FileHandle, private readonly what: string, start = 0, private readonly chunk = 1 << 20) {
    this.#filePos = start;
  }

  async take(n: number): Promise<Buffer> {
    while (this.#buf.length - this.#pos < n) {
      if (this.#eof) throw new BackupError("truncated", `${this.what} ends early (truncated copy?); use an intact copy`);
      const b = Buffer.allocUnsafe(Math.max(this.chunk, n));
      const { bytesRead } = await this.fh.read(b, 0, b.length, this.#filePos);
      this.#filePos += bytesRead;
      if (bytesRead === 0) this.#eof = true;
      this.#buf = Buffer.concat([this.#buf.subarray(this.#pos), b.subarray(0, bytesRead)]);
      this.#pos = 0;
    }
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    this.consumed += n;
    return out;
  }

  /** True when nothing is left to read. */
  async atEnd(): Promise<boolean> {
    if (this.#buf.length - this.#pos > 0) return false;
    if (this.#eof) return true;
    const b = Buffer.allocUnsafe(this.chunk);
    const { bytesRead } = await this.fh.read(b, 0, b.length, this.#filePos);
    this.#filePos += bytesRead;
    if (bytesRead === 0) {
      this.#eof = true;
      return true;
    }
    this.#buf = b.subarray(0, bytesRead);
    this.#pos = 0;
    return false;
  }
}
