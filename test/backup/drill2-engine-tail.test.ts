// Restore drills on regtest for the last interval before a crash: frames the engine never shipped (segments are written
// once per backup.segmentIntervalMs). A restore with every segment the backup disk holds still may not reach the crash,
// so the engine holds the open cheques and keeps payouts paused for an operator; after a clean stop (its record the last
// frame shipped) the same restore reaches it, and payouts resume on their own.
import t from "tap";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fundedWallet, startTestEngine, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { restoreArchive } from "../../src/backup/restore.ts";

const HELD_FOR_REVIEW = /^This cheque is held for review after a restore; ask support\.$/;
const INTERVAL = 60_000;

/** An engine whose segments ship only when a test flushes them (an interval longer than any test). */
async function backedUpEngine(t: { teardown(fn: () => unknown): void }) {
  const backupDir = mkdtempSync(join(tmpdir(), "runigun-drill2-tail-"));
  const te = await startTestEngine({ backup: { dir: backupDir, segmentIntervalMs: INTERVAL, snapshotIntervalMs: 0 } });
  t.teardown(async () => {
    await te.stop();
    rmSync(backupDir, { recursive: true, force: true });
  });
  await te.node.ensureMatureCoins();
  return { te, segments: join(backupDir, "segments") };
}

/** A cheque made before a snapshot holding everything, everything shipped, and then claimed (the claim not shipped). */
async function chequeClaimedAfterTheBackup(te: TestEngine) {
  await fundedWallet(te, "u_tail_issuer", "0.5");
  await te.engine.relay.start("u_tail_claimer");
  await te.mine(1);
  const cheque = await te.engine.relay.createCheque("u_tail_issuer", "c1", "0.2");
  if (isRefusal(cheque)) throw new Error(cheque.message);
  await te.engine.courier.settled();
  await te.engine.storage.journal.flushed();
  const position = te.engine.storage.store.position;
  let snap = await te.engine.backup.snapshot();
  while (snap.manifest.position < position) snap = await te.engine.backup.snapshot();
  await te.engine.backup.flush();
  if (isRefusal(await te.engine.relay.claimCheque("u_tail_claimer", cheque.code))) throw new Error("the claim was refused");
  await te.engine.cheques.settled();
  await te.engine.courier.settled();
  return { cheque, snap };
}

async function restoreInPlace(te: TestEngine, archive: string, segmentsDir: string) {
  rmSync(join(te.dataPath, "store"), { recursive: true, force: true });
  const r = await restoreArchive({ archive, segmentsDir, dataPath: te.dataPath, keyring: te.keyring, network: "regtest", segmentIntervalMs: INTERVAL });
  await te.restart();
  return r;
}

t.test("a crash with its last interval unshipped, restored with every segment: lossy — the cheque held, payouts paused for an operator", async (t) => {
  const { te, segments } = await backedUpEngine(t);
  const { cheque, snap } = await chequeClaimedAfterTheBackup(te);
  t.ok(te.engine.backup.status().shippingLag! > 0, "the claim is not on the backup disk yet");
  await te.crash();
  const r = await restoreInPlace(te, snap.path, segments);
  t.notOk(r.segments?.stop, "the segments have no gap and no damage");
  t.match(r.lost, /last interval before the crash \(up to 60000 ms/, "the restore says the last interval may be lost");

  t.match(te.engine.restoreIncident, { unknownSpends: [], lost: /last interval before the crash/, heldCheques: 1 }, "an incident: the restore may not reach the crash, a cheque held");
  t.match(te.engine.payouts.paused, /may not reach the crash/, "payouts stay paused");
  t.match(await te.engine.relay.claimCheque("u_tail_claimer", cheque.code), { refused: true, code: "not_allowed", message: HELD_FOR_REVIEW }, "the link claimed in the lost interval claims nothing again");
});

t.test("a clean stop, restored with its segments: lossless — the claim is there, payouts resume on their own", async (t) => {
  const { te, segments } = await backedUpEngine(t);
  const { cheque, snap } = await chequeClaimedAfterTheBackup(te);
  // The clean stop ships everything, its stop record last.
  await te.engine.close();
  await te.engine.storage.close();
  const r = await restoreInPlace(te, snap.path, segments);
  t.equal(r.segments?.cleanStop, true, "the segments end on the clean stop");
  t.equal(r.lost, undefined);

  t.equal(te.engine.restoreIncident, undefined, "no incident");
  t.equal(te.engine.payouts.paused, undefined, "payouts resume after the comparison with the chain");
  t.equal(te.engine.heldCheques, undefined, "no cheque held");
  const b = await te.engine.relay.balance("u_tail_claimer");
  t.equal(isRefusal(b) ? b.message : b.available, 20_000_000n, "the claim is in the restored books: the claimant has the cheque's amount");
  t.equal((await te.engine.liabilities()).escrow, 0n, "and nothing is left in escrow");
  const again = await te.engine.relay.claimCheque("u_tail_claimer", cheque.code);
  t.notMatch(again, { message: HELD_FOR_REVIEW }, "a repeat of the claim is answered as before, not held");
});
