// The journal on a real encrypted LevelDB: ordered replay, snapshots, gap refusal, group commit, and a real
// nact persistent actor (through our facade) recovering from it after a restart.
import t from "tap";
import { EncryptedStore, POSITION_KEY, writeBatch, type RawOp } from "../../src/store/db.ts";
import { Journal, type JournalEvent } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem, type Reply } from "../../src/actors/runtime.ts";
import { fillDisk } from "../support/store.ts";

const ring = () => new KeyRing(new Map([[1, Buffer.alloc(32, 3)]]), 1);
const ev = (key: string, seq: number, data: unknown): JournalEvent => ({ key, sequenceNumber: seq, data, tags: [], createdAt: 1, isDeleted: false });

async function openJournal(dir: string, project?: ConstructorParameters<typeof Journal>[1]) {
  const store = await EncryptedStore.open({ path: dir, keyring: ring() });
  return new Journal(store, project);
}

t.test("10k events over 100 keys: durable, replayed in order after a restart, group-committed", async (t) => {
  const dir = t.testdir();
  let j = await openJournal(dir);
  // Each key persists serially (as an actor does); all keys at once (as many wallets do).
  await Promise.all(Array.from({ length: 100 }, async (_, k) => {
    for (let seq = 1; seq <= 100; seq++) await j.persist(ev(`w${k}`, seq, { k, seq, amount: BigInt(seq) * 1000n }));
  }));
  t.equal(j.stats.events, 10_000);
  t.ok(j.stats.batches < 1000, `group commit: ${j.stats.batches} fsyncs for 10,000 events`);
  await j.store.close();
  j = await openJournal(dir);
  t.teardown(() => j.store.close());
  let ordered = true;
  for (let k = 0; k < 100; k++) {
    const evs = await j.readEvents(`w${k}`);
    if (evs.length !== 100 || evs.some((e, i) => e.sequenceNumber !== i + 1 || (e.data as { amount: bigint }).amount !== BigInt(i + 1) * 1000n)) ordered = false;
  }
  t.ok(ordered, "every key replays 1..100 in order with its data");
  const after = await j.events("w5", 90).reduce<number[]>((acc, e) => [...acc, e.sequenceNumber], []);
  t.same(after, [91, 92, 93, 94, 95, 96, 97, 98, 99, 100], "events after an offset");
});

t.test("the last sequence numbers kept in memory are bounded; a forgotten key reads its number from disk", async (t) => {
  const j = await openJournal(t.testdir(), { remember: 4 });
  t.teardown(() => j.store.close());
  for (let k = 0; k < 20; k++) for (let seq = 1; seq <= 2; seq++) await j.persist(ev(`w${k}`, seq, { k, seq }));
  t.ok(j.remembered <= 8, `${j.remembered} keys remembered after 20 were written (two generations of 4 at most)`);
  // w0 was forgotten long ago: its next number is read from disk, a wrong one is still refused.
  await t.rejects(j.persist(ev("w0", 2, "again")), { code: "sequence_gap" }, "a number already on disk is refused");
  await j.persist(ev("w0", 3, "next"));
  t.same((await j.readEvents("w0")).map((e) => e.sequenceNumber), [1, 2, 3], "no gap, nothing lost");
  // A recently used key is still answered from memory: an activation at its last number reads nothing.
  t.same(await j.readEvents("w0", 3), []);
});

t.test("a sequence gap is refused; snapshots are stored and counted", async (t) => {
  const j = await openJournal(t.testdir());
  t.teardown(() => j.store.close());
  await j.persist(ev("a", 1, "x"));
  await t.rejects(j.persist(ev("a", 3, "y")), { code: "sequence_gap" });
  await t.rejects(j.persist(ev("a", 1, "again")), { code: "sequence_gap" });
  await j.persist(ev("a", 2, "y"));
  await j.takeSnapshot({ key: "a", sequenceNumber: 2, data: { total: 5n }, createdAt: 2 });
  t.same(await j.latestSnapshot("a"), { key: "a", sequenceNumber: 2, data: { total: 5n }, createdAt: 2 });
  t.equal(j.stats.snapshots, 1);
});

t.test("a record's store operations are written atomically with its event, and not journalled", async (t) => {
  const dir = t.testdir();
  const store = await EncryptedStore.open({ path: dir, keyring: ring() });
  const j = new Journal(store);
  t.teardown(() => store.close());
  const shipped: number[] = [];
  // What continuous backup ships: the store's durable batches (less the commit position every batch records).
  store.onWrite((_position, ops) => shipped.push(ops.filter((o) => o.key !== POSITION_KEY).length));
  await j.persist(ev("w", 1, { e: ["x"], r: [{ type: "put", ns: "balances", key: "w", value: 42n }] }));
  t.equal(await store.get("balances", "w"), 42n);
  t.same(shipped, [2], "event + its records in one batch");
  t.same((await j.readEvents("w")).map((e) => e.data), [{ e: ["x"] }], "the journal keeps the events only");
});

