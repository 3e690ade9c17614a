// The payout book's state (PayoutBook): finished payouts (confirmed or released, settled in their wallets) and
// finished batches (confirmed or released) kept apart from the live ones, sharded, so an event's cost does not grow
// with the finished payouts the book keeps — and built from the same events into the same book as the flat maps it
// replaced: every payout and batch, the live ones in the flat book's order, a snapshot of the version before, and a
// snapshot of this version read as the version before wrote it. The flat version's evolve is kept in bench/lib.
import t from "tap";
import { decode, encode, encodeText } from "../../src/store/codec.ts";
import { idMap } from "../../src/actors/idmap.ts";
import { emptyFlat, flatEvolve, type FlatPayouts } from "../../bench/lib/flat-payouts.ts";
import {
  batchOf, emptyPayouts, evolvePayouts, livePayouts, PayoutBook, payoutBehaviour, payoutBookWork, payoutOf,
  type Batch, type Payout, type PayoutCommand, type PayoutEvent, type PayoutOptions, type PayoutState, type PayoutSummary,
} from "../../src/actors/payout.ts";
import { assessSolvency } from "../../src/actors/solvency.ts";
import type { Refusal } from "../../src/domain/refusals.ts";

const finishedPayout = (p: Payout) => (p.status === "confirmed" || p.status === "released") && p.walletSettled === true;
const finishedBatch = (b: Batch) => b.status === "confirmed" || b.status === "released";

/**
 * A deterministic journal, as the payout actor writes one: payouts queued (ids that are Object.prototype's members
 * too), batches signed, sent, stuck, bumped, confirmed (some by a transaction a bump replaced), cancelled and
 * released, payouts given back, wallets settled, the oldest finished pruned beyond `retain`.
 */
