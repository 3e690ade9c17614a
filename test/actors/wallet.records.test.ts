// A wallet's records beside its journal, on a real store through the registry: history pages newest first and
// keeps the newest `limit` entries, status changes rewrite their entry, and the transfer index makes an id count
// once however old — after the acknowledgement, a passivation, and a restart.
import t from "tap";
import { randomBytes } from "node:crypto";
import { EncryptedStore, META } from "../../src/store/db.ts";
import { Journal } from "../../src/store/journal.ts";
import { KeyRing } from "../../src/store/keyring.ts";
import { ActorSystem } from "../../src/actors/runtime.ts";
import { WalletRegistry } from "../../src/actors/registry.ts";
import { STORE_FORMAT, upgradeWalletRecords, WalletRecords, walletSums } from "../../src/actors/wallet.records.ts";
import { silentLogger } from "../../src/log.ts";
import { isRefusal, type Refusal } from "../../src/domain/refusals.ts";

const keyring = new KeyRing(new Map([[1, randomBytes(32)]]), 1);

async function open(path: string, limit = 5) {
  const store = await EncryptedStore.open({ path, keyring, sync: false });
  const journal = new Journal(store);
  const system = new ActorSystem(journal);
  const hooks = { notice: () => undefined, deliverTransfer: () => undefined, submitWithdrawal: () => undefined };
  const records = new WalletRecords(store, limit);
  const registry = new WalletRegistry({
    system, hooks, log: silentLogger, idleMs: 60_000, maxResident: 1000, maxInFlight: 64, askTimeoutMs: 5000,
    crashBudget: 3, crashWindowMs: 60_000, records, snapshotEvery: 3,
  });
  return {
    store, registry, records,
    async close() {
      registry.close();
      system.shutdown();
      await journal.flushed();
      await store.close();
    },
  };
}

/** A store as an older engine left it: `events` journalled for `userKey`, one record each, events only. */
async function oldStore(dir: string, userKey: string, events: object[][], at: number) {
  const store = await EncryptedStore.open({ path: dir, keyring, sync: false });
  const journal = new Journal(store);
  for (let i = 0; i < events.length; i++) await journal.persist({ key: `wallet:${userKey}`, sequenceNumber: i + 1, data: { e: events[i] }, tags: [], createdAt: at, isDeleted: false });
  return { store, journal };
}

const ok = <T>(r: T | Refusal): T => {
  if (isRefusal(r)) throw new Error(r.message);
  return r;
};

t.test("history pages newest first over the newest `limit` entries, read from the journal (no record per entry)", async (t) => {
  const w = await open(t.testdir());
  t.teardown(() => w.close());
  for (let i = 1; i <= 8; i++) ok(await w.registry.send("u_a", "receive_transfer", { id: `t${i}`, from: "u_src", amount: BigInt(i) }));
  const first = ok(await w.registry.history("u_a", 0, 2));
  t.same(first.entries.map((e) => [e.ref, e.amount, e.kind, e.counterparty]), [["t8", 8n, "transfer_in", "u_src"], ["t7", 7n, "transfer_in", "u_src"]]);
  t.same([first.page, first.pages, first.total], [0, 3, 8], "5 kept in pages of 2; 8 made");
  t.same(ok(await w.registry.history("u_a", 2, 2)).entries.map((e) => e.ref), ["t4"], "the last page holds the oldest kept");
  t.same(ok(await w.registry.history("u_a", 99, 2)).page, 2, "a page past the end shows the last one");
  let stored = 0;
  for await (const _ of w.store.keys("history")) stored++;
  t.equal(stored, 0, "the entries ride in the journal records");
  t.match(await w.registry.history("u_nobody", 0, 5), { code: "not_found" }, "no wallet, no history");
});