/** A clean stop of an actor system and its journal, and a new one on the same directory (a restart). */
async function restartOn(t: { teardown(f: () => unknown): void }, dir: string, system: ActorSystem, j: Journal) {
  system.shutdown();
  await j.flushed();
  await j.store.close();
  const journal = await openJournal(dir);
  const again = new ActorSystem(journal);
  t.teardown(async () => (again.shutdown(), await journal.store.close()));
  return { j: journal, system: again };
}

type Cmd = { add: bigint; reply: Reply<bigint> } | { get: true; reply: Reply<bigint> };

t.test("a nact persistent actor recovers from the journal after the system restarts; snapshots shorten replay", async (t) => {
  const dir = t.testdir();
  const behaviour = (replayed: { n: number }) => ({
    key: "counter",
    initial: () => 0n,
    evolve: (s: bigint, e: bigint) => ((replayed.n++), s + e),
    snapshotEvery: 50,
    async handle(s: bigint, m: Cmd, persist: (e: bigint[]) => Promise<void>) {
      if ("add" in m) {
        await persist([m.add]);
        m.reply(s + m.add);
        return s + m.add;
      }
      m.reply(s);
      return s;
    },
  });
  let j = await openJournal(dir);
  let system = new ActorSystem(j);
  const first = { n: 0 };
  let ref = system.spawnPersistent("c", behaviour(first), { onCrash: () => "reset" });
  for (let i = 1n; i <= 120n; i++) await system.ask<Cmd, bigint>(ref, (reply) => ({ add: i, reply }), 5000);
  ({ j, system } = await restartOn(t, dir, system, j));
  const second = { n: 0 };
  ref = system.spawnPersistent("c", behaviour(second), { onCrash: () => "reset" });
  t.equal(await system.ask<Cmd, bigint>(ref, (reply) => ({ get: true, reply }), 5000), 7260n, "sum of 1..120 survived");
  t.ok(second.n < 120, `replayed ${second.n} events after the snapshot instead of 120`);
});

/** A persistent actor summing what it is given: the key, start and fold the actor tests below share. */
const book = { key: "book", initial: () => 0n, evolve: (s: bigint, e: bigint) => s + e };

t.test("a handler that catches a failed persist to answer its caller: the actor is reset all the same, no gap, no snapshot past the disk", async (t) => {
  const dir = t.testdir();
  let crashes = 0;
  const behaviour = {
    ...book,
    snapshotEvery: 2,
    async handle(s: bigint, m: Cmd, persist: (e: bigint[]) => Promise<void>) {
      if (!("add" in m)) return (m.reply(s), s);
      try {
        await persist([m.add]);
      } catch {
        // As the payout book does: the caller is told, the state is kept.
        m.reply(-1n);
        return s;
      }
      m.reply(s + m.add);
      return s + m.add;
    },
  };
  let j = await openJournal(dir);
  let system = new ActorSystem(j);
  let ref = system.spawnPersistent("book", behaviour, { onCrash: () => (crashes++, "reset") });
  const add = (n: bigint) => system.ask<Cmd, bigint>(ref, (reply) => ({ add: n, reply }), 5000);
  t.equal(await add(1n), 1n);
  const disk = fillDisk(j.store);
  t.equal(await add(2n), -1n, "the failed persist is answered by the handler");
  disk.free();
  t.equal(await add(4n), 5n, "the next command is journalled: the actor was reset, its numbers match the disk");
  t.equal(await add(8n), 13n);
  t.ok(crashes >= 1, "reset for the failed persist (its replay may fail too, and be reset again, while the store is closed)");
  t.same((await j.readEvents("book")).map((e) => [e.sequenceNumber, e.data]), [[1, { e: [1n] }], [2, { e: [4n] }], [3, { e: [8n] }]], "no gap in the journal");
  ({ j, system } = await restartOn(t, dir, system, j));
  ref = system.spawnPersistent("book", behaviour, { onCrash: () => "reset" });
  t.equal(await system.ask<Cmd, bigint>(ref, (reply) => ({ get: true, reply }), 5000), 13n, "replayed after a restart to the same sum");
  t.equal(j.stats.snapshotFailures, 0);
});

