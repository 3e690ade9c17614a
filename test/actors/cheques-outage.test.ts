// A claim, revoke or expiry saved by a write the store could not confirm (a disk fault: the batch reached the disk,
// the store was told it failed and could not reopen at once) is still paid out: when its payee or creator asks again,
// and, in the engine, as soon as the store finds the write on disk — not only at the next start.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal } from "../../src/domain/refusals.ts";
import { EncryptedStore, writeBatch, type RawOp } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { fillDisk } from "../support/store.ts";
import { startTestEngine } from "../support/engine.ts";

type Registry = Pick<WalletRegistry, "read">;

/**
 * The next writes fail with a full disk (the store cannot reopen: no room), their bytes kept aside; `land()` frees the
 * disk with the first failed batch in LevelDB's log, as its recovery would find it, and resolves once the store's
 * reopen has found it there ("landed").
 */
function faultThatLands(store: EncryptedStore) {
  const disk = fillDisk(store);
  const failing = store.db.batch;
  let captured: RawOp[] | undefined;
  store.db.batch = (() => {
    const b = failing();
    const ops: RawOp[] = [];
    const put = b.put.bind(b), del = b.del.bind(b);
    b.put = ((key: string, value: Uint8Array) => (ops.push({ type: "put", key, value: value as Buffer }), put(key, value))) as typeof b.put;
    b.del = ((key: string) => (ops.push({ type: "del", key }), del(key))) as typeof b.del;
    const write = b.write.bind(b);
    b.write = (async (...a: Parameters<typeof write>) => {
      captured ??= ops;
      return write(...a);
    }) as typeof write;
    return b;
  }) as typeof store.db.batch;
  return {
    async land(): Promise<void> {
      if (!captured) throw new Error("no write failed");
      store.db.batch = failing;
      const settled = new Promise<boolean>((resolve) => store.onUnsureSettled(resolve));
      disk.free();
      await writeBatch(store.db, captured, true);
      if (!(await settled)) throw new Error("the failed write was not found on disk");
    },
  };
}

async function available(registry: Registry, u: string): Promise<bigint> {
  const b = await registry.read(u, "balance", {});
  if (isRefusal(b)) throw new Error(b.message);
  return b.available;
}

/** A cheque service on wallets on a real store; payouts a wallet does not take are tried again only after an hour. */
async function book(t: { testdir(): string; teardown(f: () => unknown): void }) {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: { notice: () => undefined, submitWithdrawal: () => undefined, deliverTransfer: (...a) => void courier.deliver(...a) },
  });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  const cheques = new ChequeService({
    system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 1_000_000n, mac: (p, d) => store.mac(p, d),
    finished: new FinishedCheques(store), retainFinished: 10, retryLaterMs: 3_600_000, storeFailing: () => store.writeHealth.failing,
  });
  t.teardown(() => cheques.stopRetrying());
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  for (const u of ["u_alice", "u_bob"]) await registry.send(u, "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const settle = async () => (await courier.settled(), await cheques.settled());
  const make = async (id: string, amount: bigint) => {
    const c = await cheques.create("u_alice", id, amount);
    if (isRefusal(c)) throw new Error(c.message);
    await settle();
    return c.code;
  };
  return { store, registry, cheques, settle, make };
}

/** Asks until the answer is not "busy" or "internal" (a crash while the store failed, then the book's replay). */
async function until<R>(ask: () => Promise<R>): Promise<R> {
  let r = await ask();
  for (let i = 0; i < 5 && isRefusal(r) && (r.code === "busy" || r.code === "internal"); i++) r = await ask();
  return r;
}

t.test("a claim saved during a disk fault, its payout never sent: the claimant's next claim pays it", async (t) => {
  const { store, registry, cheques, settle, make } = await book(t);
  const code = await make("c1", 10_000n);
  const fault = faultThatLands(store);
  t.match(await cheques.claim("u_bob", code), { code: "busy", message: /may still have been done/ }, "the claim could not be confirmed as saved");
  await fault.land();
  t.match(await until(() => cheques.claim("u_bob", code)), { amount: 10_000n }, "claimed, as the book has it");
  await settle();
  t.equal(await available(registry, "u_bob"), 110_000n, "the claimant is paid");
  t.match(await cheques.claim("u_bob", code), { amount: 10_000n });
  await settle();
  t.equal(await available(registry, "u_bob"), 110_000n, "once");
  const c = (await cheques.state()).cheques;
  t.equal(Object.values(c)[0]?.paid, true, "recorded paid");
});

