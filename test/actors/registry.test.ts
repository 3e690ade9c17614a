// The registry on a real journal: passivation keeps state, residency is bounded, crashes replay the journal,
// repeated crashes stop the wallet, and in-flight commands are bounded.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry, type RegistryOptions } from "../../src/actors/registry.ts";
import { createLogger, silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { isRefusal } from "../../src/domain/refusals.ts";
import { fillDisk } from "../support/store.ts";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

// A real collection before each heap reading, so the figure is retained memory, not garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }, o: Partial<RegistryOptions> = {}) {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const hooks = { notice: () => undefined, deliverTransfer: () => undefined, submitWithdrawal: () => undefined };
  const registry = new WalletRegistry({
    system, hooks, log: silentLogger, idleMs: 60_000, maxResident: 1_000_000, maxInFlight: 64, askTimeoutMs: 5000,
    crashBudget: 3, crashWindowMs: 60_000, records: new WalletRecords(store, 100), snapshotEvery: 50, ...o,
  });
  t.teardown(async () => {
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  });
  return { store, journal, system, registry };
}

const credit = (r: WalletRegistry, key: string, id: string, amount: bigint) => r.send(key, "receive_transfer", { id, from: "u_src", amount });

t.test("passivation and re-activation keep state", async (t) => {
  const { registry } = await setup(t);
  await registry.send("u_a", "open", {});
  await credit(registry, "u_a", "t1", 500n);
  t.ok(registry.isResident("u_a"));
  registry.passivateAll();
  t.notOk(registry.isResident("u_a"), "passivated");
  const b = await registry.send("u_a", "balance", {});
  t.ok(!isRefusal(b) && b.available === 500n, "re-activated from the journal with its balance");
  t.equal(registry.stats.activations, 2);
  await credit(registry, "u_a", "t1", 500n);
  const again = await registry.send("u_a", "balance", {});
  t.ok(!isRefusal(again) && again.available === 500n, "a repeated transfer id after re-activation is answered from the journal");
});

t.test("residency is bounded (LRU) and 10k passivated wallets leave memory bounded", async (t) => {
  const { registry } = await setup(t, { maxResident: 500 });
  const N = 10_000;
  for (let i = 0; i < N; i += 500) {
    await Promise.all(Array.from({ length: 500 }, (_, j) => registry.send(`u_${i + j}`, "open", {})));
  }
  t.ok(registry.resident <= 500, `at most 500 resident after ${N} activations (${registry.resident})`);
  registry.passivateAll();
  t.equal(registry.resident, 0);
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < 2000; i++) await registry.send(`u_${i}`, "balance", {});
  registry.passivateAll();
  await new Promise((r) => setImmediate(r));
  gc();
  const growth = process.memoryUsage().heapUsed - heapBefore;
  t.ok(growth < 2 * 1024 * 1024, `retained heap grew ${(growth / 1e3).toFixed(0)} KB after 2,000 activations and passivations`);
  const b = await registry.send("u_9999", "balance", {});
  t.ok(!isRefusal(b), "the LRU-evicted wallet still answers");
});

t.test("a wallet that throws is replayed from its journal; the crashing command gets an answer", async (t) => {
  const { registry } = await setup(t);
  await registry.send("u_c", "open", {});
  await credit(registry, "u_c", "x1", 700n);
  const crashed = await registry.send("u_c", "crash", {});
  t.match(crashed, { refused: true, code: "internal", message: /nothing was moved/ }, "answered, not dropped");
  const b = await registry.send("u_c", "balance", {});
  t.ok(!isRefusal(b) && b.available === 700n, "nothing lost");
  t.equal(registry.stats.crashes, 1);
});

t.test("a wallet that keeps crashing is stopped and reported, not looped", async (t) => {
  const { registry } = await setup(t, { crashBudget: 2 });
  await registry.send("u_d", "open", {});
  for (let i = 0; i < 3; i++) await registry.send("u_d", "crash", {});
  t.equal(registry.stats.stoppedAfterCrashes, 1);
  t.match(await registry.send("u_d", "balance", {}), { refused: true, code: "internal", message: /operators have been told/ });
});

t.test("crashes while the disk is full are not the wallet's doing: not counted against its crash budget, and it serves again once space is freed", async (t) => {
  const { store, registry } = await setup(t, { crashBudget: 2 });
  await registry.send("u_f", "open", {});
  const disk = fillDisk(store);
  for (let i = 0; i < 4; i++) t.ok(isRefusal(await credit(registry, "u_f", `t${i}`, 5n)), `credit ${i} refused while the disk is full`);
  disk.free();
  t.match(await credit(registry, "u_f", "t9", 5n), { repeated: false }, "space freed: the next credit is taken");
  t.equal(registry.stats.stoppedAfterCrashes, 0, "never stopped");
  t.equal(registry.crashRecords, 0, "and nothing kept for crashes that did not count");
  t.match(await registry.send("u_f", "balance", {}), { available: 5n });
});