t.test("a crashed actor's replay waits while the store is closed (a reopen after a failed write that could not open it): no crash loop", async (t) => {
  const dir = t.testdir();
  let crashes = 0;
  const behaviour = {
    ...book,
    async handle(s: bigint, m: Cmd, persist: (e: bigint[]) => Promise<void>) {
      if (!("add" in m)) return (m.reply(s), s);
      await persist([m.add]);
      m.reply(s + m.add);
      return s + m.add;
    },
  };
  const j = await openJournal(dir);
  const system = new ActorSystem(j);
  t.teardown(async () => {
    system.shutdown();
    await j.store.close();
  });
  const ref = system.spawnPersistent("book", behaviour, { onCrash: () => (crashes++, "reset") });
  const add = (n: bigint, timeoutMs = 5000) => system.ask<Cmd, bigint>(ref, (reply) => ({ add: n, reply }), timeoutMs);
  t.equal(await add(1n), 1n);
  // The write fails, and so does the reopen after it (LevelDB's open fails): the store is closed for a while.
  const disk = fillDisk(j.store);
  j.store.freeBytes = () => Number.MAX_SAFE_INTEGER;
  const open = j.store.db.open.bind(j.store.db);
  j.store.db.open = (async () => {
    throw new Error("IO error (simulated)");
  }) as typeof open;
  const reopened = new Promise<void>((resolve) => {
    j.store.db.open = (async (...a: Parameters<typeof open>) => {
      if (disk.full) throw new Error("IO error (simulated)");
      await open(...a);
      resolve();
    }) as typeof open;
  });
  await t.rejects(add(2n, 2000));
  t.equal(j.store.db.status, "closed", "the store could not reopen");
  // The store retries its reopen every second; it works once the disk is back.
  disk.free();
  await reopened;
  t.equal(await add(4n), 5n, "the actor replayed once the store could be read, and works");
  t.ok(crashes <= 3, `${crashes} crashes: the replay waited for the store instead of crashing again at once`);
});

t.test("a snapshot past a key's last event is refused", async (t) => {
  const j = await openJournal(t.testdir());
  t.teardown(() => j.store.close());
  await j.persist(ev("k", 1, "a"));
  await j.takeSnapshot({ key: "k", sequenceNumber: 2, data: "ab", createdAt: 1 });
  t.equal(j.stats.snapshotFailures, 1, "counted as a failure");
  t.equal(await j.latestSnapshot("k"), undefined, "and not written");
  await j.takeSnapshot({ key: "k", sequenceNumber: 1, data: "a", createdAt: 1 });
  t.equal((await j.latestSnapshot("k"))?.sequenceNumber, 1, "one at the last event is");
});

t.test("a turn's batch is sealed on the thread when nothing is on its way to disk, on the worker while an earlier one is", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring(), sealInWorkerFrom: 2 });
  t.teardown(() => store.close());
  const j = new Journal(store);
  const opened = store.sealer.stats.inline; // the store's own records, written when it was created
  const sealed = () => ({ here: store.sealer.stats.inline - opened, worker: store.sealer.stats.offThread });
  const record = (seq: number) => ev("w", seq, { e: [{ seq }], r: [{ type: "put", ns: "balances", key: "w", value: BigInt(seq) }] });
  await j.persist(record(1));
  t.same(sealed(), { here: 1, worker: 0 }, "nothing ahead of it: sealed here, no round trip");
  // The next batch is held on its way to disk (the real store writes it once the gate opens).
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const writeRaw = store.writeRaw.bind(store);
  store.writeRaw = async (ops) => (await gate, writeRaw(ops));
  const second = j.persist(record(2));
  await new Promise((r) => setImmediate(r)); // its turn is over: it has been cut and sealed
  store.writeRaw = writeRaw;
  t.same(sealed(), { here: 2, worker: 0 });
  const third = j.persist(record(3));
  await new Promise((r) => setImmediate(r));
  t.same(sealed(), { here: 2, worker: 1 }, "behind a batch still on its way to disk: sealed on the worker");
  open();
  await Promise.all([second, third]);
  t.same((await j.readEvents("w")).map((e) => e.sequenceNumber), [1, 2, 3], "all durable, in order");
  t.equal(await store.get("balances", "w"), 3n);
});

