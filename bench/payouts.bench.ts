// node --import ./bin/ts-register.mjs bench/payouts.bench.ts — the payout book's cost per event at 1k/10k finished
// payouts retained, beside the flat book it replaced (every payout and batch copied on every event: its evolve is kept in
// bench/lib/flat-payouts.ts), measured in the same run on the same events. Figures only; nothing is asserted, nothing
// written. PAYOUTS_SIZES=1000,10000 picks the sizes.
//
// Each size: a book of N finished payouts (confirmed and settled, one batch each: `batchWindowMs` 0 sends each alone) and
// a few live ones. `queued`: one withdrawal request on that book (each on the same book, not chained). The cycle keeps N:
// a payout queued, signed, broadcast, confirmed, settled in its wallet, and the oldest finished one pruned with its batch
// — six journal events, as a withdrawal in steady state writes with `retainFinishedPayouts` reached. Also: a snapshot
// (the split book every 1,000 journal records, the flat one every 200) and a restore from one, the flat view the "state" answer's readers build, and prune's pick.
import { decode, encode, encodeText } from "../src/store/codec.ts";
import { PayoutBook, type Batch, type Payout, type PayoutEvent } from "../src/actors/payout.ts";
import { idMap } from "../src/actors/idmap.ts";
import { flatEvolve, type FlatPayouts } from "./lib/flat-payouts.ts";

const LIVE = 5;

function initial(n: number): FlatPayouts {
  const payouts = idMap<Payout>(), batches = idMap<Batch>();
  for (let i = 0; i < n; i++) {
    const txid = `${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}`.repeat(8);
    payouts[`wd_${i}`] = { userKey: `u_${(i % 2000).toString(16).padStart(40, "0")}`, address: `bcrt1q${i.toString(16).padStart(38, "0")}`, amount: 100_000n + BigInt(i), quotedFee: 2210n, status: "confirmed", batch: `b${i + 1}`, fee: 1410n, walletSettled: true, at: 1e12 + i };
    batches[`b${i + 1}`] = { ids: [`wd_${i}`], hex: "02000000".padEnd(440, "0"), txid, fee: 1410n, quoted: 2210n, status: "confirmed", replaced: [], at: 1e12 + i, reason: undefined, inputs: { [txid]: [`${txid}:0`] } };
  }
  for (let i = 0; i < LIVE; i++) {
    payouts[`live_${i}`] = { userKey: "u_live", address: `bcrt1qlive${i}`, amount: 5000n, quotedFee: 2210n, status: "queued", batch: undefined, fee: undefined, walletSettled: undefined, at: 2e12 + i };
  }
  return { payouts, batches, seq: n };
}

const queuedEvent = (k: number): PayoutEvent => ({ t: "queued", id: `new_${k}`, userKey: "u_new", address: `bcrt1qnew${k}`, amount: "100000", quotedFee: "2210", at: 3e12 + k });

/** `cycles` steady cycles on a book made by `initial(n)`: one payout through to settled, the oldest finished pruned. */
function cycleEvents(n: number, cycles: number): PayoutEvent[] {
  const events: PayoutEvent[] = [];
  for (let k = 0; k < cycles; k++) {
    const id = `c_${k}`, batch = `b${n + k + 1}`, txid = `t${k}`.padEnd(64, "0");
    events.push(queuedEvent(1e6 + k));
    events[events.length - 1] = { ...(events.at(-1) as Extract<PayoutEvent, { t: "queued" }>), id };
    events.push({ t: "signed", batch, ids: [id], hex: "02000000".padEnd(440, "0"), txid, fee: "1410", shares: ["1410"], at: 3e12 + k, inputs: [`${txid}:1`] });
    events.push({ t: "broadcast", batch, at: 3e12 + k });
    events.push({ t: "confirmed", batch, at: 3e12 + k });
    events.push({ t: "wallet_settled", ids: [id], at: 3e12 + k });
    // The oldest finished: the book's first n, then this cycle's own, in the order they finished.
    events.push({ t: "pruned", ids: [k < n ? `wd_${k}` : `c_${k - n}`], batches: [`b${k + 1}`], at: 3e12 + k });
  }
  return events;
}

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const r = f();
  return [r, performance.now() - t0];
}

/** The fastest of `n` runs, after one to warm up (a snapshot, a restore: one call each, compiled on the first). */
function best<T>(f: () => T, n = 3): [T, number] {
  let [r, ms] = time(f);
  ms = Infinity;
  for (let i = 0; i < n; i++) {
    const [x, t] = time(f);
    if (t < ms) [r, ms] = [x, t];
  }
  return [r, ms];
}