t.test("a crash's log lines name the command and its id; a wallet stopped after repeated crashes is an alert", async (t) => {
  const lines: Array<{ level: number; msg: string; command?: string; id?: string; alert?: boolean }> = [];
  const log = createLogger({ level: "info", destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const { registry } = await setup(t, { crashBudget: 1, log });
  await registry.send("u_e", "open", {});
  // The test hook's command carries no id of its own: one is added, as every money-moving command has one.
  for (let i = 0; i < 2; i++) await registry.send("u_e", "crash", { id: `c${i}` } as never);
  const crashed = lines.find((l) => /wallet crashed/.test(l.msg));
  t.match(crashed, { level: 40, command: "crash", id: "c0" }, "the first crash: which command, which id");
  const stopped = lines.find((l) => /wallet stopped after repeated crashes/.test(l.msg));
  t.match(stopped, { level: 50, command: "crash", id: "c1", alert: true }, "the stop: an alert naming the command");
});

t.test("a wallet whose command outlived its caller's wait is not passivated, and its reads wait for it: never two actors on one journal", async (t) => {
  const { journal, registry } = await setup(t);
  await registry.send("u_a", "open", {});
  // The disk stalls: the next journal record waits until released.
  let release!: () => void;
  const stalled = new Promise<void>((r) => (release = r));
  const persist = journal.persist.bind(journal);
  journal.persist = async (ev) => {
    await stalled;
    return persist(ev);
  };
  t.match(await registry.send("u_a", "receive_transfer", { id: "t1", from: "u_src", amount: 500n }, 50), { code: "busy", message: /may/ }, "the caller stops waiting");
  registry.passivateAll();
  registry.passivateIdle(performance.now() + 3_600_000);
  t.ok(registry.isResident("u_a"), "not passivated while its command may still be journalled");
  const read = registry.read("u_a", "balance", {});
  release();
  t.match(await read, { available: 500n }, "a read after it sees it");
  journal.persist = persist;
  registry.passivateAll();
  t.notOk(registry.isResident("u_a"), "passivated once it is done");
  t.match(await registry.send("u_a", "balance", {}), { available: 500n }, "and its journal holds it once");
});

t.test("in-flight commands per wallet are bounded; the excess is refused early", async (t) => {
  const { registry } = await setup(t, { maxInFlight: 8 });
  await registry.send("u_e", "open", {});
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => credit(registry, "u_e", `b${i}`, 1n)));
  const busy = answers.filter((a) => isRefusal(a) && a.code === "busy").length;
  t.ok(busy > 0, `${busy} of 40 refused as busy`);
  const b = await registry.send("u_e", "balance", {});
  t.ok(!isRefusal(b) && b.available === BigInt(40 - busy), "exactly the accepted ones took effect");
});

t.test("reads are answered from the committed state: the same answers as the mailbox, without a message", async (t) => {
  const { registry } = await setup(t);
  const unopened = await registry.read("u_new", "balance", {});
  t.ok(isRefusal(unopened), "a wallet that is not resident is asked (and activated): nobody opened it");
  t.same(await registry.read("u_new", "balance", {}), unopened, "the same refusal from its committed state");
  const viaMessages = registry.stats.reads;
  await registry.send("u_r", "open", {});
  await credit(registry, "u_r", "t1", 700n);
  const read = await registry.read("u_r", "balance", {});
  t.same(read, await registry.send("u_r", "balance", {}), "the same answer as a message");
  t.equal(registry.stats.reads, viaMessages + 1, "answered without one");
  // Every acknowledged command is visible to the next read.
  for (let i = 0; i < 20; i++) {
    await credit(registry, "u_r", `c${i}`, 1n);
    t.match(await registry.read("u_r", "balance", {}), { available: 701n + BigInt(i) });
  }
  t.same(await registry.read("u_r", "history", { page: 0, pageSize: 5 }), await registry.send("u_r", "history", { page: 0, pageSize: 5 }));
  // A command already sent (not yet answered) is seen by a read that comes after it: the mailbox's order holds.
  const credit2 = credit(registry, "u_r", "late", 5n);
  t.match(await registry.read("u_r", "balance", {}), { available: 725n }, "the read waited behind the credit in flight");
  await credit2;
  await registry.send("u_r", "freeze", { reason: "review", by: "alice" });
  t.match(await registry.read("u_r", "balance", {}), { frozen: "review" }, "a freeze is seen by the next read");
  // A crash: the actor replays; until it handles a message, reads go through it (and get the replayed state).
  await registry.send("u_r", "crash", {});
  const before = registry.stats.reads;
  t.match(await registry.read("u_r", "balance", {}), { available: 725n, frozen: "review" });
  t.equal(registry.stats.reads, before, "after a crash the read went through the actor");
});

t.test("a command in flight at shutdown is told it may still have been done, never 'nothing was moved'", async (t) => {
  const { registry, journal } = await setup(t);
  await registry.send("u_a", "open", {});
  // The journal holds the write (as a slow disk would) while the engine shuts down.
  const persist = journal.persist.bind(journal);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  journal.persist = async (ev) => {
    await held;
    return persist(ev);
  };
  const answer = credit(registry, "u_a", "t1", 500n);
  await new Promise((r) => setImmediate(r));
  registry.close();
  const r = await answer;
  t.match(r, { code: "busy", message: /may still have been done/ }, "busy: an edge says it may still go through (its words for 'internal' are 'nothing was moved')");
  release();
  journal.persist = persist;
});