function journal(count: number, seed = 7, retain = 25): PayoutEvent[] {
  let r = seed;
  const rand = (n: number) => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0), (r >>> 8) % n);
  const events: PayoutEvent[] = [];
  let m = emptyFlat();
  let at = 0, made = 0, tx = 0;
  const add = (e: PayoutEvent) => (events.push(e), (m = flatEvolve(m, e)));
  const special = ["toString", "__proto__", "constructor", "123", "hasOwnProperty"];
  const withStatus = (...s: string[]) => Object.keys(m.batches).filter((b) => s.includes(m.batches[b]!.status));
  const pick = <T>(xs: T[]) => xs[rand(xs.length)]!;
  while (events.length < count) {
    at += 1 + rand(3);
    const k = rand(100);
    const queued = Object.keys(m.payouts).filter((id) => m.payouts[id]!.status === "queued");
    if (k < 30 || Object.keys(m.payouts).length === 0) {
      const id = made < special.length && rand(3) === 0 ? special[made++]! : `wd_${(made++ * 2654435761 >>> 0).toString(16)}_${made}`;
      if (m.payouts[id]) continue;
      add({ t: "queued", id, userKey: `u_${rand(30)}`, address: `bcrt1q${rand(50)}`, amount: String(1000 + rand(100_000)), quotedFee: String(100 + rand(500)), at: rand(5) ? at : at - 50 });
    } else if (k < 48 && queued.length > 0) {
      const ids = queued.slice(0, 1 + rand(Math.min(4, queued.length)));
      const fee = BigInt(10 + rand(2000));
      add({ t: "signed", batch: `b${m.seq + 1}`, ids, hex: `hex${tx}`, txid: `tx${tx++}`, fee: fee.toString(), shares: ids.map(() => String(fee / BigInt(ids.length))), at, ...(rand(4) ? { inputs: [`c${tx}:0`] } : {}), ...(rand(15) ? {} : { adopted: true as const }) });
    } else if (k < 58 && withStatus("signed").length > 0) {
      add({ t: "broadcast", batch: pick(withStatus("signed")), at });
    } else if (k < 70 && withStatus("broadcast", "stuck", "cancelling").length > 0) {
      const batch = pick(withStatus("broadcast", "stuck", "cancelling"));
      const b = m.batches[batch]!;
      if (b.replaced.length > 0 && rand(2)) {
        const fee = 5n + BigInt(rand(100));
        add({ t: "confirmed", batch, at, txid: pick(b.replaced), fee: fee.toString(), shares: b.ids.map(() => String(fee / BigInt(b.ids.length))) });
      } else add({ t: "confirmed", batch, at });
    } else if (k < 74 && withStatus("signed", "broadcast").length > 0) {
      add({ t: "stuck", batch: pick(withStatus("signed", "broadcast")), reason: `reason ${rand(9)}`, at });
    } else if (k < 77 && withStatus("stuck").length > 0) {
      const batch = pick(withStatus("stuck"));
      const ids = m.batches[batch]!.ids;
      add({ t: "replaced", batch, hex: `hex${tx}`, txid: `tx${tx++}`, fee: String(3000 + rand(99)), shares: ids.map(() => "100"), at, ...(rand(3) ? { inputs: [`c${tx}:0`, `c${tx}:1`] } : {}) });
    } else if (k < 80 && withStatus("stuck", "cancelling").length > 0) {
      const batch = pick(withStatus("stuck", "cancelling"));
      add(rand(2)
        ? { t: "cancelling", batch, reason: "operator", input: `c${tx}:0`, hex: `cancel${tx}`, txid: `tx${tx++}`, fee: "700", at }
        : { t: "cancelling", batch, reason: "spent", input: `c${tx}:0`, spentAt: 100 + rand(9), spentIn: `h${rand(9)}`, at });
    } else if (k < 83 && withStatus("cancelling").length > 0) {
      const batch = pick(withStatus("cancelling"));
      add({ t: "released", batch, at, ...(m.batches[batch]!.cancel?.txid ? { txid: m.batches[batch]!.cancel!.txid } : {}) });
    } else if (k < 85 && queued.length > 0) {
      add({ t: "unqueued", id: pick(queued), at });
    } else if (k < 95) {
      const open = Object.keys(m.payouts).filter((id) => (m.payouts[id]!.status === "confirmed" || m.payouts[id]!.status === "released") && !m.payouts[id]!.walletSettled);
      if (open.length > 0) add({ t: "wallet_settled", ids: open.slice(0, 1 + rand(open.length)), at });
    } else {
      // The actor's prune: the oldest finished confirmed beyond `retain`, with the confirmed batches left with none.
      const finished = Object.entries(m.payouts).filter(([, p]) => p.status === "confirmed" && p.walletSettled).sort((a, b) => a[1].at - b[1].at);
      const excess = finished.slice(0, Math.max(0, finished.length - retain));
      if (excess.length === 0) continue;
      const leaving = new Set(excess.map(([id]) => id));
      const batches = [...new Set(excess.map(([, p]) => p.batch!))].filter((b) => m.batches[b]!.status === "confirmed" && m.batches[b]!.ids.every((id) => leaving.has(id) || !m.payouts[id]));
      add({ t: "pruned", ids: [...leaving], batches, at });
    }
  }
  return events;
}

/** A value's canonical text: object fields sorted (a snapshot's JSON drops undefined ones, a later spread adds them last). */
function stable(x: unknown): unknown {
  if (typeof x === "bigint") return `${x}n`;
  if (Array.isArray(x)) return x.map(stable);
  if (x === null || typeof x !== "object") return x;
  const o = x as Record<string, unknown>;
  return Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => [k, stable(o[k])]);
}

/** A book's contents in one canonical text: every payout and batch by id (sorted), and seq. */
function canon(s: { payouts: Record<string, Payout>; batches: Record<string, Batch>; seq: number }): string {
  // The book keeps no signed bytes of a finished batch (never sent again): the flat book's are left out to compare.
  const batches = Object.fromEntries(Object.entries(s.batches).map(([id, b]) => [id, finishedBatch(b) ? { ...b, hex: "", ...(b.cancel?.hex ? { cancel: { ...b.cancel, hex: "" } } : {}) } : b]));
  return JSON.stringify(stable({ payouts: s.payouts, batches, seq: s.seq }));
}

