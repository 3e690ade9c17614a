// Restore drills on a real regtest node: a mixed workload, a snapshot in the middle, more work, a crash, the
// data directory wiped, then snapshot + segments restored — every wallet as it was, the books and the node
// agreeing. And the hard case: a payout made after the only backup is found on the chain at start, the
// wallets it may concern are frozen, payouts stay paused, nothing is paid twice.
import t from "tap";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { spawn, spawnSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fundedWallet, startTestEngine, withdrawToOutside, type TestEngine } from "../support/engine.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { restoreArchive } from "../../src/backup/restore.ts";
import { writeArchive } from "../../src/backup/archive.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { enginePort } from "../../src/edges/admin/engine-port.ts";
import { received } from "../support/payouts.ts";
import { pino } from "pino";

const funded = fundedWallet;

/** The engine dies, its store is lost, and the archive (with the segments, if given) is restored in its place. */
async function crashAndRestore(te: TestEngine, archive: string, segmentsDir?: string) {
  await te.crash();
  rmSync(join(te.dataPath, "store"), { recursive: true, force: true });
  return restoreArchive({ archive, ...(segmentsDir ? { segmentsDir } : {}), dataPath: te.dataPath, keyring: te.keyring, network: "regtest" });
}

/** A withdrawal of `amount` to `address`, confirmed: its payout id. */
async function withdrawTo(te: TestEngine, key: string, address: string, amount: string): Promise<string> {
  const q = await te.engine.relay.quoteWithdrawal(key, address, amount);
  if (isRefusal(q)) throw new Error(q.message);
  const c = await te.engine.relay.confirmWithdrawal(key, q.id);
  if (isRefusal(c)) throw new Error(c.message);
  return q.id;
}

async function withdraw(te: TestEngine, key: string, amount: string) {
  const w = await withdrawToOutside(te, key, amount);
  if (isRefusal(w)) throw new Error(w.message);
  return w;
}

/**
 * A logger that makes the engine die once, when armed, at the line the comparison with the chain logs after it froze
 * the wallets (and recorded the payouts it adopted), before it records the incident.
 */
function dyingAtReport() {
  let armed = false;
  let died = false;
  const log = pino({
    level: "error",
    hooks: {
      logMethod(args, method) {
        if (armed && args.some((a) => typeof a === "string" && a.includes("spent coins the restored books do not know"))) {
          armed = false;
          died = true;
          throw new Error("the engine dies here");
        }
        return method.apply(this, args);
      },
    },
  }, pino.destination("/dev/null"));
  return { log, arm: () => void (armed = true), died: () => died };
}

/**
 * A restart whose comparison with the chain dies part-way (dyingAtReport). On a loaded machine the start may defer the
 * comparison (a scan left incomplete by a busy wallet waits for a complete one, at the next block: one is mined): then it dies
 * at a later look, before it records anything, which is the same point in the comparison.
 */
async function restartDying(te: TestEngine, dying: ReturnType<typeof dyingAtReport>): Promise<boolean> {
  dying.arm();
  const failed = await te.restart().then(() => false, (e: Error) => /the engine dies here/.test(e.message));
  for (let i = 0; i < 10 && !failed && !dying.died(); i++) await te.mine(1).catch(() => undefined);
  return dying.died();
}

/**
 * A snapshot holding every write durable now. The service hands a caller the snapshot already under way, which may have
 * begun reading the store before them: the first start's own (continuity begins with one), still writing on a loaded
 * machine, holds none of the test's work. That one is waited for and another taken.
 */
async function snapshotNow(te: TestEngine) {
  const position = te.engine.storage.store.position;
  for (let i = 0; i < 3; i++) {
    const snap = await te.engine.backup.snapshot();
    if (snap.manifest.position >= position) return snap;
  }
  throw new Error(`no snapshot reached the store's position ${position}`);
}

/** A test engine that ships backups to a directory of its own; the engine stops before the directory goes. */
async function backedUpEngine(t: { teardown(fn: () => unknown): void }, log?: Parameters<typeof startTestEngine>[1] extends infer O ? O extends { log?: infer L } ? L : never : never, withdrawals?: { batchWindowMs: number }): Promise<{ te: TestEngine; backupDir: string }> {
  const backupDir = mkdtempSync(join(tmpdir(), "runigun-backup-"));
  const te = await startTestEngine({ backup: { dir: backupDir, segmentIntervalMs: 20, snapshotIntervalMs: 0 }, ...(withdrawals ? { withdrawals } : {}) }, log ? { log } : {});
  t.teardown(async () => {
    await te.stop();
    rmSync(backupDir, { recursive: true, force: true });
  });
  await te.node.ensureMatureCoins();
  return { te, backupDir };
}

