// A transfer its receiver refuses for good goes back to its sender, once, whatever crashes: out of the outbox, the
// amount available again, out of the transfers in flight, with a history entry and a notice. One refused for a while
// (busy, unavailable) is not given back.
import t from "tap";
import { randomBytes } from "node:crypto";
import { isRefusal, refuse, refuseUnsent } from "../../src/domain/refusals.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { TransferCourier, type TransferSink } from "../../src/actors/transfers.ts";
import { ChequeService } from "../../src/actors/cheque.service.ts";
import { FinishedCheques } from "../../src/actors/cheques.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";
import { notice as noticeText, history as historyText } from "../../src/edges/telegram/render.ts";
import type { WalletNotice } from "../../src/actors/wallet.messages.ts";

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
 * Wallets and the cheque book on a real encrypted store, the courier delivering the wallets' transfers (to wallets, to
 * the book, to `sinks`) as the engine wires them; the notices the wallets make, by user. `chequeRegistry`,
 * `courierRegistry`: what the cheque service, the courier, see of the registry.
 */
async function onDisk(
  t: { testdir(): string; teardown(f: () => unknown): void },
  o: {
    dir?: string; keyring?: KeyRing; sinks?: TransferSink[]; retries?: number; retryLaterMs?: number;
    chequeRegistry?: (r: WalletRegistry) => WalletRegistry; courierRegistry?: (r: WalletRegistry) => WalletRegistry;
  } = {},
) {
  const keyring = o.keyring ?? new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const store = await EncryptedStore.open({ path: o.dir ?? t.testdir(), keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const notices: Array<[string, WalletNotice]> = [];
  /** Each delivery the wallets asked for: settles when it is over (delivered, given back, or waiting to be tried again). */
  const deliveries: Array<Promise<void>> = [];
  let courier!: TransferCourier;
  const registry = new WalletRegistry({
    system, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
    records: new WalletRecords(store, 100), snapshotEvery: 50,
    hooks: {
      notice: (u, n) => void notices.push([u, n]), submitWithdrawal: () => undefined,
      deliverTransfer: (f, id, to, a) => void deliveries.push(courier.deliver(f, id, to, a)),
      takeAcks: (f) => courier.takeAcks(f),
    },
  });
  const cheques = new ChequeService({
    system, registry: o.chequeRegistry ? o.chequeRegistry(registry) : registry, log: silentLogger, ttlSec: 3600, maxAmount: 10n ** 8n,
    mac: (p, d) => store.mac(p, d), finished: new FinishedCheques(store), retainFinished: 10,
  });
  courier = new TransferCourier({
    registry: o.courierRegistry ? o.courierRegistry(registry) : registry, log: silentLogger, sinks: [cheques, ...(o.sinks ?? [])],
    ...(o.retries !== undefined ? { retries: o.retries } : {}), retryLaterMs: o.retryLaterMs ?? 600_000,
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
  const state = async (u: string) => {
    const s = await registry.send(u, "state", {});
    if (isRefusal(s)) throw new Error(s.message);
    return s;
  };
  return { store, journal, registry, cheques, courier, notices, deliveries, keyring, crash, state };
}

/** The events of a wallet's journal, by type and id. */
async function eventsOf(journal: Journal, userKey: string): Promise<string[]> {
  return (await journal.readEvents(`wallet:${userKey}`)).flatMap((e) => (e.data as { e: Array<{ t: string; id?: string }> }).e.map((x) => `${x.t}${x.id ? ` ${x.id}` : ""}`));
}

t.test("a cheque's funding that a second request with the same command id brings after the cheque was dropped goes back to its creator, once", async (t) => {
  // The known case: a split bot restarted mid-/cheque, so the same /cheque came twice. The first request's funding is
  // refused before it reaches the wallet (too many commands in flight): nothing sent, the cheque is dropped. The second
  // request found the cheque made (before the drop), and its funding reaches the wallet after the drop.
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
        // Sent on once the first request has dropped the cheque.
        await first;
      }
      return send(u, type, args);
    }),
  });
  cheques = w.cheques;
  await w.registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 100_000n });
  first = cheques.create("u_alice", "c1", 5_000n);
  t.match(await first, { code: "busy", unsent: true }, "the first request: nothing moved");
  const made = await second;
  t.match(made, { amount: 5_000n }, "the second request was answered with the cheque it found");
  t.equal((await cheques.state()).size, 0, "the first request dropped the cheque");
  await w.courier.settled();

  const id = (await eventsOf(w.journal, "u_alice")).find((e) => e.startsWith("transfer_sent "))!.slice("transfer_sent ".length);
  const hash = id.slice("chqfund:".length);
  const s = await w.state("u_alice");
  t.equal(s.available, 100_000n, "the amount is back in the creator's balance");
  t.same(Object.keys(s.outgoing), [], "the creator's outbox is empty");
  t.same(walletSums(w.store.sums), { available: 100_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "out of the transfers in flight: owed once, as available");
  t.equal(await cheques.escrow(), 0n, "never in the cheque book's escrow");
  const flagged: string[] = [];
  for await (const k of w.registry.records.flagged()) flagged.push(k);
  t.same(flagged, [], "no wallet is flagged with unfinished work");
  t.match(w.courier.stats, { refused: 1, returned: 1 });
  t.same((await eventsOf(w.journal, "u_alice")).filter((e) => e.startsWith("transfer_")), ["transfer_received seed", `transfer_sent ${id}`, `transfer_returned ${id}`]);

  const page = await w.registry.history("u_alice", 0, 10);
  if (isRefusal(page)) throw new Error(page.message);
  t.match(page.entries, [
    { kind: "transfer_out", amount: 5_000n, ref: id, status: "returned", counterparty: `cheque:${hash}` },
    { kind: "transfer_out", amount: -5_000n, ref: id, status: "sent" },
    { kind: "transfer_in", amount: 100_000n, status: "received" },
  ], "the history: sent, then returned");
  t.match(historyText(page), /\+0\.00005 BTC \(5,000 sats\) {2}cheque not made: back to you/);

  const told = w.notices.filter(([, n]) => n.kind === "transfer_returned");
  t.same(told, [["u_alice", { kind: "transfer_returned", id, amount: 5_000n, to: `cheque:${hash}`, reason: "not_found" }]], "its creator is told, once");
  const text = noticeText(told[0]![1]);
  t.match(text, /could not be delivered: the cheque it was to fund no longer exists/);
  t.match(text, /is back in your balance/);

  // Exactly once: the funding delivered again (a late duplicate), and the return asked again, change nothing.
  await w.courier.deliver("u_alice", id, `cheque:${hash}`, 5_000n);
  await w.courier.settled();
  t.same(await w.registry.send("u_alice", "return_transfer", { id, reason: "not_found" }), { returned: false }, "a repeated return: nothing to return");
  t.equal((await w.state("u_alice")).available, 100_000n, "not credited twice");
  t.equal(walletSums(w.store.sums).transit, 0n);
  t.equal(await cheques.escrow(), 0n, "the late duplicate did not fund anything");
  t.equal((await eventsOf(w.journal, "u_alice")).filter((e) => e.startsWith("transfer_returned")).length, 1, "one return journalled");
  t.equal(w.notices.filter(([, n]) => n.kind === "transfer_returned").length, 1, "told once");
  t.match(await cheques.claim("u_bob", (made as { code: string }).code), { code: "not_found" }, "no cheque to claim");
});