/** What a reader sees of the book, read from its parts (not from the flat views), beside the flat book's. */
function seen(b: PayoutBook) {
  const payouts = idMap<Payout>(), batches = idMap<Batch>();
  for (const [id, p] of b.finishedPayouts()) payouts[id] = p;
  for (const [id, x] of b.finishedBatches()) batches[id] = x;
  for (const id in b.live) payouts[id] = b.live[id]!;
  for (const id in b.liveBatches) batches[id] = b.liveBatches[id]!;
  return { all: canon({ payouts, batches, seq: b.seq }), live: Object.keys(b.live), liveBatches: Object.keys(b.liveBatches), counts: b.finishedCount };
}

function seenFlat(m: FlatPayouts) {
  const done = Object.values(m.payouts).filter(finishedPayout);
  return {
    all: canon(m),
    live: Object.keys(m.payouts).filter((id) => !finishedPayout(m.payouts[id]!)),
    liveBatches: Object.keys(m.batches).filter((id) => !finishedBatch(m.batches[id]!)),
    counts: { payouts: done.length, confirmed: done.filter((p) => p.status === "confirmed").length, batches: Object.values(m.batches).filter(finishedBatch).length },
  };
}

const roundTrip = <T>(x: unknown): T => decode<T>(encode(x));
const restore = payoutBehaviour({} as PayoutOptions).restore!;

t.test("replayed event by event, the book is the flat book: every payout and batch, the live ones in its order", async (t) => {
  const events = journal(4000);
  let m = emptyFlat();
  let b = emptyPayouts() as PayoutBook;
  let mismatches = 0, views = 0, impure = 0;
  const kinds = new Set<string>();
  for (const [i, e] of events.entries()) {
    m = flatEvolve(m, e);
    const before = b, was = i % 97 === 0 ? seen(before) : undefined;
    b = evolvePayouts(b, e) as PayoutBook;
    kinds.add(e.t);
    if (JSON.stringify(seen(b)) !== JSON.stringify(seenFlat(m))) {
      if (mismatches++ === 0) t.same(seen(b), seenFlat(m), `after event ${i} (${e.t})`);
    }
    // The flat views, as the "state" answer's readers see them.
    if (i % 53 === 0 && canon(b) !== canon(m)) views++;
    // Pure: the previous book (a snapshot may still be encoding it, a handler may still read it) is as it was.
    if (was && JSON.stringify(seen(before)) !== JSON.stringify(was)) impure++;
  }
  t.equal(mismatches, 0, "after every event: the same payouts and batches, the live ones in the flat book's order, the same counts");
  t.equal(views, 0, "the flat views are the flat book");
  t.equal(impure, 0, "no event wrote to the book it was applied to");
  t.same([...kinds].sort(), ["broadcast", "cancelling", "confirmed", "pruned", "queued", "released", "replaced", "signed", "stuck", "unqueued", "wallet_settled"], "every kind of event");
  const fin = b.finishedCount;
  t.ok(fin.payouts > 20 && Object.keys(b.live).length > 5, `${fin.payouts} finished payouts (${fin.confirmed} confirmed), ${Object.keys(b.live).length} live at the end`);
  for (const id of ["toString", "__proto__", "constructor", "123", "hasOwnProperty", "valueOf", "nope"]) {
    t.equal(payoutOf(b, id), Object.hasOwn(m.payouts, id) ? m.payouts[id] : undefined, `payoutOf(${id})`);
  }
  for (const id of Object.keys(m.payouts)) if (payoutOf(b, id) !== b.payout(id) || b.payout(id) === undefined) t.fail(`payout ${id}`);
  for (const id of Object.keys(m.batches)) if (batchOf(b, id) === undefined) t.fail(`batch ${id}`);
  // Prune's pick: the k oldest finished confirmed ones, as a sort of all of them gives (few, one pass; many, a sort).
  const confirmed = Object.entries(m.payouts).filter(([, p]) => p.status === "confirmed" && p.walletSettled).sort((x, y) => x[1].at - y[1].at || (x[0] < y[0] ? -1 : 1));
  for (const k of [0, 1, 3, 64, 65, confirmed.length, confirmed.length + 5]) t.same(b.oldestConfirmed(k).map(([id]) => id), confirmed.slice(0, k).map(([id]) => id), `the ${k} oldest`);
  const finished = b.finishedBatches();
  t.ok(finished.length > 0 && finished.every(([, x]) => x.hex === "" && !x.cancel?.hex), "no finished batch keeps its signed bytes");
  t.ok(Object.values(b.liveBatches).every((x) => x.hex !== ""), "the live ones do");
  t.ok(encodeText(b).length < encodeText(m).length - finished.length * 4, "a snapshot is smaller by them");
  t.equal(Object.getPrototypeOf(b.payouts), null, "the flat view is a dictionary without a prototype");
  t.equal(b.payouts, b.payouts, "built once per book");
});

