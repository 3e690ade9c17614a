// `runigun restore ARCHIVE [SEGMENTS_DIR]`: verify the archive completely, then load it into a new store
// beside the data directory's, replay the journal segments that follow its position, mark the store as
// restored (the engine reconciles it with the chain before serving) and only then move it into place.
// Nothing in the data directory is touched until everything has been checked and written.
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Level } from "level";
import { EncryptedStore, META, writeBatch } from "../store/db.ts";
import type { KeyRing } from "../store/keyring.ts";
import { syncDirSync } from "../store/files.ts";
import { readArchive, verifyArchive, type Manifest } from "./archive.ts";
import { BackupError } from "./format.ts";
import { readSegments, type SegmentsEnd } from "./segments.ts";

/** What the engine reads at its next start to reconcile a restored store with the chain. */
export interface RestoredMark {
  at: number;
  archive: string;
  archivePosition: number;
  /** The position after replaying segments (the archive's, when none were given). */
  position: number;
  segments?: SegmentsEnd;
}

export const RESTORED_KEY = "restored";

export interface RestoreReport {
  manifest: Manifest;
  records: number;
  replayed: number;
  segments?: SegmentsEnd;
  nodeWalletFile?: string;
  ms: number;
}

export async function restoreArchive(o: { archive: string; segmentsDir?: string; dataPath: string; keyring: KeyRing; network: string }): Promise<RestoreReport> {
  const started = performance.now();
  const target = join(o.dataPath, "store");
  if (existsSync(target) && readdirSync(target).length > 0) {
    throw new BackupError("not_empty", `${target} is not empty; restore only into an empty data directory (move the old store aside first — never delete what might still be needed)`);
  }
  if (o.segmentsDir !== undefined && !existsSync(o.segmentsDir)) {
    throw new BackupError("no_target", `no directory ${o.segmentsDir}: give the backup's segments directory (<backup.dir>/segments), or no directory to restore the snapshot alone`);
  }
  const manifest = await verifyArchive(o.archive, o.keyring);
  if (manifest.network !== o.network) {
    throw new BackupError("bad_format", `the archive is of ${manifest.network} but this engine runs ${o.network}; set RUNIGUN_NETWORK=${manifest.network}`);
  }
  mkdirSync(o.dataPath, { recursive: true });
  const tmp = join(o.dataPath, `store.restoring-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  let records = 0;
  let replayed = 0;
  let segments: SegmentsEnd | undefined;
  let nodeWallet: Buffer | undefined;
  try {
    const raw = new Level<string, Uint8Array>(tmp, { keyEncoding: "utf8", valueEncoding: "view" });
    // Written as the store writes: the restored files are the store's from now on.
    await raw.open(EncryptedStore.levelOptions);
    try {
      ({ nodeWallet } = await readArchive(o.archive, o.keyring, async (batch) => {
        await writeBatch(raw, batch.map((r) => ({ type: "put" as const, key: r.key, value: r.value })), false);
        records += batch.length;
      }));
      if (o.segmentsDir && manifest.timeline) {
        segments = await readSegments(o.segmentsDir, o.keyring, manifest.timeline, manifest.position, async (f) => {
          await writeBatch(raw, f.ops, false);
          replayed++;
        });
      }
    } finally {
      await raw.close();
    }
    // Open it as a store: this checks the canary under the key ring, then records what the engine must do.
    const store = await EncryptedStore.open({ path: tmp, keyring: o.keyring });
    try {
      const mark: RestoredMark = {
        at: Date.now(), archive: o.archive, archivePosition: manifest.position, position: store.position,
        ...(segments ? { segments } : {}),
      };
      await store.put(META, RESTORED_KEY, mark);
      // From here on this store has a history of its own: its new segments must never be read as the old one's.
      await store.newTimeline();
    } finally {
      await store.close();
    }
    // Empty at the start; anything in it now (an engine started meanwhile, a second restore) is not ours to delete:
    // rmdir refuses a directory that is not empty, and the restore fails with the restored copy removed.
    if (existsSync(target)) rmdirSync(target);
    renameSync(tmp, target);
    // The rename itself must survive a power cut.
    syncDirSync(o.dataPath);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  let nodeWalletFile: string | undefined;
  if (nodeWallet) {
    nodeWalletFile = join(o.dataPath, `node-wallet-restored-${manifest.createdAt.replace(/[:.]/g, "-")}.dat`);
    writeFileSync(nodeWalletFile, nodeWallet, { mode: 0o600 });
  }
  return { manifest, records, replayed, ...(segments ? { segments } : {}), ...(nodeWalletFile ? { nodeWalletFile } : {}), ms: performance.now() - started };
}