t.test("a settled withdrawal rewrites its entry: one entry, its final status and amount", async (t) => {
  const w = await open(t.testdir(), 100);
  t.teardown(() => w.close());
  ok(await w.registry.send("u_b", "receive_transfer", { id: "fund", from: "u_src", amount: 100_000n }));
  ok(await w.registry.send("u_b", "reserve_withdrawal", { request: { id: "w1", address: "bcrt1qd", amount: 10_000n, fee: 500n, dustLimit: 546n, dailyLimit: 10n ** 9n } }));
  t.same(ok(await w.registry.history("u_b", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]), [["w1", "reserved", -10_500n], ["fund", "received", 100_000n]]);
  ok(await w.registry.send("u_b", "withdrawal_broadcast", { id: "w1", txid: "aa".repeat(32) }));
  ok(await w.registry.send("u_b", "withdrawal_settled", { id: "w1", txid: "aa".repeat(32), fee: 300n }));
  t.same(ok(await w.registry.history("u_b", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]), [["w1", "sent", -10_300n], ["fund", "received", 100_000n]]);
});

t.test("a transfer id counts once after its acknowledgement, a passivation and a restart; the index hides the ids", async (t) => {
  const dir = t.testdir();
  let w = await open(dir);
  ok(await w.registry.send("u_c", "receive_transfer", { id: "fund", from: "u_src", amount: 10_000n }));
  t.same(ok(await w.registry.send("u_c", "send_transfer", { id: "pay-1", to: "u_d", amount: 1_000n, maxAmount: 10n ** 9n })).repeated, false);
  ok(await w.registry.send("u_c", "transfer_acked", { ids: ["pay-1"] }));
  t.same(ok(await w.registry.send("u_c", "send_transfer", { id: "pay-1", to: "u_d", amount: 1_000n, maxAmount: 10n ** 9n })), { repeated: true, balance: { available: 9_000n, pending: 0n, reserved: 0n } });
  // More entries than the history keeps: the id is still known.
  for (let i = 0; i < 10; i++) ok(await w.registry.send("u_c", "receive_transfer", { id: `x${i}`, from: "u_src", amount: 1n }));
  w.registry.passivateAll();
  t.same(ok(await w.registry.send("u_c", "send_transfer", { id: "pay-1", to: "u_d", amount: 1_000n, maxAmount: 10n ** 9n })).repeated, true, "after a passivation");
  t.same(ok(await w.registry.send("u_c", "receive_transfer", { id: "x0", from: "u_src", amount: 1n })).repeated, true, "a credit too");
  await w.close();
  w = await open(dir);
  t.teardown(() => w.close());
  t.same(ok(await w.registry.send("u_c", "send_transfer", { id: "pay-1", to: "u_d", amount: 1_000n, maxAmount: 10n ** 9n })).repeated, true, "after a restart");
  t.same(ok(await w.registry.read("u_c", "balance", {})), { available: 9_010n, pending: 0n, reserved: 0n }, "debited and credited once each");
  t.ok(w.records.sent("u_c", "pay-1"));
  t.notOk(w.records.sent("u_d", "pay-1"), "the index is per wallet and per direction");
  t.ok(w.records.received("u_c", "u_src", "fund"), "a credit is indexed by its sender and id");
  t.notOk(w.records.received("u_c", "u_other", "fund"), "another sender's id is another transfer");
  t.same(ok(await w.registry.send("u_c", "receive_transfer", { id: "fund", from: "u_other", amount: 5n })).repeated, false, "so it is credited");
  t.same(ok(await w.registry.send("u_c", "receive_transfer", { id: "fund", from: "u_src", amount: 10_000n })).repeated, true, "and the first sender's is still a repeat");
  t.same(ok(await w.registry.read("u_c", "balance", {})), { available: 9_015n, pending: 0n, reserved: 0n });
  const keys = [];
  for await (const k of w.store.keys("xfer")) keys.push(k);
  t.ok(keys.length > 0 && keys.every((k) => /^[\w-]{43}$/.test(k) && !k.includes("pay-1")), "record keys are MACs (HMAC-SHA256, base64url), not ids");
  let empty = 0;
  for (const k of keys) if ((await w.store.db.get(EncryptedStore.recordKey("xfer", k)))!.length === 0) empty++;
  t.equal(empty, keys.length, "and each is a mark: a key with nothing in its value");
});

