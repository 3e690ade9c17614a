// decide/evolve are pure: these tests drive them directly, without actors or disks.
import t from "tap";
import {
  ADDRESSES_KEPT, changedBy, checkInvariants, decide, emptyWallet, evolve, isFinished, isRefusal, pendingDeposits, refOf, restoreWallet,
  type Deposit, type WalletCommand, type WalletIndex, type WalletState, type Withdrawal,
} from "../../src/actors/wallet.ts";

const ctx = { now: Date.parse("2026-11-24T12:00:00Z") };
const noop = () => undefined;
/** A command without its reply channel (distributes over the union). */
type Cmd = WalletCommand extends infer C ? (C extends WalletCommand ? Omit<C, "reply"> : never) : never;

/**
 * The finished deposits and withdrawals each state's wallet has in its records (wallet.records.ts keeps them in the
 * store), by outpoint or id: copied for each new state, so two states of one test never share them.
 */
const finished = new WeakMap<WalletState, ReadonlyMap<string, Deposit | Withdrawal>>();

/** The wallet's records as the actor's index: finished entries as above; transfer ids all seen, or none (`seen`). */
function indexOf(s: WalletState, seen?: boolean): WalletIndex {
  const book = finished.get(s);
  return {
    sent: () => seen === true, received: () => seen === true,
    deposit: (_u, outpoint) => book?.get(outpoint) as Deposit | undefined,
    withdrawal: (_u, id) => book?.get(id) as Withdrawal | undefined,
  };
}

/** Applies a command the way the actor does; returns the new state and the answer (or the refusal). */
function run(s: WalletState, cmd: Cmd, now = ctx.now, seen?: boolean): { s: WalletState; answer: unknown } {
  const index = indexOf(s, seen);
  const d = decide(s, { ...cmd, reply: noop } as WalletCommand, { now, index });
  if (isRefusal(d)) return { s, answer: d };
  const book = new Map(finished.get(s));
  let after = s;
  for (const e of d.events) {
    const next = evolve(after, e);
    // What WalletRecords.forCommand writes: an entry the event finished leaves the state for the records.
    const changed = changedBy(after, next, e, e.t === "deposit_reversed" ? index.deposit(s.userKey, e.outpoint) : undefined);
    if (changed && isFinished(changed)) book.set(refOf(e), changed);
    after = next;
  }
  const broken = checkInvariants(after);
  if (broken) throw new Error(broken);
  if (after !== s) finished.set(after, book);
  return { s: after, answer: d.answer(after) };
}

function opened(): WalletState {
  return run(emptyWallet("u_test"), { type: "open" }).s;
}

function funded(sats: bigint): WalletState {
  let s = opened();
  s = run(s, { type: "deposit", deposit: { txid: "aa".repeat(32), vout: 0, address: "bcrt1qx", amount: sats, confirmations: 1 }, target: 1, maxPending: 1000 }).s;
  return s;
}

t.test("a wallet must be opened first, and opening twice does not reset it", async (t) => {
  const r = run(emptyWallet("u"), { type: "balance" });
  t.match(r.answer, { refused: true, code: "not_found" });
  let s = funded(1000n);
  s = run(s, { type: "open" }).s;
  t.equal(s.available, 1000n);
});

t.test("deposit: pending until the target, then available, once per outpoint", async (t) => {
  let s = opened();
  const dep = { txid: "bb".repeat(32), vout: 1, address: "bcrt1qy", amount: 5000n, confirmations: 0 };
  s = run(s, { type: "deposit", deposit: dep, target: 2, maxPending: 1000 }).s;
  t.same([s.pending, s.available], [5000n, 0n]);
  s = run(s, { type: "deposit", deposit: { ...dep, confirmations: 1 }, target: 2, maxPending: 1000 }).s;
  t.same([s.pending, s.available], [5000n, 0n], "below target: still pending, not counted twice");
  s = run(s, { type: "deposit", deposit: { ...dep, confirmations: 2 }, target: 2, maxPending: 1000 }).s;
  t.same([s.pending, s.available], [0n, 5000n]);
  s = run(s, { type: "deposit", deposit: { ...dep, confirmations: 3 }, target: 2, maxPending: 1000 }).s;
  t.same([s.pending, s.available], [0n, 5000n], "seen again after confirmation: no double credit");
  const other = run(s, { type: "deposit", deposit: { ...dep, amount: 1n, confirmations: 3 }, target: 2, maxPending: 1000 });
  t.match(other.answer, { refused: true }, "the same outpoint with another amount is refused");
  s = run(s, { type: "deposit", deposit: { ...dep, vout: 2, confirmations: 5 }, target: 2, maxPending: 1000 }).s;
  t.equal(s.available, 10000n, "another output of the same tx is another deposit");
});