t.test("a return is done once across a crash", async (t) => {
  await t.test("journalled before the crash: the activation after it re-sends nothing and returns nothing more", async (t) => {
    const dir = t.testdir();
    const first = await onDisk(t, { dir });
    await first.registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
    t.match(await first.registry.send("u_alice", "send_transfer", { id: "lost", to: "cheque:nosuchcheque", amount: 1_000n, maxAmount: 10n ** 9n }), { repeated: false });
    await first.courier.settled();
    t.equal((await first.state("u_alice")).available, 50_000n, "returned");
    await first.crash();

    const again = await onDisk(t, { dir, keyring: first.keyring });
    const s = await again.state("u_alice");
    await again.courier.settled();
    t.equal(s.available, 50_000n, "still returned after the crash");
    t.same(Object.keys(s.outgoing), [], "nothing in the outbox to re-send");
    t.match(again.courier.stats, { delivered: 0, refused: 0, returned: 0 }, "nothing re-sent at the activation");
    t.same(again.notices, [], "nobody told again");
    t.same((await eventsOf(again.journal, "u_alice")).filter((e) => e.startsWith("transfer_returned")), ["transfer_returned lost"]);
    t.same(walletSums(again.store.sums), { available: 50_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n });
    // Re-sent all the same (a duplicate from before the crash): refused again, nothing to return.
    await again.courier.deliver("u_alice", "lost", "cheque:nosuchcheque", 1_000n);
    await again.courier.settled();
    t.match(again.courier.stats, { refused: 1, returned: 0 });
    t.equal((await again.state("u_alice")).available, 50_000n, "not returned twice");
    t.equal(walletSums(again.store.sums).transit, 0n);
  });

  await t.test("refused, the crash before the return was journalled: returned once at the next start", async (t) => {
    const dir = t.testdir();
    let returns = 0;
    // The sender's wallet does not take the return (nothing journalled), and the engine dies before it is tried again.
    const first = await onDisk(t, {
      dir, courierRegistry: (r) => through(r, (send, u, type, args) => (type === "return_transfer" ? (returns++, Promise.resolve(refuseUnsent("busy", "Too many requests at once for this wallet; try again in a moment."))) : send(u, type, args))),
    });
    await first.registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 50_000n });
    t.match(await first.registry.send("u_alice", "send_transfer", { id: "lost", to: "cheque:nosuchcheque", amount: 1_000n, maxAmount: 10n ** 9n }), { repeated: false });
    first.courier.stopRetrying();
    await first.courier.settled();
    t.equal(returns, 1, "its return was asked for once, and not taken");
    const before = await first.state("u_alice");
    t.equal(before.available, 49_000n, "still debited");
    t.same(Object.keys(before.outgoing), ["lost"], "still in the outbox");
    t.equal(walletSums(first.store.sums).transit, 1_000n, "still in flight");
    await first.crash();

    const again = await onDisk(t, { dir, keyring: first.keyring });
    await again.state("u_alice");
    await again.courier.settled();
    const s = await again.state("u_alice");
    t.equal(s.available, 50_000n, "re-sent at the activation, refused, returned");
    t.same(Object.keys(s.outgoing), []);
    t.match(again.courier.stats, { refused: 1, returned: 1 });
    t.same((await eventsOf(again.journal, "u_alice")).filter((e) => e.startsWith("transfer_")), ["transfer_received seed", "transfer_sent lost", "transfer_returned lost"], "returned once");
    t.same(walletSums(again.store.sums), { available: 50_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n });
    t.same(again.notices.map(([u, n]) => [u, n.kind]), [["u_alice", "transfer_returned"]], "told once");
  });
});

