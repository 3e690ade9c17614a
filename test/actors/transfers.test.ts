// Transfers between users never create or destroy a satoshi, whatever crashes; cheques pay out once.
import t from "tap";
import { randomBytes } from "node:crypto";
import { startTestEngine } from "../support/engine.ts";
import { isRefusal, refuse } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { StoreError } from "../../src/store/errors.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier, gathered } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { myCheques as myChequesText } from "../../src/edges/telegram/render.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";

/** A small deterministic generator, so a failing run can be replayed with the same seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

t.test("1,000 random transfers among 50 users with crashes injected: the sum is unchanged, no negative, each once", async (t) => {
  const te = await startTestEngine({ deposits: { confirmations: 1 } });
  t.teardown(() => te.stop());
  await te.node.ensureMatureCoins();
  const users = Array.from({ length: 50 }, (_, i) => `u_t${i}`);
  const outputs: Record<string, number> = {};
  for (const u of users) {
    await te.engine.relay.start(u);
    const a = await te.engine.relay.depositAddress(u);
    if (isRefusal(a)) throw new Error(a.message);
    outputs[a.address] = 0.01;
  }
  await te.node.rpc("send", [outputs], "outside");
  await te.mine(1);
  const total = 50n * 1_000_000n;
  const sum = async () => {
    let s = 0n;
    for (const u of users) {
      const st = await te.engine.registry.send(u, "state", {});
      if (isRefusal(st)) throw new Error(st.message);
      if (st.available < 0n) throw new Error(`${u} is negative`);
      s += st.available;
      for (const o of Object.values(st.outgoing)) s += o.amount; // in flight: debited, not yet credited
    }
    return s;
  };
  t.equal(await sum(), total, "funded");
  const seed = Number(process.env.CHAOS_SEED ?? 42);
  const random = rng(seed);
  const sent: Array<[string, string, string, string]> = [];
  let accepted = 0;
  for (let i = 0; i < 1000; i++) {
    const from = users[Math.floor(random() * 50)]!;
    const to = users[Math.floor(random() * 50)]!;
    const amount = `${1 + Math.floor(random() * 30_000)} sats`;
    const id = `chaos:${seed}:${i}`;
    sent.push([from, id, to, amount]);
    const r = await te.engine.relay.transfer(from, id, to, amount);
    if (!isRefusal(r)) accepted++;
    if (random() < 0.02) await te.restart({ crash: true });
  }
  await te.restart();
  await te.engine.courier.settled();
  t.ok(accepted > 500, `${accepted} of 1,000 transfers accepted (the rest were self-transfers or refused for funds)`);
  t.equal(await sum(), total, `seed ${seed}: no satoshi created or destroyed`);
  // Every id again: nothing may change.
  for (const [from, id, to, amount] of sent) await te.engine.relay.transfer(from, id, to, amount);
  await te.engine.courier.settled();
  t.equal(await sum(), total, "repeating all 1,000 ids changes nothing");
  const flagged: string[] = [];
  for await (const k of te.engine.registry.records.flagged()) flagged.push(k);
  t.same(flagged, [], "every transfer delivered and acknowledged: no wallet is left flagged with unfinished work");
  const liab = await te.engine.liabilities();
  t.equal(liab.available, total - (await (async () => {
    let inFlight = 0n;
    for (const u of users) {
      const st = await te.engine.registry.send(u, "state", {});
      if (!isRefusal(st)) for (const o of Object.values(st.outgoing)) inFlight += o.amount;
    }
    return inFlight;
  })()), "the balance projection agrees with the wallets");
});

/**
 * Wallets on a real store for the cheque tests, their transfers delivered by the courier set in `wiring` once it is
 * made (a cheque book is one of its sinks).
 */
async function chequeWallets(t: { testdir(): string; teardown(f: () => unknown): void }, now?: () => number) {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const wiring: { courier?: TransferCourier } = {};
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50, ...(now ? { now } : {}),
    hooks: { notice: () => undefined, submitWithdrawal: () => undefined, deliverTransfer: (f, id, to, a) => wiring.courier!.deliver(f, id, to, a) },
  });
  t.teardown(async () => (registry.close(), system.shutdown(), await journal.flushed(), await store.close()));
  return { store, journal, system, registry, wiring };
}

