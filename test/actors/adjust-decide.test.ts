// An operator's adjustment (`adjust`), on the pure decide/evolve: once per id (a repeat answers `repeated`, a reuse of
// the id for another amount is refused), a debit never beyond available, a reversed deposit booked at most once, frozen
// wallets take it and stay frozen, and the store's running sums (sumsDelta) follow available.
import t from "tap";
import {
  adjustmentOf, changedBy, checkInvariants, decide, emptyWallet, evolve, historyEntryOf, isFinished, isRefusal, noticeOf, refOf,
  type Adjustment, type Deposit, type WalletCommand, type WalletIndex, type WalletState, type Withdrawal,
} from "../../src/actors/wallet.ts";
import { sumsDelta } from "../../src/actors/wallet.records.ts";

const NOW = Date.parse("2026-11-24T12:00:00Z");
const noop = () => undefined;
type Cmd = WalletCommand extends infer C ? (C extends WalletCommand ? Omit<C, "reply"> : never) : never;

/** What the wallet's records hold (wallet.records.ts keeps them in the store): finished deposits and withdrawals, adjustments. */
interface Book {
  finished: Map<string, Deposit | Withdrawal>;
  adjustments: Map<string, Adjustment>;
}

const index = (b: Book): WalletIndex => ({
  sent: () => false, received: () => false,
  deposit: (_u, outpoint) => b.finished.get(outpoint) as Deposit | undefined,
  withdrawal: (_u, id) => b.finished.get(id) as Withdrawal | undefined,
  adjustment: (_u, id) => b.adjustments.get(id),
});

/** Applies a command as the actor does, writing what WalletRecords.forCommand writes; the answer, the events, the sums' change. */
function run(s: WalletState, b: Book, cmd: Cmd) {
  const d = decide(s, { ...cmd, reply: noop } as WalletCommand, { now: NOW, index: index(b) });
  if (isRefusal(d)) return { s, answer: d as unknown, events: [], sums: undefined, entries: [], notices: [] };
  let after = s;
  const entries = [], notices = [];
  for (const e of d.events) {
    const next = evolve(after, e);
    const found = e.t === "deposit_reversed" || (e.t === "adjusted" && e.outpoint !== undefined) ? b.finished.get(e.outpoint!) as Deposit | undefined : undefined;
    const changed = changedBy(after, next, e, found);
    if (changed && isFinished(changed)) b.finished.set(refOf(e), changed);
    if (e.t === "adjusted") b.adjustments.set(e.id, adjustmentOf(e, next.historyTotal));
    const entry = historyEntryOf(next, e, changed);
    if (entry) entries.push(entry);
    const n = noticeOf(after, e);
    if (n) notices.push(n);
    after = next;
  }
  const broken = checkInvariants(after);
  if (broken) throw new Error(broken);
  return { s: after, answer: d.answer(after), events: d.events, sums: sumsDelta(s, after), entries, notices };
}

const TXID = "ab".repeat(32);
const OUTPOINT = `${TXID}:0`;

/** An opened wallet holding `sats` from a confirmed deposit that a deep reorg then took back (frozen, still available). */
function reversed(sats: bigint): { s: WalletState; b: Book } {
  const b: Book = { finished: new Map(), adjustments: new Map() };
  let s = run(emptyWallet("u_adj"), b, { type: "open" }).s;
  s = run(s, b, { type: "deposit", deposit: { txid: TXID, vout: 0, address: "bcrt1qa", amount: sats, confirmations: 1 }, target: 1, maxPending: 10 }).s;
  s = run(s, b, { type: "deposit_removed", outpoint: OUTPOINT }).s;
  return { s, b };
}

const adjust = (id: string, amount: bigint, extra: Partial<Extract<Cmd, { type: "adjust" }>> = {}): Cmd =>
  ({ type: "adjust", id, amount, reason: "deep reorg took the deposit back", by: "alice", ...extra });

t.test("a reversed deposit booked back: available and the sums fall by it, once; the wallet stays frozen", async (t) => {
  const { s, b } = reversed(100_000n);
  t.ok(s.frozen, "the reorg froze it");
  t.equal(s.available, 100_000n, "the vanished coins are still available before the adjustment");

  const r = run(s, b, adjust("fix-1", -100_000n, { outpoint: OUTPOINT }));
  t.match(r.answer, { repeated: false, adjustment: { amount: -100_000n, by: "alice", outpoint: OUTPOINT, h: s.historyTotal + 1 }, balance: { available: 0n } });
  t.equal(r.s.available, 0n);
  t.ok(r.s.frozen, "a frozen wallet takes it, and stays frozen");
  t.same(r.sums, { available: -100_000n, pending: 0n, reserved: 0n, wallets: 0n, transit: 0n }, "the running sums lose the vanished coins");
  t.same(r.entries, [[s.historyTotal + 1, { at: NOW, kind: "adjustment", amount: -100_000n, ref: "fix-1", status: "adjusted" }]], "an entry of its own, without the reason");
  t.same(r.notices, [{ kind: "adjusted", amount: -100_000n }], "the user is told the amount");
  t.equal((b.finished.get(OUTPOINT) as Deposit).adjusted, 100_000n, "the deposit's record counts what was booked against it");

  const again = run(r.s, b, adjust("fix-1", -100_000n, { outpoint: OUTPOINT, reason: "typed again" }));
  t.match(again.answer, { repeated: true, adjustment: { amount: -100_000n, reason: "deep reorg took the deposit back" } }, "a repeat answers from the record");
  t.same(again.events, [], "nothing journalled");
  t.equal(again.sums, undefined, "the sums do not move");

  t.match(run(r.s, b, adjust("fix-1", -50_000n, { outpoint: OUTPOINT })).answer, { refused: true, code: "duplicate", message: /already booked/ }, "the id reused for another amount");
  t.match(run(r.s, b, adjust("fix-2", -1n, { outpoint: OUTPOINT })).answer, { refused: true, code: "over_limit" }, "the same deposit is not booked twice under a new id");
});

