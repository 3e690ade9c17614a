// A deposit a deep reorg took back (reversed) is often mined again later: its transaction went back to the mempool.
// Once an operator booked it out (`adjust` with its outpoint), the node holds the coins again and the user was debited
// for them: when the watcher lists it again with its confirmations, what was booked is credited back, once, with a
// notice, an entry and an alert, and the running sums follow. One nothing was booked for only has its record confirmed
// again (and an alert): the user kept the credit. Either way the wallet stays frozen for an operator's review.
import t from "tap";
import { randomBytes } from "node:crypto";
import {
  adjustmentOf, changedBy, checkInvariants, decide, emptyWallet, evolve, historyEntryOf, isFinished, isRefusal, noticeOf, rebookedEntryOf, refOf,
  type Adjustment, type Deposit, type WalletCommand, type WalletIndex, type WalletState, type Withdrawal,
} from "../../src/actors/wallet.ts";
import { sumsDelta, WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";
import type { WalletNotice } from "../../src/actors/wallet.messages.ts";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { createLogger } from "../../src/log.ts";
import { history as historyText, notice as noticeText } from "../../src/edges/telegram/render.ts";

const NOW = Date.parse("2026-11-25T12:00:00Z");
const noop = () => undefined;
type Cmd = WalletCommand extends infer C ? (C extends WalletCommand ? Omit<C, "reply"> : never) : never;

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

/** A command as the actor applies it, writing what WalletRecords.forCommand writes (as in adjust-decide.test.ts). */
function run(s: WalletState, b: Book, cmd: Cmd) {
  const d = decide(s, { ...cmd, reply: noop } as WalletCommand, { now: NOW, index: index(b) });
  if (isRefusal(d)) return { s, answer: d as unknown, events: [] as string[], sums: undefined, entries: [] as unknown[], notices: [] as WalletNotice[] };
  let after = s;
  const entries = [], notices = [];
  for (const e of d.events) {
    const next = evolve(after, e);
    const found = e.t === "deposit_reversed" || e.t === "deposit_rebooked" || (e.t === "adjusted" && e.outpoint !== undefined) ? b.finished.get(e.outpoint!) as Deposit | undefined : undefined;
    const changed = changedBy(after, next, e, found);
    if (changed && isFinished(changed)) b.finished.set(refOf(e), changed);
    if (e.t === "adjusted") b.adjustments.set(e.id, adjustmentOf(e, next.historyTotal));
    for (const entry of [historyEntryOf(next, e, changed), rebookedEntryOf(next, e)]) if (entry) entries.push(entry);
    const n = noticeOf(after, e);
    if (n) notices.push(n);
    after = next;
  }
  const broken = checkInvariants(after);
  if (broken) throw new Error(broken);
  return { s: after, answer: d.answer(after), events: d.events.map((e) => e.t), sums: sumsDelta(s, after), entries, notices };
}

const TXID = "ab".repeat(32);
const OUTPOINT = `${TXID}:0`;
const listed = (confirmations: number): Cmd =>
  ({ type: "deposit", deposit: { txid: TXID, vout: 0, address: "bcrt1qa", amount: 100_000n, confirmations }, target: 3, maxPending: 10 });
const adjust = (id: string, amount: bigint): Cmd => ({ type: "adjust", id, amount, reason: "deep reorg took the deposit back", by: "alice", outpoint: OUTPOINT });

/** A wallet credited 100,000 sats by a confirmed deposit that a deep reorg then took back (frozen). */
function reversed() {
  const b: Book = { finished: new Map(), adjustments: new Map() };
  let s = run(emptyWallet("u_rb"), b, { type: "open" }).s;
  s = run(s, b, listed(3)).s;
  s = run(s, b, { type: "deposit_removed", outpoint: OUTPOINT }).s;
  return { s, b };
}

t.test("a reversed deposit booked out and mined again: what was booked comes back, once; a new reversal is booked from nothing", async (t) => {
  const { s: s0, b } = reversed();
  const booked = run(s0, b, adjust("reorg-1", -100_000n));
  t.equal(booked.s.available, 0n);
  const h = booked.s.historyTotal;

  const early = run(booked.s, b, listed(1));
  t.same([early.events, early.answer], [[], { status: "reversed" }], "in a block again, below the target: nothing yet");
  t.match(run(booked.s, b, listed(0)).answer, { status: "reversed" }, "back in the mempool: nothing");

  const back = run(booked.s, b, listed(3));
  t.same(back.events, ["deposit_rebooked"]);
  t.same(back.answer, { status: "confirmed" }, "answered confirmed: the watcher records it so");
  t.equal(back.s.available, 100_000n, "what was booked is credited back");
  t.same(back.sums, { available: 100_000n, pending: 0n, reserved: 0n, wallets: 0n, transit: 0n }, "and the running sums owe it again");
  t.ok(back.s.frozen, "the wallet stays frozen for review");
  t.same(back.notices, [{ kind: "deposit_rebooked", amount: 100_000n }], "the user is told");
  t.same(back.entries, [
    [1, { at: NOW, kind: "deposit", amount: 100_000n, ref: OUTPOINT, status: "confirmed" }],
    [h + 1, { at: NOW, kind: "deposit", amount: 100_000n, ref: OUTPOINT, status: "rebooked" }],
  ], "the deposit's entry is confirmed again, and the credit back has one of its own");
  const record = b.finished.get(OUTPOINT) as Deposit;
  t.equal(record.status, "confirmed", "its record is confirmed again");
  t.equal(record.adjusted, undefined, "and counts nothing booked");

  const again = run(back.s, b, listed(6));
  t.same([again.events, again.answer, again.sums], [[], { status: "confirmed" }, undefined], "listed again: nothing, however often");
  t.match(run(back.s, b, adjust("reorg-2", -1n)).answer, { refused: true, code: "not_allowed" }, "a confirmed deposit is not booked out");
  t.match(run(back.s, b, adjust("reorg-1", -100_000n)).answer, { repeated: true }, "the first adjustment's repeat moves nothing");

  // A second deep reorg takes it back again: the user holds the full credit, so it can be booked in full again.
  const gone = run(back.s, b, { type: "deposit_removed", outpoint: OUTPOINT });
  t.same(gone.events, ["deposit_reversed"]);
  const rebooked = run(gone.s, b, adjust("reorg-2", -100_000n));
  t.equal(rebooked.s.available, 0n, "booked out in full again");
  t.equal((b.finished.get(OUTPOINT) as Deposit).adjusted, 100_000n);
});

t.test("part of it booked (the user had spent the rest): that part comes back", async (t) => {
  const { s: s0, b } = reversed();
  let s = run(s0, b, { type: "unfreeze", by: "x" }).s;
  s = run(s, b, { type: "send_transfer", id: "t1", to: "u_other", amount: 60_000n, maxAmount: 10n ** 9n }).s;
  s = run(s, b, adjust("reorg-1", -40_000n)).s;
  t.equal(s.available, 0n);
  const back = run(s, b, listed(4));
  t.same(back.events, ["deposit_rebooked"]);
  t.equal(back.s.available, 40_000n, "the deposit, less what the user sent: as if it had never left");
  t.same(back.notices, [{ kind: "deposit_rebooked", amount: 40_000n }]);
  t.notOk(back.s.frozen, "an unfrozen wallet is not frozen by it");
});

t.test("nothing booked for it: its record is confirmed again, nothing credited or told, the wallet stays frozen", async (t) => {
  const { s, b } = reversed();
  const back = run(s, b, listed(3));
  t.same(back.events, ["deposit_rebooked"], "one event: the record confirmed again");
  t.equal(back.s.available, 100_000n, "the user kept the credit: nothing more");
  t.equal(back.sums, undefined, "the sums do not move");
  t.equal(back.s.historyTotal, s.historyTotal, "no entry of its own");
  t.same(back.entries, [[1, { at: NOW, kind: "deposit", amount: 100_000n, ref: OUTPOINT, status: "confirmed" }]], "the deposit's entry says confirmed");
  t.same(back.notices, [], "the user was never told of the reversal, and is not told now");
  t.ok(back.s.frozen, "still frozen for review");
  t.equal((b.finished.get(OUTPOINT) as Deposit).status, "confirmed");
  t.match(run(back.s, b, adjust("late", -100_000n)).answer, { refused: true, code: "not_allowed" }, "coins the node holds again are not booked out");
  t.same(run(back.s, b, listed(9)).events, [], "once");
});

/** Wallets on a real store; log lines captured; `crash` stops everything without passivating anything. */
async function onDisk(t: { teardown(f: () => unknown): void }, dir: string, keyring: KeyRing) {
  const store = await EncryptedStore.open({ path: dir, keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const notices: Array<[string, WalletNotice]> = [];
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: "warn", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } });
  const registry = new WalletRegistry({
    system, log, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000, crashBudget: 3, crashWindowMs: 60_000,
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
  return { store, registry, notices, lines, crash, state };
}

/** A log line's own fields: those every line has (the logger's base, the time, the message) left out. */
const fields = (l: Record<string, unknown>) => Object.keys(l).filter((k) => !["level", "time", "pid", "hostname", "app", "msg"].includes(k)).sort();

const TX2 = "5e".repeat(32);
const OP2 = `${TX2}:1`;
const listed2 = (confirmations: number) => ({ deposit: { txid: TX2, vout: 1, address: "bcrt1qbob", amount: 100_000n, confirmations }, target: 3, maxPending: 10 });

t.test("on a real store: booked out, crash, mined again: credited back once across crashes; log lines carry the user key alone", async (t) => {
  const dir = t.testdir();
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const first = await onDisk(t, dir, keyring);
  const r = first.registry;
  await r.send("u_bob", "open", {});
  await r.send("u_bob", "receive_transfer", { id: "seed", from: "u_bank", amount: 7_000n });
  t.match(await r.send("u_bob", "deposit", listed2(3)), { status: "confirmed" });
  t.match(await r.send("u_bob", "deposit_removed", { outpoint: OP2 }), { status: "reversed" });
  t.match(await r.send("u_bob", "adjust", { id: "reorg-5e", amount: -100_000n, reason: "deposit reversed by a deep reorg", by: "alice", outpoint: OP2 }), { repeated: false, balance: { available: 7_000n } });
  const adjusted = first.lines.filter((l) => l.msg === "wallet's books adjusted by an operator");
  t.equal(adjusted.length, 1);
  t.same(fields(adjusted[0]!), ["by", "id", "userKey"], "the adjustment's line: user key, id and who, no amount or outpoint");
  t.match(await r.send("u_bob", "deposit", listed2(0)), { status: "reversed" }, "back in the mempool: nothing yet");
  await first.crash();

  const second = await onDisk(t, dir, keyring);
  t.same(walletSums(second.store.sums).available, 7_000n, "booked out, as the crash left it");
  t.match(await second.registry.send("u_bob", "deposit", listed2(3)), { status: "confirmed" }, "mined again, at the target");
  t.equal((await second.state("u_bob")).available, 107_000n, "what was booked is back");
  t.ok((await second.state("u_bob")).frozen, "frozen for review still");
  t.same(walletSums(second.store.sums), { available: 107_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the running sums follow");
  t.same(second.notices, [["u_bob", { kind: "deposit_rebooked", amount: 100_000n }]], "the user is told once");
  t.equal(noticeText(second.notices[0]![1]), "✅ A deposit that support took back when it left the chain is confirmed again: 0.001 BTC (100,000 sats) is back in your balance");
  const record = second.registry.records.deposit("u_bob", OP2);
  t.same([record?.status, record?.adjusted], ["confirmed", undefined], "its record is confirmed again, nothing booked");
  const alerts = second.lines.filter((l) => l.alert === true);
  t.equal(alerts.length, 1, "operators are alerted once");
  t.same(fields(alerts[0]!), ["alert", "userKey"], "the user key alone");
  t.match(alerts[0]!.msg, /booked out by an operator, is confirmed again.*stays frozen/);
  const page = await second.registry.history("u_bob", 0, 10);
  if (isRefusal(page)) throw new Error(page.message);
  t.match(page.entries[0], { kind: "deposit", amount: 100_000n, ref: OP2, status: "rebooked" });
  t.match(historyText(page), /\+0\.001 BTC \(100,000 sats\)\s+deposit confirmed again: given back/);
  t.match(historyText(page), /−0\.001 BTC \(100,000 sats\)\s+adjusted by support/);
  t.match(historyText(page), /\+0\.001 BTC \(100,000 sats\)\s+deposit \(confirmed\)/);
  await second.crash();

  // Every later scan lists it again: nothing more, whatever the restarts.
  const third = await onDisk(t, dir, keyring);
  t.match(await third.registry.send("u_bob", "deposit", listed2(5)), { status: "confirmed" });
  t.equal((await third.state("u_bob")).available, 107_000n, "credited back once");
  t.same(walletSums(third.store.sums).available, 107_000n);
  t.same([third.notices, third.lines.filter((l) => l.alert === true)], [[], []], "nobody told or alerted again");
});

t.test("on a real store: a reversed deposit nothing was booked for, mined again: one alert, nothing credited", async (t) => {
  const dir = t.testdir();
  const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);
  const d = await onDisk(t, dir, keyring);
  await d.registry.send("u_cy", "open", {});
  t.match(await d.registry.send("u_cy", "deposit", listed2(3)), { status: "confirmed" });
  t.match(await d.registry.send("u_cy", "deposit_removed", { outpoint: OP2 }), { status: "reversed" });
  d.lines.length = 0;
  t.match(await d.registry.send("u_cy", "deposit", listed2(3)), { status: "confirmed" });
  t.match(await d.registry.send("u_cy", "deposit", listed2(4)), { status: "confirmed" });
  t.equal((await d.state("u_cy")).available, 100_000n, "the user kept the credit: nothing more");
  t.ok((await d.state("u_cy")).frozen, "frozen for review still");
  t.same(walletSums(d.store.sums).available, 100_000n);
  t.same(d.notices.filter(([, n]) => n.kind === "deposit_rebooked"), [], "no notice");
  const alerts = d.lines.filter((l) => l.alert === true);
  t.equal(alerts.length, 1, "one alert");
  t.match(alerts[0], { userKey: "u_cy", msg: /nothing was booked out naming it.*stays frozen/ });
  t.match(await d.registry.send("u_cy", "adjust", { id: "late", amount: -100_000n, reason: "reorg", by: "alice", outpoint: OP2 }), { refused: true, code: "not_allowed" }, "not booked out once the node holds it again");
});