t.test("a deposit below the minimum: not credited, one history entry, once; credited if it is later sent as a deposit", async (t) => {
  let s = opened();
  s = run(s, { type: "add_address", address: "bcrt1qdust" }).s;
  const dep = { txid: "dd".repeat(32), vout: 3, address: "bcrt1qdust", amount: 300n, confirmations: 0 };
  const r = run(s, { type: "deposit_ignored", deposit: dep, minimum: 546n });
  t.same(r.answer, { status: "ignored" });
  t.same([r.s.available, r.s.pending, r.s.historyTotal, r.s.addressUsed], [0n, 0n, s.historyTotal + 1, true], "nothing credited; an entry; the address counts as used");
  t.same(run(r.s, { type: "deposit_ignored", deposit: { ...dep, confirmations: 1 }, minimum: 546n }).s.historyTotal, r.s.historyTotal, "listed again: no second entry");
  t.match(run(s, { type: "deposit_ignored", deposit: { ...dep, amount: 546n }, minimum: 546n }).answer, { refused: true, code: "bad_input" }, "the minimum itself is credited, not ignored");
  t.match(run(s, { type: "deposit_ignored", deposit: { ...dep, amount: 0n }, minimum: 546n }).answer, { refused: true, code: "bad_amount" });
  const credited = run(r.s, { type: "deposit", deposit: { ...dep, confirmations: 1 }, target: 1, maxPending: 1000 }).s;
  t.same([credited.available, credited.historyTotal], [300n, r.s.historyTotal + 1], "the minimum lowered since: credited, as a new entry");
});

t.test("reorg: a pending deposit leaves; a confirmed one freezes the wallet for review", async (t) => {
  let s = opened();
  const dep = { txid: "cc".repeat(32), vout: 0, address: "a", amount: 700n, confirmations: 0 };
  s = run(s, { type: "deposit", deposit: dep, target: 1, maxPending: 1000 }).s;
  s = run(s, { type: "deposit_removed", outpoint: `${dep.txid}:0` }).s;
  t.same([s.pending, s.available], [0n, 0n]);
  s = run(s, { type: "deposit", deposit: { ...dep, confirmations: 1 }, target: 1, maxPending: 1000 }).s;
  t.equal(s.available, 700n, "re-mined after the reorg: credited once");
  s = run(s, { type: "deposit_removed", outpoint: `${dep.txid}:0` }).s;
  t.ok(s.frozen, "frozen");
  t.equal(s.available, 700n, "not silently taken back");
});