t.test("large turns are cut into batches sealed on the worker while the rest is decided: all durable, in order", async (t) => {
  const dir = t.testdir();
  let store = await EncryptedStore.open({ path: dir, keyring: ring(), sealInWorkerFrom: 4 });
  let j = new Journal(store, { cutAt: 8 });
  const positions: number[] = [];
  store.onWrite((p) => positions.push(p));
  await Promise.all(Array.from({ length: 200 }, async (_, k) => {
    for (let seq = 1; seq <= 20; seq++) await j.persist(ev(`w${k}`, seq, { e: [{ k, seq }], r: [{ type: "put", ns: "balances", key: `w${k}`, value: BigInt(seq) }] }));
  }));
  t.equal(j.stats.events, 4000);
  t.ok(store.sealer.stats.offThread > 0, `${store.sealer.stats.offThread} batches sealed off the thread`);
  t.same(positions, positions.map((_, i) => positions[0]! + i), "the store's commits follow one another");
  // Fired without waiting: flushed() resolves only once every one of them is durable.
  let done = 0;
  for (let k = 0; k < 200; k++) void j.persist(ev(`w${k}`, 21, { e: [{ k, seq: 21 }] })).then(() => done++);
  await j.flushed();
  t.equal(done, 200, "flushed() waited for every queued event");
  await store.close();
  store = await EncryptedStore.open({ path: dir, keyring: ring() });
  j = new Journal(store);
  t.teardown(() => store.close());
  let ordered = true;
  for (let k = 0; k < 200; k++) {
    const evs = await j.readEvents(`w${k}`);
    if (evs.length !== 21 || evs.some((e, i) => e.sequenceNumber !== i + 1 || (e.data as { e: Array<{ seq: number }> }).e[0]!.seq !== i + 1)) ordered = false;
  }
  t.ok(ordered, "every key replays 1..21 in order");
  t.equal(await store.get("balances", "w7"), 20n, "each record written with its event");
});

t.test("a failed batch releases its sequence numbers: the same numbers are taken again, no gap", async (t) => {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring(), sealInWorkerFrom: 1 });
  const j = new Journal(store, { cutAt: 4 });
  t.teardown(() => store.close());
  await Promise.all(Array.from({ length: 20 }, (_, k) => j.persist(ev(`k${k}`, 1, "ok"))));
  const disk = fillDisk(store);
  const failed = await Promise.allSettled(Array.from({ length: 20 }, (_, k) => j.persist(ev(`k${k}`, 2, "lost"))));
  t.ok(failed.every((r) => r.status === "rejected"), "every writer of the failed batches is told");
  disk.free();
  await Promise.all(Array.from({ length: 20 }, (_, k) => j.persist(ev(`k${k}`, 2, "again"))));
  t.same((await j.readEvents("k3")).map((e) => e.data), ["ok", "again"]);
});

t.test("a batch the store could not say was written, read around during the outage, then found on disk: its number is not taken again", async (t) => {
  // Found by a review: the journal remembered the number it read during the outage (without the batch), and once the
  // store reopened with the batch on disk, a new event of the same number was accepted over it.
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: ring() });
  const j = new Journal(store);
  t.teardown(() => store.close());
  await j.persist(ev("k", 1, "first"));
  // The next write fails, its bytes kept aside (LevelDB's log has them; its memory does not), and the disk is full.
  const disk = fillDisk(store);
  const batch = store.db.batch.bind(store.db);
  let captured: RawOp[] | undefined;
  const writing = store.db.batch;
  store.db.batch = (() => {
    const b = writing();
    const put = b.put.bind(b);
    const ops: RawOp[] = [];
    b.put = ((key: string, value: Uint8Array) => (ops.push({ type: "put", key, value: value as Buffer }), put(key, value))) as typeof b.put;
    const write = b.write.bind(b);
    b.write = (async (...a: Parameters<typeof write>) => {
      captured = ops;
      return write(...a);
    }) as typeof write;
    return b;
  }) as typeof store.db.batch;
  await t.rejects(j.persist(ev("k", 2, "second")), { code: "write_failed", written: "unknown" });
  store.db.batch = batch;
  t.same((await j.readEvents("k")).map((e) => e.data), ["first"], "a replay during the outage does not see it");
  // The disk is freed; the store's reopen finds the batch there (recovery replayed its log record).
  disk.free();
  await writeBatch(store.db, captured!, true);
  const settled = new Promise<boolean>((resolve) => store.onUnsureSettled(resolve));
  t.equal(await settled, true, "the reopen found it on disk");
  await t.rejects(j.persist(ev("k", 2, "something else")), { code: "sequence_gap" }, "its number is not taken again: the actor replays");
  t.same((await j.readEvents("k")).map((e) => e.data), ["first", "second"], "the landed event stays");
  await j.persist(ev("k", 3, "third"));
});