t.test("cheques: claimed once, never by the creator, not after expiry or revoke", async (t) => {
  let now = Date.parse("2026-11-24T12:00:00Z");
  const { store, journal, system, registry, wiring } = await chequeWallets(t, () => now);
  // The book keeps one finished cheque: the first one paid leaves it when the second is paid.
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), now: () => now, finished: new FinishedCheques(store), retainFinished: 1 };
  const cheques = new ChequeService({ system, registry, log: silentLogger, ...book });
  const courier = (wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] }));
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const made = await cheques.create("u_alice", "cmd1", 30_000n);
  if (isRefusal(made)) throw new Error(made.message);
  await courier.settled();
  t.same(await cheques.create("u_alice", "cmd1", 30_000n), made, "the same command makes the same cheque, not a second one");
  t.same(await cheques.create("u_alice", "cmd1", 50_000n), made, "the same command id with another amount: the cheque as it was made");
  await courier.settled();
  t.same(await registry.read("u_alice", "balance", {}), { available: 70_000n, pending: 0n, reserved: 0n }, "funded once, with its own amount");
  t.equal(await cheques.escrow(), 30_000n, "held in escrow once");
  t.match(await cheques.claim("u_alice", made.code), { code: "not_allowed" }, "not by its creator");
  t.match(await cheques.claim("u_bob", made.code), { amount: 30_000n });
  t.match(await cheques.claim("u_bob", made.code), { amount: 30_000n }, "its claimant again (the first answer lost): the same answer, not 'claimed by someone'");
  t.match(await cheques.claim("u_carol", made.code), { code: "already_claimed" });
  t.match(await cheques.revoke("u_alice", made.code), { code: "already_claimed" });
  await cheques.settled();
  const [madeHash] = Object.keys((await cheques.state()).cheques);
  const late = await cheques.create("u_alice", "cmd2", 10_000n);
  if (isRefusal(late)) throw new Error(late.message);
  await courier.settled();
  now += 3601_000;
  t.match(await cheques.claim("u_bob", late.code), { code: "expired" });
  t.match(await cheques.revoke("u_bob", late.code), { code: "not_found" }, "only the creator can revoke");
  t.match(await cheques.revoke("u_alice", late.code), { amount: 10_000n }, "the creator takes an expired cheque back");
  t.match(await cheques.claim("u_bob", late.code), { code: "expired" }, "still expired (taken back)");
  t.same(await cheques.expire(), { expired: 0 }, "nothing left to return: the creator took it back");
  await cheques.settled();
  const a = await registry.send("u_alice", "balance", {});
  const b = await registry.send("u_bob", "balance", {});
  t.ok(!isRefusal(a) && !isRefusal(b));
  if (!isRefusal(a) && !isRefusal(b)) t.same([a.available, b.available], [70_000n, 30_000n], "100,000 sats, still 100,000 sats");
  t.equal(await cheques.escrow(), 0n);

  // Both paid: the older finished cheque left the book, and is answered from its record as before.
  const left = async (label: string, c: ChequeService) => {
    t.same(Object.keys((await c.state()).cheques).includes(madeHash!), false, `${label}: the first cheque left the book`);
    t.match(await c.claim("u_carol", made.code), { code: "already_claimed" }, `${label}: a claim of its code`);
    t.match(await c.revoke("u_alice", made.code), { code: "already_claimed" }, `${label}: a revoke`);
    t.same(await c.create("u_alice", "cmd1", 30_000n), made, `${label}: the same /cheque command again, hours later: the same cheque, its expiry unchanged`);
    t.same(await c.receive("u_alice", `chqfund:${madeHash}`, `cheque:${madeHash}`, 30_000n), { ok: true }, `${label}: a re-sent funding transfer is acknowledged`);
  };
  // A cheque its creator's wallet refuses to fund (more than it holds, no wallet at all) leaves nothing behind: a
  // refused /cheque, however often, does not grow the book.
  const before = Object.keys((await cheques.state()).cheques).length;
  for (let i = 0; i < 5; i++) t.match(await cheques.create("u_alice", `broke${i}`, 1_000_000n), { code: "insufficient_funds" });
  t.match(await cheques.create("u_nobody", "cmd1", 1_000n), { code: "not_found" });
  t.equal(Object.keys((await cheques.state()).cheques).length, before, "no cheque waits for funds that will never come");
  await left("live", cheques);
  // Replayed from the journal by a new book on the same store.
  const again = new ActorSystem(journal);
  t.teardown(() => again.shutdown());
  await left("replayed", new ChequeService({ system: again, registry, log: silentLogger, ...book }));
  await courier.settled();
  const a2 = await registry.send("u_alice", "balance", {});
  if (!isRefusal(a2)) t.equal(a2.available, 70_000n, "nothing moved");
  t.equal(await cheques.escrow(), 0n);
});

t.test("a funded cheque nobody claims goes back to its creator once it has expired, once", async (t) => {
  let now = Date.parse("2026-11-28T12:00:00Z");
  const { store, system, registry, wiring } = await chequeWallets(t, () => now);
  const cheques = new ChequeService({ system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p, d) => store.mac(p, d), now: () => now, finished: new FinishedCheques(store), retainFinished: 10 });
  const courier = (wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] }));
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  const kept = await cheques.create("u_alice", "c1", 20_000n);
  const lost = await cheques.create("u_alice", "c2", 5_000n);
  if (isRefusal(kept) || isRefusal(lost)) throw new Error("not created");
  await courier.settled();
  t.same(await registry.read("u_alice", "balance", {}), { available: 25_000n, pending: 0n, reserved: 0n }, "both funded");
  t.same(await cheques.expire(), { expired: 0 }, "nothing expires before its time");
  t.match(await cheques.claim("u_bob", kept.code), { amount: 20_000n });
  now += 3601_000;
  t.same(await cheques.expire(), { expired: 1 }, "the unclaimed one expires");
  t.same(await cheques.expire(), { expired: 0 }, "once");
  await cheques.settled();
  t.same(await registry.read("u_alice", "balance", {}), { available: 30_000n, pending: 0n, reserved: 0n }, "its amount is back with its creator");
  t.same(await registry.read("u_bob", "balance", {}), { available: 20_000n, pending: 0n, reserved: 0n }, "the claimed one is the claimant's");
  t.equal(await cheques.escrow(), 0n, "nothing left in escrow");
  t.match(await cheques.claim("u_bob", lost.code), { code: "expired" });
});