async function wallets(te: TestEngine, keys: string[]) {
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = await te.engine.registry.send(k, "state", {});
  return out;
}

/** Sends from the engine's node wallet (payouts), as the node sees them. */
async function sends(te: TestEngine): Promise<string[]> {
  const txs = await te.node.rpc<Array<{ category: string; txid: string }>>("listtransactions", ["*", 1000], "engine");
  return [...new Set(txs.filter((x) => x.category === "send").map((x) => x.txid))];
}

t.test("restore drill: snapshot mid-way + segments after it, kill -9, wipe, restore — every wallet as it was", async (t) => {
  const { te, backupDir } = await backedUpEngine(t);
  const users = ["u_drill_alice", "u_drill_bob", "u_drill_carol"];
  await funded(te, users[0]!, "1");
  await funded(te, users[1]!, "0.5");
  await te.mine(1);
  await te.engine.relay.transfer(users[0]!, "t1", users[2]!, "0.1");
  await withdraw(te, users[1]!, "0.2");
  await te.engine.payouts.flush();
  await te.mine(1);

  const snap = await snapshotNow(te);
  t.ok(snap.manifest.nodeWallet.included, "the node wallet's backup rides in the archive");
  t.equal(readdirSync(join(backupDir, "snapshots")).filter((n) => n.endsWith(".rga")).length >= 1, true);

  // More work after the snapshot: only the segments have it.
  await funded(te, users[2]!, "0.3");
  await te.mine(1);
  await te.engine.relay.transfer(users[2]!, "t2", users[0]!, "0.05");
  await withdraw(te, users[0]!, "0.1");
  await te.engine.payouts.flush();
  await te.mine(1);
  await te.engine.relay.transfer(users[0]!, "t3", users[1]!, "0.01");
  // The transfer's delivery settles (a delivery in flight would finish after the restore and differ only in time).
  await te.engine.courier.settled();
  await te.engine.storage.journal.flushed();
  const before = await wallets(te, users);
  const liabilities = await te.engine.liabilities();
  // The interval's worth of shipping: what is durable reaches the backup disk (then the process dies).
  await te.engine.backup.flush();
  t.equal(te.engine.backup.status().shippingLag, 0, "every durable batch is on the backup disk");

  const r = await crashAndRestore(te, snap.path, join(backupDir, "segments"));
  t.ok(r.replayed > 0, `${r.replayed} batches replayed on top of the snapshot`);
  t.notOk(r.segments?.stop, "the segments reach the crash");
  await te.restart();

  t.same(await wallets(te, users), before, "every wallet's state equals the pre-crash state");
  t.same(await te.engine.liabilities(), liabilities, "the books sum the same");
  // Killed, not stopped: nothing on the backup disk says the engine wrote nothing after its last shipping, so the
  // restore may not reach the crash — payouts stay paused (nothing unknown was spent) until an operator resumes them.
  t.match(te.engine.restoreIncident, { unknownSpends: [], lost: /last interval before the crash/ }, "a lossy restore: an incident");
  t.same(await te.engine.resumePayouts("alice"), { resumed: true }, "an operator resumes payouts");
  const solvency = await te.engine.solvency();
  t.ok(solvency.ok, `the books and the node agree: ${solvency.reason ?? "ok"}`);
  // And it keeps working.
  await withdraw(te, users[2]!, "0.05");
  t.match(await te.engine.payouts.flush(), { batches: 1 });
});

