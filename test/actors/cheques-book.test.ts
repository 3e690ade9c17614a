// The cheque book's state (ChequeBook): sharded, so an event copies a small part of it whatever its size, and built
// from the same events into the same book as the flat map it replaced — which every answer that depended on that
// map's order (the creator's list, the limit, which cheques are pruned or expired first), a snapshot's bytes, and a
// snapshot written by the flat version all show. The flat version's evolve is kept below as the reference.
import t from "tap";
import { decode, encode, encodeText } from "../../src/store/codec.ts";
import { idMap } from "../../src/actors/idmap.ts";
import { flatEvolve as flatEvolveBefore, type Flat } from "../../bench/lib/flat-cheques.ts";
import { bookWork, ChequeBook, chequeBehaviour, emptyCheques, escrowOf, evolveCheques, type ChequeBookOptions, type ChequeCommand, type ChequeEvent, type ChequeRecord, type ChequeState } from "../../src/actors/cheques.ts";


/** The flat reference, and a cheque returned at its expiry marked so (the book keeps why it pays its creator back). */
function flatEvolve(m: Flat, e: ChequeEvent): Flat {
  const next = flatEvolveBefore(m, e);
  if (e.t === "revoked" && e.expired === true && next[e.hash]) next[e.hash] = { ...next[e.hash]!, expired: true };
  return next;
}

const live = (x: ChequeRecord) => x.status === "open" || x.status === "awaiting_funds";

/** A deterministic journal of a busy book: many creators, every kind of event, cheques made again after a drop. */
function journal(count: number, seed = 7): ChequeEvent[] {
  let r = seed;
  const rand = (n: number) => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0), r % n);
  const events: ChequeEvent[] = [];
  let m = idMap<ChequeRecord>();
  const add = (e: ChequeEvent) => (events.push(e), (m = flatEvolve(m, e)));
  let made = 0;
  while (events.length < count) {
    const hashes = Object.keys(m);
    const k = rand(10);
    if (k < 4 || hashes.length === 0) {
      // Every hash format the book may meet: an HMAC's hex, short test names, ids that are Object.prototype's members.
      const hash = made % 97 === 5 ? "toString" : made % 89 === 3 ? "__proto__" : `${(made * 2654435761 >>> 0).toString(16)}h${made}`;
      made++;
      if (m[hash]) continue;
      add({ t: "created", hash, creator: `u_${rand(40)}`, amount: String(1 + rand(5000)), expiresAt: 1000 + rand(1000), ...(rand(5) ? { id: `tg_${made}` } : {}) });
      continue;
    }
    const hash = hashes[rand(hashes.length)]!;
    const c = m[hash]!;
    if (c.status === "awaiting_funds") add(rand(6) ? { t: "funded", hash } : { t: "dropped", hash });
    else if (c.status === "open") add(rand(2) ? { t: "claimed", hash, by: `u_${rand(40)}` } : { t: "revoked", hash });
    else if (c.paid === false) add({ t: "paid", hash });
    else {
      // Finished: prune the oldest finished ones now and then, as the book does.
      const finished = hashes.filter((h) => m[h]!.paid === true);
      if (finished.length > 20) add({ t: "pruned", hashes: finished.slice(0, finished.length - 15) });
    }
  }
  return events;
}

/** Everything a reader sees of a book, from the book itself or from the flat map (the reference). */
function seen(b: ChequeState) {
  const flat = b.cheques;
  const creators = [...new Set(Object.values(flat).map((c) => c.creator))].sort();
  return {
    order: Object.keys(flat),
    flat,
    escrow: escrowOf(b),
    byCreator: Object.fromEntries(creators.map((u) => [u, [...b.liveOf(u)]])),
    size: b.size,
    paid: b.paidCount,
    oldestPaid: b.oldestPaid(b.paidCount),
  };
}

/** What a book holds, read from its parts (not from the flat view, which is built once and kept). */
function structure(b: ChequeBook) {
  const entries = [...b.entries()].map(([h, c]) => [h, { ...c }] as const).sort((x, y) => x[1].n - y[1].n);
  const creators = [...new Set(entries.map(([, c]) => c.creator))];
  return { entries, live: creators.map((u) => [...b.liveOf(u)]), paid: b.oldestPaid(b.paidCount), size: b.size, held: b.held };
}

function seenFlat(m: Flat) {
  const creators = [...new Set(Object.values(m).map((c) => c.creator))].sort();
  const finished = Object.keys(m).filter((h) => m[h]!.paid === true);
  let escrow = 0n;
  for (const c of Object.values(m)) if (c.status === "open" || ((c.status === "claimed" || c.status === "revoked") && !c.paid)) escrow += c.amount;
  return {
    order: Object.keys(m),
    flat: m,
    escrow,
    byCreator: Object.fromEntries(creators.map((u) => [u, Object.keys(m).filter((h) => m[h]!.creator === u && live(m[h]!))])),
    size: Object.keys(m).length,
    paid: finished.length,
    oldestPaid: finished,
  };
}