t.test("a creator's cheque list: each open cheque's link again (the same code), newest first; never another's; gone once claimed, revoked or expired", async (t) => {
  let now = Date.parse("2026-11-28T12:00:00Z");
  const { store, journal, system, registry, wiring } = await chequeWallets(t, () => now);
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), now: () => now, finished: new FinishedCheques(store), retainFinished: 10 };
  const cheques = new ChequeService({ system, registry, log: silentLogger, ...book });
  const courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  // Funding transfers held back until the test lets them go: a cheque whose funds have not arrived yet.
  let held: Array<Parameters<TransferCourier["deliver"]>> | undefined;
  wiring.courier = { deliver: (...a: Parameters<TransferCourier["deliver"]>) => (held ? held.push(a) : courier.deliver(...a)) } as TransferCourier;
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  await registry.send("u_bob", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  t.same(await cheques.mine("u_alice"), { cheques: [], more: 0 }, "none yet");
  const made: string[] = [];
  for (const [id, amount] of [["c1", 1_000n], ["c2", 2_000n], ["c3", 3_000n]] as const) {
    const c = await cheques.create("u_alice", id, amount);
    if (isRefusal(c)) throw new Error(c.message);
    made.push(c.code);
    now += 1000;
  }
  await courier.settled();
  const bobs = await cheques.create("u_bob", "c1", 4_000n);
  if (isRefusal(bobs)) throw new Error(bobs.message);
  held = [];
  const late = await cheques.create("u_alice", "c4", 5_000n);
  if (isRefusal(late)) throw new Error(late.message);
  await courier.settled();
  t.match((await cheques.mine("u_alice")).cheques, [
    { amount: 5_000n, funded: false, code: late.code },
    { amount: 3_000n, funded: true, code: made[2] }, { amount: 2_000n, funded: true, code: made[1] }, { amount: 1_000n, funded: true, code: made[0] },
  ], "the creator's own, newest first, with their codes; the one whose funds have not arrived says so");
  t.same((await cheques.mine("u_bob")).cheques.map((c) => c.code), [bobs.code], "never someone else's");
  for (const a of held) courier.deliver(...a);
  held = undefined;
  await courier.settled();
  t.match((await cheques.mine("u_alice")).cheques[0], { code: late.code, funded: true }, "funded once its transfer arrives");

  t.match(await cheques.claim("u_bob", made[0]!), { amount: 1_000n });
  t.match(await cheques.revoke("u_alice", made[1]!), { amount: 2_000n });
  await cheques.settled();
  t.same((await cheques.mine("u_alice")).cheques.map((c) => c.code), [late.code, made[2]], "claimed and revoked ones leave the list");
  const replayed = new ActorSystem(journal);
  t.teardown(() => replayed.shutdown());
  t.same((await new ChequeService({ system: replayed, registry, log: silentLogger, ...book }).mine("u_alice")).cheques.map((c) => c.code), [late.code, made[2]], "the same after a replay");
  now += 3601_000;
  t.same(await cheques.mine("u_alice"), { cheques: [], more: 0 }, "expired ones too (they go back to their creator)");
});

t.test("a cheque payout its payee's wallet does not take at once is sent again later, and paid once", async (t) => {
  const { store, system, registry, wiring } = await chequeWallets(t);
  // The payee's wallet answers busy to the first two payouts (a crowd of commands at once), then takes the third.
  let payouts = 0;
  let third!: () => void;
  const thirdSent = new Promise<void>((resolve) => (third = resolve));
  const crowded = new Proxy(registry, {
    get(target, prop) {
      if (prop === "send") {
        return (u: string, type: string, args: unknown) => {
          if (type === "receive_transfer" && u === "u_bob") {
            if (++payouts <= 2) return Promise.resolve(refuse("busy", "Too many requests at once for this wallet; try again in a moment."));
            if (payouts === 3) third();
          }
          const send = target.send.bind(target) as unknown as (u: string, type: string, args: unknown) => unknown;
          return send(u, type, args);
        };
      }
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10, retryLaterMs: 5 };
  const cheques = new ChequeService({ system, registry: crowded, log: silentLogger, ...book });
  const courier = (wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] }));
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
  const made = await cheques.create("u_alice", "cmd1", 20_000n);
  if (isRefusal(made)) throw new Error(made.message);
  await courier.settled();
  t.match(await cheques.claim("u_bob", made.code), { amount: 20_000n }, "claimed");
  // The retries do not keep a process alive (the engine's servers do): this test's interval does, meanwhile.
  const alive = setInterval(() => undefined, 60_000);
  await thirdSent.finally(() => clearInterval(alive));
  await cheques.settled();
  t.equal(payouts, 3, "sent three times");
  t.equal(cheques.stats.payoutRetries, 2);
  t.same(await registry.read("u_bob", "balance", {}), { available: 20_000n, pending: 0n, reserved: 0n }, "credited once");
  t.equal(await cheques.escrow(), 0n, "nothing left owed");
});

/**
 * Wallets on a real store, with the courier delivering their transfers (`deliveries` in order). `carry`: wallets
 * journal waiting acknowledgements with their next record, as the engine wires them.
 */
async function courierOnDisk(
  t: { testdir(): string; teardown(f: () => unknown): void },
  o: { carry?: boolean; ackDelayMs?: number; dir?: string; keyring?: KeyRing; retryLaterMs?: number; courierRegistry?: (r: WalletRegistry) => WalletRegistry } = {},
) {
  const keyring = o.keyring ?? new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const store = await EncryptedStore.open({ path: o.dir ?? t.testdir(), keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  let courier!: TransferCourier;
  const deliveries: Array<Promise<void>> = [];
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 256, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: {
      notice: () => undefined, submitWithdrawal: () => undefined,
      deliverTransfer: (f, id, to, a) => void deliveries.push(courier.deliver(f, id, to, a)),
      ...(o.carry ? { takeAcks: (f: string) => courier.takeAcks(f) } : {}),
    },
  });
  courier = new TransferCourier({
    registry: o.courierRegistry ? o.courierRegistry(registry) : registry, log: silentLogger,
    ...(o.ackDelayMs !== undefined ? { ackDelayMs: o.ackDelayMs } : {}), ...(o.retryLaterMs !== undefined ? { retryLaterMs: o.retryLaterMs } : {}),
  });
  let closed = false;
  /** Stops everything without waiting for the courier (as a crash would, after the journal's last write). */
  const crash = async () => {
    if (closed) return;
    closed = true;
    courier.abandon();
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  };
  t.teardown(crash);
  return { journal, registry, courier, deliveries, store, keyring, crash };
}

/** The events of each of a wallet's journal records, by type. */
async function recordsOf(journal: Journal, userKey: string): Promise<string[][]> {
  return (await journal.readEvents(`wallet:${userKey}`)).map((e) => (e.data as { e: Array<{ t: string; id?: string }> }).e.map((x) => `${x.t}${x.id ? ` ${x.id}` : ""}`));
}

