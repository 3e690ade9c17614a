// The same /cheque command (the same id) again after the cheque's funding was given back to its creator: the wallet's
// transfer index answers the funding "repeated", so nothing would ever fund the cheque made again. It is refused, and
// the cheque made again leaves the book (no link that can never be claimed, nothing counted against the creator's
// open cheques). A repeat whose funding is on its way, or has funded the cheque, still gets the cheque's code.
import t, { type Test } from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal, refuseUnsent } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";
import type { Cheque } from "../../src/relay.types.ts";

type Send = (u: string, type: string, args: unknown) => Promise<unknown>;

/** A registry whose `send` goes through `f` (given the real one's), everything else as it is. */
function through(registry: WalletRegistry, f: (send: Send, u: string, type: string, args: unknown) => Promise<unknown>): WalletRegistry {
  return new Proxy(registry, {
    get(target, prop) {
      if (prop === "send") return (u: string, type: string, args: unknown) => f((target.send as unknown as Send).bind(target), u, type, args);
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/**
 * Wallets and the cheque book on a real encrypted store, the courier delivering the wallets' transfers as the engine
 * wires them. `hold`: deliveries wait for it (a funding stays in its creator's outbox, on its way, until then).
 */
async function onDisk(t: Test, o: { chequeRegistry?: (r: WalletRegistry) => WalletRegistry; hold?: Promise<void> } = {}) {
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const store = await EncryptedStore.open({ path: t.testdir(), keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: {
      notice: () => undefined, submitWithdrawal: () => undefined,
      deliverTransfer: (f, id, to, a) => void (o.hold ?? Promise.resolve()).then(() => courier.deliver(f, id, to, a)),
      takeAcks: (f) => courier.takeAcks(f),
    },
  });
  const cheques = new ChequeService({
    system, registry: o.chequeRegistry ? o.chequeRegistry(registry) : registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n,
    mac: (p, d) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10,
  });
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques], retryLaterMs: 600_000 });
  t.teardown(async () => {
    courier.abandon();
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  });
  const state = async (u: string) => {
    const s = await registry.send(u, "state", {});
    if (isRefusal(s)) throw new Error(s.message);
    return s;
  };
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  return { store, registry, cheques, courier, state };
}

t.test("a repeat of a /cheque whose funding was given back: refused, the cheque made again leaves the book, nothing moved", async (t) => {
  // How a funding is given back (transfer-return.test.ts): the same /cheque came twice; the first request's funding is
  // refused before it reaches the wallet, and it drops the cheque; the second one's funding reaches the wallet after
  // that, the book refuses it (no such cheque) and the courier gives it back.
  let sends = 0;
  let atSecondSend!: () => void;
  const secondAtSend = new Promise<void>((resolve) => (atSecondSend = resolve));
  let first!: Promise<unknown>, second!: Promise<unknown>;
  let cheques!: ChequeService;
  const w = await onDisk(t, {
    chequeRegistry: (r) => through(r, async (send, u, type, args) => {
      if (type === "send_transfer" && ++sends === 1) {
        second = cheques.create("u_alice", "c1", 5_000n);
        await secondAtSend;
        return refuseUnsent("busy", "Too many requests at once for this wallet; try again in a moment.");
      }
      if (type === "send_transfer" && sends === 2) {
        atSecondSend();
        await first;
      }
      return send(u, type, args);
    }),
  });
  cheques = w.cheques;
  first = cheques.create("u_alice", "c1", 5_000n);
  await first;
  await second;
  await w.courier.settled();
  t.equal(w.courier.stats.returned, 1, "the funding was given back");
  t.equal((await w.state("u_alice")).available, 100_000n);

  // The bot sends the same /cheque once more (the same id).
  const again = await cheques.create("u_alice", "c1", 5_000n);
  await w.courier.settled();
  t.match(again, { refused: true, code: "not_allowed", message: /funds were given back to you earlier.*make a new cheque/ }, "refused, with what to do");
  t.equal((await cheques.state()).size, 0, "the cheque made again left the book");
  t.same(await cheques.mine("u_alice"), { cheques: [], more: 0 }, "not listed, not counted against the creator's open cheques");
  const s = await w.state("u_alice");
  t.same([s.available, Object.keys(s.outgoing)], [100_000n, []], "nothing moved");
  t.same(walletSums(w.store.sums), { available: 100_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n });
  t.equal(await cheques.escrow(), 0n);
  t.match(await cheques.create("u_alice", "c1", 5_000n), { code: "not_allowed" }, "and again: the same answer");
  t.equal((await cheques.state()).size, 0);
  // A new command (a new id) makes a cheque that is funded as any.
  const fresh = await cheques.create("u_alice", "c2", 5_000n);
  if (isRefusal(fresh)) throw new Error(fresh.message);
  await w.courier.settled();
  t.match(await cheques.claim("u_bob", fresh.code), { amount: 5_000n }, "a new cheque works");
});

t.test("a repeat of a /cheque whose funding is on its way, or has funded it: the cheque's code, as before", async (t) => {
  let release!: () => void;
  const hold = new Promise<void>((resolve) => (release = resolve));
  const w = await onDisk(t, { hold });
  const made = await w.cheques.create("u_alice", "c1", 5_000n);
  if (isRefusal(made)) throw new Error(made.message);
  t.same(Object.keys((await w.state("u_alice")).outgoing).length, 1, "the funding is in the creator's outbox, not delivered yet");
  t.match([...(await w.cheques.state()).entries()].map(([, c]) => c.status), ["awaiting_funds"]);
  const onItsWay = await w.cheques.create("u_alice", "c1", 5_000n);
  t.same(onItsWay, made, "on its way: the same cheque");
  t.equal((await w.cheques.state()).size, 1, "kept");
  release();
  await hold;
  await w.courier.settled();
  t.match([...(await w.cheques.state()).entries()].map(([, c]) => c.status), ["open"], "funded");
  t.same(Object.keys((await w.state("u_alice")).outgoing), [], "out of the outbox");
  const funded = await w.cheques.create("u_alice", "c1", 5_000n);
  t.same(funded, made, "funded: the same cheque");
  t.match(await w.cheques.claim("u_bob", (funded as Cheque).code), { amount: 5_000n }, "and it can be claimed");
  t.equal((await w.state("u_alice")).available, 95_000n, "paid once");
});