t.test("a receiver busy or unavailable is not a refusal for good: the transfer stays in the outbox, owed, and is not given back", async (t) => {
  let busyCalls = 0, failingCalls = 0;
  const sinks: TransferSink[] = [
    { accepts: (to) => to === "sink:busy", receive: async () => (busyCalls++, refuse("busy", "busy for now")) },
    { accepts: (to) => to === "sink:failing", receive: async () => (failingCalls++, refuse("internal", "This wallet is unavailable after repeated errors; operators have been told. Nothing was moved.")) },
  ];
  const w = await onDisk(t, { sinks, retries: 1 });
  await w.registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 10_000n });
  t.match(await w.registry.send("u_alice", "send_transfer", { id: "b", to: "sink:busy", amount: 1_000n, maxAmount: 10n ** 9n }), { repeated: false });
  t.match(await w.registry.send("u_alice", "send_transfer", { id: "f", to: "sink:failing", amount: 2_000n, maxAmount: 10n ** 9n }), { repeated: false });
  // The deliveries are over, waiting to be tried again (in ten minutes): a stop drops those tries, and settled() returns.
  await Promise.all(w.deliveries);
  t.equal(w.courier.stats.deferred, 2, "both deferred");
  w.courier.stopRetrying();
  await w.courier.settled();
  t.ok(busyCalls >= 2 && failingCalls >= 1, "each receiver was asked");
  t.match(w.courier.stats, { refused: 0, returned: 0, delivered: 0 });
  const s = await w.state("u_alice");
  t.equal(s.available, 7_000n, "not given back");
  t.same(Object.keys(s.outgoing).sort(), ["b", "f"], "both still in the outbox");
  t.equal(walletSums(w.store.sums).transit, 3_000n, "both still owed, in flight");
  t.same((await eventsOf(w.journal, "u_alice")).filter((e) => e.startsWith("transfer_returned")), []);
  t.same(w.notices.filter(([, n]) => n.kind === "transfer_returned"), []);
});

t.test("a return whose answer was lost (it may be journalled) is tried again as a return: the receiver is never credited after it", async (t) => {
  let calls = 0, credited = 0, returns = 0;
  // Refuses the first credit for good, and would take any later one (as a cheque made again by the same /cheque would).
  const sink: TransferSink = {
    accepts: (to) => to === "sink:once",
    receive: async () => (++calls === 1 ? refuse("not_found", "No such cheque awaiting these funds.") : (credited++, { ok: true as const })),
  };
  const w = await onDisk(t, {
    sinks: [sink], retryLaterMs: 5,
    // The first return is journalled, but its answer is lost (an ask that timed out).
    courierRegistry: (r) => through(r, async (send, u, type, args) => {
      if (type !== "return_transfer") return send(u, type, args);
      const answer = await send(u, type, args);
      return ++returns === 1 ? refuse("busy", "The wallet did not answer in time; nothing may have happened yet. Check /balance in a moment.") : answer;
    }),
  });
  // A retry waiting alone does not hold the process up; this test's interval does, meanwhile.
  const running = setInterval(() => undefined, 60_000);
  t.teardown(() => clearInterval(running));
  await w.registry.send("u_alice", "receive_transfer", { id: "seed", from: "u_bank", amount: 10_000n });
  t.match(await w.registry.send("u_alice", "send_transfer", { id: "x", to: "sink:once", amount: 4_000n, maxAmount: 10n ** 9n }), { repeated: false });
  await w.courier.settled();
  t.equal(returns, 2, "the return was asked for again");
  t.same([calls, credited], [1, 0], "the receiver was asked once, never credited after its refusal");
  t.match(w.courier.stats, { refused: 1, returned: 1, delivered: 0 });
  const s = await w.state("u_alice");
  t.equal(s.available, 10_000n, "returned once");
  t.same(Object.keys(s.outgoing), []);
  t.equal(walletSums(w.store.sums).transit, 0n);
  t.same((await eventsOf(w.journal, "u_alice")).filter((e) => e.startsWith("transfer_returned")), ["transfer_returned x"]);
});