t.test("an acknowledgement rides on the sender's next record; settled() sends the last one on its own", async (t) => {
  const { journal, registry, courier, deliveries } = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000 });
  await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
  await deliveries[0];
  t.same(await registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "credited");
  t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t2", to: "u_b", amount: 20n, maxAmount: 1000n })));
  t.same(await recordsOf(journal, "u_a"), [["opened", "transfer_received seed"], ["transfer_sent t1"], ["transfer_sent t2", "transfer_acked t1"]],
    "t1's acknowledgement is in t2's record, not a record of its own");
  t.match(courier.stats, { acksCarried: 1, acksSent: 0 });
  await courier.settled();
  t.same((await recordsOf(journal, "u_a")).at(-1), ["transfer_acked t2"], "settled(): the last acknowledgement, on its own");
  const st = await registry.send("u_a", "state", {});
  t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "the outbox is empty");
  t.same(await registry.read("u_b", "balance", {}), { available: 30n, pending: 0n, reserved: 0n });
});

t.test("a creator may have so many cheques nobody has claimed; claimed, revoked or expired ones do not count", async (t) => {
  let now = Date.parse("2026-11-24T12:00:00Z");
  const { store, system, registry, wiring } = await chequeWallets(t, () => now);
  const cheques = new ChequeService({
    system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p, d) => store.mac(p, d), now: () => now,
    finished: new FinishedCheques(store), retainFinished: 10, maxOpenPerCreator: 2,
  });
  const courier = (wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] }));
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const make = async (id: string) => {
    const c = await cheques.create("u_alice", id, 1_000n);
    await courier.settled();
    return c;
  };
  const [a, b] = [await make("a"), await make("b")];
  if (isRefusal(a) || isRefusal(b)) throw new Error("not made");
  t.match(await make("c"), { code: "over_limit", message: /Revoke one/ }, "a third is refused, saying what to do");
  t.same(await make("a"), a, "the same command again is still answered with its cheque");
  t.match(await cheques.claim("u_bob", a.code), { amount: 1_000n });
  t.match(await make("c"), { amount: 1_000n }, "one claimed: room for another");
  now += 3601_000;
  t.match(await make("d"), { amount: 1_000n }, "expired ones do not count either");
  await cheques.settled();
  t.match(await registry.read("u_alice", "balance", {}), { available: 96_000n }, "four made, each funded once; the refused one took nothing");
});

t.test("a creator's cheque list shows the newest that fit one message and says how many more there are", async (t) => {
  const { store, system, registry, wiring } = await chequeWallets(t);
  const cheques = new ChequeService({
    system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p, d) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10,
  });
  wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  for (let i = 0; i < 23; i++) if (isRefusal(await cheques.create("u_alice", `c${i}`, 100n))) throw new Error("not made");
  await wiring.courier.settled();
  const mine = await cheques.mine("u_alice");
  t.same([mine.cheques.length, mine.more], [20, 3], "twenty shown, three more counted");
  t.match(myChequesText(mine.cheques, (c) => c, mine.more), /…and 3 older ones, shown here once newer ones are claimed, revoked or expired\.$/);
});

t.test("a claim the cheque book does not answer in time is told it may still be done (never 'nothing was moved'); it is, once", async (t) => {
  const { store, journal, registry, wiring } = await chequeWallets(t);
  // The book's journal writes wait for a gate: the claim is queued, its answer late.
  let open: () => void = () => undefined;
  let gate: Promise<void> | undefined;
  const gated = new Proxy(journal, {
    get(target, prop, receiver) {
      if (prop === "persist") return async (ev: Parameters<Journal["persist"]>[0]) => {
        if (gate && ev.key === "cheques") await gate;
        return target.persist(ev);
      };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const system = new ActorSystem(gated);
  t.teardown(() => system.shutdown());
  const cheques = new ChequeService({
    system, registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p, d) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10, askTimeoutMs: 300,
  });
  wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const made = await cheques.create("u_alice", "cmd", 5_000n);
  if (isRefusal(made)) throw new Error(made.message);
  await wiring.courier.settled();
  gate = new Promise((r) => (open = r));
  t.match(await cheques.claim("u_bob", made.code), { code: "busy", message: /may still be done/ }, "busy: it may still be done");
  open();
  gate = undefined;
  t.match(await cheques.claim("u_bob", made.code), { amount: 5_000n }, "it was: the claimant's repeat is answered with the amount");
  await cheques.settled();
  t.match(await registry.read("u_bob", "balance", {}), { available: 5_000n }, "credited once");
});

t.test("a full disk does not stop the cheque book: its crashes while the store cannot write are not counted, and it works once writes do", async (t) => {
  const { store, system, registry, wiring } = await chequeWallets(t);
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10 };
  const cheques = new ChequeService({ system, registry, log: silentLogger, ...book, storeFailing: () => store.writeHealth.failing });
  wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  // The disk is full: every write fails, reads work.
  const batch = store.db.batch.bind(store.db);
  store.db.batch = (() => {
    const b = batch();
    b.write = async () => {
      await b.close();
      throw new Error("IO error: No space left on device");
    };
    return b;
  }) as typeof store.db.batch;
  for (let i = 0; i < 8; i++) t.match(await cheques.create("u_alice", `full${i}`, 1_000n), { code: "internal" }, `a /cheque during the outage fails (${i + 1})`);
  store.db.batch = batch;
  const made = await cheques.create("u_alice", "after", 1_000n);
  if (isRefusal(made)) throw new Error(made.message);
  await wiring.courier.settled();
  t.equal(await cheques.escrow(), 1_000n, "the book works again once writes do");
  t.match(await cheques.claim("u_bob", made.code), { amount: 1_000n });
});

t.test("a cheque payout its payee's wallet did not take waits to be tried again; payNow (the watchdog's second reading) sends it at once", async (t) => {
  let now = Date.parse("2026-11-24T12:00:00Z");
  const { store, system, registry, wiring } = await chequeWallets(t, () => now);
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), now: () => now, finished: new FinishedCheques(store), retainFinished: 10 };
  // Tried again only after ten minutes, on its own.
  const cheques = new ChequeService({ system, registry, log: silentLogger, ...book, retryLaterMs: 600_000 });
  wiring.courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const made = await cheques.create("u_alice", "c1", 5_000n);
  if (isRefusal(made)) throw new Error(made.message);
  await wiring.courier.settled();
  await registry.send("u_bob", "open", {});
  // Bob's wallet fails over and over: the registry refuses it for a while (crashWindowMs).
  for (let i = 0; i < 4; i++) await registry.send("u_bob", "crash", {});
  t.match(await cheques.claim("u_bob", made.code), { amount: 5_000n }, "claimed");
  await cheques.settled();
  t.equal(await cheques.escrow(), 5_000n, "not paid yet: still in escrow");
  now += 61_000;
  await cheques.payNow();
  t.equal(await cheques.escrow(), 0n, "sent at once, and recorded paid");
  t.match(await registry.read("u_bob", "balance", {}), { available: 5_000n }, "credited once");
});