t.test("a format-7 store's sealed index entries count as marks; its upgrade rewrites nothing", async (t) => {
  const dir = t.testdir();
  const at = 1_700_000_000_000;
  const { store, journal } = await oldStore(dir, "u_s", [[{ t: "opened", at }, { t: "transfer_received", id: "in-1", from: "u_r", amount: "500", at }], [{ t: "transfer_sent", id: "out-1", to: "u_r", amount: "100", at }]], at);
  // What format 7 wrote beside those records: each index entry sealed, holding its history entry's number.
  await store.batch([
    { type: "put", ns: "xfer", key: store.mac("transfer", "u_s\u0001in\u0001u_r\u0001in-1"), value: 1 },
    { type: "put", ns: "xfer", key: store.mac("transfer", "u_s\u0001out\u0001out-1"), value: 2 },
    { type: "put", ns: META, key: "format", value: 7 },
  ]);
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 7, replayed: 0, counted: 0, deleted: 0, moved: 0, inFlight: 0 }, "nothing to rewrite");
  t.equal(await store.get(META, "format"), STORE_FORMAT);
  await store.close();
  const w = await open(dir, 100);
  t.teardown(() => w.close());
  t.same(ok(await w.registry.send("u_s", "send_transfer", { id: "out-1", to: "u_r", amount: 100n, maxAmount: 10n ** 9n })).repeated, true, "a sent id is known");
  t.same(ok(await w.registry.send("u_s", "receive_transfer", { id: "in-1", from: "u_r", amount: 500n })).repeated, true, "a credit too");
  t.same(ok(await w.registry.read("u_s", "balance", {})), { available: 400n, pending: 0n, reserved: 0n }, "each counted once");
});

t.test("the outbox flag is written when it changes; no balance record per wallet", async (t) => {
  const w = await open(t.testdir());
  t.teardown(() => w.close());
  ok(await w.registry.send("u_e", "open", {}));
  ok(await w.registry.send("u_e", "receive_transfer", { id: "f", from: "u_src", amount: 50n }));
  ok(await w.registry.send("u_e", "send_transfer", { id: "s", to: "u_f", amount: 20n, maxAmount: 100n }));
  t.ok(w.store.hasSync("outbox", "u_e"), "an unacknowledged transfer is in the outbox");
  ok(await w.registry.send("u_e", "transfer_acked", { ids: ["s"] }));
  t.notOk(w.store.hasSync("outbox", "u_e"), "and leaves it when acknowledged");
  let records = 0;
  for await (const _ of w.store.keys("balances")) records++;
  t.equal(records, 0, "the running sums hold the balances (format 5)");
});

t.test("a store from before format 2 is upgraded once: history, index, snapshots and sums rebuilt from the journals", async (t) => {
  const dir = t.testdir();
  // What the engine wrote before: journal records of events only, and a snapshot with the history inside.
  const at = 1_700_000_000_000;
  const old = [
    [{ t: "opened", at }, { t: "transfer_received", id: "in-1", from: "u_src", amount: "5000", at }],
    [{ t: "deposit_seen", outpoint: "aa:0", txid: "aa", vout: 0, address: "bcrt1qa", amount: "20000", at }],
    [{ t: "deposit_confirmed", outpoint: "aa:0", at }],
    [{ t: "transfer_sent", id: "out-1", to: "u_dst", amount: "1000", at }],
    [{ t: "transfer_acked", id: "out-1" }],
  ];
  const { store, journal } = await oldStore(dir, "u_old", old, at);
  await journal.takeSnapshot({ key: "wallet:u_old", sequenceNumber: 3, data: { userKey: "u_old", opened: true, history: [{ ref: "in-1" }], incoming: { "in-1": 1 } }, createdAt: at });
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 0, replayed: 1, counted: 1, deleted: 0, moved: 0, inFlight: 0 }, "one wallet upgraded");
  t.equal(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), undefined, "and only once");
  t.same(walletSums(store.sums), { available: 24_000n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "its balance counted into the sums");
  const snap = await journal.latestSnapshot("wallet:u_old");
  t.equal(snap?.sequenceNumber, 5, "the snapshot is the replayed state");
  t.notOk("history" in (snap!.data as object), "without the history inside");
  await store.close();

  const w = await open(dir, 100);
  t.teardown(() => w.close());
  t.same(ok(await w.registry.history("u_old", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]),
    [["out-1", "sent", -1000n], ["aa:0", "confirmed", 20_000n], ["in-1", "received", 5000n]]);
  t.same(ok(await w.registry.send("u_old", "send_transfer", { id: "out-1", to: "u_dst", amount: 1000n, maxAmount: 10n ** 9n })).repeated, true, "an acknowledged old transfer is still known");
  t.same(ok(await w.registry.send("u_old", "receive_transfer", { id: "in-1", from: "u_src", amount: 5000n })).repeated, true, "an old credit too");
  t.same(ok(await w.registry.read("u_old", "balance", {})), { available: 24_000n, pending: 0n, reserved: 0n });
});