t.test("a snapshot of the version before restores to the book a replay builds; this version writes the same shape", async (t) => {
  for (const seed of [3, 11, 29]) {
    const events = journal(3000, seed);
    for (const cut of [700, 1900]) {
      let m = emptyFlat();
      for (const e of events.slice(0, cut)) m = flatEvolve(m, e);
      const replayed = events.slice(0, cut).reduce(evolvePayouts, emptyPayouts()) as PayoutBook;
      // What the flat version's snapshot stored: its state, through the codec.
      const old = restore(roundTrip(m)) as PayoutBook;
      t.ok(old instanceof PayoutBook);
      t.same(seen(old), seen(replayed), `seed ${seed}, cut ${cut}: an old snapshot gives the replayed book (live ones in order)`);
      // This version's snapshot: the flat book's shape (every payout and batch), so the version before reads it too.
      const bytes = encodeText(replayed);
      const data = JSON.parse(bytes) as Record<string, unknown>;
      t.same(Object.keys(data), ["payouts", "batches", "seq"], "the flat book's fields, nothing more");
      t.equal(canon(decode<FlatPayouts>(Buffer.from(bytes))), canon(m), "holding the flat book");
      const back = restore(roundTrip(replayed)) as PayoutBook;
      t.same(seen(back), seen(replayed), "and restores to the same book");
      // The journal after the snapshot, on the restored books: the book a full replay gives.
      let a: PayoutState = old, c: PayoutState = back;
      for (const e of events.slice(cut)) (a = evolvePayouts(a, e)), (c = evolvePayouts(c, e)), (m = flatEvolve(m, e));
      const full = events.reduce(evolvePayouts, emptyPayouts()) as PayoutBook;
      t.same(seen(a as PayoutBook), seen(full), "old snapshot + the rest of the journal = a full replay");
      t.same(seen(c as PayoutBook), seen(full), "new snapshot + the rest of the journal = a full replay");
      t.same(seen(full), seenFlat(m), "= the flat book");
    }
  }
  // Snapshots from before any field was optional (JSON dropped the undefined ones), and an empty one.
  const bare = restore(roundTrip({ payouts: { w1: { userKey: "u", address: "a", amount: 5n, quotedFee: 1n, status: "confirmed", batch: "b1", walletSettled: true, at: 3 } }, batches: {}, seq: 1 })) as PayoutBook;
  t.same([bare.finishedCount, Object.keys(bare.payout("w1")!)], [{ payouts: 1, confirmed: 1, batches: 0 }, ["userKey", "address", "amount", "quotedFee", "status", "batch", "fee", "walletSettled", "at"]], "every field again, in one order");
  t.same(seen(restore(roundTrip(emptyPayouts())) as PayoutBook), seen(emptyPayouts() as PayoutBook));
});

