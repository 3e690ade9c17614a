// Restore drills on regtest for a restore that does not reach the crash (the snapshot alone: a lossy restore).
// - A cheque made before the backup, claimed and withdrawn after it, is open again in the restored books: it is held
//   (no claim, no revoke, no expiry) until an operator releases it, so the same link is not paid twice.
// - With nothing unknown on the chain, payouts still stay paused, as an incident, until an operator resumes them (a
//   payout sent after the backup and not mined yet is in no chain), and /health says why.
// - A resume keeps the incident, resolved (when, by whom), on record.
import t from "tap";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fundedWallet, startTestEngine, withdrawToOutside, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { chequeBehaviour, type ChequeCommand, type ChequeEvent, type ChequeState, emptyCheques } from "../../src/actors/cheques.ts";

/** What a claim or revoke of a held cheque is told. */
const HELD_FOR_REVIEW = /^This cheque is held for review after a restore; ask support\.$/;

async function backedUpEngine(t: { teardown(fn: () => unknown): void }): Promise<TestEngine> {
  const backupDir = mkdtempSync(join(tmpdir(), "runigun-drill-lossy-"));
  const te = await startTestEngine({ backup: { dir: backupDir, segmentIntervalMs: 20, snapshotIntervalMs: 0 } });
  t.teardown(async () => {
    await te.stop();
    rmSync(backupDir, { recursive: true, force: true });
  });
  await te.node.ensureMatureCoins();
  return te;
}

/** A snapshot holding every write durable now (the start's own snapshot may be one that began before them). */
async function snapshotNow(te: TestEngine) {
  const position = te.engine.storage.store.position;
  for (let i = 0; i < 3; i++) {
    const snap = await te.engine.backup.snapshot();
    if (snap.manifest.position >= position) return snap;
  }
  throw new Error(`no snapshot reached the store's position ${position}`);
}

/** The engine dies, its store is lost, and the snapshot alone is restored in its place; the engine starts on it. */
async function crashAndRestoreSnapshotAlone(te: TestEngine, archive: string) {
  await te.crash();
  rmSync(join(te.dataPath, "store"), { recursive: true, force: true });
  await restoreArchive({ archive, dataPath: te.dataPath, keyring: te.keyring, network: "regtest" });
  await te.restart();
}

async function sends(te: TestEngine): Promise<string[]> {
  const txs = await te.node.rpc<Array<{ category: string; txid: string }>>("listtransactions", ["*", 1000], "engine");
  return [...new Set(txs.filter((x) => x.category === "send").map((x) => x.txid))];
}

const available = async (te: TestEngine, key: string) => {
  const b = await te.engine.relay.balance(key);
  if (isRefusal(b)) throw new Error(b.message);
  return b.available;
};

t.test("a cheque claimed and withdrawn after the backup is held after a lossy restore: the same link is not paid twice", async (t) => {
  const te = await backedUpEngine(t);
  await fundedWallet(te, "u_drill_rich", "1");
  await fundedWallet(te, "u_drill_issuer", "0.5");
  await te.engine.relay.start("u_drill_claimer");
  await te.mine(1);
  const cheque = await te.engine.relay.createCheque("u_drill_issuer", "c1", "0.3");
  if (isRefusal(cheque)) throw new Error(cheque.message);
  await te.engine.courier.settled();
  const snap = await snapshotNow(te);

  // After the backup: the cheque is claimed and the claimant withdraws it; mined.
  t.notOk(isRefusal(await te.engine.relay.claimCheque("u_drill_claimer", cheque.code)), "claimed after the backup");
  await te.engine.cheques.settled();
  t.notOk(isRefusal(await withdrawToOutside(te, "u_drill_claimer", "0.299")), "and withdrawn");
  await te.engine.payouts.flush();
  await te.mine(1);
  const paid = await sends(te);

  await crashAndRestoreSnapshotAlone(te, snap.path);
  const incident = te.engine.restoreIncident;
  t.equal(incident?.unknownSpends.length, 1, "the withdrawal is an unknown spend");
  t.match(incident, { lost: /no journal segments were replayed/, heldCheques: 1 }, "the incident says the restore may not reach the crash, and that a cheque is held");
  t.match(te.engine.heldCheques, { count: 1 });

  const again = await te.engine.relay.claimCheque("u_drill_claimer", cheque.code);
  t.match(again, { refused: true, code: "not_allowed", message: HELD_FOR_REVIEW }, "the same link claims nothing: the cheque is held for review");
  const revoke = await te.engine.relay.revokeCheque("u_drill_issuer", cheque.code);
  t.match(revoke, { refused: true, code: "not_allowed", message: HELD_FOR_REVIEW }, "nor can its creator take it back");
  t.equal(await available(te, "u_drill_claimer"), 0n, "the claimant got nothing again");
  t.equal((await te.engine.liabilities()).escrow, 30_000_000n, "the cheque's amount stays in escrow");

  // The operator covers the hole the withdrawal left (house coins into the node wallet) and resumes payouts.
  t.match(await te.engine.resumePayouts("alice"), { code: "not_allowed" }, "no resume while the books owe more than the node holds");
  await te.node.fund(await te.node.rpc<string>("getnewaddress", [], "engine"), "0.75");
  await te.mine(1);
  t.same(await te.engine.resumePayouts("alice"), { resumed: true }, "resumed once covered");
  t.equal(te.engine.restoreIncident, undefined, "the incident is no longer open");
  t.match(te.engine.lastRestoreIncident, { unknownSpends: [{ txid: paid[0] }], lost: /no journal segments/, resolved: { by: "alice" } }, "it is kept, resolved, with what it found");
  t.match(await enginePort(te.engine).health(), { restoreIncident: null }, "/health: no open incident");

  // Still held after the resume: the hold is the operator's to lift, on its own.
  t.match(await te.engine.relay.claimCheque("u_drill_claimer", cheque.code), { code: "not_allowed", message: HELD_FOR_REVIEW }, "still held after payouts resume");
  await te.restart();
  t.match(te.engine.lastRestoreIncident, { resolved: { by: "alice" } }, "the resolved incident survives a restart");
  t.match(te.engine.heldCheques, { count: 1 }, "and so does the hold");
  t.match(await te.engine.relay.claimCheque("u_drill_claimer", cheque.code), { code: "not_allowed", message: HELD_FOR_REVIEW });

  // The operator, having found the claim in the old history, releases the hold; the creator's revoke then goes through.
  t.same(await te.engine.releaseHeldCheques("alice"), { released: 1 });
  t.equal(te.engine.heldCheques, undefined);
  t.notOk(isRefusal(await te.engine.relay.revokeCheque("u_drill_issuer", cheque.code)), "released: a revoke is taken again");
  await te.engine.payouts.flush();
  await te.mine(1);
  t.same(await sends(te), paid, "nothing was paid twice on chain");
});