t.test("restore without the later segments while a payout happened after the backup: found on chain, wallets frozen, nothing paid twice", async (t) => {
  const { te } = await backedUpEngine(t);
  await funded(te, "u_rich", "1");
  await funded(te, "u_poor", "0.01");
  await te.mine(1);
  const snap = await snapshotNow(te);

  // After the backup: a withdrawal is paid and confirmed. The archive knows nothing of it.
  await withdraw(te, "u_rich", "0.4");
  await te.engine.payouts.flush();
  await te.mine(1);
  const paid = await sends(te);
  t.equal(paid.length, 1, "one payout on chain");

  await crashAndRestore(te, snap.path);
  await te.restart();

  const incident = te.engine.restoreIncident;
  t.ok(incident, "the unknown spend is reported");
  t.same(incident?.unknownSpends.map((u) => u.txid), paid, "by its txid");
  t.same(incident?.frozen, ["u_rich"], "the wallet that could have paid 0.4 BTC is frozen, the one that could not is not");
  t.match(te.engine.payouts.paused, /restored from a backup: 1 spend/, "payouts stay paused with the reason");
  const again = await te.engine.relay.quoteWithdrawal("u_rich", await te.node.outsideAddress(), "0.4");
  t.ok(isRefusal(again) && again.code === "frozen", "the frozen wallet cannot withdraw again");
  t.match(await te.engine.payouts.flush(), { code: "paused" });
  await te.mine(2);
  t.same(await sends(te), paid, "nothing was paid twice");
  t.match(await te.engine.resumePayouts("alice"), { code: "not_allowed" }, "the books owe more than the node holds: no resume until an operator settles it");
  await te.restart();
  t.ok(te.engine.restoreIncident && te.engine.payouts.paused, "the incident and the pause survive a restart");
});

t.test("a start after a restore that dies before its comparison with the chain is done: the next start compares from the same block", async (t) => {
  // The engine dies right after its comparison found the unknown spend and froze the wallets, before it recorded
  // the incident (here: the log line it writes then throws, once). Its watcher had scanned meanwhile, moving its cursor.
  const dying = dyingAtReport();
  const { te } = await backedUpEngine(t, dying.log);
  await funded(te, "u_rich", "1");
  await te.mine(1);
  const snap = await snapshotNow(te);
  await withdraw(te, "u_rich", "0.4");
  await te.engine.payouts.flush();
  await te.mine(2);
  const paid = await sends(te);
  await crashAndRestore(te, snap.path);
  t.ok(await restartDying(te, dying), "the first start dies part-way through the comparison");
  await te.restart();
  t.same(te.engine.restoreIncident?.unknownSpends.map((u) => u.txid), paid, "the second start still finds the spend the backup does not know");
  t.match(te.engine.payouts.paused, /restored from a backup: 1 spend/, "and payouts stay paused");
  await te.mine(1);
  t.same(await sends(te), paid, "nothing was paid twice");
});

t.test("a restore while the node is behind the chain it knows of (a header ahead of its blocks): payouts stay paused and the comparison waits; once it has the block, it compares and payouts resume", async (t) => {
  const { te, backupDir } = await backedUpEngine(t);
  await funded(te, "u_rich", "1");
  await te.mine(1);
  const snap = await snapshotNow(te);
  // With its segments after a clean stop: a lossless restore (a snapshot alone, or segments that end where the engine
  // died, is lossy, and keeps payouts paused for an operator).
  await te.engine.close();
  await te.engine.storage.close();
  rmSync(join(te.dataPath, "store"), { recursive: true, force: true });
  await restoreArchive({ archive: snap.path, segmentsDir: join(backupDir, "segments"), dataPath: te.dataPath, keyring: te.keyring, network: "regtest" });
  // A block the node has the header of and not yet the block: as a node catching up after a restore of its own.
  const block = await te.node.rpc<{ hex: string }>("generateblock", [await te.node.outsideAddress(), [], false]);
  await te.node.rpc("submitheader", [block.hex.slice(0, 160)]);
  const info = await te.node.rpc<{ blocks: number; headers: number }>("getblockchaininfo", []);
  t.equal(info.headers, info.blocks + 1, "the node knows a header it has no block for");
  await te.restart();
  t.match(te.engine.payouts.paused, /reconciling with the chain/, "payouts stay paused: a node behind does not know every spend yet");
  await te.poke();
  t.match(te.engine.payouts.paused, /reconciling with the chain/, "still, after another look");
  t.equal(te.engine.restoreIncident, undefined);
  // The books cover what they owe, but a payout paid since the backup would only be known after the comparison.
  t.match(await te.engine.resumePayouts("alice"), { code: "not_allowed", message: /not been compared with the chain/ }, "no operator resume before the comparison");
  t.match(te.engine.payouts.paused, /reconciling with the chain/, "payouts still paused");
  await te.node.rpc("submitblock", [block.hex]);
  await te.poke();
  t.equal(te.engine.payouts.paused, undefined, "caught up: nothing unknown was spent, payouts resume");
});

