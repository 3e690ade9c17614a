// `runigun backup [--out FILE]` and `runigun restore ARCHIVE [SEGMENTS_DIR]`.
// A backup asks the running engine (control socket) for an online snapshot that includes the node wallet;
// with no engine running it opens the store itself (the node wallet is then left out, and says so).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadConfig } from "./config.ts";
import { createLogger } from "./log.ts";
import { loadSecrets, SetupError } from "./secrets.ts";
import { openStoreForKeys } from "./keys-cli.ts";
import { askControl } from "./backup/control.ts";
import { BackupService } from "./backup/service.ts";
import { restoreArchive } from "./backup/restore.ts";
import type { ArchiveInfo } from "./backup/archive.ts";

const say = (s: string) => process.stdout.write(s + "\n");

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
  if (online) {
    if (!online.ok) {
      process.stderr.write(`runigun backup: the engine could not take the snapshot: ${online.error}. The previous backup is untouched.\n`);
      return 1;
    }
    say(describe(online.result as ArchiveInfo));
    return 0;
  }
  // No engine running: take it from the store directly.
  const secrets = loadSecrets(config, createLogger({ level: "warn" }));
  const path = join(config.dataPath, "store");
  if (!existsSync(path)) throw new SetupError(`no store at ${path}: nothing to back up (check RUNIGUN_DATA_DIR)`);
  const store = await openStoreForKeys(path, secrets.keyring, `the store at ${path} is held by a running engine that did not answer on its control socket; try again, or stop it`);
  try {
    const service = new BackupService({ config, store, log: createLogger({ level: "warn" }) });
    say(describe(await service.snapshot(out)));
  } finally {
    await store.close();
  }
  return 0;
}

export async function runRestore(args: string[]): Promise<number> {
  const [archive, segments] = args;
  if (!archive) throw new SetupError("usage: runigun restore ARCHIVE [SEGMENTS_DIR]");
  const config = loadConfig();
  const secrets = loadSecrets(config, createLogger({ level: "warn" }));
  const r = await restoreArchive({
    archive: resolve(archive), ...(segments ? { segmentsDir: resolve(segments) } : {}),
    dataPath: config.dataPath, keyring: secrets.keyring, network: config.network,
  });
  say(`restored ${r.records} records from ${archive} (taken ${r.manifest.createdAt}, position ${r.manifest.position}) into ${join(config.dataPath, "store")}`);
  if (segments) {
    say(`replayed ${r.replayed} journal segment batches, up to position ${r.segments!.last}`);
    if (r.replayed === 0 && !r.segments!.stop) say(`WARNING: ${segments} holds nothing written after this snapshot. If the engine wrote after it, this is not its segments directory (<backup.dir>/segments), and what came after is not restored.`);
    if (r.segments!.stop) say(`WARNING: the segments stop early — ${r.segments!.stop.file}: ${r.segments!.stop.reason}. What came after is not restored; the chain reconciliation at start will show what is missing.`);
  } else {
    say("no segments given: everything after the snapshot is recovered from the chain (deposits) or reported (unknown spends) at start");
  }
  if (r.nodeWalletFile) say(`the node wallet's backup (still encrypted with its passphrase) is in ${r.nodeWalletFile}; if the node was lost too, load it with bitcoind's restorewallet`);
  say("next: start the engine. It compares the restored books with the chain before paying anything; payouts stay paused if something is unknown.");
  return 0;
}