const fmt = (ms: number) => (ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`);
const sizes = (process.env.PAYOUTS_SIZES ?? "1000,10000").split(",").map(Number);
const rows: string[][] = [["retained", "queued (split / flat)", "cycle event (split / flat)", "ratio (queued, cycle)", "snapshot (split / flat)", "restore (split / flat)", "flat view, prune's pick"]];

for (const n of sizes) {
  const flat = initial(n);
  const book = PayoutBook.fromFlat(flat);
  const [, probe] = time(() => flatEvolve(flat, queuedEvent(0)));
  // The flat book gets about a second of events at most; the split one 20,000.
  const flatReps = Math.max(20, Math.min(3000, Math.floor(1000 / Math.max(0.001, probe))));
  const reps = 20_000;
  // Warm-up of both.
  for (let k = 0; k < 2000; k++) book.apply(queuedEvent(k));
  for (let k = 0; k < Math.min(flatReps, 50); k++) flatEvolve(flat, queuedEvent(k));
  cycleEvents(n, 300).reduce((b, e) => b.apply(e), book);
  cycleEvents(n, Math.min(20, Math.ceil(flatReps / 6))).reduce(flatEvolve, flat);

  // One `queued` on a book of n finished payouts, each on the same book.
  const [, queuedMs] = time(() => {
    for (let k = 0; k < reps; k++) book.apply(queuedEvent(k));
  });
  const [, flatQueuedMs] = time(() => {
    for (let k = 0; k < flatReps; k++) flatEvolve(flat, queuedEvent(k));
  });

  // The steady cycle, chained.
  const events = cycleEvents(n, Math.floor(reps / 6));
  const [after, cycleMs] = time(() => events.reduce((b, e) => b.apply(e), book));
  const flatEvents = events.slice(0, Math.max(6, Math.floor(flatReps / 6) * 6));
  const [flatAfter, flatCycleMs] = time(() => flatEvents.reduce(flatEvolve, flat));
  if (after.finishedCount.confirmed !== n || Object.keys(flatAfter.payouts).length !== n + LIVE) throw new Error("the cycle should keep the book's size");

  // A snapshot: the flat views built and encoded (split; a book fresh from an event, no view cached), the maps (flat).
  let fresh = 0;
  const [bytes, snapMs] = best(() => encodeText(after.apply(queuedEvent(9e6 + fresh++))));
  const [, flatSnapMs] = best(() => encodeText(flatAfter));
  const text = encode(flatAfter);
  const [, restoreMs] = best(() => PayoutBook.fromFlat(decode<FlatPayouts>(text)));
  const [, decodeMs] = best(() => decode<FlatPayouts>(text));
  const [, flatRestoreMs] = best(() => {
    const d = decode<FlatPayouts>(text);
    return { ...d, payouts: idMap(d.payouts), batches: idMap(d.batches) };
  });
  // What a reader of the "state" answer pays for the flat view (once per book), and prune's pick at each block over the limit.
  const [, viewMs] = best(() => after.apply(queuedEvent(9e6 + fresh++)).payouts);
  const [, pickMs] = best(() => after.oldestConfirmed(1));

  const perQueued = queuedMs / reps, perFlatQueued = flatQueuedMs / flatReps;
  const perCycle = cycleMs / events.length, perFlatCycle = flatCycleMs / flatEvents.length;
  rows.push([
    n.toLocaleString("en"),
    `${fmt(perQueued)} / ${fmt(perFlatQueued)} (${reps.toLocaleString("en")} / ${flatReps.toLocaleString("en")} events)`,
    `${fmt(perCycle)} / ${fmt(perFlatCycle)} (${events.length.toLocaleString("en")} / ${flatEvents.length.toLocaleString("en")} events)`,
    `${(perFlatQueued / perQueued).toFixed(0)}×, ${(perFlatCycle / perCycle).toFixed(0)}×`,
    `${fmt(snapMs)} / ${fmt(flatSnapMs)} (${(bytes.length / 1e6).toFixed(1)} MB; a record's share: ${fmt(snapMs / 1000)} at 1,000 / ${fmt(flatSnapMs / 200)} at 200)`,
    `${fmt(restoreMs)} / ${fmt(flatRestoreMs)} (decoding alone ${fmt(decodeMs)})`,
    `${fmt(viewMs)}, ${fmt(pickMs)}`,
  ]);
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
console.log(`node ${process.version}; one run, single-threaded; the machine's other load shows in every figure alike.`);
