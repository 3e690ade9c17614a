// `runigun backup [--out FILE]` and `runigun restore ARCHIVE [SEGMENTS_DIR]`.
// A backup asks the running engine (control socket) for an online snapshot that includes the node wallet;
// with no engine running it opens the store itself (the node wallet is then left out, and says so).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadConfig, type Config } from "./config.ts";
import { createLogger } from "./log.ts";
import { SetupError } from "./secrets.ts";
import { loadKeyRing, type KeyRing } from "./store/keyring.ts";
import { openStoreForKeys } from "./keys-cli.ts";
import { askControl } from "./backup/control.ts";
import { BackupService } from "./backup/service.ts";
import { restoreArchive } from "./backup/restore.ts";
import type { ArchiveInfo } from "./backup/archive.ts";

const say = (s: string) => process.stdout.write(s + "\n");

/**
 * The master key ring alone: all a backup or a restore reads the store with. The engine's other secrets (pepper, edge
 * key, wallet passphrase) are neither needed nor made here — on regtest loadSecrets would create them in the data
 * directory, before a restore has checked anything. Never a new ring: only the one that sealed the store opens it.
 */
function loadStoreKeyRing(config: Config, restoring: boolean): KeyRing {
  const s = config.secrets;
  const storePath = join(config.dataPath, "store");
  // Regtest's own ring lives in the data directory when none is configured (as the engine's start makes it).
  const file = s.masterKeyFile ?? (!s.masterKey && config.network === "regtest" ? join(config.dataPath, "master.key") : undefined);
  if (!file && !s.masterKey) throw new SetupError(`no master key: set RUNIGUN_MASTER_KEY_FILE to the key ring ${restoring ? "that made the archive" : "the store was sealed with"}`);
  if (restoring && file && !existsSync(file)) {
    throw new SetupError(`master key file ${file} does not exist: a restore needs the key ring that made the archive (from your offline copy); point RUNIGUN_MASTER_KEY_FILE at it. A new key opens nothing`);
  }
  return loadKeyRing({ ...(file ? { file } : {}), ...(s.masterKey ? { value: s.masterKey } : {}), storePath });
}

function describe(info: ArchiveInfo): string {
  const m = info.manifest;
  const wallet = m.nodeWallet.included ? "node wallet included" : `node wallet not included (${m.nodeWallet.reason})`;
  return `backup written: ${info.path}\n  ${m.records} records, ${(info.bytes / 1e6).toFixed(2)} MB, store position ${m.position}, key ids ${m.keyIds.join(",")}, ${wallet}, ${(info.ms / 1000).toFixed(2)} s`;
}

export async function runBackup(o: { out?: string | undefined }): Promise<number> {
  const config = loadConfig();
  const out = o.out ? resolve(o.out) : undefined;
  if (!out && !config.backup.dir) throw new SetupError("no backup directory: set backup.dir (RUNIGUN_BACKUP_DIR) or give --out FILE");
  const online = await askControl(config.dataPath, { cmd: "backup", ...(out ? { out } : {}) });
  // Which store was backed up, said with the archive: one run from the wrong directory (a relative RUNIGUN_DATA_DIR,
  // the default ./data) would otherwise back up another store without a word about which. (A refusal says what it
  // refuses, as its one line.)
  const from = (how: string) => `data directory ${config.dataPath} (store ${join(config.dataPath, "store")}, ${how})`;
  if (online) {
    if (!online.ok) {
      process.stderr.write(`runigun backup: the engine could not take the snapshot: ${online.error}. The previous backup is untouched.\n`);
      return 1;
    }
    say(from("through the engine running on it"));
    say(describe(online.result as ArchiveInfo));
    return 0;
  }
  // No engine running: take it from the store directly.
  const path = join(config.dataPath, "store");
  if (!existsSync(path)) throw new SetupError(`no store at ${path}: nothing to back up (check RUNIGUN_DATA_DIR)`);
  const keyring = loadStoreKeyRing(config, false);
  const store = await openStoreForKeys(path, keyring, `the store at ${path} is held by a running engine that did not answer on its control socket; try again, or stop it`);
  try {
    const service = new BackupService({ config, store, log: createLogger({ level: "warn" }) });
    // Into the backup directory: the engine's start checks it is this store's before anything goes there (or is pruned
    // there); with no engine running the same check is made here, read only.
    if (!out) {
      const target = await service.checkTargetReadOnly();
      if (target.refused) {
        process.stderr.write(`runigun backup: nothing was written or pruned: ${target.refused}. To back this store up meanwhile, give --out FILE.\n`);
        return 1;
      }
      if (target.warning) say(`WARNING: ${target.warning}`);
    }
    const info = await service.snapshot(out);
    say(from("read directly: no engine answered on its control socket"));
    say(describe(info));
  } finally {
    await store.close();
  }
  return 0;
}

