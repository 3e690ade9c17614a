// `runigun restore ARCHIVE [SEGMENTS_DIR]`: verify the archive completely, then load it (through the same open file,
// checked again as it is read) into a new store beside the data directory's, replay the journal segments that follow
// its position, mark the store as restored (the engine reconciles it with the chain before serving) and only then move
// it into place.
// Nothing in the data directory is touched until everything has been checked and written.
import { randomBytes } from "node:crypto";
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Level } from "level";
import { EncryptedStore, META, writeBatch } from "../store/db.ts";
import { keyIdOf } from "../store/envelope.ts";
import type { KeyRing } from "../store/keyring.ts";
import { syncDirSync } from "../store/files.ts";
import { markForReseal } from "../store/rotate.ts";
import { openArchive, type Manifest, type OpenedArchive } from "./archive.ts";
import { BackupError } from "./format.ts";
import { readSegments, STOP_KEY, type SegmentsEnd } from "./segments.ts";
import { makePrivateDir } from "../storage.ts";

/** What the engine reads at its next start to reconcile a restored store with the chain. */
export interface RestoredMark {
  at: number;
  archive: string;
  archivePosition: number;
  /** The position after replaying segments (the archive's, when none were given). */
  position: number;
  segments?: SegmentsEnd;
  /** backup.segmentIntervalMs where the restore ran: how much a crash's unshipped tail normally is (see restoreLoss). */
  segmentIntervalMs?: number;
}

export const RESTORED_KEY = "restored";

/**
 * Why a restored store may not reach the moment its engine died (a lossy restore), or undefined when it does: the
 * journal segments were replayed to their end and that end is the record of a clean stop (segments.ts). Lossy: no
 * segments replayed (none given, or none that match the archive, or an older copy of the store put back), segments
 * that stop early (a gap, damage), segments that hold nothing from the archive's position on (a directory with no file
 * of its timeline: the wrong one, or an empty one), and segments that end where the engine died — the frames of its
 * last interval were never shipped (more while the backup disk was failing). What came after is then known only
 * from the chain, and a payout the engine sent in that time and that is not mined yet is known to no one but the
 * mempool of the node that sent it — not to a new node.
 */
export function restoreLoss(mark: RestoredMark): string | undefined {
  const end = mark.segments;
  if (!end) return `no journal segments were replayed after ${mark.archive}`;
  if (end.stop) return `the journal segments stop early, at position ${end.last} (${end.stop.file}: ${end.stop.reason})`;
  if (end.cleanStop) return undefined;
  if (!end.holdsLast) return `the segments replayed nothing past the archive (${mark.archive}, position ${mark.archivePosition}) and hold nothing of its store from there on: not its store's segments directory, or one that lost them`;
  const interval = mark.segmentIntervalMs === undefined ? "one backup.segmentIntervalMs" : `${mark.segmentIntervalMs} ms`;
  return `the journal segments end at position ${end.last}, where the engine died, not at a clean stop: the last interval before the crash (up to ${interval}, more while the backup disk was failing) may be lost`;
}

export interface RestoreReport {
  manifest: Manifest;
  records: number;
  replayed: number;
  segments?: SegmentsEnd;
  /** Why the segments given were not replayed (an archive they cannot be matched to). */
  segmentsSkipped?: string;
  nodeWalletFile?: string;
  /**
   * Older master keys than the ring's current one that records of the restored store are sealed under (an archive made
   * before a rotation): recorded as a rotation to finish, which the engine's start says until it is done.
   */
  olderKeyIds?: number[];
  /** Directories left by restores that died (their process is gone), removed. */
  staleRemoved?: string[];
  /** Directories of restores whose process id is running (another restore, or a process that reuses the id): kept. */
  staleKept?: string[];
  /** The data directory was there and open to other users: its mode then (it is 0700 now). */
  madePrivate?: string;
  /** Why the restored store may not reach the crash (restoreLoss); absent when it reaches a clean stop. */
  lost?: string;
  ms: number;
}