t.test("a revoke saved during a disk fault: its creator's next revoke sends the amount back", async (t) => {
  const { store, registry, cheques, settle, make } = await book(t);
  const code = await make("c1", 10_000n);
  t.equal(await available(registry, "u_alice"), 90_000n);
  const fault = faultThatLands(store);
  t.match(await cheques.revoke("u_alice", code), { code: "busy", message: /may still have been done/ });
  await fault.land();
  t.match(await until(() => cheques.revoke("u_alice", code)), { code: "revoked" }, "already revoked, as the book has it");
  await settle();
  t.equal(await available(registry, "u_alice"), 100_000n, "the amount is back");
  t.match(await cheques.revoke("u_alice", code), { code: "revoked" });
  await settle();
  t.equal(await available(registry, "u_alice"), 100_000n, "once");
});

t.test("resume with a replay pays a claim the book replayed without (found on disk when the store reopened)", async (t) => {
  const { store, registry, cheques, settle, make } = await book(t);
  const code = await make("c1", 10_000n);
  const fault = faultThatLands(store);
  t.match(await cheques.claim("u_bob", code), { code: "busy" });
  await fault.land();
  t.match(await cheques.resume({ replay: true }), { resent: 1 }, "the book read its journal again: one payout owed");
  await settle();
  t.equal(await available(registry, "u_bob"), 110_000n, "paid without the claimant asking again");
  t.match(await cheques.resume(), { resent: 0 }, "nothing owed any more");
});

/**
 * A logger; `said(re)`, asked before what makes the line, resolves at the first line matching `re` from then on, and
 * fails after `ms` saying what it waited for.
 */
function watchedLog() {
  const waiters = new Set<{ re: RegExp; resolve: () => void }>();
  const log = createLogger({
    level: "info",
    destination: { write: (l: string) => {
      const msg = (JSON.parse(l) as { msg: string }).msg;
      for (const w of waiters) if (w.re.test(msg)) (waiters.delete(w), w.resolve());
    } },
  });
  const said = (re: RegExp, ms = 10_000) => {
    let timer: NodeJS.Timeout | undefined;
    return new Promise<void>((resolve, reject) => {
      waiters.add({ re, resolve });
      timer = setTimeout(() => reject(new Error(`no log line ${re} within ${ms} ms`)), ms);
    }).finally(() => clearTimeout(timer));
  };
  return { log, said };
}

t.test("the engine: a claim found on disk when the store reopens is paid at once, not at the next start", async (t) => {
  const { log, said } = watchedLog();
  const te = await startTestEngine({}, { log });
  t.teardown(() => te.stop());
  const { registry, cheques, courier } = te.engine;
  for (const u of ["u_alice_outage", "u_bob_outage"]) await registry.send(u, "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const c = await cheques.create("u_alice_outage", "c1", 10_000n);
  if (isRefusal(c)) throw new Error(c.message);
  await courier.settled();
  await cheques.settled();
  const fault = faultThatLands(te.engine.storage.store);
  t.match(await cheques.claim("u_bob_outage", c.code), { code: "busy" });
  // Nobody asks again: the engine's own resume after the store reopened sends it (it says so once the book has handed
  // the payout to the cheque service, which settled() then waits for).
  const resent = said(/cheque payouts not acknowledged yet sent again after the store's outage/);
  await fault.land();
  await resent;
  await cheques.settled();
  t.equal(await available(registry, "u_bob_outage"), 110_000n, "the claimant is paid while the engine runs");
});

t.test("the engine: a credit found on disk when the store reopens tells its user (its repeat makes no notice)", async (t) => {
  const te = await startTestEngine();
  t.teardown(() => te.stop());
  const { registry, relay } = te.engine;
  const told: string[] = [];
  const off = relay.onNotification((n) => {
    if (n.userKey === "u_dave_outage" && n.notice.kind === "transfer_received") told.push(n.notice.id);
  });
  t.teardown(off);
  await registry.send("u_dave_outage", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  t.same(told, ["seed"]);
  // The seed's notice was delivered: its kept record's delete is written before the fault, not taken for the credit's.
  await relay.noticesWritten();
  // A credit (a cheque's payout, say) whose record reaches the disk while the store is told the write failed.
  const fault = faultThatLands(te.engine.storage.store);
  t.match(await registry.send("u_dave_outage", "receive_transfer", { id: "pay-1", from: "cheque:x", amount: 7_000n }), { code: "busy" });
  t.same(told, ["seed"], "nothing said while the outcome is unknown");
  await fault.land();
  t.same(told, ["seed", "pay-1"], "told once the store found it on disk");
  t.equal(await available(registry, "u_dave_outage"), 107_000n);
  // Asked again (as its sender does): a repeat, no second notice.
  t.match(await registry.send("u_dave_outage", "receive_transfer", { id: "pay-1", from: "cheque:x", amount: 7_000n }), { repeated: true });
  t.same(told, ["seed", "pay-1"]);
});