t.test("a format-2 store is upgraded once: credits re-indexed by sender and id, the id-only entries deleted", async (t) => {
  const dir = t.testdir();
  const at = 1_700_000_000_000;
  const events = [
    [{ t: "opened", at }, { t: "transfer_received", id: "same", from: "u_one", amount: "700", at }],
    [{ t: "transfer_sent", id: "out-1", to: "u_one", amount: "100", at }],
  ];
  const { store, journal } = await oldStore(dir, "u_two", events, at);
  // What format 2 wrote beside the journal: its index keyed a credit by the receiver and the id alone.
  const legacy = store.mac("transfer", "u_two\u0001in\u0001same");
  await store.batch([
    { type: "put", ns: "xfer", key: legacy, value: 1 },
    { type: "put", ns: "xfer", key: store.mac("transfer", "u_two\u0001out\u0001out-1"), value: 2 },
    { type: "put", ns: META, key: "format", value: 2 },
  ]);
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 2, replayed: 1, counted: 1, deleted: 0, moved: 0, inFlight: 1 }, "one wallet upgraded");
  t.equal(walletSums(store.sums).transit, 100n, "its transfer, never credited, counted in flight");
  t.equal(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), undefined, "and only once");
  t.equal(await store.get(META, "format"), STORE_FORMAT);
  t.equal(await store.get("xfer", legacy), undefined, "the id-only entry is gone");
  await store.close();

  const w = await open(dir, 100);
  t.teardown(() => w.close());
  t.ok(w.records.received("u_two", "u_one", "same"), "the credit is known by its sender and id");
  t.same(ok(await w.registry.send("u_two", "receive_transfer", { id: "same", from: "u_one", amount: 700n })).repeated, true, "its repeat is answered, not applied");
  t.same(ok(await w.registry.send("u_two", "receive_transfer", { id: "same", from: "u_three", amount: 50n })).repeated, false, "another sender's transfer with that id is credited");
  t.same(ok(await w.registry.send("u_two", "send_transfer", { id: "out-1", to: "u_one", amount: 100n, maxAmount: 10n ** 9n })).repeated, true, "a sent id is still known");
  t.same(ok(await w.registry.read("u_two", "balance", {})), { available: 650n, pending: 0n, reserved: 0n });
});

/** The wallets' balances read one by one: what the running sums must always equal. */
async function recount(w: Awaited<ReturnType<typeof open>>, users: string[]) {
  // Nothing in flight where this is asked: every debit has been credited.
  const sum = { available: 0n, pending: 0n, reserved: 0n, wallets: 0n, transit: 0n };
  for (const u of users) {
    const b = ok(await w.registry.read(u, "balance", {}));
    sum.available += b.available;
    sum.pending += b.pending;
    sum.reserved += b.reserved;
    sum.wallets++;
  }
  return sum;
}