t.test("withdrawal: reserve, refusals, settle with a fee share never above the quote", async (t) => {
  let s = funded(100_000n);
  const req = { id: "w1", address: "bcrt1qdest", amount: 50_000n, fee: 1_000n, dustLimit: 546n, dailyLimit: 80_000n };
  t.match(run(s, { type: "reserve_withdrawal", request: { ...req, amount: 545n } }).answer, { code: "below_dust", message: /at least 0\.00000546 BTC \(546 sats\)/ });
  t.match(run(s, { type: "reserve_withdrawal", request: { ...req, id: "w0", amount: 546n } }).s.withdrawals.w0, { amount: 546n, status: "reserved" }, "the limit itself is not dust (a deposit of it is credited too)");
  t.match(run(s, { type: "reserve_withdrawal", request: { ...req, amount: 99_500n } }).answer, { code: "insufficient_funds" });
  t.match(run(s, { type: "reserve_withdrawal", request: { ...req, amount: 90_000n } }).answer, { code: "over_limit" });
  s = run(s, { type: "reserve_withdrawal", request: req }).s;
  t.same([s.available, s.reserved], [49_000n, 51_000n]);
  const again = run(s, { type: "reserve_withdrawal", request: req });
  t.match(again.answer, { repeated: true });
  t.equal(again.s.available, 49_000n, "a repeated id changes nothing");
  t.match(run(s, { type: "reserve_withdrawal", request: { ...req, id: "w2", amount: 40_000n } }).answer, { code: "over_limit" }, "daily limit counts the first");
  s = run(s, { type: "withdrawal_broadcast", id: "w1", txid: "dd".repeat(32) }).s;
  s = run(s, { type: "withdrawal_settled", id: "w1", txid: "dd".repeat(32), fee: 5_000n }).s;
  t.same([s.available, s.reserved], [49_000n, 0n], "charged the quote at most");
  let s2 = run(funded(100_000n), { type: "reserve_withdrawal", request: req }).s;
  s2 = run(s2, { type: "withdrawal_settled", id: "w1", txid: "ee".repeat(32), fee: 400n }).s;
  t.equal(s2.available, 49_600n, "a smaller actual fee share is refunded");
  let s3 = run(funded(100_000n), { type: "reserve_withdrawal", request: req }).s;
  s3 = run(s3, { type: "withdrawal_released", id: "w1", reason: "rejected" }).s;
  t.same([s3.available, s3.reserved], [100_000n, 0n], "a released reservation returns everything");
});

t.test("the daily withdrawal limit counts the last 24 hours, not the calendar day: not drawn twice across a midnight", async (t) => {
  const at = (iso: string) => Date.parse(iso);
  const req = { id: "w1", address: "bcrt1qdest", amount: 60_000n, fee: 1_000n, dustLimit: 546n, dailyLimit: 100_000n };
  let s = run(funded(1_000_000n), { type: "reserve_withdrawal", request: req }, at("2026-11-24T23:30:00Z")).s;
  const second = { type: "reserve_withdrawal" as const, request: { ...req, id: "w2" } };
  t.match(run(s, second, at("2026-11-25T00:30:00Z")).answer, {
    code: "over_limit", message: /limit of 0\.001 BTC \(100,000 sats\) in 24 hours; you can withdraw 0\.0004 BTC \(40,000 sats\) now, and more from 2026-11-25 23:00 UTC/,
  }, "an hour later, on the next calendar day: still counted");
  t.match(run(s, { ...second, request: { ...second.request, amount: 40_000n } }, at("2026-11-25T00:30:00Z")).s.withdrawals.w2, { status: "reserved" }, "what is left may go");
  t.match(run(s, second, at("2026-11-25T23:00:00Z")).s.withdrawals.w2, { status: "reserved" }, "24 hours on (to the hour), it no longer counts");
  // Given back (released): it stops counting at once.
  s = run(s, { type: "withdrawal_released", id: "w1", reason: "operator gave it back" }, at("2026-11-25T00:10:00Z")).s;
  t.match(run(s, second, at("2026-11-25T00:30:00Z")).s.withdrawals.w2, { status: "reserved" });
  t.same(s.withdrawnByHour, [], "nothing left in the window");
  // Many withdrawals keep at most one entry per hour.
  let m = funded(10_000_000n);
  for (let i = 0; i < 200; i++) m = run(m, { type: "reserve_withdrawal", request: { ...req, id: `m${i}`, amount: 1_000n, dailyLimit: 10n ** 9n } }, at("2026-11-24T00:00:00Z") + i * 15 * 60_000).s;
  t.ok(m.withdrawnByHour.length <= 24, `${m.withdrawnByHour.length} hours kept for 200 withdrawals over 50 hours`);
  t.equal(m.withdrawnByHour.reduce((a, [, x]) => a + x, 0n), 96_000n, "the last 24 hours' 96 withdrawals");
});