t.test("money sent from one user to another counts in the liabilities until it is credited: to a wallet, to a cheque, held up, repeated, refused", async (t) => {
  const { store, system, registry, wiring } = await chequeWallets(t);
  const book = { ttlSec: 3600, maxAmount: 10n ** 8n, mac: (p: string, d: string) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10 };
  const cheques = new ChequeService({ system, registry, log: silentLogger, ...book });
  // Deliveries are held until the test lets them go: the debits are durable, the credits not yet made.
  const held: Array<[string, string, string, bigint]> = [];
  const courier = new TransferCourier({ registry, log: silentLogger, sinks: [cheques] });
  wiring.courier = { deliver: (from: string, id: string, to: string, amount: bigint) => (held.push([from, id, to, amount]), Promise.resolve()) } as unknown as TransferCourier;
  await registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  // Everything the users are owed, as the watchdog sums it.
  const owed = async () => {
    const s = walletSums(store.sums);
    return s.available + s.pending + s.reserved + s.transit + (await cheques.escrow());
  };
  t.equal(await owed(), 100_000n, "a credit from outside the wallets (a seed, a cheque's payout) was never in flight");
  t.match(await registry.send("u_alice", "send_transfer", { id: "to-bob", to: "u_bob", amount: 7_000n, maxAmount: 10n ** 9n }), { repeated: false });
  const made = await cheques.create("u_alice", "chq", 5_000n);
  if (isRefusal(made)) throw new Error(made.message);
  t.equal(held.length, 2, "both debits durable, neither credited");
  t.equal(walletSums(store.sums).transit, 12_000n, "both in flight");
  t.equal(await owed(), 100_000n, "still owed while in no balance");
  for (const [from, id, to, amount] of held.splice(0)) await courier.deliver(from, id, to, amount);
  await courier.settled();
  t.equal(walletSums(store.sums).transit, 0n, "each taken out of flight by the credit that took it");
  t.equal(await cheques.escrow(), 5_000n);
  t.equal(await owed(), 100_000n, "owed once: in bob's balance and the cheque's escrow");
  // A credit delivered again (its acknowledgement lost with a crash) is answered as a repeat: nothing leaves flight twice.
  await courier.deliver("u_alice", "to-bob", "u_bob", 7_000n);
  const [hash] = Object.keys((await cheques.state()).cheques);
  await courier.deliver("u_alice", `chqfund:${hash}`, `cheque:${hash}`, 5_000n);
  await courier.settled();
  t.equal(walletSums(store.sums).transit, 0n, "repeats change nothing");
  // A transfer to a cheque the book does not know is refused for good and given back to its sender: out of flight,
  // owed as available.
  t.match(await registry.send("u_alice", "send_transfer", { id: "lost", to: "cheque:unknown", amount: 1_000n, maxAmount: 10n ** 9n }), { repeated: false });
  for (const [from, id, to, amount] of held.splice(0)) await courier.deliver(from, id, to, amount);
  await courier.settled();
  t.equal(courier.stats.refused, 1, "refused for good by the book");
  t.equal(courier.stats.returned, 1, "given back to its sender");
  t.equal(walletSums(store.sums).transit, 0n, "out of flight");
  t.equal(await owed(), 100_000n, "and still owed, as available");
});

t.test("a receiver busy through every retry: the delivery is tried again later, not left for the next start", async (t) => {
  const { registry } = await courierOnDisk(t);
  let calls = 0;
  // A receiver that stays busy for longer than the courier's own retries (four tries), then takes the credit.
  const sink = {
    accepts: (to: string) => to === "sink:busy",
    receive: async () => (++calls <= 6 ? refuse("busy", "busy for now") : { ok: true as const }),
  };
  const courier = new TransferCourier({ registry, log: silentLogger, sinks: [sink], retries: 1, retryLaterMs: 5 });
  await courier.deliver("u_a", "t1", "sink:busy", 10n);
  t.equal(courier.stats.deferred, 1, "deferred after its retries");
  t.equal(courier.stats.refused, 0, "not counted as refused");
  await courier.settled();
  t.equal(calls, 7, "tried again until the receiver took it");
  t.equal(courier.stats.delivered, 1, "delivered once");
  t.equal(courier.stats.deferred, 3);
  // A stop drops what waits (the outbox keeps it): settled() does not wait for a receiver that never frees up.
  calls = -1000;
  await courier.deliver("u_a", "t2", "sink:busy", 10n);
  courier.stopRetrying();
  await courier.settled();
  t.equal(courier.stats.delivered, 1, "t2 waits in the outbox");
});

t.test("a receiver failing for a while (blocked after repeated errors, a write that failed): tried again later; one refused for good is not", async (t) => {
  const { registry } = await courierOnDisk(t);
  let calls = 0, never = 0;
  const sinks = [
    { accepts: (to: string) => to === "sink:failing", receive: async () => (++calls <= 3 ? refuse("internal", "unavailable for now") : { ok: true as const }) },
    { accepts: (to: string) => to === "sink:unknown", receive: async () => (never++, refuse("not_found", "No such cheque awaiting these funds.")) },
  ];
  const courier = new TransferCourier({ registry, log: silentLogger, sinks, retries: 1, retryLaterMs: 5 });
  await courier.deliver("u_a", "t1", "sink:failing", 10n);
  t.equal(courier.stats.deferred, 1, "deferred at the first failure, not given up");
  await courier.settled();
  t.same([calls, courier.stats.delivered, courier.stats.refused], [4, 1, 0], "tried again until the receiver took it, delivered once");
  await courier.deliver("u_a", "t2", "sink:unknown", 10n);
  await courier.settled();
  t.same([never, courier.stats.refused, courier.stats.deferred], [1, 1, 3], "a refusal for good is asked once and left in the outbox");
});

