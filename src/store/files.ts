// Secrets the data depends on (the master key ring, the pepper) are written so that they survive a power cut once
// written: a temporary file, fsync, rename over the name, fsync of the directory. Without the two fsyncs, records
// re-encrypted under a new key (fsync'ed by LevelDB) can reach the disk before the key file does, and a crash then
// leaves them sealed under a key that no longer exists.
import { randomBytes } from "node:crypto";
import { closeSync, constants, fchmodSync, fsyncSync, linkSync, lstatSync, openSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/**
 * Writes `text` to `path` (replacing it atomically) with `mode`, durably. The temporary file is a new one of our own:
 * an unpredictable name, created exclusively and never through a symbolic link (in a directory others can write to,
 * a file or link planted under a predictable name would receive the secret), its mode set before anything is written.
 * A name that is itself a symbolic link (a key ring kept on another disk, linked from where the engine looks) is
 * written through: replacing the link with a file would leave its target, the copy the operator keeps and backs up,
 * without the new content (a new master key, and the records re-encrypted under it).
 */
export function writeFileDurably(path: string, text: string, mode = 0o600): void {
  const target = lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() ? realpathSync(path) : path;
  const tmp = writeTemporary(target, text, mode);
  renameSync(tmp, target);
  syncDirSync(dirname(target));
}

/**
 * Creates `path` with `text`, durably, only if nothing is there: a second process creating the same secret at the same
 * moment (two commands started together on a new data directory) gets EEXIST instead of replacing a key already in
 * use. Like writeFileDurably, but the complete temporary file is linked to the name (a link never replaces).
 */
export function createFileDurably(path: string, text: string, mode = 0o600): void {
  const tmp = writeTemporary(path, text, mode);
  try {
    linkSync(tmp, path);
  } catch (e) {
    // A file system without hard links (some FUSE, SMB or shared-folder mounts): the name is created exclusively
    // and written in place (a crash part-way leaves a short file, which the loaders refuse as malformed).
    if (!["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"].includes((e as NodeJS.ErrnoException).code ?? "")) throw e;
    writeExclusively(path, text, mode);
  } finally {
    rmSync(tmp, { force: true });
  }
  syncDirSync(dirname(path));
}

/** A new file of our own (created exclusively, never through a symbolic link), its mode set before it is written, fsynced. */
function writeExclusively(path: string, text: string, mode: number): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    fchmodSync(fd, mode);
    writeFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeTemporary(path: string, text: string, mode: number): string {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    writeExclusively(tmp, text, mode);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return tmp;
}

/** Makes a directory's entries (a rename, a new file) survive a power cut. */
export function syncDirSync(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