t.test("a debit beyond available is refused, naming what is available; what can be booked is booked", async (t) => {
  const { s: s0, b } = reversed(100_000n);
  // The user spent part of it before the reorg was seen (a transfer out).
  const s = run(s0, b, { type: "unfreeze", by: "x" }).s;
  const spent = run(s, b, { type: "send_transfer", id: "t1", to: "u_other", amount: 60_000n, maxAmount: 10n ** 9n }).s;
  t.equal(spent.available, 40_000n);
  const over = run(spent, b, adjust("fix-1", -100_000n, { outpoint: OUTPOINT }));
  t.match(over.answer, { refused: true, code: "insufficient_funds", message: /Available is 0\.0004 BTC \(40,000 sats\)/ });
  t.same(over.events, []);
  t.equal(b.adjustments.size, 0, "nothing recorded: the id is still free");
  const booked = run(spent, b, adjust("fix-1", -40_000n, { outpoint: OUTPOINT }));
  t.equal(booked.s.available, 0n, "available booked, never negative");
  t.same(booked.sums?.available, -40_000n);
  t.equal((b.finished.get(OUTPOINT) as Deposit).adjusted, 40_000n, "60,000 left to book (the house's loss, or a later debit)");
  t.match(run(booked.s, b, adjust("fix-2", -1n)).answer, { refused: true, code: "insufficient_funds" }, "not below zero without an outpoint either");
});

t.test("credits and debits without a deposit (a payout the restored books lost); bad input changes nothing", async (t) => {
  const b: Book = { finished: new Map(), adjustments: new Map() };
  let s = run(emptyWallet("u_adj"), b, { type: "open" }).s;
  const credit = run(s, b, adjust("c-1", 25_000n, { reason: "goodwill" }));
  t.same([credit.s.available, credit.sums?.available], [25_000n, 25_000n]);
  s = credit.s;
  const debit = run(s, b, adjust("lost-payout", -20_000n, { reason: "paid after the backup: txid ..." }));
  t.same([debit.s.available, debit.sums?.available], [5_000n, -20_000n]);
  t.same(debit.notices, [{ kind: "adjusted", amount: -20_000n }]);
  s = debit.s;
  for (const [what, bad, code] of [
    ["zero", adjust("z", 0n), "bad_amount"],
    ["no id", adjust("", -1n), "bad_input"],
    ["an id with a space", adjust("has space", -1n), "bad_input"],
    ["a blank reason", adjust("r", -1n, { reason: "  " }), "bad_input"],
    ["a reason of 201 characters", adjust("r", -1n, { reason: "x".repeat(201) }), "bad_input"],
    ["a reason of two lines", adjust("r", -1n, { reason: "two\nlines" }), "bad_input"],
    ["more than the money supply", adjust("r", -(21_000_000n * 100_000_000n + 1n)), "bad_amount"],
    ["an outpoint that is not one", adjust("r", -1n, { outpoint: "nope" }), "bad_input"],
    ["a deposit of no wallet's", adjust("r", -1n, { outpoint: `${"cd".repeat(32)}:0` }), "not_found"],
  ] as const) {
    const r = run(s, b, bad);
    t.match(r.answer, { refused: true, code }, `${what}: ${code}`);
    t.equal(r.s, s, "unchanged");
  }
  const { s: rs, b: rb } = reversed(1_000n);
  t.match(run(rs, rb, adjust("r", 1_000n, { outpoint: OUTPOINT })).answer, { refused: true, code: "bad_amount" }, "a reversed deposit is booked by a debit");
  const confirmed = reversed(1_000n);
  confirmed.b.finished.set(OUTPOINT, { ...(confirmed.b.finished.get(OUTPOINT) as Deposit), status: "confirmed" });
  t.match(run(confirmed.s, confirmed.b, adjust("r", -1_000n, { outpoint: OUTPOINT })).answer, { refused: true, code: "not_allowed" }, "only a reversed deposit");
  t.match(decide(s, { ...adjust("r", -1n), reply: noop } as WalletCommand, { now: NOW }), { refused: true, code: "internal" }, "without the records (a repeat could not be told): refused");
  t.match(run(emptyWallet("u_new"), b, adjust("r", 1n)).answer, { refused: true, code: "not_found" }, "no wallet");
});