t.test("two senders' transfers with the same id, delivered at once: each is its own delivery, credited and acknowledged", async (t) => {
  const { registry, courier } = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000 });
  await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  await registry.send("u_c", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  // Ids are the sender's own (the script and internal edges take them from the caller): "t1" from u_a is not "t1" from u_c.
  const sent = await Promise.all([
    registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n }),
    registry.send("u_c", "send_transfer", { id: "t1", to: "u_d", amount: 20n, maxAmount: 1000n }),
  ]);
  t.notOk(sent.some(isRefusal));
  await courier.settled();
  t.same(await registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "u_a's transfer credited");
  t.same(await registry.read("u_d", "balance", {}), { available: 20n, pending: 0n, reserved: 0n }, "and u_c's");
  for (const u of ["u_a", "u_c"]) {
    const st = await registry.send(u, "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), [], `${u}'s outbox is empty`);
  }
});

t.test("a sender that journals nothing more is acknowledged by a record of its own after ackDelayMs", async (t) => {
  const { journal, registry, store } = await courierOnDisk(t, { carry: true, ackDelayMs: 20 });
  await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  const acked = new Promise<void>((resolve) => store.onWrite((_p, ops) => {
    if (ops.some((op) => op.key.startsWith("journal\u0000wallet:u_a\u0001") && op.key.endsWith("3"))) resolve();
  }));
  t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
  await acked;
  t.same((await recordsOf(journal, "u_a")).at(-1), ["transfer_acked t1"], "journalled without settled() or another command");
});

t.test("acknowledgements lost with a crash: the transfer is re-sent at the next activation, credited once, then acknowledged", async (t) => {
  const dir = t.testdir();
  const first = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000, dir });
  await first.registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  t.notOk(isRefusal(await first.registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
  await first.deliveries[0];
  await first.crash();
  const again = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000, dir, keyring: first.keyring });
  const st = await again.registry.send("u_a", "state", {});
  t.same(!isRefusal(st) && Object.keys(st.outgoing), ["t1"], "still in the outbox after the crash");
  await again.courier.settled();
  t.same(await again.registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "credited once");
  const after = await again.registry.send("u_a", "state", {});
  t.same(!isRefusal(after) && Object.keys(after.outgoing), [], "acknowledged after the re-send");
  t.same((await recordsOf(again.journal, "u_b")).flat().filter((e) => e.startsWith("transfer_received")), ["transfer_received t1"]);
});

t.test("a busy sender's acknowledgements gather: fewer journal records than transfers, every transfer acknowledged once", async (t) => {
  const { journal, registry, courier } = await courierOnDisk(t);
  await registry.send("u_payer", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  const n = 100;
  const sent = await Promise.all(Array.from({ length: n }, (_, i) => registry.send("u_payer", "send_transfer", { id: `p${i}`, to: `u_payee${i % 10}`, amount: 10n, maxAmount: 1000n })));
  t.notOk(sent.some(isRefusal), "all debited");
  await courier.settled();
  t.equal(courier.stats.delivered, n);
  const st = await registry.send("u_payer", "state", {});
  if (isRefusal(st)) throw new Error(st.message);
  t.same(Object.keys(st.outgoing), [], "the outbox is empty: every transfer acknowledged");
  const records = (await journal.readEvents("wallet:u_payer")).map((e) => (e.data as { e: Array<{ t: string }> }).e);
  const acks = records.filter((e) => e[0]!.t === "transfer_acked");
  t.equal(acks.flat().length, n, "one acknowledgement event per transfer");
  t.ok(acks.length < n, `in ${acks.length} journal records`);
  let total = 0n;
  for (let i = 0; i < 10; i++) {
    const b = await registry.read(`u_payee${i}`, "balance", {});
    if (!isRefusal(b)) total += b.available;
  }
  t.equal(total, 1000n, "each credit applied once");
});

t.test("credits to a busy receiver gather: many payers, fewer journal records, each credit applied once", async (t) => {
  const { journal, registry, courier } = await courierOnDisk(t);
  const payers = Array.from({ length: 50 }, (_, i) => `u_payer${i}`);
  await Promise.all(payers.map((p) => registry.send(p, "receive_transfer", { id: `seed-${p}`, from: "u_bank", amount: 1000n })));
  const sent = await Promise.all(payers.flatMap((p) => [0, 1].map((k) => registry.send(p, "send_transfer", { id: `${p}-${k}`, to: "u_star", amount: 10n, maxAmount: 1000n }))));
  t.notOk(sent.some(isRefusal), "all debited");
  await courier.settled();
  t.equal(courier.stats.delivered, 100);
  const records = (await journal.readEvents("wallet:u_star")).map((e) => (e.data as { e: Array<{ t: string }> }).e);
  const credits = records.filter((e) => e.some((x) => x.t === "transfer_received"));
  t.equal(credits.flat().filter((x) => x.t === "transfer_received").length, 100, "one credit event per transfer");
  t.ok(credits.length < 100, `in ${credits.length} journal records`);
  t.same(await registry.read("u_star", "balance", {}), { available: 1000n, pending: 0n, reserved: 0n }, "each credit applied once");
  // Re-sent (as after a restart, before the acknowledgements): answered as repeats, nothing credited again.
  for (const p of payers) courier.deliver(p, `${p}-0`, "u_star", 10n);
  await courier.settled();
  t.same(await registry.read("u_star", "balance", {}), { available: 1000n, pending: 0n, reserved: 0n }, "re-sent credits change nothing");
});

t.test("gathering: per key, what waits goes as the next call, at most `most` at a time, each caller with its own result", async (t) => {
  const calls: Array<[string, number[]]> = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const add = gathered(async (key: string, items: number[]) => {
    calls.push([key, items]);
    if (calls.length === 1) await gate;
    return items.map((x) => x * 10);
  }, 3);
  const first = add("a", 1);
  const rest = [2, 3, 4, 5, 6, 7].map((x) => add("a", x));
  const other = add("b", 9);
  release();
  t.same(await Promise.all([first, ...rest, other]), [10, 20, 30, 40, 50, 60, 70, 90]);
  t.same(calls, [["a", [1]], ["b", [9]], ["a", [2, 3, 4]], ["a", [5, 6, 7]]], "one call at a time per key, three items at most");
});

/**
 * The courier's way to the wallets, refusing (or answering as a timed-out ask would, after the wallet took it) the
 * first `refuse` acknowledgement records: the sender's wallet busy, blocked after repeated errors, or slow to answer.
 * `first` resolves once the first has been turned away, `refused` once the last has.
 */
function refusingAcks(o: { refuse: number; afterRecording?: boolean }) {
  let left = o.refuse;
  let done!: () => void, began!: () => void;
  const refused = new Promise<void>((r) => (done = r));
  const first = new Promise<void>((r) => (began = r));
  const seen: string[][] = [];
  const wrap = (registry: WalletRegistry): WalletRegistry => {
    type Send = (k: string, ty: string, p: unknown) => Promise<unknown>;
    const send: Send = (k, ty, p) => (registry.send as unknown as Send).call(registry, k, ty, p);
    return { send: async (userKey: string, type: string, payload: unknown): Promise<unknown> => {
      if (type !== "transfer_acked") return send(userKey, type, payload);
      seen.push([...(payload as { ids: string[] }).ids]);
      if (left <= 0) return send(userKey, type, payload);
      if (o.afterRecording) await send(userKey, type, payload);
      if (left-- === o.refuse) setImmediate(began);
      if (left === 0) setImmediate(done);
      return refuse("busy", "Too many requests at once for this wallet; try again in a moment.");
    } } as unknown as WalletRegistry;
  };
  return { wrap, first, refused, seen };
}

/** Resolves when the journal writes a record of `userKey`'s holding `event` (e.g. "transfer_acked t1"). */
function journalled(store: EncryptedStore, journal: Journal, userKey: string, event: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let done = false;
    store.onWrite((_p, ops) => {
      if (done || !ops.some((op) => op.key.startsWith(`journal\u0000wallet:${userKey}\u0001`))) return;
      void recordsOf(journal, userKey).then((rs) => {
        if (!done && rs.some((r) => r.includes(event))) (done = true), resolve();
      });
    });
  });
}