t.test("the store's running sums follow every wallet's balance, through a restart; a format-3 store has them counted once", async (t) => {
  const users = ["u_g", "u_h1", "u_h2", "u_h3"];
  const dir = t.testdir();
  let w = await open(dir, 100);
  t.same(walletSums(w.store.sums), { available: 0n, pending: 0n, reserved: 0n, wallets: 0n, transit: 0n });
  ok(await w.registry.send("u_g", "open", {}));
  ok(await w.registry.send("u_g", "receive_transfer", { id: "fund", from: "u_src", amount: 100_000n }));
  await Promise.all([1, 2, 3].map((i) => w.registry.send("u_g", "send_transfer", { id: `s${i}`, to: `u_h${i}`, amount: 1_000n * BigInt(i), maxAmount: 10n ** 9n })));
  t.equal(walletSums(w.store.sums).transit, 6_000n, "the debits are in flight until credited");
  // Credited as the courier credits them.
  await Promise.all([1, 2, 3].map((i) => w.registry.send(`u_h${i}`, "receive_transfers", { transfers: [{ id: `s${i}`, from: "u_g", amount: 1_000n * BigInt(i) }] })));
  ok(await w.registry.send("u_g", "reserve_withdrawal", { request: { id: "w1", address: "bcrt1qd", amount: 10_000n, fee: 500n, dustLimit: 546n, dailyLimit: 10n ** 9n } }));
  t.same(walletSums(w.store.sums), { available: 100_000n - 6_000n - 10_500n + 6_000n, pending: 0n, reserved: 10_500n, wallets: 4n, transit: 0n });
  t.same(walletSums(w.store.sums), await recount(w, users), "equal to the balances read one by one");
  ok(await w.registry.send("u_g", "withdrawal_settled", { id: "w1", txid: "aa".repeat(32), fee: 300n }));
  t.match(await w.registry.send("u_g", "send_transfer", { id: "too-much", to: "u_h1", amount: 10n ** 8n, maxAmount: 10n ** 9n }), { code: "insufficient_funds" });
  await w.close();
  w = await open(dir, 100);
  t.same(walletSums(w.store.sums), { available: 89_700n, pending: 0n, reserved: 0n, wallets: 4n, transit: 0n }, "a settlement refunds the fee it did not use; a refusal adds nothing");
  const balances = await recount(w, users);
  t.same(walletSums(w.store.sums), balances, "still equal after a restart");
  // A store of format 3: a balance record per wallet (a, p, r and the outbox flag), no sums. The upgrade counts the
  // records once into the sums, then deletes them.
  const views = await Promise.all(users.map(async (u) => ok(await w.registry.read(u, "balance", {}))));
  await w.store.resetSums({}, [
    ...views.map((b, i) => ({ type: "put" as const, ns: "balances", key: users[i]!, value: { a: b.available, p: b.pending, r: b.reserved, o: false } })),
    { type: "put", ns: META, key: "format", value: 3 },
  ]);
  t.same(await upgradeWalletRecords(new Journal(w.store), w.records), { from: 3, replayed: 0, counted: 4, deleted: 4, moved: 1, inFlight: 0 }, "no journal replayed, four wallets counted, four balance records deleted, one settled withdrawal moved out of its wallet's state");
  t.same(walletSums(w.store.sums), balances);
  t.equal(await w.store.get(META, "format"), STORE_FORMAT);
  // Interrupted after the sums were written (format 4), before every record was deleted: the rest goes, the sums stay.
  await w.store.batch([{ type: "put", ns: "balances", key: "u_g", value: { a: 1n, p: 0n, r: 0n, o: false } }, { type: "put", ns: META, key: "format", value: 4 }]);
  t.same(await upgradeWalletRecords(new Journal(w.store), w.records), { from: 4, replayed: 0, counted: 0, deleted: 1, moved: 0, inFlight: 0 });
  t.same(walletSums(w.store.sums), balances, "not counted again");
  await w.close();
});