t.test("a lossy restore with nothing unknown on the chain: payouts stay paused, as an incident, until an operator resumes", async (t) => {
  const te = await backedUpEngine(t);
  await fundedWallet(te, "u_drill_quiet", "0.5");
  await te.mine(1);
  const snap = await snapshotNow(te);
  await crashAndRestoreSnapshotAlone(te, snap.path);

  t.match(te.engine.restoreIncident, { unknownSpends: [], frozen: [], lost: /no journal segments were replayed/ }, "an incident with no unknown spend: the restore may not reach the crash");
  t.match(te.engine.payouts.paused, /restored from a backup that may not reach the crash .*not mined yet is unknown to this node/, "payouts stay paused, saying why");
  const health = await enginePort(te.engine).health();
  t.match(health, { ok: false, payoutsPaused: /may not reach the crash/, restoreIncident: { lost: /no journal segments/ } }, "/health says so");
  t.notOk(isRefusal(await withdrawToOutside(te, "u_drill_quiet", "0.1")), "a withdrawal is taken");
  t.match(await te.engine.payouts.flush(), { code: "paused" }, "and waits");
  await te.restart();
  t.match(te.engine.payouts.paused, /may not reach the crash/, "the pause survives a restart");

  t.same(await te.engine.resumePayouts("bob"), { resumed: true }, "an operator resumes");
  t.match(te.engine.lastRestoreIncident, { lost: /no journal segments/, resolved: { by: "bob" } }, "the incident is kept, resolved");
  t.match(await te.engine.payouts.flush(), { batches: 1 }, "the waiting withdrawal goes out");
});

t.test("the cheque book: a held cheque is neither claimed, revoked nor returned at its expiry until released", async (t) => {
  let held = true;
  const paid: string[] = [];
  const finished = { get: () => undefined, op: () => ({}) };
  const behaviour = chequeBehaviour({ pay: (hash) => paid.push(hash) }, { finished: finished as never, retainFinished: 10, held: (h) => held && h === "h1" });
  const persist = async (_events: ChequeEvent[]) => undefined;
  const ask = async <R>(s: ChequeState, make: (reply: (r: R) => void) => ChequeCommand): Promise<[ChequeState, R]> => {
    let answer: R | undefined;
    const next = await behaviour.handle(s, make((r) => (answer = r)), persist);
    return [next, answer as R];
  };
  let s = emptyCheques();
  for (const h of ["h1", "h2"]) {
    [s] = await ask(s, (reply) => ({ type: "create", hash: h, creator: "u_a", id: h, amount: 100n, expiresAt: 1000, now: 0, reply }));
    [s] = await ask(s, (reply) => ({ type: "fund", hash: h, from: "u_a", amount: 100n, reply }));
  }
  const [, claim] = await ask<unknown>(s, (reply) => ({ type: "claim", hash: "h1", by: "u_b", now: 10, reply }));
  t.match(claim, { code: "not_allowed", message: HELD_FOR_REVIEW });
  const [, revoke] = await ask<unknown>(s, (reply) => ({ type: "revoke", hash: "h1", by: "u_a", reply }));
  t.match(revoke, { code: "not_allowed", message: HELD_FOR_REVIEW });
  let expired: unknown;
  [s, expired] = await ask(s, (reply) => ({ type: "expire", now: 5000, reply }));
  t.match(expired, { expired: 1 }, "only the cheque not held expires");
  t.same([s.get("h1")?.status, s.get("h2")?.status, paid], ["open", "revoked", ["h2"]]);
  held = false;
  [s, expired] = await ask(s, (reply) => ({ type: "expire", now: 5000, reply }));
  t.match(expired, { expired: 1 }, "released: it goes back at the next expiry");
  t.same([s.get("h1")?.status, paid], ["revoked", ["h2", "h1"]]);
});