t.test("a payout queued in the backup and paid after it: the restore records it as paid by that transaction, so resuming never pays it again", async (t) => {
  const dying = dyingAtReport();
  // A long batch window: the payout stays queued until the test flushes it, after the backup (on a loaded machine the
  // default window's flush could come first, and the backup would hold the batch: nothing left to find).
  const { te } = await backedUpEngine(t, dying.log, { batchWindowMs: 600_000 });
  await funded(te, "u_rich", "1");
  await te.mine(1);
  const w = await withdraw(te, "u_rich", "0.3");
  const id = w.id;
  t.equal((await te.engine.payouts.state()).payouts[id]?.status, "queued", "queued when the backup is taken");
  // The archive must hold the queued payout (the start-up snapshot, still under way, would not: nothing to adopt).
  const snap = await snapshotNow(te);
  await te.engine.payouts.flush();
  await te.mine(1);
  const paid = await sends(te);
  t.equal(paid.length, 1);

  await crashAndRestore(te, snap.path);
  // The first start records the payout as paid by that transaction, then dies before it records the incident.
  t.ok(await restartDying(te, dying), "the first start dies part-way through the comparison");
  await te.restart();
  const incident = te.engine.restoreIncident;
  t.same(incident?.unknownSpends.map((u) => u.txid), paid, "the spend after the backup is reported, also by the start after the one that adopted it");
  t.match(te.engine.payouts.paused, /restored from a backup: 1 spend/, "payouts stay paused until an operator resumes them");
  t.same(incident?.frozen, ["u_rich"], "its wallet is frozen for review");
  t.same(incident?.adopted, [{ txid: paid[0], ids: [id] }], "and the queued payout it paid is recorded as its batch");
  await te.engine.payouts.sync();
  const p = (await te.engine.payouts.state()).payouts[id];
  t.equal(p?.status, "confirmed", "confirmed with that transaction");
  const st = await te.engine.registry.send("u_rich", "withdrawal", { id });
  t.ok(!isRefusal(st) && st.withdrawal?.status === "sent" && st.withdrawal.txid === paid[0], "the wallet has it sent, with the txid that paid it");
  // An operator reviews and resumes: the books agree with the node, and nothing is paid again.
  t.match(await te.engine.resumePayouts("alice"), { resumed: true });
  await te.engine.payouts.flush();
  await te.mine(2);
  t.same(await sends(te), paid, "nothing was paid twice");
});

t.test("a restore given a segments directory that is not there stops before anything is written (a typo must not drop every later write)", async (t) => {
  const dir = t.testdir();
  const keyring = new KeyRing(new Map([[1, Buffer.alloc(32, 7)]]), 1);
  await t.rejects(restoreArchive({ archive: join(dir, "x.rga"), segmentsDir: join(dir, "segmnets"), dataPath: join(dir, "data"), keyring, network: "regtest" }), { code: "no_target", message: /segments directory/ });
  t.same(readdirSync(dir), [], "nothing written");
});

t.test("two wallets' payouts alike, queued in the backup and paid after it: named in the incident, no resume until an operator records which spend paid which; never paid again", async (t) => {
  // Both stay queued until the flush below: the batch timer waits a minute.
  const { te } = await backedUpEngine(t, undefined, { batchWindowMs: 60_000 });
  await funded(te, "u_b", "0.5");
  await funded(te, "u_c", "0.5");
  await te.mine(1);
  const shop = await te.node.outsideAddress();
  const b = await withdrawTo(te, "u_b", shop, "0.05");
  const c = await withdrawTo(te, "u_c", shop, "0.05");
  const book = (await te.engine.payouts.state()).payouts;
  t.same([book[b]?.status, book[c]?.status], ["queued", "queued"], "both queued when the backup is taken");
  const snap = await snapshotNow(te);
  // After the backup both are paid, one transaction each (one output per address per transaction).
  await te.engine.payouts.flush();
  await te.mine(1);
  await te.engine.payouts.flush();
  await te.mine(1);
  const paid = await sends(te);
  t.equal(paid.length, 2);

  await crashAndRestore(te, snap.path);
  await te.restart();
  const incident = te.engine.restoreIncident!;
  t.same([...(incident.ambiguous ?? [])].sort(), [b, c].sort(), "both named: which spend paid which, the chain cannot say");
  t.match(await te.engine.resumePayouts("alice"), { code: "not_allowed", message: /adopt/ }, "no resume before an operator says");
  t.match(await enginePort(te.engine).adoptPayout(b, "00".repeat(32), "alice"), { code: "not_found" }, "only one of the incident's spends");
  // The operator's adoption: the payout book records it, then the engine dies before the incident says so.
  const spend = incident.unknownSpends.find((u) => u.txid === paid[0])!;
  t.match(await te.engine.payouts.adopt(paid[0]!, [b], spend.outputs.length), { batch: String });
  await te.restart({ crash: true });
  t.same(te.engine.restoreIncident?.ambiguous, [c], "the start after the crash brings the incident up to date with the book");
  const admin = enginePort(te.engine);
  t.match(await admin.adoptPayout(b, paid[0]!, "alice"), { ambiguous: [c] }, "the operator's repeat is answered as done: the other is still one of two alike");
  t.match(await te.engine.resumePayouts("alice"), { code: "not_allowed", message: /adopt/ }, "still no resume");
  t.match(await admin.adoptPayout(c, paid[1]!, "alice"), { ambiguous: [] }, "both recorded");
  await te.engine.payouts.sync();
  t.match(await te.engine.resumePayouts("alice"), { resumed: true }, "the books agree with the node: resumed");
  await te.engine.payouts.flush();
  await te.mine(1);
  t.same((await sends(te)).sort(), [...paid].sort(), "nothing was paid again");
  t.equal(await received(te, shop), 10_000_000n, "the shop got each once");
});