t.test("a snapshot from before the 24-hour window: its calendar day's total counts from that day's start", async (t) => {
  const { withdrawnByHour: _none, ...before } = funded(1_000_000n);
  const s = restoreWallet({ ...before, day: { date: "2026-11-24", withdrawn: 70_000n } } as unknown as WalletState);
  t.notOk("day" in s, "the old field is gone");
  const req = { id: "w", address: "bcrt1qdest", amount: 40_000n, fee: 1_000n, dustLimit: 546n, dailyLimit: 100_000n };
  t.match(run(s, { type: "reserve_withdrawal", request: req }, Date.parse("2026-11-24T20:00:00Z")).answer, { code: "over_limit" });
  t.match(run(s, { type: "reserve_withdrawal", request: req }, Date.parse("2026-11-25T00:00:00Z")).s.withdrawals.w, { status: "reserved" }, "as the day rule did");
});

t.test("frozen wallets refuse money out but keep receiving", async (t) => {
  let s = funded(10_000n);
  s = run(s, { type: "freeze", reason: "review", by: "op" }).s;
  t.match(run(s, { type: "reserve_withdrawal", request: { id: "w", address: "x", amount: 1000n, fee: 10n, dustLimit: 546n, dailyLimit: 10n ** 9n } }).answer, { code: "frozen" });
  t.match(run(s, { type: "send_transfer", id: "t", to: "u_other", amount: 10n, maxAmount: 10n ** 9n }).answer, { code: "frozen" });
  s = run(s, { type: "receive_transfer", id: "t2", from: "u_other", amount: 5n }).s;
  t.equal(s.available, 10_005n);
  s = run(s, { type: "unfreeze", by: "op" }).s;
  t.notOk(s.frozen);
});

t.test("transfers: debit once per id, credit once per id (the index says seen), outbox until acknowledged", async (t) => {
  let a = funded(1_000n);
  t.match(run(a, { type: "send_transfer", id: "t1", to: "u_test", amount: 1n, maxAmount: 100n }).answer, { code: "self_transfer" });
  t.match(run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 2_000n, maxAmount: 10_000n }).answer, { code: "insufficient_funds" });
  t.match(run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 600n, maxAmount: 500n }).answer, { code: "over_limit" });
  a = run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 600n, maxAmount: 10_000n }).s;
  a = run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 600n, maxAmount: 10_000n }).s;
  t.equal(a.available, 400n, "debited once");
  t.ok(a.outgoing.t1);
  a = run(a, { type: "transfer_acked", ids: ["t1"] }).s;
  t.notOk(a.outgoing.t1);
  t.same(run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 600n, maxAmount: 10_000n }, ctx.now, true).answer, { repeated: true, balance: { available: 400n, pending: 0n, reserved: 0n } },
    "after the acknowledgement the transfer index recognises the id");
  t.equal(run(a, { type: "send_transfer", id: "t1", to: "u_b", amount: 600n, maxAmount: 10_000n }, ctx.now, true).s, a, "and nothing changes");
  let b = emptyWallet("u_b");
  b = run(b, { type: "receive_transfer", id: "t1", from: "u_test", amount: 600n }).s;
  t.equal(b.available, 600n, "credited; the wallet opened implicitly");
  t.same(run(b, { type: "receive_transfer", id: "t1", from: "u_test", amount: 600n }, ctx.now, true), { s: b, answer: { repeated: true } }, "a re-sent credit is answered, not applied");
  t.ok(b.opened);
});

t.test("history: each deposit, withdrawal and transfer takes the next entry number; status changes keep theirs", async (t) => {
  let s = funded(100_000n);
  t.equal(s.historyTotal, 1);
  t.equal(finished.get(s)?.get(`${"aa".repeat(32)}:0`)?.h, 1, "the confirmed deposit's entry (in its record)");
  s = run(s, { type: "receive_transfer", id: "t0", from: "x", amount: 5n }).s;
  s = run(s, { type: "reserve_withdrawal", request: { id: "w1", address: "bcrt1qd", amount: 10_000n, fee: 500n, dustLimit: 546n, dailyLimit: 10n ** 9n } }).s;
  t.equal(s.withdrawals.w1!.h, 3);
  s = run(s, { type: "withdrawal_settled", id: "w1", txid: "bb".repeat(32), fee: 300n }).s;
  t.equal(finished.get(s)?.get("w1")?.h, 3, "settling rewrites entry 3");
  t.equal(s.historyTotal, 3);
  t.same(run(s, { type: "history" }).answer, { total: 3 }, "a history read answers the committed count");
});

