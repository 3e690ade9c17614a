// A step of the wall clock (NTP setting a skewed clock right) changes no deadline of the actors: asks time out after
// their time, not an hour late nor at once; a wallet's idleness, its crash window and its block after repeated crashes
// go by a monotonic clock, as do the singleton actors' crash budgets.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem, AskTimeout, type Reply } from "../../src/actors/runtime.ts";
import { WalletRegistry, type RegistryOptions } from "../../src/actors/registry.ts";
import { crashBudget } from "../../src/actors/crash-budget.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

/**
 * The wall clock, stepped by `step(ms)` until the test ends. Installed before anything under test is made: one that kept
 * a reference to Date.now would not see a replacement made later, and a real step is seen by every reader of the clock.
 */
function steppableClock(t: { teardown(fn: () => unknown): void }): { step(ms: number): void } {
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.teardown(() => void (Date.now = realNow));
  return { step: (ms) => void (offset += ms) };
}

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }, o: Partial<RegistryOptions> = {}) {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const hooks = { notice: () => undefined, deliverTransfer: () => undefined, submitWithdrawal: () => undefined };
  const registry = new WalletRegistry({
    system, hooks, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000,
    crashBudget: 3, crashWindowMs: 60_000, records: new WalletRecords(store, 100), snapshotEvery: 50, ...o,
  });
  t.teardown(async () => {
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  });
  return { registry };
}

t.test("an ask times out after its time when the wall clock steps back an hour", async (t) => {
  const clock = steppableClock(t);
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  const silent = system.spawn<null, { reply: Reply<string> }>("silent", null, (s) => s);
  const started = performance.now();
  const asked = system.ask<{ reply: Reply<string> }, string>(silent, (reply) => ({ reply }), 200).then(() => "answered", (e: unknown) => e);
  clock.step(-3_600_000);
  // A bound for the test itself: with deadlines on the wall clock the ask would wait an hour.
  let bound: NodeJS.Timeout | undefined;
  const r = await Promise.race([asked, new Promise((res) => (bound = setTimeout(() => res("still waiting after 3 s"), 3000)))]);
  clearTimeout(bound);
  t.ok(r instanceof AskTimeout, `timed out (${String(r)})`);
  t.ok(performance.now() - started < 2000, "after about its 200 ms");
});

t.test("an ask is answered when the wall clock steps forward past its deadline", async (t) => {
  const clock = steppableClock(t);
  const system = new ActorSystem();
  t.teardown(() => system.shutdown());
  let answer: Reply<string> | undefined;
  const actor = system.spawn<null, { reply: Reply<string> }>("answers-later", null, (s, m) => ((answer = m.reply), s));
  const asked = system.ask<{ reply: Reply<string> }, string>(actor, (reply) => ({ reply }), 1000).then((v) => v, (e: unknown) => e);
  clock.step(2000);
  // Past a sweep of the pending asks (every 10 ms), then answered: a wall-clock deadline was failed by then.
  await new Promise<void>((r) => setTimeout(r, 50));
  answer?.("done");
  t.equal(await asked, "done");
});

t.test("a wallet blocked after repeated crashes stays blocked when the wall clock steps past its crash window", async (t) => {
  const clock = steppableClock(t);
  const { registry } = await setup(t, { crashBudget: 1 });
  await registry.send("u_c", "open", {});
  for (let i = 0; i < 2; i++) await registry.send("u_c", "crash", { id: `c${i}` } as never);
  t.match(await registry.send("u_c", "balance", {}), { code: "internal", unsent: true, message: /unavailable after repeated errors/ }, "blocked");
  clock.step(120_000);
  t.match(await registry.send("u_c", "balance", {}), { code: "internal", unsent: true, message: /unavailable after repeated errors/ }, "still blocked: a minute has not passed");
});

t.test("a wallet's crashes are not kept for an hour when the wall clock steps back", async (t) => {
  const clock = steppableClock(t);
  const { registry } = await setup(t, { crashBudget: 1, crashWindowMs: 100 });
  await registry.send("u_c", "open", {});
  await registry.send("u_c", "crash", { id: "c0" } as never);
  clock.step(-3_600_000);
  // The crash window's time passes (what is tested is elapsed time: no event marks it).
  await new Promise<void>((r) => setTimeout(r, 150));
  await registry.send("u_c", "crash", { id: "c1" } as never);
  const b = await registry.send("u_c", "balance", {});
  t.ok(!isRefusal(b), `the first crash is out of the window: one crash in it, within the budget (${isRefusal(b) ? b.message : "served"})`);
});

t.test("a wallet just used is not passivated as idle when the wall clock steps forward an hour", async (t) => {
  const clock = steppableClock(t);
  const { registry } = await setup(t);
  await registry.send("u_a", "open", {});
  clock.step(3_600_000);
  registry.passivateIdle();
  t.ok(registry.isResident("u_a"), "still resident");
});

t.test("a singleton actor's crash budget forgets old crashes when the wall clock steps back", async (t) => {
  const clock = steppableClock(t);
  const after = crashBudget({ log: silentLogger, what: "test actor", stopped: "stopped", max: 1, windowMs: 100 });
  t.equal(after(new Error("a")), "reset");
  clock.step(-3_600_000);
  await new Promise<void>((r) => setTimeout(r, 150));
  t.equal(after(new Error("b")), "reset", "the first crash is out of its window");
});