/** A book with `n` finished payouts (one batch each, confirmed and settled) and a few live ones. */
function bigBook(n: number): PayoutBook {
  const flat = emptyFlat();
  for (let i = 0; i < n; i++) {
    flat.payouts[`old${i}`] = { userKey: `u_${i % 500}`, address: `bcrt1q${i}`, amount: 1000n, quotedFee: 300n, status: "confirmed", batch: `b${i + 1}`, fee: 200n, walletSettled: true, at: i };
    flat.batches[`b${i + 1}`] = { ids: [`old${i}`], hex: "00", txid: `t${i}`, fee: 200n, quoted: 300n, status: "confirmed", replaced: [], at: i, reason: undefined, inputs: { [`t${i}`]: [`c${i}:0`] } };
  }
  flat.seq = n;
  return PayoutBook.fromFlat(flat);
}

t.test("a payout's events copy nothing of the finished part: the very same objects, whatever its size", async (t) => {
  for (const n of [1_000, 10_000]) {
    let b = bigBook(n);
    const [done, doneBatches] = b.finishedParts;
    const copied = payoutBookWork.copied;
    const steps: PayoutEvent[] = [
      { t: "queued", id: "w1", userKey: "u_a", address: "bcrt1qa", amount: "5000", quotedFee: "300", at: n + 1 },
      { t: "queued", id: "w2", userKey: "u_b", address: "bcrt1qb", amount: "6000", quotedFee: "300", at: n + 2 },
      { t: "signed", batch: `b${n + 1}`, ids: ["w1", "w2"], hex: "01", txid: "tnew", fee: "400", shares: ["200", "200"], at: n + 3 },
      { t: "broadcast", batch: `b${n + 1}`, at: n + 4 },
      { t: "stuck", batch: `b${n + 1}`, reason: "dropped", at: n + 5 },
      { t: "replaced", batch: `b${n + 1}`, hex: "02", txid: "tnew2", fee: "600", shares: ["300", "300"], at: n + 6 },
      { t: "broadcast", batch: `b${n + 1}`, at: n + 7 },
      { t: "queued", id: "w3", userKey: "u_c", address: "bcrt1qc", amount: "7000", quotedFee: "300", at: n + 8 },
      { t: "unqueued", id: "w3", at: n + 9 },
    ];
    for (const e of steps) {
      b = b.apply(e);
      t.ok(b.finishedParts[0] === done && b.finishedParts[1] === doneBatches, `n=${n}: "${e.t}" left the finished payouts and batches as they were (the same objects)`);
    }
    t.equal(payoutBookWork.copied, copied, "not one finished entry copied");
    t.same(Object.keys(b.live), ["w1", "w2", "w3"], "the live payouts: those of the new batch, the one given back");
    // The events that finish or prune: one shard (of ~n/4,096 entries) each.
    const before = payoutBookWork.copied;
    b = b.apply({ t: "confirmed", batch: `b${n + 1}`, at: n + 10 });
    b = b.apply({ t: "wallet_settled", ids: ["w1", "w2", "w3"], at: n + 11 });
    b = b.apply({ t: "pruned", ids: ["old0", "old1"], batches: ["b1", "b2"], at: n + 12 });
    const work = payoutBookWork.copied - before;
    t.ok(work < 60, `n=${n}: a confirmation, a settlement of 3 and a prune of 2 copied ${work} finished entries`);
    t.same([b.finishedCount, Object.keys(b.live), Object.keys(b.liveBatches)], [{ payouts: n + 1, confirmed: n, batches: n - 1 }, [], []], "all finished: live parts empty");
    t.equal(b.payout("old0"), undefined, "pruned");
    t.match(b.payout("w3"), { status: "released", walletSettled: true }, "a payout given back and settled is finished too");
  }
});