export interface RestoreOptions {
  archive: string;
  segmentsDir?: string;
  dataPath: string;
  keyring: KeyRing;
  network: string;
  /** backup.segmentIntervalMs: recorded with the restore, for what a lossy one says (restoreLoss). */
  segmentIntervalMs?: number;
}

export async function restoreArchive(o: RestoreOptions): Promise<RestoreReport> {
  const started = performance.now();
  const target = join(o.dataPath, "store");
  if (existsSync(target) && readdirSync(target).length > 0) {
    throw new BackupError("not_empty", `${target} is not empty; restore only into an empty data directory (move the old store aside first — never delete what might still be needed)`);
  }
  if (o.segmentsDir !== undefined && !statSync(o.segmentsDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new BackupError("no_target", `${existsSync(o.segmentsDir) ? `${o.segmentsDir} is not a directory` : `no directory ${o.segmentsDir}`}: give the backup's segments directory (<backup.dir>/segments), or no directory to restore the snapshot alone`);
  }
  // Checked and loaded through one open file: a file put at the path meanwhile is never what gets loaded, and the
  // load checks the tag and the record count again over what it read (a file rewritten in place is refused).
  const archive = await openArchive(o.archive, o.keyring);
  try {
    return await restoreFrom(archive, o, started);
  } finally {
    await archive.close();
  }
}

async function restoreFrom(archive: OpenedArchive, o: RestoreOptions, started: number): Promise<RestoreReport> {
  const target = join(o.dataPath, "store");
  const manifest = archive.manifest;
  if (manifest.network !== o.network) {
    throw new BackupError("bad_format", `the archive is of ${manifest.network} but this engine runs ${o.network}; set RUNIGUN_NETWORK=${manifest.network}`);
  }
  // Only this user may enter the data directory and the store (LevelDB makes its files with the umask's modes, 0644):
  // the store holds every record's key in the clear. The engine's start does the same, but the restored store should
  // not wait for it, nor depend on the version that starts it.
  const madePrivate = makePrivateDir(o.dataPath);
  const tmp = join(o.dataPath, `store.restoring-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  const stale = removeStaleRestores(o.dataPath);
  let records = 0;
  let replayed = 0;
  let segments: SegmentsEnd | undefined;
  let segmentsSkipped: string | undefined;
  let nodeWallet: Buffer | undefined;
  const older = new Set<number>();
  let nodeWalletFile: string | undefined;
  let madeNodeWalletFile = false;
  let lost: string | undefined;
  try {
    mkdirSync(tmp, { mode: 0o700 });
    const raw = new Level<string, Uint8Array>(tmp, { keyEncoding: "utf8", valueEncoding: "view" });
    // Written as the store writes: the restored files are the store's from now on.
    await raw.open(EncryptedStore.levelOptions);
    try {
      ({ nodeWallet } = await archive.load(async (batch) => {
        await writeBatch(raw, batch.map((r) => ({ type: "put" as const, key: r.key, value: r.value })), false);
        records += batch.length;
      }));
      if (o.segmentsDir && manifest.timeline) {
        segments = await readSegments(o.segmentsDir, o.keyring, manifest.timeline, manifest.position, async (f) => {
          await writeBatch(raw, f.ops, false);
          replayed++;
        });
      } else if (o.segmentsDir) {
        // Segments are matched to a snapshot by its timeline; an archive written before timelines existed names none,
        // and positions of another history would replay on top of it as if they followed it.
        segmentsSkipped = `${o.archive} was written before backup timelines existed: the segments in ${o.segmentsDir} cannot be matched to it, so none were replayed. What came after the snapshot is recovered from the chain (deposits) or reported (unknown spends) at start`;
      }
      // The keys the restored records are sealed under: an archive made before a rotation brings back records under the
      // key it left behind (perhaps a leaked one), which stay so until a rotation re-seals them.
      for await (const [k, v] of raw.iterator()) {
        if (v.length === 0) continue; // a mark: nothing sealed
        try {
          const id = keyIdOf(v, k.slice(0, k.indexOf("\u0000")));
          if (id !== o.keyring.current) older.add(id);
        } catch {
          // Not an envelope: opening the store below says what is wrong, if anything.
        }
      }
    } finally {
      await raw.close();
    }
    // Open it as a store: this checks the canary under the key ring, then records what the engine must do.
    const store = await EncryptedStore.open({ path: tmp, keyring: o.keyring });
    try {
      const mark: RestoredMark = {
        at: Date.now(), archive: o.archive, archivePosition: manifest.position, position: store.position,
        ...(segments ? { segments } : {}), ...(o.segmentIntervalMs !== undefined ? { segmentIntervalMs: o.segmentIntervalMs } : {}),
      };
      lost = restoreLoss(mark);
      // The old history's clean stop (replayed, or in the archive) is not this store's: its engine has not run yet.
      await store.batch([{ type: "put", ns: META, key: RESTORED_KEY, value: mark }, { type: "del", ns: META, key: STOP_KEY }]);
      // From here on this store has a history of its own: its new segments must never be read as the old one's.
      await store.newTimeline();
      if (older.size > 0) await markForReseal(store, [...older].sort((a, b) => a - b));
    } finally {
      await store.close();
    }
    // The node wallet's file before the store: once the store is in place a second restore is refused, so a crash
    // between the two must not leave the store without it.
    if (nodeWallet) {
      nodeWalletFile = join(o.dataPath, `node-wallet-restored-${manifest.createdAt.replace(/[:.]/g, "-")}.dat`);
      madeNodeWalletFile = !existsSync(nodeWalletFile);
      writeDurably(nodeWalletFile, nodeWallet);
    }
    // Empty at the start; anything in it now (an engine started meanwhile, a second restore) is not ours to delete:
    // rmdir refuses a directory that is not empty, and the restore fails with the restored copy removed.
    if (existsSync(target)) rmdirSync(target);
    renameSync(tmp, target);
    // The rename itself must survive a power cut.
    syncDirSync(o.dataPath);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (madeNodeWalletFile && nodeWalletFile) rmSync(nodeWalletFile, { force: true });
    throw e;
  }
  return {
    manifest, records, replayed, ...(segments ? { segments } : {}), ...(segmentsSkipped ? { segmentsSkipped } : {}),
    ...(nodeWalletFile ? { nodeWalletFile } : {}), ...(older.size > 0 ? { olderKeyIds: [...older].sort((a, b) => a - b) } : {}),
    ...(stale.removed.length ? { staleRemoved: stale.removed } : {}), ...(stale.kept.length ? { staleKept: stale.kept } : {}),
    ...(madePrivate ? { madePrivate } : {}), ...(lost ? { lost } : {}),
    ms: performance.now() - started,
  };
}

/** `bytes` at `path` (0600), whole once the name is there: a temporary file, fsync, rename, fsync of the directory. */
function writeDurably(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeFileSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  syncDirSync(dirname(path));
}

/**
 * `store.restoring-<pid>` directories a restore that died left behind (kill -9, a power cut): removed when no process
 * has that id; kept (and named) when one does — another restore running now, or a process that reuses the id.
 */
function removeStaleRestores(dataPath: string): { removed: string[]; kept: string[] } {
  const removed: string[] = [], kept: string[] = [];
  for (const name of readdirSync(dataPath)) {
    const m = /^store\.restoring-(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    if (processRuns(Number(m[1]))) {
      kept.push(join(dataPath, name));
    } else {
      rmSync(join(dataPath, name), { recursive: true, force: true });
      removed.push(join(dataPath, name));
    }
  }
  return { removed, kept };
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
