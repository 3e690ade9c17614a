// node --import ./bin/ts-register.mjs bench/cheques.bench.ts — the cheque book's cost per event at 1k/10k/50k cheques,
// beside the flat book it replaced (the whole map copied on every event: its evolve is kept below), measured in the same
// run on the same events. Figures only; nothing is asserted, nothing written. CHEQUES_SIZES=1000,10000 picks the sizes.
//
// Each size: a book of N cheques from N/50 creators (50 each, one in three finished), then a steady cycle that keeps N:
// a cheque made and funded, an older one claimed, paid out and pruned — five journal events, as a claim in steady
// state writes with `retainFinishedCheques` reached. Also: `create`'s per-creator check (the flat book scanned every
// cheque), and what a snapshot (every 1,000 journal records; 200 before) and a restore from one cost.
import { decode, encode, encodeText } from "../src/store/codec.ts";
import { ChequeBook, evolveCheques, type ChequeEvent, type ChequeRecord } from "../src/actors/cheques.ts";
import { idMap } from "../src/actors/idmap.ts";
import { flatEvolve, type Flat } from "./lib/flat-cheques.ts";


const hashOf = (i: number) => `${((i * 2654435761) >>> 0).toString(16).padStart(8, "0")}${i.toString(16).padStart(24, "0")}`;
const creatorOf = (i: number, n: number) => `u_${(i % Math.max(1, n / 50)).toString(16).padStart(40, "0")}`;

function initial(n: number): Flat {
  const m = idMap<ChequeRecord>();
  for (let i = 0; i < n; i++) {
    const finished = i % 3 === 0;
    m[hashOf(i)] = { creator: creatorOf(i, n), amount: 1000n, expiresAt: 1e15, status: finished ? "claimed" : "open", payee: finished ? "u_payee" : undefined, paid: finished ? true : undefined, id: `tg_${i}` };
  }
  return m;
}

/** The events of `cycles` steady cycles on a book of n made as `initial` does: the oldest open claimed, the oldest finished pruned. */
function cycleEvents(n: number, cycles: number): ChequeEvent[] {
  const events: ChequeEvent[] = [];
  const open: string[] = [];
  const finished: string[] = [];
  for (let i = 0; i < n; i++) (i % 3 === 0 ? finished : open).push(hashOf(i));
  let o = 0, f = 0;
  for (let k = 0; k < cycles; k++) {
    const fresh = hashOf(n + k);
    events.push({ t: "created", hash: fresh, creator: creatorOf(k, n), amount: "1000", expiresAt: 1e15, id: `tg_${n + k}` });
    events.push({ t: "funded", hash: fresh });
    open.push(fresh);
    const claimed = open[o++]!;
    events.push({ t: "claimed", hash: claimed, by: "u_claimant" });
    events.push({ t: "paid", hash: claimed });
    finished.push(claimed);
    events.push({ t: "pruned", hashes: [finished[f++]!] });
  }
  return events;
}

function time<T>(f: () => T): [T, number] {
  const t0 = performance.now();
  const r = f();
  return [r, performance.now() - t0];
}

const fmt = (ms: number) => (ms >= 1 ? `${ms.toFixed(2)} ms` : `${(ms * 1000).toFixed(1)} µs`);
const sizes = (process.env.CHEQUES_SIZES ?? "1000,10000,50000").split(",").map(Number);
const rows: string[][] = [["cheques", "event (sharded)", "event (flat, same run)", "ratio", "create check (index / scan)", "snapshot (sharded / flat)", "restore (sharded / flat)"]];

for (const n of sizes) {
  const flat = initial(n);
  const book = ChequeBook.fromFlat(flat);
  // The flat book gets about a second and a half of events at most; the sharded one 10,000 cycles.
  const [, probe] = time(() => flatEvolve(flat, { t: "funded", hash: hashOf(1) }));
  const flatCycles = Math.max(4, Math.min(2000, Math.floor(1500 / Math.max(0.001, probe * 5))));
  const shardedCycles = 10_000;
  // Warm-up of both, on their own copies.
  cycleEvents(n, 200).reduce(evolveCheques, book);
  cycleEvents(n, Math.min(flatCycles, 20)).reduce(flatEvolve, flat);

  const events = cycleEvents(n, shardedCycles);
  const [after, shardedMs] = time(() => events.reduce(evolveCheques, book));
  const flatEvents = events.slice(0, flatCycles * 5);
  const [flatAfter, flatMs] = time(() => flatEvents.reduce(flatEvolve, flat));
  const perSharded = shardedMs / events.length;
  const perFlat = flatMs / flatEvents.length;
  if (after.size !== n || Object.keys(flatAfter).length !== n) throw new Error("the cycle should keep the book's size");

  // create's per-creator check: the creator's index against a scan of every cheque (what the flat book did).
  const who = creatorOf(7, n);
  const reps = 2000;
  const [, indexMs] = time(() => {
    let open = 0;
    for (let r = 0; r < reps; r++) for (const h of after.liveOf(who)) if (after.get(h)!.status === "open") open++;
    return open;
  });
  const scanReps = Math.max(3, Math.min(reps, Math.floor(200_000 / n)));
  const [, scanMs] = time(() => {
    let open = 0;
    for (let r = 0; r < scanReps; r++) for (const h in flatAfter) if (flatAfter[h]!.creator === who && flatAfter[h]!.status === "open") open++;
    return open;
  });

  // A snapshot: the flat view built and encoded (sharded), the map encoded (flat); and a restore from those bytes.
  const fresh = events.slice(0, 5).reduce(evolveCheques, book);
  const [bytes, snapMs] = time(() => encodeText(fresh));
  const [, flatSnapMs] = time(() => encodeText({ cheques: flatAfter }));
  const data = decode<{ cheques: Flat }>(encode({ cheques: flatAfter }));
  const [, restoreMs] = time(() => ChequeBook.fromFlat(data.cheques));
  const data2 = decode<{ cheques: Flat }>(encode({ cheques: flatAfter }));
  const [, flatRestoreMs] = time(() => idMap(data2.cheques));

  rows.push([
    n.toLocaleString("en"),
    `${fmt(perSharded)} (${events.length.toLocaleString("en")} events)`,
    `${fmt(perFlat)} (${flatEvents.length.toLocaleString("en")} events)`,
    `${(perFlat / perSharded).toFixed(0)}×`,
    `${fmt(indexMs / reps)} / ${fmt(scanMs / scanReps)}`,
    `${fmt(snapMs)} / ${fmt(flatSnapMs)} (${(bytes.length / 1e6).toFixed(1)} MB; a record's share: ${fmt(snapMs / 1000)} at snapshotEvery 1,000, flat ${fmt(flatSnapMs / 200)} at 200)`,
    `${fmt(restoreMs)} / ${fmt(flatRestoreMs)}`,
  ]);
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
console.log(`node ${process.version}; one run, single-threaded; the machine's other load shows in every figure alike.`);