t.test("replayed event by event, the book is the flat book: order, records, escrow, creators' lists, paid cheques", async (t) => {
  const events = journal(3000);
  let m = idMap<ChequeRecord>();
  let b = emptyCheques();
  for (const [i, e] of events.entries()) {
    m = flatEvolve(m, e);
    const before = b;
    const was = i % 211 === 0 ? structure(before) : undefined;
    b = evolveCheques(b, e);
    if (i % 97 === 0 || i === events.length - 1) t.same(seen(b), seenFlat(m), `after event ${i} (${e.t})`);
    // Pure: the previous book (a snapshot may still be encoding it, a handler may still read it) is as it was.
    if (was) t.same(structure(before), was, `event ${i} (${e.t}) left the book before it alone`);
  }
  t.ok(Object.keys(m).length > 100, `a book of ${Object.keys(m).length} cheques at the end`);
});

t.test("a snapshot in the flat book's format (the version before) restores to the same book, and a new snapshot is that format byte for byte", async (t) => {
  const events = journal(2500, 11);
  const behaviour = chequeBehaviour({ pay: () => undefined }, {} as ChequeBookOptions);
  const cut = 1700;
  let m = idMap<ChequeRecord>();
  for (const e of events.slice(0, cut)) m = flatEvolve(m, e);
  // What the flat version's snapshot stored: its state, { cheques }, through the codec.
  const old = encode({ cheques: m });
  const restored = behaviour.restore!(decode(old));
  t.ok(restored instanceof ChequeBook);
  t.same(seen(restored), seenFlat(m), "the same book");
  const replayed = events.slice(0, cut).reduce(evolveCheques, emptyCheques());
  t.equal(encodeText(replayed), old.toString("utf8"), "this version's snapshot of the same book: the same bytes");
  t.equal(encodeText(restored), old.toString("utf8"), "and once restored");
  // The journal after the snapshot, on the restored book: the book a full replay gives.
  let after = restored;
  for (const e of events.slice(cut)) (after = evolveCheques(after, e)), (m = flatEvolve(m, e));
  t.same(seen(after), seenFlat(m), "snapshot + the rest of the journal = the flat book");
  t.same(seen(after), seen(events.reduce(evolveCheques, emptyCheques())), "= a full replay");
  // A snapshot with no cheques, and one from before any cheque field was optional (JSON drops undefined fields).
  t.equal(behaviour.restore!(decode(encode({ cheques: {} }))).size, 0);
  const bare = behaviour.restore!(decode(encode({ cheques: { h1: { creator: "u_a", amount: 5n, expiresAt: 9, status: "open" } } })));
  t.same([bare.get("h1"), bare.held, bare.liveOf("u_a")], [{ creator: "u_a", amount: 5n, expiresAt: 9, status: "open", payee: undefined, paid: undefined, id: undefined, n: 0 }, 5n, ["h1"]]);
});

t.test("an event copies a small part of the book, whatever its size", async (t) => {
  const flat = idMap<ChequeRecord>();
  const n = 50_000;
  for (let i = 0; i < n; i++) flat[`c${i}`] = { creator: `u_${i % 1000}`, amount: 1n, expiresAt: 1e15, status: i % 3 ? "open" : "claimed", payee: i % 3 ? undefined : "u_x", paid: i % 3 ? undefined : true, id: `tg_${i}` };
  let b = ChequeBook.fromFlat(flat);
  const before = bookWork.copied;
  const k = 600;
  for (let i = 0; i < k / 3; i++) {
    b = evolveCheques(b, { t: "created", hash: `new${i}`, creator: `u_${i % 1000}`, amount: "1", expiresAt: 1e15, id: `x${i}` });
    b = evolveCheques(b, { t: "claimed", hash: `c${3 * i + 1}`, by: "u_y" });
    b = evolveCheques(b, { t: "paid", hash: `c${3 * i + 1}` });
  }
  const perEvent = (bookWork.copied - before) / k;
  // The flat book copied all 50,000 entries an event; here two shards of ~12 (the cheque's, its creator's).
  t.ok(perEvent < 100, `${perEvent.toFixed(1)} entries copied per event in a book of ${n}`);
  t.equal(b.size, n + k / 3);
});

