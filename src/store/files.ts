// Secrets the data depends on (the master key ring, the pepper) are written so that they survive a power cut once
// written: a temporary file, fsync, rename over the name, fsync of the directory. Without the two fsyncs, records
// re-encrypted under a new key (fsync'ed by LevelDB) can reach the disk before the key file does, and a crash then
// leaves them sealed under a key that no longer exists.
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

/** Writes `text` to `path` (replacing it atomically) with `mode`, durably. */
export function writeFileDurably(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", mode);
  try {
    writeFileSync(fd, text);
    fchmodSync(fd, mode);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  syncDirSync(dirname(path));
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