t.test("addresses: the newest unused address is reused", async (t) => {
  let s = opened();
  t.same(run(s, { type: "current_address" }).answer, {});
  s = run(s, { type: "add_address", address: "bcrt1qa" }).s;
  t.same(run(s, { type: "current_address" }).answer, { address: "bcrt1qa" });
  s = run(s, { type: "deposit", deposit: { txid: "ff".repeat(32), vout: 0, address: "bcrt1qa", amount: 10n, confirmations: 0 }, target: 1, maxPending: 1000 }).s;
  t.same(run(s, { type: "current_address" }).answer, {}, "used: a new one is needed");
});

t.test("addresses: the state keeps the newest ADDRESSES_KEPT, the newest last", async (t) => {
  let s = opened();
  for (let i = 0; i < ADDRESSES_KEPT + 10; i++) s = run(s, { type: "add_address", address: `bcrt1q${i}` }).s;
  t.equal(s.addresses.length, ADDRESSES_KEPT);
  t.same([s.addresses[0], s.addresses.at(-1)], ["bcrt1q10", `bcrt1q${ADDRESSES_KEPT + 9}`]);
  t.same(run(s, { type: "current_address" }).answer, { address: `bcrt1q${ADDRESSES_KEPT + 9}` }, "the newest is handed out");
  t.equal(run(s, { type: "add_address", address: "bcrt1q12" }).s, s, "a recent one added again changes nothing");
});

t.test("gathered credits: one record for many, each id once (in the index or twice in the batch), opening the wallet", async (t) => {
  const s = emptyWallet("u_r");
  const transfers = [{ id: "a", from: "u_1", amount: 5n }, { id: "b", from: "u_2", amount: 7n }, { id: "a", from: "u_1", amount: 5n }, { id: "old", from: "u_3", amount: 9n }];
  const index: WalletIndex = { ...indexOf(s), received: (_u, from, id) => from === "u_3" && id === "old" };
  const d = decide(s, { type: "receive_transfers", transfers, reply: noop }, { now: ctx.now, index });
  if (isRefusal(d)) throw new Error(d.message);
  t.same(d.events.map((e) => e.t), ["opened", "transfer_received", "transfer_received"]);
  const after = d.events.reduce((x, e) => evolve(x, e), s);
  t.equal(after.available, 12n, "a and b, once each");
  t.same(d.answer(after), { repeated: [false, false, true, true] });
  // An id is the sender's own: another sender's "a" (in the batch) or "old" (in the index) is another transfer.
  const others = [{ id: "a", from: "u_1", amount: 5n }, { id: "a", from: "u_9", amount: 3n }, { id: "old", from: "u_9", amount: 2n }];
  const o = decide(s, { type: "receive_transfers", transfers: others, reply: noop }, { now: ctx.now, index });
  if (isRefusal(o)) throw new Error(o.message);
  t.same(o.answer(o.events.reduce((x, e) => evolve(x, e), s)), { repeated: [false, false, false] }, "the same id from two senders: two credits");
  t.match(decide(s, { type: "receive_transfer", id: "old", from: "u_9", amount: 2n, reply: noop }, { now: ctx.now, index }),
    { events: [{ t: "opened", at: ctx.now }, { t: "transfer_received", id: "old", from: "u_9", amount: "2", at: ctx.now }] }, "one by one too");
  t.match(decide(s, { type: "receive_transfers", transfers: [{ id: "z", from: "u_1", amount: 0n }], reply: noop }, { now: ctx.now }), { code: "bad_amount" }, "a zero credit refuses the whole command");
});

