// An operator's adjustment through the registry on a real encrypted store: a confirmed deposit a deep reorg took back
// is booked out of the frozen wallet, the store's running sums (what the solvency watchdog reads) lose it, and the
// adjustment takes effect once across a crash: the operator's repeat after the restart is answered `repeated`, and
// moves nothing.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";
import { history as historyText, notice as noticeText } from "../../src/edges/telegram/render.ts";
import type { WalletNotice } from "../../src/actors/wallet.messages.ts";

const TXID = "5e".repeat(32);
const OUTPOINT = `${TXID}:1`;

/** Wallets on a real store in `dir`; `crash` stops everything without passivating anything (as a killed process would, after its last write). */
async function onDisk(t: { teardown(f: () => unknown): void }, dir: string, keyring: KeyRing) {
  const store = await EncryptedStore.open({ path: dir, keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const notices: Array<[string, WalletNotice]> = [];
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    // Snapshots often: a repeat must be told from the records, not from a journal replayed since the start.
    records: new WalletRecords(store, 100), snapshotEvery: 2,
    hooks: { notice: (u, n) => void notices.push([u, n]), submitWithdrawal: () => undefined, deliverTransfer: () => undefined },
  });
  let closed = false;
  const crash = async () => {
    if (closed) return;
    closed = true;
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  };
  t.teardown(crash);
  const state = async (u: string) => {
    const s = await registry.send(u, "state", {});
    if (isRefusal(s)) throw new Error(s.message);
    return s;
  };
  const adjustedEvents = async (u: string) =>
    (await journal.readEvents(`wallet:${u}`)).flatMap((e) => (e.data as { e: Array<{ t: string; id?: string }> }).e).filter((e) => e.t === "adjusted").map((e) => e.id);
  return { store, registry, notices, crash, state, adjustedEvents };
}

t.test("a reversed deposit booked out of its frozen wallet: once across a crash, and the sums follow", async (t) => {
  const dir = t.testdir();
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const first = await onDisk(t, dir, keyring);
  const r = first.registry;
  await r.send("u_bob", "open", {});
  await r.send("u_bob", "receive_transfer", { id: "seed", from: "u_bank", amount: 7_000n });
  t.match(await r.send("u_bob", "deposit", { deposit: { txid: TXID, vout: 1, address: "bcrt1qbob", amount: 100_000n, confirmations: 3 }, target: 3, maxPending: 10 }), { status: "confirmed" });
  t.match(await r.send("u_bob", "deposit_removed", { outpoint: OUTPOINT }), { status: "reversed" });
  const frozen = await first.state("u_bob");
  t.ok(frozen.frozen, "the deep reorg froze the wallet");
  t.equal(frozen.available, 107_000n, "and left the vanished coins available");
  t.same(walletSums(first.store.sums), { available: 107_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the books owe them: the hole the watchdog sees");

  const args = { id: "reorg-5e", amount: -100_000n, reason: "deposit reversed by a deep reorg", by: "alice", outpoint: OUTPOINT };
  t.match(await r.send("u_bob", "adjust", { ...args, amount: -107_001n }), { refused: true, code: "over_limit" }, "not beyond the deposit");
  t.match(await r.send("u_bob", "adjust", { ...args, id: "too-much", outpoint: undefined, amount: -107_001n }), { refused: true, code: "insufficient_funds", message: /Available is 0\.00107 BTC/ });
  const done = await r.send("u_bob", "adjust", args);
  t.match(done, { repeated: false, adjustment: { amount: -100_000n, by: "alice", outpoint: OUTPOINT }, balance: { available: 7_000n } });
  const after = await first.state("u_bob");
  t.ok(after.frozen, "still frozen: an operator unfreezes it on their own");
  t.same(walletSums(first.store.sums), { available: 7_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the hole is closed in the sums");
  t.same(first.notices.filter(([, n]) => n.kind === "adjusted"), [["u_bob", { kind: "adjusted", amount: -100_000n }]], "the user is told once");
  t.equal(first.registry.records.deposit("u_bob", OUTPOINT)?.adjusted, 100_000n, "the deposit's record counts what was booked");
  const page = await r.history("u_bob", 0, 10);
  if (isRefusal(page)) throw new Error(page.message);
  t.match(page.entries[0], { kind: "adjustment", amount: -100_000n, ref: "reorg-5e", status: "adjusted" });
  t.notOk(JSON.stringify(page.entries, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)).includes("deep reorg"), "the reason is not in the user's history");
  t.match(historyText(page), /−0\.001 BTC \(100,000 sats\)\s+adjusted by support/);
  t.equal(noticeText({ kind: "adjusted", amount: -100_000n }), "🛠 Support adjusted your balance: −0.001 BTC (100,000 sats)");
  await first.crash();

  // The operator's answer was lost with the process: they send the same adjustment again.
  const again = await onDisk(t, dir, keyring);
  t.same(walletSums(again.store.sums), { available: 7_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the sums as the crash left them");
  t.match(await again.registry.send("u_bob", "adjust", args), { repeated: true, adjustment: { amount: -100_000n, reason: "deposit reversed by a deep reorg" }, balance: { available: 7_000n } });
  t.match(await again.registry.send("u_bob", "adjust", { ...args, amount: -1_000n }), { refused: true, code: "duplicate" }, "the id reused for another amount");
  t.match(await again.registry.send("u_bob", "adjust", { ...args, id: "reorg-5e-again" }), { refused: true, code: "over_limit" }, "the deposit booked under another id: refused");
  t.equal((await again.state("u_bob")).available, 7_000n, "debited once");
  t.same(walletSums(again.store.sums), { available: 7_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the sums moved once");
  t.same(await again.adjustedEvents("u_bob"), ["reorg-5e"], "one adjustment journalled");
  t.same(again.notices, [], "nobody told again");
});

t.test("a payout the restored books lost, booked by a debit; a credit; both once across a crash", async (t) => {
  const dir = t.testdir();
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const first = await onDisk(t, dir, keyring);
  await first.registry.send("u_eve", "open", {});
  await first.registry.send("u_eve", "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  await first.registry.send("u_eve", "freeze", { reason: "restored from a backup", by: "restore" });
  const paid = { id: "lost-w1", amount: -30_500n, reason: "withdrawal paid after the backup", by: "alice" };
  t.match(await first.registry.send("u_eve", "adjust", paid), { repeated: false, balance: { available: 19_500n } });
  t.match(await first.registry.send("u_eve", "adjust", { id: "goodwill", amount: 500n, reason: "fee refund", by: "alice" }), { repeated: false, balance: { available: 20_000n } });
  await first.crash();

  const again = await onDisk(t, dir, keyring);
  t.match(await again.registry.send("u_eve", "adjust", paid), { repeated: true });
  t.match(await again.registry.send("u_eve", "adjust", { id: "goodwill", amount: 500n, reason: "fee refund", by: "alice" }), { repeated: true });
  t.equal((await again.state("u_eve")).available, 20_000n);
  t.same(walletSums(again.store.sums).available, 20_000n);
  t.same(await again.adjustedEvents("u_eve"), ["lost-w1", "goodwill"]);
});
