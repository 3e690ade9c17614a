// The cheque book and its service: a frozen creator's cheques are on hold, funding refusals that certainly moved
// nothing leave no cheque behind, a cheque never funded does not stay in the book for good, and what a user is told
// (through the Telegram edge's one-line rendering) keeps its pointer.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal, refuse, refuseUnsent, type Refusal } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { refusal as rendered } from "../../src/edges/telegram/render.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";

type Deliver = Parameters<TransferCourier["deliver"]>;

/**
 * Wallets on a real store and a cheque service in front of them. `held`: funding transfers wait there until the test
 * lets them go (`release`). `sendOverride`: answers a wallet's send_transfer instead of the wallet (nothing sent);
 * `readOverride` the same for the service's reads of a wallet.
 */
async function book(t: { testdir(): string; teardown(f: () => unknown): void }, o: { sendOverride?: () => Refusal | undefined; readOverride?: (u: string) => Refusal | undefined } = {}) {
  let now = Date.parse("2026-11-28T12:00:00Z");
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  let held: Deliver[] | undefined;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50, now: () => now,
    hooks: { notice: () => undefined, submitWithdrawal: () => undefined, deliverTransfer: (...a: Deliver) => (held ? held.push(a) : void courier.deliver(...a)) },
  });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  const front = o.sendOverride || o.readOverride
    ? new Proxy(registry, {
      get(target, prop) {
        if (prop === "read") {
          return (u: string, type: string, args: unknown) => {
            const r = o.readOverride?.(u);
            if (r) return Promise.resolve(r);
            return (target.read.bind(target) as unknown as (u: string, type: string, args: unknown) => unknown)(u, type, args);
          };
        }
        if (prop === "send") {
          return (u: string, type: string, args: unknown) => {
            const r = type === "send_transfer" ? o.sendOverride?.() : undefined;
            if (r) return Promise.resolve(r);
            return (target.send.bind(target) as unknown as (u: string, type: string, args: unknown) => unknown)(u, type, args);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    })
    : registry;
  const cheques = new ChequeService({
    system, registry: front, log: silentLogger, ttlSec: 3600, maxAmount: 1_000_000n, mac: (p, d) => store.mac(p, d), now: () => now,
    finished: new FinishedCheques(store), retainFinished: 10,
  });
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  for (const u of ["u_alice", "u_bob"]) await registry.send(u, "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const balance = async (u: string) => {
    const b = await registry.read(u, "balance", {});
    if (isRefusal(b)) throw new Error(b.message);
    return b.available;
  };
  const settle = async () => (await courier.settled(), await cheques.settled());
  return {
    registry, cheques, balance, settle,
    hold: () => (held = []),
    release: () => {
      const a = held ?? [];
      held = undefined;
      for (const d of a) void courier.deliver(...d);
    },
    later: (ms: number) => (now += ms),
    inBook: async () => Object.keys((await cheques.state()).cheques).length,
  };
}

const made = (c: unknown) => {
  if (isRefusal(c)) throw new Error(c.message);
  return c as { code: string };
};

t.test("a frozen creator's cheque is on hold: not claimed, the claimant told nothing about the creator; expiry still returns it", async (t) => {
  const b = await book(t);
  const c = made(await b.cheques.create("u_alice", "c1", 20_000n));
  await b.settle();
  await b.registry.send("u_alice", "freeze", { reason: "account takeover reported", by: "op" });
  const held = await b.cheques.claim("u_bob", c.code);
  t.match(held, { code: "not_allowed", message: "This cheque is on hold; ask the person who sent it." }, "on hold");
  t.notMatch((held as Refusal).message, /frozen|takeover|operator/i, "nothing about the creator's wallet");
  await b.settle();
  t.equal(await b.balance("u_bob"), 100_000n, "nothing paid to the claimant");
  t.equal(await b.cheques.escrow(), 20_000n, "still held in escrow");
  // Unfrozen (a false alarm): the link works again.
  await b.registry.send("u_alice", "unfreeze", { by: "op" });
  t.match(await b.cheques.claim("u_bob", c.code), { amount: 20_000n }, "claimed once unfrozen");
  await b.settle();
  t.equal(await b.balance("u_bob"), 120_000n);

  // Expiry gives a frozen creator's cheque back to their own (frozen) wallet: deposits into a frozen wallet are allowed.
  const d = made(await b.cheques.create("u_alice", "c2", 10_000n));
  await b.settle();
  await b.registry.send("u_alice", "freeze", { reason: "again", by: "op" });
  b.later(3601_000);
  t.same(await b.cheques.expire(), { expired: 1 });
  await b.settle();
  t.equal(await b.balance("u_alice"), 80_000n, "returned to the frozen creator");
  t.match(await b.cheques.claim("u_bob", d.code), { code: "expired" }, "an expired one is answered as before");
  t.equal(await b.cheques.escrow(), 0n);
});

t.test("a claim whose creator's wallet cannot say now is refused, nothing moved", async (t) => {
  // The creator's wallet answers its balance with a refusal for a while (too many commands at once, say).
  let crowded = false;
  const b = await book(t, { readOverride: (u) => (crowded && u === "u_alice" ? refuseUnsent("busy", "Too many requests at once for this wallet; try again in a moment.") : undefined) });
  const c = made(await b.cheques.create("u_alice", "c1", 20_000n));
  await b.settle();
  crowded = true;
  const r = await b.cheques.claim("u_bob", c.code);
  crowded = false;
  t.match(r, { code: "busy", message: /nothing was moved/ }, "try again");
  t.notMatch((r as Refusal).message, /Too many|wallet/, "nothing about the creator's wallet");
  t.equal(await b.cheques.escrow(), 20_000n, "still in escrow");
  t.match(await b.cheques.claim("u_bob", c.code), { amount: 20_000n }, "claimed on the next try");
});

t.test("a funding refused before it reached the wallet moved nothing: no cheque is left, and the user is told so", async (t) => {
  let answer: Refusal | undefined = refuseUnsent("busy", "Too many requests at once for this wallet; try again in a moment.");
  const b = await book(t, { sendOverride: () => answer });
  const r = await b.cheques.create("u_alice", "c1", 20_000n);
  t.match(r, { code: "busy", message: /^Nothing was moved by this request/ });
  t.notMatch((r as Refusal).message, /may still/, "never 'may be made'");
  t.equal(await b.inBook(), 0, "no unfunded cheque left in the book");
  t.same((await b.cheques.mine("u_alice")).cheques, [], "nor in the creator's list");
  answer = undefined;
  t.match(await b.cheques.create("u_alice", "c1", 20_000n), { amount: 20_000n }, "the same command again makes it");
});

t.test("the registry's own refusals before a wallet gets the command are marked as moving nothing", async (t) => {
  const b = await book(t);
  b.registry.close(); // the engine shutting down: every command is refused before it reaches a wallet
  const r = await b.cheques.create("u_alice", "c1", 20_000n);
  t.match(r, { code: "busy", unsent: true, message: /^Nothing was moved by this request/ });
  // Whether another request with the same id is funding it cannot be told either (the wallet cannot be asked): it is
  // left for its expiry, which drops it if it was never funded.
  t.equal(await b.inBook(), 1, "left for its expiry");
});

t.test("a funding that may still happen: the cheque stays, and the pointer to /cheque list survives the edge's one-line cut", async (t) => {
  const reasons = [
    "The wallet did not answer in time; nothing may have happened yet. Check /balance in a moment.",
    "The engine is restarting; this may still have been done. Check /balance in a minute before trying again.",
    "The engine is shutting down; this may still have been done. Check /balance in a minute before trying again.",
    "It could not be confirmed as saved (a disk problem on the server); it may still have been done. Check your balance before you try again.",
  ];
  let i = 0;
  const b = await book(t, { sendOverride: () => refuse("busy", reasons[i]!) });
  for (; i < reasons.length; i++) {
    const r = await b.cheques.create("u_alice", `c${i}`, 1_000n);
    if (!isRefusal(r)) throw new Error("not refused");
    t.match(rendered(r), /\/cheque list shows it and its link/, `shown whole enough: ${reasons[i]!.slice(0, 30)}`);
  }
  t.equal(await b.inBook(), reasons.length, "each may still be funded: kept");
});

t.test("a cheque never funded leaves the book at its expiry; one whose funding is on its way is kept and returned", async (t) => {
  let refuseFunding = true;
  const b = await book(t, { sendOverride: () => (refuseFunding ? refuse("busy", "The wallet did not answer in time; nothing may have happened yet.") : undefined) });
  // Told "may still be made", but the wallet never got the command: nothing will ever fund it.
  t.match(await b.cheques.create("u_alice", "lost", 5_000n), { code: "busy" });
  refuseFunding = false;
  // Its funding journalled by the wallet, its delivery to the book held back (a wallet answering late, say).
  b.hold();
  made(await b.cheques.create("u_alice", "slow", 7_000n));
  t.equal(await b.inBook(), 2);
  t.same(await b.cheques.expire(), { expired: 0 });
  t.equal(await b.inBook(), 2, "nothing leaves before its expiry");
  b.later(3601_000);
  t.same(await b.cheques.expire(), { expired: 0 });
  t.equal(await b.inBook(), 1, "the one never funded left the book");
  t.same(await b.cheques.expire(), { expired: 0 });
  t.equal(await b.inBook(), 1, "the one whose funds are on their way stays");
  b.release();
  await b.settle();
  t.same(await b.cheques.expire(), { expired: 1 }, "funded late, past its expiry: returned");
  await b.settle();
  t.equal(await b.balance("u_alice"), 100_000n, "all of it back");
  t.equal(await b.cheques.escrow(), 0n);
});

t.test("a revoke while the funding is on its way: try again in a moment, then it is revoked", async (t) => {
  const b = await book(t);
  b.hold();
  const c = made(await b.cheques.create("u_alice", "c1", 20_000n));
  const r = await b.cheques.revoke("u_alice", c.code);
  t.match(r, { code: "busy", message: /still waiting for its funds; try \/cheque revoke again in a moment/ });
  t.notMatch((r as Refusal).message, /never funded/);
  b.release();
  await b.settle();
  t.match(await b.cheques.revoke("u_alice", c.code), { amount: 20_000n }, "revoked once funded");
  await b.settle();
  t.equal(await b.balance("u_alice"), 100_000n);
  t.match(await b.cheques.claim("u_bob", c.code), { code: "revoked" }, "never claimable after");
});

t.test("a cheque over the limit says the limit", async (t) => {
  const b = await book(t);
  const r = await b.cheques.create("u_alice", "c1", 1_000_001n);
  t.match(r, { code: "over_limit", message: /at most 0\.01 BTC \(1,000,000 sats\)/ });
});