t.test("a format-5 store is upgraded at no cost: pages read its history records below the journal records written since", async (t) => {
  const dir = t.testdir();
  const at = 1_700_000_000_000;
  const events = [
    [{ t: "opened", at }, { t: "transfer_received", id: "in-1", from: "u_src", amount: "5000", at }],
    [{ t: "withdrawal_reserved", id: "w1", address: "bcrt1qd", amount: "1000", fee: "200", at }],
    [{ t: "transfer_sent", id: "out-1", to: "u_dst", amount: "700", at }],
    [{ t: "withdrawal_broadcast", id: "w1", txid: "aa".repeat(32), at }],
    [{ t: "withdrawal_settled", id: "w1", txid: "aa".repeat(32), fee: "150", at }],
  ];
  const { store, journal } = await oldStore(dir, "u_five", events, at);
  // What format 5 wrote beside the journal: one record per entry, rewritten when its status changed.
  const entry = (n: number, value: object) => ({ type: "put" as const, ns: "history", key: `u_five\u0001${String(n).padStart(12, "0")}`, value });
  await store.resetSums({ available: 3950n, pending: 0n, reserved: 0n, wallets: 1n }, [
    entry(1, { at, kind: "transfer_in", amount: 5000n, ref: "in-1", status: "received", counterparty: "u_src" }),
    entry(2, { at, kind: "withdrawal", amount: -1150n, ref: "w1", status: "sent" }),
    entry(3, { at, kind: "transfer_out", amount: -700n, ref: "out-1", status: "sent", counterparty: "u_dst" }),
    { type: "put", ns: META, key: "format", value: 5 },
  ]);
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 5, replayed: 0, counted: 0, deleted: 0, moved: 1, inFlight: 0 }, "nothing replayed, nothing deleted; the settled withdrawal moved out of the wallet's state");
  t.equal(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), undefined, "and only once");
  t.same(walletSums(store.sums), { available: 3950n, pending: 0n, reserved: 0n, wallets: 1n, transit: 0n }, "the sums are not counted again");
  await store.close();

  const w = await open(dir, 100);
  t.teardown(() => w.close());
  t.same(ok(await w.registry.history("u_five", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]),
    [["out-1", "sent", -700n], ["w1", "sent", -1150n], ["in-1", "received", 5000n]], "the same entries, each at its newest status");
  t.same(ok(await w.registry.history("u_five", 1, 2)).entries.map((e) => e.ref), ["in-1"], "and paged the same way");
  t.same(ok(await w.registry.read("u_five", "balance", {})), { available: 3150n, pending: 0n, reserved: 0n });
  // After the upgrade: new entries come from the journal, older ones from their records, a changed one at its newest.
  ok(await w.registry.send("u_five", "reserve_withdrawal", { request: { id: "w2", address: "bcrt1qd", amount: 1000n, fee: 100n, dustLimit: 546n, dailyLimit: 10n ** 9n } }));
  ok(await w.registry.send("u_five", "receive_transfer", { id: "in-2", from: "u_src", amount: 50n }));
  ok(await w.registry.send("u_five", "withdrawal_released", { id: "w2", reason: "test" }));
  t.same(ok(await w.registry.history("u_five", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]),
    [["in-2", "received", 50n], ["w2", "released", 0n], ["out-1", "sent", -700n], ["w1", "sent", -1150n], ["in-1", "received", 5000n]]);
  t.same(ok(await w.registry.history("u_five", 0, 3)).entries.map((e) => e.ref), ["in-2", "w2", "out-1"], "a page across the journal and the old records");
  t.same(ok(await w.registry.history("u_five", 1, 3)).entries.map((e) => e.ref), ["w1", "in-1"], "a page from the old records alone");
});