t.test("the actor's readers over a split book: a finished payout re-submitted is answered, never queued again; prune takes the oldest finished", async (t) => {
  const persisted: PayoutEvent[][] = [];
  const records: Array<[string, string, bigint]> = [];
  const finished = {
    get: () => undefined,
    op: (id: string, txid: string, fee: bigint) => (records.push([id, txid, fee]), { type: "put", ns: "paid", key: id, value: { txid, fee } }),
    txOps: (b: Batch) => [{ type: "put", ns: "paid", key: b.txid, value: true }],
    paidBy: () => false,
  };
  const node = { call: async (method: string) => { throw new Error(`no node here (${method})`); }, signing: <T>(f: () => Promise<T>) => f() };
  const behaviour = payoutBehaviour({
    node, finished: finished as never, retainFinished: 5, log: { info() {}, warn() {}, error() {}, debug() {}, child() { return this; } } as never,
    confirmations: 1, maxOutputsPerBatch: 10, feeRate: async () => 5n, now: () => 99_999,
    hooks: { broadcast: () => undefined, settled: async () => true, released: async () => true, alert: () => undefined },
  });
  const persist = async (events: PayoutEvent[]) => void persisted.push(events);
  const ask = async <R>(s: PayoutState, make: (reply: (r: R) => void) => PayoutCommand): Promise<[PayoutState, R]> => {
    let answer: R | undefined;
    const next = await behaviour.handle(s, make((r) => (answer = r)), persist);
    return [next, answer!];
  };
  // Twelve finished payouts, queued in a shuffled order of `at`.
  const ats = [7, 3, 11, 1, 9, 5, 12, 2, 8, 4, 10, 6];
  const flat = emptyFlat();
  ats.forEach((at, i) => {
    flat.payouts[`w${i}`] = { userKey: `u_${i}`, address: `bcrt1q${i}`, amount: 1000n, quotedFee: 300n, status: "confirmed", batch: `b${i}`, fee: 250n, walletSettled: true, at };
    flat.batches[`b${i}`] = { ids: [`w${i}`], hex: "00", txid: `t${i}`, fee: 250n, quoted: 300n, status: "confirmed", replaced: [], at, reason: undefined };
  });
  let s: PayoutState = restore(roundTrip(flat));
  let answer: PayoutSummary | Refusal;
  [s, answer] = await ask<PayoutSummary | Refusal>(s, (reply) => ({ type: "submit", id: "w3", userKey: "u_3", address: "bcrt1q3", amount: 1000n, quotedFee: 300n, reply }));
  t.same(answer, { id: "w3", status: "confirmed", txid: "t3", fee: 250n }, "a finished payout re-submitted: its status and transaction");
  t.same(persisted, [], "nothing journalled");
  [s] = await ask(s, (reply) => ({ type: "sync", reply }));
  const pruned = persisted.flat().filter((e) => e.t === "pruned");
  const oldest = Object.entries(flat.payouts).sort((a, b) => a[1].at - b[1].at).slice(0, 7).map(([id]) => id);
  t.same(pruned.map((e) => [...e.ids].sort()), [[...oldest].sort()], "the seven oldest by when they were queued leave, the newest five stay");
  t.same(pruned[0]!.batches.sort(), oldest.map((id) => `b${id.slice(1)}`).sort(), "with their batches");
  t.same(records.map(([id, txid, fee]) => [id, txid, fee]).sort(), oldest.map((id) => [id, `t${id.slice(1)}`, 250n]).sort(), "each remembered with its txid and fee");
  t.equal((s as PayoutBook).finishedCount.confirmed, 5);
  // The watchdog's reading: in-flight payouts are live ones; the finished ones are not counted (nor read).
  const book = s.payouts;
  t.equal(Object.keys(book).length, 5);
  t.same(livePayouts(s), {}, "nothing in flight");
  const liabilities = { available: 0n, pending: 0n, reserved: 0n, escrow: 0n, inFlightPayouts: 0n, total: 0n, wallets: 0 };
  t.ok(assessSolvency({ liabilities, node: { trusted: 0n, untrustedPending: 0n, immature: 0n }, payouts: s }).ok);
});
