// The per-wallet bound on commands counts every command the wallet has not answered, also one whose caller stopped
// waiting: a wallet stuck behind a hung journal write otherwise took commands without bound (each caller told "nothing
// may have happened yet") and carried every one out when the disk came back. And a debit is refused, unsent, while a
// command whose caller gave up is still in the wallet: that caller may be sending it again with a new id.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry, type RegistryOptions } from "../../src/actors/registry.ts";
import { silentLogger } from "../../src/log.ts";
import { WalletRecords } from "../../src/actors/wallet.records.ts";
import { isRefusal } from "../../src/domain/refusals.ts";

async function setup(t: { testdir(): string; teardown(fn: () => unknown): void }, o: Partial<RegistryOptions> = {}) {
  const store = await EncryptedStore.open({ path: t.testdir(), keyring: new KeyRing(new Map([[1, randomBytes(32)]]), 1), sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  // Each credit's notice, as it is committed: a test waits for the commands carried out by this, not by time.
  let notices = 0, wanted = Infinity, reached: () => void = () => undefined;
  const noticesReach = (n: number) => new Promise<void>((r) => ((wanted = n), (reached = r), notices >= n && r()));
  const hooks = { notice: () => void (++notices >= wanted && reached()), deliverTransfer: () => undefined, submitWithdrawal: () => undefined };
  const registry = new WalletRegistry({
    system, hooks, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 8, askTimeoutMs: 5000,
    crashBudget: 3, crashWindowMs: 60_000, records: new WalletRecords(store, 100), snapshotEvery: 50, ...o,
  });
  // The disk hangs: every journal record waits until released (as a write on a failing disk does).
  const persist = journal.persist.bind(journal);
  let release: () => void = () => undefined;
  const stall = () => {
    const stalled = new Promise<void>((r) => (release = r));
    journal.persist = async (ev) => {
      await stalled;
      return persist(ev);
    };
  };
  const unstall = () => {
    journal.persist = persist;
    release();
  };
  t.teardown(async () => {
    unstall();
    registry.close();
    system.shutdown();
    await journal.flushed();
    await store.close();
  });
  return { registry, stall, unstall, noticesReach };
}

t.test("commands whose caller stopped waiting still count against the wallet's bound: a hung disk does not queue them without end", async (t) => {
  const { registry, stall, unstall, noticesReach } = await setup(t);
  await registry.send("u_a", "open", {});
  stall();
  const credit = (id: string) => registry.send("u_a", "receive_transfer", { id, from: "u_src", amount: 1n }, 50);
  const first = await Promise.all(Array.from({ length: 8 }, (_, i) => credit(`a${i}`)));
  t.ok(first.every((a) => isRefusal(a) && a.code === "busy" && !a.unsent), "the first 8 time out: they may still happen");
  // Their callers have given up; the wallet still holds all 8.
  const more = await Promise.all(Array.from({ length: 40 }, (_, i) => credit(`b${i}`)));
  t.equal(more.filter((a) => isRefusal(a) && a.code === "busy" && a.unsent).length, 40, "every further one is refused unsent: certainly not done");
  const balance = registry.send("u_a", "balance", {});
  t.match(await balance, { refused: true, code: "busy", unsent: true }, "a read too (it would only wait behind them)");
  unstall();
  // The 8 queued credits are committed (their notices); a read then goes behind any still answering, in mailbox order.
  await noticesReach(8);
  const after = await registry.send("u_a", "balance", {});
  t.ok(!isRefusal(after) && after.available === 8n, `only the 8 taken were carried out (available ${isRefusal(after) ? after.code : after.available})`);
});

t.test("a debit is refused unsent while a command whose caller gave up is still in the wallet; credits and reads still reach it", async (t) => {
  const { registry, stall, unstall } = await setup(t);
  await registry.send("u_a", "open", {});
  t.match(await registry.send("u_a", "receive_transfer", { id: "c0", from: "u_src", amount: 1000n }), { repeated: false });
  stall();
  t.match(await registry.send("u_a", "send_transfer", { id: "s1", to: "u_b", amount: 100n, maxAmount: 10_000n }, 50), { code: "busy", message: /may/ }, "the first /send times out");
  const again = await registry.send("u_a", "send_transfer", { id: "s2", to: "u_b", amount: 100n, maxAmount: 10_000n });
  t.match(again, { refused: true, code: "busy", unsent: true, message: /earlier request .* still being carried out; nothing was done by this one/ }, "the same send with a new id: refused, nothing done");
  const withdraw = await registry.send("u_a", "reserve_withdrawal", { request: { id: "w1", address: "bcrt1qexample", amount: 500n, fee: 10n, dustLimit: 546n, dailyLimit: 10n ** 8n } });
  t.match(withdraw, { refused: true, code: "busy", unsent: true }, "a withdrawal too");
  // A credit, and a read, still go to the wallet (queued behind the stuck command).
  const credit = registry.send("u_a", "receive_transfer", { id: "c1", from: "u_src", amount: 5n });
  const read = registry.read("u_a", "balance", {});
  unstall();
  t.match(await credit, { repeated: false }, "a credit was taken and done");
  t.match(await read, { available: 905n }, "the read sees the first send (once) and the credit");
  // The wallet has answered the command whose caller gave up: debits go again.
  t.match(await registry.send("u_a", "send_transfer", { id: "s3", to: "u_b", amount: 5n, maxAmount: 10_000n }), { repeated: false, balance: { available: 900n } });
});