t.test("ids are ordinary keys of the wallet's maps, \"__proto__\" and \"constructor\" included; the maps are copied, never changed", async (t) => {
  let a = funded(1_000n);
  const before = a;
  for (const id of ["__proto__", "constructor", "toString"]) a = run(a, { type: "send_transfer", id, to: "u_b", amount: 10n, maxAmount: 100n }).s;
  t.same(Object.keys(a.outgoing).sort(), ["__proto__", "constructor", "toString"], "three transfers in the outbox");
  t.equal(a.available, 970n);
  t.equal(Object.getPrototypeOf(a.outgoing.__proto__!), Object.prototype, "the transfer is a plain record, not a prototype");
  t.same(Object.keys(before.outgoing), [], "the state before is untouched");
  const mid = a;
  a = run(a, { type: "transfer_acked", ids: ["__proto__"] }).s;
  t.same(Object.keys(a.outgoing).sort(), ["constructor", "toString"], "acknowledged: gone from this state");
  t.same(Object.keys(mid.outgoing).length, 3, "still in the one before");
  t.equal(({} as Record<string, unknown>).to, undefined, "nothing reached Object.prototype");
  const r = run(a, { type: "deposit", deposit: { txid: "bb".repeat(32), vout: 1, address: "bcrt1qx", amount: 5n, confirmations: 0 }, target: 1, maxPending: 1000 }).s;
  t.same(Object.keys(r.deposits), [`${"bb".repeat(32)}:1`], "deposits are keyed the same way (the funding one, confirmed, has left)");
});

t.test("finished deposits and withdrawals leave the state; a repeat is answered from the records, never applied", async (t) => {
  let s = opened();
  const dep = (i: number, confirmations: number) => ({ txid: i.toString(16).padStart(64, "0"), vout: 0, address: "bcrt1qx", amount: 1_000n, confirmations });
  for (let i = 0; i < 50; i++) s = run(s, { type: "deposit", deposit: dep(i, 0), target: 1, maxPending: 1000 }).s;
  t.equal(Object.keys(s.deposits).length, 50, "pending: in the state");
  for (let i = 0; i < 50; i++) s = run(s, { type: "deposit", deposit: dep(i, 1), target: 1, maxPending: 1000 }).s;
  t.same([Object.keys(s.deposits).length, s.available, s.pending], [0, 50_000n, 0n], "confirmed: credited, and gone from the state");
  const again = run(s, { type: "deposit", deposit: dep(7, 3), target: 1, maxPending: 1000 });
  t.same([again.answer, again.s], [{ status: "confirmed" }, s], "listed again: answered from its record, nothing applied");
  t.match(run(s, { type: "deposit", deposit: { ...dep(7, 3), amount: 5n }, target: 1, maxPending: 1000 }).answer, { code: "bad_input" }, "another amount for it is still refused");

  const req = { id: "w1", address: "bcrt1qdest", amount: 10_000n, fee: 100n, dustLimit: 546n, dailyLimit: 10n ** 9n };
  s = run(s, { type: "reserve_withdrawal", request: req }).s;
  s = run(s, { type: "withdrawal_settled", id: "w1", txid: "dd".repeat(32), fee: 60n }).s;
  t.same([Object.keys(s.withdrawals), s.available, s.reserved], [[], 39_940n, 0n], "settled: charged, refunded, and gone from the state");
  const repeat = run(s, { type: "reserve_withdrawal", request: req });
  t.match(repeat.answer, { repeated: true, withdrawal: { status: "sent", fee: 60n, txid: "dd".repeat(32) } }, "a repeated reservation is answered with the sent withdrawal");
  t.equal(repeat.s, s, "and changes nothing");
  t.same(run(s, { type: "withdrawal_settled", id: "w1", txid: "dd".repeat(32), fee: 60n }), { s, answer: { ok: true } }, "a repeated settlement too");
  t.match(run(s, { type: "withdrawal", id: "w1" }).answer, { withdrawal: { status: "sent" }, balance: { available: 39_940n } });
  t.same(run(s, { type: "withdrawal", id: "w9" }).answer, { balance: { available: 39_940n, pending: 0n, reserved: 0n } }, "an unknown id: no withdrawal");
  t.match(run(s, { type: "withdrawal_broadcast", id: "w9", txid: "ee".repeat(32) }).answer, { code: "not_found" });

  // A confirmed deposit reversed by a reorg deeper than the target: found in its record, the wallet freezes.
  const reversed = run(s, { type: "deposit_removed", outpoint: `${dep(7, 0).txid}:0` });
  t.same(reversed.answer, { status: "reversed" });
  t.ok(reversed.s.frozen, "frozen for review");
  t.equal(finished.get(reversed.s)?.get(`${dep(7, 0).txid}:0`)?.status, "reversed", "its record says so");
});