t.test("an acknowledgement record the sender's wallet refused is tried again while the engine runs: the outbox empties, no activation", { timeout: 10_000 }, async (t) => {
  const refusing = refusingAcks({ refuse: 1 });
  const { journal, registry, courier, store } = await courierOnDisk(t, { ackDelayMs: 5, retryLaterMs: 10, courierRegistry: refusing.wrap });
  await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  const acked = journalled(store, journal, "u_a", "transfer_acked t1");
  t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
  // A running engine's process stays up (its servers, the chain poll); a retry waiting alone does not hold it.
  const running = setInterval(() => undefined, 60_000);
  t.teardown(() => clearInterval(running));
  await refusing.refused;
  const activations = registry.stats.activations;
  // Neither settled() nor another command of the sender: the courier tries again on its own.
  await acked;
  t.same(refusing.seen, [["t1"], ["t1"]], "refused once, then recorded by a second record");
  t.equal(registry.stats.activations, activations, "no activation re-sent it: the sender stayed resident");
  const st = await registry.send("u_a", "state", {});
  t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "the sender's outbox is empty");
  await courier.settled();
  t.same(await registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "credited once");
  t.same((await recordsOf(journal, "u_b")).flat().filter((e) => e.startsWith("transfer_received")), ["transfer_received t1"]);
  t.same((await recordsOf(journal, "u_a")).flat().filter((e) => e.startsWith("transfer_acked")), ["transfer_acked t1"], "acknowledged once");
});

t.test("acknowledgements a sender's failed record carried go back to the courier", { timeout: 10_000 }, async (t) => {
  await t.test("tried again while the engine runs: the outbox empties, no activation", async (t) => {
    // Found by review: the courier dropped the acknowledgements when the wallet took them, so a record that then
    // failed lost them, and the credited transfer stayed in the sender's outbox until its next activation.
    const { journal, registry, courier, store, deliveries } = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000, retryLaterMs: 10 });
    const refusing = refusingRecord(journal, "u_a");
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await deliveries[0];
    t.same(await registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "credited; its acknowledgement waits for u_a's next record");
    // A running engine's process stays up (its servers, the chain poll); a retry waiting alone does not hold it.
    const running = setInterval(() => undefined, 60_000);
    t.teardown(() => clearInterval(running));
    const acked = journalled(store, journal, "u_a", "transfer_acked t1");
    const activations = registry.stats.activations;
    refusing.arm();
    t.match(await registry.send("u_a", "send_transfer", { id: "t2", to: "u_b", amount: 20n, maxAmount: 1000n }), { refused: true },
      "t2's record, carrying t1's acknowledgement, is refused by the store");
    t.equal(refusing.refused, 1, "the store refused one record");
    // Neither settled() nor another command of the sender: the courier sends it again on its own.
    await acked;
    t.equal(registry.stats.activations, activations, "no activation re-sent it: the sender stayed resident");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "the sender's outbox is empty");
    t.same(!isRefusal(st) && st.available, 990n, "t2 was not debited");
    await courier.settled();
    t.same((await recordsOf(journal, "u_a")).flat().filter((e) => e.startsWith("transfer_")), ["transfer_received seed", "transfer_sent t1", "transfer_acked t1"],
      "t1 acknowledged once, by a record of its own; nothing of t2's");
    t.same(await registry.read("u_b", "balance", {}), { available: 10n, pending: 0n, reserved: 0n }, "credited once");
  });

  await t.test("after a stop: left to the outbox, settled() resolves", async (t) => {
    const { journal, registry, courier, deliveries } = await courierOnDisk(t, { carry: true, ackDelayMs: 600_000, retryLaterMs: 10 });
    const refusing = refusingRecord(journal, "u_a");
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await deliveries[0];
    courier.stopRetrying();
    refusing.arm();
    t.match(await registry.send("u_a", "send_transfer", { id: "t2", to: "u_b", amount: 20n, maxAmount: 1000n }), { refused: true },
      "t2's record, carrying t1's acknowledgement, is refused by the store");
    // Scheduled again, it would never run (the stop dropped the timers) and settled() would wait for it for ever.
    await courier.settled();
    t.equal(courier.stats.acksSent, 0, "not sent again");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), ["t1"], "left in the outbox for the next start");
  });
});

