// An older copy of the store put back by hand (a VM or volume snapshot rolled back) while its continuous backup is
// ahead of it: the engine does not start on it — it would forget a withdrawal paid since, and pay it again — and,
// told to take the store as it is, starts as after a restore: payouts paused until it is compared with the chain.
import t from "tap";
import { cpSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fundedWallet, startTestEngine, withdrawToOutside } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { META } from "../../src/store/db.ts";
import { RESTORED_KEY } from "../../src/backup/restore.ts";

t.test("an older store put back: no start; taken as it is, nothing is paid twice", async (t) => {
  const backupDir = mkdtempSync(join(tmpdir(), "runigun-backup-"));
  const te = await startTestEngine({ backup: { dir: backupDir, segmentIntervalMs: 20, snapshotIntervalMs: 0 } });
  t.teardown(async () => {
    await te.stop();
    rmSync(backupDir, { recursive: true, force: true });
  });
  await te.node.ensureMatureCoins();
  await fundedWallet(te, "u_rich", "1");
  await te.mine(1);
  await te.engine.backup.snapshot();
  await te.engine.backup.flush();
  // A copy of the store with the engine stopped (a host or VM snapshot).
  await te.crash();
  cpSync(join(te.dataPath, "store"), join(te.dataPath, "older"), { recursive: true });
  await te.restart();
  const sends = async () => {
    const txs = await te.node.rpc<Array<{ category: string; txid: string }>>("listtransactions", ["*", 1000], "engine");
    return new Set(txs.filter((x) => x.category === "send").map((x) => x.txid)).size;
  };
  // After the copy: a withdrawal paid and confirmed, shipped to the backup disk.
  t.notOk(isRefusal(await withdrawToOutside(te, "u_rich", "0.4")), "withdrawal accepted");
  await te.engine.payouts.flush();
  await te.mine(1);
  await te.engine.backup.flush();
  t.equal(await sends(), 1, "one payout on chain");
  // The older copy is put back by hand.
  await te.crash();
  rmSync(join(te.dataPath, "store"), { recursive: true });
  renameSync(join(te.dataPath, "older"), join(te.dataPath, "store"));
  // Found by a review: the engine started on it (an alert, a new backup timeline), u_rich had the 0.4 again, and a
  // second withdrawal of it was paid.
  await t.rejects(te.restart(), { name: "BackupError", code: "store_behind", message: /is behind its own continuous backup.*runigun restore/s }, "no start");
  // Told to take the store as it is: as after a restore.
  (te.config.backup as { acceptOlderStore: boolean }).acceptOlderStore = true;
  await te.restart({ crash: true });
  t.equal(await te.engine.storage.store.get(META, RESTORED_KEY), undefined, "compared with the chain at start, as after a restore");
  t.ok(te.engine.payouts.paused, "payouts paused");
  t.match(te.engine.restoreIncident, { unknownSpends: [{}] }, "the payout the store forgot is an unknown spend of the node's wallet");
  // The wallet whose withdrawal the store forgot is frozen for review: a second one is refused, or never paid.
  const again = await withdrawToOutside(te, "u_rich", "0.4").catch((e: Error) => e);
  t.ok(again instanceof Error || isRefusal(again), "a second withdrawal is refused");
  await te.engine.payouts.flush();
  await te.mine(1);
  t.equal(await sends(), 1, "nothing paid twice");
});