t.test("the book's answers that depend on order: the creator's list and limit, expiry and pruning take the cheques made first", async (t) => {
  const persisted: ChequeEvent[][] = [];
  const paid: string[] = [];
  const stored = new Map<string, ChequeRecord>();
  const finished = { get: (h: string) => stored.get(h), op: (h: string, r: ChequeRecord) => (stored.set(h, r), { type: "put", ns: "cheque-done", key: h, value: r }) };
  const behaviour = chequeBehaviour({ pay: (hash) => paid.push(hash) }, { finished: finished as never, retainFinished: 3, maxOpenPerCreator: 400 });
  const persist = async (events: ChequeEvent[]) => void persisted.push(events);
  const ask = async <R>(s: ChequeState, make: (reply: (r: R) => void) => ChequeCommand): Promise<[ChequeState, R]> => {
    let answer: R | undefined;
    const next = await behaviour.handle(s, make((r) => (answer = r)), persist);
    return [next, answer!];
  };
  let s = emptyCheques();
  let m = idMap<ChequeRecord>();
  const made: string[] = [];
  // 1,200 cheques from three creators, hashes spread over every shard: made in this order.
  for (let i = 0; i < 1200; i++) {
    const hash = `${((i * 2654435761) >>> 0).toString(16)}q${i}`;
    let r: unknown;
    [s, r] = await ask(s, (reply) => ({ type: "create", hash, creator: `u_${i % 3}`, id: `id${i}`, amount: BigInt(100 + i), expiresAt: 5000 + i, now: 0, reply }));
    t.notMatch(r, { code: String }, `cheque ${i} made`);
    made.push(hash);
    if (i % 7 !== 0) [s] = await ask(s, (reply) => ({ type: "fund", hash, from: `u_${i % 3}`, amount: BigInt(100 + i), reply }));
  }
  for (const events of persisted.splice(0)) for (const e of events) m = flatEvolve(m, e);
  t.same(seen(s), seenFlat(m), "the book of the handler's journal is the flat book of it");

  const [, mine] = await ask<{ cheques: Array<{ id: string | undefined }>; total: number }>(s, (reply) => ({ type: "mine", creator: "u_1", now: 5300, limit: 20, reply }));
  const expected = Object.values(m).filter((c) => c.creator === "u_1" && live(c) && 5300 <= c.expiresAt).reverse();
  t.same([mine.total, mine.cheques.map((c) => c.id)], [expected.length, expected.slice(0, 20).map((c) => c.id)], "the creator's list: newest first, the ones expired left out");
  const [, refused] = await ask<unknown>(s, (reply) => ({ type: "create", hash: "one-more", creator: "u_1", id: "x", amount: 1n, expiresAt: 9999, now: 0, reply }));
  t.match(refused, { code: "over_limit", message: /You have 400 cheques/ }, "the limit counts the creator's open cheques");
  const [, allowed] = await ask<unknown>(s, (reply) => ({ type: "create", hash: "one-more", creator: "u_1", id: "x", amount: 1n, expiresAt: 9999, now: 5300, reply }));
  t.notMatch(allowed, { code: String }, "and not the expired ones");
  persisted.splice(0);

  // Past every expiry: 500 a turn, the ones made first, and those never funded named (500 at most, the first made).
  const [next, expired] = await ask<{ expired: number; stale: Array<{ hash: string }> }>(s, (reply) => ({ type: "expire", now: 1e9, reply }));
  s = next;
  const open = made.filter((h) => m[h]!.status === "open");
  t.same(persisted[0]!.map((e) => (e as { hash: string }).hash), open.slice(0, 500), "the 500 open cheques made first are returned");
  t.same(expired.stale.map((x) => x.hash), made.filter((h) => m[h]!.status === "awaiting_funds").slice(0, 500), "the stale ones, first made first");
  t.same(paid, open.slice(0, 500), "their payouts, in that order");
  for (const events of persisted.splice(0)) for (const e of events) m = flatEvolve(m, e);

  // Paid out last made first: the book keeps the 3 newest finished (by when they were made), prunes the rest.
  for (const hash of open.slice(0, 500).reverse()) {
    [s] = await ask(s, (reply) => ({ type: "paid", hash, reply }));
    for (const events of persisted.splice(0)) {
      for (const e of events) {
        if (e.t === "pruned") {
          const finished = Object.keys(m).filter((h) => m[h]!.paid === true);
          t.same(e.hashes, finished.slice(0, finished.length - 3), "pruned: the finished cheques made first");
        }
        m = flatEvolve(m, e);
      }
    }
  }
  t.same(seen(s), seenFlat(m), "the same book at the end");
  t.equal(stored.size, 497, "each pruned cheque's record stored, as it was");
  t.same(Object.keys(stored.get(open[0]!)!), ["creator", "amount", "expiresAt", "status", "payee", "paid", "id", "expired"], "without the book's own order number");

  const [, resumed] = await ask<{ resent: number }>(s, (reply) => ({ type: "resume", reply }));
  t.equal(resumed.resent, 0, "nothing owed");
});