/**
 * Makes the journal refuse `userKey`'s next wallet record once armed, as the store refuses a write it knows did not
 * happen (a stale epoch): written "no", the store's health unchanged.
 */
function refusingRecord(journal: Journal, userKey: string) {
  let armed = false;
  const state = { refused: 0, arm: () => void (armed = true) };
  const persist = journal.persist.bind(journal);
  journal.persist = async (ev) => {
    if (armed && ev.key === `wallet:${userKey}`) {
      armed = false;
      state.refused++;
      throw new StoreError("write_failed", "an earlier write turned out to be on disk; nothing was written", { written: "no" });
    }
    return persist(ev);
  };
  return state;
}

t.test("acknowledgements waiting to be tried again: settled() waits for them; the sender's next record carries them; a repeat is harmless", { timeout: 10_000 }, async (t) => {
  await t.test("settled() resolves once the retry is recorded", async (t) => {
    const refusing = refusingAcks({ refuse: 2 });
    const { registry, courier, journal } = await courierOnDisk(t, { ackDelayMs: 600_000, retryLaterMs: 5, courierRegistry: refusing.wrap });
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await courier.settled();
    t.same(refusing.seen, [["t1"], ["t1"], ["t1"]], "refused twice, tried until recorded");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "the outbox is empty when settled() resolves");
    t.same((await recordsOf(journal, "u_a")).flat().filter((e) => e.startsWith("transfer_acked")), ["transfer_acked t1"]);
  });

  await t.test("the sender's next record carries an acknowledgement waiting to be tried again", async (t) => {
    const refusing = refusingAcks({ refuse: 1 });
    const { registry, courier, journal } = await courierOnDisk(t, { carry: true, ackDelayMs: 5, retryLaterMs: 600_000, courierRegistry: refusing.wrap });
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await refusing.refused;
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t2", to: "u_b", amount: 20n, maxAmount: 1000n })));
    t.same((await recordsOf(journal, "u_a")).at(-1), ["transfer_sent t2", "transfer_acked t1"], "t1's acknowledgement rides on t2's record");
    // Its retry (ten minutes away) was dropped with it: settled() waits only for t2's.
    await courier.settled();
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "both acknowledged");
    t.same((await recordsOf(journal, "u_a")).flat().filter((e) => e.startsWith("transfer_acked")), ["transfer_acked t1", "transfer_acked t2"], "each once");
  });

  await t.test("an acknowledgement the wallet recorded but did not answer in time: the repeat changes nothing", async (t) => {
    const refusing = refusingAcks({ refuse: 1, afterRecording: true });
    const { registry, courier, journal } = await courierOnDisk(t, { ackDelayMs: 5, retryLaterMs: 5, courierRegistry: refusing.wrap });
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await refusing.refused;
    const records = (await recordsOf(journal, "u_a")).length;
    await courier.settled();
    t.same(refusing.seen, [["t1"], ["t1"]], "sent again");
    t.equal((await recordsOf(journal, "u_a")).length, records, "no record for the repeat");
    t.same(await registry.send("u_a", "transfer_acked", { ids: ["t1", "t1", "nope"] }), { ok: true }, "a repeat (and an id never sent) is answered ok");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), [], "the outbox is empty");
  });
});

t.test("acknowledgements waiting to be tried again at a stop: one last try, then left to the outbox; abandon drops them", { timeout: 10_000 }, async (t) => {
  await t.test("stopRetrying: tried once more by the stop's settled(), not again", async (t) => {
    const refusing = refusingAcks({ refuse: 1_000 });
    const { registry, courier } = await courierOnDisk(t, { ackDelayMs: 5, retryLaterMs: 600_000, courierRegistry: refusing.wrap });
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await refusing.first;
    courier.stopRetrying();
    await courier.settled();
    t.same(refusing.seen, [["t1"], ["t1"]], "one last try at the stop, refused, not tried again");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), ["t1"], "left in the outbox for the next start");
  });

  await t.test("abandon: dropped, as a crash would", async (t) => {
    const refusing = refusingAcks({ refuse: 1 });
    const { registry, courier } = await courierOnDisk(t, { ackDelayMs: 5, retryLaterMs: 600_000, courierRegistry: refusing.wrap });
    await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
    t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
    await refusing.refused;
    courier.abandon();
    await courier.settled();
    t.same(refusing.seen, [["t1"]], "not tried again");
    const st = await registry.send("u_a", "state", {});
    t.same(!isRefusal(st) && Object.keys(st.outgoing), ["t1"], "left in the outbox for the next start");
  });
});

t.test("once the registry is closed (the engine stopping), an acknowledgement it refuses is left to the outbox, not tried again", { timeout: 10_000 }, async (t) => {
  // Found by CI: an ack refused by a closed registry was tried again forever, and once someone had waited for settled()
  // its timer kept the process alive (a test file that never exited).
  const { registry, courier, deliveries } = await courierOnDisk(t, { ackDelayMs: 600_000, retryLaterMs: 5 });
  await registry.send("u_a", "receive_transfer", { id: "seed", from: "u_bank", amount: 1000n });
  t.notOk(isRefusal(await registry.send("u_a", "send_transfer", { id: "t1", to: "u_b", amount: 10n, maxAmount: 1000n })));
  await deliveries[0];
  registry.close();
  await courier.settled();
  t.equal(courier.stats.acksSent, 1, "sent once, refused, not again");
});