t.test("a format-6 store is upgraded once: finished deposits and withdrawals leave the wallets' states for their records", async (t) => {
  const dir = t.testdir();
  const at = 1_700_000_000_000;
  const deposit = (id: string, amount: string, address = "bcrt1qa") => ({ t: "deposit_seen", outpoint: `${id}:0`, txid: id, vout: 0, address, amount, at });
  const events = [
    [{ t: "opened", at }, { t: "address_added", address: "bcrt1qa", at }],
    [deposit("aa", "20000"), { t: "deposit_confirmed", outpoint: "aa:0", at }],
    [{ t: "withdrawal_reserved", id: "w1", address: "bcrt1qd", amount: "1000", fee: "100", at }],
    [{ t: "withdrawal_settled", id: "w1", txid: "ee".repeat(32), fee: "80", at }],
    // After the snapshot below: a deposit confirmed, then reversed by a deep reorg; one pending; one withdrawal open.
    [deposit("cc", "30000", "bcrt1qc"), { t: "deposit_confirmed", outpoint: "cc:0", at }],
    [{ t: "deposit_reversed", outpoint: "cc:0", at }],
    [deposit("dd", "5000", "bcrt1qc")],
    [{ t: "withdrawal_reserved", id: "w2", address: "bcrt1qd", amount: "2000", fee: "100", at }],
  ];
  const { store, journal } = await oldStore(dir, "u_six", events, at);
  // Format 6's snapshot after the fourth record: every deposit and withdrawal the wallet ever had, no address flag.
  await journal.takeSnapshot({ key: "wallet:u_six", sequenceNumber: 4, createdAt: at, data: {
    userKey: "u_six", opened: true, openedAt: at, available: 18_920n, pending: 0n, reserved: 0n, addresses: ["bcrt1qa"], historyTotal: 2,
    deposits: { "aa:0": { txid: "aa", vout: 0, address: "bcrt1qa", amount: 20_000n, status: "confirmed", seenAt: at, confirmedAt: at, h: 1 } },
    withdrawals: { w1: { address: "bcrt1qd", amount: 1000n, quotedFee: 100n, status: "sent", txid: "ee".repeat(32), fee: 80n, at, h: 2 } },
    outgoing: {}, day: { date: "2023-11-14", withdrawn: 1000n },
  } });
  await store.put(META, "format", 6);
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 6, replayed: 0, counted: 0, deleted: 0, moved: 1, inFlight: 0 }, "one wallet had finished ones");
  t.equal(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), undefined, "and only once");
  const snap = (await journal.latestSnapshot("wallet:u_six"))!;
  const state = snap.data as { deposits: object; withdrawals: object; addressUsed: boolean; available: bigint };
  t.same([snap.sequenceNumber, Object.keys(state.deposits), Object.keys(state.withdrawals), state.addressUsed, state.available],
    [8, ["dd:0"], ["w2"], true, 46_820n], "a new snapshot at the last record keeps the open ones only, and the address flag");
  await store.put(META, "format", 6);
  t.same(await upgradeWalletRecords(journal, new WalletRecords(store, 100)), { from: 6, replayed: 0, counted: 0, deleted: 0, moved: 0, inFlight: 0 }, "repeated: nothing left to move");
  await store.close();

  const w = await open(dir, 100);
  t.teardown(() => w.close());
  t.match(w.records.deposit("u_six", "aa:0"), { status: "confirmed", amount: 20_000n, h: 1 }, "from the old snapshot");
  t.match(w.records.deposit("u_six", "cc:0"), { status: "reversed", amount: 30_000n, h: 3 }, "confirmed and reversed after it");
  t.match(w.records.withdrawal("u_six", "w1"), { status: "sent", fee: 80n });
  t.same(ok(await w.registry.send("u_six", "deposit", { deposit: { txid: "aa", vout: 0, address: "bcrt1qa", amount: 20_000n, confirmations: 50 }, target: 3, maxPending: 1000 })), { status: "confirmed" },
    "an old deposit listed again is answered from its record");
  t.same(ok(await w.registry.send("u_six", "deposit_removed", { outpoint: "cc:0" })), { status: "reversed" }, "a reversed one too");
  t.match(ok(await w.registry.send("u_six", "withdrawal", { id: "w1" })), { withdrawal: { status: "sent", fee: 80n } });
  t.same(ok(await w.registry.read("u_six", "balance", {})), { available: 46_820n, pending: 5000n, reserved: 2100n, frozen: "deposit cc:0 left the chain after it was confirmed; an operator must review" },
    "nothing credited twice");
  t.same(ok(await w.registry.read("u_six", "current_address", {})), {}, "the newest address had a deposit: a new one is needed");
});