t.test("at most maxPending unconfirmed deposits in the state: a new one beyond waits for its confirmations; repeats and confirmations pass", async (t) => {
  const cap = 3, target = 2;
  const dep = (i: number, confirmations: number) => ({ txid: (0xd0 + i).toString(16).repeat(32), vout: i, address: "bcrt1qmany", amount: 1_000n * BigInt(i + 1), confirmations });
  const deposit = (s: WalletState, i: number, confirmations: number) => run(s, { type: "deposit", deposit: dep(i, confirmations), target, maxPending: cap });
  const held = (s: WalletState) => [Object.keys(s.deposits).length, pendingDeposits(s.deposits), s.pending, s.available];
  let s = opened();
  for (let i = 0; i < cap; i++) {
    const r = deposit(s, i, i % 2);
    t.same(r.answer, { status: "pending" }, `pending deposit ${i + 1} of ${cap} taken`);
    s = r.s;
  }
  t.same(held(s), [3, 3, 6_000n, 0n], "three pending, 1,000 + 2,000 + 3,000");

  const fourth = deposit(s, 3, 1);
  t.match(fourth.answer, { refused: true, code: "too_many_pending", message: /already holds 3 unconfirmed deposits/ }, "a fourth pending one is refused");
  t.equal(fourth.s, s, "and changes nothing");
  t.notOk(/d3d3|4000|4,000|bcrt1q/.test((fourth.answer as { message: string }).message), "its message names no txid, amount or address");
  t.match(decide(s, { type: "deposit", deposit: dep(3, 0), target, maxPending: cap, reply: noop }, ctx), { code: "too_many_pending" }, "also at 0 confirmations");

  const confirmed = deposit(s, 3, target);
  t.same(confirmed.answer, { status: "confirmed" }, "the same fourth, arriving confirmed, is taken");
  t.same(held(confirmed.s), [3, 3, 6_000n, 4_000n], "credited at once, never held in the state");
  t.equal(finished.get(confirmed.s)?.get(`${dep(3, 0).txid}:3`)?.status, "confirmed", "its record says confirmed");
  t.same(deposit(confirmed.s, 3, target + 1), { s: confirmed.s, answer: { status: "confirmed" } }, "and listed again, answered from its record");

  t.same(deposit(s, 1, 0), { s, answer: { status: "pending" } }, "a repeat of a held one is taken (nothing changes)");
  t.same(deposit(s, 1, 1), { s, answer: { status: "pending" } }, "so is one more confirmation below the target");
  const one = deposit(s, 1, target);
  t.same(one.answer, { status: "confirmed" }, "the confirmation of a held one is taken at the cap");
  s = one.s;
  t.same(held(s), [2, 2, 4_000n, 2_000n], "it left the state: two pending");

  const again = deposit(s, 3, 0);
  t.same(again.answer, { status: "pending" }, "with room again, a new pending one is taken");
  s = again.s;
  t.same(held(s), [3, 3, 8_000n, 2_000n]);
  t.match(deposit(s, 4, 1).answer, { code: "too_many_pending" }, "and the next one beyond is refused again");

  // A dropped deposit listed again (mined after all) would enter the state again: it counts as new.
  s = run(s, { type: "deposit_removed", outpoint: `${dep(0, 0).txid}:0` }).s;
  t.same(held(s), [2, 2, 7_000n, 2_000n], "one dropped: two pending");
  s = deposit(s, 4, 0).s;
  t.match(deposit(s, 0, 1).answer, { code: "too_many_pending" }, "the dropped one coming back pending is refused at the cap");
  t.same(deposit(s, 0, target).answer, { status: "confirmed" }, "and taken once it is confirmed");

  // The count follows every copy of the map, and is the same counted afresh (a state read back from a snapshot).
  const restored = restoreWallet({ ...s, deposits: { ...s.deposits } });
  t.equal(pendingDeposits(restored.deposits), 3, "a map without a known count is counted");
  t.equal(pendingDeposits(s.deposits), Object.keys(s.deposits).length, "the carried count is the map's");
});