const RESTORE_USAGE = "usage: runigun restore ARCHIVE [SEGMENTS_DIR] [--allow-retired-key ID]...";

/** `allowRetired`: the --allow-retired-key values, the keys a rotation retired that this restore may trust. */
export async function runRestore(args: string[], allowRetired: readonly string[] = []): Promise<number> {
  // A backup sealed under a key a rotation retired is restored only when the operator names that key (KeyRing.retired).
  const allowed = allowRetired.map((text) => {
    const id = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(id) || id < 1) throw new SetupError(`--allow-retired-key needs a key id (a whole number from 1), not "${text}"; ${RESTORE_USAGE}`);
    return id;
  });
  const [archive, segments, extra] = args;
  if (!archive || extra !== undefined) throw new SetupError(RESTORE_USAGE);
  const config = loadConfig();
  say(`data directory ${config.dataPath} (store ${join(config.dataPath, "store")})`);
  const keyring = loadStoreKeyRing(config, true);
  const r = await restoreArchive({
    archive: resolve(archive), ...(segments ? { segmentsDir: resolve(segments) } : {}),
    dataPath: config.dataPath, keyring: allowed.length > 0 ? keyring.allowing(allowed) : keyring, network: config.network,
    segmentIntervalMs: config.backup.segmentIntervalMs,
  });
  say(`restored ${r.records} records from ${archive} (taken ${r.manifest.createdAt}, position ${r.manifest.position}) into ${join(config.dataPath, "store")}`);
  if (r.segments) {
    say(`replayed ${r.replayed} journal segment batches, up to position ${r.segments.last}`);
    if (r.replayed === 0 && !r.segments.stop) say(`WARNING: ${segments} holds nothing written after this snapshot. If the engine wrote after it, this is not its segments directory (<backup.dir>/segments), and what came after is not restored.`);
    if (r.segments.stop) say(`WARNING: the segments stop early — ${r.segments.stop.file}: ${r.segments.stop.reason}. What came after is not restored; the chain reconciliation at start will show what is missing.`);
    if (r.segments.cleanStop) say("the segments end on the engine's clean stop: nothing was written after it");
  } else if (segments) {
    say(`WARNING: ${r.segmentsSkipped ?? `the segments in ${segments} were not replayed`}.`);
  } else {
    say("no segments given: everything after the snapshot is recovered from the chain (deposits) or reported (unknown spends) at start");
  }
  // Said for every lossy restore, the snapshot alone too: what the engine does about it at start.
  if (r.lost) say(`WARNING: this restore may not reach the moment the engine stopped: ${r.lost}. At start the engine holds the cheques open in its books and, after comparing with the chain, keeps payouts paused until an operator resumes them.`);
  if (r.nodeWalletFile) say(`the node wallet's backup (still encrypted with its passphrase) is in ${r.nodeWalletFile}; if the node was lost too, load it with bitcoind's restorewallet`);
  if (r.madePrivate) say(`the data directory ${config.dataPath} was open to other users (mode ${r.madePrivate}); made it 0700 (only this user)`);
  for (const dir of r.staleRemoved ?? []) say(`removed ${dir}, left by a restore that died before it finished`);
  for (const dir of r.staleKept ?? []) say(`WARNING: ${dir} was left by a restore whose process id is in use now; if no other restore is running, delete it`);
  if (r.olderKeyIds) {
    const ids = r.olderKeyIds;
    const retired = ids.filter((id) => keyring.retired.has(id));
    const which = `master key${ids.length === 1 ? "" : "s"} ${ids.join(", ")}`;
    const why = retired.length > 0 ? `, which a key rotation retired (perhaps the key it meant to leave behind)` : `, older than the key ring's current key ${keyring.current}`;
    say(`WARNING: the restored store holds records sealed under ${which}${why}. They stay so until a rotation re-seals them: new writes use key ${keyring.current}, and every backup would list the old key too. Run \`runigun keys rotate --resume\` before starting (it re-seals them under key ${keyring.current}, adding no key); until then the engine raises an alert at every start.`);
    say("next: run `runigun keys rotate --resume`, then start the engine. It compares the restored books with the chain before paying anything; payouts stay paused if something is unknown.");
    return 0;
  }
  say("next: start the engine. It compares the restored books with the chain before paying anything; payouts stay paused if something is unknown.");
  return 0;
}