/** An archive of a store of one record (and of a node wallet's file when given), under `dir`. */
async function smallArchive(dir: string, nodeWallet?: Buffer) {
  const keyring = new KeyRing(new Map([[1, Buffer.alloc(32, 9)]]), 1);
  const store = await EncryptedStore.open({ path: join(dir, "store"), keyring });
  await store.put("journal", "a", { n: 1 });
  const archive = join(dir, "a.rga");
  const info = await writeArchive({ store, path: archive, network: "regtest", ...(nodeWallet ? { nodeWallet: { bytes: nodeWallet } } : {}) });
  await store.close();
  return { keyring, archive, info };
}

t.test("a restore that fails between the store and the node wallet's file leaves neither: run again, it restores both", async (t) => {
  const dir = t.testdir();
  const { keyring, archive, info } = await smallArchive(dir, Buffer.from("the node's wallet file"));
  const data = join(dir, "data");
  const walletFile = join(data, `node-wallet-restored-${info.manifest.createdAt.replace(/[:.]/g, "-")}.dat`);
  // The wallet file cannot be written (here: a directory in its way), as a crash at that point would leave it.
  mkdirSync(walletFile, { recursive: true });
  await t.rejects(restoreArchive({ archive, dataPath: data, keyring, network: "regtest" }));
  t.notOk(existsSync(join(data, "store")), "the store is not put in place without the node wallet's file (a second restore would be refused)");
  rmdirSync(walletFile);
  const r = await restoreArchive({ archive, dataPath: data, keyring, network: "regtest" });
  t.equal(r.nodeWalletFile, walletFile);
  t.equal(readFileSync(walletFile, "utf8"), "the node's wallet file");
  t.ok(existsSync(join(data, "store")));
  t.same(readdirSync(data).sort(), ["node-wallet-restored-" + info.manifest.createdAt.replace(/[:.]/g, "-") + ".dat", "store"], "nothing else left behind");
});

t.test("a restore removes what a restore that died left (store.restoring-<pid> of a process that is gone), and keeps one whose process runs", async (t) => {
  const dir = t.testdir();
  const { keyring, archive } = await smallArchive(dir);
  const data = join(dir, "data");
  const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // a process id that has exited
  const alive = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  t.teardown(() => alive.kill());
  for (const pid of [dead, alive.pid!]) {
    mkdirSync(join(data, `store.restoring-${pid}`), { recursive: true });
    writeFileSync(join(data, `store.restoring-${pid}`, "000005.ldb"), "half a restored store: user records, sealed");
  }
  const r = await restoreArchive({ archive, dataPath: data, keyring, network: "regtest" });
  t.same(r.staleRemoved, [join(data, `store.restoring-${dead}`)], "the dead restore's directory is removed");
  t.same(r.staleKept, [join(data, `store.restoring-${alive.pid}`)], "a running process's is kept, and named");
  t.same(readdirSync(data).sort(), ["store", `store.restoring-${alive.pid}`].sort());
});
