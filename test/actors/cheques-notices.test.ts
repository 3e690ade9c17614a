// What a cheque's creator and claimant are told besides their command's answer: the creator once that it was claimed
// (never again on a repeat, a re-sent payout or a restart), the creator that an expired cheque came back; a claim or a
// revoke makes no second message (its answer said it). Found by a review: every payout was told as "🎁 You received",
// to the claimant and revoker on top of their answer, an expiry read like a gift, and the creator never heard of a claim.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal, refuse } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { ChequeBook, evolveCheques, emptyCheques, FinishedCheques } from "../../src/actors/cheques.ts";
import { noticeOf, emptyWallet } from "../../src/actors/wallet.ts";
import { notice as rendered } from "../../src/edges/telegram/render.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import type { Notification } from "../../src/relay.types.ts";

const START = Date.parse("2026-11-28T12:00:00Z");

/**
 * Wallets on a real store, a cheque service in front of them, and every notice either makes (the wallets' through
 * their hook, the book's through `notify`, as the engine wires both to relay.notify). `refuseCredit`: wallets whose
 * credits are refused for now (a payout stays owed in the book). Closing and booting again on the same directory
 * and key is a restart.
 */
async function boot(t: { teardown(f: () => unknown): void }, dir: string, key: Buffer, o: { now?: number; refuseCredit?: Set<string> } = {}) {
  let now = o.now ?? START;
  const store = await EncryptedStore.open({ path: dir, keyring: new KeyRing(new Map([[1, key]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const told: Notification[] = [];
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50, now: () => now,
    hooks: {
      notice: (userKey, notice, chatHandle) => void told.push({ userKey, chatHandle, notice }),
      submitWithdrawal: () => undefined,
      deliverTransfer: (...a) => void courier.deliver(...a),
    },
  });
  // A wallet refusing credits for now: the service's payout is answered as by a wallet that is not taking them.
  const front = new Proxy(registry, {
    get(target, prop) {
      if (prop === "send") {
        return (u: string, type: string, args: unknown) => {
          if (type === "receive_transfer" && o.refuseCredit?.has(u)) return Promise.resolve(refuse("busy", "not taking credits in this test"));
          return (target.send.bind(target) as unknown as (u: string, type: string, args: unknown) => unknown)(u, type, args);
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const cheques = new ChequeService({
    system, registry: front, log: silentLogger, ttlSec: 3600, maxAmount: 1_000_000n, mac: (p, d) => store.mac(p, d), now: () => now,
    finished: new FinishedCheques(store), retainFinished: 10, retryLaterMs: 60_000,
    notify: (n) => void told.push(n),
  });
  courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    cheques.stopRetrying();
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  };
  t.teardown(close);
  const balance = async (u: string) => {
    const b = await registry.read(u, "balance", {});
    if (isRefusal(b)) throw new Error(b.message);
    return b.available;
  };
  const settle = async () => (await courier.settled(), await cheques.settled());
  /** The notices so far, as [user, kind, amount, chat handle], and forgets them. */
  const take = () => told.splice(0).map((n) => [n.userKey, n.notice.kind, (n.notice as { amount?: bigint }).amount, n.chatHandle]);
  return { registry, cheques, balance, settle, take, close, later: (ms: number) => (now += ms), now: () => now };
}

const made = (c: unknown) => {
  if (isRefusal(c)) throw new Error(c.message);
  return c as { code: string };
};

/** Two users with wallets (opened from their chats, so notices have somewhere to go) holding 100,000 sats each. */
async function people(b: Awaited<ReturnType<typeof boot>>) {
  for (const u of ["u_alice", "u_bob"]) {
    await b.registry.send(u, "open", { chatHandle: `handle-of-${u}` });
    await b.registry.send(u, "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  }
  await b.settle();
  b.take();
}

t.test("a claim: the claimant has the answer only; the creator is told once that it was claimed", async (t) => {
  const b = await boot(t, t.testdir(), randomBytes(32));
  await people(b);
  const c = made(await b.cheques.create("u_alice", "c1", 20_000n));
  await b.settle();
  t.same(b.take(), [], "making a cheque tells nobody anything");
  t.match(await b.cheques.claim("u_bob", c.code), { amount: 20_000n }, "the claimant's answer");
  await b.settle();
  t.equal(await b.balance("u_bob"), 120_000n, "paid");
  t.same(b.take(), [["u_alice", "cheque_claimed", 20_000n, "handle-of-u_alice"]], "the creator told, in their chat; the claimant nothing more");
  // The claimant asks again (their answer was lost): the same answer, the payout re-sent (a repeat): nobody told again.
  t.match(await b.cheques.claim("u_bob", c.code), { amount: 20_000n });
  await b.cheques.resume();
  await b.settle();
  t.same(b.take(), [], "no second notice on a repeated claim or a resume");
  t.equal(await b.balance("u_bob"), 120_000n, "and paid once");
  t.equal(rendered({ kind: "cheque_claimed", amount: 20_000n }), "🧾 Your cheque for 0.0002 BTC (20,000 sats) was claimed");
  t.notOk(rendered({ kind: "cheque_claimed", amount: 20_000n }).includes(c.code), "never the code");
});

t.test("a revoke: the creator has the answer only, no second message", async (t) => {
  const b = await boot(t, t.testdir(), randomBytes(32));
  await people(b);
  const c = made(await b.cheques.create("u_alice", "c2", 5_000n));
  await b.settle();
  b.take();
  t.match(await b.cheques.revoke("u_alice", c.code), { amount: 5_000n }, "the creator's answer");
  await b.settle();
  t.equal(await b.balance("u_alice"), 100_000n, "back");
  t.same(b.take(), [], "no \"You received\" on top of the answer");
});

t.test("an expiry: the creator is told the cheque expired and its amount is back, not that they received a gift", async (t) => {
  const b = await boot(t, t.testdir(), randomBytes(32));
  await people(b);
  const c = made(await b.cheques.create("u_alice", "c3", 3_000n));
  await b.settle();
  b.take();
  b.later(3601_000);
  t.same(await b.cheques.expire(), { expired: 1 });
  await b.settle();
  t.equal(await b.balance("u_alice"), 100_000n, "back");
  const told = b.take();
  t.same(told, [["u_alice", "cheque_expired", 3_000n, "handle-of-u_alice"]], "one notice, of its own kind");
  const text = rendered({ kind: "cheque_expired", amount: 3_000n });
  t.equal(text, "⌛ Your cheque for 0.00003 BTC (3,000 sats) expired unclaimed: 0.00003 BTC (3,000 sats) is back in your balance");
  t.notMatch(text, /You received/);
  t.notOk(text.includes(c.code), "never the code");
});

t.test("after a restart: a claim's payout re-sent tells nobody again; an expiry's re-sent is still told as an expiry, once", async (t) => {
  const dir = t.testdir();
  const key = randomBytes(32);
  const refuseCredit = new Set<string>();
  const first = await boot(t, dir, key, { refuseCredit });
  await people(first);
  const claimed = made(await first.cheques.create("u_alice", "k1", 11_000n));
  const expiring = made(await first.cheques.create("u_alice", "k2", 2_000n));
  await first.settle();
  first.take();
  // Neither payout is taken before the stop: both stay owed in the book.
  refuseCredit.add("u_bob").add("u_alice");
  t.match(await first.cheques.claim("u_bob", claimed.code), { amount: 11_000n });
  first.later(3601_000);
  t.same(await first.cheques.expire(), { expired: 1 });
  await first.settle();
  t.same(first.take(), [["u_alice", "cheque_claimed", 11_000n, "handle-of-u_alice"]], "told once, as the claim was committed");
  const at = first.now();
  await first.close();

  // The next start: the book replays its journal (the claim among it) and re-sends what it owes.
  const second = await boot(t, dir, key, { now: at });
  t.same(await second.cheques.resume(), { resent: 2 });
  await second.settle();
  t.equal(await second.balance("u_bob"), 111_000n, "the claimant paid");
  t.equal(await second.balance("u_alice"), 100_000n - 11_000n, "the expired one back to its creator");
  t.same(second.take(), [["u_alice", "cheque_expired", 2_000n, "handle-of-u_alice"]], "no second \"claimed\"; the expiry told as one");
  // And the replay the engine asks for after a store outage: nothing told again either.
  await second.cheques.resume({ replay: true });
  await second.settle();
  t.same(second.take(), [], "nothing on a replay");
  void expiring;
});

t.test("older journals: a cheque returned at its expiry before the reason was kept replays as a revoke; a payout without a reason is told as before", async (t) => {
  const book = [
    { t: "created", hash: "h1", creator: "u_alice", amount: "1000", expiresAt: START },
    { t: "funded", hash: "h1" },
    { t: "revoked", hash: "h1" },
  ] as const;
  const s = book.reduce((s, e) => evolveCheques(s, e), emptyCheques());
  t.match(s.get("h1"), { status: "revoked", payee: "u_alice", paid: false, amount: 1000n });
  t.equal(s.get("h1")!.expired, undefined, "not marked expired");
  const expired = evolveCheques(s, { t: "revoked", hash: "h1", expired: true });
  t.equal(expired.get("h1")!.expired, true);
  t.equal(ChequeBook.of(JSON.parse(JSON.stringify(expired.toJSON(), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)))).get("h1")!.expired, true, "kept in a snapshot");
  t.equal(ChequeBook.of({ cheques: { h1: { creator: "u_alice", amount: 1000n, expiresAt: START, status: "revoked", payee: "u_alice", paid: false } } }).get("h1")!.expired, undefined, "an older snapshot's: a revoke");
  // A credit journalled without the reason (an older engine's payout, replayed or found on disk): the notice it made.
  const w = emptyWallet("u_alice");
  t.same(noticeOf(w, { t: "transfer_received", id: "chq:h1", from: "cheque:h1", amount: "1000", at: START }), { kind: "transfer_received", id: "chq:h1", amount: 1000n, from: "cheque:h1" });
  t.equal(noticeOf(w, { t: "transfer_received", id: "chq:h1", from: "cheque:h1", amount: "1000", at: START, cheque: "claim" }), undefined);
  t.equal(noticeOf(w, { t: "transfer_received", id: "chq:h1", from: "cheque:h1", amount: "1000", at: START, cheque: "revoke" }), undefined);
  t.same(noticeOf(w, { t: "transfer_received", id: "chq:h1", from: "cheque:h1", amount: "1000", at: START, cheque: "expiry" }), { kind: "cheque_expired", amount: 1000n });
});