t.test("a deposit seen and confirmed in one command has one history entry, confirmed; its record keeps it", async (t) => {
  const w = await open(t.testdir());
  t.teardown(() => w.close());
  ok(await w.registry.send("u_dep", "open", {}));
  t.same(ok(await w.registry.send("u_dep", "deposit", { deposit: { txid: "ab".repeat(32), vout: 1, address: "bcrt1qa", amount: 7000n, confirmations: 6 }, target: 3, maxPending: 1000 })), { status: "confirmed" });
  t.same(ok(await w.registry.history("u_dep", 0, 10)).entries.map((e) => [e.ref, e.status, e.amount]), [[`${"ab".repeat(32)}:1`, "confirmed", 7000n]]);
  t.match(w.records.deposit("u_dep", `${"ab".repeat(32)}:1`), { status: "confirmed", amount: 7000n });
  t.same(Object.keys(ok(await w.registry.send("u_dep", "state", {})).deposits), [], "not in the state");
});

t.test("a format-8 store gets the transfers in flight counted into its sums, once: from the outboxes, less what the receivers have", async (t) => {
  const dir = t.testdir();
  let w = await open(dir, 100);
  ok(await w.registry.send("u_a", "receive_transfer", { id: "seed", from: "u_src", amount: 20_000n }));
  const send = (id: string, to: string, amount: bigint) => w.registry.send("u_a", "send_transfer", { id, to, amount, maxAmount: 10n ** 9n });
  ok(await send("t1", "u_b", 1_000n));
  ok(await send("t2", "u_c", 2_000n));
  ok(await send("chqfund:h1", "cheque:h1", 3_000n));
  ok(await send("chqfund:h2", "cheque:h2", 4_000n));
  // t2 credited (not yet acknowledged: still in the outbox); the first cheque funded, as the book will say.
  ok(await w.registry.send("u_c", "receive_transfers", { transfers: [{ id: "t2", from: "u_a", amount: 2_000n }] }));
  const before = walletSums(w.store.sums);
  // The sums as format 8 kept them: no transit.
  await w.store.resetSums({ available: before.available, pending: before.pending, reserved: before.reserved, wallets: before.wallets }, [{ type: "put", ns: META, key: "format", value: 8 }]);
  await w.close();
  w = await open(dir, 100);
  t.teardown(() => w.close());
  const journal = new Journal(w.store);
  t.same(await upgradeWalletRecords(journal, w.records, undefined, async () => (hash) => hash === "h1"), { from: 8, replayed: 0, counted: 0, deleted: 0, moved: 0, inFlight: 2 }, "t1 and the second cheque's funding");
  t.same(walletSums(w.store.sums), { ...before, transit: 5_000n }, "counted into the sums, nothing else changed");
  t.equal(await upgradeWalletRecords(journal, w.records), undefined, "and only once");
  ok(await w.registry.send("u_b", "receive_transfers", { transfers: [{ id: "t1", from: "u_a", amount: 1_000n }] }));
  t.equal(walletSums(w.store.sums).transit, 4_000n, "a credit after the upgrade takes its transfer out");
});

t.test("a store a newer version has upgraded is refused, untouched: rolling back would write it the old way", async (t) => {
  const w = await open(t.testdir(), 100);
  t.teardown(() => w.close());
  await w.store.put(META, "format", STORE_FORMAT + 1);
  await t.rejects(upgradeWalletRecords(new Journal(w.store), w.records), { code: "bad_format", message: new RegExp(`format ${STORE_FORMAT + 1}, written by a newer RuniGun; this one knows formats up to ${STORE_FORMAT}`) });
  t.equal(await w.store.get(META, "format"), STORE_FORMAT + 1, "left as it was");
});
